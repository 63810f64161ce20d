namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "execve", SetLastError = true)]
    private static partial int ExecveRaw(byte* path, byte** argv, byte** envp);

    [LibraryImport(Libc, EntryPoint = "signal")]
    private static partial nint SignalRaw(int signal, nint handler);

    /// <summary>
    /// execve(2): replaces the whole process (all threads); returns only by throwing. The
    /// .NET runtime ignores SIGPIPE, and an ignored signal stays ignored across execve: the
    /// program gets it back at its default (as Spawn's children do), or `yes | head` in a
    /// container would never end.
    /// </summary>
    public static void Exec(string path, IReadOnlyList<string> args, IReadOnlyList<string> environment)
    {
        SignalRaw(13 /* SIGPIPE */, 0 /* SIG_DFL */);
        using var strings = new NativeStrings();
        byte* p = strings.Add(path);
        byte** argv = strings.AddArray(args);
        byte** envp = strings.AddArray(environment);
        ExecveRaw(p, argv, envp);
        throw new SysException("execve", path, Marshal.GetLastPInvokeError());
    }
}

namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "execve", SetLastError = true)]
    private static partial int ExecveRaw(byte* path, byte** argv, byte** envp);

    /// <summary>execve(2): replaces the whole process (all threads); returns only by throwing.</summary>
    public static void Exec(string path, IReadOnlyList<string> args, IReadOnlyList<string> environment)
    {
        using var strings = new NativeStrings();
        byte* p = strings.Add(path);
        byte** argv = strings.AddArray(args);
        byte** envp = strings.AddArray(environment);
        ExecveRaw(p, argv, envp);
        throw new SysException("execve", path, Marshal.GetLastPInvokeError());
    }
}

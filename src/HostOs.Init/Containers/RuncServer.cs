using System.Net.Sockets;
using System.Text;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Cli;
using HostOs.Init.Processes;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Containers;

/// <summary>
/// hostos-init's side of hostos-runc's front (src/HostOs.Stage/RuncFront.cs;
/// docs/containers.md, "The front"). hostos-init links the runtime and is warm, so it runs
/// the commands the front sends instead of a .NET runtime starting for each. A command is
/// served only when the result is the one the caller would get running the runtime itself:
/// the caller is root, in all of PID 1's namespaces and its root directory, with the same
/// capabilities, no seccomp filter or no_new_privs, the same umask, resource limits and
/// oom_score_adj (a container's process inherits what its spec does not set); and create
/// and --detach, which leave a process behind, only when the caller's orphans go to PID 1
/// anyway (not to a subreaper, as a shim is, which waits for that process). Otherwise the answer
/// is 'F' and why, and the front runs the runtime itself: nothing has happened yet.
/// The socket is root's only (0600).
/// </summary>
internal static class RuncServer
{
    public const string SocketPath = "/run/hostos/runc.sock";
    private const string Header = "hostos-runc 1\n";
    private const int RequestLimit = 65536;

    private static readonly string[] Namespaces =
        ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup", "time", "pid_for_children", "time_for_children"];
    private static readonly string[] StatusFields =
        ["Umask:", "Uid:", "Gid:", "Groups:", "NoNewPrivs:", "Seccomp:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
         "Cpus_allowed:", "Mems_allowed:"];
    // Of /proc/PID/stat, what a process started passes on: nice, rt_priority, policy (field 18,
    // the priority, follows from them).
    private static readonly (int Field, string Name)[] StatFields = [(19, "nice"), (40, "rt_priority"), (41, "scheduling policy")];

    public static void Start(ProcessTable processes)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(SocketPath)!);
        File.Delete(SocketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        // Root's only before anyone can connect (connect needs listen).
        File.SetUnixFileMode(SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(64);
        new Thread(() => AcceptLoop(listener, processes)) { IsBackground = true, Name = "runc-server" }.Start();
    }

    /// <summary>Commands served at once; past that the front runs the command itself.</summary>
    private const int MaxSessions = 256;
    private static readonly SemaphoreSlim Sessions = new(MaxSessions);

    private static void AcceptLoop(Socket listener, ProcessTable processes)
    {
        while (true)
        {
            Socket? connection = null;
            bool held = false;
            try
            {
                connection = listener.Accept();
                ulong accepted = Uptime();
                if (!(held = Sessions.Wait(0)))
                {
                    Answer(connection, $"Fhostos-init is serving {MaxSessions} commands already");
                    connection.Dispose();
                    continue;
                }
                // The request comes at once (the front sends it right after connecting).
                connection.ReceiveTimeout = 5000;
                Socket c = connection;
                // A thread each: run and exec wait for their process as long as it runs.
                new Thread(() =>
                {
                    try
                    {
                        Serve(c, accepted, processes);
                    }
                    finally
                    {
                        Sessions.Release();
                    }
                }) { IsBackground = true, Name = "runc-command" }.Start();
            }
            catch (Exception e)
            {
                // An exception out of a thread would end PID 1: every thread here ends in a catch-all.
                Log.Error($"runc socket: accept: {e.Message}");
                connection?.Dispose();
                if (held) Sessions.Release();
                Thread.Sleep(100);
            }
        }
    }

    private static void Serve(Socket connection, ulong accepted, ProcessTable processes)
    {
        using (connection)
        {
            SafeFileHandle[] stdio = [];
            try
            {
                byte[] buffer = new byte[RequestLimit];
                (int length, stdio) = Sys.ReceiveWithDescriptors(connection.SafeHandle, buffer, 3);
                var request = ParseRequest(buffer.AsSpan(0, length));
                if (request is not var (args, orphansGoTo))
                {
                    Answer(connection, "F" + $"not a '{Header.TrimEnd()}' request");
                    return;
                }
                if (stdio.Length != 3)
                {
                    Answer(connection, "Fthe request did not come with stdin, stdout and stderr");
                    return;
                }
                connection.ReceiveTimeout = 0;
                var (pid, uid, _) = Sys.PeerCredentials(connection.SafeHandle);
                string? why = RuncCommand.MustRunInCaller(args, orphansGoTo) ?? CallerDiffers(pid, uid, accepted);
                string? cwd = ReadLink($"/proc/{pid}/cwd");
                if (cwd is null || !cwd.StartsWith('/') || cwd.EndsWith(" (deleted)", StringComparison.Ordinal) || !SameFile($"/proc/{pid}/cwd", cwd))
                {
                    // Deleted, or out of our sight (under another root, a lazily unmounted tree):
                    // its name here would be another directory.
                    why ??= "the caller's working directory cannot be named";
                }
                if (why is null && Sys.IsTerminal((int)stdio[0].DangerousGetHandle()) && BackgroundJob(pid))
                {
                    // Its terminal would be read by us, where a job-control stop (SIGTTIN) cannot reach.
                    why = "the caller is a background job on a terminal";
                }
                if (why is not null)
                {
                    Answer(connection, "F" + why);
                    return;
                }
                Run(connection, processes, args, stdio, cwd!, CallerEnvironment(pid, "HOSTOS_CGROUP_ROOT") ?? Cgroup.DefaultRoot);
            }
            catch (Exception e)
            {
                Log.Error("runc socket", e);
            }
            finally
            {
                foreach (var fd in stdio) fd.Dispose();
            }
        }
    }

    private static void Run(Socket connection, ProcessTable processes, string[] args, SafeFileHandle[] stdio, string cwd, string cgroupRoot)
    {
        var started = new StartedProcesses(processes);
        var signals = new SignalRelay();
        var session = new RuncSession
        {
            In = (int)stdio[0].DangerousGetHandle(),
            Out = (int)stdio[1].DangerousGetHandle(),
            Err = (int)stdio[2].DangerousGetHandle(),
            WorkingDirectory = cwd,
            CgroupRoot = cgroupRoot,
            // The caller's stdio for whatever does not name its own (the container's process, hooks).
            Spawn = request => started.Spawn(request with
            {
                Stdin = request.Stdin ?? stdio[0], Stdout = request.Stdout ?? stdio[1], Stderr = request.Stderr ?? stdio[2],
            }),
            WaitChild = started.Wait,
            OnSignals = signals.Subscribe,
            Note = "served by hostos-init (PID 1)",
        };
        Answer(connection, "A");
        var relay = new Thread(() => signals.ReadFrom(connection)) { IsBackground = true, Name = "runc-signals" };
        relay.Start();
        int code;
        try
        {
            code = new RuncCommand(session).Run(args);
        }
        catch (Exception e)
        {
            // Never PID 1's end: the command fails, as it would have in the caller's process.
            string command = string.Join(' ', args);
            Log.Error($"runc command {(command.Length > 200 ? command[..200] + "..." : command)}", e);
            Sys.WriteAll(session.Err, Encoding.UTF8.GetBytes($"hostos-runc: internal error in hostos-init: {e.Message}\n"));
            code = 1;
        }
        byte[] exit = new byte[5];
        exit[0] = (byte)'X';
        BitConverter.TryWriteBytes(exit.AsSpan(1), code);
        // Our copies of its stdio go before it learns the end: a reader of its output sees EOF with its exit.
        foreach (var fd in stdio) fd.Dispose();
        try
        {
            connection.Send(exit);
        }
        catch (SocketException)
        {
            // The front is gone (killed): as with runc killed, the command still ran to its end.
        }
    }

    /// <summary>
    /// The header line, the pid that adopts the caller's orphans (a line), then NUL-terminated
    /// arguments; null when it is not that.
    /// </summary>
    internal static (string[] Args, int OrphansGoTo)? ParseRequest(ReadOnlySpan<byte> request)
    {
        ReadOnlySpan<byte> header = "hostos-runc 1\n"u8;
        if (!request.StartsWith(header)) return null;
        request = request[header.Length..];
        int line = request.IndexOf((byte)'\n');
        if (line < 1 || line > 10 || !int.TryParse(request[..line], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int orphansGoTo))
        {
            return null;
        }
        request = request[(line + 1)..];
        var args = new List<string>();
        while (request.Length > 0)
        {
            int end = request.IndexOf((byte)0);
            if (end < 0) return null;
            args.Add(Encoding.UTF8.GetString(request[..end]));
            request = request[(end + 1)..];
        }
        return ([.. args], orphansGoTo);
    }

    /// <summary>
    /// Why running the command here would not be what the caller gets running it itself, or
    /// null. <paramref name="connectedBy"/>: the uptime in clock ticks when the connection was
    /// accepted; a process at the pid that started later is not the one that connected (the
    /// pid was reused: SO_PEERCRED names a pid, and SO_PEERPIDFD needs Linux 6.5).
    /// </summary>
    internal static string? CallerDiffers(int pid, uint uid, ulong connectedBy = ulong.MaxValue)
    {
        if (uid != 0) return $"the caller is not root (uid {uid})";
        if (HostOs.Platform.Kernel.ProcessStat.StartTime(pid) is not ulong started || (started > 0 && started - 1 > connectedBy))
        {
            return $"the process that connected (pid {pid}) is gone";
        }
        for (int i = 0; i < Namespaces.Length; i++)
        {
            if (Own.Namespaces[i] is null) continue; // a kind this kernel does not have
            if (ReadLink($"/proc/{pid}/ns/{Namespaces[i]}") != Own.Namespaces[i]) return $"the caller is in another {Namespaces[i]} namespace";
        }
        if (ReadLink($"/proc/{pid}/root") != "/" || !SameFile($"/proc/{pid}/root", "/")) return "the caller has another root directory";
        if (LsmLabel($"/proc/{pid}") != Own.LsmLabel) return "the caller's LSM label is not hostos-init's";
        string? theirs = Text($"/proc/{pid}/status");
        if (theirs is null || Own.Status is null) return "the caller's /proc/PID/status cannot be read";
        foreach (string field in StatusFields)
        {
            if (ProcessTable.StatusField(theirs, field) != ProcessTable.StatusField(Own.Status, field)) return $"the caller's {field.TrimEnd(':')} ({ProcessTable.StatusField(theirs, field)}) is not hostos-init's ({ProcessTable.StatusField(Own.Status, field)})";
        }
        string[]? theirStat = StatOf(pid);
        if (theirStat is null || Own.Stat is null) return "the caller's /proc/PID/stat cannot be read";
        foreach (var (field, name) in StatFields)
        {
            if (theirStat[field - 3] != Own.Stat[field - 3]) return $"the caller's {name} ({theirStat[field - 3]}) is not hostos-init's ({Own.Stat[field - 3]})";
        }
        if (Text($"/proc/{pid}/limits") != Own.Limits) return "the caller's resource limits are not hostos-init's";
        if (Text($"/proc/{pid}/oom_score_adj") != Own.OomScoreAdj) return "the caller's oom_score_adj is not hostos-init's";
        return null;
    }

    /// <summary>
    /// What a caller is compared with: this process's own, read once at the first request
    /// (nothing of it changes after the boot), not again for every command.
    /// </summary>
    private static class Own
    {
        public static readonly string?[] Namespaces = RuncServer.Namespaces.Select(ns => ReadLink($"/proc/self/ns/{ns}")).ToArray();
        public static readonly string? LsmLabel = RuncServer.LsmLabel("/proc/self");
        public static readonly string? Status = Text("/proc/self/status");
        public static readonly string[]? Stat = StatOf(Environment.ProcessId);
        public static readonly string? Limits = Text("/proc/self/limits");
        public static readonly string? OomScoreAdj = Text("/proc/self/oom_score_adj");
    }

    /// <summary>Time since boot in clock ticks (1/100 s, as /proc/PID/stat's start time).</summary>
    private static ulong Uptime()
    {
        string text = Text("/proc/uptime") ?? throw new IOException("/proc/uptime cannot be read");
        string seconds = text[..text.IndexOf(' ')];
        int dot = seconds.IndexOf('.');
        return ulong.Parse(seconds[..dot], System.Globalization.CultureInfo.InvariantCulture) * 100
               + ulong.Parse(seconds[(dot + 1)..].PadRight(2, '0')[..2], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string? Text(string path) => Sys.TryReadFile(path) is { } bytes ? Encoding.UTF8.GetString(bytes) : null;

    /// <summary>The fields of /proc/PID/stat from the third on (after the command's name), or null.</summary>
    private static string[]? StatOf(int pid)
    {
        string? stat = Text($"/proc/{pid}/stat");
        int end = stat?.LastIndexOf(')') ?? -1;
        return end < 0 ? null : stat![(end + 2)..].Split(' ');
    }

    /// <summary>attr/current, or null where no LSM gives one (reading it fails with EINVAL).</summary>
    private static string? LsmLabel(string process)
    {
        try
        {
            return Text($"{process}/attr/current");
        }
        catch (SysException)
        {
            return null;
        }
    }

    /// <summary>In a process group that is not its terminal's foreground one (a job started with &amp;).</summary>
    private static bool BackgroundJob(int pid) => StatOf(pid) is { } stat && stat[8 - 3] != "-1" && stat[5 - 3] != stat[8 - 3];

    private static bool SameFile(string a, string b)
    {
        try
        {
            return Sys.Identity(a) == Sys.Identity(b);
        }
        catch (SysException)
        {
            return false;
        }
    }


    private static string? ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>A variable of the environment the caller started with (/proc/PID/environ), or null.</summary>
    private static string? CallerEnvironment(int pid, string name)
    {
        string? environ = Text($"/proc/{pid}/environ");
        if (environ is null) return null;
        foreach (string entry in environ.Split('\0'))
        {
            if (entry.Length > name.Length && entry[name.Length] == '=' && entry.StartsWith(name, StringComparison.Ordinal)) return entry[(name.Length + 1)..];
        }
        return null;
    }

    private static void Answer(Socket connection, string answer) => connection.Send(Encoding.UTF8.GetBytes(answer));

    /// <summary>The signals the front relays ('S' and the number), to whoever subscribed to them.</summary>
    private sealed class SignalRelay
    {
        private readonly Lock _gate = new();
        private readonly List<(int[] Signals, Action<int> Handler)> _handlers = [];

        public IDisposable Subscribe(int[] signals, Action<int> handler)
        {
            var entry = (signals, handler);
            lock (_gate) _handlers.Add(entry);
            return new Unsubscribe(() => { lock (_gate) _handlers.Remove(entry); });
        }

        public void ReadFrom(Socket connection)
        {
            byte[] message = new byte[16];
            try
            {
                int n;
                while ((n = connection.Receive(message)) > 0)
                {
                    if (n != 2 || message[0] != (byte)'S') continue;
                    int signal = message[1];
                    List<Action<int>> handlers = [];
                    lock (_gate)
                    {
                        foreach (var (signals, handler) in _handlers) if (Array.IndexOf(signals, signal) >= 0) handlers.Add(handler);
                    }
                    if (handlers.Count == 0 && signal != 28)
                    {
                        // Not passed on by this command (a delete, a run not yet started):
                        // the front takes the default action, as runc would (WINCH's is none).
                        connection.Send([(byte)'D', (byte)signal]);
                        continue;
                    }
                    foreach (var handler in handlers)
                    {
                        try
                        {
                            handler(signal);
                        }
                        catch (Exception e)
                        {
                            // A terminal gone meanwhile (SIGWINCH), say: the command goes on.
                            Log.Error($"runc socket: relaying signal {signal}: {e.Message}");
                        }
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The command ended and closed the connection, or the front went away.
            }
            catch (Exception e)
            {
                Log.Error("runc socket: signal relay", e);
            }
        }

        private sealed class Unsubscribe(Action action) : IDisposable
        {
            public void Dispose() => action();
        }
    }
}

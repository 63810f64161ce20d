using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Containers.Cli;

/// <summary>
/// Where one hostos-runc command runs: the process of the command line itself (the
/// defaults), or hostos-init serving the command for hostos-runc's front
/// (docs/containers.md, "The front"): then the caller's stdio descriptors, its working
/// directory for relative paths, PID 1's reaper, and the signals the front relays.
/// </summary>
public sealed class RuncSession
{
    public int In { get; init; }
    public int Out { get; init; } = 1;
    public int Err { get; init; } = 2;

    /// <summary>Relative paths on the command line are taken from here; null: this process's own.</summary>
    public string? WorkingDirectory { get; init; }

    public string CgroupRoot { get; init; } = Cgroup.DefaultRoot;
    public Func<SpawnRequest, int>? Spawn { get; init; }
    public Func<int, TimeSpan?, ExitStatus?>? WaitChild { get; init; }

    /// <summary>
    /// Calls the handler with each of the signals as it arrives, until disposed; it must
    /// stop the signals' default action. Null: this process's own (PosixSignalRegistration).
    /// </summary>
    public Func<int[], Action<int>, IDisposable>? OnSignals { get; init; }

    /// <summary>Where the command runs and why, printed with --debug.</summary>
    public string? Note { get; init; }
}

/// <summary>
/// hostos-runc's commands: HostOS's container runtime behind runc's command line, so that
/// OCI tooling and scripts written for runc drive it unchanged: same commands, flags, JSON
/// and exit codes (1 on any error, the container's code for run and exec). Run by
/// hostos-runc's own program, or by hostos-init for the front (<see cref="RuncSession"/>).
/// Output goes straight to the session's descriptors: never System.Console (docs/pid1.md).
/// </summary>
public sealed class RuncCommand(RuncSession session)
{
    private const string Version = "0.1.0", SpecVersion = "1.2.0";
    private string? _logFile, _logFormat;

    /// <summary>
    /// Why a command cannot be served by another process than the caller's (hostos-init), or
    /// null. create and detached run or exec leave a process behind that runc leaves to
    /// whoever adopts the caller's orphans: <paramref name="orphansGoTo"/> (the front finds
    /// out; 0 when it could not), served only when that is PID 1 itself, not a subreaper (a
    /// shim waits for the container there). spec writes files as the caller. Arguments that
    /// do not parse are left to the caller too, which says why.
    /// </summary>
    public static string? MustRunInCaller(string[] args, int orphansGoTo)
    {
        Arguments a;
        try { a = Arguments.Parse(args); }
        catch (UsageException) { return "the arguments do not parse"; }
        string? leaves = a.Command switch
        {
            "create" => "create",
            "run" or "exec" when a.Has("detach") => $"{a.Command} --detach",
            _ => null,
        };
        if (leaves is not null && orphansGoTo != 1)
        {
            return orphansGoTo == 0
                ? $"{leaves} leaves its process to whoever adopts the caller's orphans, which could not be found out"
                : $"{leaves} leaves its process to a subreaper (pid {orphansGoTo}), not to hostos-init";
        }
        return a.Command switch
        {
            "spec" => "spec writes files as the caller",
            "create" or "start" or "state" or "kill" or "delete" or "list" or "run" or "exec" or "pause" or "resume" or "ps" => null,
            _ => $"'{a.Command}' is not served",
        };
    }

    public int Run(string[] args)
    {
        if (StepTrace.Enabled) StepTrace.Step("cli", $"main, {StepTrace.SinceProcessStart()} ms after the process started");
        string command = "";
        try
        {
            Arguments a = Arguments.Parse(args);
            if (a.Has("debug") && session.Note is { } note) Write(session.Err, $"hostos-runc: debug: {note}\n");
            _logFile = PathOf(a.Value("log"));
            _logFormat = a.Value("log-format") ?? "text";
            if (_logFormat is not ("text" or "json")) throw new UsageException($"--log-format: '{_logFormat}' is not text or json");
            if (a.Has("systemd-cgroup")) throw new UsageException("--systemd-cgroup: HostOS has no systemd; cgroups are managed by the runtime itself");
            if (a.Value("rootless") is "true") throw new UsageException("--rootless true: HostOS runs containers as root only");
            var runtime = new ContainerRuntime(PathOf(a.Value("root")) ?? ContainerRuntime.DefaultRoot, session.CgroupRoot)
            {
                Warn = message => Write(session.Err, $"hostos-runc: warning: {message}\n"),
                Spawn = session.Spawn ?? Sys.Spawn,
                WaitChild = session.WaitChild ?? ContainerRuntime.ReapOwnChild,
            };
            command = a.Command;
            return Dispatch(a, runtime);
        }
        catch (Exception e) when (e is UsageException or ContainerException or SpecException or CgroupException or IOException
                                       or UnauthorizedAccessException or InvalidDataException)
        {
            // runc's exec reserves 1..254 for the process: its own failures are 255.
            Fail(command == "exec" ? $"exec failed: {e.Message}" : e.Message);
            return command == "exec" ? 255 : 1;
        }
    }

    /// <summary>A path from the command line, relative to the caller's working directory.</summary>
    private string? PathOf(string? path) =>
        path is null || session.WorkingDirectory is null || Path.IsPathRooted(path) ? path : Path.Combine(session.WorkingDirectory, path);

    private string BundleOf(Arguments a) => PathOf(a.Value("bundle") ?? ".")!;

    private int Dispatch(Arguments a, ContainerRuntime runtime)
    {
        switch (a.Command)
        {
            case "create":
            {
                a.Expect(1, 1, "one container id");
                RefuseUnsupportedCreateFlags(a);
                runtime.Create(a.Positional[0], BundleOf(a), PathOf(a.Value("pid-file")), PathOf(a.Value("console-socket")));
                return 0;
            }
            case "run":
            {
                a.Expect(1, 1, "one container id");
                RefuseUnsupportedCreateFlags(a);
                bool detach = a.Has("detach");
                ContainerProcess c = runtime.CreateAndStart(a.Positional[0], BundleOf(a), PathOf(a.Value("pid-file")), PathOf(a.Value("console-socket")), attach: !detach);
                if (detach) { c.Detach(); return 0; }
                using var forwarding = ForwardSignals(c.Pid);
                using var proxy = c.ConsoleMaster is { } master ? new TerminalProxy(master, session) : null;
                int code = a.Has("keep") ? runtime.Wait(c.Pid) : runtime.WaitAndDelete(c);
                proxy?.Finish();
                return code;
            }
            case "start":
                a.Expect(1, 1, "one container id");
                runtime.Start(a.Positional[0]);
                return 0;
            case "state":
                a.Expect(1, 1, "one container id");
                Out(ContainerRuntime.ToJson(runtime.State(a.Positional[0])) + "\n");
                return 0;
            case "kill":
                a.Expect(1, 2, "a container id and an optional signal");
                runtime.Kill(a.Positional[0], a.Positional.Count == 2 ? Signals.Parse(a.Positional[1]) : 15, a.Has("all"));
                return 0;
            case "delete":
                a.Expect(1, 1, "one container id");
                runtime.Delete(a.Positional[0], a.Has("force"));
                return 0;
            case "list":
                a.Expect(0, 0, "no arguments");
                List(runtime.List(), a.Value("format") ?? "table", a.Has("quiet"));
                return 0;
            case "exec":
                return Exec(a, runtime);
            case "pause":
            case "resume":
                a.Expect(1, 1, "one container id");
                runtime.Pause(a.Positional[0], a.Command == "pause");
                return 0;
            case "ps":
            {
                a.Expect(1, 1, "one container id");
                List<int> pids = runtime.Processes(a.Positional[0]);
                if ((a.Value("format") ?? "table") == "json")
                {
                    Out("[" + string.Join(",", pids) + "]\n");
                    return 0;
                }
                if (a.Value("format") is string f && f != "table") throw new UsageException($"--format: '{f}' is not table or json");
                var sb = new StringBuilder("PID     CMD\n");
                foreach (int pid in pids)
                {
                    string cmd;
                    try { cmd = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim(); }
                    catch (IOException) { continue; } // exited meanwhile
                    sb.Append(pid.ToString(CultureInfo.InvariantCulture).PadRight(8)).Append(cmd).Append('\n');
                }
                Out(sb.ToString());
                return 0;
            }
            case "spec":
            {
                a.Expect(0, 0, "no arguments");
                if (a.Has("rootless")) throw new UsageException("spec --rootless: HostOS runs containers as root only");
                string config = Path.Combine(BundleOf(a), "config.json");
                if (File.Exists(config)) throw new UsageException($"File {config} exists. Remove it first");
                File.WriteAllText(config, SpecLoader.ToJson(DefaultSpec.Create()) + "\n");
                return 0;
            }
            case "version":
                Out($"hostos-runc version {Version}\nspec: {SpecVersion}\n");
                return 0;
            default:
                Out(Usage);
                return 0;
        }
    }

    private static void RefuseUnsupportedCreateFlags(Arguments a)
    {
        if (a.Has("no-pivot")) throw new UsageException("--no-pivot: HostOS always uses pivot_root");
        if (a.Value("preserve-fds") is string n && n != "0") throw new UsageException("--preserve-fds: not implemented yet in HostOS");
        if (a.Value("pidfd-socket") is not null) throw new UsageException("--pidfd-socket: not implemented yet in HostOS");
    }

    /// <summary>
    /// exec ID COMMAND...: the container's own process section with runc's overrides, or a
    /// whole process.json with --process. Foreground: waits and exits with its code.
    /// </summary>
    private int Exec(Arguments a, ContainerRuntime runtime)
    {
        if (a.Positional.Count < 1) throw new UsageException("'exec' takes a container id and a command");
        string id = a.Positional[0];
        foreach (string unsupported in new[] { "preserve-fds", "process-label", "apparmor", "cgroup", "pidfd-socket" })
        {
            if (a.Value(unsupported) is string v && !(unsupported == "preserve-fds" && v == "0")) throw new UsageException($"exec --{unsupported}: not supported by HostOS");
        }
        if (a.Value("process") is null && a.Positional.Count < 2) throw new UsageException("'exec' needs a command to run (or --process FILE)");
        bool detach = a.Has("detach");
        ContainerProcess p = runtime.Exec(id, saved => ExecProcess(a, saved), PathOf(a.Value("pid-file")), PathOf(a.Value("console-socket")), attach: !detach);
        if (detach) return 0;
        using var forwarding = ForwardSignals(p.Pid);
        using var proxy = p.ConsoleMaster is { } master ? new TerminalProxy(master, session) : null;
        int code = runtime.Wait(p.Pid);
        proxy?.Finish();
        return code;
    }

    /// <summary>The process exec runs: --process FILE whole, or the container's own with runc's overrides.</summary>
    private Process ExecProcess(Arguments a, Process process)
    {
        if (PathOf(a.Value("process")) is string file) return SpecLoader.ParseProcess(File.ReadAllText(file), file);
        process.Args = a.Positional[1..];
        process.Terminal = a.Has("tty");
        foreach (string env in a.Values("env"))
        {
            if (env.IndexOf('=') <= 0) throw new UsageException($"--env '{env}': not NAME=value");
            string name = env[..(env.IndexOf('=') + 1)];
            process.Env = [.. (process.Env ?? []).Where(e => !e.StartsWith(name, StringComparison.Ordinal)), env];
        }
        if (a.Value("cwd") is string cwd) process.Cwd = cwd;
        if (a.Value("user") is string user) process.User = ParseUser(user, process.User);
        foreach (string g in a.Values("additional-gids"))
        {
            (process.User ??= new User()).AdditionalGids = [.. process.User.AdditionalGids ?? [], ParseId(g, "--additional-gids")];
        }
        foreach (string cap in a.Values("cap"))
        {
            string name = cap.ToUpperInvariant().StartsWith("CAP_", StringComparison.Ordinal) ? cap.ToUpperInvariant() : "CAP_" + cap.ToUpperInvariant();
            if (!SpecValidator.CapabilityNames.Contains(name)) throw new UsageException($"--cap '{cap}': not a capability");
            var caps = process.Capabilities ??= new Capabilities();
            caps.Bounding = Add(caps.Bounding, name);
            caps.Effective = Add(caps.Effective, name);
            caps.Permitted = Add(caps.Permitted, name);
        }
        if (a.Has("no-new-privs")) process.NoNewPrivileges = true;
        var problems = SpecValidator.ValidateProcess(process);
        if (problems.Count > 0) throw new SpecException("exec", problems);
        return process;
    }

    private static List<string> Add(List<string>? set, string cap) => set is null ? [cap] : set.Contains(cap) ? set : [.. set, cap];

    /// <summary>runc's -u: UID[:GID], numeric (names would need the container's /etc/passwd).</summary>
    private static User ParseUser(string text, User? current)
    {
        string[] parts = text.Split(':');
        if (parts.Length > 2) throw new UsageException($"--user '{text}': expected UID[:GID]");
        return new User
        {
            Uid = ParseId(parts[0], "--user"),
            Gid = parts.Length == 2 ? ParseId(parts[1], "--user") : 0,
            AdditionalGids = current?.AdditionalGids,
            Umask = current?.Umask,
        };
    }

    private static uint ParseId(string text, string flag) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint v)
            ? v : throw new UsageException($"{flag} '{text}': a numeric id is expected (user names are not looked up)");

    /// <summary>The signals run and exec in the foreground pass on to the container's process.</summary>
    private static readonly int[] Forwarded = [1, 2, 3, 10, 12, 15];

    private IDisposable ForwardSignals(int pid) => OnSignals(session, Forwarded, signal => Sys.TryKill(pid, signal));

    /// <summary>The session's signals, or this process's own through PosixSignalRegistration.</summary>
    private static IDisposable OnSignals(RuncSession session, int[] signals, Action<int> handler)
    {
        if (session.OnSignals is { } relayed) return relayed(signals, handler);
        var registrations = new List<PosixSignalRegistration>();
        foreach (int signal in signals)
        {
            registrations.Add(PosixSignalRegistration.Create((PosixSignal)signal, context =>
            {
                context.Cancel = true;
                handler(signal);
            }));
        }
        return new Registrations(registrations);
    }

    /// <summary>
    /// run and exec attached to a process with a terminal: the caller's stdin (raw, when it
    /// is a terminal) goes to the pty master, the master's output to its stdout, and its
    /// window size follows SIGWINCH, as runc does without --console-socket.
    /// </summary>
    private sealed class TerminalProxy : IDisposable
    {
        private readonly SafeFileHandle _master, _in, _out;
        private readonly byte[]? _saved;
        private readonly Thread _output, _input;
        private readonly IDisposable _winch;
        private volatile bool _stop;

        public TerminalProxy(SafeFileHandle master, RuncSession session)
        {
            _master = master;
            // Copies of our own: in hostos-init the session's descriptor numbers are closed
            // after the command, and may be reused by then for anything else.
            _in = Sys.Duplicate(session.In);
            _out = Sys.Duplicate(session.Out);
            _saved = Sys.MakeRaw((int)_in.DangerousGetHandle());
            CopySize();
            _winch = OnSignals(session, [28], _ => CopySize()); // SIGWINCH
            _output = new Thread(() => Pump(_master, _out)) { IsBackground = true, Name = "tty-output" };
            _input = new Thread(() => Pump(_in, _master)) { IsBackground = true, Name = "tty-input" };
            _output.Start();
            _input.Start();
        }

        private void CopySize()
        {
            if (Sys.GetWindowSize((int)_in.DangerousGetHandle()) is var (rows, columns)) Sys.SetWindowSize(_master, rows, columns);
        }

        /// <summary>Copies until the end, an error (EIO: the last holder of the slave is gone) or Dispose (polled every 100 ms).</summary>
        private void Pump(SafeFileHandle from, SafeFileHandle to)
        {
            byte[] buffer = new byte[16384];
            try
            {
                while (!_stop)
                {
                    if (Sys.Poll(from, Sys.POLLIN, 100) == 0) continue;
                    int n = Sys.Read(from, buffer);
                    if (n == 0) return;
                    Sys.WriteAll((int)to.DangerousGetHandle(), buffer.AsSpan(0, n));
                }
            }
            catch (SysException) { }
        }

        /// <summary>After the process exited: the rest of its output (a process it left behind holding the slave gets 2 s).</summary>
        public void Finish() => _output.Join(TimeSpan.FromSeconds(2));

        /// <summary>Both copies stop, then our terminal is as it was and every descriptor closed: nothing outlives the command.</summary>
        public void Dispose()
        {
            _stop = true;
            _winch.Dispose();
            // Each pump wakes within its poll's 100 ms; one stuck writing to a reader that
            // reads nothing keeps its descriptors (closing them under it could let the
            // number be reused while it still writes).
            bool stopped = _output.Join(TimeSpan.FromSeconds(1)) & _input.Join(TimeSpan.FromSeconds(1));
            if (_saved is not null) Sys.RestoreTerminal((int)_in.DangerousGetHandle(), _saved);
            if (!stopped) return;
            _in.Dispose();
            _out.Dispose();
            _master.Dispose();
        }
    }

    private sealed class Registrations(List<PosixSignalRegistration> list) : IDisposable
    {
        public void Dispose() { foreach (var r in list) r.Dispose(); }
    }

    /// <summary>runc's list: a table (tabwriter, min width 12, padding 3), ids only with -q, or JSON.</summary>
    private void List(List<OciState> states, string format, bool quiet)
    {
        if (quiet)
        {
            Out(string.Concat(states.Select(s => s.Id + "\n")));
            return;
        }
        switch (format)
        {
            case "json":
                foreach (var s in states) s.Owner = "root";
                Out(ContainerRuntime.ToJson(states) + "\n");
                return;
            case "table":
                var rows = new List<string[]> { new[] { "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER" } };
                rows.AddRange(states.Select(s => new[] { s.Id, s.Pid.ToString(CultureInfo.InvariantCulture), s.Status, s.Bundle, s.Created, "root" }));
                int columns = rows[0].Length;
                int[] widths = Enumerable.Range(0, columns).Select(c => Math.Max(12, rows.Max(r => r[c].Length) + 3)).ToArray();
                var sb = new StringBuilder();
                foreach (var row in rows)
                {
                    for (int c = 0; c < columns; c++) sb.Append(c == columns - 1 ? row[c] : row[c].PadRight(widths[c]));
                    sb.Append('\n');
                }
                Out(sb.ToString());
                return;
            default:
                throw new UsageException($"--format: '{format}' is not table or json");
        }
    }

    private void Out(string text) => Write(session.Out, text);

    /// <summary>Errors go to stderr and, with --log, to that file in runc's text or JSON form.</summary>
    private void Fail(string message)
    {
        Write(session.Err, $"hostos-runc: {message}\n");
        if (_logFile is null) return;
        string time = SavedContainer.Now();
        string line = _logFormat == "json"
            ? $"{{\"level\":\"error\",\"msg\":{JsonOutput.Quote(message)},\"time\":\"{time}\"}}\n"
            : $"time=\"{time}\" level=error msg={JsonOutput.Quote(message)}\n";
        try { File.AppendAllText(_logFile, line); }
        catch (IOException) { }
    }

    private static void Write(int fd, string text) => Sys.WriteAll(fd, Encoding.UTF8.GetBytes(text));

    private const string Usage = """
        usage: hostos-runc [--root DIR] [--log FILE] [--log-format text|json] COMMAND [FLAGS] ARGS

        commands (as runc's):
          create [--bundle DIR] [--pid-file FILE] ID     set up the container; its process waits for start
          start ID                                       run the created container's process
          run [--bundle DIR] [--pid-file FILE] [--detach] [--keep] ID
                                                         create and start; wait and delete unless --detach
          state ID                                       the OCI state as JSON
          kill [--all] ID [SIGNAL]                       send SIGNAL (default TERM) to the container's init
          delete [--force] ID                            remove a stopped (or, with --force, running) container
          exec [--process FILE] [-e K=V] [--cwd DIR] [-u UID[:GID]] [--cap CAP] [--detach] [--pid-file F] ID CMD...
          list [--format table|json] [--quiet]
          pause ID / resume ID                           freeze / thaw all of its processes
          ps [--format table|json] ID                    its processes (host pids)
          spec [--bundle DIR]                            write a default config.json (as runc spec)
          version

        state lives under --root (default /run/hostos-runc). HOSTOS_CGROUP_ROOT names the cgroup v2
        mount when it is not /sys/fs/cgroup (a hybrid host's /sys/fs/cgroup/unified).
        """;
}

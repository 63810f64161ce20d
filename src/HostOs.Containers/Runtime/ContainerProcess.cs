using System.Text;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Containers.Runtime;

/// <summary>
/// The runtime side of a container's process: creates it (namespaces, cgroup, root file
/// system, attributes) up to just before the user program, then starts it. The process is
/// started by <paramref name="spawn"/> so that whoever reaps (PID 1's ProcessTable, or a
/// plain waitpid in a tool) owns its exit.
/// </summary>
public sealed class ContainerProcess
{
    private readonly FileStream _control;
    private readonly FileStream _status;

    private ContainerProcess(string id, int pid, Cgroup cgroup, (FileStream Control, FileStream Status) pipes)
    {
        (_control, _status) = pipes;
        Id = id;
        Pid = pid;
        Cgroup = cgroup;
    }

    public string Id { get; }
    /// <summary>The container's init as seen from the host (PID 1 inside).</summary>
    public int Pid { get; }
    public Cgroup Cgroup { get; }
    /// <summary>The validated spec and resolved root of a created container (null for exec).</summary>
    public RuntimeSpec? Spec { get; private init; }
    /// <summary>The state ContainerRuntime recorded for it (create and run), so run's delete need not read it back.</summary>
    internal SavedContainer? Recorded { get; set; }
    public string? Rootfs { get; private init; }
    /// <summary>The pty master when the caller asked to receive it (run or exec attached with a terminal).</summary>
    public SafeFileHandle? ConsoleMaster { get; private init; }

    /// <summary>Where a process with process.terminal sends its pty master: a console socket to connect to, or back to us.</summary>
    public sealed record Console(string? SocketPath, bool Receive);

    /// <summary>The socket the stage sends the master over, and (when receiving) our end of it.</summary>
    private sealed class TerminalLink : IDisposable
    {
        private System.Net.Sockets.Socket? _connected;
        private SafeFileHandle? _ours, _theirs;
        public SafeHandle StageEnd => (SafeHandle?)_connected?.SafeHandle ?? _theirs!;

        public static TerminalLink? Open(Process process, Console? console, string id)
        {
            if (!process.Terminal)
            {
                if (console?.SocketPath is not null) throw new ContainerException($"container {id}: a console socket was given but process.terminal is false");
                return null;
            }
            var link = new TerminalLink();
            if (console?.SocketPath is string path)
            {
                link._connected = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
                try { link._connected.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path)); }
                catch (System.Net.Sockets.SocketException e)
                {
                    link.Dispose();
                    throw new ContainerException($"container {id}: console socket {path}: {e.Message}");
                }
            }
            else if (console?.Receive == true)
            {
                (link._ours, link._theirs) = Sys.SocketPair();
            }
            else
            {
                throw new ContainerException($"container {id}: process.terminal is true: a console socket is needed (--console-socket) when the runtime does not stay attached");
            }
            return link;
        }

        /// <summary>After ready: the master the stage sent, when it was sent to us.</summary>
        public SafeFileHandle? ReceiveMaster() => _ours is null ? null : Sys.ReceiveDescriptor(_ours);

        public void Dispose()
        {
            _connected?.Dispose();
            _ours?.Dispose();
            _theirs?.Dispose();
        }
    }

    /// <summary>config.json's bytes as they were read (the runtime keeps a copy).</summary>
    public byte[]? SpecBytes { get; private init; }

    private static readonly (string Type, CloneFlags Flag)[] NamespaceFlags =
    [
        ("pid", CloneFlags.NewPid), ("network", CloneFlags.NewNet), ("mount", CloneFlags.NewNs),
        ("ipc", CloneFlags.NewIpc), ("uts", CloneFlags.NewUts), ("cgroup", CloneFlags.NewCgroup),
        ("time", CloneFlags.NewTime), // like pid: applies to the children of the unsharing thread
    ];

    /// <summary>
    /// Creates the container from BUNDLE: validated spec, cgroup with its limits, namespaces,
    /// then the stage (hostos-stage, <see cref="NativeStage"/>), which is placed in the
    /// cgroup before it may go on. Returns once the stage reports ready.
    /// With <paramref name="stateDirectory"/>, the stage waits for start on the FIFO
    /// <c>exec.fifo</c> there (opened through a handle it keeps across pivot_root), so that
    /// another process can start it (runc's create/start split); otherwise <see cref="Start"/>.
    /// Hook processes are started with <paramref name="spawn"/> and waited for with
    /// <paramref name="waitHook"/> (default: waitpid, for a caller that reaps its own children).
    /// With <paramref name="inMemory"/>, that spec is used (validated the same way) instead of
    /// BUNDLE/config.json.
    /// </summary>
    public static ContainerProcess Create(string id, string bundle, Func<SpawnRequest, int> spawn,
        SafeFileHandle? stdout = null, string cgroupRoot = Cgroup.DefaultRoot, string? stateDirectory = null,
        Func<int, TimeSpan?, ExitStatus?>? waitHook = null, Console? console = null, RuntimeSpec? inMemory = null)
    {
        StepTrace.Step("parent", "begin");
        RuntimeSpec spec;
        string rootfs;
        byte[]? specBytes = null;
        if (inMemory is null) (spec, rootfs, specBytes) = SpecLoader.LoadBundle(bundle);
        else (spec, rootfs) = SpecLoader.ForBundle(inMemory, bundle, $"container {id}");
        StepTrace.Step("parent", "spec");
        List<string> missing = NotYetImplemented.Problems(spec);
        if (missing.Count > 0) throw new SpecException(Path.Combine(bundle, "config.json"), missing);

        using var terminal = TerminalLink.Open(spec.Process!, console, id);
        var files = CgroupResources.ToFiles(spec.Linux?.Resources);
        string cgroupPath = spec.Linux?.CgroupsPath ?? $"hostos/{id}";
        Cgroup cgroup = Cgroup.Create(cgroupRoot, cgroupPath, CgroupResources.ControllersFor(files));
        StepTrace.Step("parent", "cgroup");
        try
        {
            cgroup.Apply(files);
            Sys.AttachDeviceProgram(cgroup.Path, DeviceFilter.Compile(DeviceFilter.RulesFor(spec.Linux)));
            StepTrace.Step("parent", "device filter");
            CloneFlags unshare = CloneFlags.Fs;
            var joins = new List<(string Path, CloneFlags Flag)>();
            foreach (Namespace n in spec.Linux?.Namespaces ?? [])
            {
                CloneFlags flag = NamespaceFlags.First(f => f.Type == n.Type).Flag;
                // A new cgroup namespace is made by the stage itself once it is in its cgroup:
                // the namespace's root is the cgroup of whoever unshares it.
                if (n.Path is null && flag != CloneFlags.NewCgroup) unshare |= flag;
                else if (n.Path is not null) joins.Add((n.Path, flag));
            }
            string bundlePath = Path.GetFullPath(bundle);
            string State(string status, int pid) => ContainerRuntime.ToJson(new OciState
            {
                Id = id, Pid = pid, Status = status, Bundle = bundlePath, Rootfs = rootfs, Annotations = spec.Annotations,
            });
            StagePlan plan = StagePlan.From(spec, rootfs, bundlePath) with { StartFifo = stateDirectory is not null };
            using SafeFileHandle? directory = stateDirectory is null ? null : Sys.OpenPath(stateDirectory);
            waitHook ??= HookRunner.WaitOwnChild;
            void RunCreateHooks(int stagePid)
            {
                string creating = State("creating", stagePid);
                HookRunner.Run("prestart", spec.Hooks?.Prestart, creating, spawn, waitHook);
                HookRunner.Run("createRuntime", spec.Hooks?.CreateRuntime, creating, spawn, waitHook);
                // createContainer: in the container's namespaces (its mount namespace before pivot_root).
                var inside = NamespacesOf(stagePid, ("mnt", CloneFlags.NewNs));
                HookRunner.Run("createContainer", spec.Hooks?.CreateContainer, creating,
                    request => SpawnInNamespaces(CloneFlags.Fs, inside, request, spawn), waitHook);
            }
            var (pid, control) = Launch(id, plan, plan.StartContainerHooks.Count == 0 ? null : stagePid => State("created", stagePid),
                unshare, joins, directory, cgroup, spawn, stdout, RunCreateHooks, terminal?.StageEnd);
            return new ContainerProcess(id, pid, cgroup, control) { Spec = spec, Rootfs = rootfs, SpecBytes = specBytes, ConsoleMaster = terminal?.ReceiveMaster() };
        }
        catch (Exception e)
        {
            // A failed create leaves nothing: no stage, no cgroup, no descriptor.
            TryDestroy(cgroup);
            if (e is ContainerException) throw;
            throw new ContainerException($"container {id}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Starts <paramref name="process"/> inside the running container whose init is
    /// <paramref name="containerPid"/> (runc exec): the spawning thread joins the init's
    /// namespaces, the stage joins its mount namespace itself (after which the host's paths,
    /// our binary's among them, are out of sight) and goes on as a created container does,
    /// with the process section's user, capabilities, rlimits and no_new_privs, and the
    /// container's seccomp filter (as runc applies it to exec'd processes).
    /// </summary>
    public static ContainerProcess Exec(string id, int containerPid, Process process, Spec.Seccomp? seccomp, Cgroup cgroup,
        Func<SpawnRequest, int> spawn, SafeFileHandle? stdout = null, Console? console = null)
    {
        // The mount namespace is the stage's to join (see above), not the spawning thread's.
        var joins = NamespacesOf(containerPid, ("cgroup", CloneFlags.NewCgroup));
        StagePlan plan = StagePlan.ForExec(process, seccomp);
        try
        {
            using var terminal = TerminalLink.Open(process, console, id);
            using SafeFileHandle mountNamespace = Sys.Open($"/proc/{containerPid}/ns/mnt", 0);
            var (pid, control) = Launch(id, plan, null, CloneFlags.Fs, joins, mountNamespace, cgroup, spawn, stdout, console: terminal?.StageEnd);
            return new ContainerProcess(id, pid, cgroup, control) { ConsoleMaster = terminal?.ReceiveMaster() };
        }
        catch (Exception e) when (e is not ContainerException)
        {
            throw new ContainerException($"exec in container {id}: {e.Message}", e);
        }
    }

    /// <summary>
    /// The namespaces of <paramref name="pid"/> to join: ipc, uts, net, pid, and <paramref name="last"/>.
    /// A loop, not LINQ: Select over value tuples is a generic virtual method that NativeAOT
    /// resolves at run time through its type loader, ~6k instructions of first-time code.
    /// </summary>
    private static List<(string Path, CloneFlags Flag)> NamespacesOf(int pid, (string Type, CloneFlags Flag) last)
    {
        var joins = new List<(string Path, CloneFlags Flag)>(5);
        foreach (var (type, flag) in (ReadOnlySpan<(string, CloneFlags)>)
                 [("ipc", CloneFlags.NewIpc), ("uts", CloneFlags.NewUts), ("net", CloneFlags.NewNet), ("pid", CloneFlags.NewPid), last])
        {
            joins.Add(($"/proc/{pid}/ns/{type}", flag));
        }
        return joins;
    }

    /// <summary>
    /// The stage's side of create or exec: spawn, plan (and, for startContainer hooks,
    /// <paramref name="hookState"/> of the stage's pid), cgroup, go, wait for ready.
    /// </summary>
    private static (int Pid, (FileStream Control, FileStream Status) Pipes) Launch(string id, StagePlan plan, Func<int, string>? hookState,
        CloneFlags unshare, List<(string Path, CloneFlags Flag)> joins, SafeFileHandle? extra, Cgroup cgroup,
        Func<SpawnRequest, int> spawn, SafeFileHandle? stdout, Action<int>? hookPause = null, SafeHandle? console = null)
    {
        int pid = 0;
        FileStream? status = null;
        SafeFileHandle? consoleFd = console is null ? null : new SafeFileHandle(console.DangerousGetHandle(), ownsHandle: false);
        List<SafeFileHandle> extras = [];
        if (extra is not null) extras.Add(extra);
        if (consoleFd is not null) extras.Add(consoleFd);
        int consoleNumber = consoleFd is null ? 0 : 5 + extras.Count - 1;
        FileStream? control = null;
        // The plan does not depend on the stage's pid: made (and refused, if it must be)
        // before anything is spawned.
        var framedPlan = new MemoryStream();
        (plan with { ConsoleFd = consoleNumber }).WriteFramed(framedPlan);
        string stagePath = NativeStage.Path;
        try
        {
            var (controlRead, controlWrite) = Sys.Pipe();
            control = new FileStream(controlWrite, FileAccess.Write, 1);
            using (controlRead)
            {
                var (statusRead, statusWrite) = Sys.Pipe();
                status = new FileStream(statusRead, FileAccess.Read, 1);
                using (statusWrite)
                {
                    pid = SpawnInNamespaces(unshare, joins, new SpawnRequest
                    {
                        Path = stagePath,
                        Args = [stagePath],
                        Environment = [],
                        ExtraFds = [controlRead, statusWrite, .. extras],
                        Stdout = stdout,
                        Stderr = stdout,
                        NewSession = true,
                    }, spawn);
                }
                StepTrace.Step("parent", "spawned stage");
                // The plan first (the pipe holds it while the stage starts), then, once the
                // stage is in its cgroup, go: it runs nothing of the container's before that.
                // A stage that refuses the plan reports why and exits: writing to it then fails
                // (EPIPE), and its report is what the caller needs to see.
                if (TryWrite(control, c =>
                    {
                        framedPlan.WriteTo(c);
                        if (hookState is not null) StagePlan.WriteFramedState(c, hookState(pid));
                    }))
                {
                    cgroup.AddProcess(pid);
                    TryWrite(control, c => c.WriteByte((byte)'G'));
                }
                int first = status.ReadByte();
                if (first == 'H')
                {
                    // The stage waits before pivot_root for the hooks that run now.
                    hookPause!(pid);
                    control.WriteByte((byte)'h');
                    control.Flush();
                    first = status.ReadByte();
                }
                string report = first < 0 ? "" : (char)first + (first == 'R' ? "" : ReadAll(status));
                StepTrace.Step("parent", "stage ready");
                if (report != "R")
                {
                    throw new ContainerException($"container {id}: " + (report.StartsWith('E') ? Failure(report) : "the stage exited before it was ready"));
                }
            }
            return (pid, (control, status));
        }
        catch
        {
            control?.Dispose();
            status?.Dispose();
            if (pid != 0) Sys.TryKill(pid, Sys.SIGKILL);
            throw;
        }
    }

    private static bool TryWrite(FileStream control, Action<FileStream> write)
    {
        try
        {
            write(control);
            control.Flush();
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// Lets the user program run, and returns once the stage has execve'd it (its status
    /// pipe closes) or throws what stopped it (credentials, seccomp, exec, a startContainer hook).
    /// </summary>
    public void Start()
    {
        _control.WriteByte((byte)'S');
        _control.Flush();
        _control.Dispose();
        string report = ReadAll(_status);
        _status.Dispose();
        if (report.StartsWith('E')) throw new ContainerException($"container {Id}: {Failure(report)}");
    }

    /// <summary>
    /// Lets go of the control pipe without starting: for a container whose stage waits on
    /// its start FIFO (created with a state directory), which outlives this process.
    /// </summary>
    public void Detach()
    {
        _control.Dispose();
        _status.Dispose();
    }

    /// <summary>Removes what the container owned once its process is gone and reaped.</summary>
    public void Delete()
    {
        _control.Dispose();
        _status.Dispose();
        StepTrace.Step("parent", "exited");
        Cgroup.Destroy(TimeSpan.FromSeconds(10));
        StepTrace.Step("parent", "deleted");
    }

    private static void TryDestroy(Cgroup cgroup)
    {
        try { cgroup.Destroy(TimeSpan.FromSeconds(5)); } catch (CgroupException) { }
    }

    /// <summary>
    /// The stage's 'E' report as a message: it sends the step, the operation, its target and
    /// errno, NUL-separated (errno 0: the operation is the whole message), worded here as
    /// every system call's failure is.
    /// </summary>
    internal static string Failure(string report)
    {
        string[] parts = report[1..].Split('\0');
        if (parts.Length != 4 || !int.TryParse(parts[3], System.Globalization.CultureInfo.InvariantCulture, out int errno))
        {
            return "the stage's report is malformed: " + report[1..].Replace('\0', ' ');
        }
        string step = parts[0], operation = parts[1];
        return errno == 0 ? $"{step}: {operation}" : $"{step}: {new SysException(operation, parts[2].Length == 0 ? null : parts[2], errno).Message}";
    }

    /// <summary>
    /// Everything the stage writes until it closes its end (or execs): nothing, or 'E' and a
    /// message. Read by read(2) from the descriptor (the stream is unbuffered: it holds nothing
    /// back), not Stream.CopyTo, which sets up the shared array pool in every short-lived process.
    /// </summary>
    private static string ReadAll(FileStream status) =>
        Encoding.UTF8.GetString(Sys.ReadToEnd(status.SafeFileHandle, "the stage's status pipe"));

    /// <summary>
    /// A throwaway OS thread unshares the new namespaces and joins the given ones (both are
    /// per-thread for all but user namespaces), then posix_spawns the stage, which inherits
    /// them; the thread ends, the rest of the process never changed namespace (FACTS.md).
    /// </summary>
    private static int SpawnInNamespaces(CloneFlags unshare, List<(string Path, CloneFlags Flag)> joins, SpawnRequest request,
        Func<SpawnRequest, int> spawn)
    {
        int pid = 0;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Sys.Unshare(unshare);
                foreach (var (path, flag) in joins)
                {
                    using SafeFileHandle ns = Sys.Open(path, 0); // O_RDONLY, by open(2): no FileStream checks or lock
                    Sys.SetNs(ns, flag, path);
                }
                pid = spawn(request);
            }
            catch (Exception e)
            {
                failure = e;
            }
        }) { IsBackground = true, Name = "ns-spawn" };
        thread.Start();
        thread.Join();
        if (failure is not null) throw new ContainerException($"namespaces: {failure.Message}", failure);
        return pid;
    }
}

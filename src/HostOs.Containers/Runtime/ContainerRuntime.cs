using System.Globalization;
using System.Text.Json;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Containers.Runtime;

/// <summary>
/// The OCI lifecycle over a state root (runc's <c>--root</c>): one directory per container
/// holding <c>state.json</c> and, between create and start, <c>exec.fifo</c>. Every command
/// is a fresh process that reads the state, checks the container's init is still the
/// process it was (pid and start time), and acts; create writes the state once. Status is
/// never stored, always observed: a dead or recycled pid is "stopped", a live init whose
/// FIFO still exists is "created", otherwise "running" (runc's rules).
/// docs/containers.md, "The runc-compatible front".
/// </summary>
public sealed class ContainerRuntime(string root, string cgroupRoot = Cgroup.DefaultRoot)
{
    public const string DefaultRoot = "/run/hostos-runc";
    private const string StateFile = "state.json", FifoName = "exec.fifo", ConfigCopy = "config.json";

    public string Root { get; } = root;

    /// <summary>
    /// How the container's processes (stages, hooks) are started: posix_spawn by default, for
    /// a command line that reaps its own children; hostos-init passes its one reaper's start
    /// (it serves hostos-runc's commands itself: docs/containers.md, "The front").
    /// </summary>
    public Func<SpawnRequest, int> Spawn { get; init; } = Sys.Spawn;

    /// <summary>How a process started by <see cref="Spawn"/> is waited for (null timeout: until it exits); waitpid by default.</summary>
    public Func<int, TimeSpan?, ExitStatus?> WaitChild { get; init; } = ReapOwnChild;

    /// <summary>waitpid on a child of this process (with a timeout: polled, then killed).</summary>
    public static ExitStatus? ReapOwnChild(int pid, TimeSpan? timeout)
    {
        if (timeout is not null) return HookRunner.WaitOwnChild(pid, timeout);
        Sys.WaitPid(pid, 0, out ExitStatus status);
        return status;
    }

    /// <summary>Where failures that must not stop anything go (poststart and poststop hooks).</summary>
    public Action<string> Warn { get; init; } = _ => { };

    /// <summary>runc's rule for ids: letters, digits, <c>_ + - .</c>; not "." or "..".</summary>
    public static void ValidateId(string id)
    {
        if (id.Length == 0 || id is "." or ".." || !id.All(c => char.IsLetterOrDigit(c) || c is '_' or '+' or '-' or '.'))
        {
            throw new ContainerException($"invalid container id '{id}': use letters, digits and _ + - . only");
        }
    }

    /// <summary>
    /// create: the container is set up and its init waits on exec.fifo; this process may
    /// exit (the init is re-parented). Fails if the id is taken; a failed create leaves nothing.
    /// </summary>
    public OciState Create(string id, string bundle, string? pidFile, string? consoleSocket = null)
    {
        var (c, saved) = CreateRecorded(id, bundle, pidFile, fifo: true, new ContainerProcess.Console(consoleSocket, Receive: false), c => c.Detach());
        return ToOci(saved, ContainerStatus.Created);
    }

    /// <summary>
    /// run (foreground): create and start with this process as the init's parent; the caller
    /// waits with <see cref="WaitAndDelete"/>. The state is recorded as for create, so other
    /// commands see the container while it runs.
    /// </summary>
    /// <param name="attach">With process.terminal and no console socket, receive the pty master (ContainerProcess.ConsoleMaster) to proxy it.</param>
    public ContainerProcess CreateAndStart(string id, string bundle, string? pidFile, string? consoleSocket = null, bool attach = false)
    {
        var (c, saved) = CreateRecorded(id, bundle, pidFile, fifo: false,
            new ContainerProcess.Console(consoleSocket, Receive: attach && consoleSocket is null), c => c.Start());
        if (saved.Spec!.Hooks?.Poststart is { Count: > 0 } poststart)
        {
            HookRunner.RunReporting("poststart", poststart, ToJson(ToOci(saved, ContainerStatus.Running)), Warn, Spawn, WaitChild);
        }
        return c;
    }

    /// <summary>
    /// create and run's common part: reserve the id, create (with exec.fifo when another
    /// process will start it), record the state and pid file, then <paramref name="then"/>.
    /// Anything failing on the way leaves nothing: no stage (killed and reaped: it is our
    /// child until we exit), no cgroup, no state directory.
    /// </summary>
    private (ContainerProcess, SavedContainer) CreateRecorded(string id, string bundle, string? pidFile, bool fifo,
        ContainerProcess.Console console, Action<ContainerProcess> then)
    {
        string dir = Reserve(id);
        ContainerProcess? c = null;
        try
        {
            if (fifo) Sys.MakeFifo(Path.Combine(dir, FifoName), Convert.ToInt32("622", 8));
            c = ContainerProcess.Create(id, bundle, Spawn, cgroupRoot: cgroupRoot, stateDirectory: fifo ? dir : null, waitHook: WaitChild, console: console);
            SavedContainer saved = Save(c, bundle);
            c.Recorded = saved;
            if (pidFile is not null) WritePidFile(pidFile, c.Pid);
            then(c);
            return (c, saved);
        }
        catch (Exception)
        {
            if (c is not null)
            {
                Sys.TryKill(c.Pid, Sys.SIGKILL);
                WaitChild(c.Pid, null);
                TryDestroy(c.Cgroup);
            }
            RemoveDirectory(dir);
            throw;
        }
    }

    /// <summary>Waits for a child of ours (a run's init or an exec'd process); its exit code as a shell reports it.</summary>
    public int Wait(int pid) => WaitChild(pid, null)!.Value.ShellCode;

    /// <summary>run's end: the init has exited; everything the container owned goes.</summary>
    public int WaitAndDelete(ContainerProcess c)
    {
        int code = Wait(c.Pid);
        StepTrace.Step("parent", "exited");
        // Reaped just now: stopped, and its state is the one CreateAndStart recorded.
        string dir = DirOf(c.Id);
        if (Directory.Exists(dir)) DeleteStopped(dir, c.Recorded!, c.Spec!.Hooks?.Poststop);
        StepTrace.Step("parent", "deleted");
        return code;
    }

    /// <summary>start: opens exec.fifo, which lets the waiting init execve the user program.</summary>
    public void Start(string id)
    {
        SavedContainer c = Load(id, withSpec: true);
        // One start at a time: a second one would wait forever on a FIFO nobody writes.
        using var held = LockContainer(id);
        ContainerStatus status = StatusOf(c);
        if (status != ContainerStatus.Created)
        {
            throw new ContainerException(status == ContainerStatus.Stopped
                ? $"cannot start a container that has stopped: {id}"
                : $"cannot start an already running container: {id}");
        }
        string fifoPath = Path.Combine(DirOf(id), FifoName);
        // Non-blocking, so a dead init cannot hang us: poll until it has written its byte.
        using SafeFileHandle fifo = Sys.Open(fifoPath, Sys.O_NONBLOCK);
        using var reader = new FileStream(fifo, FileAccess.Read, 1);
        while (true)
        {
            short events = Sys.Poll(fifo, Sys.POLLIN, 100);
            if ((events & Sys.POLLIN) != 0 && reader.ReadByte() >= 0) break;
            if ((events & Sys.POLLHUP) != 0 || StatusOf(c) == ContainerStatus.Stopped)
            {
                throw new ContainerException($"container {id}: its init exited before it could start (see the container's stderr)");
            }
        }
        File.Delete(fifoPath);
        HookRunner.RunReporting("poststart", c.Spec!.Hooks?.Poststart, ToJson(ToOci(c, ContainerStatus.Running)), Warn, Spawn, WaitChild);
    }

    public OciState State(string id)
    {
        SavedContainer c = Load(id);
        return ToOci(c, StatusOf(c));
    }

    /// <summary>Every container under the root whose state can be read, sorted by id.</summary>
    public List<OciState> List()
    {
        var list = new List<OciState>();
        if (!Directory.Exists(Root)) return list;
        foreach (string dir in Directory.EnumerateDirectories(Root).Order(StringComparer.Ordinal))
        {
            string id = Path.GetFileName(dir);
            if (!File.Exists(Path.Combine(dir, StateFile))) continue; // being created
            try
            {
                SavedContainer c = Load(id);
                list.Add(ToOci(c, StatusOf(c)));
            }
            catch (ContainerNotFoundException)
            {
                // deleted while we looked
            }
            catch (ContainerException e)
            {
                Warn(e.Message); // one unreadable state must not hide the others
            }
        }
        return list;
    }

    /// <summary>pause: every process of the container frozen (cgroup v2 freezer); resume: thawed.</summary>
    public void Pause(string id, bool pause)
    {
        SavedContainer c = Load(id);
        ContainerStatus status = StatusOf(c);
        if (pause && status != ContainerStatus.Running) throw new ContainerException($"container {id} is not running ({Name(status)})");
        if (!pause && status != ContainerStatus.Paused) throw new ContainerException($"container {id} is not paused ({Name(status)})");
        Cgroup.Open(c.CgroupRoot, c.CgroupPath).Freeze(pause, TimeSpan.FromSeconds(10));
    }

    /// <summary>ps: the host pids of the container's processes (its cgroup and below).</summary>
    public List<int> Processes(string id)
    {
        SavedContainer c = Load(id);
        List<int> pids = Cgroup.Open(c.CgroupRoot, c.CgroupPath).Processes();
        pids.Sort();
        return pids;
    }

    /// <summary>kill: a signal to the init, or with <paramref name="all"/> to every process in its cgroup.</summary>
    public void Kill(string id, int signal, bool all)
    {
        SavedContainer c = Load(id);
        ContainerStatus status = StatusOf(c);
        if (status == ContainerStatus.Stopped && !all)
        {
            throw new ContainerException($"container {id} is not running");
        }
        if (all)
        {
            Cgroup cgroup = Cgroup.Open(c.CgroupRoot, c.CgroupPath);
            if (signal == Sys.SIGKILL) cgroup.Kill();
            else foreach (int pid in cgroup.Processes()) Sys.TryKill(pid, signal);
            return;
        }
        if (!Sys.TryKill(c.Pid, signal)) throw new ContainerException($"container {id} is not running");
    }

    /// <summary>
    /// delete: a stopped or created container is removed (a created one is killed first, as
    /// runc does); a running one only with <paramref name="force"/>. With force an unknown
    /// id is not an error (runc's behaviour). Nothing it owned is left: processes, cgroup, state.
    /// </summary>
    public void Delete(string id, bool force)
    {
        ValidateId(id);
        string dir = DirOf(id);
        if (!Directory.Exists(dir))
        {
            if (force) return;
            throw new ContainerNotFoundException(id);
        }
        SavedContainer? c = File.Exists(Path.Combine(dir, StateFile)) ? Load(id) : null;
        List<Hook>? poststop = null;
        if (c is not null && File.Exists(Path.Combine(dir, ConfigCopy)))
        {
            // Read before the directory goes; an unreadable copy must not block the delete.
            try { poststop = SpecLoader.ParseSaved(File.ReadAllBytes(Path.Combine(dir, ConfigCopy)), "config.json").Hooks?.Poststop; }
            catch (SpecException e) { Warn($"container {id}: its saved config.json: {e.Message}"); }
        }
        if (c is not null)
        {
            ContainerStatus status = StatusOf(c);
            if (status is ContainerStatus.Running or ContainerStatus.Paused && !force)
            {
                throw new ContainerException($"cannot delete container {id} that is not stopped: {Name(status)}");
            }
            if (status != ContainerStatus.Stopped) Sys.TryKill(c.Pid, Sys.SIGKILL);
            DeleteStopped(dir, c, poststop);
            return;
        }
        else if (!force)
        {
            throw new ContainerException($"container {id} is still being created (use --force to remove what it left)");
        }
        RemoveDirectory(dir);
    }

    private void DeleteStopped(string dir, SavedContainer c, List<Hook>? poststop)
    {
        Cgroup.Open(c.CgroupRoot, c.CgroupPath).Destroy(TimeSpan.FromSeconds(10));
        RemoveDirectory(dir);
        if (poststop is { Count: > 0 }) HookRunner.RunReporting("poststop", poststop, ToJson(ToOci(c, ContainerStatus.Stopped)), Warn, Spawn, WaitChild);
    }

    /// <summary>
    /// exec: runs <paramref name="process"/> inside the container, in its cgroup and all its
    /// namespaces. <paramref name="choose"/> gets the container's own process section (its
    /// user, capabilities, env, as saved at create) and returns the one to run. The returned
    /// process is our child; the caller waits for it or not (detach).
    /// </summary>
    public ContainerProcess Exec(string id, Func<Process, Process> choose, string? pidFile, string? consoleSocket = null, bool attach = false)
    {
        SavedContainer c = Load(id, withSpec: true);
        ContainerStatus status = StatusOf(c);
        if (status == ContainerStatus.Paused) throw new ContainerException($"cannot exec in a paused container: {id}");
        if (status is not (ContainerStatus.Running or ContainerStatus.Created))
        {
            throw new ContainerException($"cannot exec in a stopped container: {id}");
        }
        Process own = c.Spec!.Process ?? throw new ContainerException($"container {id}: its saved config.json has no process section");
        ContainerProcess p = ContainerProcess.Exec(id, c.Pid, choose(own), c.Spec.Linux?.Seccomp, Cgroup.Open(c.CgroupRoot, c.CgroupPath), Spawn,
            console: new ContainerProcess.Console(consoleSocket, Receive: attach && consoleSocket is null));
        if (pidFile is not null) WritePidFile(pidFile, p.Pid);
        p.Start();
        return p;
    }

    // ----- state directory

    private string DirOf(string id) => Path.Combine(Root, id);

    /// <summary>ROOT/ID/lock, flock'ed exclusively (waits up to 10 s).</summary>
    private IDisposable LockContainer(string id)
    {
        try
        {
            return FileLock.Acquire(Path.Combine(DirOf(id), "lock"), TimeSpan.FromSeconds(10), $"container {id}");
        }
        catch (IOException e)
        {
            throw new ContainerException(e.Message, e);
        }
    }

    /// <summary>Makes ROOT/ID, failing if it exists: the one place two creates of an id race.</summary>
    private string Reserve(string id)
    {
        ValidateId(id);
        Directory.CreateDirectory(Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string dir = DirOf(id);
        try
        {
            Sys.MakeDirectory(dir, Convert.ToInt32("711", 8));
        }
        catch (SysException e) when (e.Errno == Errno.EEXIST)
        {
            throw new ContainerException($"container with id exists: {id}");
        }
        return dir;
    }

    private SavedContainer Save(ContainerProcess c, string bundle)
    {
        var saved = new SavedContainer
        {
            Id = c.Id,
            Pid = c.Pid,
            PidStartTime = ProcessStat.StartTime(c.Pid) ?? 0,
            Bundle = Path.GetFullPath(bundle),
            Rootfs = c.Rootfs!,
            Created = SavedContainer.Now(),
            Annotations = c.Spec!.Annotations,
            CgroupRoot = c.Cgroup.Root,
            CgroupPath = c.Cgroup.Relative,
            Spec = c.Spec,
        };
        string dir = DirOf(c.Id);
        // The spec as it was read; later commands must not see later edits of the bundle.
        Sys.WriteFile(Path.Combine(dir, ConfigCopy), c.SpecBytes!);
        AtomicFile.Write(Path.Combine(dir, StateFile), saved.ToJson(), durable: false);
        StepTrace.Step("parent", "state saved");
        return saved;
    }

    private SavedContainer Load(string id, bool withSpec = false)
    {
        ValidateId(id);
        string path = Path.Combine(DirOf(id), StateFile);
        byte[] json = Sys.TryReadFile(path) ?? throw new ContainerNotFoundException(id);
        SavedContainer saved;
        try
        {
            saved = SavedContainer.FromJson(json);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ContainerException($"container {id}: state file {path} is unreadable: {e.Message}");
        }
        if (withSpec)
        {
            string config = Path.Combine(DirOf(id), ConfigCopy);
            saved.Spec = SpecLoader.ParseSaved(Sys.ReadFile(config), config);
        }
        return saved;
    }

    /// <summary>Observed, never stored: see the class comment.</summary>
    private ContainerStatus StatusOf(SavedContainer c)
    {
        if (ProcessStat.StartTime(c.Pid) is not ulong start || start != c.PidStartTime) return ContainerStatus.Stopped;
        if (File.Exists(Path.Combine(DirOf(c.Id), FifoName))) return ContainerStatus.Created;
        return Cgroup.Open(c.CgroupRoot, c.CgroupPath).Frozen() ? ContainerStatus.Paused : ContainerStatus.Running;
    }

    /// <summary>The OCI state's status string (a switch: Enum.ToString goes through reflection metadata).</summary>
    private static string Name(ContainerStatus status) => status switch
    {
        ContainerStatus.Created => "created",
        ContainerStatus.Running => "running",
        ContainerStatus.Paused => "paused",
        _ => "stopped",
    };

    private static OciState ToOci(SavedContainer c, ContainerStatus status) => new()
    {
        Id = c.Id,
        Pid = status == ContainerStatus.Stopped ? 0 : c.Pid,
        Status = Name(status),
        Bundle = c.Bundle,
        Rootfs = c.Rootfs,
        Created = c.Created,
        Annotations = c.Annotations is { Count: > 0 } ? c.Annotations : null,
    };

    /// <summary>As runc prints state: indented.</summary>
    public static string ToJson(OciState state) => state.ToJson(indented: true);
    /// <summary>As runc prints list --format json: one line.</summary>
    public static string ToJson(List<OciState> states) => OciState.ToJson(states, indented: false);

    /// <summary>runc writes the bare number, atomically (a reader never sees half a pid).</summary>
    private static void WritePidFile(string path, int pid) =>
        AtomicFile.Write(Path.GetFullPath(path), System.Text.Encoding.UTF8.GetBytes(pid.ToString()), durable: false); // no culture: a pid has no sign

    private static void RemoveDirectory(string dir)
    {
        // What we put there, by name first: a recursive delete enumerates the directory.
        Sys.TryUnlink(Path.Combine(dir, StateFile));
        Sys.TryUnlink(Path.Combine(dir, ConfigCopy));
        Sys.TryUnlink(Path.Combine(dir, FifoName));
        if (Sys.TryRemoveDirectory(dir)) return;
        try { Directory.Delete(dir, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }

    private static void TryDestroy(Cgroup cgroup)
    {
        try { cgroup.Destroy(TimeSpan.FromSeconds(5)); } catch (CgroupException) { }
    }
}

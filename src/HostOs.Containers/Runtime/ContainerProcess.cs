using System.Text;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
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

    private ContainerProcess(string id, int pid, Cgroup cgroup, FileStream control)
    {
        Id = id;
        Pid = pid;
        Cgroup = cgroup;
        _control = control;
    }

    public string Id { get; }
    /// <summary>The container's init as seen from the host (PID 1 inside).</summary>
    public int Pid { get; }
    public Cgroup Cgroup { get; }

    private static readonly (string Type, CloneFlags Flag)[] NamespaceFlags =
    [
        ("pid", CloneFlags.NewPid), ("network", CloneFlags.NewNet), ("mount", CloneFlags.NewNs),
        ("ipc", CloneFlags.NewIpc), ("uts", CloneFlags.NewUts), ("cgroup", CloneFlags.NewCgroup),
        ("time", CloneFlags.NewTime), // like pid: applies to the children of the unsharing thread
    ];

    /// <summary>
    /// Creates the container from BUNDLE: validated spec, cgroup with its limits, namespaces,
    /// then the stage (<paramref name="stagePath"/> run as <c>container-init</c>), which is
    /// placed in the cgroup before it may go on. Returns once the stage reports ready.
    /// </summary>
    public static ContainerProcess Create(string id, string bundle, string stagePath, Func<SpawnRequest, int> spawn,
        SafeFileHandle? stdout = null, string cgroupRoot = Cgroup.DefaultRoot)
    {
        Trace.Step("parent", "begin");
        var (spec, rootfs) = SpecLoader.LoadBundle(bundle);
        Trace.Step("parent", "spec");
        List<string> missing = NotYetImplemented.Problems(spec);
        if (missing.Count > 0) throw new SpecException(Path.Combine(bundle, "config.json"), missing);

        var files = CgroupResources.ToFiles(spec.Linux?.Resources);
        string cgroupPath = spec.Linux?.CgroupsPath ?? $"hostos/{id}";
        Cgroup cgroup = Cgroup.Create(cgroupRoot, cgroupPath, CgroupResources.ControllersFor(files));
        Trace.Step("parent", "cgroup");
        int pid = 0;
        FileStream? control = null;
        try
        {
            cgroup.Apply(files);
            var (controlRead, controlWrite) = Sys.Pipe();
            control = new FileStream(controlWrite, FileAccess.Write, 1);
            using (controlRead)
            {
                var (statusRead, statusWrite) = Sys.Pipe();
                using var status = new FileStream(statusRead, FileAccess.Read, 1);
                using (statusWrite)
                {
                    pid = SpawnInNamespaces(spec, new SpawnRequest
                    {
                        Path = stagePath,
                        Args = [stagePath, Stage.Mode],
                        Environment = Trace.Enabled ? ["HOSTOS_TRACE=1"] : [],
                        ExtraFds = [controlRead, statusWrite],
                        Stdout = stdout,
                        Stderr = stdout,
                        NewSession = true,
                    }, spawn);
                }
                Trace.Step("parent", "spawned stage");
                // The plan first (the pipe holds it while the stage starts), then, once the
                // stage is in its cgroup, go: it runs nothing of the container's before that.
                var plan = new MemoryStream();
                StagePlan.From(spec, rootfs).Write(plan);
                control.Write(plan.GetBuffer(), 0, (int)plan.Length);
                cgroup.AddProcess(pid);
                control.WriteByte((byte)'G');
                control.Flush();
                string report = ReadAll(status);
                Trace.Step("parent", "stage ready");
                if (report != "R")
                {
                    throw new ContainerException($"container {id}: " + (report.StartsWith('E') ? report[1..] : "the stage exited before it was ready"));
                }
            }
            return new ContainerProcess(id, pid, cgroup, control);
        }
        catch (Exception e)
        {
            // A failed create leaves nothing: no stage, no cgroup, no descriptor.
            control?.Dispose();
            if (pid != 0) Sys.TryKill(pid, Sys.SIGKILL);
            TryDestroy(cgroup);
            if (e is ContainerException) throw;
            throw new ContainerException($"container {id}: {e.Message}", e);
        }
    }

    /// <summary>Lets the user program run (the stage execve's it).</summary>
    public void Start()
    {
        _control.WriteByte((byte)'S');
        _control.Flush();
        _control.Dispose();
    }

    /// <summary>Removes what the container owned once its process is gone and reaped.</summary>
    public void Delete()
    {
        _control.Dispose();
        Trace.Step("parent", "exited");
        Cgroup.Destroy(TimeSpan.FromSeconds(10));
        Trace.Step("parent", "deleted");
    }

    private static void TryDestroy(Cgroup cgroup)
    {
        try { cgroup.Destroy(TimeSpan.FromSeconds(5)); } catch (CgroupException) { }
    }

    /// <summary>Everything the stage writes before it closes its end: 'R' (it waits for start) or 'E...'.</summary>
    private static string ReadAll(FileStream status)
    {
        var sb = new StringBuilder();
        byte[] buffer = new byte[1024];
        int n;
        while ((n = status.Read(buffer)) > 0)
        {
            sb.Append(Encoding.UTF8.GetString(buffer, 0, n));
            if (sb.ToString() == "R") break; // ready: the stage keeps the pipe open until exec
        }
        return sb.ToString();
    }

    /// <summary>
    /// A throwaway OS thread unshares the new namespaces and joins the given ones (both are
    /// per-thread for all but user namespaces), then posix_spawns the stage, which inherits
    /// them; the thread ends, the rest of the process never changed namespace (FACTS.md).
    /// </summary>
    private static int SpawnInNamespaces(RuntimeSpec spec, SpawnRequest request, Func<SpawnRequest, int> spawn)
    {
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
        int pid = 0;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Sys.Unshare(unshare);
                foreach (var (path, flag) in joins)
                {
                    using SafeFileHandle ns = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
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

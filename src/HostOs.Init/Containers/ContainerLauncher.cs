using System.Net.Sockets;
using System.Text;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Containers;

/// <summary>
/// Runs a workload container through the embedded runtime, from inside PID 1: a bundle
/// under /run/hostos/containers/NAME (an overlay root made of the baked image's layers,
/// with a tmpfs upper directory: system containers start from the image every time; the
/// spec stays in memory: no JSON serializer for it in PID 1), the stage being hostos-stage,
/// every process spawned through the init's process table so the one reaper sees its exit,
/// and the container's stdout/stderr in the log under its name. Each run is created from
/// scratch and removed entirely (cgroup, mounts, directory) once its init has exited.
/// </summary>
internal sealed class ContainerLauncher(ContainerDefinition definition, ProcessTable processes, ContainerStorage? storage = null) : IServiceLauncher
{
    private readonly ContainerStorage _storage = storage ?? ContainerStorage.Baked;
    public const string RunDirectory = "/run/hostos/containers";

    private readonly StartedProcesses _started = new(processes);
    /// <summary>The running container's init, 0 between runs: where published ports relay to.</summary>
    private volatile int _runningPid;
    private BakedImage? _image;
    /// <summary>The published ports' listeners: opened at the first start, closed by <see cref="Release"/>.</summary>
    private readonly List<Socket> _listeners = [];

    /// <summary>
    /// One container set up or torn down at a time (mounts, cgroups, device programs,
    /// namespaces, exec). Once in 14 boots under TCG, three containers created at once
    /// left both vCPUs of the guest in a soft lockup (ns-spawn and a thread-pool thread of
    /// PID 1 in the kernel; docs/testing.md); runc once did the same. Serialized, a start
    /// costs its ~0.1-0.3 s after the one before, and the kernel never runs two at once.
    /// </summary>
    private static readonly Lock Setup = new();

    public Task PrepareAsync(CancellationToken stop) => _storage.PrepareAsync(stop);

    public ServiceRun Start(IReadOnlyList<string> environment)
    {
        lock (Setup) return StartSerialized(environment);
    }

    private ServiceRun StartSerialized(IReadOnlyList<string> environment)
    {
        string name = definition.Name;
        string bundle = Path.Combine(RunDirectory, name);
        string rootfs = Path.Combine(bundle, "rootfs");
        RemoveBundle(bundle, rootfs); // what a run before an init restart may have left
        BakedImage image = _image ??= _storage.LoadImage(definition);
        if (definition.Ports.Count > 0 && _listeners.Count == 0)
        {
            // Listening before the container exists: connections meanwhile are closed at once.
            try
            {
                Publish();
            }
            catch (SocketException e)
            {
                Release();
                throw new InvalidOperationException($"cannot publish its ports: {e.Message}", e);
            }
        }

        ContainerProcess container;
        HostOs.Init.Network.BridgeAttachment? bridge = null;
        var (pumpRead, output) = Sys.Pipe();
        try
        {
            Directory.CreateDirectory(bundle);
            MountRoot(image, bundle, rootfs);
            try
            {
                IReadOnlyList<BindMount> volumes = _storage.Volumes(rootfs);
                if (definition.Network == ContainerNetwork.Bridge && File.Exists(HostOs.Init.Network.DhcpClient.ResolvConf))
                {
                    // The lease's name servers, as they are at the start (reached through the bridge's NAT).
                    volumes = [.. volumes, new BindMount { Source = HostOs.Init.Network.DhcpClient.ResolvConf, Target = "/etc/resolv.conf", Readonly = true }];
                }
                RuntimeSpec spec = WorkloadSpec.Build(definition, ImageDefaults.Of(image), $"{_storage.CgroupParent}/{name}", environment, volumes);
                container = ContainerProcess.Create(name, bundle, Spawn, output, waitHook: WaitHook, inMemory: spec);
            }
            finally
            {
                output.Dispose();
            }
            try
            {
                // On the bridge before its program runs: its network is there from its first instruction.
                if (definition.Network == ContainerNetwork.Bridge) bridge = HostOs.Init.Network.ContainerBridge.Attach(container.Pid);
                container.Start();
            }
            catch
            {
                bridge?.Release();
                Sys.TryKill(container.Pid, Sys.SIGKILL);
                _started.ExitOf(container.Pid).Wait();
                container.Delete();
                throw;
            }
        }
        catch
        {
            pumpRead.Dispose();
            RemoveBundle(bundle, rootfs);
            throw;
        }
        OutputPump.Start(name, pumpRead);
        int pid = container.Pid;
        _runningPid = pid;
        if (bridge is not null) Log.Info($"{definition.Kind} {name}: on bridge {HostOs.Init.Network.ContainerBridge.Name} as {bridge.Address}");

        return new ServiceRun
        {
            Pid = pid,
            Exited = _started.ExitOf(pid),
            Terminate = () => Terminate(container.Cgroup, pid),
            Kill = () => KillAll(container.Cgroup, pid),
            Probe = definition is ServiceContainer { Health: HealthProbe probe } ? token => ProbeAsync(probe, container, token) : null,
            Cleanup = () =>
            {
                _runningPid = 0;
                _started.Forget(pid);
                lock (Setup)
                {
                    container.Delete();
                    bridge?.Release();
                    RemoveBundle(bundle, rootfs);
                }
                // An app's writable layer is on state and may be large: deleted without
                // holding up every other container's start. Its own next start waits for this.
                if (_storage.WritableLayer is string w && Directory.Exists(w)) Directory.Delete(w, recursive: true);
            },
        };
    }

    /// <summary>Runs an onboot container to completion; its exit status, or a timeout error.</summary>
    public async Task<ExitStatus> RunToCompletionAsync(TimeSpan timeout)
    {
        ServiceRun run = Start([]);
        try
        {
            if (await Task.WhenAny(run.Exited, Task.Delay(timeout)).ConfigureAwait(false) != run.Exited)
            {
                run.Kill();
                await run.Exited.ConfigureAwait(false);
                throw new TimeoutException($"did not finish within {timeout.TotalSeconds:F0} s and was killed");
            }
            return await run.Exited.ConfigureAwait(false);
        }
        finally
        {
            run.Cleanup();
        }
    }

    /// <summary>
    /// SIGTERM to the container's init, as docker stop does. The init of a pid namespace gets
    /// from outside only the signals it handles: one without a SIGTERM handler (busybox
    /// httpd, a shell) would ignore it for the whole grace period, so it is killed at once.
    /// </summary>
    private void Terminate(Cgroup cgroup, int pid)
    {
        string status;
        try
        {
            status = File.ReadAllText($"/proc/{pid}/status");
        }
        catch (IOException)
        {
            return; // already gone
        }
        if (ProcessTable.Catches(status, Sys.SIGTERM)) Sys.TryKill(pid, Sys.SIGTERM);
        else
        {
            Log.Info($"{definition.Kind} {definition.Name}: its init does not handle SIGTERM, SIGKILL instead");
            KillAll(cgroup, pid);
        }
    }

    private static void KillAll(Cgroup cgroup, int pid)
    {
        try
        {
            cgroup.Kill();
        }
        catch (Exception e) when (e is CgroupException or IOException)
        {
            Sys.TryKill(pid, Sys.SIGKILL);
        }
    }

    private int Spawn(SpawnRequest request) => _started.Spawn(request);

    private ExitStatus? WaitHook(int pid, TimeSpan? timeout) => _started.Wait(pid, timeout);

    /// <summary>
    /// The overlay root: the image's layers (top first) under an empty upper directory, in
    /// the bundle (tmpfs) or in the storage's writable layer (state), emptied first.
    /// </summary>
    private void MountRoot(BakedImage image, string bundle, string rootfs)
    {
        string writable = _storage.WritableLayer ?? bundle;
        if (_storage.WritableLayer is not null && Directory.Exists(writable)) Directory.Delete(writable, recursive: true);
        string upper = Path.Combine(writable, "upper"), work = Path.Combine(writable, "work");
        foreach (string d in new[] { upper, work, rootfs }) Directory.CreateDirectory(d);
        var lowers = Enumerable.Reverse(image.Layers).Select(_storage.LayerPath).ToList();
        foreach (string l in lowers)
        {
            if (!Directory.Exists(l)) throw new InvalidDataException($"image '{image.Name}': layer {l} is missing");
        }
        string options = $"lowerdir={string.Join(':', lowers)},upperdir={upper},workdir={work}";
        if (options.Length > 4000) throw new InvalidDataException($"image '{image.Name}': {lowers.Count} layers make overlay options longer than a page");
        Sys.Mount("overlay", rootfs, "overlay", MountFlags.None, options);
    }

    private static void RemoveBundle(string bundle, string rootfs)
    {
        if (!Directory.Exists(bundle)) return;
        if (HostOs.Platform.Kernel.MountInfo.IsMountPoint(rootfs))
        {
            Sys.Umount(rootfs, Sys.MNT_DETACH);
        }
        Directory.Delete(bundle, recursive: true);
    }

    // ----- published ports

    /// <summary>
    /// Published ports as a relay in the init, as docker-proxy does: a listener on the host
    /// port for the life of the service, and per connection a socket made inside the
    /// running container's network namespace to 127.0.0.1:PORT, bytes copied both ways.
    /// Between runs a connection is closed at once. (No netfilter in the image; a bridge
    /// with DNAT would spare the copy, and is open work: docs/workload.md.)
    /// </summary>
    private void Publish()
    {
        foreach (PortMapping port in definition.Ports)
        {
            var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Any, port.Host));
            listener.Listen(128);
            lock (_listeners) _listeners.Add(listener);
            Log.Info($"{definition.Kind} {definition.Name}: host port {port.Host} published to its port {port.Container}");
            _ = AcceptAsync(listener, port);
        }
    }

    private async Task AcceptAsync(Socket listener, PortMapping port)
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (SocketException e) when (e.SocketErrorCode != SocketError.OperationAborted)
            {
                continue;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // released
            }
            _ = RelayAsync(client, port);
        }
    }

    private async Task RelayAsync(Socket client, PortMapping port)
    {
        using (client)
        {
            int pid = _runningPid;
            if (pid == 0) return;
            Socket upstream;
            try
            {
                upstream = await ConnectInContainerAsync(pid, port.Container).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ContainerProbeException)
            {
                return; // nothing listens there (yet): the client sees the connection closed
            }
            using (upstream)
            {
                await Task.WhenAll(CopyAsync(client, upstream), CopyAsync(upstream, client)).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The service is removed: its published ports close (a later one of the same name may take them).</summary>
    public void Release()
    {
        lock (_listeners)
        {
            foreach (Socket l in _listeners) l.Dispose();
            _listeners.Clear();
        }
    }

    /// <summary>One direction; at its end the other side learns it (shutdown of sending).</summary>
    private static async Task CopyAsync(Socket from, Socket to)
    {
        byte[] buffer = new byte[16384];
        try
        {
            int n;
            while ((n = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false)) > 0)
            {
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None).ConfigureAwait(false);
            }
            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    // ----- health probes

    private async Task<bool> ProbeAsync(HealthProbe probe, ContainerProcess container, CancellationToken token)
    {
        switch (probe.Type)
        {
            case ProbeType.Exec:
                return await ExecProbeAsync(probe, container, token).ConfigureAwait(false);
            default:
                using (Socket socket = await ConnectInContainerAsync(container.Pid, probe.Port!.Value).ConfigureAwait(false))
                {
                    if (probe.Type == ProbeType.Tcp) return true;
                    return await HttpProbeAsync(socket, probe, token).ConfigureAwait(false);
                }
        }
    }

    /// <summary>
    /// A TCP socket connected to 127.0.0.1:PORT in the container's network namespace: made by
    /// a throwaway thread that joins the namespace (per thread, FACTS.md); a socket keeps the
    /// namespace it was made in, so the rest is done from any thread.
    /// </summary>
    private static async Task<Socket> ConnectInContainerAsync(int pid, int port)
    {
        Socket socket;
        try
        {
            socket = ThrowawayThread.Run("probe-netns", () =>
            {
                using (SafeFileHandle ns = File.OpenHandle($"/proc/{pid}/ns/net", FileMode.Open, FileAccess.Read))
                {
                    Sys.SetNs(ns, CloneFlags.NewNet, $"/proc/{pid}/ns/net");
                }
                return new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            });
        }
        catch (Exception e) when (e is IOException or SocketException or UnauthorizedAccessException)
        {
            throw new ContainerProbeException($"cannot join the network namespace of pid {pid}: {e.Message}");
        }
        try
        {
            await socket.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port)).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task<bool> HttpProbeAsync(Socket socket, HealthProbe probe, CancellationToken token)
    {
        byte[] request = Encoding.ASCII.GetBytes($"GET {probe.Path} HTTP/1.0\r\nHost: 127.0.0.1:{probe.Port}\r\nUser-Agent: hostos-init\r\nConnection: close\r\n\r\n");
        await socket.SendAsync(request, SocketFlags.None, token).ConfigureAwait(false);
        byte[] buffer = new byte[64];
        int length = 0;
        while (length < 12)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, token).ConfigureAwait(false);
            if (n == 0) break;
            length += n;
        }
        // "HTTP/1.x 200 ..." : healthy on 2xx and 3xx.
        string status = Encoding.ASCII.GetString(buffer, 0, length);
        return status.StartsWith("HTTP/1.", StringComparison.Ordinal) && status.Length >= 12 && status[9] is '2' or '3';
    }

    private async Task<bool> ExecProbeAsync(HealthProbe probe, ContainerProcess container, CancellationToken token)
    {
        Process own = container.Spec!.Process!;
        var process = new Process
        {
            Args = probe.Exec, Env = own.Env, Cwd = own.Cwd, User = own.User, Capabilities = own.Capabilities,
            Rlimits = own.Rlimits, NoNewPrivileges = own.NoNewPrivileges,
        };
        var (read, write) = Sys.Pipe();
        ContainerProcess exec;
        try
        {
            lock (Setup)
            {
                exec = ContainerProcess.Exec(definition.Name, container.Pid, process, container.Spec.Linux?.Seccomp, container.Cgroup,
                    Spawn, write);
            }
        }
        catch (ContainerException e)
        {
            read.Dispose();
            throw new ContainerProbeException(e.Message);
        }
        finally
        {
            write.Dispose();
        }
        // The probe's output is read (so it never blocks) and dropped.
        _ = Task.Run(() => { using var s = new FileStream(read, FileAccess.Read, 1); s.CopyTo(Stream.Null); });
        try
        {
            exec.Start();
        }
        catch (ContainerException e)
        {
            Sys.TryKill(exec.Pid, Sys.SIGKILL);
            await _started.ExitOf(exec.Pid).ConfigureAwait(false);
            _started.Forget(exec.Pid);
            throw new ContainerProbeException(e.Message);
        }
        Task<ExitStatus> exited = _started.ExitOf(exec.Pid);
        try
        {
            ExitStatus status = await exited.WaitAsync(token).ConfigureAwait(false);
            return status.Exited && status.Code == 0;
        }
        catch (OperationCanceledException)
        {
            Sys.TryKill(exec.Pid, Sys.SIGKILL);
            await exited.ConfigureAwait(false);
            throw;
        }
        finally
        {
            _started.Forget(exec.Pid);
        }
    }
}

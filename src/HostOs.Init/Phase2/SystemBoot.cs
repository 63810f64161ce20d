using System.Runtime.InteropServices;
using HostOs.Init.Containers;
using HostOs.Init.Health;
using HostOs.Init.Network;
using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Platform.Disk;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;

namespace HostOs.Init.Phase2;

/// <summary>
/// Phase 2, PID 1 in the real (read-only) root: named steps from the kernel's file
/// systems to the services, then the init waits for a power request (signal, power
/// button, failed boot assessment) and shuts down in order.
/// </summary>
internal sealed class SystemBoot : Api.IManagedSystem
{
    private readonly ProcessTable _processes = new();
    private readonly StateVolume _state;
    private readonly TaskCompletionSource<PowerAction> _power = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<PosixSignalRegistration> _signals = [];
    /// <summary>What this boot could not do; each makes the boot assessment fail.</summary>
    private readonly List<string> _bootProblems = [];
    private Supervisor? _supervisor;
    private BootAssessment? _assessment;
    private BootWatchdog? _watchdog;
    private DhcpClient? _dhcp;
    private AppManager? _apps;

    public SystemBoot() => _state = new StateVolume(_processes);

    private void Degrade(string problem)
    {
        lock (_bootProblems) _bootProblems.Add(problem);
    }

    public void RequestPower(PowerAction action)
    {
        if (_power.TrySetResult(action)) Log.Info($"power request: {action}");
    }

    public void Run()
    {
        Log.Info("phase 2 (root)");
        HandleSignals();
        _processes.StartReaper();
        try
        {
            Boot();
        }
        catch (Exception e)
        {
            // A boot that cannot finish must still end in an orderly reboot: the boot
            // loader then counts the try, and a bad version falls back by itself.
            Log.Error("boot failed; rebooting in 10 s", e);
            _power.Task.Wait(TimeSpan.FromSeconds(10));
            RequestPower(PowerAction.Reboot);
        }
        PowerAction action = _power.Task.GetAwaiter().GetResult();
        _watchdog?.ShuttingDown();
        Shutdown.Run(action, _supervisor);
    }

    private void Boot()
    {
        BootStep.Run("mount-api-fs", MountApiFileSystems);
        Logging.Journal.StartWriter();
        BootStep.TryRun("log-sockets", Logging.LogSockets.Start);
        InitConfig config = LoadConfig();
        _watchdog = BootWatchdog.Start(config.Health.WatchdogSeconds, config.Health.DeadlineSeconds);
        // Modules load on their own thread while state is checked. The boot path waits only
        // for overlay (the /etc overlay); efivarfs, vfat and the rest are waited for by the
        // boot assessment, which is the first to need them. The power button watcher polls.
        string modulesDir = ModuleLoader.ModulesDirectory();
        Task overlay = Task.Run(() => BootStep.TryRun("load-overlay",
            () => ModuleLoader.Load(modulesDir, config.Modules.Where(m => m == "overlay"))));
        Task modules = overlay.ContinueWith(_ => BootStep.TryRun("load-modules",
            () => ModuleLoader.Load(modulesDir, config.Modules.Where(m => m != "overlay"))), TaskScheduler.Default);
        PowerButton.Watch(() => RequestPower(PowerAction.PowerOff));

        var cmdline = KernelCommandLine.Parse(File.ReadAllText("/proc/cmdline"));
        BlockPartition root = BlockDevices.WaitFor(Phase1.InitramfsBoot.RootSpec(cmdline), TimeSpan.FromSeconds(5), out var partitions);
        BootStep.Run("mount-state", () =>
        {
            string? problem = null;
            BlockPartition? state = StateVolume.Find(partitions, root.Disk);
            if (state is null) problem = $"no partition labelled '{StateVolume.Label}' on {root.Disk}";
            else
            {
                try { _state.Mount(state); }
                catch (Exception e) { problem = e.Message; }
            }
            if (problem is not null)
            {
                StateVolume.MountFallback(problem);
                Degrade($"state: {problem}");
            }
        });
        overlay.Wait();
        BootStep.Run("mount-var-etc", StateVolume.MountVarAndEtc);
        BootStep.TryRun("journal", () =>
        {
            try
            {
                Logging.Journal.Open();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Never leave the journal unopened: services' output would wait for it.
                Log.Error($"journal: {Logging.Journal.Directory} unusable, keeping the log in /run (lost at reboot)", e);
                Logging.Journal.Open("/run/hostos/log");
                Degrade($"journal: {e.Message}");
            }
        });
        string machineId = "";
        BootStep.Run("machine-id", () => machineId = MachineIdentity.EnsureMachineId());
        BootStep.TryRun("first-boot", () => FirstBoot.Run(modules));
        BootStep.TryRun("hostname", () =>
        {
            string name = MachineIdentity.Hostname(machineId);
            Sys.SetHostname(name);
            Log.Info($"hostname {name}");
        });
        BootStep.TryRun("loopback", () => Sys.SetInterfaceUp("lo"));
        StartNetwork(modules);

        if (cmdline.Get("hostos.fault") == "hang")
        {
            // Fault injection for the tests (docs/boot.md, "Hangs"): a boot that never goes on,
            // as one waiting on a driver that never answers does. Only the watchdog ends it.
            Log.Error("hostos.fault=hang: this boot stops here");
            Thread.Sleep(Timeout.Infinite);
        }
        if (config.Containers.Onboot.Count + config.Containers.Services.Count > 0) BootStep.TryRun("device-filter-key", PinDeviceFilterKey);
        if (config.Containers.Onboot.Count > 0) BootStep.TryRun("onboot", () => RunOnboot(config.Containers.Onboot));
        // Before the services: one of them may drive containers through hostos-runc.
        BootStep.TryRun("runc-socket", () => Containers.RuncServer.Start(_processes));
        _supervisor = new Supervisor(
            config.Services.Select(d => new Service(ServiceOptions.Of(d), new ProcessLauncher(d, _processes)))
            .Concat(config.Containers.Services.Select(c => new Service(ServiceOptions.Of(c), new ContainerLauncher(c, _processes)))));
        BootStep.Run("start-services", _supervisor.StartAll);
        var apps = new AppManager(_supervisor, _processes);
        BootStep.TryRun("start-apps", () =>
        {
            int n = apps.StartAll();
            if (n > 0) Log.Info($"apps: {n} started");
        });
        _apps = apps;
        var assessment = new BootAssessment(config, _supervisor, _processes, BootProblems, partitions, root.Disk, _watchdog);
        _assessment = assessment;
        Api.ApiServer.Start(this);
        _ = Task.Run(async () =>
        {
            try
            {
                await modules.ConfigureAwait(false);
                BootStep.TryRun("mount-efivars", MountEfiVars);
                await assessment.RunAsync(RequestPower).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Log.Error("boot assessment", e);
            }
        });
        _ = _supervisor.RequiredReady.ContinueWith(
            _ => Log.Info($"HostOS ready: {_supervisor.Services.Count} services up"),
            TaskContinuationOptions.OnlyOnRanToCompletion);
    }

    /// <summary>
    /// DHCP on the first Ethernet interface, in the background: the boot does not wait for a
    /// lease (a machine whose network is down is still a machine that booted; its services
    /// start and the assessment judges them). The NIC driver comes with the modules.
    /// </summary>
    private void StartNetwork(Task modules) => _ = Task.Run(async () =>
    {
        await modules.ConfigureAwait(false);
        EthernetInterface? nic = null;
        for (int i = 0; i < 50 && (nic = EthernetInterface.First()) is null; i++) await Task.Delay(100).ConfigureAwait(false);
        if (nic is null)
        {
            Log.Info("network: no Ethernet interface");
            return;
        }
        while (true)
        {
            try
            {
                Sys.SetInterfaceUp(nic.Name);
                Log.Info($"network: {nic.Name} up, asking for a DHCP lease");
                _dhcp = new DhcpClient(nic, Log.Info, Log.Warn);
                await _dhcp.RunAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // Never give up on the network: log, pause, start over.
                Log.Error($"network: {nic.Name}", e);
                await Task.Delay(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
        }
    });

    /// <summary>
    /// Attaches an allow-all device program to an empty cgroup that lives as long as the
    /// machine. The kernel switches its cgroup-device code on and off with a static key
    /// when the first such program comes and the last goes, which patches kernel text on
    /// every CPU; with it held on, container churn never patches anything. A mitigation for
    /// the guest lockups seen under TCG (docs/testing.md), harmless elsewhere: the program
    /// only applies to processes in that cgroup, and there are none.
    /// </summary>
    private static void PinDeviceFilterKey()
    {
        string dir = Path.Combine(HostOs.Containers.Cgroups.Cgroup.DefaultRoot, "hostos-device-key");
        Directory.CreateDirectory(dir);
        Sys.AttachDeviceProgram(dir, HostOs.Containers.Cgroups.DeviceFilter.Compile(
            [new HostOs.Containers.Spec.DeviceRule { Allow = true, Access = "rwm" }]));
    }

    /// <summary>
    /// The onboot containers, one after the other, each to completion, before any service.
    /// A failure is logged and fails the boot assessment; the boot goes on with the rest.
    /// </summary>
    private void RunOnboot(List<OnbootContainer> steps)
    {
        foreach (OnbootContainer step in steps)
        {
            try
            {
                Log.Info($"onboot {step.Name}: starting");
                ExitStatus status = new ContainerLauncher(step, _processes)
                    .RunToCompletionAsync(TimeSpan.FromSeconds(step.TimeoutSeconds)).GetAwaiter().GetResult();
                if (status.Exited && status.Code == 0) Log.Info($"onboot {step.Name}: done");
                else
                {
                    Log.Error($"onboot {step.Name}: failed ({status})");
                    Degrade($"onboot container {step.Name} failed ({status})");
                }
            }
            catch (Exception e)
            {
                Log.Error($"onboot {step.Name}: cannot run", e);
                Degrade($"onboot container {step.Name}: {e.Message}");
            }
        }
    }

    // ----- what the API (org.hostos.Manager1) shows and does

    public IReadOnlyList<Service> Services => _supervisor?.Services ?? [];

    public AppManager Apps => _apps ?? throw new AppException("NotReady", "the machine is still starting; apps come after the services");

    public IReadOnlyDictionary<string, string> Status()
    {
        string Read(string path) => File.Exists(path) ? File.ReadAllText(path).Trim() : "";
        var services = Services;
        return new Dictionary<string, string>
        {
            ["version"] = Read("/usr/lib/os-release").Split('\n').FirstOrDefault(l => l.StartsWith("VERSION_ID=", StringComparison.Ordinal))?[11..] ?? Program.Version,
            ["hostname"] = Read("/proc/sys/kernel/hostname"),
            ["machine_id"] = Read("/etc/machine-id"),
            ["boot"] = _assessment?.Verdict ?? "starting",
            ["uptime_seconds"] = (Environment.TickCount64 / 1000).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["address"] = _dhcp?.Current?.ToString() ?? "",
            ["services"] = $"{services.Count(s => s.State == ServiceState.Ready)} ready of {services.Count}",
        };
    }

    private List<string> BootProblems()
    {
        lock (_bootProblems) return [.. _bootProblems];
    }

    private InitConfig LoadConfig()
    {
        try
        {
            return InitConfig.Parse(File.ReadAllText(InitConfig.Path), InitConfig.Path);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            // The build validated it; if the root still carries a bad one, boot with
            // nothing declared rather than not at all, and let the assessment fail.
            Log.Error($"{InitConfig.Path} unusable, booting without services", e);
            Degrade($"{InitConfig.Path}: {e.Message}");
            return new InitConfig();
        }
    }

    private void HandleSignals()
    {
        // A handler must be installed for the kernel to deliver these to PID 1 at all.
        // Ctrl-Alt-Del: with CAD off, the kernel sends SIGINT to PID 1 instead of rebooting.
        Register(PosixSignal.SIGTERM, PowerAction.PowerOff);
        Register((PosixSignal)Sys.SIGPWR, PowerAction.PowerOff);
        Register(PosixSignal.SIGINT, PowerAction.Reboot);
        try
        {
            Sys.Reboot(RebootCommand.CtrlAltDelOff);
        }
        catch (Exception e)
        {
            Log.Error("reboot(CAD_OFF)", e);
        }
    }

    private void Register(PosixSignal signal, PowerAction action) =>
        _signals.Add(PosixSignalRegistration.Create(signal, ctx =>
        {
            ctx.Cancel = true;
            RequestPower(action);
        }));

    private static void MountApiFileSystems()
    {
        // Phase 1 moved /proc and /sys here (not /dev: see InitramfsBoot.SwitchRoot).
        if (!File.Exists("/proc/self/mountinfo")) Sys.Mount("proc", "/proc", "proc", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
        if (!Directory.Exists("/sys/kernel")) Sys.Mount("sysfs", "/sys", "sysfs", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
        if (!File.Exists("/dev/null")) Sys.Mount("devtmpfs", "/dev", "devtmpfs", MountFlags.NoSuid, "mode=0755");
        Directory.CreateDirectory("/dev/pts");
        Sys.Mount("devpts", "/dev/pts", "devpts", MountFlags.NoSuid | MountFlags.NoExec, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        Directory.CreateDirectory("/dev/shm");
        Sys.Mount("tmpfs", "/dev/shm", "tmpfs", MountFlags.NoSuid | MountFlags.NoDev, "mode=1777");
        Sys.Mount("tmpfs", "/run", "tmpfs", MountFlags.NoSuid | MountFlags.NoDev, "mode=0755");
        Sys.Mount("tmpfs", "/tmp", "tmpfs", MountFlags.NoSuid | MountFlags.NoDev, "mode=1777");
        Sys.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec, "nsdelegate");
        foreach (var (link, target) in new[] { ("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2") })
        {
            if (!Path.Exists(link)) File.CreateSymbolicLink(link, target);
        }
    }

    private static void MountEfiVars()
    {
        if (!Directory.Exists(EfiVariables.Directory))
        {
            Log.Info("not booted through UEFI: no boot counting");
            return;
        }
        Sys.Mount("efivarfs", EfiVariables.Directory, "efivarfs", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec | MountFlags.ReadOnly);
    }
}

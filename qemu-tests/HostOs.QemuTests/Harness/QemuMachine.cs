using System.Diagnostics;

namespace HostOs.QemuTests.Harness;

/// <summary>
/// One VM booting a copy of a built disk image exactly as a cloud VM would: q35, OVMF
/// (its own copy of the variable store), systemd-boot from the ESP, virtio disk. ttyS0 is
/// the console (QEMU's stdout), ttyS1 the test shell (a socket), plus a QMP socket. TCG
/// unless HOSTOS_ACCEL says otherwise: /dev/kvm exists on our machines but KVM guests
/// hang there. The same machine can be started again on the same disk after it stopped.
/// </summary>
internal sealed class QemuMachine : IAsyncDisposable
{
    private readonly string _dir;
    private Process? _qemu;
    private Task _pumps = Task.CompletedTask;
    private SerialShell? _shell;

    private QemuMachine(string name, string dir, Guid? uuid)
    {
        Name = name;
        Uuid = uuid;
        _dir = dir;
        Console = new GuestConsole(Path.Combine(Repo.LogDirectory, $"{name}.log"));
    }

    public string Name { get; }
    /// <summary>The SMBIOS system UUID (every cloud VM has one), or null for none.</summary>
    public Guid? Uuid { get; }
    public GuestConsole Console { get; }
    public string DiskPath => Path.Combine(_dir, "disk.img");
    public string QmpPath => Path.Combine(_dir, "qmp.sock");
    public bool IsRunning => _qemu is { HasExited: false };
    /// <summary>More raw disk images, attached read-only as /dev/vdb, /dev/vdc... in order.</summary>
    public List<string> ExtraDisks { get; } = [];
    /// <summary>More QEMU arguments (e.g. -fw_cfg).</summary>
    public List<string> ExtraArgs { get; } = [];
    /// <summary>The host port (on 127.0.0.1) forwarded to the guest's port 8080, the demo web container's.</summary>
    public int WebPort { get; } = FreePort();
    /// <summary>The host name QEMU's DHCP server hands out (none when null).</summary>
    public string? DhcpHostname { get; set; }
    /// <summary>A <c>-netdev</c> (id net0) instead of QEMU's user network, e.g. a <see cref="LeaseServer"/>'s.</summary>
    public string? Netdev { get; set; }
    /// <summary>More host ports (on 127.0.0.1) forwarded to guest ports, besides WebPort.</summary>
    public List<(int Host, int Guest)> Forwards { get; } = [];
    /// <summary>A free TCP port on the host's loopback, for a forward or a host service.</summary>
    public static int HostPort() => FreePort();

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public static QemuMachine Create(string name, string image = "hostos-test", bool smbiosUuid = true)
    {
        string source = Repo.Image(image);
        string dir = Directory.CreateTempSubdirectory($"hostos-qemu-{name}-").FullName;
        File.Delete(Path.Combine(Repo.LogDirectory, $"{name}.log"));
        var m = new QemuMachine(name, dir, smbiosUuid ? Guid.NewGuid() : null);
        Run("cp", "--sparse=always", source, m.DiskPath);
        File.Copy("/usr/share/OVMF/OVMF_VARS_4M.fd", Path.Combine(dir, "vars.fd"));
        return m;
    }

    public void Start()
    {
        if (IsRunning) throw new InvalidOperationException("already running");
        string accel = Environment.GetEnvironmentVariable("HOSTOS_ACCEL") is { Length: > 0 } a ? a : "tcg";
        var psi = new ProcessStartInfo("qemu-system-x86_64")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (string arg in new[]
        {
            // TCG with one host thread for both vCPUs (no MTTCG): see docs/testing.md, guest lockups.
            "-machine", "q35", "-accel", accel == "tcg" ? "tcg,thread=single" : accel, "-m", "1024", "-smp", "2",
            "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "-drive", $"if=pflash,format=raw,unit=1,file={Path.Combine(_dir, "vars.fd")}",
            "-drive", $"if=virtio,format=raw,file={DiskPath}",
            "-serial", "stdio",
            "-serial", $"unix:{Path.Combine(_dir, "shell.sock")},server=on,wait=off",
            "-qmp", $"unix:{QmpPath},server=on,wait=off",
        })
        {
            psi.ArgumentList.Add(arg);
        }
        // One virtio NIC on QEMU's user network, as a cloud VM has: DHCP gives 10.0.2.15.
        psi.ArgumentList.Add("-netdev");
        psi.ArgumentList.Add(Netdev ?? $"user,id=net0,hostfwd=tcp:127.0.0.1:{WebPort}-:8080"
            + string.Concat(Forwards.Select(f => $",hostfwd=tcp:127.0.0.1:{f.Host}-:{f.Guest}"))
            + (DhcpHostname is null ? "" : $",hostname={DhcpHostname}"));
        psi.ArgumentList.Add("-device");
        psi.ArgumentList.Add("virtio-net-pci,netdev=net0");
        foreach (string arg in ExtraArgs) psi.ArgumentList.Add(arg);
        foreach (string disk in ExtraDisks)
        {
            psi.ArgumentList.Add("-drive");
            psi.ArgumentList.Add($"if=virtio,format=raw,readonly=on,file={disk}");
        }
        if (Uuid is Guid uuid)
        {
            psi.ArgumentList.Add("-uuid");
            psi.ArgumentList.Add(uuid.ToString());
        }
        Console.Note($"starting {Name}: qemu-system-x86_64 {string.Join(' ', psi.ArgumentList)}");
        _qemu = Process.Start(psi) ?? throw new InvalidOperationException("cannot start qemu-system-x86_64");
        Process q = _qemu;
        _pumps = Task.WhenAll(Task.Run(() => Pump(q.StandardOutput, "")), Task.Run(() => Pump(q.StandardError, "qemu: ")));
        _shell = null;
    }

    private async Task Pump(StreamReader reader, string prefix)
    {
        var buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer)) > 0)
        {
            Console.Append(prefix.Length == 0 ? new string(buffer, 0, n) : prefix + new string(buffer, 0, n));
        }
    }

    /// <summary>Waits for the init's "HostOS ready" line after the mark.</summary>
    public Task WaitForReadyAsync(int mark = 0, TimeSpan? timeout = null) =>
        Console.WaitForAsync(@"hostos: HostOS ready", timeout ?? TimeSpan.FromSeconds(120), mark, () => IsRunning);

    public async Task<SerialShell> ShellAsync()
    {
        if (_shell is null)
        {
            _shell = await SerialShell.ConnectAsync(Path.Combine(_dir, "shell.sock"), TimeSpan.FromSeconds(10));
        }
        await _shell.SyncAsync(TimeSpan.FromSeconds(60));
        return _shell;
    }

    public Task PowerButtonAsync() => Qmp.ExecuteAsync(QmpPath, "system_powerdown");

    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        if (_qemu is null) return true;
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _qemu.WaitForExitAsync(cts.Token);
            await _pumps.WaitAsync(cts.Token); // everything QEMU wrote is in the console now
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL to QEMU: the guest loses power with no warning.</summary>
    public async Task KillAsync()
    {
        if (_qemu is null || _qemu.HasExited) return;
        Console.Note("SIGKILL to QEMU (power cut)");
        _qemu.Kill();
        await _qemu.WaitForExitAsync();
        await _pumps;
    }

    public async ValueTask DisposeAsync()
    {
        if (_shell is not null) await _shell.DisposeAsync();
        await KillAsync();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    internal static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {stderr}{stdout}");
        return stdout;
    }
}

using System.Diagnostics;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>Clean power-off through ACPI, and a power cut that the next boot survives.</summary>
public sealed class PowerTests
{
    [Fact]
    public async Task PowerButton_EndsQemuWithin10Seconds_AndStateIsClean_AndBootWasBlessed()
    {
        await using var vm = QemuMachine.Create("power-button");
        vm.Start();
        await vm.WaitForReadyAsync();
        await vm.Console.WaitForAsync("hostos: boot blessed", TimeSpan.FromSeconds(60));
        SerialShell sh = await vm.ShellAsync();
        await sh.CheckAsync("dd if=/dev/zero of=/var/payload bs=1M count=8 2>/dev/null");

        var clock = Stopwatch.StartNew();
        await vm.PowerButtonAsync();
        bool exited = await vm.WaitForExitAsync(TimeSpan.FromSeconds(10));
        vm.Console.Note($"QEMU exited: {exited} after {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(exited, $"QEMU still running 10 s after system_powerdown:\n{vm.Console.Tail()}");
        Assert.Contains("hostos: powering off", vm.Console.Since(0));

        var (code, fsck) = HostDisk.CheckState(vm.DiskPath);
        Assert.True(code == 0, $"e2fsck -fn on state exited {code}:\n{fsck}");

        // The counted entry hostos-0.1.0+3.conf was blessed: the counter is gone.
        Assert.Equal(["hostos-0.1.0.conf"], HostDisk.BootEntries(vm.DiskPath));
    }

    [Fact]
    public async Task PowerCutWhileWriting_NextBootComesUp()
    {
        // No SMBIOS UUID here: the machine id comes from getrandom, as on bare metal.
        await using var vm = QemuMachine.Create("power-cut", smbiosUuid: false);
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();
        await sh.CheckAsync("echo before > /var/before && sync");
        string machineId = await sh.CheckAsync("cat /etc/machine-id");
        await sh.FireAsync("while true; do dd if=/dev/zero of=/var/churn bs=64k count=64 2>/dev/null; done");
        await Task.Delay(2000);
        await vm.KillAsync();

        int mark = vm.Console.Mark();
        vm.Start();
        await vm.WaitForReadyAsync(mark);
        sh = await vm.ShellAsync();
        Assert.Equal("before", await sh.CheckAsync("cat /var/before"));
        Assert.Equal(machineId, await sh.CheckAsync("cat /etc/machine-id"));
        Assert.Contains("machine id " + machineId + " created (random)", vm.Console.Since(0));
        await sh.CheckAsync("echo after > /var/after && sync");
        Assert.DoesNotContain("will NOT persist", vm.Console.Since(mark));
    }
}

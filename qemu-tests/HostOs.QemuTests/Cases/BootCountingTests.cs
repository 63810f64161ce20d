using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// Boot counting end to end, the mechanism the updater's rollback relies on: a new entry
/// whose boots fail their health check is tried three times, then systemd-boot falls
/// back to the blessed entry.
/// </summary>
public sealed class BootCountingTests
{
    [Fact]
    public async Task FailingHealthCheck_RebootsAndCountsDown_ThenFallsBackToBlessedEntry()
    {
        await using var vm = QemuMachine.Create("boot-counting");
        vm.Start();
        await vm.WaitForReadyAsync();
        await vm.Console.WaitForAsync(@"hostos: boot blessed: hostos-0\.1\.0\+2-1\.conf -> hostos-0\.1\.0\.conf", TimeSpan.FromSeconds(60));
        SerialShell sh = await vm.ShellAsync();

        // An operator health check that always fails, a short deadline, and a second entry
        // "0.2.0" with fresh tries (same kernel and root: only its counter matters here).
        await sh.CheckAsync(
            "mkdir -p /etc/hostos/health.d && " +
            "echo '{\"name\": \"always-fails\", \"exec\": [\"/usr/bin/false\"]}' > /etc/hostos/health.d/fail.json && " +
            "echo '{\"deadlineSeconds\": 5}' > /etc/hostos/boot-assessment.json && " +
            "mkdir -p /tmp/esp && mount -t vfat /dev/vda1 /tmp/esp && " +
            "sed -e 's/^version .*/version 0.2.0/' -e 's/^title .*/title HostOS 0.2.0 (failing)/' " +
            "-e 's/hostos.version=0.1.0/hostos.version=0.2.0/' " +
            "/tmp/esp/loader/entries/hostos-0.1.0.conf > /tmp/esp/loader/entries/hostos-0.2.0+3.conf && " +
            "umount /tmp/esp && sync");

        int mark = vm.Console.Mark();
        await sh.FireAsync("kill -INT 1");
        var timeout = TimeSpan.FromMinutes(5);
        foreach (string counted in new[] { "2-1", "1-2", "0-3" })
        {
            await vm.Console.WaitForAsync($@"boot assessment: entry \S+, counted \(hostos-0\.2\.0\+{counted}\.conf\)", timeout, mark, () => vm.IsRunning);
            // The reason lists everything not yet healthy at the deadline: under TCG a slow
            // service (hosted-demo) can still be starting, before the check's failure.
            await vm.Console.WaitForAsync(@"boot assessment: FAILED after 5 s: (.*; )?health check 'always-fails' failed", timeout, mark);
            await vm.Console.WaitForAsync("hostos: rebooting", timeout, mark);
            mark = vm.Console.Mark();
        }
        // Tries exhausted: systemd-boot prefers the blessed entry now.
        await vm.Console.WaitForAsync(@"boot assessment: entry hostos-0\.1\.0\.conf, not counted", timeout, mark);
        await vm.Console.WaitForAsync("boot assessment: this entry is not counted, staying up", timeout, mark);
        sh = await vm.ShellAsync();
        Assert.Contains("hostos.version=0.1.0", await sh.CheckAsync("cat /proc/cmdline"));

        await vm.PowerButtonAsync();
        Assert.True(await vm.WaitForExitAsync(TimeSpan.FromSeconds(30)), vm.Console.Tail());
        Assert.Equal(["hostos-0.1.0.conf", "hostos-0.2.0+0-3.conf"], HostDisk.BootEntries(vm.DiskPath));
    }
}

using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// The container runtime's cgroup v2 code against the real kernel (the host is cgroup v1;
/// hostos-init mounts cgroup2): memory, pids and cpu limits hold, and the host survives.
/// </summary>
public sealed class CgroupTests
{
    [Fact]
    public async Task MemoryPidsAndCpuLimitsAreEnforced()
    {
        await using var vm = QemuMachine.Create("cgroups");
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();
        Assert.Equal("cgroup2", await sh.CheckAsync("awk '$2 == \"/sys/fs/cgroup\" { print $3 }' /proc/mounts"));

        var (code, output) = await sh.RunAsync("hostos-guestcheck cgroups", TimeSpan.FromMinutes(3));
        vm.Console.Note(output);
        Assert.True(code == 0, output);
        Assert.Contains("PASS cgroup memory", output);
        Assert.Contains("PASS cgroup pids", output);
        Assert.Contains("PASS cgroup cpu", output);

        // The host is fine: PID 1 and the shell are alive, the test cgroups are gone.
        Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
        Assert.Equal("gone", await sh.CheckAsync("test -e /sys/fs/cgroup/hostos-guestcheck || echo gone"));
    }
}

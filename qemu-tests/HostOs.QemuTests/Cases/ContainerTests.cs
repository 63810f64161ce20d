using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// Containers created by HostOs.Containers (namespaces, cgroup, pivot_root, credentials,
/// capabilities) from a busybox bundle, inside a HostOS VM: isolated as specified, the
/// host untouched, nothing left behind.
/// </summary>
public sealed class ContainerTests
{
    [Fact]
    public async Task ContainersAreIsolatedAndLeaveNothingBehind()
    {
        await using var vm = QemuMachine.Create("containers");
        vm.Start();
        await vm.WaitForReadyAsync();
        // The host's mounts are compared before and after the containers: the boot's blessing,
        // which mounts the ESP at /efi for a moment after "ready", must be over first (a CI run
        // on 2026-12-02 caught it mounted on one side of the comparison).
        await vm.Console.WaitForAsync(@"hostos: boot blessed", TimeSpan.FromSeconds(60));
        SerialShell sh = await vm.ShellAsync();

        var (code, output) = await sh.RunAsync("hostos-guestcheck containers", TimeSpan.FromMinutes(3));
        vm.Console.Note(output);
        Assert.True(code == 0, output);
        foreach (string check in new[] { "pid-namespace", "uts-and-mounts", "capabilities", "user-and-exit-code", "cgroup", "hostile-mount", "devices", "seccomp" })
        {
            Assert.Contains($"PASS container {check}", output);
        }
        Assert.Contains("PASS nothing left on the host", output);

        // Issue 3's stress proof of the process creation scheme: 200 containers at once,
        // every exit code collected, no deadlock, no fd, mount, cgroup or zombie left.
        (code, output) = await sh.RunAsync("hostos-guestcheck containers-stress 200", TimeSpan.FromMinutes(6));
        vm.Console.Note(output);
        Assert.True(code == 0, output);
        Assert.Contains("PASS containers-stress: 200 containers at once", output);
        Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
    }
}

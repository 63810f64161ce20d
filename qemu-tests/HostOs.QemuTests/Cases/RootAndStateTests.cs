using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>PID 1, the read-only root, and state that survives a reboot.</summary>
public sealed class RootAndStateTests
{
    [Fact]
    public async Task Pid1IsHostosInit_RootIsReadOnly_VarAndIdentitySurviveReboot()
    {
        await using var vm = QemuMachine.Create("root-and-state");
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();

        Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
        Assert.Equal("/usr/sbin/hostos-init", await sh.CheckAsync("readlink /proc/1/exe"));
        // One reaper: the .NET runtime must not catch SIGCHLD in PID 1 (docs/pid1.md).
        ulong caught = Convert.ToUInt64(await sh.CheckAsync("awk '/^SigCgt/ { print $2 }' /proc/1/status"), 16);
        Assert.True((caught & (1UL << 16)) == 0, $"PID 1 catches SIGCHLD (SigCgt {caught:x}): the runtime would reap behind our reaper");
        string root = await sh.CheckAsync("awk '$2 == \"/\" { print $3, $4 }' /proc/mounts");
        Assert.StartsWith("erofs ro", root);

        var (code, output) = await sh.RunAsync("touch /probe 2>&1");
        Assert.NotEqual(0, code);
        Assert.Contains("Read-only file system", output);
        (code, output) = await sh.RunAsync("touch /usr/probe 2>&1");
        Assert.Contains("Read-only file system", output);

        Assert.Contains("/var ext4 rw", await sh.CheckAsync("awk '{ print $2, $3, $4 }' /proc/mounts"));
        Assert.Contains("/etc overlay rw", await sh.CheckAsync("awk '{ print $2, $3, $4 }' /proc/mounts"));
        Assert.Contains("/sys/fs/cgroup cgroup2", await sh.CheckAsync("awk '{ print $2, $3 }' /proc/mounts"));

        string token = Guid.NewGuid().ToString("N");
        await sh.CheckAsync($"echo {token} > /var/probe && echo configured > /etc/probe");
        string machineId = await sh.CheckAsync("cat /etc/machine-id");
        Assert.Matches("^[0-9a-f]{32}$", machineId);
        Assert.Equal(vm.Uuid!.Value.ToString("N"), machineId); // the VM's SMBIOS UUID, as in a cloud
        string hostname = await sh.CheckAsync("hostname");
        Assert.Equal("hostos-" + machineId[..8], hostname);

        // Ctrl-Alt-Del's signal: SIGINT to PID 1 means an orderly reboot.
        int mark = vm.Console.Mark();
        await sh.FireAsync("kill -INT 1");
        await vm.Console.WaitForAsync("hostos: rebooting", TimeSpan.FromSeconds(60), mark);
        await vm.WaitForReadyAsync(mark);
        sh = await vm.ShellAsync();

        Assert.Equal(token, await sh.CheckAsync("cat /var/probe"));
        Assert.Equal("configured", await sh.CheckAsync("cat /etc/probe"));
        Assert.Equal(machineId, await sh.CheckAsync("cat /etc/machine-id"));
        Assert.Equal(hostname, await sh.CheckAsync("hostname"));
    }
}

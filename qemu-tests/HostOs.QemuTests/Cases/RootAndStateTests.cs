using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>PID 1, the read-only root checked by dm-verity, and state that survives a reboot.</summary>
public sealed class RootAndStateTests
{
    [Fact]
    public async Task Pid1IsHostosInit_RootIsReadOnlyAndVerified_VarAndIdentitySurviveReboot()
    {
        await using var vm = QemuMachine.Create("root-and-state");
        // One byte changed, before the first boot, in a file of the root the boot never reads
        // (the lifecycle script the runtime tests use), as an attacker with the disk would.
        long tampered = TamperWithRootFile(vm.DiskPath, "qemu-tests/lifecycle.sh");
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();

        Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
        Assert.Equal("/usr/sbin/hostos-init", await sh.CheckAsync("readlink /proc/1/exe"));
        // One reaper: the .NET runtime must not catch SIGCHLD in PID 1 (docs/pid1.md).
        ulong caught = Convert.ToUInt64(await sh.CheckAsync("awk '/^SigCgt/ { print $2 }' /proc/1/status"), 16);
        Assert.True((caught & (1UL << 16)) == 0, $"PID 1 catches SIGCHLD (SigCgt {caught:x}): the runtime would reap behind our reaper");
        string root = await sh.CheckAsync("awk '$2 == \"/\" { print $1, $3, $4 }' /proc/mounts");
        Assert.StartsWith("/dev/dm-0 erofs ro", root);

        // The root is dm-verity's device over root-a, under the entry's root hash.
        Assert.Equal("root", await sh.CheckAsync("cat /sys/block/dm-0/dm/name"));
        Assert.Equal("vda2", await sh.CheckAsync("ls /sys/block/dm-0/slaves"));
        Assert.Matches(@"hostos\.verity=\d+:[0-9a-f]{64}:[0-9a-f]+", await sh.CheckAsync("cat /proc/cmdline"));
        // The changed block reads as an error, never as data; the rest of the root is fine.
        var (readCode, readOutput) = await sh.RunAsync("cat /usr/lib/hostos-test/lifecycle.sh > /dev/null 2>/tmp/err; echo $?; cat /tmp/err");
        Assert.Equal(0, readCode);
        Assert.StartsWith("1", readOutput.Trim()); // cat's exit status
        Assert.Contains("Input/output error", readOutput);
        await vm.Console.WaitForAsync(@"verity: \d+:\d+: data block \d+ is corrupted", TimeSpan.FromSeconds(10));
        Assert.Contains("hostos-init", await sh.CheckAsync("ls /usr/sbin"));
        Assert.True(tampered > 0);

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

    /// <summary>Flips one byte of <paramref name="repoFile"/>'s first block where it lies in root-a; returns its offset in the disk.</summary>
    private static long TamperWithRootFile(string disk, string repoFile)
    {
        byte[] marker = File.ReadAllBytes(Path.Combine(Repo.Root, repoFile))[..256];
        var rootA = HostDisk.Partition(disk, "root-a");
        using var f = new FileStream(disk, FileMode.Open, FileAccess.ReadWrite);
        long start = (long)rootA.FirstLba * 512, length = Math.Min(((long)rootA.LastLba + 1) * 512 - start, 256L << 20);
        var buffer = new byte[length];
        f.Position = start;
        f.ReadExactly(buffer);
        int at = buffer.AsSpan().IndexOf(marker);
        Assert.True(at >= 0, $"{repoFile} not found in root-a");
        Assert.Equal(-1, buffer.AsSpan(at + 1).IndexOf(marker)); // exactly one copy
        long offset = start + at + 100;
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ 0x20));
        return offset;
    }
}

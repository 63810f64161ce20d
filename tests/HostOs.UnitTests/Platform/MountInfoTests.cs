using HostOs.Platform.Kernel;

namespace HostOs.UnitTests.Platform;

public class MountInfoTests
{
    [Fact]
    public void ParsesTheExampleFromProc5()
    {
        Assert.True(MountInfo.TryParse("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue", out MountInfo? m));
        Assert.Equal(36, m!.Id);
        Assert.Equal(35, m.ParentId);
        Assert.Equal("/mnt1", m.Root);
        Assert.Equal("/mnt2", m.MountPoint);
        Assert.Equal("ext3", m.FsType);
        Assert.Equal("/dev/root", m.Source);
    }

    [Fact]
    public void NoOptionalFields_AndOctalEscapes()
    {
        Assert.True(MountInfo.TryParse(@"40 27 0:35 / /run/my\040dir rw - tmpfs tmpfs rw", out MountInfo? m));
        Assert.Equal("/run/my dir", m!.MountPoint);
        Assert.Equal("tmpfs", m.FsType);
    }

    [Fact]
    public void ParsesThisHostsOwnTable()
    {
        var all = MountInfo.ParseAll(File.ReadAllText("/proc/self/mountinfo"));
        Assert.Contains(all, m => m.MountPoint == "/");
        Assert.Contains(all, m => m.MountPoint == "/proc" && m.FsType == "proc");
    }

    [Fact]
    public void GarbageIsRefused() => Assert.False(MountInfo.TryParse("not a mountinfo line", out _));
}

using HostOs.Platform.Kernel;

namespace HostOs.UnitTests.Platform;

public class KernelCommandLineTests
{
    [Fact]
    public void ParsesValuesFlagsAndQuotes()
    {
        var c = KernelCommandLine.Parse("BOOT_IMAGE=/vmlinuz console=ttyS0,115200 quiet hostos.slot=a  note=\"two words\"\n");
        Assert.Equal("ttyS0,115200", c.Get("console"));
        Assert.True(c.Has("quiet"));
        Assert.Null(c.Get("quiet"));
        Assert.Equal("a", c.Get("hostos.slot"));
        Assert.Equal("two words", c.Get("note"));
        Assert.False(c.Has("missing"));
    }

    [Fact]
    public void LastRepeatWins_AndValueMayHoldEquals()
    {
        var c = KernelCommandLine.Parse("hostos.slot=a hostos.slot=b hostos.root=PARTLABEL=root-b");
        Assert.Equal("b", c.Get("hostos.slot"));
        Assert.Equal("PARTLABEL=root-b", c.Get("hostos.root"));
    }

    [Fact]
    public void RequireNamesTheMissingKey()
    {
        var e = Assert.Throws<InvalidDataException>(() => KernelCommandLine.Parse("quiet").Require("hostos.slot"));
        Assert.Contains("hostos.slot", e.Message);
    }
}

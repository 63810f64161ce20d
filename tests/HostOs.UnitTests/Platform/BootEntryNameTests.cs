using HostOs.Platform.Boot;

namespace HostOs.UnitTests.Platform;

public class BootEntryNameTests
{
    [Theory]
    [InlineData("hostos-1.2.0+3.conf", "hostos-1.2.0", 3, null)]
    [InlineData("hostos-1.2.0+2-1.conf", "hostos-1.2.0", 2, 1)]
    [InlineData("hostos-1.2.0+0-3.conf", "hostos-1.2.0", 0, 3)]
    [InlineData("hostos-1.2.0.conf", "hostos-1.2.0", null, null)]
    [InlineData("a+b+1.conf", "a+b", 1, null)]
    public void ParsesAndRoundTrips(string file, string id, int? left, int? done)
    {
        Assert.True(BootEntryName.TryParse(file, out BootEntryName n));
        Assert.Equal(id, n.Id);
        Assert.Equal(left, n.TriesLeft);
        Assert.Equal(done, n.TriesDone);
        Assert.Equal(file, n.FileName);
    }

    [Theory]
    [InlineData("hostos.txt")]
    [InlineData(".conf")]
    [InlineData("+3.conf")]
    [InlineData("x+-1.conf")]
    [InlineData("x+1-.conf")]
    public void RejectsWhatIsNotAnEntryName(string file) => Assert.False(BootEntryName.TryParse(file, out _));

    [Fact]
    public void BlessingDropsTheCounter()
    {
        BootEntryName.TryParse("hostos-2+1-2.conf", out BootEntryName n);
        Assert.Equal("hostos-2.conf", n.Blessed().FileName);
        Assert.False(n.Blessed().IsCounted);
        Assert.False(n.IsBad);
        BootEntryName.TryParse("hostos-2+0-3.conf", out BootEntryName bad);
        Assert.True(bad.IsBad);
    }

    [Fact]
    public void NewEntryHasFullTries() => Assert.Equal("hostos-3.0+3.conf", BootEntryName.New("hostos-3.0", 3).FileName);
}

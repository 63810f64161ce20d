using HostOs.Ctl;
using HostOs.Bus;
using HostOs.Init.Api;

namespace HostOs.UnitTests.Init;

public class HostctlTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData(null, 0L)]
    [InlineData("10m", 1_795_953_000_000_000L)]
    [InlineData("2h", 1_795_946_400_000_000L)]
    [InlineData("1d", 1_795_867_200_000_000L)]
    [InlineData("1764417600", 1_764_417_600_000_000L)]
    [InlineData("2026-11-29T11:00:00Z", 1_795_950_000_000_000L)]
    public void SinceTakesDurationsUnixAndIsoTimes(string? text, long expectedUs) =>
        Assert.Equal(expectedUs, Output.ParseSince(text, Now));

    [Fact]
    public void SinceRefusesNonsenseByName() =>
        Assert.Contains("'yesterday-ish'", Assert.Throws<FormatException>(() => Output.ParseSince("yesterday-ish", Now)).Message);

    [Fact]
    public void TablesAlignColumns() =>
        Assert.Equal("NAME   STATE\nweb    ready\nflood  stopped\n", Output.Table(["NAME", "STATE"], [["web", "ready"], ["flood", "stopped"]]));

    [Fact]
    public void OnlyRootAndTheAdminGroupMayChangeTheSystem()
    {
        string dir = Directory.CreateTempSubdirectory("auth-").FullName;
        try
        {
            string passwd = Path.Combine(dir, "passwd"), group = Path.Combine(dir, "group");
            File.WriteAllText(passwd, "root:x:0:0::/root:/bin/sh\nops:x:1000:1000::/home/ops:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\nsvc:x:1002:900::/:/bin/false\n");
            File.WriteAllText(group, "root:x:0:\nhostos-admin:x:900:ops\nbob:x:1001:\n");
            Assert.True(Authorization.MayChange(0, passwd, group));
            Assert.True(Authorization.MayChange(1000, passwd, group));   // listed member
            Assert.True(Authorization.MayChange(1002, passwd, group));   // primary group
            Assert.False(Authorization.MayChange(1001, passwd, group));
            Assert.False(Authorization.MayChange(4242, passwd, group));  // no such user
            File.WriteAllText(group, "root:x:0:\n");
            Assert.False(Authorization.MayChange(1000, passwd, group));  // no admin group at all
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

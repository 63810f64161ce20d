using HostOs.Platform.Config;

namespace HostOs.UnitTests.Platform;

public class InitConfigTests
{
    [Fact]
    public void ParsesServicesWithDefaults()
    {
        var c = InitConfig.Parse("""
            { "modules": ["overlay"],
              "services": [ { "name": "a", "exec": ["/bin/a", "-x"] },
                            { "name": "b", "exec": ["/bin/b"], "after": ["a"], "restart": "onFailure", "notify": true } ],
              "health": { "deadlineSeconds": 30, "checks": [ { "name": "c", "exec": ["/bin/true"] } ] } }
            """, "t");
        Assert.Equal(RestartPolicy.Always, c.Services[0].Restart);
        Assert.Empty(c.Services[0].Environment);
        Assert.True(c.Services[0].Required);
        Assert.Equal(10, c.Services[0].StopTimeoutSeconds);
        Assert.Equal(RestartPolicy.OnFailure, c.Services[1].Restart);
        Assert.True(c.Services[1].Notify);
        Assert.Equal(30, c.Health.DeadlineSeconds);
        Assert.Equal(10, c.Health.Checks[0].TimeoutSeconds);
    }

    [Fact]
    public void RoundTrips()
    {
        var c = InitConfig.Parse("""{ "services": [ { "name": "a", "exec": ["/bin/a"], "tty": "/dev/ttyS1" } ] }""", "t");
        var again = InitConfig.Parse(c.ToJson(), "t2");
        Assert.Equal("/dev/ttyS1", again.Services[0].Tty);
    }

    [Theory]
    [InlineData("""{ "servics": [] }""", "servics")]
    [InlineData("""{ "services": [ { "name": "a" } ] }""", "exec")]
    [InlineData("""{ "services": [ { "name": "a", "exec": ["rel/path"] } ] }""", "absolute path")]
    [InlineData("""{ "services": [ { "name": "a b", "exec": ["/x"] } ] }""", "service name 'a b'")]
    [InlineData("""{ "services": [ { "name": "a", "exec": ["/x"] }, { "name": "a", "exec": ["/y"] } ] }""", "declared twice")]
    [InlineData("""{ "services": [ { "name": "a", "exec": ["/x"], "after": ["nope"] } ] }""", "unknown service 'nope'")]
    [InlineData("""{ "services": [ { "name": "a", "exec": ["/x"], "restart": "sometimes" } ] }""", "restart")]
    [InlineData("""{ "services": [ { "name": "a", "exec": ["/x"], "environment": ["NOEQUALS"] } ] }""", "NOEQUALS")]
    [InlineData("""{ "health": { "deadlineSeconds": 0 } }""", "deadlineSeconds")]
    [InlineData("""{ "services": [ """, "t:")]
    public void RejectsBadConfigWithAMessageNamingTheProblem(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => InitConfig.Parse(json, "t"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void OperatorHealthCheckIsStrictToo()
    {
        Assert.Equal("x", HealthCheck.Parse("""{ "name": "x", "exec": ["/bin/true"] }""", "f").Name);
        var e = Assert.Throws<InvalidDataException>(() => HealthCheck.Parse("""{ "name": "x", "exec": ["/bin/true"], "every": 5 }""", "f.json"));
        Assert.Contains("f.json", e.Message);
        Assert.Contains("every", e.Message);
    }
}

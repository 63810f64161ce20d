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
    [InlineData("""{ "health": { "watchdogSeconds": 2 } }""", "health.watchdogSeconds must be 0 (none) or 5..600")]
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

    private const string Svc = """{ "name": "web", "image": "busybox" }""";

    [Theory]
    [InlineData("""{ "name": "Web", "image": "busybox" }""", "lower-case")]
    [InlineData("""{ "name": "web", "image": "alpine" }""", "image 'alpine' is not among")]
    [InlineData("""{ "name": "web", "image": "busybox", "user": "www-data" }""", "user 'www-data'")]
    [InlineData("""{ "name": "web", "image": "busybox", "network": "host", "hostname": "x" }""", "hostname cannot be set")]
    [InlineData("""{ "name": "web", "image": "busybox", "network": "overlay" }""", "network")]
    [InlineData("""{ "name": "web", "image": "busybox", "capabilities": ["NET_ADMIN"] }""", "'NET_ADMIN' is not a CAP_ name")]
    [InlineData("""{ "name": "web", "image": "busybox", "binds": [ { "source": "/a/../etc", "target": "/x" } ] }""", "'..' is not allowed")]
    [InlineData("""{ "name": "web", "image": "busybox", "binds": [ { "source": "a", "target": "/x" } ] }""", "must be absolute")]
    [InlineData("""{ "name": "web", "image": "busybox", "resources": { "memoryMiB": 1 } }""", "memoryMiB")]
    [InlineData("""{ "name": "web", "image": "busybox", "health": { "type": "http" } }""", "needs a port")]
    [InlineData("""{ "name": "web", "image": "busybox", "health": { "type": "exec" } }""", "needs exec")]
    [InlineData("""{ "name": "web", "image": "busybox", "health": { "type": "http", "port": 80, "path": "x y" } }""", "path 'x y'")]
    [InlineData("""{ "name": "web", "image": "busybox", "after": ["nope"] }""", "is after 'nope'")]
    [InlineData("""{ "name": "web", "image": "busybox", "after": ["web"] }""", "circle: web -> web")]
    [InlineData("""{ "name": "web", "image": "busybox", "restart": "sometimes" }""", "restart")]
    [InlineData("""{ "name": "web", "image": "busybox", "network": "host", "ports": [ { "host": 80, "container": 80 } ] }""", "ports are published from a private network")]
    [InlineData("""{ "name": "web", "image": "busybox", "ports": [ { "host": 0, "container": 80 } ] }""", "ports are 1..65535")]
    [InlineData("""{ "name": "web", "image": "busybox", "ports": [ { "host": 80, "container": 80 }, { "host": 80, "container": 81 } ] }""", "published twice")]
    public void RejectsBadContainers(string container, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => InitConfig.Parse(
            $$"""{ "images": ["busybox"], "containers": { "services": [ {{container}} ] } }""", "t"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ContainerNamesAreSharedWithServicesAndOrderIsChecked()
    {
        var e = Assert.Throws<InvalidDataException>(() => InitConfig.Parse($$"""
            { "images": ["busybox"], "services": [ { "name": "web", "exec": ["/x"] } ], "containers": { "services": [ {{Svc}} ] } }
            """, "t"));
        Assert.Contains("name of another service", e.Message);
        e = Assert.Throws<InvalidDataException>(() => InitConfig.Parse("""
            { "images": ["busybox"], "containers": { "onboot": [ { "name": "init", "image": "busybox" } ],
              "services": [ { "name": "web", "image": "busybox", "after": ["init"] } ] } }
            """, "t"));
        Assert.Contains("no service or service container", e.Message);
        e = Assert.Throws<InvalidDataException>(() => InitConfig.Parse("""
            { "images": ["busybox"], "services": [ { "name": "a", "exec": ["/x"], "after": ["web"] } ],
              "containers": { "services": [ { "name": "web", "image": "busybox", "after": ["a"] } ] } }
            """, "t"));
        Assert.Contains("circle", e.Message);
    }

    [Fact]
    public void ContainersParseWithDefaultsAndPlainServicesMayWaitForThem()
    {
        var c = InitConfig.Parse("""
            { "images": ["busybox"], "services": [ { "name": "a", "exec": ["/x"], "after": ["web"] } ],
              "containers": { "onboot": [ { "name": "prep", "image": "busybox" } ],
                              "services": [ { "name": "web", "image": "busybox", "health": { "type": "tcp", "port": 80 } } ] } }
            """, "t");
        ServiceContainer web = c.Containers.Services[0];
        Assert.Equal(ContainerNetwork.None, web.Network);
        Assert.True(web.ReadonlyRootfs);
        Assert.Equal(RestartPolicy.Always, web.Restart);
        Assert.Equal(5, web.Health!.IntervalSeconds);
        Assert.Equal(3, web.Health.Retries);
        Assert.Equal(300, c.Containers.Onboot[0].TimeoutSeconds);
        Assert.Equal("web", InitConfig.Parse(c.ToJson(), "again").Containers.Services[0].Name);
    }

    [Theory]
    [InlineData("{}", "empty")]
    [InlineData("""{ "name": "b", "manifest": "sha256:x", "layers": [] }""", "layers")]
    [InlineData("""{ "name": "b", "manifest": "sha256:x", "layers": ["../../etc"] }""", "layers")]
    public void BakedImageRecordsAreChecked(string json, string expected)
    {
        var e = Assert.ThrowsAny<Exception>(() => InitConfig.ParseBakedImage(json, "b.json"));
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal) || e.Message.Contains("required", StringComparison.Ordinal), e.Message);
    }
}

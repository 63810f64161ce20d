using HostOs.Containers.Spec;
using HostOs.Platform.Config;

namespace HostOs.UnitTests.Containers;

public class WorkloadSpecTests
{
    private static readonly ImageDefaults Busybox = new(null, ["sh"], ["PATH=/bin", "LANG=C"], "/srv", "33:33");

    private static ServiceContainer Container(string json) =>
        InitConfig.Parse($$"""{ "images": ["busybox"], "containers": { "services": [ {{json}} ] } }""", "t").Containers.Services[0];

    [Fact]
    public void ImageDefaultsApplyUnlessOverridden()
    {
        RuntimeSpec spec = WorkloadSpec.Build(Container("""{ "name": "a", "image": "busybox" }"""), Busybox, "hostos-system/a");
        Assert.Equal(["sh"], spec.Process!.Args);
        Assert.Equal("/srv", spec.Process.Cwd);
        Assert.Equal(33u, spec.Process.User!.Uid);
        Assert.Equal(33u, spec.Process.User.Gid);
        Assert.Equal(["PATH=/bin", "LANG=C"], spec.Process.Env);
        Assert.Equal(WorkloadSpec.DefaultCapabilities, spec.Process.Capabilities!.Bounding);
        Assert.Empty(spec.Process.Capabilities.Ambient!);
        Assert.True(spec.Root!.Readonly);
        Assert.Equal("a", spec.Hostname);
        Assert.Equal("hostos-system/a", spec.Linux!.CgroupsPath);
        Assert.Empty(SpecValidator.Validate(spec));
    }

    [Fact]
    public void DefinitionOverridesAsDockerRunDoes()
    {
        var c = Container("""
            { "name": "a", "image": "busybox", "entrypoint": ["/bin/httpd"], "command": ["-f"], "user": "0",
              "env": ["LANG=en_US.UTF-8", "X=1"], "workingDir": "/www", "capabilities": ["CAP_NET_BIND_SERVICE"],
              "readonlyRootfs": false, "hostname": "web1" }
            """);
        RuntimeSpec spec = WorkloadSpec.Build(c, Busybox with { Entrypoint = ["/ignored"] }, "x", ["NOTIFY_SOCKET=/run/n"]);
        Assert.Equal(["/bin/httpd", "-f"], spec.Process!.Args);
        Assert.Equal(["PATH=/bin", "LANG=en_US.UTF-8", "X=1", "NOTIFY_SOCKET=/run/n"], spec.Process.Env);
        Assert.Equal("/www", spec.Process.Cwd);
        Assert.Equal(0u, spec.Process.User!.Uid);
        Assert.Equal(["CAP_NET_BIND_SERVICE"], spec.Process.Capabilities!.Effective);
        Assert.False(spec.Root!.Readonly);
        Assert.Equal("web1", spec.Hostname);
        Assert.Empty(SpecValidator.Validate(spec));
    }

    [Fact]
    public void CommandKeepsTheImageEntrypoint()
    {
        RuntimeSpec spec = WorkloadSpec.Build(Container("""{ "name": "a", "image": "busybox", "command": ["-v"] }"""),
            Busybox with { Entrypoint = ["/bin/tool"] }, "x");
        Assert.Equal(["/bin/tool", "-v"], spec.Process!.Args);
    }

    [Fact]
    public void NetworkNoneGetsItsOwnNamespacesAndHostSharesThem()
    {
        RuntimeSpec own = WorkloadSpec.Build(Container("""{ "name": "a", "image": "busybox" }"""), Busybox, "x");
        Assert.Contains(own.Linux!.Namespaces!, n => n.Type == "network");
        Assert.Contains(own.Linux.Namespaces!, n => n.Type == "uts");
        RuntimeSpec host = WorkloadSpec.Build(Container("""{ "name": "a", "image": "busybox", "network": "host" }"""), Busybox, "x");
        Assert.DoesNotContain(host.Linux!.Namespaces!, n => n.Type is "network" or "uts");
        Assert.Contains(host.Linux.Namespaces!, n => n.Type == "pid");
        Assert.Null(host.Hostname);
        Assert.Empty(SpecValidator.Validate(host));
    }

    [Fact]
    public void ResourcesBindsAndTmpfs()
    {
        var c = Container("""
            { "name": "a", "image": "busybox", "resources": { "memoryMiB": 32, "cpus": 0.25, "pids": 50 },
              "binds": [ { "source": "/var/lib/a", "target": "/data" }, { "source": "/etc/hostos", "target": "/cfg", "readonly": true } ],
              "tmpfs": ["/run"] }
            """);
        RuntimeSpec spec = WorkloadSpec.Build(c, Busybox, "x");
        Assert.Equal(32L << 20, spec.Linux!.Resources!.Memory!.Limit);
        Assert.Equal(25_000, spec.Linux.Resources.Cpu!.Quota);
        Assert.Equal(100_000UL, spec.Linux.Resources.Cpu.Period);
        Assert.Equal(50, spec.Linux.Resources.Pids!.Limit);
        Mount data = spec.Mounts!.Single(m => m.Destination == "/data");
        Assert.Equal("/var/lib/a", data.Source);
        Assert.Contains("rw", data.Options!);
        Assert.Contains("ro", spec.Mounts!.Single(m => m.Destination == "/cfg").Options!);
        Assert.Equal("tmpfs", spec.Mounts!.Single(m => m.Destination == "/run").Type);
        Assert.Empty(SpecValidator.Validate(spec));
    }

    [Fact]
    public void NoCommandOrABadImageUserIsNamed()
    {
        var c = Container("""{ "name": "a", "image": "busybox" }""");
        var e = Assert.Throws<SpecException>(() => WorkloadSpec.Build(c, Busybox with { Cmd = null }, "x"));
        Assert.Contains("no command", e.Message);
        e = Assert.Throws<SpecException>(() => WorkloadSpec.Build(c, Busybox with { User = "www-data" }, "x"));
        Assert.Contains("user 'www-data'", e.Message);
    }

    [Fact]
    public void EnvironmentMergeReplacesByName() =>
        Assert.Equal([WorkloadSpec.DefaultPath, "A=2", "B=1"], WorkloadSpec.MergeEnv(["A=1"], ["B=1"], ["A=2"]));
}

using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Containers.Cli;

namespace HostOs.UnitTests.Containers;

public class RuncArgumentsTests
{
    [Fact]
    public void GlobalFlagsCommandFlagsAndArgumentsAsRuncTakesThem()
    {
        var a = Arguments.Parse(["--root", "/run/x", "--log=/tmp/l", "create", "-b", "/b", "--pid-file=/p", "c1"]);
        Assert.Equal("create", a.Command);
        Assert.Equal(("/run/x", "/tmp/l", "/b", "/p"), (a.Value("root"), a.Value("log"), a.Value("bundle"), a.Value("pid-file")));
        Assert.Equal(["c1"], a.Positional);

        // Single-dash long flags (urfave/cli) and -f meaning --force for delete.
        a = Arguments.Parse(["-root", "/r", "delete", "-f", "c1"]);
        Assert.True(a.Has("force"));
        Assert.Equal("/r", a.Value("root"));
        Assert.False(Arguments.Parse(["delete", "--force=false", "c1"]).Has("force"));

        // -f is --format for list.
        Assert.Equal("json", Arguments.Parse(["list", "-f", "json"]).Value("format"));
    }

    [Fact]
    public void ExecKeepsTheCommandsOwnFlagsVerbatim()
    {
        var a = Arguments.Parse(["exec", "-e", "A=1", "--env", "B=2", "-u", "1000:1000", "c1", "sh", "-c", "echo -n hi", "--root"]);
        Assert.Equal(["A=1", "B=2"], a.Values("env"));
        Assert.Equal("1000:1000", a.Value("user"));
        Assert.Equal(["c1", "sh", "-c", "echo -n hi", "--root"], a.Positional);
        Assert.Equal(["c1", "ls", "-l"], Arguments.Parse(["exec", "c1", "--", "ls", "-l"]).Positional);
    }

    [Fact]
    public void BadCommandLinesNameWhatIsWrong()
    {
        Assert.Contains("flag provided but not defined for 'start': --bundle", Assert.Throws<UsageException>(() => Arguments.Parse(["start", "--bundle", "x", "c1"])).Message);
        Assert.Contains("no such command 'frobnicate'", Assert.Throws<UsageException>(() => Arguments.Parse(["frobnicate"])).Message);
        Assert.Contains("flag needs an argument: --pid-file", Assert.Throws<UsageException>(() => Arguments.Parse(["create", "--pid-file"])).Message);
        Assert.Contains("'maybe' is not a boolean", Assert.Throws<UsageException>(() => Arguments.Parse(["delete", "--force=maybe", "c"])).Message);
        var a = Arguments.Parse(["state"]);
        Assert.Contains("'state' takes one container id; got none", Assert.Throws<UsageException>(() => a.Expect(1, 1, "one container id")).Message);
    }

    [Theory]
    [InlineData("9", 9)]
    [InlineData("KILL", 9)]
    [InlineData("SIGKILL", 9)]
    [InlineData("term", 15)]
    [InlineData("SIGUSR1", 10)]
    [InlineData("64", 64)]
    public void SignalsByNumberOrName(string text, int number) => Assert.Equal(number, Signals.Parse(text));

    [Theory]
    [InlineData("0")]
    [InlineData("65")]
    [InlineData("SIGFOO")]
    [InlineData("-9")]
    public void UnknownSignalsAreRefused(string text) =>
        Assert.Contains($"unknown signal '{text}'", Assert.Throws<UsageException>(() => Signals.Parse(text)).Message);
}

public class ContainerRuntimeTests
{
    [Theory]
    [InlineData("c1")]
    [InlineData("my-app_2.v+1")]
    public void RuncsIdsAreAccepted(string id) => ContainerRuntime.ValidateId(id);

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("a/b")]
    [InlineData("../etc")]
    [InlineData("a b")]
    public void IdsThatCouldEscapeTheRootAreRefused(string id) =>
        Assert.Contains("invalid container id", Assert.Throws<ContainerException>(() => ContainerRuntime.ValidateId(id)).Message);

    [Fact]
    public void UnknownContainersAreNamed()
    {
        string root = Directory.CreateTempSubdirectory("runc-root-").FullName;
        var runtime = new ContainerRuntime(root);
        Assert.Equal("container \"c9\" does not exist", Assert.Throws<ContainerNotFoundException>(() => runtime.State("c9")).Message);
        Assert.Throws<ContainerNotFoundException>(() => runtime.Delete("c9", force: false));
        runtime.Delete("c9", force: true); // runc: forcing the delete of nothing succeeds
        Assert.Empty(runtime.List());
        Directory.Delete(root, true);
    }

    [Fact]
    public void ADeadInitIsStoppedAndAStateFileIsReadBack()
    {
        string root = Directory.CreateTempSubdirectory("runc-root-").FullName;
        Directory.CreateDirectory(Path.Combine(root, "c1"));
        // A pid that is ours but with another start time: a recycled pid, not the container.
        int pid = Environment.ProcessId;
        File.WriteAllText(Path.Combine(root, "c1", "state.json"),
            $$$"""{"id":"c1","pid":{{{pid}}},"pidStartTime":1,"bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","cgroupRoot":"/sys/fs/cgroup","cgroupPath":"hostos/c1"}""");
        File.WriteAllText(Path.Combine(root, "c1", "config.json"), """{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}""");
        var runtime = new ContainerRuntime(root);
        OciState state = runtime.State("c1");
        Assert.Equal(("stopped", 0, "/b"), (state.Status, state.Pid, state.Bundle));
        var e2 = Assert.Throws<ContainerException>(() => runtime.Exec("c1", p => p, null));
        Assert.Equal("cannot exec in a stopped container: c1", e2.Message);
        Assert.NotNull(HostOs.Platform.Kernel.ProcessStat.StartTime(pid));
        string json = ContainerRuntime.ToJson(state);
        Assert.Contains("\"status\": \"stopped\"", json);
        Assert.DoesNotContain("annotations", json);
        Assert.Equal("""[{"ociVersion":"1.0.2","id":"c1","pid":0,"status":"stopped","bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","owner":""}]""",
                     ContainerRuntime.ToJson([state]));
        File.WriteAllText(Path.Combine(root, "c1", "state.json"), "{\"id\":\"c1\"}");
        Assert.Contains("is unreadable", Assert.Throws<ContainerException>(() => runtime.State("c1")).Message);
        Directory.Delete(root, true);
    }

    [Fact]
    public void ProcessJsonIsStrictAndValidated()
    {
        Process p = SpecLoader.ParseProcess("""{"args":["sh"],"cwd":"/","env":["A=1"]}""", "p.json");
        Assert.Equal(["sh"], p.Args);
        var e = Assert.Throws<SpecException>(() => SpecLoader.ParseProcess("""{"args":["sh"],"cwd":"/","bogus":1}""", "p.json"));
        Assert.Contains("bogus", e.Message);
        e = Assert.Throws<SpecException>(() => SpecLoader.ParseProcess("""{"args":[],"cwd":"relative"}""", "p.json"));
        Assert.Contains("args", e.Message);
        Assert.Contains("'relative' must be an absolute path", e.Message);
    }
}

public class HooksTests
{
    private static Hook Sh(string script, int? timeout = null) => new() { Path = "/bin/sh", Args = ["sh", "-c", script], Env = ["PATH=/usr/bin:/bin"], Timeout = timeout };

    [Fact]
    public void EachHookGetsTheStateOnStdinInOrder()
    {
        string dir = Directory.CreateTempSubdirectory("hooks-").FullName;
        HookRunner.Run("createRuntime", [Sh($"cat > {dir}/1"), Sh($"echo second > {dir}/2")], "{\"id\":\"c1\"}", HostOs.Platform.Interop.Sys.Spawn, HookRunner.WaitOwnChild);
        Assert.Equal("{\"id\":\"c1\"}", File.ReadAllText(Path.Combine(dir, "1")));
        Assert.Equal("second\n", File.ReadAllText(Path.Combine(dir, "2")));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void AFailingHookNamesItsPhaseStatusAndOutput()
    {
        var e = Assert.Throws<ContainerException>(() =>
            HookRunner.Run("prestart", [Sh("true"), Sh("echo no network for you >&2; exit 3")], "{}", HostOs.Platform.Interop.Sys.Spawn, HookRunner.WaitOwnChild));
        Assert.Equal("prestart hook 1 (/bin/sh): exit code 3: no network for you", e.Message);
    }

    [Fact]
    public void AHookPastItsTimeoutIsKilled()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<ContainerException>(() => HookRunner.Run("poststart", [Sh("sleep 30", timeout: 1)], "{}", HostOs.Platform.Interop.Sys.Spawn, HookRunner.WaitOwnChild));
        Assert.Contains("killed after its timeout of 1 s", e.Message);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 10);
        string warned = "";
        HookRunner.RunReporting("poststop", [Sh("exit 1")], "{}", m => warned = m);
        Assert.Contains("poststop hook 0", warned);
    }
}

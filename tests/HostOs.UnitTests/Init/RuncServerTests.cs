using System.Text;
using HostOs.Containers.Cli;
using HostOs.Init.Containers;
using HostOs.Platform.Interop;

namespace HostOs.UnitTests.Init;

public class RuncServerTests
{
    [Fact]
    public void ARequestIsTheHeaderWhoAdoptsOrphansThenNulTerminatedArguments()
    {
        var (args, orphansGoTo) = RuncServer.ParseRequest("hostos-runc 1\n1\n--root\0/r\0state\0c 1\0\0"u8)!.Value;
        Assert.Equal(["--root", "/r", "state", "c 1", ""], args);
        Assert.Equal(1, orphansGoTo);
        (args, orphansGoTo) = RuncServer.ParseRequest("hostos-runc 1\n4321\n"u8)!.Value;
        Assert.Empty(args);
        Assert.Equal(4321, orphansGoTo);
        Assert.Null(RuncServer.ParseRequest("hostos-runc 2\n1\nstate\0"u8));
        Assert.Null(RuncServer.ParseRequest("hostos-runc 1\nstate\0c1\0"u8)); // no adopter line
        Assert.Null(RuncServer.ParseRequest("hostos-runc 1\n-1\nstate\0"u8));
        Assert.Null(RuncServer.ParseRequest("state\0c1\0"u8));
        Assert.Null(RuncServer.ParseRequest("hostos-runc 1\n1\nstate\0c1"u8)); // cut inside an argument
    }

    [Fact]
    public void CommandsThatLeaveAProcessBehindAreServedOnlyWhenItGoesToPid1()
    {
        foreach (string[] served in new[]
                 {
                     new[] { "run", "-b", "/b", "c1" }, ["--root", "/r", "exec", "c1", "true"], ["state", "c1"], ["start", "c1"],
                     ["kill", "c1", "KILL"], ["delete", "-f", "c1"], ["list"], ["ps", "c1"], ["pause", "c1"], ["resume", "c1"],
                     ["create", "-b", "/b", "c1"], ["run", "-d", "c1"], ["exec", "--detach", "c1", "sleep", "9"],
                 })
        {
            Assert.Null(RuncCommand.MustRunInCaller(served, 1));
        }
        Assert.Equal("create leaves its process to a subreaper (pid 77), not to hostos-init", RuncCommand.MustRunInCaller(["create", "-b", "/b", "c1"], 77));
        Assert.Contains("run --detach leaves its process to a subreaper", RuncCommand.MustRunInCaller(["run", "-d", "c1"], 77));
        Assert.Contains("exec --detach leaves its process to whoever adopts the caller's orphans, which could not be found out",
            RuncCommand.MustRunInCaller(["exec", "--detach", "c1", "sleep", "9"], 0));
        // Nothing left behind: who adopts orphans does not matter. Not a detach: the command's own argument.
        Assert.Null(RuncCommand.MustRunInCaller(["run", "c1"], 77));
        Assert.Null(RuncCommand.MustRunInCaller(["exec", "c1", "sh", "-d"], 77));
        Assert.Contains("spec", RuncCommand.MustRunInCaller(["spec"], 1));
        Assert.Contains("do not parse", RuncCommand.MustRunInCaller(["state", "--bogus", "c1"], 1));
        Assert.NotNull(RuncCommand.MustRunInCaller(["version"], 1));
        Assert.NotNull(RuncCommand.MustRunInCaller([], 1));
    }

    [Fact]
    public void ACallerLikeUsIsServedAndNotAnotherUser()
    {
        Assert.Null(RuncServer.CallerDiffers(Environment.ProcessId, 0));
        Assert.Equal("the caller is not root (uid 1000)", RuncServer.CallerDiffers(Environment.ProcessId, 1000));
    }

    [Fact]
    public void AProcessThatStartedAfterTheConnectionIsNotTheCaller()
    {
        // Our own start time as the moment of the connection: served; one tick before: a reused pid.
        ulong started = HostOs.Platform.Kernel.ProcessStat.StartTime(Environment.ProcessId)!.Value;
        Assert.Null(RuncServer.CallerDiffers(Environment.ProcessId, 0, started));
        Assert.Equal($"the process that connected (pid {Environment.ProcessId}) is gone", RuncServer.CallerDiffers(Environment.ProcessId, 0, started - 2));
        int gone = Sys.Spawn(new SpawnRequest { Path = "/bin/true", Args = ["true"] });
        Sys.WaitPid(gone, 0, out _);
        Assert.Equal($"the process that connected (pid {gone}) is gone", RuncServer.CallerDiffers(gone, 0));
    }

    [Fact]
    public void ACallerWithAnotherUmaskOrOomScoreIsNotServed()
    {
        using (var child = Child("umask 077; exec sleep 30"))
        {
            Assert.Equal("the caller's Umask (0077) is not hostos-init's (0022)",
                RuncServer.CallerDiffers(child.Pid, 0)!.Replace(Own("Umask:"), "0022", StringComparison.Ordinal));
        }
        using (var child = Child("echo 500 > /proc/self/oom_score_adj; exec sleep 30"))
        {
            Assert.Equal("the caller's oom_score_adj is not hostos-init's", RuncServer.CallerDiffers(child.Pid, 0));
        }
    }

    [Fact]
    public void ACallerWithAnotherNiceValueIsNotServed()
    {
        using var child = Child("exec nice -n 5 sleep 30");
        Assert.Matches(@"^the caller's nice \(-?[0-9]+\) is not hostos-init's \(-?[0-9]+\)$", RuncServer.CallerDiffers(child.Pid, 0));
    }

    [Fact]
    public void IdentityTellsTheSameFileWhereNamesProveNothing()
    {
        Assert.Equal(Sys.Identity("/"), Sys.Identity($"/proc/{Environment.ProcessId}/root"));
        Assert.Equal(Sys.Identity(Environment.CurrentDirectory), Sys.Identity("/proc/self/cwd"));
        Assert.NotEqual(Sys.Identity("/"), Sys.Identity("/proc"));
        var e = Assert.Throws<HostOs.Platform.SysException>(() => Sys.Identity("/nonexistent/x"));
        Assert.Contains("/nonexistent/x", e.Message);
    }

    [RootFact]
    public void ACallerInAnotherNamespaceIsNotServed()
    {
        using var child = Child("exec unshare --uts sleep 30");
        Assert.Equal("the caller is in another uts namespace", RuncServer.CallerDiffers(child.Pid, 0));
    }

    [Fact]
    public void StatusFieldsAreFoundByName()
    {
        const string status = "Name:\tsh\nUmask:\t0022\nCapEff:\t000001ffffffffff\n";
        Assert.Equal("0022", HostOs.Init.Processes.ProcessTable.StatusField(status, "Umask:"));
        Assert.Equal("000001ffffffffff", HostOs.Init.Processes.ProcessTable.StatusField(status, "CapEff:"));
        Assert.Null(HostOs.Init.Processes.ProcessTable.StatusField(status, "Seccomp:"));
    }

    private static string Own(string field) => HostOs.Init.Processes.ProcessTable.StatusField(File.ReadAllText("/proc/self/status"), field)!;

    /// <summary>A child running <paramref name="script"/>, once it has exec'd sleep; killed and reaped on dispose.</summary>
    private static ChildProcess Child(string script)
    {
        int pid = Sys.Spawn(new SpawnRequest { Path = "/bin/sh", Args = ["sh", "-c", script] });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (File.ReadAllText($"/proc/{pid}/comm").Trim() != "sleep")
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10)) throw new TimeoutException($"{script}: no sleep after 10 s");
            Thread.Sleep(5);
        }
        return new ChildProcess(pid);
    }

    private sealed record ChildProcess(int Pid) : IDisposable
    {
        public void Dispose()
        {
            Sys.TryKill(Pid, Sys.SIGKILL);
            Sys.WaitPid(Pid, 0, out _);
        }
    }
}

using System.Diagnostics;
using System.Text;
using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.UnitTests.Containers;

/// <summary>
/// hostos-stage (src/HostOs.Stage), built here from source by its own make.sh and driven
/// through its pipes as ContainerProcess.Exec drives it, in this process's own mount
/// namespace (root: setns, setresuid, capset). Plus its plan's and reports' C# side.
/// </summary>
public class NativeStageTests
{
    private static readonly Lazy<string> Binary = new(BuildStage);

    private static string BuildStage()
    {
        string dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "src/HostOs.Stage/make.sh"))) dir = Path.GetDirectoryName(dir) ?? throw new InvalidOperationException("no checkout above the tests");
        string output = Path.Combine(Path.GetTempPath(), "hostos-stage-test-" + Environment.ProcessId);
        using var make = System.Diagnostics.Process.Start(new ProcessStartInfo(Path.Combine(dir, "src/HostOs.Stage/make.sh"), output) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string log = make.StandardOutput.ReadToEnd() + make.StandardError.ReadToEnd();
        make.WaitForExit();
        Assert.True(make.ExitCode == 0, "make.sh failed:\n" + log);
        return Path.Combine(output, "hostos-stage");
    }

    private static StagePlan Exec(params string[] args) => StagePlan.ForExec(new HostOs.Containers.Spec.Process
    {
        Args = [.. args],
        Env = ["PATH=/usr/bin:/bin", "FROM_PLAN=yes"],
        Cwd = "/",
        Capabilities = new Capabilities { Bounding = ["CAP_KILL"], Effective = ["CAP_KILL"], Permitted = ["CAP_KILL"] },
        NoNewPrivileges = true,
    }, null);

    /// <summary>Runs the stage to its end; returns its status reports, stdout and exit code.</summary>
    private static (string Status, string Stdout, int Exit) Run(byte[] framedPlan, bool start = true)
    {
        var (controlRead, controlWrite) = Sys.Pipe();
        var (statusRead, statusWrite) = Sys.Pipe();
        var (outRead, outWrite) = Sys.Pipe();
        using SafeFileHandle mountNamespace = Sys.Open("/proc/self/ns/mnt", 0);
        int pid = Sys.Spawn(new SpawnRequest
        {
            Path = Binary.Value,
            Args = [Binary.Value],
            ExtraFds = [controlRead, statusWrite, mountNamespace],
            Stdout = outWrite,
            Stderr = outWrite,
        });
        controlRead.Dispose();
        statusWrite.Dispose();
        outWrite.Dispose();
        using var control = new FileStream(controlWrite, FileAccess.Write, 1);
        using var status = new FileStream(statusRead, FileAccess.Read, 1);
        var statusText = new StringBuilder();
        try
        {
            control.Write(framedPlan);
            control.WriteByte((byte)'G');
            control.Flush();
            int first = status.ReadByte();
            if (first >= 0) statusText.Append((char)first);
            if (first == 'R' && start)
            {
                control.WriteByte((byte)'S');
                control.Flush();
            }
        }
        catch (IOException)
        {
            // The stage stopped reading: what it reported says why.
        }
        control.Dispose();
        using (var rest = new StreamReader(status)) statusText.Append(rest.ReadToEnd());
        string stdout;
        using (var reader = new StreamReader(new FileStream(outRead, FileAccess.Read))) stdout = reader.ReadToEnd();
        Sys.WaitPid(pid, 0, out ExitStatus exit);
        return (statusText.ToString(), stdout, exit.ShellCode);
    }

    private static byte[] Native(StagePlan plan)
    {
        var stream = new MemoryStream();
        plan.WriteNativeFramed(stream);
        return stream.ToArray();
    }

    [RootFact]
    public void ExecsTheProgramWithItsEnvironmentCapabilitiesAndNoNewPrivileges()
    {
        var (status, stdout, exit) = Run(Native(Exec("sh", "-c", "echo $FROM_PLAN; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; exit 3")));
        Assert.Equal("R", status); // then EOF: the exec succeeded
        Assert.Equal(3, exit);
        Assert.Contains("yes\n", stdout);
        Assert.Contains("CapEff:\t0000000000000020", stdout); // CAP_KILL = 5 only
        Assert.Contains("CapBnd:\t0000000000000020", stdout);
        Assert.Contains("NoNewPrivs:\t1", stdout);
    }

    [RootFact]
    public void RunsAsTheUserAndGroupsOfThePlan()
    {
        StagePlan plan = Exec("sh", "-c", "id -u; id -g; id -G") with { Uid = 1000, Gid = 1001, AdditionalGids = [1002, 1003] };
        var (status, stdout, exit) = Run(Native(plan));
        Assert.Equal("R", status);
        Assert.Equal(0, exit);
        Assert.Equal("1000\n1001\n1001 1002 1003\n", stdout);
    }

    [RootFact]
    public void AProgramNotInThePathIsNamedBeforeReady()
    {
        var (status, _, exit) = Run(Native(Exec("no-such-program")));
        Assert.Equal(1, exit);
        Assert.Equal("process: 'no-such-program' is not in the container's PATH (/usr/bin:/bin)", ContainerProcess.Failure(status));
    }

    [RootFact]
    public void AMissingCwdIsNamedWithItsErrno()
    {
        var (status, _, _) = Run(Native(Exec("true") with { Cwd = "/no/such/dir" }));
        Assert.Equal("cwd /no/such/dir: chdir '/no/such/dir': No such file or directory (ENOENT)", ContainerProcess.Failure(status));
    }

    [RootFact]
    public void AFailedExecIsReportedAfterReady()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-stage-").FullName;
        string script = Path.Combine(dir, "not-executable");
        File.WriteAllText(script, "#!/bin/sh\n");
        var (status, _, exit) = Run(Native(Exec(script)));
        Assert.Equal(1, exit);
        Assert.StartsWith("R", status);
        Assert.Equal($"exec {script}: execve '{script}': Permission denied (EACCES)", ContainerProcess.Failure(status[1..]));
    }

    [RootFact]
    public void ABadRlimitIsNamed()
    {
        StagePlan plan = Exec("true") with { Rlimits = [("RLIMIT_NOFILE", 10, 5)] }; // soft above hard
        var (status, _, _) = Run(Native(plan));
        Assert.Equal("rlimits: setrlimit 'RLIMIT_NOFILE': Invalid argument (EINVAL)", ContainerProcess.Failure(status));
    }

    [RootFact]
    public void AMalformedPlanIsRefusedAndNothingRuns()
    {
        byte[] plan = Native(Exec("sh", "-c", "echo ran"));
        byte[] cut = [.. BitConverter.GetBytes(plan.Length - 4 - 3), .. plan.AsSpan(4, plan.Length - 4 - 3)];
        var (status, stdout, exit) = Run(cut);
        Assert.Equal(1, exit);
        Assert.Equal("", stdout);
        Assert.Equal("read plan: stage plan: malformed", ContainerProcess.Failure(status));
        byte[] version = (byte[])plan.Clone();
        version[4] = 9;
        Assert.Equal("read plan: stage plan: unknown version", ContainerProcess.Failure(Run(version).Status));
    }

    [RootFact]
    public void HostileLengthsInAPlanAreRefusedNotFollowed()
    {
        // version, flags, umask, uid, gid, last capability; five capability sets; no groups,
        // no rlimits, no seccomp; then a cwd "of 4 GiB" (a wrapped length), or 2^30 groups.
        byte[] Plan(uint groups, uint cwdLength)
        {
            var w = new BinaryWriter(new MemoryStream());
            foreach (uint v in new uint[] { 1, 0, 0, 0, 0, 40 }) w.Write(v);
            for (int i = 0; i < 5; i++) w.Write(0UL);
            w.Write(groups); w.Write(0u); w.Write(0u); w.Write(0u);
            w.Write(cwdLength); w.Write((byte)'/'); w.Write((byte)0);
            byte[] body = ((MemoryStream)w.BaseStream).ToArray();
            return [.. BitConverter.GetBytes(body.Length), .. body];
        }
        foreach (byte[] plan in new[] { Plan(0, uint.MaxValue), Plan(0, uint.MaxValue - 1), Plan(1u << 30, 1) })
        {
            var (status, stdout, exit) = Run(plan);
            Assert.Equal(1, exit);
            Assert.Equal("read plan: stage plan: malformed", ContainerProcess.Failure(status));
        }
    }

    [RootFact]
    public void NotStartedMeansNotRun()
    {
        var (status, stdout, exit) = Run(Native(Exec("sh", "-c", "echo ran")), start: false);
        Assert.Equal("R", status);
        Assert.Equal("", stdout);
        Assert.Equal(1, exit);
    }

    [Fact]
    public void TerminalsAndStartContainerHooksStayWithTheManagedStage()
    {
        Assert.Throws<InvalidOperationException>(() => (Exec("true") with { StartContainerHooks = [new Hook { Path = "/bin/true" }] }).WriteNativeFramed(new MemoryStream()));
        Assert.Throws<InvalidOperationException>(() => (Exec("true") with { Terminal = true }).WriteNativeFramed(new MemoryStream()));
        var e = Assert.Throws<InvalidDataException>(() => Exec("printf", "a\0b").WriteNativeFramed(new MemoryStream()));
        Assert.Contains("NUL", e.Message);
    }

    [Fact]
    public void ReportsOfBothStagesReadAsMessages()
    {
        Assert.Equal("seccomp: seccomp(SECCOMP_SET_MODE_FILTER): Operation not permitted (EPERM)", ContainerProcess.Failure("Eseccomp\0seccomp(SECCOMP_SET_MODE_FILTER)\0\01"));
        Assert.Equal("hostname: sethostname 'x': Invalid argument (EINVAL)", ContainerProcess.Failure("Ehostname: sethostname 'x': Invalid argument (EINVAL)"));
    }
}

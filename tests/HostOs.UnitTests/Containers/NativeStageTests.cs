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

    /// <summary>
    /// Runs the stage to its end; returns its status reports, stdout and exit code. With
    /// <paramref name="hookState"/>, that follows the plan (a plan with startContainer hooks);
    /// <paramref name="console"/> becomes fd 6; <paramref name="ownNamespaces"/> runs it
    /// through unshare(1) in mount and UTS namespaces of its own (a create plan's mounts and
    /// hostname stay there).
    /// </summary>
    private static (string Status, string Stdout, int Exit) Run(byte[] framedPlan, bool start = true, string? hookState = null,
        SafeFileHandle? console = null, bool ownNamespaces = false)
    {
        var (controlRead, controlWrite) = Sys.Pipe();
        var (statusRead, statusWrite) = Sys.Pipe();
        var (outRead, outWrite) = Sys.Pipe();
        using SafeFileHandle mountNamespace = Sys.Open("/proc/self/ns/mnt", 0);
        int pid = Sys.Spawn(new SpawnRequest
        {
            Path = ownNamespaces ? "/usr/bin/unshare" : Binary.Value,
            Args = ownNamespaces ? ["unshare", "--mount", "--uts", "--", Binary.Value] : [Binary.Value],
            ExtraFds = [controlRead, statusWrite, mountNamespace, .. console is null ? Array.Empty<SafeFileHandle>() : [console]],
            Stdout = outWrite,
            Stderr = outWrite,
            NewSession = true,
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
            if (hookState is not null) StagePlan.WriteFramedState(control, hookState);
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
        plan.WriteFramed(stream);
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
            foreach (uint v in new uint[] { 3, 0, 0, 0, 0, 40 }) w.Write(v); // version 3
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

    [RootFact]
    public void ATerminalsMasterGoesOverTheConsoleSocketAndTheSlaveIsTheProgramsTerminal()
    {
        var (ours, theirs) = Sys.SocketPair();
        using (ours)
        {
            StagePlan plan = Exec("sh", "-c", "tty; stty size; ls -l /proc/self/fd/0 /proc/self/fd/2 | grep -c /dev/pts/") with
            {
                Terminal = true, ConsoleFd = 6, ConsoleRows = 33, ConsoleColumns = 111,
            };
            byte[] framed = Native(plan);
            string output = "";
            var reader = new Thread(() =>
            {
                using SafeFileHandle master = Sys.ReceiveDescriptor(ours);
                using var stream = new FileStream(master, FileAccess.Read, 1);
                var text = new StringBuilder();
                byte[] buffer = new byte[256];
                try
                {
                    int n;
                    while ((n = stream.Read(buffer)) > 0) text.Append(Encoding.UTF8.GetString(buffer, 0, n));
                }
                catch (IOException)
                {
                    // EIO: the slave's last holder is gone
                }
                output = text.ToString();
            });
            reader.Start();
            var (status, stdout, exit) = Run(framed, console: theirs);
            theirs.Dispose();
            Assert.True(reader.Join(TimeSpan.FromSeconds(20)), "nothing came through the pty");
            Assert.Equal("R", status);
            Assert.Equal(0, exit);
            Assert.Equal("", stdout); // everything went to the terminal
            Assert.Matches(@"^/dev/pts/\d+\r\n33 111\r\n2\r\n$", output);
        }
    }

    [RootFact]
    public void StartContainerHooksGetTheStateOnStdinBeforeTheProgramRuns()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-stage-hooks-").FullName;
        string seen = Path.Combine(dir, "seen");
        // The state is larger than a pipe holds: written as the hook reads it, not all at once.
        string state = "{\"ociVersion\":\"1.2.0\",\"id\":\"" + new string('x', 100_000) + "\"}";
        StagePlan plan = Exec("sh", "-c", $"cat {seen}; echo program") with
        {
            StartContainerHooks =
            [
                new Hook { Path = "/bin/sh", Args = ["sh", "-c", $"wc -c > {seen}; echo hook-args $0 >> {seen}", "zero"] },
                new Hook { Path = "/bin/sh", Args = ["sh", "-c", $"echo second $HOOK_ENV >> {seen}"], Env = ["HOOK_ENV=from-the-spec"] },
            ],
        };
        var (status, stdout, exit) = Run(Native(plan), hookState: state);
        Assert.Equal("R", status);
        Assert.Equal(0, exit);
        Assert.Equal($"{Encoding.UTF8.GetByteCount(state)}\nhook-args zero\nsecond from-the-spec\nprogram\n", stdout);
        Directory.Delete(dir, true);
    }

    [RootFact]
    public void AFailingHookIsNamedWithItsOutputAndTheProgramNeverRuns()
    {
        StagePlan Hooked(Hook hook) => Exec("sh", "-c", "echo program") with { StartContainerHooks = [new Hook { Path = "/bin/true" }, hook] };
        var (status, stdout, exit) = Run(Native(Hooked(new Hook { Path = "/bin/sh", Args = ["sh", "-c", "echo '  no good\n'; exit 3"] })), hookState: "{}");
        Assert.Equal(1, exit);
        Assert.DoesNotContain("program", stdout);
        Assert.Equal("startContainer hooks: startContainer hook 1 (/bin/sh): exit code 3: no good", ContainerProcess.Failure(status[1..]));

        var clock = Stopwatch.StartNew();
        (status, _, _) = Run(Native(Hooked(new Hook { Path = "/bin/sh", Args = ["sh", "-c", "echo waiting; exec sleep 60"], Timeout = 1 })), hookState: "{}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"a 1 s timeout took {clock.Elapsed}");
        Assert.Equal("startContainer hooks: startContainer hook 1 (/bin/sh): killed after its timeout of 1 s: waiting", ContainerProcess.Failure(status[1..]));

        (status, _, _) = Run(Native(Hooked(new Hook { Path = "/no/such/hook" })), hookState: "{}");
        Assert.Equal("startContainer hooks: startContainer hook 1 (/no/such/hook): execve '/no/such/hook': No such file or directory (ENOENT)",
            ContainerProcess.Failure(status[1..]));

        (status, _, _) = Run(Native(Hooked(new Hook { Path = "/bin/sh", Args = ["sh", "-c", "kill -TERM $$"] })), hookState: "{}");
        Assert.Equal("startContainer hooks: startContainer hook 1 (/bin/sh): killed by signal 15", ContainerProcess.Failure(status[1..]));

        // As runc runs them: as the container's user, with its capabilities and no_new_privs.
        StagePlan asUser = Hooked(new Hook { Path = "/bin/sh", Args = ["sh", "-c", "echo $(id -u) $(grep -E '^(CapEff|NoNewPrivs)' /proc/self/status); exit 1"] }) with { Uid = 1000, Gid = 1000 };
        (status, _, _) = Run(Native(asUser), hookState: "{}");
        Assert.Equal("startContainer hooks: startContainer hook 1 (/bin/sh): exit code 1: 1000 CapEff: 0000000000000000 NoNewPrivs: 1", ContainerProcess.Failure(status[1..]));
    }

    [RootFact]
    public void AMountDestinationThroughASymlinkInTheRootIsRefused()
    {
        string rootfs = Directory.CreateTempSubdirectory("hostos-stage-rootfs-").FullName;
        File.CreateSymbolicLink(Path.Combine(rootfs, "etc"), "/etc");
        StagePlan plan = new StagePlan
        {
            Rootfs = rootfs, Args = ["true"], Cwd = "/",
            Mounts = [new StagePlan.PlannedMount("/etc/hostos-test", "tmpfs", "tmpfs", [])],
        };
        var (status, _, exit) = Run(Native(plan), ownNamespaces: true);
        Assert.Equal(1, exit);
        Assert.Equal("root file system: mount destination '/etc/hostos-test': '/etc' is a symbolic link in the container's tree", ContainerProcess.Failure(status));
        Assert.False(File.Exists("/etc/hostos-test"));
        plan = plan with { Mounts = [new StagePlan.PlannedMount("/x/../../y", "tmpfs", "tmpfs", [])] };
        Assert.Equal("root file system: mount destination '/x/../../y' must not contain '..'", ContainerProcess.Failure(Run(Native(plan), ownNamespaces: true).Status));
        Directory.Delete(rootfs, true);
    }

    [RootFact]
    public void AMalformedCreateSectionIsRefused()
    {
        // Cut inside the first mount's record: refused before that mount, and before any
        // hostname (the stage runs in namespaces of its own all the same).
        string rootfs = Directory.CreateTempSubdirectory("hostos-stage-rootfs-").FullName;
        string before = File.ReadAllText("/proc/sys/kernel/hostname");
        byte[] plan = Native(new StagePlan
        {
            Rootfs = rootfs, Args = ["true"], Cwd = "/", Hostname = "malformed",
            Mounts = [new StagePlan.PlannedMount("/mnt", "tmpfs", "tmpfs", [])],
        });
        int at = plan.AsSpan().IndexOf("/mnt\0"u8) + 5;
        byte[] cut = [.. BitConverter.GetBytes(at - 4), .. plan.AsSpan(4, at - 4)];
        var (status, _, exit) = Run(cut, ownNamespaces: true);
        Assert.Equal(1, exit);
        Assert.Equal("read plan: stage plan: malformed", ContainerProcess.Failure(status));
        Assert.False(Directory.Exists(Path.Combine(rootfs, "mnt")));
        Assert.Equal(before, File.ReadAllText("/proc/sys/kernel/hostname"));
        Directory.Delete(rootfs, true);
    }

    [Fact]
    public void ANulInAStringIsRefusedBeforeTheStageRuns()
    {
        var e = Assert.Throws<InvalidDataException>(() => Exec("printf", "a\0b").WriteFramed(new MemoryStream()));
        Assert.Contains("NUL", e.Message);
    }

    [Fact]
    public void ReportsReadAsMessages()
    {
        Assert.Equal("seccomp: seccomp(SECCOMP_SET_MODE_FILTER): Operation not permitted (EPERM)", ContainerProcess.Failure("Eseccomp\0seccomp(SECCOMP_SET_MODE_FILTER)\0\01"));
        Assert.Equal("hostname: sethostname 'x': Invalid argument (EINVAL)", ContainerProcess.Failure("Ehostname\0sethostname\0x\022"));
        Assert.Equal("the stage's report is malformed: half a report", ContainerProcess.Failure("Ehalf a report"));
    }
}

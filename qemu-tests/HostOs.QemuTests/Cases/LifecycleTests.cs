using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// The runc-compatible front (hostos-runc) in a HostOS VM on cgroup v2: the lifecycle script
/// (qemu-tests/lifecycle.sh: create/state/start/exec/list/kill/delete/run with runc's exit
/// codes, hooks, seccomp, terminals, pause/resume, spec) passes whole. runc is held to the
/// same script on the build host (qemu-tests/lifecycle-compare.sh, run by test.sh): in this
/// TCG guest runc once drove the kernel into a soft lockup (docs/testing.md).
/// </summary>
public sealed class LifecycleTests
{
    [Fact]
    public async Task HostosRuncPassesTheLifecycleScript()
    {
        await using var vm = QemuMachine.Create("lifecycle");
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();

        var (code, output) = await sh.RunAsync("sh /usr/lib/hostos-test/lifecycle.sh hostos-runc", TimeSpan.FromMinutes(4));
        vm.Console.Note($"lifecycle.sh hostos-runc:\n{output}");
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(code == 0, output);
        Assert.Matches(@"^\d+ passed, 0 failed$", lines[^1]);
        Assert.True(lines.Count(l => l.StartsWith("ok - ", StringComparison.Ordinal)) >= 60, output);

        // Attached terminals, which runc only offers to a caller with a controlling terminal
        // (the test shell has none): the runtime proxies the pty itself.
        string attached = await sh.CheckAsync("hostos-runc --root /tmp/t run -b /tmp/lifecycle-hostos-runc/ttyrun att </dev/null");
        Assert.Contains("/dev/pts/", attached);
        Assert.Contains("in-a-tty", attached);
        await sh.CheckAsync("hostos-runc --root /tmp/t run -d -b /tmp/lifecycle-hostos-runc/sleep sl </dev/null");
        Assert.Matches("^/dev/pts/[0-9]+", await sh.CheckAsync("hostos-runc --root /tmp/t exec -t sl tty </dev/null"));
        // The stage ignores SIGPIPE while it feeds startContainer hooks, and a .NET process
        // (as the stage once was) ignores it always: the program must not inherit that, with
        // a terminal or without. (The test shell itself ignores glibc's internal signals 32
        // and 33, which pass through.)
        foreach (string exec in new[] { "exec -t", "exec" })
        {
            string status = await sh.CheckAsync($"hostos-runc --root /tmp/t {exec} sl cat /proc/self/status </dev/null");
            ulong ignored = Convert.ToUInt64(System.Text.RegularExpressions.Regex.Match(status, @"SigIgn:\s+([0-9a-f]+)").Groups[1].Value, 16);
            Assert.True((ignored & (1UL << (13 - 1))) == 0, $"{exec}: SIGPIPE is ignored in the container's program: {status}");
        }
        // The front: hostos-init serves what the caller would get itself, and nothing else
        // (docs/containers.md, "The front"); --debug says which way a command went.
        Assert.Contains("served by hostos-init (PID 1)", await sh.CheckAsync("hostos-runc --debug --root /tmp/t state sl 2>&1 >/dev/null"));
        // create leaves its container to whoever adopts the caller's orphans: served when
        // that is PID 1, not under a subreaper (a shim), which waits for the container itself.
        Assert.Contains("served by hostos-init (PID 1)",
            await sh.CheckAsync("hostos-runc --debug --root /tmp/t create -b /tmp/lifecycle-hostos-runc/sleep sl2 2>&1 </dev/null"));
        string underShim = await sh.CheckAsync(
            "hostos-guestcheck subreaper /usr/bin/hostos-runc --debug --root /tmp/t create -b /tmp/lifecycle-hostos-runc/sleep sl4 2>&1 </dev/null");
        Assert.Matches(@"run in the caller's process: create leaves its process to a subreaper \(pid [0-9]+\), not to hostos-init", underShim);
        await sh.CheckAsync("hostos-runc --root /tmp/t delete --force sl4");
        Assert.Contains("run in the caller's process: the caller is in another uts namespace",
            await sh.CheckAsync("unshare -u hostos-runc --debug --root /tmp/t state sl2 2>&1 >/dev/null"));
        Assert.Contains("run in the caller's process: the caller's Umask (0077)",
            await sh.CheckAsync("(umask 077; hostos-runc --debug --root /tmp/t state sl2 2>&1 >/dev/null)"));
        // Served, a run's container is hostos-init's child, its stdio the caller's, relative
        // paths the caller's, and a relayed signal reaches it.
        string relayed = await sh.CheckAsync(
            "cd /tmp/lifecycle-hostos-runc && hostos-guestcheck make-bundle trapper sh -c 'trap \"echo got-term; exit 7\" TERM; echo started; while :; do sleep 0.1; done' && " +
            "(hostos-runc --root /tmp/t run -b trapper --pid-file rel.pid sl3 </dev/null >trap.out 2>&1 & f=$!; " +
            "while ! grep -q started trap.out 2>/dev/null; do sleep 0.1; done; " +
            "grep -q '^PPid:[[:space:]]*1$' /proc/$(cat rel.pid)/status || echo not-a-child-of-hostos-init; " +
            "kill -TERM $f; wait $f; echo \"exit $?\"; cat trap.out)", TimeSpan.FromSeconds(60));
        Assert.Equal("exit 7\nstarted\ngot-term", relayed.Trim());
        await sh.CheckAsync("hostos-runc --root /tmp/t delete --force sl2");
        await sh.CheckAsync("hostos-runc --root /tmp/t delete --force sl");

        // Nothing of ours left: no container cgroup, no state, no stage.
        Assert.Equal("0", await sh.CheckAsync("find /sys/fs/cgroup/hostos -mindepth 1 -type d 2>/dev/null | wc -l"));
        Assert.Equal("0", await sh.CheckAsync("ls /tmp/lifecycle-hostos-runc/state | wc -l"));
        // hostos-runc's stages only (in a cgroup of hostos-runc's default
        // hostos/ID): the init's own exec probes (private-web's, every 2 s) run a stage for a
        // moment, in their container's cgroup, which is not a leak.
        Assert.Equal("0", await sh.CheckAsync(
            "for f in $(grep -l -e 'hostos-stag[e]' /proc/[0-9]*/cmdline 2>/dev/null); do " +
            "grep -qs '^0::/hostos/' \"${f%/cmdline}/cgroup\" && echo \"$f\"; done | wc -l"));
    }
}

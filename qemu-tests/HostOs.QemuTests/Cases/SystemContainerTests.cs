using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// System containers (issue 4): images baked into the root, onboot steps before services,
/// service containers supervised with health probes, restarts and clean-up, all without
/// any network. The test image declares onboot-proof, private-web and liveness beside the
/// shipped image's web (qemu-tests/image/hostos-test.json, image/hostos.json).
/// </summary>
public sealed class SystemContainerTests
{
    private const string Cgroups = "/sys/fs/cgroup/hostos-system";

    [Fact]
    public async Task OnbootThenServiceContainers_ProbedRestartedAndCleanedUp()
    {
        await using var vm = QemuMachine.Create("system-containers");
        vm.Start();
        await vm.WaitForReadyAsync();

        // The onboot step ran to completion (its output in the log under its name) before
        // any service container was started.
        string log = vm.Console.Since(0);
        int onbootDone = log.IndexOf("onboot onboot-proof: done", StringComparison.Ordinal);
        Assert.True(onbootDone > 0, "onboot-proof did not finish:\n" + vm.Console.Tail());
        Assert.Contains("[onboot-proof] onboot ran", log);
        Assert.True(onbootDone < log.IndexOf("service web started", StringComparison.Ordinal));
        // "HostOS ready" waited for the required containers' first healthy probe.
        await vm.Console.WaitForAsync(@"service web ready", TimeSpan.FromSeconds(1));
        await vm.Console.WaitForAsync(@"service private-web ready", TimeSpan.FromSeconds(1));
        // Ready means probed healthy: the probe's verdict comes first.
        log = vm.Console.Since(0);
        Assert.True(log.IndexOf("service web is healthy", StringComparison.Ordinal) is int healthy && healthy > 0
                    && healthy < log.IndexOf("service web ready", StringComparison.Ordinal), "web was ready before its probe passed");

        SerialShell sh = await vm.ShellAsync();
        Assert.Equal("onboot ran", await sh.CheckAsync("cat /tmp/onboot"));
        Assert.Equal("onboot", await sh.CheckAsync("cat /tmp/onboot-hostname"));
        // Docker's default capability set, nothing more.
        Assert.Equal("CapEff:\t00000000a80425fb", await sh.CheckAsync("cat /tmp/onboot-caps"));
        Assert.NotEqual("onboot", await sh.CheckAsync("hostname"));

        // web: host network, user 33, no capabilities, read-only root, limits in its cgroup.
        Assert.Contains("Hello from HostOS", await sh.CheckAsync("wget -q -O - http://127.0.0.1:8080/"));
        string webPid = await sh.CheckAsync($"head -n 1 {Cgroups}/web/cgroup.procs");
        string status = await sh.CheckAsync($"grep -E '^(Uid|CapEff|CapBnd)' /proc/{webPid}/status");
        Assert.Contains("Uid:\t33\t33\t33\t33", status);
        Assert.Contains("CapEff:\t0000000000000000", status);
        Assert.Contains("CapBnd:\t0000000000000000", status);
        Assert.Equal("33554432", await sh.CheckAsync($"cat {Cgroups}/web/memory.max"));
        Assert.Equal("64", await sh.CheckAsync($"cat {Cgroups}/web/pids.max"));
        Assert.Equal("50000 100000", await sh.CheckAsync($"cat {Cgroups}/web/cpu.max"));
        Assert.Contains("Read-only file system",
            (await sh.RunAsync($"nsenter -t {webPid} -m touch /x 2>&1")).Output);
        // Its own pid namespace: the server is PID 1 there and sees nothing of the host.
        Assert.Equal("1", await sh.CheckAsync($"grep NSpid /proc/{webPid}/status | cut -f3"));

        // private-web: its own network namespace, so nothing listens on the host's 8081,
        // yet it is ready: its exec probe (wget inside the container) succeeded.
        var (code, _) = await sh.RunAsync("wget -q -T 2 -O - http://127.0.0.1:8081/");
        Assert.NotEqual(0, code);
        string privatePid = await sh.CheckAsync($"head -n 1 {Cgroups}/private-web/cgroup.procs");
        Assert.NotEqual(await sh.CheckAsync("readlink /proc/1/ns/net"), await sh.CheckAsync($"readlink /proc/{privatePid}/ns/net"));
        Assert.Contains("CapEff:\t0000000000000400", await sh.CheckAsync($"grep CapEff /proc/{privatePid}/status"));
        // ... but its published port reaches it: host 8083 -> its 8081.
        Assert.Contains("Hello from HostOS", await sh.CheckAsync("wget -q -O - http://127.0.0.1:8083/"));

        // Killing web's server: the service restarts it, and it serves again.
        int mark = vm.Console.Mark();
        await sh.CheckAsync($"kill -9 {webPid}");
        await vm.Console.WaitForAsync(@"service web exited \(killed by signal 9\); restart 1 in 100 ms", TimeSpan.FromSeconds(20), mark);
        await vm.Console.WaitForAsync(@"service web is healthy", TimeSpan.FromSeconds(60), mark);
        Assert.Contains("Hello from HostOS", await sh.CheckAsync("wget -q -O - http://127.0.0.1:8080/"));
        Assert.NotEqual(webPid, await sh.CheckAsync($"head -n 1 {Cgroups}/web/cgroup.procs"));

        // liveness: its container lives on (sleep is its init) but the server in it dies:
        // the tcp probe fails three times in a row and the service is restarted for it.
        mark = vm.Console.Mark();
        string livenessPids = await sh.CheckAsync($"echo $(cat {Cgroups}/liveness/cgroup.procs)");
        // The server is the httpd whose parent is not an httpd: busybox httpd forks a child
        // for each connection (the tcp probe's, every second), which may be in the list and
        // gone a moment later, so a pid that vanished is skipped, not an error.
        string httpd = await sh.CheckAsync($$"""for p in {{livenessPids}}; do n=$(sed -n 's/^Name:.//p' /proc/$p/status 2>/dev/null); pp=$(sed -n 's/^PPid:.//p' /proc/$p/status 2>/dev/null); [ "$n" = httpd ] && [ "$(sed -n 's/^Name:.//p' /proc/$pp/status 2>/dev/null)" != httpd ] && echo $p; done; true""");
        Assert.Matches("^[0-9]+$", httpd);
        await sh.CheckAsync($"kill -9 {httpd}");
        await vm.Console.WaitForAsync(@"service liveness failed its tcp health check 3 times in a row: restarting it", TimeSpan.FromSeconds(30), mark);
        await vm.Console.WaitForAsync(@"service liveness exited \(killed by signal 9\); restart 1", TimeSpan.FromSeconds(20), mark);
        await vm.Console.WaitForAsync(@"service liveness is healthy", TimeSpan.FromSeconds(60), mark);

        // Every ended run left nothing: one root mount and one cgroup per running container,
        // and no bundle of the finished onboot step.
        Assert.Equal("3", await sh.CheckAsync("grep -c ' /run/hostos/containers/[^ ]*/rootfs ' /proc/self/mountinfo"));
        Assert.Equal("liveness private-web web", await sh.CheckAsync("echo $(ls /run/hostos/containers | sort)"));
        Assert.Equal("liveness private-web web", await sh.CheckAsync($"echo $(cd {Cgroups} && ls -d */ | tr -d / | sort)"));
    }
}

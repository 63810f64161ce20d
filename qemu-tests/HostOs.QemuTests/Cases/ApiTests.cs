using System.Text.Json;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// The host API (issue 4): the real dbus-daemon as the system bus, org.hostos.Manager1 in
/// the init, hostctl over it: status and services as tables and JSON, logs (and -f),
/// restart; changes refused to an unprivileged user.
/// </summary>
public sealed class ApiTests
{
    [Fact]
    public async Task Hostctl_OverTheSystemBus()
    {
        await using var vm = QemuMachine.Create("api");
        vm.Start();
        await vm.WaitForReadyAsync();
        await vm.Console.WaitForAsync(@"api: org\.hostos\.Manager1 on the system bus", TimeSpan.FromSeconds(60));
        await vm.Console.WaitForAsync(@"boot assessment: healthy", TimeSpan.FromSeconds(60));
        SerialShell sh = await vm.ShellAsync();

        // status: JSON that parses, with the machine's facts.
        using (JsonDocument status = JsonDocument.Parse(await sh.CheckAsync("hostctl --json status")))
        {
            JsonElement s = status.RootElement;
            Assert.Equal("0.1.0", s.GetProperty("version").GetString());
            Assert.Equal(await sh.CheckAsync("hostname"), s.GetProperty("hostname").GetString());
            Assert.Equal(await sh.CheckAsync("cat /etc/machine-id"), s.GetProperty("machine_id").GetString());
            Assert.Equal("healthy", s.GetProperty("boot").GetString());
            Assert.StartsWith("10.0.2.15/24", s.GetProperty("address").GetString());
        }
        Assert.Matches(@"(?m)^boot\s+healthy$", await sh.CheckAsync("hostctl status"));

        // services: every service and container, human and JSON.
        Assert.Matches(@"(?m)^web\s+container\s+ready\s+[0-9]+\s+0\s+healthy", await sh.CheckAsync("hostctl services"));
        using (JsonDocument services = JsonDocument.Parse(await sh.CheckAsync("hostctl --json services")))
        {
            var byName = services.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("name").GetString()!);
            Assert.Equal("container", byName["web"].GetProperty("kind").GetString());
            Assert.Equal("ready", byName["dbus"].GetProperty("state").GetString());
            Assert.Equal("service", byName["dbus"].GetProperty("kind").GetString());
            Assert.True(byName["crash-loop"].GetProperty("restarts").GetInt32() >= 1);
        }

        // logs: a unit's lines, JSON lines, and -f following new ones.
        Assert.Contains("crash-loop: crashing", await sh.CheckAsync("hostctl logs -n 3 crash-loop"));
        foreach (string line in (await sh.CheckAsync("hostctl --json logs -n 5 crash-loop")).Split('\n'))
        {
            using JsonDocument d = JsonDocument.Parse(line);
            Assert.Equal("crash-loop", d.RootElement.GetProperty("unit").GetString());
        }
        // In a subshell, so the job is not the test shell's child (SerialShell).
        await sh.CheckAsync("(hostctl logs -f follow-test > /tmp/follow 2>&1 & echo $! > /tmp/follow.pid)");
        await Task.Delay(1500);
        await sh.CheckAsync("logger -t follow-test first-followed-line");
        string followed = "";
        for (int i = 0; i < 20 && !followed.Contains("first-followed-line"); i++)
        {
            await Task.Delay(500);
            followed = await sh.CheckAsync("cat /tmp/follow");
        }
        Assert.Contains("follow-test: first-followed-line", followed);
        await sh.CheckAsync("kill $(cat /tmp/follow.pid)");

        // restart: the container is stopped and started again, whatever its policy.
        int mark = vm.Console.Mark();
        await sh.CheckAsync("hostctl restart web");
        await vm.Console.WaitForAsync(@"service web ended \(.*\); restarting as requested", TimeSpan.FromSeconds(30), mark);
        await vm.Console.WaitForAsync(@"service web ready", TimeSpan.FromSeconds(60), mark);
        // A service waiting out its backoff (crash-loop, by now 10 s and more) starts at once.
        mark = vm.Console.Mark();
        await sh.CheckAsync("hostctl restart crash-loop");
        await vm.Console.WaitForAsync(@"service crash-loop started", TimeSpan.FromSeconds(5), mark);

        // Not root and not in hostos-admin: reading works, changing is refused by name.
        Assert.Matches(@"(?m)^web\s+container", await sh.CheckAsync("hostos-guestcheck as-user 65534 /usr/bin/hostctl services"));
        var (code, output) = await sh.RunAsync("hostos-guestcheck as-user 65534 /usr/bin/hostctl restart web 2>&1");
        Assert.Equal(1, code);
        Assert.Contains("uid 65534 may not change the system", output);

        // Errors name what was wrong.
        (code, output) = await sh.RunAsync("hostctl restart no-such-thing 2>&1");
        Assert.Equal(1, code);
        Assert.Contains("no service or container named 'no-such-thing'", output);
        (code, output) = await sh.RunAsync("hostctl logs --since yesterday-ish web 2>&1");
        Assert.Equal(2, code);
        Assert.Contains("--since 'yesterday-ish'", output);
    }
}

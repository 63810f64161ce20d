using System.Globalization;
using System.Text.RegularExpressions;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>Supervision: sd_notify readiness, restart with backoff, output collection.</summary>
public sealed class ServiceTests
{
    private static double Uptime(Match m) => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);

    [Fact]
    public async Task NotifyReadiness_RestartBackoff_AndOutputAreSupervised()
    {
        await using var vm = QemuMachine.Create("services");
        vm.Start();
        await vm.WaitForReadyAsync();

        // notify-demo is ready only after READY=1 (sent 1 s after start), and "HostOS ready"
        // waits for it.
        var started = await vm.Console.WaitForAsync(@"\[\s*([0-9.]+)\] hostos: service notify-demo started", TimeSpan.FromSeconds(5));
        var ready = await vm.Console.WaitForAsync(@"\[\s*([0-9.]+)\] hostos: service notify-demo ready", TimeSpan.FromSeconds(5));
        var hostReady = await vm.Console.WaitForAsync(@"\[\s*([0-9.]+)\] hostos: HostOS ready", TimeSpan.FromSeconds(5));
        Assert.True(Uptime(ready) - Uptime(started) >= 0.9, $"ready {Uptime(ready)} vs started {Uptime(started)}");
        Assert.True(Uptime(hostReady) >= Uptime(ready));
        await vm.Console.WaitForAsync(@"\[notify-demo\] notify-service: sent READY=1", TimeSpan.FromSeconds(5));

        // crash-loop exits 3 at once, every time: restarts back off 100, 200, 400 ms ...
        // and its output reaches the log with its name.
        for (int i = 1; i <= 4; i++)
        {
            int ms = 100 << (i - 1);
            await vm.Console.WaitForAsync($@"service crash-loop exited \(exit code 3\); restart {i} in {ms} ms", TimeSpan.FromSeconds(30));
        }
        await vm.Console.WaitForAsync(@"\[crash-loop\] crashing", TimeSpan.FromSeconds(5));

        // A stock .NET worker (Microsoft.Extensions.Hosting.Systemd, unchanged) in a pid
        // namespace of its own knows it is supervised and says READY=1.
        await vm.Console.WaitForAsync(@"service hosted-demo ready", TimeSpan.FromSeconds(60));
        // (.NET 10 runs ExecuteAsync on the thread pool: its line may come after "ready".)
        await vm.Console.WaitForAsync(@"\[hosted-demo\] Worker\[0\] hosted-demo working, systemd service: True", TimeSpan.FromSeconds(30));

        // The watchdog: pings for 3 s, then silence; stopped for it within its 2 s, restarted.
        await vm.Console.WaitForAsync(@"service watchdog-demo ready", TimeSpan.FromSeconds(60));
        await vm.Console.WaitForAsync(@"\[watchdog-demo\] notify-watchdog: silent from now on", TimeSpan.FromSeconds(60));
        await vm.Console.WaitForAsync(@"service watchdog-demo missed its watchdog \(no WATCHDOG=1 for 2 s\): stopping it", TimeSpan.FromSeconds(10));
        await vm.Console.WaitForAsync(@"service watchdog-demo exited \(killed by signal (15|9)\); restart 1 in 100 ms", TimeSpan.FromSeconds(20));

        // Killing a service restarts it, and it becomes ready again.
        SerialShell sh = await vm.ShellAsync();
        int mark = vm.Console.Mark();
        await sh.CheckAsync("kill $(pidof hostos-guestcheck)");
        await vm.Console.WaitForAsync(@"service notify-demo exited \(killed by signal 15\); restart 1 in 100 ms", TimeSpan.FromSeconds(10), mark);
        await vm.Console.WaitForAsync(@"\[notify-demo\] notify-service: sent READY=1", TimeSpan.FromSeconds(20), mark);
        Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
    }
}

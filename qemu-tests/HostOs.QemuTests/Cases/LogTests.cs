using System.Text.RegularExpressions;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// The journal (issue 4): every service's and container's output, the init's own lines,
/// syslog (/dev/log) and journald native protocol clients, on state with rotation; a
/// flooding service neither stalls the init nor loses lines nor fills the disk.
/// </summary>
public sealed class LogTests
{
    private const string Dir = "/var/log/hostos";

    [Fact]
    public async Task Journal_CollectsEverySource_AndSurvivesAFlood()
    {
        await using var vm = QemuMachine.Create("logs");
        vm.Start();
        await vm.WaitForReadyAsync();
        await vm.Console.WaitForAsync(@"\[crash-loop\] crashing", TimeSpan.FromSeconds(30));
        SerialShell sh = await vm.ShellAsync();

        // The init's own lines and a service's output.
        await WaitForLineAsync(sh, "\"u\":\"hostos-init\".*HostOS ready");
        await WaitForLineAsync(sh, "\"u\":\"crash-loop\",\"p\":6,\"msg\":\"crashing\"");

        // syslog(3) clients through /dev/log (busybox logger: user.notice = severity 5),
        // journald clients through the native socket (a value with a newline in binary form).
        await sh.CheckAsync("logger -t syslog-test hello-from-syslog");
        await sh.CheckAsync("hostos-guestcheck journal-send native-test 3 'first line\nsecond line'");
        await WaitForLineAsync(sh, "\"u\":\"syslog-test\",\"p\":5,\"msg\":\"hello-from-syslog\"");
        await WaitForLineAsync(sh, "\"u\":\"native-test\",\"p\":3,\"pid\":[0-9]*,\"msg\":\"first line\\\\nsecond line\"");

        // The flood: 100000 lines as fast as sh can print them.
        int mark = vm.Console.Mark();
        await sh.CheckAsync("echo go > /run/flood");
        // The init goes on: a killed service is restarted and becomes ready meanwhile.
        await sh.CheckAsync("kill $(pidof hostos-guestcheck)");
        await vm.Console.WaitForAsync(@"service notify-demo exited \(killed by signal 15\); restart 1 in 100 ms", TimeSpan.FromSeconds(30), mark);
        await vm.Console.WaitForAsync(@"service notify-demo ready", TimeSpan.FromSeconds(30), mark);
        await vm.Console.WaitForAsync(@"\[notify-demo\] notify-service: sent READY=1", TimeSpan.FromSeconds(30), mark);
        await vm.Console.WaitForAsync(@"service flood ended \(exit code 0\)", TimeSpan.FromSeconds(300), mark);

        // Nothing lost: the kept window of the flood is contiguous and ends with its last line.
        await WaitForLineAsync(sh, "\"u\":\"flood\",\"p\":6,\"msg\":\"flood-done\"");
        string[] window = (await sh.CheckAsync(
            $"grep -h '\"u\":\"flood\"' {Dir}/*.jsonl | sed -n 's/.*\"msg\":\"\\([0-9]*\\)\"}}$/\\1/p' | " +
            "awk 'NR==1{f=$1} NR>1 && $1!=p+1{bad++} {p=$1} END{print f, p, NR, bad+0}'")).Split(' ');
        int first = int.Parse(window[0]), last = int.Parse(window[1]), count = int.Parse(window[2]);
        Assert.Equal(100000, last);
        Assert.Equal(last - first + 1, count);
        Assert.Equal("0", window[3]);
        // Bounded on disk: rotated files, at most the journal's 32 MiB (+ the current file).
        Assert.True(int.Parse(await sh.CheckAsync($"ls {Dir} | wc -l")) >= 2);
        long bytes = long.Parse(await sh.CheckAsync($"du -sk {Dir} | cut -f1")) * 1024;
        Assert.True(bytes <= (36L << 20), $"{bytes} bytes in {Dir}");
        // And the console was spared: a budgeted share of the lines, the rest counted.
        int shown = Regex.Matches(vm.Console.Since(mark), @"\[flood\] [0-9]+").Count;
        Assert.True(shown < 2000, $"{shown} flood lines on the console");
        Assert.Matches(@"\[flood\] \([0-9]+ lines not shown on the console; all are in the journal\)", vm.Console.Since(mark));
    }

    private static async Task WaitForLineAsync(SerialShell sh, string pattern)
    {
        for (int i = 0; i < 40; i++)
        {
            if (await sh.CheckAsync($"grep -c '{pattern}' {Dir}/*.jsonl | awk -F: '{{s+=$NF}} END {{print s}}'") != "0") return;
            await Task.Delay(500);
        }
        Assert.Fail($"no journal line matching {pattern}:\n" + await sh.CheckAsync($"tail -n 20 {Dir}/current.jsonl"));
    }
}

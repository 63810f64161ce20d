using System.Text.RegularExpressions;
using HostOs.QemuTests.Harness;
using HostOs.UnitTests.Images;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// A/B updates on a booted machine (issue 5, docs/updates.md): the image's own updater
/// takes payloads from an update repository on the build host (over HTTP, or on local
/// media: an EROFS disk of the same repository), writes the inactive slot
/// and the ESP, systemd-boot starts the new version on the next boot and the init blesses
/// it once healthy (an app installed before comes back on the new version with its
/// volume). Bad payloads and a stale index are refused with the boot entries as
/// they were; the operator rolls back and forth; a version whose health check fails falls
/// back by itself and says why; power cuts during the apply and during the new version's
/// trial never leave a machine that does not boot.
/// </summary>
public sealed class UpdateTests(UpdateSeries series) : IClassFixture<UpdateSeries>
{
    private const string U = "/usr/lib/hostos/updater/hostos-updater";
    private static readonly TimeSpan Boot = TimeSpan.FromMinutes(4);

    private static async Task<SerialShell> BlessedAsync(QemuMachine vm, string version, int mark, string counter = @"2-1")
    {
        string v = version.Replace(".", @"\.", StringComparison.Ordinal);
        await vm.Console.WaitForAsync($@"boot blessed: hostos-{v}\+{counter}\.conf -> hostos-{v}\.conf", Boot, mark, () => vm.IsRunning);
        return await vm.ShellAsync();
    }

    private static async Task<SerialShell> RebootAsync(QemuMachine vm, SerialShell sh)
    {
        int mark = vm.Console.Mark();
        await sh.FireAsync("hostctl reboot");
        await vm.Console.WaitForAsync("hostos: rebooting", TimeSpan.FromMinutes(1), mark);
        await vm.WaitForReadyAsync(vm.Console.Mark(), Boot);
        return await vm.ShellAsync();
    }

    private static async Task AssertRunningAsync(SerialShell sh, string version, string slot, string series)
    {
        string cmdline = await sh.CheckAsync("cat /proc/cmdline");
        Assert.Contains($"hostos.slot={slot} hostos.version={version}", cmdline);
        Assert.Equal(series, await sh.CheckAsync("cat /etc/hostos-series 2>/dev/null || echo none"));
    }

    /// <summary>After a fallback: the machine runs <paramref name="version"/> again, and the updater says why it left <paramref name="failed"/>, whose entry is used up.</summary>
    private static async Task<SerialShell> AssertFellBackAsync(QemuMachine vm, string version, string slot, string series, string failed, string failedSlot, string why)
    {
        SerialShell sh = await vm.ShellAsync();
        await AssertRunningAsync(sh, version, slot, series);
        string status = await sh.CheckAsync($"{U} status");
        vm.Console.Note(status);
        // The reason is what was not healthy at the last try's deadline: a service still starting may come first.
        Assert.Matches($@"rolled back  from {Regex.Escape(failed)}: (.*; )?{Regex.Escape(why)}", status);
        Assert.Contains($"entry        hostos-{failed}+0-3.conf: {failed}, slot {failedSlot}, bad", status);
        return sh;
    }

    [Fact]
    public async Task FullThenDelta_EachBootedAndBlessed_BadPayloadsRefusedWithEntriesUntouched_RollbackBothWays()
    {
        string foreignKey = Path.Combine(series.Work, "foreign", "foreign.key");
        UpdateSeries.Run(UpdateSeries.HostUpdater, "keygen", "--out", Path.Combine(series.Work, "foreign"), "--name", "foreign");
        series.Payload("0.2.0");
        series.Publish();
        series.Publish("frozen", validDays: 0);
        // Bad payloads, outside payloads/ so the index never names them.
        string flipped = series.Payload("0.2.0", file: "bad/flipped.hup");
        byte[] bytes = File.ReadAllBytes(flipped);
        bytes[bytes.Length / 2] ^= 0x08;
        File.WriteAllBytes(flipped, bytes);
        string truncated = series.Payload("0.2.0", file: "bad/truncated.hup");
        File.WriteAllBytes(truncated, File.ReadAllBytes(truncated)[..(bytes.Length / 3)]);
        series.Payload("0.2.0", file: "bad/foreign.hup", key: foreignKey);
        series.Payload("0.1.0", file: "bad/old.hup");

        // The same repository on local media as well (an EROFS disk, /dev/vdb): the full update
        // comes from there, as on a machine without a way to a mirror.
        string media = Path.Combine(series.Work, "media.erofs");
        UpdateSeries.Run("mkfs.erofs", "--quiet", media, series.RepoDir);
        await using var vm = QemuMachine.Create("update-ab");
        vm.ExtraDisks.Add(media);
        vm.Start();
        SerialShell sh = await BlessedAsync(vm, "0.1.0", 0);
        await sh.CheckAsync("mkdir -p /run/update-media && mount -t erofs -o ro /dev/vdb /run/update-media");
        await AssertRunningAsync(sh, "0.1.0", "a", "none");
        await sh.CheckAsync("echo kept > /var/lib/update-marker && sync");
        // The machine's workload: an app with a volume, pulled before the update, must run on
        // the new version from state alone (the registry is gone by then) with its volume.
        string work = Directory.CreateTempSubdirectory("update-app-").FullName;
        using (var registry = new Registry())
        {
            await AppTests.PushBusybox(registry, work);
            string host = $"10.0.2.2:{registry.Port}";
            await sh.CheckAsync($"echo '[{{\"host\": \"{host}\", \"insecure\": true}}]' > /etc/hostos/registries.json && chmod 600 /etc/hostos/registries.json");
            await sh.CheckAsync("""echo '{"name":"keeper","image":"IMAGE","command":["sh","-c","echo run >> /data/runs; exec httpd -f -p 82 -h /data"],"volumes":[{"name":"data","target":"/data"}],"health":{"type":"tcp","port":82}}' | hostctl app set -"""
                .Replace("IMAGE", $"{host}/hostos/busybox:1"));
            await vm.Console.WaitForAsync("service keeper is healthy", TimeSpan.FromMinutes(2));
        }
        Directory.Delete(work, recursive: true);
        string before = await sh.CheckAsync($"{U} status");
        Assert.Contains("entry        hostos-0.1.0.conf: 0.1.0, slot a, blessed", before);

        foreach (var (what, command, expected) in new[]
        {
            ("flipped bit", $"--payload {series.Url}bad/flipped.hup", "the payload is corrupt"),
            ("truncated", $"--payload {series.Url}bad/truncated.hup", "(truncated)"),
            ("unknown key", $"--payload {series.Url}bad/foreign.hup", "signed only by unknown key"),
            ("same version", $"--payload {series.Url}bad/old.hup", "not newer than the running 0.1.0"),
            ("expired index", $"--server {series.Url} --channel frozen", "a stale or frozen mirror"),
            ("expired index on local media", "--server file:///run/update-media/ --channel frozen", "a stale or frozen mirror"),
        })
        {
            var (code, output) = await sh.RunAsync($"{U} update {command} 2>&1", TimeSpan.FromMinutes(5));
            vm.Console.Note($"{what}: exit {code}: {output}");
            Assert.True(code == 1, $"{what}: exit {code}: {output}");
            Assert.Contains(expected, output);
            Assert.Equal(before, await sh.CheckAsync($"{U} status"));
        }

        // Full 0.1.0 -> 0.2.0 from the index on the local media, into slot b; the next boot starts it, the init blesses it.
        string installed = await sh.CheckAsync($"{U} update --server /run/update-media --channel stable 2>&1", TimeSpan.FromMinutes(5));
        vm.Console.Note(installed);
        Assert.Contains("installing 0.2.0 (full, ", installed);
        Assert.Contains("payloads/0.2.0-full.hup)", installed);
        Assert.Contains("boot entry hostos-0.2.0+3.conf written", installed);
        Assert.Contains("next boot    0.2.0 (reboot to start it)", await sh.CheckAsync($"{U} status"));
        int mark = vm.Console.Mark();
        sh = await RebootAsync(vm, sh);
        sh = await BlessedAsync(vm, "0.2.0", mark);
        await AssertRunningAsync(sh, "0.2.0", "b", "series 2");
        Assert.Equal("kept", await sh.CheckAsync("cat /var/lib/update-marker"));
        await vm.Console.WaitForAsync("service keeper is healthy", Boot, mark);
        Assert.Equal("run\nrun", await sh.CheckAsync("cat /proc/$(head -n 1 /sys/fs/cgroup/hostos-apps/keeper/cgroup.procs)/root/data/runs"));

        // A real downgrade is refused too.
        var (dc, downgrade) = await sh.RunAsync($"{U} update --payload {series.Url}bad/old.hup 2>&1", TimeSpan.FromMinutes(5));
        Assert.Equal(1, dc);
        Assert.Contains("refusing 0.1.0: it is not newer than the running 0.2.0", downgrade);

        // Delta 0.2.0 -> 0.3.0 into slot a (0.1.0's entry and kernel go first), this time
        // through the daemon: the repository from /etc/hostos/update.json, hostctl over the bus.
        series.Payload("0.3.0");
        series.Payload("0.3.0", from: "0.2.0");
        series.Publish();
        await sh.CheckAsync($"echo '{{\"server\": \"{series.Url}\", \"checkIntervalMinutes\": 0}}' > /etc/hostos/update.json");
        Assert.Equal($"0.3.0 (delta from 0.2.0, {new FileInfo(Path.Combine(series.RepoDir, "payloads", "0.2.0-0.3.0.hup")).Length} bytes, payloads/0.2.0-0.3.0.hup) is available (running 0.2.0)",
            await sh.CheckAsync("hostctl update check"));
        installed = await sh.CheckAsync("hostctl update apply 2>&1 | cat", TimeSpan.FromMinutes(5));
        vm.Console.Note(installed);
        Assert.Contains("update started", installed);
        Assert.Contains("downloading 0%: installing 0.3.0 (delta from 0.2.0", installed);
        Assert.Contains("writing 100%", installed);
        Assert.EndsWith("installed 0.3.0: the next boot starts it", installed);
        string daemonStatus = await sh.CheckAsync("hostctl update status");
        vm.Console.Note(daemonStatus);
        Assert.Contains($"{"next_boot",-16}  0.3.0\n", daemonStatus + "\n");
        Assert.Contains($"{"phase",-16}  installed\n", daemonStatus + "\n");
        Assert.Contains("hostos-0.3.0+3.conf (0.3.0, slot a, counting, 3 tries left)", daemonStatus);
        Assert.DoesNotContain("hostos-0.1.0", daemonStatus);
        mark = vm.Console.Mark();
        sh = await RebootAsync(vm, sh);
        sh = await BlessedAsync(vm, "0.3.0", mark);
        await AssertRunningAsync(sh, "0.3.0", "a", "series 3");
        string status = await sh.CheckAsync($"{U} status");
        Assert.Contains("entry        hostos-0.2.0.conf: 0.2.0, slot b, blessed", status);
        Assert.Contains("entry        hostos-0.3.0.conf: 0.3.0, slot a, blessed", status);
        Assert.Equal("missing", await sh.CheckAsync("mkdir -p /tmp/esp && mount -o ro /dev/vda1 /tmp/esp && (test -e /tmp/esp/hostos/0.1.0 && echo present || echo missing); umount /tmp/esp"));

        // The operator rolls back to 0.2.0, then forward again to 0.3.0.
        Assert.Contains("the next boot starts 0.2.0 (slot b)", await sh.CheckAsync($"{U} rollback"));
        mark = vm.Console.Mark();
        sh = await RebootAsync(vm, sh);
        await vm.Console.WaitForAsync(@"boot assessment: entry hostos-0\.2\.0\.conf, not counted", Boot, mark);
        await AssertRunningAsync(sh, "0.2.0", "b", "series 2");
        Assert.Contains("rolled back  from 0.3.0: rolled back by the operator", await sh.CheckAsync($"{U} status"));
        Assert.Contains("the next boot starts 0.3.0 (slot a)", await sh.CheckAsync("hostctl update rollback"));
        mark = vm.Console.Mark();
        sh = await RebootAsync(vm, sh);
        sh = await BlessedAsync(vm, "0.3.0", mark);
        await AssertRunningAsync(sh, "0.3.0", "a", "series 3");

        await vm.PowerButtonAsync();
        Assert.True(await vm.WaitForExitAsync(TimeSpan.FromSeconds(60)), vm.Console.Tail());
        Assert.Equal(["hostos-0.2.0.conf", "hostos-0.3.0.conf"], HostDisk.BootEntries(vm.DiskPath));
    }

    [Fact]
    public async Task PowerCutsDuringApplyAndTrial_NeverLoseTheMachine_AndABrokenVersionFallsBackByItself()
    {
        series.Payload("0.2.0", file: "cuts/0.2.0-full.hup");
        // A repository of its own for the broken release, which the daemon's policy finds.
        series.Payload("0.4.0", from: "0.2.0", file: "cuts/payloads/0.2.0-0.4.0.hup");
        series.Publish(subdirectory: "cuts");

        await using var vm = QemuMachine.Create("update-cuts");
        vm.Start();
        SerialShell sh = await BlessedAsync(vm, "0.1.0", 0);
        // Progress goes to the console too, so the harness can cut the power at a chosen point.
        string apply = $"{U} update --payload {series.Url}cuts/0.2.0-full.hup 2>&1 | tee /dev/ttyS0";

        foreach (string point in new[] { "progress 30%", "progress 80%" })
        {
            int cut = vm.Console.Mark();
            await sh.FireAsync(apply);
            await vm.Console.WaitForAsync(point, TimeSpan.FromMinutes(5), cut);
            await vm.KillAsync();
            vm.Console.Note($"power cut at '{point}'");
            int mark = vm.Console.Mark();
            vm.Start();
            await vm.Console.WaitForAsync(@"boot assessment: entry hostos-0\.1\.0\.conf, not counted", Boot, mark, () => vm.IsRunning);
            sh = await vm.ShellAsync();
            await AssertRunningAsync(sh, "0.1.0", "a", "none");
            Assert.Contains("next boot    0.1.0\n", await sh.CheckAsync($"{U} status") + "\n");
        }

        // The retry resumes from what the cut apply wrote (flushed as it goes, verified in
        // the slot against the manifest) and succeeds; the power is cut right after the new
        // entry is written, before any reboot.
        int written = vm.Console.Mark();
        await sh.FireAsync(apply);
        await vm.Console.WaitForAsync(@"boot entry hostos-0\.2\.0\+3\.conf written", TimeSpan.FromMinutes(5), written);
        var resumed = await vm.Console.WaitForAsync(@"resuming: the target already holds the verified output of operations 0\.\.\d+ of \d+ \((\d+) bytes\)", TimeSpan.FromSeconds(5), written);
        long size = new FileInfo(Path.Combine(series.BuildOf("0.2.0"), "root.img")).Length;
        Assert.True(long.Parse(resumed.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= size * 4 / 10,
            $"resumed after {resumed.Groups[1].Value} of {size} bytes; the cut came at 80%");
        await vm.KillAsync();
        vm.Console.Note($"ESP after the power cut:\n{HostDisk.ListEsp(vm.DiskPath, "/loader/entries")}\n{HostDisk.ListEsp(vm.DiskPath, "/hostos/0.2.0")}");
        Assert.Contains("hostos-0.2.0+3.conf", HostDisk.BootEntries(vm.DiskPath));
        int m2 = vm.Console.Mark();
        vm.Start();
        sh = await BlessedAsync(vm, "0.2.0", m2);
        await AssertRunningAsync(sh, "0.2.0", "b", "series 2");

        // The daemon's policy: look every minute, install, reboot by itself, but only inside
        // its maintenance window. First a window two hours away (by the machine's own UTC
        // clock): it installs 0.4.0 and waits, for more than two of its 15 s ticks; then a
        // window around now, and it reboots at its next tick. 0.4.0 fails its health check.
        // The power is cut during its first trial; the trial goes on with the next try, and
        // when the tries are used up systemd-boot falls back to 0.2.0, which says what
        // happened and does not install 0.4.0 again by itself.
        int hour = int.Parse(await sh.CheckAsync("date -u +%H"), System.Globalization.CultureInfo.InvariantCulture);
        string Window(int from, int to) => $"{(hour + 24 + from) % 24:00}:00-{(hour + 24 + to) % 24:00}:00";
        string Policy(string window) =>
            $"echo '{{\"server\": \"{series.Url}cuts/\", \"checkIntervalMinutes\": 1, \"reboot\": \"automatic\", \"maintenanceWindow\": \"{window}\"}}' > /etc/hostos/update.json";
        int trial = vm.Console.Mark();
        await sh.CheckAsync(Policy(Window(2, 3)));
        await vm.Console.WaitForAsync(@"\[updater\] update finished: installed 0\.4\.0: the next boot starts it", TimeSpan.FromMinutes(5), trial);
        await Task.Delay(TimeSpan.FromSeconds(40));
        string waiting = await sh.CheckAsync("hostctl update status");
        vm.Console.Note(waiting);
        Assert.Equal(0, vm.Console.Count(@"rebooting into 0\.4\.0", trial));
        Assert.Contains($"reboot automatic in {Window(2, 3)} UTC", waiting);
        Assert.Matches(@"next_boot\s+0\.4\.0", waiting);
        Assert.Matches(@"running\s+0\.2\.0", waiting);
        await sh.CheckAsync(Policy(Window(-1, 2))); // around now even if the hour turns meanwhile
        await vm.Console.WaitForAsync(@"\[updater\] rebooting into 0\.4\.0 \(reboot policy: automatic\)", TimeSpan.FromMinutes(1), trial);
        await vm.Console.WaitForAsync("hostos: rebooting", TimeSpan.FromMinutes(1), trial);
        await vm.Console.WaitForAsync(@"boot assessment: entry \S+, counted \(hostos-0\.4\.0\+2-1\.conf\)", Boot, trial, () => vm.IsRunning);
        await vm.KillAsync();
        trial = vm.Console.Mark();
        vm.Start();
        foreach (string counted in new[] { "1-2", "0-3" })
        {
            await vm.Console.WaitForAsync($@"boot assessment: entry \S+, counted \(hostos-0\.4\.0\+{counted}\.conf\)", Boot, trial, () => vm.IsRunning);
            // Under TCG a service may still be starting at the 8 s deadline: it is then named first, on the same line.
            await vm.Console.WaitForAsync(@"boot assessment: FAILED after 8 s: (.*; )?health check 'broken-on-purpose' failed", Boot, trial);
            await vm.Console.WaitForAsync("hostos: rebooting", Boot, trial);
            trial = vm.Console.Mark();
        }
        await vm.Console.WaitForAsync(@"boot assessment: entry hostos-0\.2\.0\.conf, not counted", Boot, trial, () => vm.IsRunning);
        await vm.Console.WaitForAsync(@"\[updater\] running 0\.2\.0 \(slot b\); rolled back from 0\.4\.0: (.*; )?health check 'broken-on-purpose' failed", Boot, trial);
        sh = await AssertFellBackAsync(vm, "0.2.0", "b", "series 2", failed: "0.4.0", failedSlot: "a", why: "health check 'broken-on-purpose' failed");
        // The policy's next look (within a minute and a tick) declines the version that failed.
        string declined = "";
        for (int i = 0; i < 30 && !declined.Contains("not installing it again by itself", StringComparison.Ordinal); i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(5));
            declined = await sh.CheckAsync("hostctl update status");
        }
        vm.Console.Note(declined);
        Assert.Contains("0.4.0 failed on this machine and it fell back: not installing it again by itself", declined);
        Assert.Contains($"{"rolled_back_from",-16}  0.4.0", declined);
    }

    /// <summary>
    /// A version that hangs (hostos.fault=hang: its boot stops before its services, as one
    /// waiting on a driver that never answers) never reaches a verdict, so nothing in it
    /// reboots: the watchdog does, each try, until systemd-boot falls back.
    /// </summary>
    [Fact]
    public async Task AVersionThatHangs_IsResetByTheWatchdog_AndFallsBack()
    {
        series.Payload("0.5.0", file: "hang/0.5.0-full.hup");

        await using var vm = QemuMachine.Create("update-hang");
        vm.Start();
        await vm.Console.WaitForAsync("watchdog: Software Watchdog armed, 60 s", Boot, 0, () => vm.IsRunning);
        SerialShell sh = await BlessedAsync(vm, "0.1.0", 0);
        Assert.Matches(@"watchdog: Software Watchdog, 30 s; a boot without a verdict after \d+ s is reset", vm.Console.Since(0));
        int trial = vm.Console.Mark();
        await sh.CheckAsync($"{U} update --payload {series.Url}hang/0.5.0-full.hup", TimeSpan.FromMinutes(5));
        await sh.FireAsync("hostctl reboot");
        await vm.Console.WaitForAsync("hostos: rebooting", TimeSpan.FromMinutes(1), trial);
        // Three tries (the entry's +3), each hanging before anything prints its entry's name.
        for (int i = 0; i < 3; i++)
        {
            await vm.Console.WaitForAsync("hostos.fault=hang: this boot stops here", Boot, trial, () => vm.IsRunning);
            await vm.Console.WaitForAsync("watchdog: this boot reached no verdict in time", TimeSpan.FromMinutes(3), trial);
            await vm.Console.WaitForAsync("softdog: Initiating system reboot", TimeSpan.FromMinutes(1), trial);
            trial = vm.Console.Mark();
        }
        await vm.Console.WaitForAsync(@"boot assessment: entry hostos-0\.1\.0\.conf, not counted", Boot, trial, () => vm.IsRunning);
        await AssertFellBackAsync(vm, "0.1.0", "a", "none", failed: "0.5.0", failedSlot: "b", why: "it never reached its boot assessment");
    }
}

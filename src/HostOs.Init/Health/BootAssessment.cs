using HostOs.Init.Phase2;
using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Platform.Disk;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;

namespace HostOs.Init.Health;

/// <summary>
/// Decides whether this boot is good (docs/boot-assessment.md). Healthy means: every
/// required service ready, state persistent, and every health check (the image's and the
/// operator's in /etc/hostos/health.d/*.json) exiting 0, all at once before the deadline.
/// A healthy counted boot is blessed; a counted boot still unhealthy at the deadline
/// reboots, so systemd-boot counts the failed try down and, when the tries run out,
/// falls back to the previous entry. An uncounted (already blessed) boot that turns
/// unhealthy is reported but not rebooted: rebooting it would gain nothing.
/// </summary>
internal sealed class BootAssessment(InitConfig config, Supervisor supervisor, ProcessTable processes,
    Func<List<string>> bootProblems, IReadOnlyList<BlockPartition> partitions, string rootDisk, BootWatchdog? watchdog = null)
{
    public const string OperatorChecks = "/etc/hostos/health.d";
    private const string EspMount = "/efi";

    /// <summary>Where the assessment stands, for the API: assessing, waiting: ..., healthy, failed: ...</summary>
    public string Verdict { get; private set; } = "assessing";

    public async Task RunAsync(Action<PowerAction> requestShutdown)
    {
        BootEntryName? counted = BootEntryFiles.FromBootCountPath(EfiVariables.ReadLoaderString("LoaderBootCountPath"));
        string selected = EfiVariables.ReadLoaderString("LoaderEntrySelected") ?? "(not booted by systemd-boot)";
        TimeSpan deadline = TimeSpan.FromSeconds(Deadline());
        Log.Info($"boot assessment: entry {selected}, " +
                 (counted is { } c ? $"counted ({c.FileName}), " : "not counted, ") +
                 $"deadline {deadline.TotalSeconds:F0} s");

        watchdog?.TrialFromNow((int)deadline.TotalSeconds);
        long start = Environment.TickCount64;
        string lastReport = "";
        while (true)
        {
            List<string> problems = await ProblemsAsync().ConfigureAwait(false);
            if (problems.Count == 0)
            {
                Log.Info($"boot assessment: healthy after {(Environment.TickCount64 - start) / 1000.0:F1} s");
                Verdict = "healthy";
                Record(counted);
                if (counted is { } entry) Bless(entry);
                watchdog?.VerdictReached();
                return;
            }
            string report = string.Join("; ", problems);
            if (Environment.TickCount64 - start > deadline.TotalMilliseconds)
            {
                Log.Error($"boot assessment: FAILED after {deadline.TotalSeconds:F0} s: {report}");
                Verdict = $"failed: {report}";
                Record(counted);
                if (counted is not null)
                {
                    Log.Error("boot assessment: rebooting so the boot loader counts this try (falls back when tries run out)");
                    requestShutdown(PowerAction.Reboot);
                }
                else
                {
                    Log.Warn("boot assessment: this entry is not counted, staying up");
                    watchdog?.VerdictReached();
                }
                return;
            }
            Verdict = $"waiting: {report}";
            if (report != lastReport)
            {
                Log.Info($"boot assessment: waiting: {report}");
                lastReport = report;
            }
            await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
    }

    /// <summary>The verdict, durable on state before any reboot, for the updater to report after a fallback.</summary>
    private void Record(BootEntryName? counted)
    {
        try
        {
            string? version = KernelCommandLine.Parse(File.ReadAllText("/proc/cmdline")).Get("hostos.version");
            if (version is null) return;
            new BootRecord { Version = version, Verdict = Verdict, Time = DateTimeOffset.UtcNow, Entry = counted?.FileName }.Save();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Log.Error("boot assessment: could not record the verdict on state", e);
        }
    }

    private int Deadline()
    {
        try
        {
            if (File.Exists(BootAssessmentSettings.Path))
            {
                var s = BootAssessmentSettings.Parse(File.ReadAllText(BootAssessmentSettings.Path), BootAssessmentSettings.Path);
                if (s.DeadlineSeconds is int d) return d;
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            Log.Error($"{BootAssessmentSettings.Path} ignored", e);
        }
        return config.Health.DeadlineSeconds;
    }

    private async Task<List<string>> ProblemsAsync()
    {
        var problems = new List<string>(supervisor.Unhealthy());
        problems.AddRange(bootProblems());
        var checks = new List<HealthCheck>(config.Health.Checks);
        if (Directory.Exists(OperatorChecks))
        {
            foreach (string file in Directory.GetFiles(OperatorChecks, "*.json").Order(StringComparer.Ordinal))
            {
                try
                {
                    checks.Add(HealthCheck.Parse(File.ReadAllText(file), file));
                }
                catch (Exception e) when (e is IOException or InvalidDataException)
                {
                    problems.Add($"health check {file} is invalid: {e.Message}");
                }
            }
        }
        foreach (HealthCheck check in checks)
        {
            string? failure = await RunCheckAsync(check).ConfigureAwait(false);
            if (failure is not null) problems.Add($"health check '{check.Name}' {failure}");
        }
        return problems;
    }

    private async Task<string?> RunCheckAsync(HealthCheck check)
    {
        try
        {
            using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);
            ExitStatus status = await processes.RunAsync(new SpawnRequest
            {
                Path = check.Exec[0],
                Args = check.Exec,
                Environment = [ProcessTable.DefaultPath],
                Stdin = devNull,
                Stdout = devNull,
                Stderr = devNull,
            }, TimeSpan.FromSeconds(check.TimeoutSeconds)).ConfigureAwait(false);
            return status.Exited && status.Code == 0 ? null : $"failed ({status})";
        }
        catch (Exception e)
        {
            return $"could not run: {e.Message}";
        }
    }

    private void Bless(BootEntryName entry)
    {
        try
        {
            using (Esp esp = Esp.Mount(Esp.Find(partitions, rootDisk), EspMount))
            {
                BootEntryFiles.Bless(esp.Root, entry);
            }
            Log.Info($"boot blessed: {entry.FileName} -> {entry.Blessed().FileName}");
        }
        catch (Exception e)
        {
            Log.Error($"boot assessment: could not bless {entry.FileName}", e);
        }
    }
}

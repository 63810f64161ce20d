using System.Globalization;
using HostOs.Bus;
using HostOs.Platform.Config;
using HostOs.Updater.Machine;
using HostOs.Updater.Payload;
using Microsoft.Extensions.Logging;

namespace HostOs.Updater.Daemon;

/// <summary>A request the engine cannot take now (another install running), answered by name on the bus.</summary>
public sealed class UpdaterBusyException(string message) : Exception(message), INamedBusError
{
    public string ErrorName => "Busy";
}

/// <summary>
/// What the update daemon does, whoever asks (its timer or an operator over the bus): one
/// install at a time, in the background, reporting progress; its state for status calls.
/// Each install is check → stream the chosen payload into the inactive slot through
/// <see cref="MachineSession"/> (the same code as the command line) → "installed, reboot
/// to start it", then the reboot policy of /etc/hostos/update.json. Everything is logged
/// through Serilog into the journal; the few lines an operator watching the console needs
/// (an install's end, an automatic reboot, a fallback at start) also go to standard output,
/// which the init shows on the console.
/// </summary>
public sealed partial class UpdateEngine(ILogger<UpdateEngine> log, Func<Task>? reboot = null)
{
    private readonly Lock _gate = new();
    private Task? _job;
    private string _phase = "idle";
    private uint _percent;
    private string _lastResult = "";
    private string? _installed;
    private DateTimeOffset? _lastCheck;

    /// <summary>phase (checking, downloading, installed, failed, ...), percent, message.</summary>
    public event Action<string, uint, string>? Progress;
    /// <summary>success, message: the end of an install started by <see cref="StartInstall"/>.</summary>
    public event Action<bool, string>? Finished;

    /// <summary>The rebooter is the bus connection's (org.hostos.Manager1.Reboot); set once connected.</summary>
    public Func<Task>? Reboot { get; set; } = reboot;

    public bool Busy
    {
        get
        {
            lock (_gate) return _job is { IsCompleted: false };
        }
    }

    /// <summary>The version installed and waiting for a reboot, if any.</summary>
    public string? Installed
    {
        get
        {
            lock (_gate) return _installed;
        }
    }

    public Dictionary<string, string> Status()
    {
        var status = new Dictionary<string, string>(StringComparer.Ordinal);
        lock (_gate)
        {
            status["phase"] = _phase;
            status["percent"] = _percent.ToString(CultureInfo.InvariantCulture);
            status["last_result"] = _lastResult;
            status["last_check"] = _lastCheck?.ToString("u", CultureInfo.InvariantCulture) ?? "";
        }
        try
        {
            UpdateSettings? settings = MachineSession.Settings();
            status["server"] = settings?.Server ?? "";
            status["channel"] = settings?.Channel ?? "";
            status["policy"] = settings is null
                ? $"no {UpdateSettings.Path}: updates only when asked, with a server given"
                : $"check every {settings.CheckIntervalMinutes} min, reboot {settings.Reboot}{(settings.MaintenanceWindow is { } w ? $" in {w} UTC" : "")}";
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            status["policy"] = $"unreadable: {e.Message}";
        }
        if (Busy)
        {
            // The install holds the slots and the ESP: what is known without them.
            status["running"] = MachineSession.RunningVersion();
            return status;
        }
        SlotStatus slots = MachineSession.Run(u => u.Status(), null, TimeSpan.FromSeconds(30));
        status["running"] = slots.RunningVersion;
        status["slot"] = slots.RunningSlot;
        status["next_boot"] = slots.NextBoot ?? slots.RunningVersion;
        status["rolled_back_from"] = slots.RolledBackFrom ?? "";
        status["rollback_reason"] = slots.RollbackReason ?? "";
        status["entries"] = string.Join("; ", slots.Entries.Select(e => $"{e.Name.FileName} ({e.Version}, slot {e.Slot ?? "?"}, {e.State})"));
        return status;
    }

    /// <summary>What an install would take now, without taking it.</summary>
    public Task<string> CheckAsync(string? server = null, string? channel = null) => Task.Run(() =>
    {
        using var http = NewHttpClient();
        var source = ReleaseSource.FromSettings(http, MachineSession.Settings(), NullIfEmpty(server), NullIfEmpty(channel));
        string current = MachineSession.RunningVersion();
        var choice = source.Check(current);
        lock (_gate) _lastCheck = DateTimeOffset.UtcNow;
        return choice is var (release, payload)
            ? $"{ReleaseSource.Describe(release, payload)} is available (running {current})"
            : $"{current} is the newest on channel {source.Channel}";
    });

    /// <summary>
    /// Starts an install in the background; its progress and end are events. An automatic
    /// one (the policy's timer) never installs again a version this machine fell back from;
    /// an operator's does.
    /// </summary>
    public string StartInstall(string? server = null, string? channel = null, bool automatic = false)
    {
        lock (_gate)
        {
            if (_job is { IsCompleted: false }) throw new UpdaterBusyException($"an update is already running ({_phase}, {_percent}%)");
            _job = Task.Run(() => Install(NullIfEmpty(server), NullIfEmpty(channel), automatic));
        }
        return "update started";
    }

    /// <summary>Waits for the running install, if any.</summary>
    public Task WaitAsync()
    {
        lock (_gate) return _job ?? Task.CompletedTask;
    }

    public string Rollback()
    {
        if (Busy) throw new UpdaterBusyException("an update is running: roll back once it has finished");
        string result = MachineSession.Run(u => u.Rollback(), null, TimeSpan.FromSeconds(30));
        LogRollback(log, result);
        lock (_gate) _installed = null;
        return result;
    }

    private void Install(string? server, string? channel, bool automatic)
    {
        try
        {
            Report("checking", 0, "looking for a newer release");
            using var http = NewHttpClient();
            UpdateSettings? settings = MachineSession.Settings();
            var source = ReleaseSource.FromSettings(http, settings, server, channel, m => Report("downloading", 0, m));
            string current = MachineSession.RunningVersion();
            var choice = source.Check(current);
            lock (_gate) _lastCheck = DateTimeOffset.UtcNow;
            if (choice is not var (release, payload))
            {
                End(true, "idle", $"{current} is the newest on channel {source.Channel}");
                return;
            }
            if (automatic && MachineSession.Run(u => u.Status(), null, TimeSpan.FromMinutes(1)).RolledBackFrom == release.Version)
            {
                End(true, "idle", $"{release.Version} failed on this machine and it fell back: not installing it again by itself (hostctl update apply does)");
                return;
            }
            Report("downloading", 0, $"installing {ReleaseSource.Describe(release, payload)}");
            MachineSession.Run(u =>
            {
                uint last = uint.MaxValue;
                return source.Install(u, release, payload, p =>
                {
                    uint percent = (uint)(p.Done * 100 / Math.Max(1, p.Total));
                    if (percent == last) return;
                    last = percent;
                    Report("writing", percent, $"{release.Version}: {p.Done} of {p.Total} bytes written and verified");
                });
            }, m => LogSays(log, m), TimeSpan.FromMinutes(1));
            lock (_gate) _installed = release.Version;
            End(true, "installed", $"installed {release.Version}: the next boot starts it");
        }
        catch (Exception e) when (e is PayloadException or IOException or InvalidDataException or UnauthorizedAccessException
                                      or HttpRequestException or TaskCanceledException or System.Text.Json.JsonException)
        {
            End(false, "failed", e.Message);
        }
    }

    /// <summary>After an install, the policy decides: an operator reboots, or the daemon does (inside the window).</summary>
    public async Task RebootIfDueAsync(DateTimeOffset now)
    {
        if (Installed is not string version || Busy || Reboot is null) return;
        UpdateSettings? settings = MachineSession.Settings();
        if (settings is not { Reboot: "automatic" } || !settings.InWindow(now)) return;
        LogRebooting(log, version);
        Console.WriteLine($"rebooting into {version} (reboot policy: automatic)");
        await Reboot().ConfigureAwait(false);
    }

    private void Report(string phase, uint percent, string message)
    {
        lock (_gate)
        {
            _phase = phase;
            _percent = percent;
        }
        if (phase != "writing" || percent % 10 == 0) LogProgress(log, phase, percent, message);
        Progress?.Invoke(phase, percent, message);
    }

    private void End(bool ok, string phase, string message)
    {
        lock (_gate)
        {
            _phase = phase;
            _percent = ok ? 100 : _percent;
            _lastResult = message;
        }
        if (ok) LogFinished(log, message);
        else LogFailed(log, message);
        if (phase != "idle") Console.WriteLine($"update {(ok ? "finished" : "failed")}: {message}");
        Finished?.Invoke(ok, message);
    }

    private static HttpClient NewHttpClient() => new() { Timeout = TimeSpan.FromMinutes(2) };

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    [LoggerMessage(Level = LogLevel.Information, Message = "{Phase} {Percent}%: {Message}")]
    private static partial void LogProgress(ILogger log, string phase, uint percent, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Message}")]
    private static partial void LogSays(ILogger log, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "update finished: {Message}")]
    private static partial void LogFinished(ILogger log, string message);

    [LoggerMessage(Level = LogLevel.Error, Message = "update failed: {Message}")]
    private static partial void LogFailed(ILogger log, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "rollback: {Result}")]
    private static partial void LogRollback(ILogger log, string result);

    [LoggerMessage(Level = LogLevel.Warning, Message = "rebooting into {Version} (reboot policy: automatic)")]
    private static partial void LogRebooting(ILogger log, string version);
}

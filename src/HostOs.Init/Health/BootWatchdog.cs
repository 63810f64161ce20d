using HostOs.Platform.Kernel;

namespace HostOs.Init.Health;

/// <summary>
/// The machine's watchdog (docs/boot.md, "Hangs"): what turns a hang into a reboot, so that
/// a version that hangs uses up its tries and systemd-boot falls back as it does for one
/// that fails its health checks. Phase 1 arms it as soon as its modules are loaded (softdog
/// when the machine has no hardware watchdog); phase 2 takes it over and pings it from a
/// thread of its own:
/// <list type="bullet">
/// <item>during the trial, only until the boot assessment's deadline and a margin: a boot
/// that is stuck (a driver or file system that never returns, a deadlock in the boot) and
/// so never reaches its verdict is reset;</item>
/// <item>after the verdict, for as long as the machine runs: a kernel that stops running
/// threads resets it;</item>
/// <item>from the start of a shutdown, not at all, with the shutdown's whole budget as
/// the last timeout: a shutdown that hangs still ends in a reset.</item>
/// </list>
/// A kernel that hangs with its interrupts off stops softdog too; only a hardware watchdog
/// (whose driver the image's kernel must carry) covers that.
/// </summary>
internal sealed class BootWatchdog
{
    public const int Phase1TimeoutSeconds = 60;
    public const int ShutdownBudgetSeconds = 120;
    private readonly Watchdog _dog;
    private readonly Lock _lock = new();
    private long _trialEnd;       // Environment.TickCount64; long.MaxValue once a verdict is reached
    private bool _shuttingDown, _toldExpired;

    private BootWatchdog(Watchdog dog, long trialEnd)
    {
        _dog = dog;
        _trialEnd = trialEnd;
    }

    /// <summary>Phase 1: arm it with a timeout that covers the exec into phase 2 and its start.</summary>
    public static Watchdog? ArmForPhase1()
    {
        Watchdog? dog = Watchdog.TryOpen(Phase1TimeoutSeconds, out string? problem);
        if (dog is null) Log.Warn($"watchdog: {problem}: a hang will not reset this machine");
        else Log.Info($"watchdog: {dog.Identity} armed, {dog.TimeoutSeconds} s");
        return dog;
    }

    /// <summary>
    /// Phase 2: take the watchdog over with <paramref name="timeoutSeconds"/> (0: stop it),
    /// trusting the boot to start its assessment and reach a verdict within the
    /// assessment's <paramref name="deadlineSeconds"/> and a minute.
    /// </summary>
    public static BootWatchdog? Start(int timeoutSeconds, int deadlineSeconds)
    {
        int trialSeconds = deadlineSeconds + 60;
        Watchdog? dog = Watchdog.TryOpen(timeoutSeconds == 0 ? Phase1TimeoutSeconds : timeoutSeconds, out string? problem);
        if (dog is null)
        {
            Log.Warn($"watchdog: {problem}: a hang will not reset this machine");
            return null;
        }
        if (timeoutSeconds == 0)
        {
            dog.Disarm();
            Log.Info("watchdog: stopped (health.watchdogSeconds is 0)");
            return null;
        }
        var watchdog = new BootWatchdog(dog, Environment.TickCount64 + trialSeconds * 1000L);
        Log.Info($"watchdog: {dog.Identity}, {dog.TimeoutSeconds} s; a boot without a verdict after {trialSeconds} s is reset");
        new Thread(watchdog.Ping) { IsBackground = true, Name = "watchdog" }.Start();
        return watchdog;
    }

    /// <summary>The assessment started with <paramref name="seconds"/> to reach its verdict: the trial lasts that and a margin.</summary>
    public void TrialFromNow(int seconds)
    {
        lock (_lock)
        {
            if (_trialEnd != long.MaxValue) _trialEnd = Environment.TickCount64 + (seconds + Margin) * 1000L;
        }
    }

    /// <summary>A verdict was reached (healthy, or failed on an entry that is not counted): ping for as long as the machine runs.</summary>
    public void VerdictReached()
    {
        lock (_lock) _trialEnd = long.MaxValue;
    }

    /// <summary>From here the machine goes down: one last ping with the shutdown's whole budget.</summary>
    public void ShuttingDown()
    {
        lock (_lock)
        {
            if (_shuttingDown) return;
            _shuttingDown = true;
            try
            {
                _dog.SetTimeout(ShutdownBudgetSeconds);
                _dog.Keepalive();
                Log.Info($"watchdog: the shutdown has {_dog.TimeoutSeconds} s");
            }
            catch (IOException e)
            {
                Log.Error("watchdog: could not give the shutdown its budget", e);
            }
        }
    }

    /// <summary>The margin after the assessment's deadline: room for its verdict, its record and an orderly reboot to begin.</summary>
    private int Margin => Math.Max(30, _dog.TimeoutSeconds);

    private void Ping()
    {
        while (true)
        {
            Thread.Sleep(_dog.TimeoutSeconds * 1000 / 3);
            lock (_lock)
            {
                if (_shuttingDown) return;
                if (Environment.TickCount64 > _trialEnd)
                {
                    if (!_toldExpired)
                    {
                        _toldExpired = true;
                        Log.Error($"watchdog: this boot reached no verdict in time; the watchdog resets the machine within {_dog.TimeoutSeconds} s " +
                                  "(the boot loader counts the try)");
                    }
                    continue;
                }
                try { _dog.Keepalive(); }
                catch (IOException e) { Log.Error("watchdog: ping failed", e); }
            }
        }
    }
}

using HostOs.Init.Processes;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;

namespace HostOs.Init.Services;

internal enum ServiceState { Waiting, Preparing, Starting, Running, Ready, Backoff, Stopping, Stopped, Failed }

/// <summary>How a service is supervised, whether its program is a process or a container.</summary>
internal sealed record ServiceOptions(string Name, RestartPolicy Restart, IReadOnlyList<string> After, bool Required,
    int StopTimeoutSeconds, bool Notify = false, HealthProbe? Health = null, string Kind = "service", int? WatchdogSeconds = null)
{
    public static ServiceOptions Of(ServiceDefinition d) =>
        new(d.Name, d.Restart, d.After, d.Required, d.StopTimeoutSeconds, d.Notify, WatchdogSeconds: d.WatchdogSeconds);
    public static ServiceOptions Of(ServiceContainer c) =>
        new(c.Name, c.Restart, c.After, c.Required, c.StopTimeoutSeconds, Health: c.Health, Kind: c.Kind);
}

/// <summary>One run of a service's program, as its launcher started it.</summary>
internal sealed class ServiceRun
{
    public required int Pid { get; init; }
    public required Task<ExitStatus> Exited { get; init; }
    /// <summary>Asks the program to stop (SIGTERM to its process group or container).</summary>
    public required Action Terminate { get; init; }
    /// <summary>Kills whatever is left of it (SIGKILL).</summary>
    public required Action Kill { get; init; }
    /// <summary>A health probe, when the service has one: true when healthy.</summary>
    public Func<CancellationToken, Task<bool>>? Probe { get; init; }
    /// <summary>Cleans up after the program has exited and was reaped.</summary>
    public Action Cleanup { get; init; } = () => { };
}

/// <summary>Starts a service's program; <paramref name="environment"/> adds NOTIFY_SOCKET and the like.</summary>
internal interface IServiceLauncher
{
    ServiceRun Start(IReadOnlyList<string> environment);

    /// <summary>
    /// What must be done once before the first run and may take long or need retrying
    /// (an app's image pull); completes when it is done or the service is stopped.
    /// </summary>
    Task PrepareAsync(CancellationToken stop) => Task.CompletedTask;

    /// <summary>The service is gone for good (removed at run time): let go of what outlives runs (listeners).</summary>
    void Release()
    {
    }
}

/// <summary>
/// One supervised service: starts it, watches it, restarts it per its policy with
/// exponential backoff (100 ms doubling to 30 s, reset after 10 s of good running), and
/// stops it with SIGTERM, a grace period, then SIGKILL. With a health probe it is ready at
/// the first success and restarted after too many failures in a row.
/// A failing service is logged and retried; it never takes PID 1 down.
/// </summary>
internal sealed class Service(ServiceOptions options, IServiceLauncher launcher)
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(10);

    private readonly TaskCompletionSource _firstReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private Task _run = Task.CompletedTask;
    private ServiceRun? _current;
    private CancellationTokenSource? _wake;
    private bool _restartRequested;

    public ServiceOptions Options { get; } = options;
    public string Name => Options.Name;
    public ServiceState State { get; private set; } = ServiceState.Waiting;
    public int? Pid { get; private set; }
    public int Restarts { get; private set; }
    public string? LastExit { get; private set; }
    /// <summary>The last health probe's verdict ("healthy", "unhealthy (3 failures)"), null without a probe.</summary>
    public string? Health { get; private set; }
    public Task FirstReady => _firstReady.Task;

    public void Start(IEnumerable<Service> after) => _run = RunGuardedAsync(after.Select(s => s.FirstReady).ToList());

    /// <summary>
    /// An operator's restart (the API): the current run is stopped as at shutdown and a new
    /// one starts at once, whatever the restart policy; a service in backoff starts now, one
    /// that had ended starts again.
    /// </summary>
    public void RequestRestart()
    {
        lock (_gate)
        {
            if (_stop.IsCancellationRequested) return;
            _restartRequested = true;
            if (_current is ServiceRun run) _ = TerminateAsync(run);
            else if (_wake is not null) _wake.Cancel();
            else if (_run.IsCompleted) _run = RunGuardedAsync([]);
        }
    }

    private bool TakeRestartRequest()
    {
        lock (_gate)
        {
            bool requested = _restartRequested;
            _restartRequested = false;
            return requested;
        }
    }

    private Task RunGuardedAsync(List<Task> after) =>
        Task.Run(async () =>
        {
            try
            {
                await Task.WhenAll(after).WaitAsync(_stop.Token).ConfigureAwait(false);
                State = ServiceState.Preparing;
                await launcher.PrepareAsync(_stop.Token).ConfigureAwait(false);
                await SuperviseAsync().ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e)
            {
                State = ServiceState.Failed;
                Log.Error($"service {Name}", e);
            }
        });

    /// <summary>After <see cref="StopAsync"/>, when the service is removed for good.</summary>
    public void Release() => launcher.Release();

    public async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _run.ConfigureAwait(false);
        if (State != ServiceState.Failed) State = ServiceState.Stopped;
    }

    private async Task SuperviseAsync()
    {
        TimeSpan backoff = MinBackoff;
        while (!_stop.IsCancellationRequested)
        {
            long started = Environment.TickCount64;
            ExitStatus status = await RunOnceAsync().ConfigureAwait(false);
            LastExit = status.ToString();
            Pid = null;
            if (_stop.IsCancellationRequested) return;
            if (TakeRestartRequest())
            {
                Log.Info($"service {Name} ended ({status}); restarting as requested");
                Restarts++;
                backoff = MinBackoff;
                continue;
            }
            bool failed = !(status.Exited && status.Code == 0);
            bool restart = Options.Restart == RestartPolicy.Always
                || (Options.Restart == RestartPolicy.OnFailure && failed);
            if (!restart)
            {
                State = failed ? ServiceState.Failed : ServiceState.Stopped;
                Log.Info($"service {Name} ended ({status}), not restarted (restart: {Options.Restart})");
                return;
            }
            if (TimeSpan.FromMilliseconds(Environment.TickCount64 - started) > StableAfter) backoff = MinBackoff;
            State = ServiceState.Backoff;
            Restarts++;
            Log.Warn($"service {Name} exited ({status}); restart {Restarts} in {backoff.TotalMilliseconds:F0} ms");
            using (var wake = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                lock (_gate) _wake = wake;
                try
                {
                    await Task.Delay(backoff, wake.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
                {
                    TakeRestartRequest(); // woken by a restart request: start now
                }
                finally
                {
                    lock (_gate) _wake = null;
                }
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    private async Task<ExitStatus> RunOnceAsync()
    {
        State = ServiceState.Starting;
        using NotifySocket? notify = Options.Notify ? NotifySocket.Create(Name) : null;
        ServiceRun run;
        try
        {
            List<string> environment = notify is null ? [] : [$"NOTIFY_SOCKET={notify.SocketPath}"];
            if (notify is not null && Options.WatchdogSeconds is int w) environment.Add($"WATCHDOG_USEC={w * 1_000_000L}");
            run = launcher.Start(environment);
        }
        catch (Exception e)
        {
            Log.Error($"service {Name}: cannot start", e);
            return new ExitStatus(127 << 8);
        }
        try
        {
            Pid = run.Pid;
            lock (_gate) _current = run;
            State = ServiceState.Running;
            Log.Info($"service {Name} started (pid {run.Pid})");
            using var runEnded = new CancellationTokenSource();
            // Ready by its probe, by READY=1, or at once.
            if (run.Probe is not null) _ = WatchHealthAsync(run, runEnded.Token);
            else if (notify is null) MarkReady();
            else _ = notify.Ready.ContinueWith(_ => MarkReady(), TaskScheduler.Default);
            if (notify is not null && Options.WatchdogSeconds is int seconds) _ = WatchdogAsync(run, notify, seconds, runEnded.Token);

            var stopped = new TaskCompletionSource();
            try
            {
                using (_stop.Token.Register(() => stopped.TrySetResult()))
                {
                    if (await Task.WhenAny(run.Exited, stopped.Task).ConfigureAwait(false) == run.Exited)
                    {
                        return await run.Exited.ConfigureAwait(false);
                    }
                }
                return await TerminateAsync(run).ConfigureAwait(false);
            }
            finally
            {
                await runEnded.CancelAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            lock (_gate) _current = null;
            try
            {
                run.Cleanup();
            }
            catch (Exception e)
            {
                Log.Error($"service {Name}: cleanup", e);
            }
        }
    }

    /// <summary>
    /// Probes every interval while the run lasts: the first success makes the service
    /// ready; Retries failures in a row (not counting the start period) end the run
    /// (SIGTERM, then SIGKILL after the grace), and the restart policy takes over. Until the
    /// first success it probes every 0.25 s (readiness, and the boot, need not wait out an
    /// interval for a server that took a moment to listen), counting at most one failure
    /// per interval, so the cadence of failures is the same.
    /// </summary>
    private async Task WatchHealthAsync(ServiceRun run, CancellationToken ended)
    {
        HealthProbe probe = Options.Health!;
        long startedAt = Environment.TickCount64, lastCounted = startedAt;
        int failures = 0;
        bool wasHealthy = false;
        Health = "starting";
        try
        {
            while (!ended.IsCancellationRequested)
            {
                bool healthy;
                using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ended))
                {
                    timeout.CancelAfter(TimeSpan.FromSeconds(probe.TimeoutSeconds));
                    try
                    {
                        healthy = await run.Probe!(timeout.Token).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException or ContainerProbeException)
                    {
                        healthy = false;
                    }
                }
                if (ended.IsCancellationRequested) return;
                long now = Environment.TickCount64;
                if (healthy)
                {
                    if (failures > 0 || Health != "healthy") Log.Info($"service {Name} is healthy");
                    failures = 0;
                    wasHealthy = true;
                    Health = "healthy";
                    MarkReady();
                }
                else if (now - startedAt >= probe.StartPeriodSeconds * 1000L && (wasHealthy || now - lastCounted >= probe.IntervalSeconds * 1000L))
                {
                    failures++;
                    lastCounted = now;
                    Health = $"unhealthy ({failures} failure{(failures == 1 ? "" : "s")} in a row)";
                    if (failures >= probe.Retries)
                    {
                        Log.Warn($"service {Name} failed its {probe.Type.ToString().ToLowerInvariant()} health check {failures} times in a row: restarting it");
                        if (State == ServiceState.Ready) State = ServiceState.Running;
                        _ = TerminateAsync(run);
                        return;
                    }
                }
                await Task.Delay(wasHealthy ? TimeSpan.FromSeconds(probe.IntervalSeconds) : TimeSpan.FromMilliseconds(250), ended).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// sd_notify's watchdog: from the start, a WATCHDOG=1 at least every N seconds; a missed
    /// one (or WATCHDOG=trigger) stops the run as at shutdown and the restart policy applies.
    /// </summary>
    private async Task WatchdogAsync(ServiceRun run, NotifySocket notify, int seconds, CancellationToken ended)
    {
        long started = Environment.TickCount64;
        try
        {
            while (true)
            {
                await Task.Delay(250, ended).ConfigureAwait(false);
                long last = Math.Max(started, notify.LastPing);
                if (notify.WatchdogTriggered || Environment.TickCount64 - last > seconds * 1000L)
                {
                    Log.Warn(notify.WatchdogTriggered
                        ? $"service {Name} asked for its watchdog to fire (WATCHDOG=trigger): stopping it"
                        : $"service {Name} missed its watchdog (no WATCHDOG=1 for {seconds} s): stopping it");
                    if (State == ServiceState.Ready) State = ServiceState.Running;
                    _ = TerminateAsync(run);
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void MarkReady()
    {
        if (State is ServiceState.Running)
        {
            State = ServiceState.Ready;
            // Logged (at every run's readiness) before the waiters of the first are released,
            // so that no line saying what the readiness led to (e.g. "HostOS ready") can carry
            // an earlier time than it.
            Log.Info($"service {Name} ready");
            _firstReady.TrySetResult();
        }
    }

    private async Task<ExitStatus> TerminateAsync(ServiceRun run)
    {
        State = ServiceState.Stopping;
        run.Terminate();
        TimeSpan grace = TimeSpan.FromSeconds(Options.StopTimeoutSeconds);
        if (await Task.WhenAny(run.Exited, Task.Delay(grace)).ConfigureAwait(false) != run.Exited)
        {
            Log.Warn($"service {Name} ignored SIGTERM for {grace.TotalSeconds:F0} s: SIGKILL");
            run.Kill();
        }
        ExitStatus status = await run.Exited.ConfigureAwait(false);
        Log.Info($"service {Name} stopped ({status})");
        return status;
    }
}

/// <summary>A probe that could not be run at all (the container is gone, a namespace cannot be joined).</summary>
internal sealed class ContainerProbeException(string message) : Exception(message);

/// <summary>A plain service: a program of the root, spawned with its output collected.</summary>
internal sealed class ProcessLauncher(ServiceDefinition definition, ProcessTable processes) : IServiceLauncher
{
    public ServiceRun Start(IReadOnlyList<string> extraEnvironment)
    {
        foreach (string d in definition.RuntimeDirectories) Directory.CreateDirectory(d);
        var environment = new List<string>(definition.Environment);
        if (!environment.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal)))
        {
            environment.Add(ProcessTable.DefaultPath);
        }
        environment.AddRange(extraEnvironment);

        Microsoft.Win32.SafeHandles.SafeFileHandle? pumpRead = null;
        Microsoft.Win32.SafeHandles.SafeFileHandle stdin, stdout;
        if (definition.Tty is string tty)
        {
            stdin = stdout = File.OpenHandle(tty, FileMode.Open, FileAccess.ReadWrite);
        }
        else
        {
            stdin = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
            (pumpRead, stdout) = Sys.Pipe();
        }
        int pid;
        Task<ExitStatus> exited;
        try
        {
            var request = new SpawnRequest
            {
                Path = definition.Exec[0],
                Args = definition.Exec,
                Environment = environment,
                Stdin = stdin,
                Stdout = stdout,
                Stderr = stdout,
            };
            (pid, exited) = definition.OwnPidNamespace ? StartInOwnPidNamespace(request) : processes.Start(request);
        }
        catch
        {
            pumpRead?.Dispose();
            throw;
        }
        finally
        {
            // The child holds its own copies; ours must close or the pump never sees EOF.
            stdin.Dispose();
            stdout.Dispose();
        }
        if (pumpRead is not null) OutputPump.Start(definition.Name, pumpRead);
        // The child leads its own session and process group (setsid): signal the group.
        // (As PID 1 of its own pid namespace, it gets from us only the signals it handles,
        // and SIGKILL.)
        return new ServiceRun
        {
            Pid = pid,
            Exited = exited,
            Terminate = () => Sys.TryKill(-pid, Sys.SIGTERM),
            Kill = () => Sys.TryKill(-pid, Sys.SIGKILL),
        };
    }

    /// <summary>A throwaway thread unshares a pid namespace (it applies to that thread's children) and spawns the service as its PID 1.</summary>
    private (int Pid, Task<ExitStatus> Exited) StartInOwnPidNamespace(SpawnRequest request) =>
        ThrowawayThread.Run("pidns-spawn", () =>
        {
            Sys.Unshare(CloneFlags.NewPid);
            return processes.Start(request);
        });
}

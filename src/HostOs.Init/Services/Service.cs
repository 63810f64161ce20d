using HostOs.Init.Processes;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Services;

internal enum ServiceState { Waiting, Starting, Running, Ready, Backoff, Stopping, Stopped, Failed }

/// <summary>
/// One supervised service: starts it, watches it, restarts it per its policy with
/// exponential backoff (100 ms doubling to 30 s, reset after 10 s of good running), and
/// stops it with SIGTERM, a grace period, then SIGKILL to its whole process group.
/// A failing service is logged and retried; it never takes PID 1 down.
/// </summary>
internal sealed class Service(ServiceDefinition definition, ProcessTable processes)
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(10);

    private readonly TaskCompletionSource _firstReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private Task _run = Task.CompletedTask;

    public ServiceDefinition Definition { get; } = definition;
    public string Name => Definition.Name;
    public ServiceState State { get; private set; } = ServiceState.Waiting;
    public int? Pid { get; private set; }
    public int Restarts { get; private set; }
    public string? LastExit { get; private set; }
    public Task FirstReady => _firstReady.Task;
    private int _readyLogged;

    public void Start(IEnumerable<Service> after)
    {
        _run = Task.Run(async () =>
        {
            try
            {
                await Task.WhenAll(after.Select(s => s.FirstReady)).WaitAsync(_stop.Token).ConfigureAwait(false);
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
    }

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
            bool failed = !(status.Exited && status.Code == 0);
            bool restart = Definition.Restart == RestartPolicy.Always
                || (Definition.Restart == RestartPolicy.OnFailure && failed);
            if (!restart)
            {
                State = failed ? ServiceState.Failed : ServiceState.Stopped;
                Log.Info($"service {Name} ended ({status}), not restarted (restart: {Definition.Restart})");
                return;
            }
            if (TimeSpan.FromMilliseconds(Environment.TickCount64 - started) > StableAfter) backoff = MinBackoff;
            State = ServiceState.Backoff;
            Restarts++;
            Log.Warn($"service {Name} exited ({status}); restart {Restarts} in {backoff.TotalMilliseconds:F0} ms");
            await Task.Delay(backoff, _stop.Token).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    private async Task<ExitStatus> RunOnceAsync()
    {
        State = ServiceState.Starting;
        using NotifySocket? notify = Definition.Notify ? NotifySocket.Create(Name) : null;
        var environment = new List<string>(Definition.Environment);
        if (!environment.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal)))
        {
            environment.Add(ProcessTable.DefaultPath);
        }
        if (notify is not null) environment.Add($"NOTIFY_SOCKET={notify.SocketPath}");

        int pid;
        Task<ExitStatus> exited;
        SafeFileHandle? pumpRead = null;
        SafeFileHandle stdin, stdout;
        if (Definition.Tty is string tty)
        {
            stdin = stdout = File.OpenHandle(tty, FileMode.Open, FileAccess.ReadWrite);
        }
        else
        {
            stdin = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
            (pumpRead, stdout) = Sys.Pipe();
        }
        try
        {
            (pid, exited) = processes.Start(new SpawnRequest
            {
                Path = Definition.Exec[0],
                Args = Definition.Exec,
                Environment = environment,
                Stdin = stdin,
                Stdout = stdout,
                Stderr = stdout,
            });
        }
        catch (Exception e)
        {
            pumpRead?.Dispose();
            Log.Error($"service {Name}: cannot start {Definition.Exec[0]}", e);
            return new ExitStatus(127 << 8);
        }
        finally
        {
            // The child holds its own copies; ours must close or the pump never sees EOF.
            stdin.Dispose();
            stdout.Dispose();
        }
        if (pumpRead is not null) OutputPump.Start(Name, pumpRead);
        Pid = pid;
        State = ServiceState.Running;
        Log.Info($"service {Name} started (pid {pid})");
        if (notify is null) MarkReady();
        else _ = notify.Ready.ContinueWith(_ => MarkReady(), TaskScheduler.Default);

        var stopped = new TaskCompletionSource();
        using (_stop.Token.Register(() => stopped.TrySetResult()))
        {
            if (await Task.WhenAny(exited, stopped.Task).ConfigureAwait(false) == exited)
            {
                return await exited.ConfigureAwait(false);
            }
        }
        return await TerminateAsync(pid, exited).ConfigureAwait(false);
    }

    private void MarkReady()
    {
        if (State is ServiceState.Running)
        {
            State = ServiceState.Ready;
            // Logged before the waiters are released, so that no line saying what the
            // readiness led to (e.g. "HostOS ready") can carry an earlier time than it.
            if (Interlocked.Exchange(ref _readyLogged, 1) == 0)
            {
                Log.Info($"service {Name} ready");
                _firstReady.TrySetResult();
            }
        }
    }

    private async Task<ExitStatus> TerminateAsync(int pid, Task<ExitStatus> exited)
    {
        State = ServiceState.Stopping;
        // The child leads its own session and process group (setsid): signal the group.
        Sys.TryKill(-pid, Sys.SIGTERM);
        TimeSpan grace = TimeSpan.FromSeconds(Definition.StopTimeoutSeconds);
        if (await Task.WhenAny(exited, Task.Delay(grace)).ConfigureAwait(false) != exited)
        {
            Log.Warn($"service {Name} ignored SIGTERM for {grace.TotalSeconds:F0} s: SIGKILL");
            Sys.TryKill(-pid, Sys.SIGKILL);
        }
        ExitStatus status = await exited.ConfigureAwait(false);
        Log.Info($"service {Name} stopped ({status})");
        return status;
    }
}

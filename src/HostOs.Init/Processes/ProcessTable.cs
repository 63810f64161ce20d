using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Processes;

/// <summary>
/// The one reaper of PID 1 (docs/pid1.md). A dedicated OS thread blocks in
/// <c>waitpid(-1)</c> and drains every exit, our own children and reparented orphans
/// alike (tini's <c>reap_zombies</c>). An exit of a process we started is handed to
/// whoever waits for it; an orphan's exit needs nothing more than the reaping.
///
/// The race "child exits and is reaped before its starter registered interest" is
/// closed by the lock: <see cref="Start"/> holds it across posix_spawn and the
/// registration, and the reaper takes it before looking a pid up.
///
/// Nothing in the init may use System.Diagnostics.Process: once used, the .NET runtime
/// installs its own SIGCHLD reaper and the two would steal exits from each other.
/// </summary>
internal sealed class ProcessTable
{
    /// <summary>The PATH every process the init starts gets unless it names its own.</summary>
    public const string DefaultPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

    private readonly Lock _gate = new();
    private readonly Dictionary<int, TaskCompletionSource<ExitStatus>> _running = [];
    private readonly ManualResetEventSlim _childStarted = new(false);
    /// <summary>
    /// True when something in this process made the .NET runtime catch SIGCHLD (a use of
    /// System.Console on a terminal, or of System.Diagnostics.Process): as PID 1 the
    /// runtime then reaps every child itself. Read from SigCgt in /proc/self/status.
    /// </summary>
    public static bool RuntimeCatchesSigChld(string status) => Catches(status, 17); // SIGCHLD

    /// <summary>Whether the process whose /proc/PID/status text this is has a handler for <paramref name="signal"/> (SigCgt).</summary>
    public static bool Catches(string status, int signal) =>
        StatusField(status, "SigCgt:") is { } caught && (Convert.ToUInt64(caught, 16) & (1UL << (signal - 1))) != 0;

    /// <summary>The value of a "Name:\tvalue" line of /proc/PID/status, or null.</summary>
    public static string? StatusField(string status, string name)
    {
        foreach (string line in status.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal)) return line[name.Length..].Trim();
        }
        return null;
    }

    public void StartReaper()
    {
        if (RuntimeCatchesSigChld(File.ReadAllText("/proc/self/status")))
        {
            Log.Error("the .NET runtime catches SIGCHLD and will reap our children behind our back " +
                      "(System.Console or System.Diagnostics.Process was used): exits will be lost");
        }
        var thread = new Thread(ReapLoop) { IsBackground = true, Name = "reaper" };
        thread.Start();
    }

    /// <summary>Starts a process; the task completes with its exit status once reaped.</summary>
    public (int Pid, Task<ExitStatus> Exited) Start(SpawnRequest request)
    {
        var exited = new TaskCompletionSource<ExitStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        // PID 1's stdin is the console: a child that names no stdin gets /dev/null instead.
        using SafeFileHandle? devNull = request.Stdin is null ? File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read) : null;
        if (devNull is not null) request = request with { Stdin = devNull };
        int pid;
        lock (_gate)
        {
            pid = Sys.Spawn(request);
            _running[pid] = exited;
        }
        _childStarted.Set();
        return (pid, exited.Task);
    }

    /// <summary>Runs a command to completion and returns its exit status.</summary>
    public async Task<ExitStatus> RunAsync(SpawnRequest request, TimeSpan timeout)
    {
        var (pid, exited) = Start(request);
        Task done = await Task.WhenAny(exited, Task.Delay(timeout)).ConfigureAwait(false);
        if (done != exited)
        {
            Sys.TryKill(pid, Sys.SIGKILL);
            await exited.ConfigureAwait(false);
            throw new TimeoutException($"'{request.Path}' did not finish within {timeout.TotalSeconds:F0} s and was killed");
        }
        return await exited.ConfigureAwait(false);
    }

    private void ReapLoop()
    {
        while (true)
        {
            try
            {
                // Reset before waitpid: a child started after waitpid said ECHILD sets the
                // event after this reset, so the Wait below cannot miss it.
                _childStarted.Reset();
                int pid = Sys.WaitPid(-1, 0, out ExitStatus status);
                if (pid == -Errno.ECHILD)
                {
                    _childStarted.Wait(TimeSpan.FromSeconds(1));
                    continue;
                }
                Dispatch(pid, status);
            }
            catch (Exception e)
            {
                // The reaper must outlive anything; a pause stops a hot error loop.
                Log.Error("reaper", e);
                Thread.Sleep(100);
            }
        }
    }

    private void Dispatch(int pid, ExitStatus status)
    {
        TaskCompletionSource<ExitStatus>? waiter;
        lock (_gate)
        {
            _running.Remove(pid, out waiter);
        }
        waiter?.TrySetResult(status); // no waiter: a re-parented orphan, nothing to tell
    }
}

using System.Collections.Concurrent;
using HostOs.Platform.Interop;

namespace HostOs.Init.Processes;

/// <summary>
/// The processes one user of the <see cref="ProcessTable"/> started (a container's stages,
/// hooks and probes; one hostos-runc command's): their exits by pid, and the wait the
/// container runtime asks for (a deadline after which the process is killed).
/// </summary>
internal sealed class StartedProcesses(ProcessTable table)
{
    private readonly ConcurrentDictionary<int, Task<ExitStatus>> _exits = new();

    public int Spawn(SpawnRequest request)
    {
        var (pid, exited) = table.Start(request);
        _exits[pid] = exited;
        return pid;
    }

    public Task<ExitStatus> ExitOf(int pid) =>
        _exits.TryGetValue(pid, out var exited) ? exited : throw new InvalidOperationException($"process {pid} was not started here");

    public void Forget(int pid) => _exits.TryRemove(pid, out _);

    /// <summary>Its exit status, or null when it outlived <paramref name="timeout"/> and was killed (and reaped).</summary>
    public ExitStatus? Wait(int pid, TimeSpan? timeout)
    {
        Task<ExitStatus> exited = ExitOf(pid);
        try
        {
            if (exited.Wait(timeout ?? Timeout.InfiniteTimeSpan)) return exited.Result;
            Sys.TryKill(pid, Sys.SIGKILL);
            exited.Wait();
            return null;
        }
        finally
        {
            Forget(pid);
        }
    }
}

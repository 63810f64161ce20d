using System.Text;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Containers.Runtime;

/// <summary>
/// OCI hooks (runtime-spec config.md, "POSIX-platform Hooks"): each runs with the
/// container's state JSON on stdin, its own args and env, and an optional timeout after
/// which it is killed. prestart, createRuntime, createContainer and startContainer failing
/// make the container fail (the error carries the exit status and the hook's output);
/// poststart and poststop failing are reported as warnings only.
/// Where each runs: prestart and createRuntime in the runtime's namespaces once the
/// container's exist (the stage pauses before pivot_root); createContainer in the
/// container's namespaces at the same point; startContainer by the stage inside the
/// container, before the program; poststart after start; poststop when deleted.
/// </summary>
public static class HookRunner
{
    /// <summary>
    /// Runs <paramref name="hooks"/> in order. <paramref name="spawn"/> starts each (so a
    /// caller may spawn it into namespaces), <paramref name="wait"/> waits for a child and
    /// returns its status, or null on timeout (the child is then killed and reaped).
    /// </summary>
    public static void Run(string phase, List<Hook>? hooks, string stateJson, Func<SpawnRequest, int> spawn,
        Func<int, TimeSpan?, ExitStatus?> wait)
    {
        for (int i = 0; i < (hooks?.Count ?? 0); i++)
        {
            Hook hook = hooks![i];
            string what = $"{phase} hook {i} ({hook.Path})";
            var (stdinRead, stdinWrite) = Sys.Pipe();
            var (outRead, outWrite) = Sys.Pipe();
            int pid;
            using (stdinRead)
            using (outWrite)
            {
                pid = spawn(new SpawnRequest
                {
                    Path = hook.Path!,
                    Args = hook.Args is { Count: > 0 } a ? [.. a] : [hook.Path!],
                    Environment = [.. hook.Env ?? []],
                    Stdin = stdinRead,
                    Stdout = outWrite,
                    Stderr = outWrite,
                    NewSession = true,
                });
            }
            // Output is read while the hook runs (a full pipe must not stall it), bounded.
            var output = new StringBuilder();
            var reader = new Thread(() =>
            {
                using var stream = new FileStream(outRead, FileAccess.Read, 1);
                byte[] buffer = new byte[4096];
                int n;
                while ((n = stream.Read(buffer)) > 0)
                {
                    lock (output) if (output.Length < 4096) output.Append(Encoding.UTF8.GetString(buffer, 0, n));
                }
            }) { IsBackground = true, Name = "hook-output" };
            reader.Start();
            // Written on a thread of its own: a hook that never reads a state larger than the
            // pipe must still meet its timeout rather than block us.
            var writer = new Thread(() =>
            {
                using var stdin = new FileStream(stdinWrite, FileAccess.Write, 1);
                try { stdin.Write(Encoding.UTF8.GetBytes(stateJson)); }
                catch (IOException) { } // a hook need not read its stdin
            }) { IsBackground = true, Name = "hook-stdin" };
            writer.Start();
            ExitStatus? status = wait(pid, hook.Timeout is int t ? TimeSpan.FromSeconds(t) : null);
            reader.Join(TimeSpan.FromSeconds(5));
            string text;
            lock (output) text = output.ToString().Trim();
            if (status is null) throw new ContainerException($"{what}: killed after its timeout of {hook.Timeout} s{(text.Length > 0 ? ": " + text : "")}");
            if (!(status.Value.Exited && status.Value.Code == 0))
            {
                throw new ContainerException($"{what}: {status}{(text.Length > 0 ? ": " + text : "")}");
            }
        }
    }

    /// <summary>For processes we own and reap ourselves (the CLI, the guest checker): waitpid with a deadline.</summary>
    public static ExitStatus? WaitOwnChild(int pid, TimeSpan? timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (Sys.WaitPid(pid, Sys.WNOHANG, out ExitStatus status) == pid) return status;
            if (timeout is TimeSpan limit && clock.Elapsed > limit)
            {
                Sys.TryKill(pid, Sys.SIGKILL);
                Sys.WaitPid(pid, 0, out _);
                return null;
            }
            Thread.Sleep(clock.ElapsedMilliseconds < 100 ? 1 : 10);
        }
    }

    /// <summary>Runs hooks whose failure must not stop anything (poststart, poststop): the error is handed to <paramref name="warn"/>.</summary>
    public static void RunReporting(string phase, List<Hook>? hooks, string stateJson, Action<string> warn,
        Func<SpawnRequest, int>? spawn = null, Func<int, TimeSpan?, ExitStatus?>? wait = null)
    {
        try
        {
            Run(phase, hooks, stateJson, spawn ?? Sys.Spawn, wait ?? WaitOwnChild);
        }
        catch (Exception e) when (e is ContainerException or SysException)
        {
            warn(e.Message);
        }
    }
}

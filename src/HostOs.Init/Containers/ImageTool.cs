using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;

namespace HostOs.Init.Containers;

/// <summary>
/// Runs the image tool (<c>hostos-images</c>: pulls, imports, pruning; docs/apps.md) as a
/// child of the init. Hashing and TLS load OpenSSL, which PID 1 keeps out of itself, and a
/// pull that hangs or crashes costs a child, never the init. Its output goes to the log
/// under the given name like any child's (<see cref="OutputPump"/>); its lines come back
/// too, for errors and the API's answers.
/// </summary>
internal static class ImageToolProcess
{
    public static async Task<(int Code, IReadOnlyList<string> Lines)> RunAsync(ProcessTable processes, string logName, IReadOnlyList<string> args, CancellationToken cancel)
    {
        if (!File.Exists(AppPaths.ImageTool)) return (127, [$"{AppPaths.ImageTool} is missing from the root"]);
        var (read, write) = Sys.Pipe();
        int pid;
        Task<ExitStatus> exited;
        try
        {
            (pid, exited) = processes.Start(new SpawnRequest
            {
                Path = AppPaths.ImageTool,
                Args = [AppPaths.ImageTool, .. args],
                // The root has the CA certificates as files, not as OpenSSL's bundle (image/hostos.json).
                Environment = [ProcessTable.DefaultPath, "SSL_CERT_DIR=/usr/share/ca-certificates/mozilla"],
                Stdout = write,
                Stderr = write,
            });
        }
        catch
        {
            read.Dispose();
            throw;
        }
        finally
        {
            write.Dispose();
        }
        var lines = new List<string>();
        Task pumped = OutputPump.Start(logName, read, line =>
        {
            lock (lines)
            {
                if (line.Length > 0 && lines.Count < 100) lines.Add(line);
            }
        });
        using (cancel.Register(() => Sys.TryKill(pid, Sys.SIGTERM)))
        {
            ExitStatus status = await exited.ConfigureAwait(false);
            await pumped.ConfigureAwait(false);
            cancel.ThrowIfCancellationRequested();
            if (status.ShellCode != 0 && lines.Count == 0) lines.Add(status.ToString());
            return (status.ShellCode, lines);
        }
    }
}

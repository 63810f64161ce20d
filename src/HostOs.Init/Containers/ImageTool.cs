using System.Text;
using HostOs.Init.Processes;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;

namespace HostOs.Init.Containers;

/// <summary>
/// Runs the image tool (<c>hostos-images</c>: pulls, imports, pruning; docs/apps.md) as a
/// child of the init. Hashing and TLS load OpenSSL, which PID 1 keeps out of itself, and a
/// pull that hangs or crashes costs a child, never the init. Its output goes to the log
/// under the given name; the last line comes back (for errors), and all of them (a few,
/// for the API's answers).
/// </summary>
internal static class ImageTool
{
    public static async Task<(int Code, string LastLine, IReadOnlyList<string> Lines)> RunAsync(ProcessTable processes, string logName, IReadOnlyList<string> args, CancellationToken cancel)
    {
        if (!File.Exists(AppPaths.ImageTool)) return (127, $"{AppPaths.ImageTool} is missing from the root", []);
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
        string last = "";
        var lines = new List<string>();
        Task pump = Task.Factory.StartNew(() =>
        {
            using var reader = new StreamReader(new FileStream(read, FileAccess.Read, 1), Encoding.UTF8);
            while (reader.ReadLine() is string line)
            {
                Logging.Journal.Put(Logging.LogRecord.Now(logName, line.StartsWith("hostos-images:", StringComparison.Ordinal) ? Logging.LogRecord.Error : Logging.LogRecord.Info, pid, line));
                if (line.Length > 0) last = line;
                if (lines.Count < 100) lines.Add(line);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        using (cancel.Register(() => Sys.TryKill(pid, Sys.SIGTERM)))
        {
            ExitStatus status = await exited.ConfigureAwait(false);
            await pump.ConfigureAwait(false);
            cancel.ThrowIfCancellationRequested();
            int code = status.ShellCode;
            return (code, last.Length > 0 ? last : status.ToString(), lines);
        }
    }
}

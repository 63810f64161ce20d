using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;

namespace HostOs.QemuTests.Harness;

/// <summary>
/// The test image's root shell on ttyS1 (service debug-shell, echo off, no prompt),
/// reached through QEMU's socket chardev. A command is followed by
/// <c>echo __END_n__ $?</c>; its output is every line before that marker. The
/// connection survives guest reboots; <see cref="SyncAsync"/> waits for the new shell.
/// A background job must go in a subshell, <c>(cmd &amp; echo $! &gt; pidfile)</c>: this
/// busybox ash (no job control) exits when a job of its own ends while it waits for input,
/// and a command sent meanwhile is lost (docs/testing.md).
/// </summary>
internal sealed class SerialShell : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly Task _reader;
    private int _next;

    private SerialShell(Socket socket)
    {
        _socket = socket;
        _reader = Task.Run(ReadLoop);
    }

    public static async Task<SerialShell> ConnectAsync(string path, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
                return new SerialShell(socket);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                await Task.Delay(100);
            }
        }
    }

    private async Task ReadLoop()
    {
        var buffer = new byte[4096];
        var line = new StringBuilder();
        try
        {
            while (true)
            {
                int n = await _socket.ReceiveAsync(buffer);
                if (n == 0) break;
                foreach (char c in Encoding.UTF8.GetString(buffer, 0, n))
                {
                    if (c == '\n')
                    {
                        _lines.Writer.TryWrite(line.ToString().TrimEnd('\r'));
                        line.Clear();
                    }
                    else line.Append(c);
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        _lines.Writer.TryComplete();
    }

    private async Task SendAsync(string text) => await _socket.SendAsync(Encoding.UTF8.GetBytes(text), SocketFlags.None);

    /// <summary>Waits until a (new) shell answers; sends a probe every second until then.</summary>
    public async Task SyncAsync(TimeSpan timeout)
    {
        string token = $"__SYNC_{Interlocked.Increment(ref _next)}__";
        using var cts = new CancellationTokenSource(timeout);
        Task probe = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                await SendAsync($"\necho {token}\n");
                await Task.Delay(1000, cts.Token).ContinueWith(_ => { });
            }
        });
        try
        {
            while (true)
            {
                string l = await _lines.Reader.ReadAsync(cts.Token);
                if (l == token) break;
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the debug shell on ttyS1 did not answer within {timeout.TotalSeconds:F0} s");
        }
        finally
        {
            await cts.CancelAsync();
            await probe;
        }
        // Drain the answers to the other probes.
        await Task.Delay(300);
        while (_lines.Reader.TryRead(out _)) { }
    }

    public async Task<(int Code, string Output)> RunAsync(string command, TimeSpan? timeout = null)
    {
        while (_lines.Reader.TryRead(out _)) { }
        string marker = $"__END_{Interlocked.Increment(ref _next)}__";
        await SendAsync($"{command}\necho \"{marker} $?\"\n");
        var output = new StringBuilder();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            while (true)
            {
                string l = await _lines.Reader.ReadAsync(cts.Token);
                if (l.StartsWith(marker + " ", StringComparison.Ordinal))
                {
                    return (int.Parse(l[(marker.Length + 1)..].Trim()), output.ToString().TrimEnd('\n'));
                }
                output.Append(l).Append('\n');
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"shell command '{command}' gave no end marker within {(timeout ?? TimeSpan.FromSeconds(60)).TotalSeconds:F0} s; output so far:\n{output}");
        }
    }

    /// <summary>Runs a command that must exit 0 and returns its output.</summary>
    public async Task<string> CheckAsync(string command, TimeSpan? timeout = null)
    {
        var (code, output) = await RunAsync(command, timeout);
        if (code != 0) throw new InvalidOperationException($"guest command '{command}' exited {code}:\n{output}");
        return output;
    }

    /// <summary>Sends a command without waiting for an answer (reboot, poweroff).</summary>
    public Task FireAsync(string command) => SendAsync(command + "\n");

    public async ValueTask DisposeAsync()
    {
        _socket.Dispose();
        await _reader;
    }
}

using System.Net.Sockets;
using System.Text;

namespace HostOs.Init.Services;

/// <summary>
/// The sd_notify(3) receiving end for one service: a datagram socket at
/// <c>/run/hostos/notify/NAME</c>, passed as <c>$NOTIFY_SOCKET</c>. One socket per service
/// means the sender is known without SCM_CREDENTIALS. Acts on READY=1, WATCHDOG=1 (the
/// time of the last ping) and WATCHDOG=trigger, logs STOPPING=1; STATUS= is accepted.
/// </summary>
internal sealed class NotifySocket : IDisposable
{
    public const string Directory = "/run/hostos/notify";
    private readonly Socket _socket;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string _service;

    private NotifySocket(string service, string path, Socket socket)
    {
        _service = service;
        SocketPath = path;
        _socket = socket;
        var thread = new Thread(ReceiveLoop) { IsBackground = true, Name = $"notify-{service}" };
        thread.Start();
    }

    public string SocketPath { get; }
    public Task Ready => _ready.Task;
    /// <summary>Environment.TickCount64 of the last WATCHDOG=1, or 0.</summary>
    public long LastPing => Interlocked.Read(ref _lastPing);
    public bool WatchdogTriggered { get; private set; }
    private long _lastPing;

    public static NotifySocket Create(string service)
    {
        System.IO.Directory.CreateDirectory(Directory);
        string path = Path.Combine(Directory, service);
        File.Delete(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return new NotifySocket(service, path, socket);
    }

    private void ReceiveLoop()
    {
        byte[] buffer = new byte[4096];
        while (true)
        {
            int n;
            try
            {
                n = _socket.Receive(buffer);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            foreach (string line in Encoding.UTF8.GetString(buffer, 0, n).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line == "READY=1") _ready.TrySetResult();
                else if (line == "WATCHDOG=1") Interlocked.Exchange(ref _lastPing, Environment.TickCount64);
                else if (line == "WATCHDOG=trigger") WatchdogTriggered = true;
                else if (line == "STOPPING=1") Log.Info($"{_service}: stopping");
            }
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        try { File.Delete(SocketPath); } catch (IOException) { }
    }
}

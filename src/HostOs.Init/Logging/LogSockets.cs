using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace HostOs.Init.Logging;

/// <summary>
/// The two sockets stock software logs to, so it works unchanged on HostOS:
/// <c>/run/systemd/journal/socket</c>, journald's native protocol (what sd_journal_send,
/// systemd-cat and our Serilog sink speak), and <c>/dev/log</c>, syslog (what syslog(3)
/// speaks). Both are datagram sockets; each datagram becomes one record in the journal,
/// posted without waiting (a datagram source cannot be slowed; what does not fit is
/// counted and reported).
/// </summary>
internal static class LogSockets
{
    public const string JournalSocket = "/run/systemd/journal/socket";
    public const string SyslogSocket = "/dev/log";

    public static void Start()
    {
        Listen(JournalSocket, "journal-socket", ParseNative);
        Listen(SyslogSocket, "syslog-socket", ParseSyslog);
    }

    private static void Listen(string path, string threadName, Func<ReadOnlySpan<byte>, LogRecord?> parse)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.Delete(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        File.SetUnixFileMode(path, (UnixFileMode)0x1B6); // 0666: every local program may log
        // Room for bursts while the reader thread is busy (the kernel default is ~200 kB).
        socket.ReceiveBufferSize = 4 << 20;
        var thread = new Thread(() =>
        {
            byte[] buffer = new byte[256 << 10];
            while (true)
            {
                int n;
                try
                {
                    n = socket.Receive(buffer);
                }
                catch (SocketException)
                {
                    continue;
                }
                if (parse(buffer.AsSpan(0, n)) is LogRecord record) Journal.Post(record);
            }
        }) { IsBackground = true, Name = threadName };
        thread.Start();
    }

    /// <summary>
    /// journald's native protocol (systemd's JOURNAL_NATIVE_PROTOCOL.md): fields separated by
    /// newlines, each <c>KEY=value</c>, or <c>KEY</c>, a newline, a 64-bit little-endian
    /// length and that many bytes (values with newlines), then a newline. MESSAGE, PRIORITY,
    /// SYSLOG_IDENTIFIER and SYSLOG_PID are used; no message, no record.
    /// </summary>
    public static LogRecord? ParseNative(ReadOnlySpan<byte> data)
    {
        string? message = null, identifier = null;
        int priority = LogRecord.Info, pid = 0;
        while (data.Length > 0)
        {
            int newline = data.IndexOf((byte)'\n');
            ReadOnlySpan<byte> line = newline < 0 ? data : data[..newline];
            int eq = line.IndexOf((byte)'=');
            string key;
            string value;
            if (eq >= 0)
            {
                key = Encoding.ASCII.GetString(line[..eq]);
                value = Encoding.UTF8.GetString(line[(eq + 1)..]);
                data = newline < 0 ? [] : data[(newline + 1)..];
            }
            else
            {
                if (newline < 0 || data.Length < newline + 1 + 8) return null; // malformed
                key = Encoding.ASCII.GetString(line);
                ulong length = BinaryPrimitives.ReadUInt64LittleEndian(data[(newline + 1)..]);
                int start = newline + 1 + 8;
                if (length > (ulong)(data.Length - start)) return null;
                value = Encoding.UTF8.GetString(data.Slice(start, (int)length));
                data = data[(start + (int)length)..];
                if (data.Length > 0 && data[0] == (byte)'\n') data = data[1..];
            }
            switch (key)
            {
                case "MESSAGE": message = value; break;
                case "PRIORITY": if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p is >= 0 and <= 7) priority = p; break;
                case "SYSLOG_IDENTIFIER": identifier = value; break;
                case "SYSLOG_PID": int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out pid); break;
            }
        }
        if (message is null) return null;
        return LogRecord.Now(Clean(identifier) ?? "journal", priority, pid, message.TrimEnd('\n'));
    }

    /// <summary>
    /// syslog (RFC 3164 as glibc's syslog(3) sends it to /dev/log): <c>&lt;PRI&gt;</c>, an
    /// optional <c>Mmm dd hh:mm:ss </c> timestamp, <c>TAG[PID]: message</c>. The severity is
    /// PRI's low three bits.
    /// </summary>
    public static LogRecord? ParseSyslog(ReadOnlySpan<byte> data)
    {
        string text = Encoding.UTF8.GetString(data).TrimEnd('\n', '\0');
        int priority = LogRecord.Info;
        if (text.StartsWith('<'))
        {
            int close = text.IndexOf('>');
            if (close is > 1 and <= 4 && int.TryParse(text.AsSpan(1, close - 1), NumberStyles.None, CultureInfo.InvariantCulture, out int pri))
            {
                priority = pri & 7;
                text = text[(close + 1)..];
            }
        }
        // "Nov 29 16:20:01 " (15 characters and a space)
        if (text.Length > 16 && text[3] == ' ' && text[6] == ' ' && text[9] == ':' && text[12] == ':' && text[15] == ' ') text = text[16..];
        string tag = "syslog";
        int pid = 0;
        int colon = text.IndexOf(": ", StringComparison.Ordinal);
        if (colon > 0 && colon < 64 && !text[..colon].Contains(' '))
        {
            string head = text[..colon];
            int bracket = head.IndexOf('[');
            if (bracket > 0 && head.EndsWith(']'))
            {
                int.TryParse(head.AsSpan(bracket + 1, head.Length - bracket - 2), NumberStyles.None, CultureInfo.InvariantCulture, out pid);
                head = head[..bracket];
            }
            tag = Clean(head) ?? tag;
            text = text[(colon + 2)..];
        }
        return LogRecord.Now(tag, priority, pid, text);
    }

    /// <summary>A unit name from what a client said it is: printable, no spaces or brackets, at most 64 characters.</summary>
    private static string? Clean(string? name)
    {
        if (string.IsNullOrEmpty(name)) return null;
        var s = new string([.. name.Where(c => c is > ' ' and <= '~' and not '[' and not ']' and not '/').Take(64)]);
        return s.Length == 0 ? null : s;
    }
}

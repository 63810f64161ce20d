using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Serilog;
using Serilog.Configuration;
using Serilog.Core;
using Serilog.Events;

namespace HostOs.Logging;

/// <summary>
/// Writes Serilog events to journald's native protocol socket (systemd's
/// JOURNAL_NATIVE_PROTOCOL.md), which HostOS's init serves: one datagram per event with
/// MESSAGE (rendered), PRIORITY (syslog severity from the level), SYSLOG_IDENTIFIER,
/// SYSLOG_PID, and each scalar property as an upper-case field. Values that hold a newline
/// use the protocol's binary form. A socket that is not there (a build host, a test) or a
/// full buffer loses the event and never throws into the application.
/// </summary>
public sealed class JournaldSink : ILogEventSink, IDisposable
{
    public const string DefaultSocket = "/run/systemd/journal/socket";
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly UnixDomainSocketEndPoint _endpoint;
    private readonly string _identifier;
    private readonly IFormatProvider? _formatProvider;

    public JournaldSink(string identifier, string socketPath = DefaultSocket, IFormatProvider? formatProvider = null)
    {
        _identifier = identifier;
        _endpoint = new UnixDomainSocketEndPoint(socketPath);
        _formatProvider = formatProvider;
    }

    /// <summary>Serilog level → syslog severity (0 emerg … 7 debug), as systemd's own mapping does.</summary>
    public static int Priority(LogEventLevel level) => level switch
    {
        LogEventLevel.Fatal => 2,
        LogEventLevel.Error => 3,
        LogEventLevel.Warning => 4,
        LogEventLevel.Information => 6,
        _ => 7,
    };

    public void Emit(LogEvent logEvent)
    {
        byte[] datagram = Encode(logEvent, _identifier, Environment.ProcessId, _formatProvider);
        try
        {
            _socket.SendTo(datagram, _endpoint);
        }
        catch (SocketException)
        {
            // No journal to send to, or it is not keeping up: the event is lost, the caller is not.
        }
    }

    public static byte[] Encode(LogEvent e, string identifier, int pid, IFormatProvider? formatProvider = null)
    {
        string message = e.RenderMessage(formatProvider);
        if (e.Exception is not null) message += Environment.NewLine + e.Exception;
        var fields = new List<(string, string)>
        {
            ("MESSAGE", message),
            ("PRIORITY", Priority(e.Level).ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("SYSLOG_IDENTIFIER", identifier),
            ("SYSLOG_PID", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("SERILOG_LEVEL", e.Level.ToString()),
            ("MESSAGE_TEMPLATE", e.MessageTemplate.Text),
        };
        foreach (var (name, value) in e.Properties)
        {
            string key = FieldName(name);
            if (value is ScalarValue scalar && key.Length > 0) fields.Add((key, scalar.Value is string s ? s : scalar.ToString(null, formatProvider)));
        }
        return EncodeFields(fields);
    }

    /// <summary>One datagram of journald's native protocol: KEY=value lines, the binary form for values with a newline.</summary>
    public static byte[] EncodeFields(IEnumerable<(string Key, string Value)> fields)
    {
        var b = new MemoryStream();
        foreach (var (key, value) in fields) Field(b, key, value);
        return b.ToArray();
    }

    /// <summary>Journal field names: A-Z, 0-9 and '_', not starting with '_' or a digit, at most 64.</summary>
    public static string FieldName(string name)
    {
        var s = new StringBuilder();
        foreach (char c in name)
        {
            char u = char.ToUpperInvariant(c);
            s.Append(u is (>= 'A' and <= 'Z') or (>= '0' and <= '9') ? u : '_');
        }
        string key = s.ToString().TrimStart('_');
        if (key.Length > 0 && char.IsAsciiDigit(key[0])) key = "P" + key;
        return key.Length > 64 ? key[..64] : key;
    }

    private static void Field(MemoryStream b, string key, string value)
    {
        byte[] k = Encoding.ASCII.GetBytes(key);
        byte[] v = Encoding.UTF8.GetBytes(value);
        b.Write(k);
        if (Array.IndexOf(v, (byte)'\n') < 0)
        {
            b.WriteByte((byte)'=');
            b.Write(v);
        }
        else
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)v.Length);
            b.WriteByte((byte)'\n');
            b.Write(length);
            b.Write(v);
        }
        b.WriteByte((byte)'\n');
    }

    public void Dispose() => _socket.Dispose();
}

public static class JournaldSinkExtensions
{
    /// <summary><c>.WriteTo.Journald("hostos-updater")</c></summary>
    public static LoggerConfiguration Journald(this LoggerSinkConfiguration to, string identifier,
        string socketPath = JournaldSink.DefaultSocket, LogEventLevel minimumLevel = LogEventLevel.Verbose) =>
        to.Sink(new JournaldSink(identifier, socketPath), minimumLevel);
}

using System.Net.Sockets;
using HostOs.Init.Logging;
using HostOs.Logging;
using Serilog;
using Serilog.Events;

namespace HostOs.UnitTests.Init;

/// <summary>Our Serilog sink, read back by the init's own journald-protocol parser.</summary>
public class JournaldSinkTests
{
    [Fact]
    public void EventsArriveAsTheInitReadsThem()
    {
        string dir = Directory.CreateTempSubdirectory("journald-").FullName;
        string path = Path.Combine(dir, "socket");
        try
        {
            using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            server.Bind(new UnixDomainSocketEndPoint(path));
            server.ReceiveTimeout = 5000;
            using (var log = new LoggerConfiguration().WriteTo.Journald("hostos-test", path).CreateLogger())
            {
                log.Warning("slot {Slot} is {Percent}% written", "b", 42);
                log.Error(new InvalidOperationException("boom"), "apply failed");
            }
            byte[] buffer = new byte[65536];
            LogRecord first = LogSockets.ParseNative(buffer.AsSpan(0, server.Receive(buffer)))!.Value;
            Assert.Equal("hostos-test", first.Unit);
            Assert.Equal(4, first.Priority);
            Assert.Equal(Environment.ProcessId, first.Pid);
            Assert.Equal("slot \"b\" is 42% written", first.Message);
            LogRecord second = LogSockets.ParseNative(buffer.AsSpan(0, server.Receive(buffer)))!.Value;
            Assert.Equal(3, second.Priority);
            Assert.StartsWith("apply failed" + Environment.NewLine + "System.InvalidOperationException: boom", second.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void PropertiesBecomeJournalFields()
    {
        var template = new Serilog.Parsing.MessageTemplateParser().Parse("x");
        var e = new LogEvent(DateTimeOffset.UtcNow, LogEventLevel.Information, null, template,
            [new LogEventProperty("sourceContext", new ScalarValue("a.b")), new LogEventProperty("_9lives", new ScalarValue(1))]);
        string text = System.Text.Encoding.UTF8.GetString(JournaldSink.Encode(e, "id", 7));
        Assert.Contains("SOURCECONTEXT=a.b\n", text);
        Assert.Contains("P9LIVES=1\n", text);
        Assert.Contains("PRIORITY=6\n", text);
        Assert.Equal("A_B", JournaldSink.FieldName("a-b"));
    }

    [Fact]
    public void NoJournalIsNoError()
    {
        using var log = new LoggerConfiguration().WriteTo.Journald("x", "/nonexistent/socket").CreateLogger();
        log.Information("lost, quietly");
    }
}

using System.Text;
using HostOs.Init.Logging;

namespace HostOs.UnitTests.Init;

public class JournalTests
{
    [Fact]
    public void NativeProtocolFieldsPlainAndBinary()
    {
        byte[] multiLine = Encoding.UTF8.GetBytes("two\nlines");
        var packet = new List<byte>();
        packet.AddRange("PRIORITY=3\nSYSLOG_IDENTIFIER=my-app\nSYSLOG_PID=42\nCODE_FILE=x.c\nMESSAGE\n"u8.ToArray());
        packet.AddRange(BitConverter.GetBytes((ulong)multiLine.Length));
        packet.AddRange(multiLine);
        packet.Add((byte)'\n');
        LogRecord r = LogSockets.ParseNative([.. packet])!.Value;
        Assert.Equal("my-app", r.Unit);
        Assert.Equal(3, r.Priority);
        Assert.Equal(42, r.Pid);
        Assert.Equal("two\nlines", r.Message);

        Assert.Equal("journal", LogSockets.ParseNative("MESSAGE=hello"u8)!.Value.Unit);
        Assert.Null(LogSockets.ParseNative("PRIORITY=3\n"u8));                    // no message
        Assert.Null(LogSockets.ParseNative([.. "MESSAGE\n"u8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, (byte)'x'])); // length past the end
    }

    [Theory]
    [InlineData("<11>Nov 29 16:20:01 sshd[77]: Failed password", "sshd", 3, 77, "Failed password")]
    [InlineData("<14>cron: job done", "cron", 6, 0, "job done")]
    [InlineData("no header at all", "syslog", 6, 0, "no header at all")]
    [InlineData("<13>a b: c", "syslog", 5, 0, "a b: c")]
    public void SyslogLines(string line, string unit, int priority, int pid, string message)
    {
        LogRecord r = LogSockets.ParseSyslog(Encoding.UTF8.GetBytes(line))!.Value;
        Assert.Equal(unit, r.Unit);
        Assert.Equal(priority, r.Priority);
        Assert.Equal(pid, r.Pid);
        Assert.Equal(message, r.Message);
    }

    [Fact]
    public void RecordsRoundTripAsJsonLinesAndTornLinesAreSkipped()
    {
        var record = new LogRecord(1_700_000_000_123_000, 4567, "web", 6, 12, "GET / \"quoted\" \u00e9\n");
        using var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer)) record.WriteJson(w);
        Assert.Equal(record, LogRecord.Parse(buffer.ToArray()));
        Assert.Null(LogRecord.Parse("{\"t\":1,\"msg\":\"cut in the mid"u8));
    }

    [Fact]
    public void FilesRotateAndStayWithinTheirBound()
    {
        string dir = Directory.CreateTempSubdirectory("journal-").FullName;
        try
        {
            using (var files = new JournalFiles(dir, maxFileBytes: 4096, maxTotalBytes: 16384))
            {
                for (int i = 0; i < 2000; i++)
                {
                    files.Write([new LogRecord(i, i, "flood", 6, 0, $"line {i} " + new string('x', 40))]);
                }
            }
            List<string> all = Journal.Files(dir);
            long total = all.Sum(f => new FileInfo(f).Length);
            Assert.True(total <= 16384 + 4096, $"{total} bytes kept");
            Assert.True(Journal.Rotated(dir).Count >= 2);
            Assert.EndsWith(Journal.CurrentFile, all[^1]);
            // The newest lines are kept, in order, the oldest dropped whole files at a time.
            var lines = all.SelectMany(File.ReadLines).Select(l => LogRecord.Parse(Encoding.UTF8.GetBytes(l))!.Value).ToList();
            Assert.Equal(1999, lines[^1].RealtimeUs);
            Assert.True(lines[0].RealtimeUs > 0);
            Assert.Equal(lines.Select(l => l.RealtimeUs).Order(), lines.Select(l => l.RealtimeUs));
            // Numbering goes on: the next rotation never reuses a name.
            var names = Journal.Rotated(dir).Select(Path.GetFileName).ToList();
            Assert.Equal(names.Order(StringComparer.Ordinal), names);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

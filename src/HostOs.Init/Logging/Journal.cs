using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace HostOs.Init.Logging;

/// <summary>One log line: when, from whom, how important, what.</summary>
internal readonly record struct LogRecord(long RealtimeUs, long MonotonicMs, string Unit, int Priority, int Pid, string Message)
{
    public const int Error = 3, Warning = 4, Info = 6;

    public static LogRecord Now(string unit, int priority, int pid, string message) =>
        new(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000, Environment.TickCount64, unit, priority, pid, message);

    /// <summary>One JSON object per line: t (µs since the epoch), m (ms since boot), u, p, pid, msg.</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteNumber("t", RealtimeUs);
        w.WriteNumber("m", MonotonicMs);
        w.WriteString("u", Unit);
        w.WriteNumber("p", Priority);
        if (Pid > 0) w.WriteNumber("pid", Pid);
        w.WriteString("msg", Message);
        w.WriteEndObject();
    }

    public static LogRecord? Parse(ReadOnlySpan<byte> line)
    {
        try
        {
            var r = new Utf8JsonReader(line);
            long t = 0, m = 0;
            int p = Info, pid = 0;
            string unit = "", msg = "";
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject) return null;
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                string name = r.GetString()!;
                r.Read();
                switch (name)
                {
                    case "t": t = r.GetInt64(); break;
                    case "m": m = r.GetInt64(); break;
                    case "u": unit = r.GetString() ?? ""; break;
                    case "p": p = r.GetInt32(); break;
                    case "pid": pid = r.GetInt32(); break;
                    case "msg": msg = r.GetString() ?? ""; break;
                    default: r.Skip(); break;
                }
            }
            return new LogRecord(t, m, unit, p, pid, msg);
        }
        catch (JsonException)
        {
            return null; // a line torn by a power cut: skipped, the rest still reads
        }
    }
}

/// <summary>
/// The machine's log (docs/logging.md): every line of the init, of every service and
/// container, and of whatever speaks the journald or syslog protocol, kept on state in
/// /var/log/hostos as JSON lines with size-bounded rotation.
///
/// Writers never wait for the disk: records go into a bounded queue that one writer thread
/// drains. Sources that can wait (a service's or container's output pipe) wait when the
/// queue is full, so a flood slows only the flooder (its pipe fills and its writes block),
/// never the init, and nothing is dropped; sources that cannot wait (the init's own lines,
/// datagram sockets) count what the queue had no room for and say so in the log. Before
/// state is mounted, records stay in the queue (up to its size) and are written once the
/// store opens.
/// </summary>
internal static class Journal
{
    public const string Directory = "/var/log/hostos";
    public const string CurrentFile = "current.jsonl";
    private const int QueueCapacity = 16384;

    private static readonly BlockingCollection<LogRecord> Queue = new(new ConcurrentQueue<LogRecord>(), QueueCapacity);
    private static long _dropped;
    private static string? _directory;
    private const long MaxFileBytes = 4 << 20, MaxTotalBytes = 32 << 20;
    private static readonly ManualResetEventSlim Opened = new(false);
    private static Thread? _writer;
    private static readonly Lock Gate = new();
    private static TaskCompletionSource? _flushed;

    /// <summary>Starts writing to <paramref name="directory"/> (state's /var/log/hostos), 4 MiB files, 32 MiB in all.</summary>
    public static void Open(string directory = Directory)
    {
        System.IO.Directory.CreateDirectory(directory);
        _directory = directory;
        Opened.Set();
    }

    /// <summary>The rotated files, oldest first.</summary>
    public static List<string> Rotated(string dir) =>
        [.. System.IO.Directory.GetFiles(dir, "*.jsonl")
            .Where(f => Path.GetFileName(f) != CurrentFile && Path.GetFileNameWithoutExtension(f).All(char.IsAsciiDigit))
            .Order(StringComparer.Ordinal)];

    /// <summary>Every file of the log, oldest first, the current one last.</summary>
    public static List<string> Files(string dir)
    {
        var files = Rotated(dir);
        string current = Path.Combine(dir, CurrentFile);
        if (File.Exists(current)) files.Add(current);
        return files;
    }

    public static void StartWriter()
    {
        lock (Gate)
        {
            if (_writer is not null) return;
            _writer = new Thread(WriteLoop) { IsBackground = true, Name = "journal" };
            _writer.Start();
        }
    }

    /// <summary>For sources that must never wait; a full queue drops the record and counts it.</summary>
    public static void Post(LogRecord record)
    {
        if (!Queue.TryAdd(record)) Interlocked.Increment(ref _dropped);
    }

    /// <summary>For sources that can be made to wait (pipes): blocks while the queue is full.</summary>
    public static void Put(LogRecord record) => Queue.Add(record);

    private static volatile bool _closing;

    // The newest records in memory, for readers that follow the log (hostctl logs -f).
    private const int RingSize = 4096;
    private static readonly LogRecord[] Ring = new LogRecord[RingSize];
    private static int _ringNext, _ringCount;
    private static readonly Lock RingGate = new();

    private static void Remember(List<LogRecord> written)
    {
        lock (RingGate)
        {
            foreach (LogRecord r in written)
            {
                Ring[_ringNext] = r;
                _ringNext = (_ringNext + 1) % RingSize;
                _ringCount = Math.Min(_ringCount + 1, RingSize);
            }
        }
    }

    /// <summary>
    /// The newest <paramref name="max"/> records of <paramref name="unit"/> (all units when
    /// null) written after <paramref name="sinceUs"/>, oldest first: from memory when the
    /// request reaches back no further than it holds, otherwise from the files, newest first,
    /// reading no further back than needed.
    /// </summary>
    public static List<LogRecord> Read(string? unit, long sinceUs, int max)
    {
        bool Wanted(LogRecord r) => r.RealtimeUs > sinceUs && (unit is null || r.Unit == unit);
        lock (RingGate)
        {
            int oldest = (_ringNext - _ringCount + RingSize) % RingSize;
            if (_ringCount > 0 && sinceUs >= Ring[oldest].RealtimeUs)
            {
                var fromMemory = new List<LogRecord>();
                for (int i = 0; i < _ringCount; i++)
                {
                    LogRecord r = Ring[(oldest + i) % RingSize];
                    if (Wanted(r)) fromMemory.Add(r);
                }
                return fromMemory.Count > max ? fromMemory[^max..] : fromMemory;
            }
        }
        var result = new List<LogRecord>();
        if (_directory is null) return result;
        List<string> files = Files(_directory);
        for (int f = files.Count - 1; f >= 0 && result.Count < max; f--)
        {
            var chunk = new List<LogRecord>();
            bool reachedSince = false;
            try
            {
                foreach (string line in File.ReadLines(files[f]))
                {
                    if (LogRecord.Parse(System.Text.Encoding.UTF8.GetBytes(line)) is not LogRecord r) continue;
                    if (r.RealtimeUs <= sinceUs) reachedSince = true;
                    if (Wanted(r)) chunk.Add(r);
                }
            }
            catch (FileNotFoundException)
            {
                continue; // rotated away while we read
            }
            result.InsertRange(0, chunk);
            if (reachedSince) break;
        }
        return result.Count > max ? result[^max..] : result;
    }

    /// <summary>
    /// Shutdown: waits (at most <paramref name="timeout"/>) until everything queued so far is
    /// on disk, then the journal closes its file (state can be unmounted) and writes no more.
    /// </summary>
    public static bool Close(TimeSpan timeout)
    {
        if (!Opened.IsSet) return false;
        _closing = true;
        TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (Gate) _flushed = done;
        Queue.Add(default); // a marker: the writer syncs and completes the flush when it gets here
        return done.Task.Wait(timeout);
    }

    private static void WriteLoop()
    {
        Opened.Wait();
        JournalFiles? files = null;
        long lastSync = Environment.TickCount64;
        var batch = new List<LogRecord>();
        while (true)
        {
            try
            {
                files ??= new JournalFiles(_directory!, MaxFileBytes, MaxTotalBytes);
                batch.Add(Queue.Take());
                while (batch.Count < 1024 && Queue.TryTake(out LogRecord more)) batch.Add(more);
                bool flush = batch.RemoveAll(r => r.Unit is null) > 0; // Flush markers
                long dropped = Interlocked.Exchange(ref _dropped, 0);
                if (dropped > 0) batch.Add(LogRecord.Now("journal", LogRecord.Warning, 0, $"{dropped} log records dropped: the queue was full"));
                files.Write(batch);
                Remember(batch);
                batch.Clear();
                if (flush || Environment.TickCount64 - lastSync > 5000)
                {
                    files.Sync();
                    lastSync = Environment.TickCount64;
                }
                if (flush && _closing)
                {
                    files.Dispose();
                    lock (Gate) _flushed?.TrySetResult();
                    Thread.Sleep(Timeout.Infinite); // closed for good: the machine is going down
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A full or read-only state must not stop the init: say it on the console,
                // wait, and try again with a fresh file. The batch is lost (counted).
                Log.ConsoleOnly($"journal: cannot write to {_directory}: {e.Message}");
                Interlocked.Add(ref _dropped, batch.Count);
                batch.Clear();
                files?.Dispose();
                files = null;
                Thread.Sleep(5000);
            }
        }
    }
}

/// <summary>
/// The journal's files in one directory: records appended to current.jsonl; at
/// <c>maxFileBytes</c> it becomes NNNNNNNN.jsonl (the next number) and the oldest files go
/// until the directory holds at most <c>maxTotalBytes</c>.
/// </summary>
internal sealed class JournalFiles(string directory, long maxFileBytes, long maxTotalBytes) : IDisposable
{
    private FileStream? _file;
    private readonly MemoryStream _buffer = new();

    public void Write(IEnumerable<LogRecord> records)
    {
        _file ??= new FileStream(System.IO.Path.Combine(directory, Journal.CurrentFile), FileMode.Append, FileAccess.Write,
            FileShare.ReadWrite | FileShare.Delete, bufferSize: 0); // batched here; readers see each batch at once
        foreach (LogRecord record in records)
        {
            using (var w = new Utf8JsonWriter(_buffer, new JsonWriterOptions { SkipValidation = true }))
            {
                record.WriteJson(w);
            }
            _buffer.WriteByte((byte)'\n');
            if (_buffer.Length >= 64 << 10) Drain();
        }
        Drain();
    }

    private void Drain()
    {
        _file!.Write(_buffer.GetBuffer(), 0, (int)_buffer.Length);
        _buffer.SetLength(0);
        if (_file.Length >= maxFileBytes)
        {
            _file.Flush(flushToDisk: true);
            _file.Dispose();
            _file = null;
            Rotate();
            _file = new FileStream(System.IO.Path.Combine(directory, Journal.CurrentFile), FileMode.Append, FileAccess.Write,
                FileShare.ReadWrite | FileShare.Delete, bufferSize: 0); // batched here; readers see each batch at once
        }
    }

    public void Sync() => _file?.Flush(flushToDisk: true);

    private void Rotate()
    {
        List<string> old = Journal.Rotated(directory);
        long next = old.Count == 0 ? 1 : long.Parse(System.IO.Path.GetFileNameWithoutExtension(old[^1]), CultureInfo.InvariantCulture) + 1;
        File.Move(System.IO.Path.Combine(directory, Journal.CurrentFile), System.IO.Path.Combine(directory, next.ToString("D8", CultureInfo.InvariantCulture) + ".jsonl"));
        old = Journal.Rotated(directory);
        long total = old.Sum(f => new FileInfo(f).Length);
        // Room for the next current file too.
        for (int i = 0; i < old.Count && total > maxTotalBytes - maxFileBytes; i++)
        {
            total -= new FileInfo(old[i]).Length;
            File.Delete(old[i]);
        }
    }

    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
    }
}

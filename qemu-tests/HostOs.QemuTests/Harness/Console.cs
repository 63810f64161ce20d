using System.Text;
using System.Text.RegularExpressions;

namespace HostOs.QemuTests.Harness;

/// <summary>
/// The guest's serial console (ttyS0) as QEMU writes it to its stdout: kept in memory and
/// teed to a log file, with waits for a pattern after a mark.
/// </summary>
internal sealed class GuestConsole(string logPath)
{
    private readonly StringBuilder _text = new();
    private readonly Lock _gate = new();
    private readonly StreamWriter _log = new(logPath, append: true) { AutoFlush = true };
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string LogPath => logPath;

    public void Append(string chunk)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _text.Append(chunk);
            _log.Write(chunk);
            changed = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    public void Note(string line) => Append($"\n### harness: {line}\n");

    public int Mark()
    {
        lock (_gate) return _text.Length;
    }

    public string Since(int mark)
    {
        lock (_gate) return _text.ToString(mark, _text.Length - mark);
    }

    public string Tail(int lines = 40)
    {
        string[] all = Since(0).Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>Waits for <paramref name="pattern"/> in the output after <paramref name="mark"/>.</summary>
    public async Task<Match> WaitForAsync(string pattern, TimeSpan timeout, int mark = 0, Func<bool>? stillRunning = null)
    {
        var regex = new Regex(pattern, RegexOptions.Multiline);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                Match m = regex.Match(_text.ToString(mark, _text.Length - mark));
                if (m.Success) return m;
                changed = _changed.Task;
            }
            TimeSpan left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"no /{pattern}/ on the console within {timeout.TotalSeconds:F0} s; log {logPath}; last lines:\n{Tail()}");
            }
            if (stillRunning is not null && !stillRunning())
            {
                throw new InvalidOperationException($"QEMU exited while waiting for /{pattern}/; log {logPath}; last lines:\n{Tail()}");
            }
            await Task.WhenAny(changed, Task.Delay(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1)));
        }
    }

    public int Count(string pattern, int mark = 0) => Regex.Matches(Since(mark), pattern, RegexOptions.Multiline).Count;
}

using System.Text;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Services;

/// <summary>
/// Copies a child's stdout/stderr pipe into the journal, a line at a time, on a thread of
/// its own so a chatty child never blocks anything else. When the journal's queue is full
/// the pump waits, so the child's pipe fills and the child itself is slowed: nothing is
/// lost and nobody else waits. The console shows a budgeted share (<see cref="ConsoleBudget"/>).
/// Over-long lines are split. The thread ends when every writer has closed the pipe.
/// </summary>
internal static class OutputPump
{
    private const int MaxLine = 4096;

    /// <summary>Pumps on a thread of its own; the task completes at end of file. <paramref name="observe"/> sees each line too.</summary>
    public static Task Start(string name, SafeFileHandle readEnd, Action<string>? observe = null)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Pump(name, readEnd, observe);
            }
            finally
            {
                done.SetResult();
            }
        }) { IsBackground = true, Name = $"out-{name}" };
        thread.Start();
        return done.Task;
    }

    private static void Pump(string name, SafeFileHandle readEnd, Action<string>? observe)
    {
        using var stream = new FileStream(readEnd, FileAccess.Read, 1);
        byte[] buffer = new byte[8192];
        var line = new List<byte>(256);
        var console = new ConsoleBudget();
        try
        {
            int n;
            while ((n = stream.Read(buffer)) > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    byte b = buffer[i];
                    if (b == (byte)'\n' || line.Count >= MaxLine)
                    {
                        Emit(name, line, console, observe);
                        if (b == (byte)'\n') continue;
                    }
                    line.Add(b);
                }
            }
        }
        catch (IOException)
        {
        }
        if (line.Count > 0) Emit(name, line, console, observe);
    }

    private static void Emit(string name, List<byte> line, ConsoleBudget console, Action<string>? observe)
    {
        string text = Encoding.UTF8.GetString(line.ToArray()).TrimEnd('\r');
        line.Clear();
        // "<3>text": the syslog priority prefix that sd-daemon(3) describes for stdout
        // (systemd's SyslogLevelPrefix; .NET's systemd console formatter writes it).
        int priority = Logging.LogRecord.Info;
        if (text.Length >= 3 && text[0] == '<' && text[1] is >= '0' and <= '7' && text[2] == '>')
        {
            priority = text[1] - '0';
            text = text[3..];
        }
        Logging.Journal.Put(Logging.LogRecord.Now(name, priority, 0, text));
        observe?.Invoke(text);
        console.Show(name, text);
    }
}

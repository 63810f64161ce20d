using System.Text;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Services;

/// <summary>
/// Copies a child's stdout/stderr pipe into the init's log, a line at a time, on a
/// thread of its own so a chatty child never blocks anything else. Over-long lines are
/// split. The thread ends when every writer has closed the pipe.
/// </summary>
internal static class OutputPump
{
    private const int MaxLine = 4096;

    public static void Start(string name, SafeFileHandle readEnd)
    {
        var thread = new Thread(() => Pump(name, readEnd)) { IsBackground = true, Name = $"out-{name}" };
        thread.Start();
    }

    private static void Pump(string name, SafeFileHandle readEnd)
    {
        using var stream = new FileStream(readEnd, FileAccess.Read, 1);
        byte[] buffer = new byte[8192];
        var line = new List<byte>(256);
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
                        Emit(name, line);
                        if (b == (byte)'\n') continue;
                    }
                    line.Add(b);
                }
            }
        }
        catch (IOException)
        {
        }
        if (line.Count > 0) Emit(name, line);
    }

    private static void Emit(string name, List<byte> line)
    {
        Log.Info($"[{name}] {Encoding.UTF8.GetString(line.ToArray()).TrimEnd('\r')}");
        line.Clear();
    }
}

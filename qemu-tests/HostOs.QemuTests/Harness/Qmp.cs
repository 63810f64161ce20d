using System.Net.Sockets;
using System.Text;

namespace HostOs.QemuTests.Harness;

/// <summary>A minimal QMP client: greeting, qmp_capabilities, then one command at a time.</summary>
internal static class Qmp
{
    public static async Task ExecuteAsync(string socketPath, string command)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        await using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        await ReadUntilAsync(reader, "\"QMP\"");
        await writer.WriteLineAsync("{\"execute\":\"qmp_capabilities\"}");
        await ReadUntilAsync(reader, "\"return\"");
        await writer.WriteLineAsync($"{{\"execute\":\"{command}\"}}");
        await ReadUntilAsync(reader, "\"return\"");
    }

    private static async Task ReadUntilAsync(StreamReader reader, string token)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            string line = await reader.ReadLineAsync(cts.Token) ?? throw new IOException("QMP connection closed");
            if (line.Contains("\"error\"", StringComparison.Ordinal)) throw new IOException($"QMP error: {line}");
            if (line.Contains(token, StringComparison.Ordinal)) return;
        }
    }
}

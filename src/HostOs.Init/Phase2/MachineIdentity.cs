using HostOs.Platform.Interop;

namespace HostOs.Init.Phase2;

/// <summary>
/// /etc/machine-id (machine-id(5): 32 lowercase hex digits and a newline), made once on
/// first boot and kept on state through the /etc overlay; and the hostname, from
/// /etc/hostname or "hostos-" and the first 8 digits of the machine id.
/// </summary>
internal static class MachineIdentity
{
    public static string EnsureMachineId(string path = "/etc/machine-id")
    {
        if (File.Exists(path))
        {
            string existing = File.ReadAllText(path).Trim();
            if (IsValid(existing)) return existing;
            Log.Warn($"{path} holds '{existing}', not a machine id: making a new one");
        }
        Span<byte> random = stackalloc byte[16];
        Sys.GetRandom(random);
        string id = Convert.ToHexStringLower(random);
        string tmp = path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            f.Write(System.Text.Encoding.ASCII.GetBytes(id + "\n"));
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        Sys.FsyncDirectory(Path.GetDirectoryName(path)!);
        Log.Info($"machine id {id} created");
        return id;
    }

    public static bool IsValid(string id) =>
        id.Length == 32 && id.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f') && id.Any(c => c != '0');

    public static string Hostname(string machineId, string path = "/etc/hostname")
    {
        string? configured = File.Exists(path) ? File.ReadLines(path).FirstOrDefault()?.Trim() : null;
        if (!string.IsNullOrEmpty(configured))
        {
            if (IsValidHostname(configured)) return configured;
            Log.Warn($"{path}: '{configured}' is not a valid host name (RFC 1123 labels, at most 64 characters): ignored");
        }
        return "hostos-" + machineId[..8];
    }

    public static bool IsValidHostname(string name) =>
        name.Length is > 0 and <= 64 &&
        name.Split('.').All(l => l.Length is > 0 and <= 63 && l[0] != '-' && l[^1] != '-' &&
                                 l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'));
}

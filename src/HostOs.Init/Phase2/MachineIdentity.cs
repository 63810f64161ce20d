using HostOs.Platform.Interop;

namespace HostOs.Init.Phase2;

/// <summary>
/// /etc/machine-id (machine-id(5): 32 lowercase hex digits and a newline), made once on
/// first boot and kept on state through the /etc overlay; and the hostname, from
/// /etc/hostname or "hostos-" and the first 8 digits of the machine id.
/// On a VM with a valid SMBIOS product UUID (every cloud sets one) the machine id is that
/// UUID, as systemd-machine-id-setup does in VMs; otherwise 128 bits from getrandom(2),
/// which early in a first boot without a hardware RNG waits for the kernel's CRNG.
/// </summary>
internal static class MachineIdentity
{
    public static string EnsureMachineId(string path = "/etc/machine-id", string productUuid = "/sys/class/dmi/id/product_uuid")
    {
        if (File.Exists(path))
        {
            string existing = File.ReadAllText(path).Trim();
            if (IsValid(existing)) return existing;
            Log.Warn($"{path} holds '{existing}', not a machine id: making a new one");
        }
        string? fromVm = FromProductUuid(File.Exists(productUuid) ? File.ReadAllText(productUuid) : null);
        string id;
        if (fromVm is not null)
        {
            id = fromVm;
        }
        else
        {
            Span<byte> random = stackalloc byte[16];
            Sys.GetRandom(random);
            id = Convert.ToHexStringLower(random);
        }
        HostOs.Platform.AtomicFile.Write(path, System.Text.Encoding.ASCII.GetBytes(id + "\n"), durable: true);
        Log.Info($"machine id {id} created ({(fromVm is null ? "random" : "from the VM's SMBIOS UUID")})");
        return id;
    }

    /// <summary>The SMBIOS UUID as a machine id, unless it is a placeholder (all 0 or all f).</summary>
    public static string? FromProductUuid(string? text)
    {
        if (text is null || !Guid.TryParse(text.Trim(), out _)) return null;
        string id = text.Trim().Replace("-", "").ToLowerInvariant();
        return IsValid(id) && id.Any(c => c != 'f') ? id : null;
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

    public static bool IsValidHostname(string name) => HostOs.Platform.Config.FirstBootConfig.IsHostname(name);
}

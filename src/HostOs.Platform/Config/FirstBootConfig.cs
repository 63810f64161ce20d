using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Platform.Config;

/// <summary>
/// The operator's first-boot configuration (docs/first-boot.md), from a config drive
/// labelled "cidata" (cloud-init's NoCloud: files user-data and meta-data) or QEMU's
/// fw_cfg (opt/org.hostos/user-data). user-data is JSON, parsed strictly: every problem is
/// named with its field; '#cloud-config' YAML is refused by name.
/// </summary>
public sealed class FirstBootConfig
{
    public string? Hostname { get; init; }
    /// <summary>Extra boot health checks, kept in /etc/hostos/health.d.</summary>
    public List<HealthCheck> HealthChecks { get; set; } = [];
    /// <summary>Credentials for image registries (for app containers).</summary>
    public List<RegistryCredential> Registries { get; set; } = [];
    /// <summary>Where updates come from and which keys sign them (for the updater).</summary>
    public UpdateSettings? Update { get; init; }
    /// <summary>App containers to install (each replaces an app of its name).</summary>
    public List<AppContainer> Apps { get; set; } = [];

    public static FirstBootConfig Parse(string text, string source)
    {
        string trimmed = text.TrimStart();
        if (trimmed.StartsWith("#cloud-config", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: '#cloud-config' YAML is not understood: HostOS reads JSON user-data (docs/first-boot.md)");
        }
        FirstBootConfig config = StrictJson.Parse(text, ConfigJson.Default.FirstBootConfig, source);
        var errors = new List<string>();
        if (config.Hostname is string h && !IsHostname(h)) errors.Add($"hostname '{h}' is not a host name (RFC 1123 labels, at most 64 characters)");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (HealthCheck c in config.HealthChecks)
        {
            try { c.Validate(source); } catch (InvalidDataException e) { errors.Add(e.Message[(source.Length + 2)..]); }
            if (!c.Name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_')) errors.Add($"healthChecks: name '{c.Name}' must be letters, digits, '-' or '_'");
            if (!names.Add(c.Name)) errors.Add($"healthChecks: '{c.Name}' is listed twice");
        }
        foreach (RegistryCredential r in config.Registries)
        {
            if (r.Host.Length == 0 || r.Host.Contains('/') || r.Host.Contains(' ')) errors.Add($"registries: host '{r.Host}' is not a host[:port]");
            if ((r.Username is null) != (r.Password is null) || r.Username is "" || r.Password is "") errors.Add($"registries: '{r.Host}' needs both a username and a password, or neither");
        }
        var apps = new HashSet<string>(StringComparer.Ordinal);
        foreach (AppContainer a in config.Apps)
        {
            var appErrors = new List<string>();
            a.Validate("apps", appErrors);
            errors.AddRange(appErrors);
            if (!apps.Add(a.Name)) errors.Add($"apps: '{a.Name}' is listed twice");
        }
        config.Update?.Validate("update.", errors);
        if (errors.Count > 0) throw new InvalidDataException($"{source}: " + string.Join("; ", errors));
        return config;
    }

    /// <summary>NoCloud meta-data: "key: value" lines (the YAML subset cloud providers write) or a JSON object; instance-id and local-hostname are used.</summary>
    public static Dictionary<string, string> ParseMetaData(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        string t = text.Trim();
        if (t.StartsWith('{'))
        {
            using JsonDocument d = JsonDocument.Parse(t);
            foreach (JsonProperty p in d.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.String) result[p.Name] = p.Value.GetString()!;
            }
            return result;
        }
        foreach (string raw in t.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int colon = line.IndexOf(':');
            if (colon <= 0) continue;
            result[line[..colon].Trim()] = line[(colon + 1)..].Trim().Trim('"', '\'');
        }
        return result;
    }

    public static bool IsHostname(string name) =>
        name.Length is > 0 and <= 64 &&
        name.Split('.').All(l => l.Length is > 0 and <= 63 && l[0] != '-' && l[^1] != '-' && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'));

    public static string ToJson(List<RegistryCredential> r) => JsonSerializer.Serialize(r, ConfigJson.Default.ListRegistryCredential);
    public static string ToJson(UpdateSettings u) => JsonSerializer.Serialize(u, ConfigJson.Default.UpdateSettings);
    public static string ToJson(HealthCheck c) => JsonSerializer.Serialize(c, ConfigJson.Default.HealthCheck);
}

/// <summary>How to reach a registry: credentials (basic auth, or for a token service) and whether it speaks plain HTTP.</summary>
public sealed class RegistryCredential
{
    public required string Host { get; init; }
    public string? Username { get; init; }
    public string? Password { get; init; }
    /// <summary>Plain HTTP instead of HTTPS (a registry on a private network, as Docker's insecure-registries).</summary>
    public bool Insecure { get; init; }

    public static List<RegistryCredential> ParseList(string json, string source) =>
        StrictJson.Parse(json, ConfigJson.Default.ListRegistryCredential, source);
}

/// <summary>Where this machine's updates come from: /etc/hostos/update.json (first-boot "update", or the operator).</summary>
public sealed class UpdateSettings
{
    public const string Path = "/etc/hostos/update.json";

    public static UpdateSettings Parse(string json, string source)
    {
        UpdateSettings settings = StrictJson.Parse(json, ConfigJson.Default.UpdateSettings, source);
        var errors = new List<string>();
        settings.Validate("", errors);
        return errors.Count == 0 ? settings : throw new InvalidDataException($"{source}: " + string.Join("; ", errors));
    }

    public required string Server { get; init; }
    public string Channel { get; set; } = "stable";
    /// <summary>Extra public keys (base64 Ed25519) trusted beside the root's own.</summary>
    public List<string> Keys { get; set; } = [];
    /// <summary>How often the updater daemon looks for a release and installs it; 0: only when asked.</summary>
    public int CheckIntervalMinutes { get; set; } = 60;
    /// <summary>After an install: "manual" (an operator reboots) or "automatic" (the daemon does, inside the window if one is set).</summary>
    public string Reboot { get; set; } = "manual";
    /// <summary>"HH:MM-HH:MM" in UTC (may wrap past midnight): automatic reboots happen only inside it.</summary>
    public string? MaintenanceWindow { get; set; }

    public void Validate(string prefix, List<string> errors)
    {
        // A file:// URL (or an absolute path): a repository on local media, for machines without a mirror to reach.
        if (!Uri.TryCreate(Server, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("http" or "https" or "file"))
        {
            errors.Add($"{prefix}server '{Server}' is not an http(s) URL or a file:// directory");
        }
        else if (uri.IsFile && uri.Host is not ("" or "localhost"))
        {
            errors.Add($"{prefix}server '{Server}': a file:// directory is on this machine (no host; mount a share and name its directory)");
        }
        if (Channel.Length == 0 || !Channel.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.')) errors.Add($"{prefix}channel '{Channel}' must be letters, digits, '-', '_' or '.'");
        foreach (string k in Keys)
        {
            byte[]? key = null;
            try { key = Convert.FromBase64String(k); } catch (FormatException) { }
            if (key is not { Length: 32 }) errors.Add($"{prefix}keys: '{k}' is not a base64 Ed25519 public key (32 bytes)");
        }
        if (CheckIntervalMinutes is < 0 or > 10080) errors.Add($"{prefix}checkIntervalMinutes must be 0 (never by itself) .. 10080 (a week)");
        if (Reboot is not ("manual" or "automatic")) errors.Add($"{prefix}reboot '{Reboot}' must be 'manual' or 'automatic'");
        if (MaintenanceWindow is not null && Window() is null) errors.Add($"{prefix}maintenanceWindow '{MaintenanceWindow}' is not HH:MM-HH:MM (UTC)");
    }

    /// <summary>The maintenance window as two times of day (UTC), or null when absent or malformed.</summary>
    public (TimeOnly Start, TimeOnly End)? Window()
    {
        string[] parts = (MaintenanceWindow ?? "").Split('-');
        return parts.Length == 2
               && TimeOnly.TryParseExact(parts[0].Trim(), "HH:mm", System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out TimeOnly a)
               && TimeOnly.TryParseExact(parts[1].Trim(), "HH:mm", System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out TimeOnly b)
               && a != b
            ? (a, b)
            : null;
    }

    /// <summary>Whether an automatic reboot may happen at <paramref name="now"/> (always, without a window).</summary>
    public bool InWindow(DateTimeOffset now)
    {
        if (Window() is not var (start, end)) return true;
        var t = TimeOnly.FromDateTime(now.UtcDateTime);
        return start < end ? t >= start && t < end : t >= start || t < end;
    }
}

using System.Globalization;
using System.Text.Json.Serialization;

namespace HostOs.Containers.Runtime;

/// <summary>The OCI runtime states (runtime-spec "State"), as runc names them.</summary>
public enum ContainerStatus { Creating, Created, Running, Stopped }

/// <summary>
/// The state of a container as the OCI runtime spec defines it, printed by <c>state</c> and
/// <c>list --format json</c> with runc's field names and order (runc adds rootfs, created
/// and owner to the spec's fields).
/// </summary>
public sealed class OciState
{
    [JsonPropertyName("ociVersion")] public string OciVersion { get; set; } = "1.0.2";
    [JsonPropertyName("id")] public string Id { get; set; } = "";
    [JsonPropertyName("pid")] public int Pid { get; set; }
    [JsonPropertyName("status")] public string Status { get; set; } = "";
    [JsonPropertyName("bundle")] public string Bundle { get; set; } = "";
    [JsonPropertyName("rootfs")] public string Rootfs { get; set; } = "";
    [JsonPropertyName("created")] public string Created { get; set; } = "";
    [JsonPropertyName("annotations")] public Dictionary<string, string>? Annotations { get; set; }
    [JsonPropertyName("owner")] public string Owner { get; set; } = "";
}

/// <summary>
/// What the runtime keeps about a container in ROOT/ID/state.json between commands: the
/// OCI fields, plus what later commands need and must not re-read from a bundle that may
/// have changed since (the process section, for exec) or guess (the cgroup; the init's
/// start time, so a recycled pid is never mistaken for the container).
/// </summary>
public sealed class SavedContainer
{
    public string Id { get; set; } = "";
    public int Pid { get; set; }
    /// <summary>Field 22 of /proc/PID/stat when the container was created.</summary>
    public ulong PidStartTime { get; set; }
    public string Bundle { get; set; } = "";
    public string Rootfs { get; set; } = "";
    public string Created { get; set; } = "";
    public Dictionary<string, string>? Annotations { get; set; }
    public string CgroupRoot { get; set; } = "";
    public string CgroupPath { get; set; } = "";
    public Spec.Process? Process { get; set; }
    /// <summary>The container's seccomp profile: exec'd processes get the same filter.</summary>
    public Spec.Seccomp? Seccomp { get; set; }
    /// <summary>Hooks run by later commands: poststart by start, poststop by delete.</summary>
    public List<Spec.Hook>? Poststart { get; set; }
    public List<Spec.Hook>? Poststop { get; set; }

    public static string Now() => DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(OciState))]
[JsonSerializable(typeof(List<OciState>))]
[JsonSerializable(typeof(SavedContainer))]
internal sealed partial class StateJson : JsonSerializerContext;

/// <summary>list --format json: one line, as runc prints it.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(List<OciState>))]
internal sealed partial class CompactStateJson : JsonSerializerContext;

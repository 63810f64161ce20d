using System.Globalization;
using System.Text;
using System.Text.Json;
using HostOs.Containers.Spec;

namespace HostOs.Containers.Runtime;

/// <summary>The OCI runtime states (runtime-spec "State"), as runc names them.</summary>
public enum ContainerStatus { Created, Running, Paused, Stopped }

/// <summary>
/// The state of a container as the OCI runtime spec defines it, printed by <c>state</c> and
/// <c>list --format json</c> with runc's field names and order (runc adds rootfs, created
/// and owner to the spec's fields). Written with Utf8JsonWriter: the serializer's first use
/// costs more than a container start can spare (docs/containers.md, "Start latency").
/// </summary>
public sealed class OciState
{
    public string OciVersion { get; set; } = "1.0.2";
    public string Id { get; set; } = "";
    public int Pid { get; set; }
    public string Status { get; set; } = "";
    public string Bundle { get; set; } = "";
    public string Rootfs { get; set; } = "";
    public string Created { get; set; } = "";
    public Dictionary<string, string>? Annotations { get; set; }
    public string Owner { get; set; } = "";

    public void WriteTo(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("ociVersion", OciVersion);
        w.WriteString("id", Id);
        w.WriteNumber("pid", Pid);
        w.WriteString("status", Status);
        w.WriteString("bundle", Bundle);
        w.WriteString("rootfs", Rootfs);
        w.WriteString("created", Created);
        WriteAnnotations(w, Annotations);
        w.WriteString("owner", Owner);
        w.WriteEndObject();
    }

    internal static void WriteAnnotations(Utf8JsonWriter w, Dictionary<string, string>? annotations)
    {
        if (annotations is not { Count: > 0 }) return;
        w.WriteStartObject("annotations");
        foreach (var (k, v) in annotations) w.WriteString(k, v);
        w.WriteEndObject();
    }

    public static string ToJson(IEnumerable<OciState> states, bool indented)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented }))
        {
            w.WriteStartArray();
            foreach (OciState s in states) s.WriteTo(w);
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    public string ToJson(bool indented)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented })) WriteTo(w);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}

/// <summary>
/// What the runtime keeps about a container between commands: ROOT/ID/state.json (the OCI
/// fields; the init's start time, so a recycled pid is never taken for the container; the
/// cgroup) and ROOT/ID/config.json, a copy of the bundle's as it was at create (exec, start
/// and delete need its process, seccomp and hooks, and the bundle may have changed since).
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
    /// <summary>The spec as it was at create (from the copied config.json), read when a command needs it.</summary>
    public RuntimeSpec? Spec { get; set; }

    public static string Now() => Rfc3339(DateTime.UtcNow);

    /// <summary>
    /// yyyy-MM-ddTHH:mm:ss.fffffffZ of a UTC time, by hand: a custom DateTime format string
    /// first builds the invariant culture's calendar and format data, which a short-lived
    /// process pays for in full (docs/containers.md "Start latency").
    /// </summary>
    internal static string Rfc3339(DateTime utc) => string.Create(28, utc, static (span, t) =>
    {
        static void Digits(Span<char> into, long value)
        {
            for (int i = into.Length - 1; i >= 0; i--, value /= 10) into[i] = (char)('0' + (int)(value % 10));
        }
        Digits(span[..4], t.Year);
        span[4] = '-';
        Digits(span[5..7], t.Month);
        span[7] = '-';
        Digits(span[8..10], t.Day);
        span[10] = 'T';
        Digits(span[11..13], t.Hour);
        span[13] = ':';
        Digits(span[14..16], t.Minute);
        span[16] = ':';
        Digits(span[17..19], t.Second);
        span[19] = '.';
        Digits(span[20..27], t.Ticks % TimeSpan.TicksPerSecond);
        span[27] = 'Z';
    });

    public byte[] ToJson()
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("id", Id);
            w.WriteNumber("pid", Pid);
            w.WriteNumber("pidStartTime", PidStartTime);
            w.WriteString("bundle", Bundle);
            w.WriteString("rootfs", Rootfs);
            w.WriteString("created", Created);
            w.WriteString("cgroupRoot", CgroupRoot);
            w.WriteString("cgroupPath", CgroupPath);
            OciState.WriteAnnotations(w, Annotations);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>state.json back; a missing or mistyped field is an error (the file is ours).</summary>
    public static SavedContainer FromJson(byte[] json)
    {
        using var doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        string S(string name) => root.GetProperty(name).GetString() ?? throw new JsonException($"{name} is null");
        var saved = new SavedContainer
        {
            Id = S("id"),
            Pid = root.GetProperty("pid").GetInt32(),
            PidStartTime = root.GetProperty("pidStartTime").GetUInt64(),
            Bundle = S("bundle"),
            Rootfs = S("rootfs"),
            Created = S("created"),
            CgroupRoot = S("cgroupRoot"),
            CgroupPath = S("cgroupPath"),
        };
        if (root.TryGetProperty("annotations", out JsonElement a))
        {
            saved.Annotations = a.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        return saved;
    }
}

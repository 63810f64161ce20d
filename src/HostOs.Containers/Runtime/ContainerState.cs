using System.Text.Json;
using HostOs.Platform;
using HostOs.Containers.Spec;

namespace HostOs.Containers.Runtime;

/// <summary>The OCI runtime states (runtime-spec "State"), as runc names them.</summary>
public enum ContainerStatus { Created, Running, Paused, Stopped }

/// <summary>
/// The state of a container as the OCI runtime spec defines it, printed by <c>state</c> and
/// <c>list --format json</c> with runc's field names and order (runc adds rootfs, created
/// and owner to the spec's fields). Written with <see cref="JsonOutput"/>: the serializer's
/// and Utf8JsonWriter's first uses cost more than a container start can spare
/// (docs/containers.md, "Start latency").
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

    public void WriteTo(JsonOutput w)
    {
        w.StartObject();
        w.String("ociVersion", OciVersion);
        w.String("id", Id);
        w.Number("pid", Pid);
        w.String("status", Status);
        w.String("bundle", Bundle);
        w.String("rootfs", Rootfs);
        w.String("created", Created);
        WriteAnnotations(w, Annotations);
        w.String("owner", Owner);
        w.EndObject();
    }

    internal static void WriteAnnotations(JsonOutput w, Dictionary<string, string>? annotations)
    {
        if (annotations is not { Count: > 0 }) return;
        w.StartObject("annotations");
        foreach (var (k, v) in annotations) w.String(k, v);
        w.EndObject();
    }

    public static string ToJson(IEnumerable<OciState> states, bool indented)
    {
        var w = new JsonOutput(indented);
        w.StartArray();
        foreach (OciState s in states) s.WriteTo(w);
        w.EndArray();
        return w.ToString();
    }

    public string ToJson(bool indented)
    {
        var w = new JsonOutput(indented);
        WriteTo(w);
        return w.ToString();
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
        var w = new JsonOutput(indented: false);
        w.StartObject();
        w.String("id", Id);
        w.Number("pid", Pid);
        w.Number("pidStartTime", PidStartTime);
        w.String("bundle", Bundle);
        w.String("rootfs", Rootfs);
        w.String("created", Created);
        w.String("cgroupRoot", CgroupRoot);
        w.String("cgroupPath", CgroupPath);
        OciState.WriteAnnotations(w, Annotations);
        w.EndObject();
        return w.ToUtf8();
    }

    /// <summary>
    /// state.json back; a missing or mistyped field is an error (the file is ours), an unknown
    /// one is skipped. Read with Utf8JsonReader, which the spec's reader has already run, not
    /// JsonDocument, which would be one more body of code to run in every start, exec or delete.
    /// </summary>
    public static SavedContainer FromJson(byte[] json)
    {
        var r = new Utf8JsonReader(json);
        if (!r.Read() || r.TokenType != JsonTokenType.StartObject) throw new JsonException("the state is not a JSON object");
        var saved = new SavedContainer();
        string[] required = ["id", "pid", "pidStartTime", "bundle", "rootfs", "created", "cgroupRoot", "cgroupPath"];
        int found = 0;
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            r.Read();
            switch (name)
            {
                case "id": saved.Id = Text(ref r, name); break;
                case "pid": saved.Pid = r.GetInt32(); break;
                case "pidStartTime": saved.PidStartTime = r.GetUInt64(); break;
                case "bundle": saved.Bundle = Text(ref r, name); break;
                case "rootfs": saved.Rootfs = Text(ref r, name); break;
                case "created": saved.Created = Text(ref r, name); break;
                case "cgroupRoot": saved.CgroupRoot = Text(ref r, name); break;
                case "cgroupPath": saved.CgroupPath = Text(ref r, name); break;
                case "annotations": saved.Annotations = ReadAnnotations(ref r); break;
                default: r.Skip(); break;
            }
            int index = Array.IndexOf(required, name);
            if (index >= 0) found |= 1 << index;
        }
        if (r.TokenType != JsonTokenType.EndObject) throw new JsonException("the state ends inside its object");
        r.Read(); // the reader refuses anything after the object
        for (int i = 0; i < required.Length; i++)
        {
            if ((found & (1 << i)) == 0) throw new JsonException($"{required[i]} is missing");
        }
        return saved;
    }

    private static string Text(ref Utf8JsonReader r, string name) =>
        r.TokenType == JsonTokenType.String ? r.GetString()! : throw new JsonException($"{name} is not a string");

    private static Dictionary<string, string> ReadAnnotations(ref Utf8JsonReader r)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw new JsonException("annotations is not an object");
        var annotations = new Dictionary<string, string>();
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string key = r.GetString()!;
            r.Read();
            annotations[key] = Text(ref r, "annotations." + key);
        }
        return annotations;
    }
}

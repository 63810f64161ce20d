using System.Text.Json;

namespace HostOs.Containers.Spec;

/// <summary>
/// config.json read with Utf8JsonReader and a switch of fields per object, instead of
/// System.Text.Json's serializer: the serializer builds its metadata for ~35 types on first
/// use, ~70 ms of every `create` under TCG (docs/containers.md, "Start latency"); this costs
/// a few. Same rules as the serializer it replaces: unknown fields and wrong types are
/// errors naming their JSON path; null leaves a field unset; the last duplicate wins.
/// A unit test parses every fixture both ways and compares the results.
/// </summary>
internal static class SpecReader
{
    /// <summary>
    /// An object's fields: reads the value of field NAME (the reader is on it) into TARGET, or
    /// returns false for a name the spec does not have. A switch per object, not a table:
    /// a table is built in full by the first parse of every process, while a switch runs
    /// only the cases the document has (docs/containers.md "Counting instead of timing").
    /// </summary>
    private delegate bool Fields<in T>(ref Utf8JsonReader r, T target, string name, string path);

    public static RuntimeSpec Read(ReadOnlySpan<byte> utf8)
    {
        var r = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
        Next(ref r, "$");
        RuntimeSpec spec = Object<RuntimeSpec>(ref r, "$", SpecFields) ?? throw new JsonException("$: the document is null");
        r.Read(); // the reader itself refuses anything after the document
        return spec;
    }

    // ----- primitives

    private static void Next(ref Utf8JsonReader r, string path)
    {
        if (!r.Read()) throw new JsonException($"{path}: the document ends here");
    }

    private static JsonException Wrong(ref Utf8JsonReader r, string path, string expected) =>
        new($"{path}: expected {expected}, found {Describe(r.TokenType)}");

    private static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => t.ToString(),
    };

    private static string? Str(ref Utf8JsonReader r, string path) => r.TokenType switch
    {
        JsonTokenType.Null => null,
        JsonTokenType.String => r.GetString(),
        _ => throw Wrong(ref r, path, "a string"),
    };

    private static bool Bool(ref Utf8JsonReader r, string path) => r.TokenType switch
    {
        JsonTokenType.True => true,
        JsonTokenType.False => false,
        _ => throw Wrong(ref r, path, "true or false"),
    };

    private static bool? NBool(ref Utf8JsonReader r, string path) => r.TokenType == JsonTokenType.Null ? null : Bool(ref r, path);

    private static long Long(ref Utf8JsonReader r, string path) =>
        r.TokenType == JsonTokenType.Number && r.TryGetInt64(out long v) ? v : throw Wrong(ref r, path, "an integer");

    private static ulong ULong(ref Utf8JsonReader r, string path) =>
        r.TokenType == JsonTokenType.Number && r.TryGetUInt64(out ulong v) ? v : throw Wrong(ref r, path, "a non-negative integer");

    private static uint UInt(ref Utf8JsonReader r, string path) =>
        r.TokenType == JsonTokenType.Number && r.TryGetUInt32(out uint v) ? v : throw Wrong(ref r, path, "a 32-bit non-negative integer");

    private static int Int(ref Utf8JsonReader r, string path) =>
        r.TokenType == JsonTokenType.Number && r.TryGetInt32(out int v) ? v : throw Wrong(ref r, path, "a 32-bit integer");

    private static ushort UShort(ref Utf8JsonReader r, string path) =>
        r.TokenType == JsonTokenType.Number && r.TryGetUInt16(out ushort v) ? v : throw Wrong(ref r, path, "a 16-bit non-negative integer");

    private static long? NLong(ref Utf8JsonReader r, string p) => r.TokenType == JsonTokenType.Null ? null : Long(ref r, p);
    private static ulong? NULong(ref Utf8JsonReader r, string p) => r.TokenType == JsonTokenType.Null ? null : ULong(ref r, p);
    private static uint? NUInt(ref Utf8JsonReader r, string p) => r.TokenType == JsonTokenType.Null ? null : UInt(ref r, p);
    private static int? NInt(ref Utf8JsonReader r, string p) => r.TokenType == JsonTokenType.Null ? null : Int(ref r, p);
    private static ushort? NUShort(ref Utf8JsonReader r, string p) => r.TokenType == JsonTokenType.Null ? null : UShort(ref r, p);

    private static JsonElement? Element(ref Utf8JsonReader r) => r.TokenType == JsonTokenType.Null ? null : JsonElement.ParseValue(ref r);

    // ----- composites

    private static T? Object<T>(ref Utf8JsonReader r, string path, Fields<T> fields) where T : class, new()
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartObject) throw Wrong(ref r, path, "an object");
        var target = new T();
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return target;
            string name = r.GetString()!;
            string at = path + "." + name;
            Next(ref r, at);
            if (!fields(ref r, target, name, at))
            {
                throw new JsonException($"{at}: unknown field (not in the OCI runtime spec; names are case-sensitive)");
            }
        }
    }

    private delegate T Item<out T>(ref Utf8JsonReader r, string path);

    private static List<T>? List<T>(ref Utf8JsonReader r, string path, Item<T> item)
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartArray) throw Wrong(ref r, path, "an array");
        var list = new List<T>();
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndArray) return list;
            list.Add(item(ref r, path + "[" + list.Count.ToString() + "]")); // not interpolated: no pooled buffer on the way
        }
    }

    private static List<string>? Strings(ref Utf8JsonReader r, string path) =>
        List(ref r, path, (ref Utf8JsonReader x, string p) => Str(ref x, p) ?? throw new JsonException($"{p}: null in a list of strings"));

    private static List<T>? Objects<T>(ref Utf8JsonReader r, string path, Fields<T> fields) where T : class, new() =>
        List(ref r, path, (ref Utf8JsonReader x, string p) => Object(ref x, p, fields) ?? throw new JsonException($"{p}: null in a list of objects"));

    private static Dictionary<string, string>? Map(ref Utf8JsonReader r, string path)
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartObject) throw Wrong(ref r, path, "an object of strings");
        var map = new Dictionary<string, string>();
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return map;
            string key = r.GetString()!;
            Next(ref r, path + "." + key);
            map[key] = Str(ref r, path + "." + key) ?? throw new JsonException($"{path}.{key}: null is not a string");
        }
    }

    // ----- the spec's objects (config.md, config-linux.md)

    private static bool IdMappingFields(ref Utf8JsonReader r, IdMapping o, string name, string p)
    {
        switch (name)
        {
            case "containerID": o.ContainerID = UInt(ref r, p); return true;
            case "hostID": o.HostID = UInt(ref r, p); return true;
            case "size": o.Size = UInt(ref r, p); return true;
            default: return false;
        }
    }

    private static bool RootFields(ref Utf8JsonReader r, Root o, string name, string p)
    {
        switch (name)
        {
            case "path": o.Path = Str(ref r, p); return true;
            case "readonly": o.Readonly = Bool(ref r, p); return true;
            default: return false;
        }
    }

    private static bool MountFields(ref Utf8JsonReader r, Mount o, string name, string p)
    {
        switch (name)
        {
            case "destination": o.Destination = Str(ref r, p); return true;
            case "source": o.Source = Str(ref r, p); return true;
            case "options": o.Options = Strings(ref r, p); return true;
            case "type": o.Type = Str(ref r, p); return true;
            case "uidMappings": o.UidMappings = Objects<IdMapping>(ref r, p, IdMappingFields); return true;
            case "gidMappings": o.GidMappings = Objects<IdMapping>(ref r, p, IdMappingFields); return true;
            default: return false;
        }
    }

    private static bool ConsoleSizeFields(ref Utf8JsonReader r, ConsoleSize o, string name, string p)
    {
        switch (name)
        {
            case "height": o.Height = UInt(ref r, p); return true;
            case "width": o.Width = UInt(ref r, p); return true;
            default: return false;
        }
    }

    private static bool RlimitFields(ref Utf8JsonReader r, Rlimit o, string name, string p)
    {
        switch (name)
        {
            case "type": o.Type = Str(ref r, p); return true;
            case "soft": o.Soft = ULong(ref r, p); return true;
            case "hard": o.Hard = ULong(ref r, p); return true;
            default: return false;
        }
    }

    private static bool CapabilitiesFields(ref Utf8JsonReader r, Capabilities o, string name, string p)
    {
        switch (name)
        {
            case "bounding": o.Bounding = Strings(ref r, p); return true;
            case "effective": o.Effective = Strings(ref r, p); return true;
            case "inheritable": o.Inheritable = Strings(ref r, p); return true;
            case "permitted": o.Permitted = Strings(ref r, p); return true;
            case "ambient": o.Ambient = Strings(ref r, p); return true;
            default: return false;
        }
    }

    private static bool UserFields(ref Utf8JsonReader r, User o, string name, string p)
    {
        switch (name)
        {
            case "uid": o.Uid = UInt(ref r, p); return true;
            case "gid": o.Gid = UInt(ref r, p); return true;
            case "umask": o.Umask = NUInt(ref r, p); return true;
            case "additionalGids": o.AdditionalGids = List(ref r, p, UInt); return true;
            case "username": o.Username = Str(ref r, p); return true;
            default: return false;
        }
    }

    private static bool ProcessFields(ref Utf8JsonReader r, Process o, string name, string p)
    {
        switch (name)
        {
            case "terminal": o.Terminal = Bool(ref r, p); return true;
            case "consoleSize": o.ConsoleSize = Object<ConsoleSize>(ref r, p, ConsoleSizeFields); return true;
            case "cwd": o.Cwd = Str(ref r, p); return true;
            case "env": o.Env = Strings(ref r, p); return true;
            case "args": o.Args = Strings(ref r, p); return true;
            case "commandLine": o.CommandLine = Str(ref r, p); return true;
            case "rlimits": o.Rlimits = Objects<Rlimit>(ref r, p, RlimitFields); return true;
            case "apparmorProfile": o.ApparmorProfile = Str(ref r, p); return true;
            case "capabilities": o.Capabilities = Object<Capabilities>(ref r, p, CapabilitiesFields); return true;
            case "noNewPrivileges": o.NoNewPrivileges = Bool(ref r, p); return true;
            case "oomScoreAdj": o.OomScoreAdj = NInt(ref r, p); return true;
            case "selinuxLabel": o.SelinuxLabel = Str(ref r, p); return true;
            case "user": o.User = Object<User>(ref r, p, UserFields); return true;
            case "ioPriority": o.IoPriority = Element(ref r); return true;
            case "scheduler": o.Scheduler = Element(ref r); return true;
            case "execCPUAffinity": o.ExecCPUAffinity = Element(ref r); return true;
            default: return false;
        }
    }

    private static bool HookFields(ref Utf8JsonReader r, Hook o, string name, string p)
    {
        switch (name)
        {
            case "path": o.Path = Str(ref r, p); return true;
            case "args": o.Args = Strings(ref r, p); return true;
            case "env": o.Env = Strings(ref r, p); return true;
            case "timeout": o.Timeout = NInt(ref r, p); return true;
            default: return false;
        }
    }

    private static bool HooksFields(ref Utf8JsonReader r, Hooks o, string name, string p)
    {
        switch (name)
        {
            case "prestart": o.Prestart = Objects<Hook>(ref r, p, HookFields); return true;
            case "createRuntime": o.CreateRuntime = Objects<Hook>(ref r, p, HookFields); return true;
            case "createContainer": o.CreateContainer = Objects<Hook>(ref r, p, HookFields); return true;
            case "startContainer": o.StartContainer = Objects<Hook>(ref r, p, HookFields); return true;
            case "poststart": o.Poststart = Objects<Hook>(ref r, p, HookFields); return true;
            case "poststop": o.Poststop = Objects<Hook>(ref r, p, HookFields); return true;
            default: return false;
        }
    }

    private static bool NamespaceFields(ref Utf8JsonReader r, Namespace o, string name, string p)
    {
        switch (name)
        {
            case "type": o.Type = Str(ref r, p); return true;
            case "path": o.Path = Str(ref r, p); return true;
            default: return false;
        }
    }

    private static bool DeviceFields(ref Utf8JsonReader r, Device o, string name, string p)
    {
        switch (name)
        {
            case "type": o.Type = Str(ref r, p); return true;
            case "path": o.Path = Str(ref r, p); return true;
            case "major": o.Major = Long(ref r, p); return true;
            case "minor": o.Minor = Long(ref r, p); return true;
            case "fileMode": o.FileMode = NUInt(ref r, p); return true;
            case "uid": o.Uid = NUInt(ref r, p); return true;
            case "gid": o.Gid = NUInt(ref r, p); return true;
            default: return false;
        }
    }

    private static bool DeviceRuleFields(ref Utf8JsonReader r, DeviceRule o, string name, string p)
    {
        switch (name)
        {
            case "allow": o.Allow = Bool(ref r, p); return true;
            case "type": o.Type = Str(ref r, p); return true;
            case "major": o.Major = NLong(ref r, p); return true;
            case "minor": o.Minor = NLong(ref r, p); return true;
            case "access": o.Access = Str(ref r, p); return true;
            default: return false;
        }
    }

    private static bool MemoryFields(ref Utf8JsonReader r, Memory o, string name, string p)
    {
        switch (name)
        {
            case "limit": o.Limit = NLong(ref r, p); return true;
            case "reservation": o.Reservation = NLong(ref r, p); return true;
            case "swap": o.Swap = NLong(ref r, p); return true;
            case "kernel": o.Kernel = NLong(ref r, p); return true;
            case "kernelTCP": o.KernelTcp = NLong(ref r, p); return true;
            case "swappiness": o.Swappiness = NULong(ref r, p); return true;
            case "disableOOMKiller": o.DisableOomKiller = NBool(ref r, p); return true;
            case "useHierarchy": o.UseHierarchy = NBool(ref r, p); return true;
            case "checkBeforeUpdate": o.CheckBeforeUpdate = NBool(ref r, p); return true;
            default: return false;
        }
    }

    private static bool CpuFields(ref Utf8JsonReader r, Cpu o, string name, string p)
    {
        switch (name)
        {
            case "shares": o.Shares = NULong(ref r, p); return true;
            case "quota": o.Quota = NLong(ref r, p); return true;
            case "burst": o.Burst = NULong(ref r, p); return true;
            case "period": o.Period = NULong(ref r, p); return true;
            case "realtimeRuntime": o.RealtimeRuntime = NLong(ref r, p); return true;
            case "realtimePeriod": o.RealtimePeriod = NULong(ref r, p); return true;
            case "cpus": o.Cpus = Str(ref r, p); return true;
            case "mems": o.Mems = Str(ref r, p); return true;
            case "idle": o.Idle = NLong(ref r, p); return true;
            default: return false;
        }
    }

    private static bool PidsFields(ref Utf8JsonReader r, Pids o, string name, string p)
    {
        switch (name)
        {
            case "limit": o.Limit = NLong(ref r, p); return true;
            default: return false;
        }
    }

    private static bool WeightDeviceFields(ref Utf8JsonReader r, WeightDevice o, string name, string p)
    {
        switch (name)
        {
            case "major": o.Major = Long(ref r, p); return true;
            case "minor": o.Minor = Long(ref r, p); return true;
            case "weight": o.Weight = NUShort(ref r, p); return true;
            case "leafWeight": o.LeafWeight = NUShort(ref r, p); return true;
            default: return false;
        }
    }

    private static bool ThrottleDeviceFields(ref Utf8JsonReader r, ThrottleDevice o, string name, string p)
    {
        switch (name)
        {
            case "major": o.Major = Long(ref r, p); return true;
            case "minor": o.Minor = Long(ref r, p); return true;
            case "rate": o.Rate = ULong(ref r, p); return true;
            default: return false;
        }
    }

    private static bool BlockIOFields(ref Utf8JsonReader r, BlockIO o, string name, string p)
    {
        switch (name)
        {
            case "weight": o.Weight = NUShort(ref r, p); return true;
            case "leafWeight": o.LeafWeight = NUShort(ref r, p); return true;
            case "weightDevice": o.WeightDevice = Objects<WeightDevice>(ref r, p, WeightDeviceFields); return true;
            case "throttleReadBpsDevice": o.ThrottleReadBpsDevice = Objects<ThrottleDevice>(ref r, p, ThrottleDeviceFields); return true;
            case "throttleWriteBpsDevice": o.ThrottleWriteBpsDevice = Objects<ThrottleDevice>(ref r, p, ThrottleDeviceFields); return true;
            case "throttleReadIOPSDevice": o.ThrottleReadIopsDevice = Objects<ThrottleDevice>(ref r, p, ThrottleDeviceFields); return true;
            case "throttleWriteIOPSDevice": o.ThrottleWriteIopsDevice = Objects<ThrottleDevice>(ref r, p, ThrottleDeviceFields); return true;
            default: return false;
        }
    }

    private static bool HugepageLimitFields(ref Utf8JsonReader r, HugepageLimit o, string name, string p)
    {
        switch (name)
        {
            case "pageSize": o.PageSize = Str(ref r, p); return true;
            case "limit": o.Limit = ULong(ref r, p); return true;
            default: return false;
        }
    }

    private static bool ResourcesFields(ref Utf8JsonReader r, Resources o, string name, string p)
    {
        switch (name)
        {
            case "devices": o.Devices = Objects<DeviceRule>(ref r, p, DeviceRuleFields); return true;
            case "memory": o.Memory = Object<Memory>(ref r, p, MemoryFields); return true;
            case "cpu": o.Cpu = Object<Cpu>(ref r, p, CpuFields); return true;
            case "pids": o.Pids = Object<Pids>(ref r, p, PidsFields); return true;
            case "blockIO": o.BlockIO = Object<BlockIO>(ref r, p, BlockIOFields); return true;
            case "hugepageLimits": o.HugepageLimits = Objects<HugepageLimit>(ref r, p, HugepageLimitFields); return true;
            case "network": o.Network = Element(ref r); return true;
            case "rdma": o.Rdma = Element(ref r); return true;
            case "unified": o.Unified = Map(ref r, p); return true;
            default: return false;
        }
    }

    private static bool SeccompArgFields(ref Utf8JsonReader r, SeccompArg o, string name, string p)
    {
        switch (name)
        {
            case "index": o.Index = UInt(ref r, p); return true;
            case "value": o.Value = ULong(ref r, p); return true;
            case "valueTwo": o.ValueTwo = ULong(ref r, p); return true;
            case "op": o.Op = Str(ref r, p); return true;
            default: return false;
        }
    }

    private static bool SeccompSyscallFields(ref Utf8JsonReader r, SeccompSyscall o, string name, string p)
    {
        switch (name)
        {
            case "names": o.Names = Strings(ref r, p); return true;
            case "action": o.Action = Str(ref r, p); return true;
            case "errnoRet": o.ErrnoRet = NUInt(ref r, p); return true;
            case "args": o.Args = Objects<SeccompArg>(ref r, p, SeccompArgFields); return true;
            default: return false;
        }
    }

    private static bool SeccompFields(ref Utf8JsonReader r, Seccomp o, string name, string p)
    {
        switch (name)
        {
            case "defaultAction": o.DefaultAction = Str(ref r, p); return true;
            case "defaultErrnoRet": o.DefaultErrnoRet = NUInt(ref r, p); return true;
            case "architectures": o.Architectures = Strings(ref r, p); return true;
            case "flags": o.Flags = Strings(ref r, p); return true;
            case "listenerPath": o.ListenerPath = Str(ref r, p); return true;
            case "listenerMetadata": o.ListenerMetadata = Str(ref r, p); return true;
            case "syscalls": o.Syscalls = Objects<SeccompSyscall>(ref r, p, SeccompSyscallFields); return true;
            default: return false;
        }
    }

    private static bool LinuxFields(ref Utf8JsonReader r, LinuxSpec o, string name, string p)
    {
        switch (name)
        {
            case "namespaces": o.Namespaces = Objects<Namespace>(ref r, p, NamespaceFields); return true;
            case "uidMappings": o.UidMappings = Objects<IdMapping>(ref r, p, IdMappingFields); return true;
            case "gidMappings": o.GidMappings = Objects<IdMapping>(ref r, p, IdMappingFields); return true;
            case "timeOffsets": o.TimeOffsets = Element(ref r); return true;
            case "devices": o.Devices = Objects<Device>(ref r, p, DeviceFields); return true;
            case "cgroupsPath": o.CgroupsPath = Str(ref r, p); return true;
            case "resources": o.Resources = Object<Resources>(ref r, p, ResourcesFields); return true;
            case "intelRdt": o.IntelRdt = Element(ref r); return true;
            case "sysctl": o.Sysctl = Map(ref r, p); return true;
            case "seccomp": o.Seccomp = Object<Seccomp>(ref r, p, SeccompFields); return true;
            case "rootfsPropagation": o.RootfsPropagation = Str(ref r, p); return true;
            case "maskedPaths": o.MaskedPaths = Strings(ref r, p); return true;
            case "readonlyPaths": o.ReadonlyPaths = Strings(ref r, p); return true;
            case "mountLabel": o.MountLabel = Str(ref r, p); return true;
            case "personality": o.Personality = Element(ref r); return true;
            case "memoryPolicy": o.MemoryPolicy = Element(ref r); return true;
            case "netDevices": o.NetDevices = Element(ref r); return true;
            default: return false;
        }
    }

    private static bool SpecFields(ref Utf8JsonReader r, RuntimeSpec o, string name, string p)
    {
        switch (name)
        {
            case "ociVersion": o.OciVersion = Str(ref r, p); return true;
            case "root": o.Root = Object<Root>(ref r, p, RootFields); return true;
            case "mounts": o.Mounts = Objects<Mount>(ref r, p, MountFields); return true;
            case "process": o.Process = Object<Process>(ref r, p, ProcessFields); return true;
            case "hostname": o.Hostname = Str(ref r, p); return true;
            case "domainname": o.Domainname = Str(ref r, p); return true;
            case "hooks": o.Hooks = Object<Hooks>(ref r, p, HooksFields); return true;
            case "annotations": o.Annotations = Map(ref r, p); return true;
            case "linux": o.Linux = Object<LinuxSpec>(ref r, p, LinuxFields); return true;
            case "windows": o.Windows = Element(ref r); return true;
            case "solaris": o.Solaris = Element(ref r); return true;
            case "vm": o.Vm = Element(ref r); return true;
            case "zos": o.Zos = Element(ref r); return true;
            case "freebsd": o.Freebsd = Element(ref r); return true;
            default: return false;
        }
    }

    /// <summary>A process section on its own (exec --process FILE).</summary>
    public static Process ReadProcess(ReadOnlySpan<byte> utf8)
    {
        var r = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
        Next(ref r, "$");
        Process process = Object<Process>(ref r, "$", ProcessFields) ?? throw new JsonException("$: the document is null");
        r.Read(); // the reader itself refuses anything after the document
        return process;
    }
}

using System.Text.Json;

namespace HostOs.Containers.Spec;

/// <summary>
/// config.json read with Utf8JsonReader and a table of fields per object, instead of
/// System.Text.Json's serializer: the serializer builds its metadata for ~35 types on first
/// use, ~70 ms of every `create` under TCG (docs/containers.md, "Start latency"); this costs
/// a few. Same rules as the serializer it replaces: unknown fields and wrong types are
/// errors naming their JSON path; null leaves a field unset; the last duplicate wins.
/// A unit test parses every fixture both ways and compares the results.
/// </summary>
internal static class SpecReader
{
    private delegate void Field<in T>(ref Utf8JsonReader r, T target, string path);

    private sealed class Schema<T>(Func<T> create, Dictionary<string, Field<T>> fields)
    {
        public T Create() => create();
        public Dictionary<string, Field<T>> Fields { get; } = fields;
    }

    public static RuntimeSpec Read(ReadOnlySpan<byte> utf8)
    {
        var r = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
        Next(ref r, "$");
        RuntimeSpec spec = Object(ref r, "$", SpecSchema) ?? throw new JsonException("$: the document is null");
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

    private static T? Object<T>(ref Utf8JsonReader r, string path, Schema<T> schema) where T : class
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartObject) throw Wrong(ref r, path, "an object");
        T target = schema.Create();
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return target;
            string name = r.GetString()!;
            string at = path + "." + name;
            if (!schema.Fields.TryGetValue(name, out Field<T>? field))
            {
                throw new JsonException($"{at}: unknown field (not in the OCI runtime spec; names are case-sensitive)");
            }
            Next(ref r, at);
            field(ref r, target, at);
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
            list.Add(item(ref r, $"{path}[{list.Count}]"));
        }
    }

    private static List<string>? Strings(ref Utf8JsonReader r, string path) =>
        List(ref r, path, (ref Utf8JsonReader x, string p) => Str(ref x, p) ?? throw new JsonException($"{p}: null in a list of strings"));

    private static List<T>? Objects<T>(ref Utf8JsonReader r, string path, Schema<T> schema) where T : class =>
        List(ref r, path, (ref Utf8JsonReader x, string p) => Object(ref x, p, schema) ?? throw new JsonException($"{p}: null in a list of objects"));

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

    private static readonly Schema<IdMapping> IdMappingSchema = new(() => new(), new()
    {
        ["containerID"] = (ref Utf8JsonReader r, IdMapping o, string p) => o.ContainerID = UInt(ref r, p),
        ["hostID"] = (ref Utf8JsonReader r, IdMapping o, string p) => o.HostID = UInt(ref r, p),
        ["size"] = (ref Utf8JsonReader r, IdMapping o, string p) => o.Size = UInt(ref r, p),
    });

    private static readonly Schema<Root> RootSchema = new(() => new(), new()
    {
        ["path"] = (ref Utf8JsonReader r, Root o, string p) => o.Path = Str(ref r, p),
        ["readonly"] = (ref Utf8JsonReader r, Root o, string p) => o.Readonly = Bool(ref r, p),
    });

    private static readonly Schema<Mount> MountSchema = new(() => new(), new()
    {
        ["destination"] = (ref Utf8JsonReader r, Mount o, string p) => o.Destination = Str(ref r, p),
        ["source"] = (ref Utf8JsonReader r, Mount o, string p) => o.Source = Str(ref r, p),
        ["options"] = (ref Utf8JsonReader r, Mount o, string p) => o.Options = Strings(ref r, p),
        ["type"] = (ref Utf8JsonReader r, Mount o, string p) => o.Type = Str(ref r, p),
        ["uidMappings"] = (ref Utf8JsonReader r, Mount o, string p) => o.UidMappings = Objects(ref r, p, IdMappingSchema),
        ["gidMappings"] = (ref Utf8JsonReader r, Mount o, string p) => o.GidMappings = Objects(ref r, p, IdMappingSchema),
    });

    private static readonly Schema<ConsoleSize> ConsoleSizeSchema = new(() => new(), new()
    {
        ["height"] = (ref Utf8JsonReader r, ConsoleSize o, string p) => o.Height = UInt(ref r, p),
        ["width"] = (ref Utf8JsonReader r, ConsoleSize o, string p) => o.Width = UInt(ref r, p),
    });

    private static readonly Schema<Rlimit> RlimitSchema = new(() => new(), new()
    {
        ["type"] = (ref Utf8JsonReader r, Rlimit o, string p) => o.Type = Str(ref r, p),
        ["soft"] = (ref Utf8JsonReader r, Rlimit o, string p) => o.Soft = ULong(ref r, p),
        ["hard"] = (ref Utf8JsonReader r, Rlimit o, string p) => o.Hard = ULong(ref r, p),
    });

    private static readonly Schema<Capabilities> CapabilitiesSchema = new(() => new(), new()
    {
        ["bounding"] = (ref Utf8JsonReader r, Capabilities o, string p) => o.Bounding = Strings(ref r, p),
        ["effective"] = (ref Utf8JsonReader r, Capabilities o, string p) => o.Effective = Strings(ref r, p),
        ["inheritable"] = (ref Utf8JsonReader r, Capabilities o, string p) => o.Inheritable = Strings(ref r, p),
        ["permitted"] = (ref Utf8JsonReader r, Capabilities o, string p) => o.Permitted = Strings(ref r, p),
        ["ambient"] = (ref Utf8JsonReader r, Capabilities o, string p) => o.Ambient = Strings(ref r, p),
    });

    private static readonly Schema<User> UserSchema = new(() => new(), new()
    {
        ["uid"] = (ref Utf8JsonReader r, User o, string p) => o.Uid = UInt(ref r, p),
        ["gid"] = (ref Utf8JsonReader r, User o, string p) => o.Gid = UInt(ref r, p),
        ["umask"] = (ref Utf8JsonReader r, User o, string p) => o.Umask = NUInt(ref r, p),
        ["additionalGids"] = (ref Utf8JsonReader r, User o, string p) => o.AdditionalGids = List(ref r, p, UInt),
        ["username"] = (ref Utf8JsonReader r, User o, string p) => o.Username = Str(ref r, p),
    });

    private static readonly Schema<Process> ProcessSchema = new(() => new(), new()
    {
        ["terminal"] = (ref Utf8JsonReader r, Process o, string p) => o.Terminal = Bool(ref r, p),
        ["consoleSize"] = (ref Utf8JsonReader r, Process o, string p) => o.ConsoleSize = Object(ref r, p, ConsoleSizeSchema),
        ["cwd"] = (ref Utf8JsonReader r, Process o, string p) => o.Cwd = Str(ref r, p),
        ["env"] = (ref Utf8JsonReader r, Process o, string p) => o.Env = Strings(ref r, p),
        ["args"] = (ref Utf8JsonReader r, Process o, string p) => o.Args = Strings(ref r, p),
        ["commandLine"] = (ref Utf8JsonReader r, Process o, string p) => o.CommandLine = Str(ref r, p),
        ["rlimits"] = (ref Utf8JsonReader r, Process o, string p) => o.Rlimits = Objects(ref r, p, RlimitSchema),
        ["apparmorProfile"] = (ref Utf8JsonReader r, Process o, string p) => o.ApparmorProfile = Str(ref r, p),
        ["capabilities"] = (ref Utf8JsonReader r, Process o, string p) => o.Capabilities = Object(ref r, p, CapabilitiesSchema),
        ["noNewPrivileges"] = (ref Utf8JsonReader r, Process o, string p) => o.NoNewPrivileges = Bool(ref r, p),
        ["oomScoreAdj"] = (ref Utf8JsonReader r, Process o, string p) => o.OomScoreAdj = NInt(ref r, p),
        ["selinuxLabel"] = (ref Utf8JsonReader r, Process o, string p) => o.SelinuxLabel = Str(ref r, p),
        ["user"] = (ref Utf8JsonReader r, Process o, string p) => o.User = Object(ref r, p, UserSchema),
        ["ioPriority"] = (ref Utf8JsonReader r, Process o, string p) => o.IoPriority = Element(ref r),
        ["scheduler"] = (ref Utf8JsonReader r, Process o, string p) => o.Scheduler = Element(ref r),
        ["execCPUAffinity"] = (ref Utf8JsonReader r, Process o, string p) => o.ExecCPUAffinity = Element(ref r),
    });

    private static readonly Schema<Hook> HookSchema = new(() => new(), new()
    {
        ["path"] = (ref Utf8JsonReader r, Hook o, string p) => o.Path = Str(ref r, p),
        ["args"] = (ref Utf8JsonReader r, Hook o, string p) => o.Args = Strings(ref r, p),
        ["env"] = (ref Utf8JsonReader r, Hook o, string p) => o.Env = Strings(ref r, p),
        ["timeout"] = (ref Utf8JsonReader r, Hook o, string p) => o.Timeout = NInt(ref r, p),
    });

    private static readonly Schema<Hooks> HooksSchema = new(() => new(), new()
    {
        ["prestart"] = (ref Utf8JsonReader r, Hooks o, string p) => o.Prestart = Objects(ref r, p, HookSchema),
        ["createRuntime"] = (ref Utf8JsonReader r, Hooks o, string p) => o.CreateRuntime = Objects(ref r, p, HookSchema),
        ["createContainer"] = (ref Utf8JsonReader r, Hooks o, string p) => o.CreateContainer = Objects(ref r, p, HookSchema),
        ["startContainer"] = (ref Utf8JsonReader r, Hooks o, string p) => o.StartContainer = Objects(ref r, p, HookSchema),
        ["poststart"] = (ref Utf8JsonReader r, Hooks o, string p) => o.Poststart = Objects(ref r, p, HookSchema),
        ["poststop"] = (ref Utf8JsonReader r, Hooks o, string p) => o.Poststop = Objects(ref r, p, HookSchema),
    });

    private static readonly Schema<Namespace> NamespaceSchema = new(() => new(), new()
    {
        ["type"] = (ref Utf8JsonReader r, Namespace o, string p) => o.Type = Str(ref r, p),
        ["path"] = (ref Utf8JsonReader r, Namespace o, string p) => o.Path = Str(ref r, p),
    });

    private static readonly Schema<Device> DeviceSchema = new(() => new(), new()
    {
        ["type"] = (ref Utf8JsonReader r, Device o, string p) => o.Type = Str(ref r, p),
        ["path"] = (ref Utf8JsonReader r, Device o, string p) => o.Path = Str(ref r, p),
        ["major"] = (ref Utf8JsonReader r, Device o, string p) => o.Major = Long(ref r, p),
        ["minor"] = (ref Utf8JsonReader r, Device o, string p) => o.Minor = Long(ref r, p),
        ["fileMode"] = (ref Utf8JsonReader r, Device o, string p) => o.FileMode = NUInt(ref r, p),
        ["uid"] = (ref Utf8JsonReader r, Device o, string p) => o.Uid = NUInt(ref r, p),
        ["gid"] = (ref Utf8JsonReader r, Device o, string p) => o.Gid = NUInt(ref r, p),
    });

    private static readonly Schema<DeviceRule> DeviceRuleSchema = new(() => new(), new()
    {
        ["allow"] = (ref Utf8JsonReader r, DeviceRule o, string p) => o.Allow = Bool(ref r, p),
        ["type"] = (ref Utf8JsonReader r, DeviceRule o, string p) => o.Type = Str(ref r, p),
        ["major"] = (ref Utf8JsonReader r, DeviceRule o, string p) => o.Major = NLong(ref r, p),
        ["minor"] = (ref Utf8JsonReader r, DeviceRule o, string p) => o.Minor = NLong(ref r, p),
        ["access"] = (ref Utf8JsonReader r, DeviceRule o, string p) => o.Access = Str(ref r, p),
    });

    private static readonly Schema<Memory> MemorySchema = new(() => new(), new()
    {
        ["limit"] = (ref Utf8JsonReader r, Memory o, string p) => o.Limit = NLong(ref r, p),
        ["reservation"] = (ref Utf8JsonReader r, Memory o, string p) => o.Reservation = NLong(ref r, p),
        ["swap"] = (ref Utf8JsonReader r, Memory o, string p) => o.Swap = NLong(ref r, p),
        ["kernel"] = (ref Utf8JsonReader r, Memory o, string p) => o.Kernel = NLong(ref r, p),
        ["kernelTCP"] = (ref Utf8JsonReader r, Memory o, string p) => o.KernelTcp = NLong(ref r, p),
        ["swappiness"] = (ref Utf8JsonReader r, Memory o, string p) => o.Swappiness = NULong(ref r, p),
        ["disableOOMKiller"] = (ref Utf8JsonReader r, Memory o, string p) => o.DisableOomKiller = NBool(ref r, p),
        ["useHierarchy"] = (ref Utf8JsonReader r, Memory o, string p) => o.UseHierarchy = NBool(ref r, p),
        ["checkBeforeUpdate"] = (ref Utf8JsonReader r, Memory o, string p) => o.CheckBeforeUpdate = NBool(ref r, p),
    });

    private static readonly Schema<Cpu> CpuSchema = new(() => new(), new()
    {
        ["shares"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Shares = NULong(ref r, p),
        ["quota"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Quota = NLong(ref r, p),
        ["burst"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Burst = NULong(ref r, p),
        ["period"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Period = NULong(ref r, p),
        ["realtimeRuntime"] = (ref Utf8JsonReader r, Cpu o, string p) => o.RealtimeRuntime = NLong(ref r, p),
        ["realtimePeriod"] = (ref Utf8JsonReader r, Cpu o, string p) => o.RealtimePeriod = NULong(ref r, p),
        ["cpus"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Cpus = Str(ref r, p),
        ["mems"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Mems = Str(ref r, p),
        ["idle"] = (ref Utf8JsonReader r, Cpu o, string p) => o.Idle = NLong(ref r, p),
    });

    private static readonly Schema<Pids> PidsSchema = new(() => new(), new()
    {
        ["limit"] = (ref Utf8JsonReader r, Pids o, string p) => o.Limit = NLong(ref r, p),
    });

    private static readonly Schema<WeightDevice> WeightDeviceSchema = new(() => new(), new()
    {
        ["major"] = (ref Utf8JsonReader r, WeightDevice o, string p) => o.Major = Long(ref r, p),
        ["minor"] = (ref Utf8JsonReader r, WeightDevice o, string p) => o.Minor = Long(ref r, p),
        ["weight"] = (ref Utf8JsonReader r, WeightDevice o, string p) => o.Weight = NUShort(ref r, p),
        ["leafWeight"] = (ref Utf8JsonReader r, WeightDevice o, string p) => o.LeafWeight = NUShort(ref r, p),
    });

    private static readonly Schema<ThrottleDevice> ThrottleDeviceSchema = new(() => new(), new()
    {
        ["major"] = (ref Utf8JsonReader r, ThrottleDevice o, string p) => o.Major = Long(ref r, p),
        ["minor"] = (ref Utf8JsonReader r, ThrottleDevice o, string p) => o.Minor = Long(ref r, p),
        ["rate"] = (ref Utf8JsonReader r, ThrottleDevice o, string p) => o.Rate = ULong(ref r, p),
    });

    private static readonly Schema<BlockIO> BlockIOSchema = new(() => new(), new()
    {
        ["weight"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.Weight = NUShort(ref r, p),
        ["leafWeight"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.LeafWeight = NUShort(ref r, p),
        ["weightDevice"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.WeightDevice = Objects(ref r, p, WeightDeviceSchema),
        ["throttleReadBpsDevice"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.ThrottleReadBpsDevice = Objects(ref r, p, ThrottleDeviceSchema),
        ["throttleWriteBpsDevice"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.ThrottleWriteBpsDevice = Objects(ref r, p, ThrottleDeviceSchema),
        ["throttleReadIOPSDevice"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.ThrottleReadIopsDevice = Objects(ref r, p, ThrottleDeviceSchema),
        ["throttleWriteIOPSDevice"] = (ref Utf8JsonReader r, BlockIO o, string p) => o.ThrottleWriteIopsDevice = Objects(ref r, p, ThrottleDeviceSchema),
    });

    private static readonly Schema<HugepageLimit> HugepageLimitSchema = new(() => new(), new()
    {
        ["pageSize"] = (ref Utf8JsonReader r, HugepageLimit o, string p) => o.PageSize = Str(ref r, p),
        ["limit"] = (ref Utf8JsonReader r, HugepageLimit o, string p) => o.Limit = ULong(ref r, p),
    });

    private static readonly Schema<Resources> ResourcesSchema = new(() => new(), new()
    {
        ["devices"] = (ref Utf8JsonReader r, Resources o, string p) => o.Devices = Objects(ref r, p, DeviceRuleSchema),
        ["memory"] = (ref Utf8JsonReader r, Resources o, string p) => o.Memory = Object(ref r, p, MemorySchema),
        ["cpu"] = (ref Utf8JsonReader r, Resources o, string p) => o.Cpu = Object(ref r, p, CpuSchema),
        ["pids"] = (ref Utf8JsonReader r, Resources o, string p) => o.Pids = Object(ref r, p, PidsSchema),
        ["blockIO"] = (ref Utf8JsonReader r, Resources o, string p) => o.BlockIO = Object(ref r, p, BlockIOSchema),
        ["hugepageLimits"] = (ref Utf8JsonReader r, Resources o, string p) => o.HugepageLimits = Objects(ref r, p, HugepageLimitSchema),
        ["network"] = (ref Utf8JsonReader r, Resources o, string p) => o.Network = Element(ref r),
        ["rdma"] = (ref Utf8JsonReader r, Resources o, string p) => o.Rdma = Element(ref r),
        ["unified"] = (ref Utf8JsonReader r, Resources o, string p) => o.Unified = Map(ref r, p),
    });

    private static readonly Schema<SeccompArg> SeccompArgSchema = new(() => new(), new()
    {
        ["index"] = (ref Utf8JsonReader r, SeccompArg o, string p) => o.Index = UInt(ref r, p),
        ["value"] = (ref Utf8JsonReader r, SeccompArg o, string p) => o.Value = ULong(ref r, p),
        ["valueTwo"] = (ref Utf8JsonReader r, SeccompArg o, string p) => o.ValueTwo = ULong(ref r, p),
        ["op"] = (ref Utf8JsonReader r, SeccompArg o, string p) => o.Op = Str(ref r, p),
    });

    private static readonly Schema<SeccompSyscall> SeccompSyscallSchema = new(() => new(), new()
    {
        ["names"] = (ref Utf8JsonReader r, SeccompSyscall o, string p) => o.Names = Strings(ref r, p),
        ["action"] = (ref Utf8JsonReader r, SeccompSyscall o, string p) => o.Action = Str(ref r, p),
        ["errnoRet"] = (ref Utf8JsonReader r, SeccompSyscall o, string p) => o.ErrnoRet = NUInt(ref r, p),
        ["args"] = (ref Utf8JsonReader r, SeccompSyscall o, string p) => o.Args = Objects(ref r, p, SeccompArgSchema),
    });

    private static readonly Schema<Seccomp> SeccompSchema = new(() => new(), new()
    {
        ["defaultAction"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.DefaultAction = Str(ref r, p),
        ["defaultErrnoRet"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.DefaultErrnoRet = NUInt(ref r, p),
        ["architectures"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.Architectures = Strings(ref r, p),
        ["flags"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.Flags = Strings(ref r, p),
        ["listenerPath"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.ListenerPath = Str(ref r, p),
        ["listenerMetadata"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.ListenerMetadata = Str(ref r, p),
        ["syscalls"] = (ref Utf8JsonReader r, Seccomp o, string p) => o.Syscalls = Objects(ref r, p, SeccompSyscallSchema),
    });

    private static readonly Schema<LinuxSpec> LinuxSchema = new(() => new(), new()
    {
        ["namespaces"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Namespaces = Objects(ref r, p, NamespaceSchema),
        ["uidMappings"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.UidMappings = Objects(ref r, p, IdMappingSchema),
        ["gidMappings"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.GidMappings = Objects(ref r, p, IdMappingSchema),
        ["timeOffsets"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.TimeOffsets = Element(ref r),
        ["devices"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Devices = Objects(ref r, p, DeviceSchema),
        ["cgroupsPath"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.CgroupsPath = Str(ref r, p),
        ["resources"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Resources = Object(ref r, p, ResourcesSchema),
        ["intelRdt"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.IntelRdt = Element(ref r),
        ["sysctl"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Sysctl = Map(ref r, p),
        ["seccomp"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Seccomp = Object(ref r, p, SeccompSchema),
        ["rootfsPropagation"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.RootfsPropagation = Str(ref r, p),
        ["maskedPaths"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.MaskedPaths = Strings(ref r, p),
        ["readonlyPaths"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.ReadonlyPaths = Strings(ref r, p),
        ["mountLabel"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.MountLabel = Str(ref r, p),
        ["personality"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.Personality = Element(ref r),
        ["memoryPolicy"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.MemoryPolicy = Element(ref r),
        ["netDevices"] = (ref Utf8JsonReader r, LinuxSpec o, string p) => o.NetDevices = Element(ref r),
    });

    private static readonly Schema<RuntimeSpec> SpecSchema = new(() => new(), new()
    {
        ["ociVersion"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.OciVersion = Str(ref r, p),
        ["root"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Root = Object(ref r, p, RootSchema),
        ["mounts"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Mounts = Objects(ref r, p, MountSchema),
        ["process"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Process = Object(ref r, p, ProcessSchema),
        ["hostname"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Hostname = Str(ref r, p),
        ["domainname"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Domainname = Str(ref r, p),
        ["hooks"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Hooks = Object(ref r, p, HooksSchema),
        ["annotations"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Annotations = Map(ref r, p),
        ["linux"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Linux = Object(ref r, p, LinuxSchema),
        ["windows"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Windows = Element(ref r),
        ["solaris"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Solaris = Element(ref r),
        ["vm"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Vm = Element(ref r),
        ["zos"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Zos = Element(ref r),
        ["freebsd"] = (ref Utf8JsonReader r, RuntimeSpec o, string p) => o.Freebsd = Element(ref r),
    });

    /// <summary>A process section on its own (exec --process FILE).</summary>
    public static Process ReadProcess(ReadOnlySpan<byte> utf8)
    {
        var r = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
        Next(ref r, "$");
        Process process = Object(ref r, "$", ProcessSchema) ?? throw new JsonException("$: the document is null");
        r.Read(); // the reader itself refuses anything after the document
        return process;
    }
}

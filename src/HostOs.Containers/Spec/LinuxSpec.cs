using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Containers.Spec;

public sealed class LinuxSpec
{
    public List<Namespace>? Namespaces { get; set; }
    public List<IdMapping>? UidMappings { get; set; }
    public List<IdMapping>? GidMappings { get; set; }
    public JsonElement? TimeOffsets { get; set; }
    public List<Device>? Devices { get; set; }
    public string? CgroupsPath { get; set; }
    public Resources? Resources { get; set; }
    public JsonElement? IntelRdt { get; set; }
    public Dictionary<string, string>? Sysctl { get; set; }
    public Seccomp? Seccomp { get; set; }
    public string? RootfsPropagation { get; set; }
    public List<string>? MaskedPaths { get; set; }
    public List<string>? ReadonlyPaths { get; set; }
    public string? MountLabel { get; set; }
    public JsonElement? Personality { get; set; }
    public JsonElement? MemoryPolicy { get; set; }
    public JsonElement? NetDevices { get; set; }
}

public sealed class Namespace
{
    public string? Type { get; set; }
    public string? Path { get; set; }
}

public sealed class Device
{
    public string? Type { get; set; }
    public string? Path { get; set; }
    public long Major { get; set; }
    public long Minor { get; set; }
    public uint? FileMode { get; set; }
    public uint? Uid { get; set; }
    public uint? Gid { get; set; }
}

public sealed class Resources
{
    public List<DeviceRule>? Devices { get; set; }
    public Memory? Memory { get; set; }
    public Cpu? Cpu { get; set; }
    public Pids? Pids { get; set; }
    public BlockIO? BlockIO { get; set; }
    public List<HugepageLimit>? HugepageLimits { get; set; }
    public JsonElement? Network { get; set; }
    public JsonElement? Rdma { get; set; }
    public Dictionary<string, string>? Unified { get; set; }
}

public sealed class DeviceRule
{
    public bool Allow { get; set; }
    public string? Type { get; set; }
    public long? Major { get; set; }
    public long? Minor { get; set; }
    public string? Access { get; set; }
}

public sealed class Memory
{
    public long? Limit { get; set; }
    public long? Reservation { get; set; }
    public long? Swap { get; set; }
    public long? Kernel { get; set; }
    [JsonPropertyName("kernelTCP")] public long? KernelTcp { get; set; }
    public ulong? Swappiness { get; set; }
    [JsonPropertyName("disableOOMKiller")] public bool? DisableOomKiller { get; set; }
    public bool? UseHierarchy { get; set; }
    public bool? CheckBeforeUpdate { get; set; }
}

public sealed class Cpu
{
    public ulong? Shares { get; set; }
    public long? Quota { get; set; }
    public ulong? Burst { get; set; }
    public ulong? Period { get; set; }
    public long? RealtimeRuntime { get; set; }
    public ulong? RealtimePeriod { get; set; }
    public string? Cpus { get; set; }
    public string? Mems { get; set; }
    public long? Idle { get; set; }
}

public sealed class Pids
{
    public long? Limit { get; set; }
}

public sealed class BlockIO
{
    public ushort? Weight { get; set; }
    public ushort? LeafWeight { get; set; }
    public List<WeightDevice>? WeightDevice { get; set; }
    public List<ThrottleDevice>? ThrottleReadBpsDevice { get; set; }
    public List<ThrottleDevice>? ThrottleWriteBpsDevice { get; set; }
    [JsonPropertyName("throttleReadIOPSDevice")] public List<ThrottleDevice>? ThrottleReadIopsDevice { get; set; }
    [JsonPropertyName("throttleWriteIOPSDevice")] public List<ThrottleDevice>? ThrottleWriteIopsDevice { get; set; }
}

public sealed class WeightDevice
{
    public long Major { get; set; }
    public long Minor { get; set; }
    public ushort? Weight { get; set; }
    public ushort? LeafWeight { get; set; }
}

public sealed class ThrottleDevice
{
    public long Major { get; set; }
    public long Minor { get; set; }
    public ulong Rate { get; set; }
}

public sealed class HugepageLimit
{
    public string? PageSize { get; set; }
    public ulong Limit { get; set; }
}

public sealed class Seccomp
{
    public string? DefaultAction { get; set; }
    public uint? DefaultErrnoRet { get; set; }
    public List<string>? Architectures { get; set; }
    public List<string>? Flags { get; set; }
    public string? ListenerPath { get; set; }
    public string? ListenerMetadata { get; set; }
    public List<SeccompSyscall>? Syscalls { get; set; }
}

public sealed class SeccompSyscall
{
    public List<string>? Names { get; set; }
    public string? Action { get; set; }
    public uint? ErrnoRet { get; set; }
    public List<SeccompArg>? Args { get; set; }
}

public sealed class SeccompArg
{
    public uint Index { get; set; }
    public ulong Value { get; set; }
    public ulong ValueTwo { get; set; }
    public string? Op { get; set; }
}

using HostOs.Containers.Spec;

namespace HostOs.Containers.Runtime;

/// <summary>
/// Spec features the runtime accepts in principle but cannot honour yet. Running a
/// container without them would give it less isolation than it asked for, so each one is
/// refused by name until implemented (docs/containers.md, Status).
/// </summary>
public static class NotYetImplemented
{
    public static List<string> Problems(RuntimeSpec spec)
    {
        var p = new List<string>();
        void Missing(bool present, string path) { if (present) p.Add($"{path}: not implemented yet in HostOS"); }
        Missing(spec.Process is null, "$.process (required to create a container)");
        Missing(spec.Linux?.Devices is { Count: > 0 }, "$.linux.devices");
        Missing(spec.Linux?.Resources?.Devices is { Count: > 0 }, "$.linux.resources.devices (cgroup v2 device filter)");
        Missing(spec.Linux?.Seccomp is not null, "$.linux.seccomp");
        Missing(spec.Hooks is not null, "$.hooks");
        Missing(spec.Process?.Terminal == true, "$.process.terminal");
        return p;
    }
}

using HostOs.Containers.Spec;

namespace HostOs.Containers.Runtime;

/// <summary>
/// Valid specs this runtime cannot run (yet). Running a container without these features
/// would give it less isolation than it asked for, so each is refused by name until
/// implemented (docs/containers.md, Status). One place for all such refusals.
/// </summary>
public static class NotYetImplemented
{
    public static List<string> Problems(RuntimeSpec spec)
    {
        var p = new List<string>();
        void Missing(bool present, string path) { if (present) p.Add($"{path}: not implemented yet in HostOS"); }
        Missing(spec.Process is null, "$.process (required to create a container)");
        if (spec.Linux?.Namespaces?.Any(n => n.Type == "mount" && n.Path is null) != true)
        {
            p.Add("$.linux.namespaces: a container without a mount namespace of its own: not implemented in HostOS");
        }
        return p;
    }
}

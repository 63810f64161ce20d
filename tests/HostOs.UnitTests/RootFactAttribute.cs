using System.Runtime.InteropServices;

namespace HostOs.UnitTests;

/// <summary>Tier 2: a test that needs root (mounts, namespaces); skipped for other users.</summary>
public sealed partial class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (geteuid() != 0) Skip = "needs root";
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();
}

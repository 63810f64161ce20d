namespace HostOs.Containers.Runtime;

/// <summary>
/// Where hostos-stage is (src/HostOs.Stage, docs/containers.md "The native stage"): next to
/// the running binary (a build's out/publish directory), else where the image installs it.
/// Looked up once per process: PID 1 starts many containers.
/// </summary>
public static class NativeStage
{
    public const string Installed = "/usr/lib/hostos/hostos-stage";
    private static string? s_found;

    public static string Path => s_found ??= Find();

    private static string Find()
    {
        string beside = System.IO.Path.Combine(AppContext.BaseDirectory, "hostos-stage");
        if (File.Exists(beside)) return beside;
        if (File.Exists(Installed)) return Installed;
        throw new ContainerException($"the native stage is missing: neither {beside} nor {Installed} exists");
    }
}

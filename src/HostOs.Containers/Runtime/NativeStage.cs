namespace HostOs.Containers.Runtime;

/// <summary>
/// Where hostos-stage is (src/HostOs.Stage, docs/containers.md "The native stage"): next to
/// the running binary (a build's out/publish directory), else where the image installs it.
/// </summary>
public static class NativeStage
{
    public const string Installed = "/usr/lib/hostos/hostos-stage";

    public static string Path
    {
        get
        {
            string beside = System.IO.Path.Combine(AppContext.BaseDirectory, "hostos-stage");
            if (File.Exists(beside)) return beside;
            if (File.Exists(Installed)) return Installed;
            throw new ContainerException($"the native stage is missing: neither {beside} nor {Installed} exists");
        }
    }
}

namespace HostOs.QemuTests.Harness;

internal static class Repo
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (string? d = AppContext.BaseDirectory; d is not null; d = Path.GetDirectoryName(d))
        {
            if (File.Exists(Path.Combine(d, "HostOs.sln"))) return d;
        }
        throw new InvalidOperationException("HostOs.sln not found above the test assembly");
    }

    /// <summary>The disk image of a built image definition; a clear error when not built.</summary>
    public static string Image(string name)
    {
        string path = Path.Combine(Root, "out", name, "disk.img");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path} is missing: run ./build.sh image/hostos.json qemu-tests/image/hostos-test.json first (./test.sh does)");
        }
        return path;
    }

    public static string LogDirectory => Directory.CreateDirectory(Path.Combine(Root, "out", "qemu-logs")).FullName;
}

using System.Diagnostics;

namespace HostOs.QemuTests.Harness;

/// <summary>A cloud-init NoCloud config drive: a FAT image labelled "cidata" with user-data and meta-data, made without mounts.</summary>
internal static class ConfigDrive
{
    public static string Make(string dir, string userData, string metaData)
    {
        string img = Path.Combine(dir, $"cidata-{Guid.NewGuid():N}.img");
        File.WriteAllText(Path.Combine(dir, "user-data"), userData);
        File.WriteAllText(Path.Combine(dir, "meta-data"), metaData);
        Run("mkfs.vfat", "-n", "cidata", "-C", img, "2048");
        Run("mcopy", "-i", img, Path.Combine(dir, "user-data"), Path.Combine(dir, "meta-data"), "::/");
        return img;
    }

    private static void Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["MTOOLS_SKIP_CHECK"] = "1";
        using Process p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} failed: {err}");
    }
}

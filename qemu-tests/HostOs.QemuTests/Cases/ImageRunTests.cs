using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// The image chain inside HostOS: an OCI image layout built here (two layers made with GNU
/// tar, one gzip'ed, the top one whiting out a file of the base) reaches the VM on a second
/// disk; the guest imports it into the store on its state partition, runs the image's own
/// command on an overlay root, then removes and collects everything.
/// </summary>
public sealed class ImageRunTests
{
    [Fact]
    public async Task AnImportedImageRunsOnItsOverlayRootAndIsCollected()
    {
        string work = Directory.CreateTempSubdirectory("hostos-layout-").FullName;
        try
        {
            string disk = BuildLayoutDisk(work);
            await using var vm = QemuMachine.Create("image-run");
            vm.ExtraDisks.Add(disk);
            vm.Start();
            await vm.WaitForReadyAsync();
            SerialShell sh = await vm.ShellAsync();
            await sh.CheckAsync("mkdir -p /run/layout && mount -t ext4 -o ro /dev/vdb /run/layout");
            var (code, output) = await sh.RunAsync("hostos-guestcheck image-run /var/lib/hostos/images /run/layout demo:1", TimeSpan.FromMinutes(3));
            vm.Console.Note(output);
            Assert.True(code == 0, output);
            Assert.Contains("PASS image-import: demo:1 with 2 layers", output);
            Assert.Contains("hello from an OCI image", output);     // the top layer's file
            Assert.Contains("whiteout-honoured", output);          // the base's file is hidden
            Assert.Contains("PASS image-container", output);
            Assert.Contains("PASS image-gc", output);
            Assert.Equal("hostos-init", await sh.CheckAsync("cat /proc/1/comm"));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>An ext4 disk image holding an OCI layout of a busybox image (mke2fs -d: no mounts).</summary>
    private static string BuildLayoutDisk(string work)
    {
        string Dir(string path) => Directory.CreateDirectory(Path.Combine(work, path)).FullName;
        string base_ = Dir("base"), top = Dir("top"), layout = Dir("layout"), blobs = Dir("layout/blobs/sha256");
        Directory.CreateDirectory(Path.Combine(base_, "bin"));
        Directory.CreateDirectory(Path.Combine(base_, "etc"));
        Directory.CreateDirectory(Path.Combine(base_, "tmp"));
        File.Copy("/bin/busybox", Path.Combine(base_, "bin", "busybox"));
        foreach (string applet in new[] { "sh", "cat", "echo", "id" }) File.CreateSymbolicLink(Path.Combine(base_, "bin", applet), "busybox");
        File.WriteAllText(Path.Combine(base_, "etc", "removed"), "the top layer removes me\n");
        Directory.CreateDirectory(Path.Combine(top, "etc"));
        File.WriteAllText(Path.Combine(top, "etc", "message"), "hello from an OCI image\n");
        File.WriteAllText(Path.Combine(top, "etc", ".wh.removed"), "");

        string baseTar = Path.Combine(work, "base.tar"), topTar = Path.Combine(work, "top.tar");
        Run("tar", "--numeric-owner", "--owner=0", "--group=0", "-C", base_, "-cf", baseTar, ".");
        Run("tar", "--numeric-owner", "--owner=0", "--group=0", "-C", top, "-cf", topTar, ".");
        byte[] baseGz;
        using (var ms = new MemoryStream())
        {
            using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(File.ReadAllBytes(baseTar));
            baseGz = ms.ToArray();
        }
        byte[] topBytes = File.ReadAllBytes(topTar);
        static string Sha(byte[] b) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(b));
        string Put(byte[] b)
        {
            File.WriteAllBytes(Path.Combine(blobs, Sha(b)[7..]), b);
            return Sha(b);
        }
        string baseDigest = Put(baseGz), topDigest = Put(topBytes);
        string diffIds = $"\"{Sha(File.ReadAllBytes(baseTar))}\",\"{Sha(topBytes)}\"";
        byte[] config = Encoding.UTF8.GetBytes(
            "{\"architecture\":\"amd64\",\"os\":\"linux\"," +
            "\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"sh\",\"-c\",\"cat /etc/message; [ -e /etc/removed ] || echo whiteout-honoured; echo x > /tmp/written; id -u\"]}," +
            "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[" + diffIds + "]}}");
        string configDigest = Put(config);
        static string Descriptor(string mediaType, string digest, long size) =>
            "{\"mediaType\":\"" + mediaType + "\",\"digest\":\"" + digest + "\",\"size\":" + size + "}";
        byte[] manifest = Encoding.UTF8.GetBytes(
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"," +
            "\"config\":" + Descriptor("application/vnd.oci.image.config.v1+json", configDigest, config.Length) + "," +
            "\"layers\":[" + Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", baseDigest, baseGz.Length) + "," +
            Descriptor("application/vnd.oci.image.layer.v1.tar", topDigest, topBytes.Length) + "]}");
        string manifestDigest = Put(manifest);
        File.WriteAllText(Path.Combine(layout, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        string entry = Descriptor("application/vnd.oci.image.manifest.v1+json", manifestDigest, manifest.Length);
        File.WriteAllText(Path.Combine(layout, "index.json"),
            "{\"schemaVersion\":2,\"manifests\":[" + entry[..^1] + ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"demo:1\"}}]}");
        string disk = Path.Combine(work, "layout.img");
        Run("truncate", "-s", "64M", disk);
        Run("mke2fs", "-q", "-t", "ext4", "-d", layout, disk);
        return disk;
    }

    private static void Run(string program, params string[] args)
    {
        var p = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardError = true })!;
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)}: {error}");
    }
}

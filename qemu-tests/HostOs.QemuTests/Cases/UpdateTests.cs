using System.Diagnostics;
using System.Security.Cryptography;
using HostOs.QemuTests.Harness;
using HostOs.UnitTests.Images;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// Updates inside the VM (issue 5, first part): the image's own updater streams a signed
/// payload from an HTTP server on the build host into the inactive slot's partition,
/// verifying as it goes; a tampered payload is refused by name and the running slot is
/// never touched. (Boot entries, blessing and rollback come with the next part.)
/// </summary>
public sealed class UpdateTests
{
    private const string Updater = "/usr/lib/hostos/updater/hostos-updater";

    private static string HostUpdater => Path.Combine(Repo.Root, "out", "publish", "hostos-updater", "hostos-updater");
    private static string Key => Path.Combine(Repo.Root, "out", "keys", "hostos-update.key");

    private static string Sha256(string path, long? length = null)
    {
        using FileStream f = File.OpenRead(path);
        if (length is null) return Convert.ToHexStringLower(SHA256.HashData(f));
        byte[] bytes = new byte[length.Value];
        f.ReadExactly(bytes);
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    [Fact]
    public async Task APayloadFromTheHostIsStreamedIntoTheInactiveSlot_AndATamperedOneIsRefused()
    {
        string work = Directory.CreateTempSubdirectory("update-").FullName;
        Process? server = null;
        try
        {
            // The repository: a full payload of the test image, signed with the key build.sh baked into it.
            string build = Path.Combine(Repo.Root, "out", "hostos-test");
            Directory.CreateDirectory(Path.Combine(work, "repo", "payloads"));
            Registry.Run(HostUpdater, "payload", "create", "--to", build, "--key", Key, "--level", "3", "--out", Path.Combine(work, "repo", "payloads", "full.hup"));
            Registry.Run(HostUpdater, "repo", "publish", "--dir", Path.Combine(work, "repo"), "--channel", "stable", "--key", Key);
            // The same payload with one byte of its data flipped (not in the index: fetched and applied by hand).
            byte[] bytes = File.ReadAllBytes(Path.Combine(work, "repo", "payloads", "full.hup"));
            bytes[^5000] ^= 0x40;
            File.WriteAllBytes(Path.Combine(work, "repo", "payloads", "tampered.hup"), bytes);

            int port = QemuMachine.HostPort();
            server = Process.Start(new ProcessStartInfo("python3", ["-m", "http.server", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "-d", Path.Combine(work, "repo")])
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
            })!;
            server.OutputDataReceived += (_, _) => { };
            server.ErrorDataReceived += (_, _) => { };
            server.BeginOutputReadLine();
            server.BeginErrorReadLine();

            long rootSize = new FileInfo(Path.Combine(build, "root.img")).Length;
            await using var vm = QemuMachine.Create("update");
            vm.Start();
            await vm.WaitForReadyAsync();
            SerialShell sh = await vm.ShellAsync();
            Assert.Equal("root-a", await sh.CheckAsync("cat /sys/class/block/vda2/uevent | sed -n 's/^PARTNAME=//p'"));
            string running = await sh.CheckAsync($"head -c {rootSize} /dev/vda2 | sha256sum | cut -d' ' -f1");

            string install = $"{Updater} install --server http://10.0.2.2:{port}/ --channel stable --trust /usr/lib/hostos/update-keys " +
                             "--current-version 0.0.1 --target /dev/vda3 --boot-dir /tmp/boot";
            var clock = Stopwatch.StartNew();
            string output = await sh.CheckAsync(install, TimeSpan.FromMinutes(5));
            vm.Console.Note($"install took {clock.Elapsed.TotalSeconds:F1} s (host clock, TCG):\n{output}");
            Assert.Contains("installed 0.1.0", output);
            Assert.Equal(Sha256(Path.Combine(build, "root.img")), await sh.CheckAsync($"head -c {rootSize} /dev/vda3 | sha256sum | cut -d' ' -f1"));
            Assert.Equal(Sha256(Path.Combine(build, "vmlinuz")), await sh.CheckAsync("sha256sum /tmp/boot/vmlinuz | cut -d' ' -f1"));
            Assert.Equal(Sha256(Path.Combine(build, "initrd.img")), await sh.CheckAsync("sha256sum /tmp/boot/initrd.img | cut -d' ' -f1"));

            // Tampered: its data hash fails, named; the running slot is what it was.
            await sh.CheckAsync($"{Updater} payload inspect /dev/null 2>&1 | grep -q 'truncated'");
            await sh.CheckAsync($"wget -q -O /tmp/tampered.hup http://10.0.2.2:{port}/payloads/tampered.hup");
            var (code, refused) = await sh.RunAsync($"{Updater} payload apply /tmp/tampered.hup --target /dev/vda3 --boot-dir /tmp/boot2 --trust /usr/lib/hostos/update-keys", TimeSpan.FromMinutes(5));
            Assert.Equal(1, code);
            Assert.Contains("does not match its hash: the payload is corrupt", refused);
            Assert.Equal("missing", await sh.CheckAsync("test -e /tmp/boot2/vmlinuz && echo present || echo missing"));
            Assert.Equal(running, await sh.CheckAsync($"head -c {rootSize} /dev/vda2 | sha256sum | cut -d' ' -f1"));
        }
        finally
        {
            if (server is { HasExited: false }) server.Kill();
            Directory.Delete(work, recursive: true);
        }
    }
}

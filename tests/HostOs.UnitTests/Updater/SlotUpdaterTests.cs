using System.Text;
using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Updater.Machine;
using HostOs.Updater.Payload;
using NSec.Cryptography;
using Xunit;

namespace HostOs.UnitTests.Updater;

/// <summary>
/// A machine's A/B life on image files and an ESP directory: install into the inactive
/// slot with its boot entry, the entries a reboot and a blessing leave, a delta from the
/// running slot, a fallback reported with its reason, rollbacks both ways, and refusals
/// that leave every entry as it was. (The same code on real partitions and a real
/// systemd-boot: qemu-tests UpdateTests.)
/// </summary>
public sealed class SlotUpdaterTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("slots-").FullName;
    private string Esp => Path.Combine(_work, "esp");
    private string Records => Path.Combine(_work, "boot-records");
    private string SlotA => Path.Combine(_work, "root-a.img");
    private string SlotB => Path.Combine(_work, "root-b.img");
    private readonly Key _key;
    private readonly PublicKey _public;

    public SlotUpdaterTests()
    {
        var (priv, pub) = UpdateKeys.Generate(Path.Combine(_work, "keys"), "release");
        _key = UpdateKeys.LoadPrivate(priv);
        _public = UpdateKeys.ParsePublic(File.ReadAllText(pub), pub);
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private static byte[] Image(int blocks, int seed)
    {
        var image = new byte[blocks * 4096];
        new Random(seed).NextBytes(image);
        return image;
    }

    /// <summary>A machine as the image builder leaves it: version 1.0.0 in slot a, its entry blessed, slot b empty.</summary>
    private byte[] FreshMachine()
    {
        byte[] v1 = Image(64, 1);
        File.WriteAllBytes(SlotA, v1);
        File.WriteAllBytes(SlotB, []);
        string boot = BootEntryFiles.BootDirectory(Esp, "1.0.0");
        Directory.CreateDirectory(boot);
        File.WriteAllText(Path.Combine(boot, "vmlinuz"), "kernel-1");
        File.WriteAllText(Path.Combine(boot, "initrd.img"), "initrd-1");
        BootEntryName counted = BootEntryFiles.Write(Esp, "1.0.0", "console=ttyS0 hostos.slot=a hostos.version=1.0.0");
        BootEntryFiles.Bless(Esp, counted);
        return v1;
    }

    private string Payload(string version, byte[] root, string? fromVersion = null, byte[]? fromRoot = null, string kernel = "kernel-1", string fromKernel = "kernel-1")
    {
        string to = PayloadTests.WriteBuild(_work, version, root, kernel, "initrd-1");
        ImageBuild? source = fromVersion is null ? null : ImageBuild.FromDirectory(PayloadTests.WriteBuild(_work, fromVersion, fromRoot!, fromKernel, "initrd-1"));
        string file = Path.Combine(_work, $"{fromVersion ?? "full"}-{version}.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(to), source, [_key], file);
        return file;
    }

    private SlotUpdater Machine(string slot, string version, List<string>? said = null) =>
        new(new SlotLayout(slot, version, slot == "a" ? SlotA : SlotB, SlotLayout.Other(slot), slot == "a" ? SlotB : SlotA),
            Esp, () => [_public], said is null ? null : said.Add, Records);

    private static PayloadManifest Install(SlotUpdater machine, string payload, bool allowDowngrade = false)
    {
        using FileStream f = File.OpenRead(payload);
        return machine.Install(f, allowDowngrade);
    }

    private string[] EntryFiles() => BootEntryFiles.List(Esp).Select(e => e.Name.FileName).Order(StringComparer.Ordinal).ToArray();

    /// <summary>What systemd-boot and a healthy boot of the next entry do: count the try, then bless it.</summary>
    private void BootAndBless(string version)
    {
        InstalledEntry e = BootEntryFiles.List(Esp).Single(x => x.Version == version);
        BootEntryFiles.Bless(Esp, e.Name);
    }

    [Fact]
    public void FullThenDelta_EachIntoTheOtherSlot_WithItsEntry_ThenAFallbackIsReportedAndRolledForward()
    {
        byte[] v1 = FreshMachine(), v2 = Image(80, 2), v3 = (byte[])v2.Clone();
        v3[4096 * 7 + 11] ^= 0xFF;

        // 1.0.0 (a) -> 1.1.0 full into b: a counted entry for b, 1.0.0's entry untouched.
        var said = new List<string>();
        SlotUpdater m = Machine("a", "1.0.0", said);
        Assert.Equal("1.1.0", Install(m, Payload("1.1.0", v2, kernel: "kernel-2")).Version);
        Assert.Equal(v2, File.ReadAllBytes(SlotB));
        Assert.Equal(v1, File.ReadAllBytes(SlotA));
        Assert.Equal(["hostos-1.0.0.conf", "hostos-1.1.0+3.conf"], EntryFiles());
        string text = File.ReadAllText(Path.Combine(Esp, "loader/entries/hostos-1.1.0+3.conf"));
        Assert.Contains("linux /hostos/1.1.0/vmlinuz\n", text);
        Assert.Contains("options console=ttyS0 quiet hostos.slot=b hostos.version=1.1.0\n", text);
        Assert.Equal("kernel-2", File.ReadAllText(Path.Combine(BootEntryFiles.BootDirectory(Esp, "1.1.0"), "vmlinuz")));
        Assert.Equal("1.1.0", m.Status().NextBoot);
        Assert.Contains(said, l => l.Contains("the next boot starts 1.1.0 from slot b", StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(Path.Combine(Esp, "loader/entries"), ".*"));

        // Booted and blessed; 1.1.0 (b) -> 1.2.0 as a delta from the running slot into a:
        // 1.0.0's entry and kernel go before slot a is overwritten.
        BootAndBless("1.1.0");
        m = Machine("b", "1.1.0");
        Assert.Null(m.Status().NextBoot);
        Assert.True(Install(m, Payload("1.2.0", v3, "1.1.0", v2, fromKernel: "kernel-2")).IsDelta);
        Assert.Equal(v3, File.ReadAllBytes(SlotA)[..v3.Length]);
        Assert.Equal(["hostos-1.1.0.conf", "hostos-1.2.0+3.conf"], EntryFiles());
        Assert.False(Directory.Exists(BootEntryFiles.BootDirectory(Esp, "1.0.0")));
        Assert.Equal("kernel-1", File.ReadAllText(Path.Combine(BootEntryFiles.BootDirectory(Esp, "1.2.0"), "vmlinuz")));

        // 1.2.0 fails its health check three times: systemd-boot leaves it bad and boots 1.1.0.
        File.Move(Path.Combine(Esp, "loader/entries/hostos-1.2.0+3.conf"), Path.Combine(Esp, "loader/entries/hostos-1.2.0+0-3.conf"));
        new BootRecord { Version = "1.2.0", Verdict = "failed: health check 'api' failed (exit 1)", Time = DateTimeOffset.UtcNow }.Save(Records);
        SlotStatus st = m.Status();
        Assert.Equal("1.2.0", st.RolledBackFrom);
        Assert.Equal("health check 'api' failed (exit 1)", st.RollbackReason);
        Assert.Null(st.NextBoot);
        Assert.Equal(["hostos-1.1.0.conf", "hostos-1.2.0+0-3.conf"], st.Entries.Select(e => e.Name.FileName));

        // No record at all: the new version never got as far as judging itself.
        BootRecord.Forget("1.2.0", Records);
        Assert.Contains("never reached its boot assessment", m.Status().RollbackReason);

        // The operator rolls forward to it: fresh tries, next boot.
        Assert.Contains("the next boot starts 1.2.0", m.Rollback());
        Assert.Equal(["hostos-1.1.0.conf", "hostos-1.2.0+3.conf"], EntryFiles());
        Assert.Equal("1.2.0", m.Status().NextBoot);
    }

    [Fact]
    public void RollbackToTheOlderVersion_MarksTheRunningOneBad_AndSaysWhy()
    {
        FreshMachine();
        Install(Machine("a", "1.0.0"), Payload("1.1.0", Image(64, 2)));
        BootAndBless("1.1.0");
        SlotUpdater m = Machine("b", "1.1.0");
        Assert.Contains("the next boot starts 1.0.0 (slot a); 1.1.0 stays installed, marked bad", m.Rollback());
        Assert.Equal(["hostos-1.0.0.conf", "hostos-1.1.0+0.conf"], EntryFiles());
        Assert.Equal("1.0.0", m.Status().NextBoot);
        // After the reboot, 1.0.0 says why it runs.
        SlotStatus st = Machine("a", "1.0.0").Status();
        Assert.Equal("1.1.0", st.RolledBackFrom);
        Assert.Equal("rolled back by the operator", st.RollbackReason);
        // Status and rollback never need the keys (a broken /etc/hostos/update.json must not stop them).
        var keyless = new SlotUpdater(new SlotLayout("a", "1.0.0", SlotA, "b", SlotB), Esp, () => throw new PayloadException("no keys"), null, Records);
        Assert.Equal("1.1.0", keyless.Status().RolledBackFrom);
        // On a machine with one version there is nothing to roll back to.
        File.Delete(Path.Combine(Esp, "loader/entries/hostos-1.1.0+0.conf"));
        Assert.Contains("there is no other version to roll back to", Assert.Throws<IOException>(() => Machine("a", "1.0.0").Rollback()).Message);
    }

    [Fact]
    public void RefusedPayloads_LeaveTheEntriesAsTheyWere()
    {
        byte[] v1 = FreshMachine();
        Install(Machine("a", "1.0.0"), Payload("1.1.0", Image(64, 2)));
        BootAndBless("1.1.0");
        SlotUpdater m = Machine("b", "1.1.0");
        string[] before = EntryFiles();
        byte[] slotA = File.ReadAllBytes(SlotA);

        // Unknown signer, downgrade, same version, a delta from another version: refused at
        // the head, before anything is touched (the old version's entry included).
        Key stranger = UpdateKeys.LoadPrivate(UpdateKeys.Generate(Path.Combine(_work, "k2"), "stranger").PrivateFile);
        string foreign = Path.Combine(_work, "foreign.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(PayloadTests.WriteBuild(_work, "1.3.0", Image(64, 3), "k", "i")), null, [stranger], foreign);
        Assert.Contains("signed only by unknown key", Assert.Throws<PayloadException>(() => Install(m, foreign)).Message);
        Assert.Contains("not newer than the running 1.1.0", Assert.Throws<PayloadException>(() => Install(m, Payload("1.0.5", Image(64, 4)))).Message);
        Assert.Contains("is the running version", Assert.Throws<PayloadException>(() => Install(m, Payload("1.1.0", Image(64, 5)), allowDowngrade: true)).Message);
        Assert.Contains("the delta is from 1.0.0, this machine runs 1.1.0", Assert.Throws<PayloadException>(() => Install(m, Payload("1.4.0", Image(64, 6), "1.0.0", v1))).Message);
        Assert.Equal(before, EntryFiles());
        Assert.Equal(slotA, File.ReadAllBytes(SlotA));

        // Corrupt data in the first operation: found before the first write, nothing touched.
        string early = Payload("1.5.0", Image(64, 7));
        byte[] e = File.ReadAllBytes(early);
        e[^3000] ^= 0x10;
        File.WriteAllBytes(early, e);
        Assert.Contains("the payload is corrupt", Assert.Throws<PayloadException>(() => Install(m, early)).Message);
        Assert.Equal(before, EntryFiles());

        // Corrupt data in a later operation (three of 1024 blocks): found when it comes; the
        // running version's entry is the one that boots, and no entry names the half-written slot.
        string good = Payload("1.5.0", Image(2100, 7));
        byte[] bytes = File.ReadAllBytes(good);
        bytes[^3000] ^= 0x10;
        File.WriteAllBytes(good, bytes);
        Assert.Contains("the payload is corrupt", Assert.Throws<PayloadException>(() => Install(m, good)).Message);
        Assert.Equal(["hostos-1.1.0.conf"], EntryFiles());
        Assert.Null(m.Status().NextBoot);

        // Truncated: the same.
        string cut = Payload("1.6.0", Image(64, 8));
        File.WriteAllBytes(cut, File.ReadAllBytes(cut)[..^100]);
        Assert.Contains("truncated", Assert.Throws<PayloadException>(() => Install(m, cut)).Message);
        Assert.Equal(["hostos-1.1.0.conf"], EntryFiles());

        // An update waits while the running version is on trial.
        string counted = Path.Combine(Esp, "loader/entries/hostos-1.1.0+2-1.conf");
        File.Move(Path.Combine(Esp, "loader/entries/hostos-1.1.0.conf"), counted);
        Assert.Contains("still on trial", Assert.Throws<PayloadException>(() => Install(m, Payload("1.7.0", Image(64, 9)))).Message);
    }

    [Fact]
    public void EntryFiles_ParseWriteAndOrder()
    {
        BootEntryFiles.Write(Esp, "2.0.0", "quiet hostos.slot=b hostos.version=2.0.0");
        File.WriteAllText(Path.Combine(Esp, "loader/entries/hostos-1.9.0+0-3.conf"), BootEntryFiles.Text("1.9.0", "hostos.slot=a"));
        File.WriteAllText(Path.Combine(Esp, "loader/entries/hostos-1.0.0.conf"), BootEntryFiles.Text("1.0.0", "hostos.slot=a"));
        File.WriteAllText(Path.Combine(Esp, "loader/entries/other.conf"), "title not ours\n");
        List<InstalledEntry> order = SlotUpdater.BootOrder(BootEntryFiles.List(Esp));
        Assert.Equal(["2.0.0", "1.0.0", "1.9.0"], order.Select(e => e.Version));
        Assert.Equal(["b", "a", "a"], order.Select(e => e.Slot));
        Assert.Equal(["counting, 3 tries left", "blessed", "bad"], order.Select(e => e.State));
        Assert.Throws<InvalidDataException>(() => BootRecord.PathOf("../../etc/passwd"));
        Assert.Equal(Encoding.UTF8.GetBytes(BootEntryFiles.Text("2.0.0", "quiet hostos.slot=b hostos.version=2.0.0")),
            File.ReadAllBytes(Path.Combine(Esp, "loader/entries/hostos-2.0.0+3.conf")));
    }
}

/// <summary>/etc/hostos/update.json: where updates come from and the daemon's policy.</summary>
public sealed class UpdateSettingsTests
{
    [Fact]
    public void DefaultsAndPolicy()
    {
        UpdateSettings s = UpdateSettings.Parse("""{ "server": "https://updates.example/hostos/" }""", "update.json");
        Assert.Equal("stable", s.Channel);
        Assert.Equal(60, s.CheckIntervalMinutes);
        Assert.Equal("manual", s.Reboot);
        Assert.True(s.InWindow(DateTimeOffset.Parse("2026-11-29T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture)));

        s = UpdateSettings.Parse("""{ "server": "http://10.0.0.1/", "reboot": "automatic", "maintenanceWindow": "23:30-02:00" }""", "update.json");
        Assert.True(s.InWindow(DateTimeOffset.Parse("2026-11-29T23:45:00Z", System.Globalization.CultureInfo.InvariantCulture)));
        Assert.True(s.InWindow(DateTimeOffset.Parse("2026-11-30T01:59:00Z", System.Globalization.CultureInfo.InvariantCulture)));
        Assert.False(s.InWindow(DateTimeOffset.Parse("2026-11-30T02:00:00Z", System.Globalization.CultureInfo.InvariantCulture)));
        Assert.False(s.InWindow(DateTimeOffset.Parse("2026-11-30T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary>A repository on local media is named by a file:// URL or an absolute path.</summary>
    [Theory]
    [InlineData("file:///media/updates/")]
    [InlineData("/media/updates")]
    public void ALocalDirectoryIsAServerToo(string server) =>
        Assert.Equal(server, UpdateSettings.Parse($$"""{ "server": "{{server}}" }""", "update.json").Server);

    [Theory]
    [InlineData("""{ "server": "ftp://x/" }""", "server 'ftp://x/' is not an http(s) URL or a file:// directory")]
    [InlineData("""{ "server": "file://nas/updates/" }""", "server 'file://nas/updates/': a file:// directory is on this machine (no host")]
    [InlineData("""{ "server": "updates/" }""", "server 'updates/' is not an http(s) URL or a file:// directory")]
    [InlineData("""{ "server": "http://x/", "reboot": "sometimes" }""", "reboot 'sometimes' must be 'manual' or 'automatic'")]
    [InlineData("""{ "server": "http://x/", "maintenanceWindow": "2-4" }""", "maintenanceWindow '2-4' is not HH:MM-HH:MM (UTC)")]
    [InlineData("""{ "server": "http://x/", "checkIntervalMinutes": -1 }""", "checkIntervalMinutes must be 0")]
    [InlineData("""{ "server": "http://x/", "keys": ["AAAA"] }""", "is not a base64 Ed25519 public key")]
    [InlineData("""{ "server": "http://x/", "rebooot": "manual" }""", "rebooot")]
    public void BadSettingsAreNamed(string json, string expected) =>
        Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => UpdateSettings.Parse(json, "update.json")).Message);
}

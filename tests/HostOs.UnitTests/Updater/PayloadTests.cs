using System.Security.Cryptography;
using System.Text;
using HostOs.Updater.Payload;
using NSec.Cryptography;

namespace HostOs.UnitTests.Updater;

/// <summary>
/// Payloads on image files (issue 5): full and delta round trips, and every way a payload
/// can be wrong, each refused by name before anything it says is used.
/// </summary>
public sealed class PayloadTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("payload-test-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    /// <summary>A build directory as build.sh makes it: root.img, vmlinuz, initrd.img, manifest.json.</summary>
    internal static string WriteBuild(string work, string version, byte[] root, string kernel, string initrd, string extraCmdline = "")
    {
        string dir = Directory.CreateDirectory(Path.Combine(work, "build-" + version)).FullName;
        File.WriteAllBytes(Path.Combine(dir, "root.img"), root);
        File.WriteAllText(Path.Combine(dir, "vmlinuz"), kernel);
        File.WriteAllText(Path.Combine(dir, "initrd.img"), initrd);
        File.WriteAllText(Path.Combine(dir, "manifest.json"),
            $$"""{ "name": "hostos", "version": "{{version}}", "cmdline": "console=ttyS0 quiet{{extraCmdline}} hostos.slot=a hostos.version={{version}}" }""");
        return dir;
    }

    private string MakeBuild(string version, byte[] root, string kernel = "kernel-1", string initrd = "initrd-1") =>
        WriteBuild(_work, version, root, kernel, initrd);

    /// <summary>Blocks half text, half random bytes (as binaries are), zero blocks in between.</summary>
    private static byte[] Image(int blocks, int seed)
    {
        var image = new byte[blocks * 4096];
        var random = new Random(seed);
        for (int b = 0; b < blocks; b++)
        {
            if (b % 7 == 3) continue; // zeros
            string line = $"block {b} of image {seed}: ";
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat(line + "\n", 2048 / line.Length + 1)));
            text.AsSpan(0, 2048).CopyTo(image.AsSpan(b * 4096));
            random.NextBytes(image.AsSpan(b * 4096 + 2048, 2048));
        }
        return image;
    }

    /// <summary>v2 from v1: a few blocks edited, one moved far away, and a longer image.</summary>
    private static byte[] NextVersion(byte[] v1)
    {
        var v2 = new byte[v1.Length + 8 * 4096];
        v1.CopyTo(v2, 0);
        v2[10 * 4096 + 100] ^= 0x55;                                 // an edit
        Encoding.ASCII.GetBytes("a new line in block 40").CopyTo(v2, 40 * 4096 + 7);
        v1.AsSpan(5 * 4096, 4096).CopyTo(v2.AsSpan(v1.Length + 3 * 4096)); // moved content
        return v2;
    }

    private (Key Key, PublicKey Public) NewKey(string name)
    {
        var (priv, pub) = UpdateKeys.Generate(Path.Combine(_work, "keys"), name);
        return (UpdateKeys.LoadPrivate(priv), UpdateKeys.ParsePublic(File.ReadAllText(pub), pub));
    }

    private PayloadManifest Apply(string payload, PublicKey[] trusted, string? source, string? current = null, bool downgrade = false, string target = "applied.img",
        bool? direct = null)
    {
        using FileStream f = File.OpenRead(payload);
        string? sourceBoot = source is null ? null : Path.GetDirectoryName(source);
        return new PayloadApplier(trusted) { AroundPageCache = direct }
            .Apply(f, new ApplyTarget(Path.Combine(_work, target), source, Path.Combine(_work, "boot"), sourceBoot), current, downgrade);
    }

    [Fact]
    public void KeysAreWrittenPrivateAndRefusedWhenMalformed()
    {
        var (priv, pub) = UpdateKeys.Generate(Path.Combine(_work, "k"), "signer");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(priv));
        Assert.Equal(44, File.ReadAllText(pub).Trim().Length);
        Assert.Throws<PayloadException>(() => UpdateKeys.Generate(Path.Combine(_work, "k"), "signer"));
        File.WriteAllText(Path.Combine(_work, "bad.key"), "something else\nAAAA\n");
        Assert.Contains("is not a HostOS update signing key", Assert.Throws<PayloadException>(() => UpdateKeys.LoadPrivate(Path.Combine(_work, "bad.key"))).Message);
        Assert.Contains("not the base64 of a 32-byte", Assert.Throws<PayloadException>(() => UpdateKeys.ParsePublic("AAAA", "x.pub")).Message);
        // A key's id is the first 8 bytes of its SHA-256, whoever computes it: payloads and
        // indexes signed by earlier versions name their keys so.
        PublicKey key = UpdateKeys.ParsePublic(File.ReadAllText(pub), pub);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Convert.FromBase64String(File.ReadAllText(pub).Trim()))[..8]), UpdateKeys.KeyId(key));
    }

    [Fact]
    public void FullThenDelta_RoundTrip_TheDeltaSmallAndCopying()
    {
        var (key, pub) = NewKey("k1");
        byte[] v1 = Image(200, 1), v2 = NextVersion(v1);
        string b1 = MakeBuild("1.0.0", v1), b2 = MakeBuild("1.1.0", v2, kernel: "kernel-2");
        string full = Path.Combine(_work, "full.hup"), delta = Path.Combine(_work, "delta.hup");

        var fullResult = new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), null, [key], full);
        Assert.Equal(0, fullResult.Count(OperationType.Copy));
        PayloadManifest m = Apply(full, [pub], null);
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "applied.img")));
        Assert.Equal("kernel-2", File.ReadAllText(Path.Combine(_work, "boot", "vmlinuz")));
        Assert.Equal("console=ttyS0 quiet", m.Cmdline);

        var deltaResult = new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        Assert.True(deltaResult.Count(OperationType.Copy) > 0);
        Assert.True(deltaResult.PayloadBytes < fullResult.PayloadBytes / 3, $"delta {deltaResult.PayloadBytes} vs full {fullResult.PayloadBytes}");
        File.Delete(Path.Combine(_work, "applied.img"));
        m = Apply(delta, [pub], Path.Combine(b1, "root.img"), current: "1.0.0");
        Assert.True(m.IsDelta);
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "applied.img")));
        // Around the page cache, as on a machine's block device: aligned copies, unaligned
        // outputs through the aligned buffer; the same bytes, full and delta.
        Apply(full, [pub], null, direct: true, target: "full-direct.img");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "full-direct.img")));
        Apply(delta, [pub], Path.Combine(b1, "root.img"), current: "1.0.0", direct: true, target: "delta-direct.img");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta-direct.img")));
        // Boot files: the unchanged initramfs comes from the running version's, by hash.
        Assert.Equal(OperationType.Copy, m.BootFiles.Single(f => f.Name == "initrd.img").Type);
        Assert.Equal("initrd-1", File.ReadAllText(Path.Combine(_work, "boot", "initrd.img")));
        Assert.Equal("kernel-2", File.ReadAllText(Path.Combine(_work, "boot", "vmlinuz")));
        File.WriteAllText(Path.Combine(b1, "initrd.img"), "initrd-X");
        Assert.Contains("is not the one this delta was made from", Assert.Throws<PayloadException>(() => Apply(delta, [pub], Path.Combine(b1, "root.img"))).Message);
    }

    /// <summary>
    /// A patched boot file is checked by what the patch makes; the running file it starts from
    /// is hashed only when that does not match, to name it as the cause.
    /// </summary>
    [Fact]
    public void APatchedBootFileFromAnotherRunningFileIsNamed()
    {
        var (key, pub) = NewKey("k1");
        string common = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48 << 10));
        byte[] v1 = Image(50, 1);
        string b1 = MakeBuild("1.0.0", v1, kernel: common + "kernel-1"), b2 = MakeBuild("1.1.0", NextVersion(v1), kernel: common + "kernel-2");
        string delta = Path.Combine(_work, "delta.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        PayloadManifest m = Apply(delta, [pub], Path.Combine(b1, "root.img"), current: "1.0.0");
        Assert.Equal(OperationType.Patch, m.BootFiles.Single(f => f.Name == "vmlinuz").Type);
        Assert.Equal(common + "kernel-2", File.ReadAllText(Path.Combine(_work, "boot", "vmlinuz")));

        // The kept head of the old file differs: what the patch makes no longer matches. Shorter
        // than what the patch keeps: it does not apply. Either way the old file is named.
        string expected = $"boot file vmlinuz: {Path.Combine(b1, "vmlinuz")} is not the one this delta was made from";
        foreach (string other in new[] { "#" + common[1..] + "kernel-1", "kernel-1" })
        {
            File.WriteAllText(Path.Combine(b1, "vmlinuz"), other);
            Assert.Equal(expected, Assert.Throws<PayloadException>(() => Apply(delta, [pub], Path.Combine(b1, "root.img"), current: "1.0.0")).Message);
        }
    }

    [Fact]
    public void AMissingSourceOrADeviceThatIsNotThereIsNamed_NothingMadeUnderDev()
    {
        var (key, pub) = NewKey("k1");
        byte[] v1 = Image(40, 1);
        string b1 = MakeBuild("1.0.0", v1), b2 = MakeBuild("1.1.0", NextVersion(v1));
        string full = Path.Combine(_work, "full.hup"), delta = Path.Combine(_work, "delta.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), null, [key], full);
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        string slot = $"/dev/hostos-test-no-such-slot-{Environment.ProcessId}";
        Assert.Equal($"{slot} is not a block device", Assert.Throws<PayloadException>(() => Apply(full, [pub], null, target: slot)).Message);
        Assert.False(File.Exists(slot));
        string missing = Path.Combine(_work, "missing.img");
        Assert.Equal($"{missing} does not exist", Assert.Throws<PayloadException>(() => Apply(delta, [pub], missing)).Message);
    }

    [Fact]
    public void ADeltaNeedsItsExactSource()
    {
        var (key, pub) = NewKey("k1");
        byte[] v1 = Image(40, 1);
        string b1 = MakeBuild("1.0.0", v1), b2 = MakeBuild("1.1.0", NextVersion(v1));
        string delta = Path.Combine(_work, "delta.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        byte[] other = (byte[])v1.Clone();
        other[5] ^= 1;
        File.WriteAllBytes(Path.Combine(_work, "other.img"), other);
        Assert.Contains("is not version 1.0.0", Assert.Throws<PayloadException>(() => Apply(delta, [pub], Path.Combine(_work, "other.img"))).Message);
        Assert.Contains("needs the source image", Assert.Throws<PayloadException>(() => Apply(delta, [pub], null)).Message);
        Assert.Contains("a delta goes forward", Assert.Throws<PayloadException>(() =>
            new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b1), ImageBuild.FromDirectory(b2), [key], delta)).Message);
    }

    [Fact]
    public void TamperedTruncatedUnknownAndDowngradeAreRefusedByName()
    {
        var (key, pub) = NewKey("k1");
        var (_, stranger) = NewKey("k2");
        string b = MakeBuild("2.0.0", Image(30, 2));
        string payload = Path.Combine(_work, "p.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b), null, [key], payload);
        byte[] good = File.ReadAllBytes(payload);

        string Refusal(byte[] bytes, PublicKey[]? trusted = null, string? current = null)
        {
            string f = Path.Combine(_work, "bad.hup");
            File.WriteAllBytes(f, bytes);
            return Assert.Throws<PayloadException>(() => Apply(f, trusted ?? [pub], null, current)).Message;
        }

        // A flipped bit in the data: its hash; in the manifest: the signature.
        byte[] flipped = (byte[])good.Clone();
        flipped[^100] ^= 0x10;
        Assert.Contains("does not match its hash: the payload is corrupt", Refusal(flipped));
        // A flip in the last boot file: the first one was verified, yet is not put in place alone.
        flipped = (byte[])good.Clone();
        flipped[^3] ^= 0x10;
        Assert.Contains("boot file initrd.img: its data does not match its hash", Refusal(flipped));
        Assert.Empty(Directory.GetFiles(Path.Combine(_work, "boot")));
        flipped = (byte[])good.Clone();
        flipped[PayloadFile.HeaderLength + 20] ^= 0x01;
        Assert.Contains("does not match: the payload was altered", Refusal(flipped));
        Assert.Contains("truncated", Refusal(good[..(good.Length - 10)]));
        Assert.Empty(Directory.GetFiles(Path.Combine(_work, "boot")));
        Assert.Contains("truncated", Refusal(good[..30]));
        Assert.Contains("signed only by unknown key", Refusal(good, [stranger]));
        Assert.Contains("not a HostOS update payload", Refusal(Encoding.ASCII.GetBytes("GIF89a..............................")));
        Assert.Contains("not newer than the running 2.0.0", Refusal(good, current: "2.0.0"));
        Assert.Contains("not newer than the running 3.1.0", Refusal(good, current: "3.1.0"));
        Assert.Contains("bytes after its last boot file", Refusal([.. good, 0]));
        // Allowed explicitly, the downgrade goes through.
        Apply(payload, [pub], null, current: "3.1.0", downgrade: true);
    }

    [Fact]
    public void SignedByTwoKeys_EitherIsEnough()
    {
        var (oldKey, oldPub) = NewKey("old");
        var (newKey, newPub) = NewKey("new");
        string b = MakeBuild("1.2.3", Image(20, 3));
        string payload = Path.Combine(_work, "rotated.hup");
        new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b), null, [oldKey, newKey], payload);
        Assert.Equal("1.2.3", Apply(payload, [oldPub], null).Version);
        Assert.Equal("1.2.3", Apply(payload, [newPub], null).Version);
    }

    /// <summary>A payload whose manifest says what the test wants, properly signed: validation, not the signature, must refuse it.</summary>
    private static byte[] Signed(PayloadManifest manifest, Key key, byte[] data) => [.. PayloadFile.Head(manifest.ToJsonBytes(), [key]), .. data];

    private static string Hash(byte[] b) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b));

    [Theory]
    [InlineData("overlap", "target block 0 is written twice")]
    [InlineData("gap", "are never written")]
    [InlineData("outside", "is not [start, count] within 4 blocks")]
    [InlineData("copy-in-full", "reads the source, but this is a full payload")]
    [InlineData("huge-data", "data length")]
    [InlineData("huge-patch-source", "reads 20480000 source bytes")]
    [InlineData("hashed-zeros", "a zero operation carries no hash")]
    [InlineData("hashed-copy", "a copy operation carries no hash")]
    [InlineData("unhashed-diff", "dstSha256 is not")]
    [InlineData("no-boot", "must carry vmlinuz and initrd.img")]
    [InlineData("boot-copy-changes", "a copy's srcSha256 and sha256 must be the same")]
    [InlineData("slot-in-cmdline", "without hostos.slot=")]
    [InlineData("verity-elsewhere", "dm-verity root hash 13fbef2465c1e3ba23f5cc6bc9cde745c4ee25fac3e05688e0099c68ced87187 is not the target's")]
    [InlineData("verity-unnamed", "cmdline has no hostos.verity=")]
    [InlineData("verity-no-tree", "leaves no room for the hash tree")]
    [InlineData("bad-version", "is not MAJOR.MINOR.PATCH")]
    [InlineData("verity-without-root", "the target has no dm-verity root hash to check the tree against")]
    [InlineData("verity-elsewhere-in-target", "the tree of 2 data blocks is [2,1] and ends the 4-block target")]
    [InlineData("verity-not-last", "so it must be the last operation")]
    [InlineData("leaves-without-tree", "dstLeavesSha256 belongs only to data operations of a format 4 payload with a hash tree")]
    [InlineData("sha-with-tree", "in a format 4 payload with a hash tree, an operation's output is checked by dstLeavesSha256, not dstSha256")]
    [InlineData("no-leaves-with-tree", "dstLeavesSha256 is not")]
    [InlineData("leaves-in-format-3", "dstLeavesSha256 belongs only to data operations of a format 4 payload with a hash tree")]
    public void SignedButMalformedManifestsAreRefused(string what, string expected)
    {
        const string VerityRoot = "13fbef2465c1e3ba23f5cc6bc9cde745c4ee25fac3e05688e0099c68ced87187";
        var (key, pub) = NewKey("k1");
        string zero = Hash(new byte[4096]);
        Operation Zero(long start, long count) => new() { Type = OperationType.Zero, Dst = [[start, count]] };
        Operation Tree(long start, long count) => new() { Type = OperationType.Verity, Dst = [[start, count]], DstSha256 = zero };
        List<Operation> ops = what switch
        {
            "overlap" => [Zero(0, 4), Zero(0, 1)],
            "gap" => [Zero(0, 2)],
            "outside" => [Zero(0, 4), Zero(4, 2)],
            "copy-in-full" => [Zero(0, 3), new() { Type = OperationType.Copy, Dst = [[3, 1]], Src = [[0, 1]] }],
            "huge-data" => [Zero(0, 3), new() { Type = OperationType.Data, Dst = [[3, 1]], DataLength = 1L << 40, DataSha256 = zero, DstSha256 = zero }],
            "huge-patch-source" => [Zero(0, 3), new() { Type = OperationType.Patch, Dst = [[3, 1]], Src = [[0, 5000]], DataLength = 1, DataSha256 = zero, DstSha256 = zero }],
            "hashed-zeros" => [new() { Type = OperationType.Zero, Dst = [[0, 4]], DstSha256 = zero }],
            "hashed-copy" => [Zero(0, 3), new() { Type = OperationType.Copy, Dst = [[3, 1]], Src = [[0, 1]], DstSha256 = zero }],
            "unhashed-diff" => [Zero(0, 3), new() { Type = OperationType.Diff, Dst = [[3, 1]], Src = [[0, 1]], DataLength = 1, DataSha256 = zero }],
            "verity-without-root" => [Zero(0, 3), Tree(3, 1)],
            "verity-elsewhere-in-target" => [Zero(0, 2), Tree(2, 2)],
            "verity-not-last" => [Tree(3, 1), Zero(0, 3)],
            "leaves-without-tree" => [Zero(0, 3), new() { Type = OperationType.Data, Dst = [[3, 1]], DataLength = 1, DataSha256 = zero, DstSha256 = zero, DstLeavesSha256 = zero }],
            "sha-with-tree" => [Zero(0, 2), new() { Type = OperationType.Data, Dst = [[2, 1]], DataLength = 1, DataSha256 = zero, DstSha256 = zero }, Tree(3, 1)],
            "no-leaves-with-tree" => [Zero(0, 2), new() { Type = OperationType.Data, Dst = [[2, 1]], DataLength = 1, DataSha256 = zero }, Tree(3, 1)],
            "leaves-in-format-3" => [Zero(0, 2), new() { Type = OperationType.Data, Dst = [[2, 1]], DataLength = 1, DataSha256 = zero, DstLeavesSha256 = zero }, Tree(3, 1)],
            _ => [Zero(0, 4)],
        };
        var boot = what == "no-boot" ? new List<BootFile>() : [
            what == "boot-copy-changes"
                ? new BootFile { Name = "vmlinuz", Type = OperationType.Copy, Size = 1, Sha256 = zero, SrcSha256 = Hash([1]), DataLength = 0 }
                : new BootFile { Name = "vmlinuz", Size = 1, Sha256 = zero, DataLength = 1, DataSha256 = zero },
            new BootFile { Name = "initrd.img", Size = 1, Sha256 = zero, DataLength = 1, DataSha256 = zero }];
        var manifest = new PayloadManifest
        {
            Format = what == "leaves-in-format-3" ? 3 : PayloadManifest.CurrentFormat,
            Version = what == "bad-version" ? "1.0" : "1.0.0",
            Target = new ImageIdentity
            {
                Version = "1.0.0", Size = 4 * 4096, Sha256 = zero,
                VerityRootHash = what switch
                {
                    "verity-elsewhere" or "verity-unnamed" => zero,
                    "verity-no-tree" or "verity-elsewhere-in-target" or "verity-not-last" or "sha-with-tree" or "no-leaves-with-tree" or "leaves-in-format-3" => VerityRoot,
                    _ => null,
                },
            },
            Source = what is "huge-patch-source" or "hashed-copy" or "unhashed-diff" or "boot-copy-changes" ? new ImageIdentity { Version = "0.9.0", Size = 8000 * 4096, Sha256 = zero } : null,
            Cmdline = what switch
            {
                "slot-in-cmdline" => "quiet hostos.slot=b",
                "verity-elsewhere" => $"quiet hostos.verity=2:{VerityRoot}:00",
                "verity-no-tree" => $"quiet hostos.verity=4:{VerityRoot}:00",
                "verity-elsewhere-in-target" => $"quiet hostos.verity=2:{VerityRoot}:00",
                "verity-not-last" or "sha-with-tree" or "no-leaves-with-tree" or "leaves-in-format-3" => $"quiet hostos.verity=3:{VerityRoot}:00",
                _ => "quiet",
            },
            Operations = ops,
            BootFiles = boot,
        };
        string f = Path.Combine(_work, "crafted.hup");
        File.WriteAllBytes(f, Signed(manifest, key, [1, 2]));
        Assert.Contains(expected, Assert.Throws<PayloadException>(() => Apply(f, [pub], null)).Message);
    }

    /// <summary>
    /// Copies longer than the applier's 1 MiB chunk, whose source and destination extents
    /// are cut at different places, written out of order (so the target is read back to be
    /// hashed): the result is exact; copies that make another image than the manifest names
    /// are refused by name.
    /// </summary>
    [Fact]
    public void LongSplitOutOfOrderCopiesAreStreamedAndVerified()
    {
        var (key, pub) = NewKey("k1");
        byte[] source = Image(700, 5);
        byte[] target = new byte[700 * 4096];
        source.AsSpan(0, 400 * 4096).CopyTo(target.AsSpan(300 * 4096)); // source 0..399 -> target 300..699
        source.AsSpan(400 * 4096).CopyTo(target);                      // source 400..699 -> target 0..299
        string b1 = MakeBuild("1.0.0", source);
        byte[] boot = "boot"u8.ToArray();
        PayloadManifest Manifest(long first) => new()
        {
            Version = "1.1.0",
            Source = new ImageIdentity { Version = "1.0.0", Size = source.Length, Sha256 = Hash(source) },
            Target = new ImageIdentity { Version = "1.1.0", Size = target.Length, Sha256 = Hash(target) },
            Operations =
            [
                new() { Type = OperationType.Copy, Dst = [[300, 100], [400, 300]], Src = [[first, 250], [first + 250, 150]] },
                new() { Type = OperationType.Copy, Dst = [[0, 300]], Src = [[400, 300]] },
            ],
            BootFiles =
            [
                new BootFile { Name = "vmlinuz", Size = 4, Sha256 = Hash(boot), DataLength = 13, DataSha256 = Hash(Zstd(boot)) },
                new BootFile { Name = "initrd.img", Size = 4, Sha256 = Hash(boot), DataLength = 13, DataSha256 = Hash(Zstd(boot)) },
            ],
        };
        string f = Path.Combine(_work, "copies.hup");
        File.WriteAllBytes(f, Signed(Manifest(0), key, [.. Zstd(boot), .. Zstd(boot)]));
        Apply(f, [pub], Path.Combine(b1, "root.img"), current: "1.0.0");
        Assert.Equal(target, File.ReadAllBytes(Path.Combine(_work, "applied.img")));

        File.WriteAllBytes(f, Signed(Manifest(1), key, [.. Zstd(boot), .. Zstd(boot)]));
        Assert.Contains("the written image's sha256 is",
            Assert.Throws<PayloadException>(() => Apply(f, [pub], Path.Combine(b1, "root.img"), current: "1.0.0")).Message);
    }

    /// <summary>
    /// What a real update does to metadata: a table of 4-byte pointers all moved by the same
    /// amount (a diff against the old table, a few distinct bytes among zeros), and an
    /// initramfs that differs only at its end (a patch of the middle, both ends kept).
    /// </summary>
    [Fact]
    public void ShiftedPointersBecomeADiffAndABootFileKeepsItsUnchangedEnds()
    {
        var (key, pub) = NewKey("k1");
        byte[] v1 = Image(64, 7);
        var random = new Random(3);
        for (int k = 0; k < 8 * 1024; k++) System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(v1.AsSpan(16 * 4096 + 4 * k), random.Next(1 << 20));
        byte[] v2 = (byte[])v1.Clone();
        for (int k = 0; k < 8 * 1024; k++)
        {
            var at = v2.AsSpan(16 * 4096 + 4 * k);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(at, System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(at) + 7 * 4096);
        }
        string body = string.Concat(Enumerable.Range(0, 4000).Select(i => $"{i * 7919 % 10007} "));
        string b1 = MakeBuild("1.0.0", v1, initrd: body + "VERSION=1.0.0\n"), b2 = MakeBuild("1.1.0", v2, initrd: body + "VERSION=1.1.0\n");
        string delta = Path.Combine(_work, "delta.hup");
        var result = new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        Operation diff = Assert.Single(result.Manifest.Operations, o => o.Type == OperationType.Diff);
        Assert.Equal([16L, 8], diff.Src![0]);
        // 8192 pointers in 32 KiB: what remains is about a bit each, the carries.
        Assert.True(diff.DataLength < 2048, $"the diff of the moved pointers is {diff.DataLength} bytes");
        BootFile initrd = result.Manifest.BootFiles.Single(f => f.Name == "initrd.img");
        Assert.Equal(OperationType.Patch, initrd.Type);
        Assert.Equal([body.Length + 10, 3], initrd.Keep!);

        PayloadManifest m = Apply(delta, [pub], Path.Combine(b1, "root.img"), current: "1.0.0");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "applied.img")));
        Assert.Equal(body + "VERSION=1.1.0\n", File.ReadAllText(Path.Combine(_work, "boot", "initrd.img")));
    }

    /// <summary>
    /// An apply cut off part way (cancelled after its first operation, as by a power cut)
    /// leaves what it wrote; applying the same payload again finds that in the target,
    /// verified against the manifest, skips those operations' data, and ends with the exact
    /// image. A block spoiled in between makes the resumption start at its operation.
    /// </summary>
    [Fact]
    public void AnInterruptedApplyResumesFromWhatTheTargetVerifiablyHolds()
    {
        var (key, pub) = NewKey("k1");
        byte[] image = new byte[3000 * 4096];
        new Random(11).NextBytes(image); // no zero blocks: three data operations of at most 4 MiB
        string b1 = MakeBuild("1.0.0", image);
        string full = Path.Combine(_work, "full.hup");
        var result = new PayloadBuilder(1).Create(ImageBuild.FromDirectory(b1), null, [key], full);
        Assert.Equal(3, result.Count(OperationType.Data));
        string target = Path.Combine(_work, "slot.img");
        var said = new List<string>();
        PayloadManifest ApplyOnce(CancellationToken cancel = default, Action<PayloadApplier.Progress>? progress = null)
        {
            using FileStream f = File.OpenRead(full);
            return new PayloadApplier([pub], said.Add).Apply(f, new ApplyTarget(target, null, Path.Combine(_work, "boot")), null, false, progress, cancel);
        }

        using (var cts = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => ApplyOnce(cts.Token, p => { if (p.Done >= 1024 * 4096) cts.Cancel(); }));
        }
        Assert.DoesNotContain(said, l => l.StartsWith("resuming", StringComparison.Ordinal));
        ApplyOnce();
        Assert.Contains("resuming: the target already holds the verified output of operations 0..0 of 3 (4194304 bytes)", said.Last(l => l.StartsWith("resuming", StringComparison.Ordinal)));
        Assert.Equal(image, File.ReadAllBytes(target));

        // Everything there: all three are kept. Then a block of the second spoiled: from it on.
        said.Clear();
        ApplyOnce();
        Assert.Contains("operations 0..2 of 3", Assert.Single(said, l => l.StartsWith("resuming", StringComparison.Ordinal)));
        using (var slot = File.OpenWrite(target))
        {
            slot.Position = 1500 * 4096 + 7;
            slot.WriteByte(0x5a);
        }
        said.Clear();
        ApplyOnce();
        Assert.Contains("operations 0..0 of 3", Assert.Single(said, l => l.StartsWith("resuming", StringComparison.Ordinal)));
        Assert.Equal(image, File.ReadAllBytes(target));
    }

    /// <summary>
    /// Roots with a dm-verity tree, as every HostOS root has: the payloads carry no tree (a
    /// verity operation, last, has the applier build it); full and delta applies give the
    /// exact image; a delta applied to a source that is not its version is found by the
    /// tree's root and named; a resumed apply keeps what holds but always builds the tree
    /// again (it is the check of all of it); a build whose tree is not its data's is refused.
    /// </summary>
    [Fact]
    public void RootsWithAHashTree_ThePayloadCarriesNoTree_TheApplierBuildsAndChecksIt()
    {
        var (key, pub) = NewKey("k1");
        byte[] salt = Convert.FromHexString("0123456789abcdef");
        (byte[] Image, string Cmdline) WithTree(byte[] data)
        {
            string file = Path.Combine(_work, "tree.img");
            File.WriteAllBytes(file, data);
            HostOs.Platform.Disk.VerityParameters p = HostOs.Verity.VerityTree.Append(file, salt);
            return (File.ReadAllBytes(file), $" hostos.verity={p.ToCommandLineValue()}");
        }
        byte[] d1 = Image(600, 1);
        var (v1, c1) = WithTree(d1);
        var (v2, c2) = WithTree(NextVersion(d1));
        string b1 = WriteBuild(_work, "1.0.0", v1, "kernel-1", "initrd-1", c1), b2 = WriteBuild(_work, "1.1.0", v2, "kernel-1", "initrd-1", c2);
        long dataBlocks = 608, treeBlocks = HostOs.Verity.VerityTree.TreeBlocks(dataBlocks);
        Assert.Equal((dataBlocks + treeBlocks) * 4096, v2.Length);

        string full = Path.Combine(_work, "full.hup"), delta = Path.Combine(_work, "delta.hup");
        var fullResult = new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), null, [key], full);
        var deltaResult = new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta);
        foreach (var r in new[] { fullResult, deltaResult })
        {
            Assert.Equal(4, r.Manifest.Format);
            Operation last = r.Manifest.Operations[^1];
            Assert.Equal(OperationType.Verity, last.Type);
            Assert.Equal([dataBlocks, treeBlocks], last.Dst.Single());
            Assert.Equal(0, last.DataLength);
            Assert.All(r.Manifest.Operations.SkipLast(1), o => Assert.True(o.Dst.All(e => e[0] + e[1] <= dataBlocks)));
            // What data makes is named by its blocks' digests, which the applier then builds the tree from.
            Assert.All(r.Manifest.Operations.Where(o => o.Type is OperationType.Data or OperationType.Patch or OperationType.Diff),
                o => Assert.True(o.DstSha256 is null && o.DstLeavesSha256 is not null));
        }
        Assert.Contains(fullResult.Manifest.Operations, o => o.Type == OperationType.Data);
        Assert.Equal(c1.Split(':')[1], deltaResult.Manifest.Source!.VerityRootHash);

        var fullSaid = new List<string>();
        using (FileStream f = File.OpenRead(full))
        {
            new PayloadApplier([pub], fullSaid.Add).Apply(f, new ApplyTarget(Path.Combine(_work, "full.img"), null, Path.Combine(_work, "boot"), null), null, false);
        }
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "full.img")));
        // A full payload's blocks are all data or zeros: no digest had to be read back.
        Assert.Equal("dm-verity tree built from 608 blocks: 608 digests known (checked outputs, zeros), 0 read back while the others were written, 0 after",
            Assert.Single(fullSaid, l => l.StartsWith("dm-verity", StringComparison.Ordinal)));
        Apply(delta, [pub], Path.Combine(b1, "root.img"), target: "delta.img");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta.img")));
        // Around the page cache, as on a block device: the tree followers read the copies back directly.
        Apply(delta, [pub], Path.Combine(b1, "root.img"), target: "delta-direct.img", direct: true);
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta-direct.img")));
        // The full payload applied again over itself: its data operations are recognised by their blocks' digests and kept.
        fullSaid.Clear();
        using (FileStream f = File.OpenRead(full))
        {
            new PayloadApplier([pub], fullSaid.Add).Apply(f, new ApplyTarget(Path.Combine(_work, "full.img"), null, Path.Combine(_work, "boot"), null), null, false);
        }
        int fullCount = fullResult.Manifest.Operations.Count;
        Assert.Contains($"operations 0..{fullCount - 2} of {fullCount}", Assert.Single(fullSaid, l => l.StartsWith("resuming", StringComparison.Ordinal)));
        // ... and the digests that recognised them are the tree's: nothing is read back to be hashed again.
        Assert.Equal("dm-verity tree built from 608 blocks: 608 digests known (checked outputs, zeros), 0 read back while the others were written, 0 after",
            Assert.Single(fullSaid, l => l.StartsWith("dm-verity", StringComparison.Ordinal)));
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "full.img")));

        // Format 3 (outputs named by their SHA-256) is still made on request and applied.
        string full3 = Path.Combine(_work, "full3.hup"), delta3 = Path.Combine(_work, "delta3.hup");
        var full3Result = new PayloadBuilder(3, format: 3).Create(ImageBuild.FromDirectory(b2), null, [key], full3);
        var delta3Result = new PayloadBuilder(3, format: 3).Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], delta3);
        foreach (var r in new[] { full3Result, delta3Result })
        {
            Assert.Equal(3, r.Manifest.Format);
            Assert.All(r.Manifest.Operations.Where(o => o.Type is OperationType.Data or OperationType.Patch or OperationType.Diff),
                o => Assert.True(o.DstSha256 is not null && o.DstLeavesSha256 is null));
        }
        Apply(full3, [pub], null, target: "full3.img");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "full3.img")));
        Apply(delta3, [pub], Path.Combine(b1, "root.img"), target: "delta3.img");
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta3.img")));
        Apply(delta3, [pub], Path.Combine(b1, "root.img"), target: "delta3-direct.img", direct: true);
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta3-direct.img")));

        // All there again: everything but the tree is kept, and the tree is built and checked.
        var said = new List<string>();
        using (FileStream f = File.OpenRead(delta))
        {
            new PayloadApplier([pub], said.Add).Apply(f, new ApplyTarget(Path.Combine(_work, "delta.img"), Path.Combine(b1, "root.img"), Path.Combine(_work, "boot"), b1), null, false);
        }
        int count = deltaResult.Manifest.Operations.Count;
        Assert.Contains($"operations 0..{count - 2} of {count}", Assert.Single(said, l => l.StartsWith("resuming", StringComparison.Ordinal)));
        Assert.Matches(@"^dm-verity tree built from 608 blocks: \d+ digests known \(checked outputs, zeros\), \d+ read back while the others were written, \d+ after$",
            Assert.Single(said, l => l.StartsWith("dm-verity", StringComparison.Ordinal)));
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(_work, "delta.img")));

        // A source of the right version in name whose bytes differ where a copy reads: found by the root, named.
        byte[] other = (byte[])v1.Clone();
        other[100 * 4096 + 5] ^= 1;
        File.WriteAllBytes(Path.Combine(_work, "other.img"), other);
        string error = Assert.Throws<PayloadException>(() => Apply(delta, [pub], Path.Combine(_work, "other.img"), target: "other-target.img")).Message;
        Assert.StartsWith($"operation {count - 1} (Verity): the written data's dm-verity root hash is ", error);
        Assert.Contains($": the source {Path.Combine(_work, "other.img")} is not version 1.0.0", error);
        // ... or where a patch or diff reads it: found at once by that operation's output, named the same way.
        int made = deltaResult.Manifest.Operations.FindIndex(o => o.Type is OperationType.Patch or OperationType.Diff);
        other = (byte[])v1.Clone();
        foreach (long[] e in deltaResult.Manifest.Operations[made].Src!) other.AsSpan((int)(e[0] * 4096), (int)(e[1] * 4096)).Fill(0x5a);
        File.WriteAllBytes(Path.Combine(_work, "other.img"), other);
        error = Assert.Throws<PayloadException>(() => Apply(delta, [pub], Path.Combine(_work, "other.img"), target: "fresh-target.img")).Message;
        Assert.StartsWith($"operation {made} (", error);
        Assert.Contains("its output does not match its hash: the source ", error);
        Assert.Contains("is not version 1.0.0", error);

        // A build whose tree is not its data's.
        byte[] spoiled = (byte[])v2.Clone();
        spoiled[^5] ^= 1;
        string b3 = WriteBuild(_work, "1.2.0", spoiled, "kernel-1", "initrd-1", c2);
        Assert.Contains("the hash tree after its data is not the one its data gives",
            Assert.Throws<PayloadException>(() => new PayloadBuilder(3).Create(ImageBuild.FromDirectory(b3), null, [key], Path.Combine(_work, "x.hup"))).Message);
    }

    private static byte[] Zstd(byte[] data)
    {
        byte[] frame = new PayloadBuilder(3).Compress(data, null);
        Assert.Equal(13, frame.Length);
        return frame;
    }

    [Fact]
    public void VersionsCompareNumerically()
    {
        Assert.True(SemanticVersion.Parse("1.10.0") > SemanticVersion.Parse("1.9.9"));
        Assert.False(SemanticVersion.TryParse("1.02.0", out _));
        Assert.False(SemanticVersion.TryParse("v1.0.0", out _));
    }
}

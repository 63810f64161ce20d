using System.Security.Cryptography;
using HostOs.Platform.Disk;
using HostOs.Updater.Payload;

namespace HostOs.UnitTests.Updater;

/// <summary>
/// <c>hostos-updater image verify</c>: a root (or a slot holding one) by its dm-verity root,
/// files by their SHA-256; each kind of damage refused by name.
/// </summary>
public sealed class ImageCheckTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("image-check-test-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private (string Root, VerityParameters Verity, string Kernel, string KernelSha256) Root()
    {
        var data = new byte[300 * 4096];
        new Random(7).NextBytes(data);
        data.AsSpan(100 * 4096, 4096).Clear();
        string root = Path.Combine(_work, "root.img"), kernel = Path.Combine(_work, "vmlinuz");
        File.WriteAllBytes(root, data);
        VerityParameters verity = HostOs.Verity.VerityTree.Append(root, Convert.FromHexString("00112233"));
        File.WriteAllText(kernel, "a kernel");
        return (root, verity, kernel, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(kernel))));
    }

    private static void Flip(string file, long offset)
    {
        using var f = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte((byte)(b ^ 1));
    }

    [Fact]
    public void AnIntactRootAndItsFilesPass_AlsoWhenTheSlotGoesOnAfterTheTree()
    {
        var (root, verity, kernel, sha) = Root();
        ImageCheck.Verify(root, verity, [new ImageCheck.ExpectedFile(kernel, sha)]);
        // A slot's partition is larger than the image it holds.
        using (var f = new FileStream(root, FileMode.Append)) f.Write(new byte[8192]);
        ImageCheck.Verify(root, verity, []);
    }

    [Fact]
    public void EveryKindOfDamageIsNamed()
    {
        var (root, verity, kernel, sha) = Root();
        long dataBytes = verity.DataBlocks * 4096;

        Flip(root, 123 * 4096 + 9);
        var e = Assert.Throws<PayloadException>(() => ImageCheck.Verify(root, verity, []));
        Assert.Contains($"its data's dm-verity root hash is", e.Message);
        Assert.Contains($"the expected one is {verity.RootHash}", e.Message);
        Flip(root, 123 * 4096 + 9);

        Flip(root, dataBytes + 5);
        e = Assert.Throws<PayloadException>(() => ImageCheck.Verify(root, verity, []));
        Assert.Equal($"{root}: the hash tree after its data is not the one its data gives", e.Message);
        Flip(root, dataBytes + 5);

        // A root that checks, a file that does not: named with both hashes.
        string other = new('0', 64);
        e = Assert.Throws<PayloadException>(() => ImageCheck.Verify(root, verity, [new ImageCheck.ExpectedFile(kernel, other)]));
        Assert.Equal($"{kernel}: its sha256 is {sha}, the expected one is {other}", e.Message);
        e = Assert.Throws<PayloadException>(() => ImageCheck.Verify(root, verity, [new ImageCheck.ExpectedFile(kernel + ".missing", sha)]));
        Assert.Equal($"{kernel}.missing does not exist", e.Message);

        // Cut short inside the tree.
        using (var f = new FileStream(root, FileMode.Open)) f.SetLength(dataBytes + 4096);
        e = Assert.Throws<PayloadException>(() => ImageCheck.Verify(root, verity, []));
        Assert.StartsWith($"{root}: {dataBytes + 4096} bytes, but {verity.DataBlocks} data blocks and their hash tree of", e.Message);
    }

    [Theory]
    [InlineData("vmlinuz")]
    [InlineData("vmlinuz=abc")]
    [InlineData("=0000000000000000000000000000000000000000000000000000000000000000")]
    [InlineData("vmlinuz=ABCDEF0000000000000000000000000000000000000000000000000000000000")]
    public void AFileArgumentThatIsNotPathEqualsSha256IsRefused(string value)
    {
        var e = Assert.Throws<PayloadException>(() => ImageCheck.ExpectedFile.Parse(value));
        Assert.Equal($"--file {value}: expected PATH=SHA256 (64 lower-case hex digits)", e.Message);
    }

    [Fact]
    public void AFileArgumentMayHaveAnEqualsSignInItsPath()
    {
        string hash = new('a', 64);
        Assert.Equal(new ImageCheck.ExpectedFile("/boot/a=b", hash), ImageCheck.ExpectedFile.Parse($"/boot/a=b={hash}"));
    }

    /// <summary>Which root <c>image verify</c> checks, with which parameters: the build's, or --verity's; without either, it says what to give.</summary>
    [Fact]
    public void TheRootAndItsParametersComeFromTheBuildOrFromVerity()
    {
        var (root, verity, _, _) = Root();
        string build = PayloadTests.WriteBuild(_work, "1.0.0", File.ReadAllBytes(root), "k", "i", $" hostos.verity={verity.ToCommandLineValue()}");
        Assert.Equal((Path.Combine(build, "root.img"), verity), ImageCheck.Locate(build, null));
        Assert.Equal((Path.Combine(build, "root.img"), verity), ImageCheck.Locate(Path.Combine(build, "root.img"), null));
        Assert.Equal((Path.Combine(build, "root.img"), verity), ImageCheck.Locate(build, verity.ToCommandLineValue()));
        Assert.Equal((root, verity), ImageCheck.Locate(root, verity.ToCommandLineValue()));
        // A slot or an image with no build beside it: the parameters must be given.
        Assert.Equal($"{root}: no build's manifest.json beside it to take the dm-verity parameters from: give --verity BLOCKS:ROOTHASH:SALT",
            Assert.Throws<PayloadException>(() => ImageCheck.Locate(root, null)).Message);
        Assert.StartsWith("--verity: hostos.verity=1:", Assert.Throws<PayloadException>(() => ImageCheck.Locate(root, "1:" + verity.RootHash + ":00")).Message);
        string plain = PayloadTests.WriteBuild(_work, "2.0.0", File.ReadAllBytes(root), "k", "i");
        Assert.Equal($"{plain}: the build's command line has no hostos.verity= (give --verity)", Assert.Throws<PayloadException>(() => ImageCheck.Locate(plain, null)).Message);
    }

    /// <summary>The payload builder still wants a build's root.img to end with its tree (a slot may go on after it; an image may not).</summary>
    [Fact]
    public void ABuildsRootLongerThanItsDataAndTreeIsRefusedByTheBuilder()
    {
        var (root, verity, _, _) = Root();
        byte[] longer = [.. File.ReadAllBytes(root), .. new byte[4096]];
        string build = PayloadTests.WriteBuild(_work, "1.0.0", longer, "k", "i", $" hostos.verity={verity.ToCommandLineValue()}");
        var key = NSec.Cryptography.Key.Create(UpdateKeys.Algorithm);
        var e = Assert.Throws<PayloadException>(() => new PayloadBuilder(1).Create(ImageBuild.FromDirectory(build), null, [key], Path.Combine(_work, "p.hup")));
        Assert.StartsWith($"{Path.Combine(build, "root.img")}: {longer.Length} bytes, but {verity.DataBlocks} data blocks and their hash tree of", e.Message);
        ImageCheck.Verify(Path.Combine(build, "root.img"), verity, []);
    }
}

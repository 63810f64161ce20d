using HostOs.Platform.Disk;
using HostOs.Verity;

namespace HostOs.UnitTests.Platform;

/// <summary>
/// The dm-verity hash tree the image builder appends to every root, against the reference:
/// cryptsetup's veritysetup (installed by ./build.sh --deps-only) on the same data and salt
/// must give the same root hash and the same tree bytes, for one, two and three levels.
/// The kernel then checks it in every QEMU boot (RootAndStateTests).
/// </summary>
public sealed class VerityTreeTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("hostos-verity-").FullName;

    public void Dispose() => Directory.Delete(_work, true);

    [Theory]
    [InlineData(2)]               // one level
    [InlineData(129)]             // two: 129 leaf digests need two blocks
    [InlineData(128 * 128 + 1)]   // three (64 MiB of data)
    public void TheTreeIsVeritysetups(int blocks)
    {
        string image = Path.Combine(_work, "root.img");
        var data = new byte[blocks * 4096L];
        new Random(blocks).NextBytes(data);
        data.AsSpan(4096, 4096).Clear(); // a zero block hashes like any other
        File.WriteAllBytes(image, data);
        byte[] salt = Convert.FromHexString("5a17c0ffee");

        string hashFile = Path.Combine(_work, "hash.img");
        string said = HostOs.UnitTests.Images.Registry.Run("veritysetup", "format", "--no-superblock", "--format", "1", "--hash", "sha256",
            "--data-block-size", "4096", "--hash-block-size", "4096", "--salt", "5a17c0ffee", image, hashFile);
        string expectedRoot = said.Split('\n').Single(l => l.StartsWith("Root hash:", StringComparison.Ordinal)).Split(':')[1].Trim();

        VerityParameters p = VerityTree.Append(image, salt);

        Assert.Equal(expectedRoot, p.RootHash);
        Assert.Equal(blocks, p.DataBlocks);
        Assert.Equal("5a17c0ffee", p.Salt);
        byte[] written = File.ReadAllBytes(image);
        Assert.Equal(data, written[..data.Length]);
        Assert.Equal(File.ReadAllBytes(hashFile), written[data.Length..]);
        Assert.Equal(VerityTree.LevelBlocks(blocks).Sum() * 4096L, written.Length - data.Length);
    }

    [Theory]
    [InlineData(2, new long[] { 1 })]
    [InlineData(128, new long[] { 1 })]
    [InlineData(129, new long[] { 2, 1 })]
    [InlineData(16384, new long[] { 128, 1 })]
    [InlineData(16385, new long[] { 129, 2, 1 })]
    public void LevelsAreLaidOutAsTheKernelComputesThem(long blocks, long[] levels) =>
        Assert.Equal(levels, VerityTree.LevelBlocks(blocks));

    [Fact]
    public void AnImageThatIsNotWholeBlocksIsRefused()
    {
        string image = Path.Combine(_work, "odd.img");
        File.WriteAllBytes(image, new byte[3 * 4096 + 1]);
        Assert.Contains("is not a whole number of 4096-byte blocks", Assert.Throws<InvalidDataException>(() => VerityTree.Append(image, [1])).Message);
    }

    [Theory]
    [InlineData("12:abc:00", "root hash is not 64 lower-case hex digits")]
    [InlineData("1:" + Root + ":00", "is not a number >= 2")]
    [InlineData("x:" + Root + ":00", "is not a number >= 2")]
    [InlineData("12:" + Root + ":0", "salt is not")]
    [InlineData("12:" + Root, "expected DATABLOCKS:ROOTHASH:SALT")]
    [InlineData("12:" + Root + ":00 0", "salt is not")]
    public void ABadCommandLineValueIsNamed(string value, string expected) =>
        Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => VerityParameters.Parse(value)).Message);

    [Fact]
    public void TheTableNamesDataAndTreeOnOneDevice()
    {
        var p = VerityParameters.Parse($"12480:{Root}:00ff");
        Assert.Equal($"1 /dev/vda2 /dev/vda2 4096 4096 12480 12480 sha256 {Root} 00ff", p.Table("/dev/vda2"));
        Assert.Equal($"12480:{Root}:00ff", p.ToCommandLineValue());
    }

    private const string Root = "13fbef2465c1e3ba23f5cc6bc9cde745c4ee25fac3e05688e0099c68ced87187";
}

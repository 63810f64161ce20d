using HostOs.Platform.Disk;

namespace HostOs.UnitTests.Platform;

public class GptTableTests
{
    // LBA 1..33 of a disk image made by build.sh with sgdisk (captured fixture).
    private static byte[] Fixture() => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "gpt-hostos-disk.bin"));

    [Fact]
    public void ParsesTheRealHostosLayout()
    {
        byte[] raw = Fixture();
        GptTable t = GptTable.Parse(raw.AsSpan(0, 512), raw.AsSpan(512));
        Assert.Equal(["esp", "root-a", "root-b", "state"], t.Partitions.Select(p => p.Name));
        Assert.Equal([1, 2, 3, 4], t.Partitions.Select(p => p.Number));
        Assert.Equal(PartitionTypes.Esp, t.Partitions[0].Type);
        Assert.Equal(PartitionTypes.RootX86_64, t.Partitions[1].Type);
        Assert.Equal(PartitionTypes.RootX86_64, t.Partitions[2].Type);
        Assert.Equal(PartitionTypes.Var, t.Partitions[3].Type);
        Assert.Equal(2048UL, t.Partitions[0].FirstLba);
        Assert.Equal(2048UL + 64 * 2048 - 1, t.Partitions[0].LastLba);
        Assert.Equal(2UL, t.EntriesLba);
    }

    [Fact]
    public void CorruptHeaderIsRejectedByItsCrc()
    {
        byte[] raw = Fixture();
        raw[40] ^= 1; // first usable LBA
        var e = Assert.Throws<InvalidDataException>(() => GptTable.Parse(raw.AsSpan(0, 512), raw.AsSpan(512)));
        Assert.Contains("header CRC32", e.Message);
    }

    [Fact]
    public void CorruptEntryIsRejectedByTheArrayCrc()
    {
        byte[] raw = Fixture();
        raw[512 + 128 + 60] ^= 1; // a letter of root-a's name
        var e = Assert.Throws<InvalidDataException>(() => GptTable.Parse(raw.AsSpan(0, 512), raw.AsSpan(512)));
        Assert.Contains("entry array CRC32", e.Message);
    }

    [Fact]
    public void NotAGpt()
    {
        var e = Assert.Throws<InvalidDataException>(() => GptTable.ReadHeaderLayout(new byte[512]));
        Assert.Contains("EFI PART", e.Message);
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue() =>
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
}

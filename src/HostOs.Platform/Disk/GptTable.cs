using System.Buffers.Binary;
using System.Text;

namespace HostOs.Platform.Disk;

/// <summary>
/// A GUID Partition Table (UEFI 2.10 §5.3), parsed from bytes and checked with its CRCs.
/// <code>
/// header (LBA 1)                         entry (128 bytes each)
///  0  "EFI PART"   8 revision             0 type GUID   16 unique GUID
/// 12  header size 16 header CRC32         32 first LBA  40 last LBA
/// 24  my LBA      32 alternate LBA        48 attributes 56 name (UTF-16LE, 72 bytes)
/// 40  first usable 48 last usable
/// 56  disk GUID   72 entries LBA  80 entry count  84 entry size  88 entries CRC32
/// </code>
/// </summary>
public sealed class GptTable
{
    public required Guid DiskId { get; init; }
    public required ulong EntriesLba { get; init; }
    public required IReadOnlyList<GptPartition> Partitions { get; init; }

    /// <summary>Reads the header fields needed to know where the entry array is and how big.</summary>
    public static (ulong EntriesLba, int Count, int EntrySize) ReadHeaderLayout(ReadOnlySpan<byte> header)
    {
        ValidateHeader(header);
        return (BinaryPrimitives.ReadUInt64LittleEndian(header[72..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(header[80..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(header[84..]));
    }

    public static GptTable Parse(ReadOnlySpan<byte> header, ReadOnlySpan<byte> entries)
    {
        var (entriesLba, count, entrySize) = ReadHeaderLayout(header);
        if (entrySize < 128 || entrySize % 8 != 0)
        {
            throw new InvalidDataException($"GPT: partition entry size {entrySize} is invalid");
        }
        if ((long)count * entrySize > entries.Length)
        {
            throw new InvalidDataException($"GPT: {count} entries of {entrySize} bytes do not fit in {entries.Length} bytes read");
        }
        ReadOnlySpan<byte> array = entries[..(count * entrySize)];
        uint expected = BinaryPrimitives.ReadUInt32LittleEndian(header[88..]);
        uint actual = Crc32.Compute(array);
        if (expected != actual)
        {
            throw new InvalidDataException($"GPT: partition entry array CRC32 is 0x{actual:x8}, header says 0x{expected:x8}");
        }
        var partitions = new List<GptPartition>();
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> e = array.Slice(i * entrySize, entrySize);
            var type = new Guid(e[..16]);
            if (type == Guid.Empty) continue;
            string name = Encoding.Unicode.GetString(e.Slice(56, 72)).TrimEnd('\0');
            int nul = name.IndexOf('\0');
            if (nul >= 0) name = name[..nul];
            partitions.Add(new GptPartition(i + 1, type, new Guid(e.Slice(16, 16)),
                BinaryPrimitives.ReadUInt64LittleEndian(e[32..]),
                BinaryPrimitives.ReadUInt64LittleEndian(e[40..]),
                BinaryPrimitives.ReadUInt64LittleEndian(e[48..]), name));
        }
        return new GptTable { DiskId = new Guid(header.Slice(56, 16)), EntriesLba = entriesLba, Partitions = partitions };
    }

    private static void ValidateHeader(ReadOnlySpan<byte> header)
    {
        if (header.Length < 92 || !header[..8].SequenceEqual("EFI PART"u8))
        {
            throw new InvalidDataException("GPT: no 'EFI PART' signature at LBA 1");
        }
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        if (size < 92 || size > header.Length)
        {
            throw new InvalidDataException($"GPT: header size {size} is invalid");
        }
        Span<byte> copy = stackalloc byte[(int)size];
        header[..(int)size].CopyTo(copy);
        uint expected = BinaryPrimitives.ReadUInt32LittleEndian(copy[16..]);
        copy.Slice(16, 4).Clear();
        uint actual = Crc32.Compute(copy);
        if (expected != actual)
        {
            throw new InvalidDataException($"GPT: header CRC32 is 0x{actual:x8}, header says 0x{expected:x8}");
        }
    }
}

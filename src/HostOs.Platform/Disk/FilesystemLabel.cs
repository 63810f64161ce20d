using System.Text;

namespace HostOs.Platform.Disk;

/// <summary>
/// The file system type and label of a volume from its first 36 KiB, for the two that
/// carry cloud configuration (cloud-init's NoCloud "cidata"): FAT (label in the boot
/// sector's extended BPB: 0x47 for FAT32, 0x2B for FAT12/16) and ISO 9660 (the primary
/// volume descriptor at 0x8000, volume identifier at +40). No blkid needed.
/// </summary>
public static class FilesystemLabel
{
    public const int BytesNeeded = 0x8000 + 2048;

    public static (string Type, string Label)? Read(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 0x8000 + 72 && head[0x8000] == 1 && head.Slice(0x8001, 5).SequenceEqual("CD001"u8))
        {
            return ("iso9660", Text(head.Slice(0x8000 + 40, 32)));
        }
        if (head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA)
        {
            if (head.Slice(0x52, 5).SequenceEqual("FAT32"u8) && head[0x42] is 0x28 or 0x29) return ("vfat", Text(head.Slice(0x47, 11)));
            if (head.Slice(0x36, 3).SequenceEqual("FAT"u8) && head[0x26] is 0x28 or 0x29) return ("vfat", Text(head.Slice(0x2B, 11)));
        }
        return null;
    }

    private static string Text(ReadOnlySpan<byte> field) => Encoding.ASCII.GetString(field).TrimEnd(' ', '\0');
}

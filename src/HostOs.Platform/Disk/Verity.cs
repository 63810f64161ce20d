using System.Globalization;

namespace HostOs.Platform.Disk;

/// <summary>
/// What the kernel needs to check a root image with dm-verity (the format of veritysetup,
/// hash version 1, Documentation/admin-guide/device-mapper/verity.rst): 4 KiB data and
/// hash blocks, SHA-256 of the salt followed by the block, the hash tree right after the
/// data on the same partition. On the kernel command line as
/// <c>hostos.verity=DATABLOCKS:ROOTHASH:SALT</c> (hex); the boot entry carries it, so the
/// root hash is exactly as trusted as the entry and kernel it sits beside. The tree is
/// built by the image builder and rebuilt by the updater (HostOs.Verity.VerityTree: hashing stays out of the init's assemblies).
/// </summary>
public sealed record VerityParameters(long DataBlocks, string RootHash, string Salt)
{
    public const int BlockSize = 4096;
    public const string CommandLineKey = "hostos.verity";

    public string ToCommandLineValue() => $"{DataBlocks}:{RootHash}:{Salt}";

    /// <summary>The parameters a command line gives, or null when it has no <c>hostos.verity=</c>.</summary>
    public static VerityParameters? FromCommandLine(Kernel.KernelCommandLine cmdline) =>
        cmdline.Get(CommandLineKey) is string value ? Parse(value) : null;

    /// <summary>The dm-verity table for one device holding data then tree (hash start block = data blocks).</summary>
    public string Table(string device) =>
        $"1 {device} {device} {BlockSize} {BlockSize} {DataBlocks} {DataBlocks} sha256 {RootHash} {Salt}";

    public static VerityParameters Parse(string value)
    {
        string[] parts = value.Split(':');
        if (parts.Length != 3) throw new InvalidDataException($"{CommandLineKey}={value}: expected DATABLOCKS:ROOTHASH:SALT");
        if (!long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long blocks) || blocks < 2)
        {
            throw new InvalidDataException($"{CommandLineKey}={value}: data block count '{parts[0]}' is not a number >= 2");
        }
        if (parts[1].Length != 64 || !IsLowerHex(parts[1])) throw new InvalidDataException($"{CommandLineKey}={value}: root hash is not 64 lower-case hex digits");
        if (parts[2].Length is 0 or > 512 || parts[2].Length % 2 != 0 || !IsLowerHex(parts[2]))
        {
            throw new InvalidDataException($"{CommandLineKey}={value}: salt is not 1..256 bytes of lower-case hex");
        }
        return new VerityParameters(blocks, parts[1], parts[2]);
    }

    private static bool IsLowerHex(string s) => s.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');
}

using System.Security.Cryptography;
using HostOs.Platform.Disk;

namespace HostOs.ImageBuilder;

/// <summary>Builds the dm-verity hash tree of an image and appends it to the image.</summary>
internal static class VerityTree
{
    /// <summary>
    /// The blocks of each level, as the kernel lays them out (dm-verity-target.c, verity_ctr):
    /// level 0 hashes the data, each level above hashes the one below, the top has one block.
    /// </summary>
    public static long[] LevelBlocks(long dataBlocks)
    {
        int levels = 0;
        while (7 * levels < 64 && ((dataBlocks - 1) >> (7 * levels)) != 0) levels++;
        var sizes = new long[levels];
        for (int i = 0; i < levels; i++)
        {
            int shift = 7 * (i + 1);
            sizes[i] = shift >= 63 ? 1 : (dataBlocks + (1L << shift) - 1) >> shift;
        }
        return sizes;
    }

    /// <summary>
    /// Hashes <paramref name="image"/> (a whole number of 4 KiB blocks, at least two) and
    /// appends the tree, top level first (where the kernel looks for each level); returns
    /// what the kernel needs. Memory: the tree (1/128 of the image), not the image.
    /// </summary>
    public static VerityParameters Append(string image, byte[] salt)
    {
        if (salt.Length is 0 or > 256) throw new ArgumentException("salt must be 1..256 bytes", nameof(salt));
        long length = new FileInfo(image).Length;
        const int bs = VerityParameters.BlockSize;
        if (length % bs != 0) throw new InvalidDataException($"{image}: {length} bytes is not a whole number of {bs}-byte blocks");
        long dataBlocks = length / bs;
        if (dataBlocks < 2) throw new InvalidDataException($"{image}: {dataBlocks} block(s) is too small for a hash tree");
        long[] sizes = LevelBlocks(dataBlocks);
        var levels = new byte[sizes.Length][];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Digest(ReadOnlySpan<byte> block, Span<byte> into)
        {
            hash.AppendData(salt);
            hash.AppendData(block);
            hash.GetHashAndReset(into);
        }

        levels[0] = new byte[checked(sizes[0] * bs)];
        using (var data = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
        {
            var chunk = new byte[1 << 20];
            long block = 0;
            while (block < dataBlocks)
            {
                int want = (int)Math.Min(chunk.Length, (dataBlocks - block) * bs);
                data.ReadExactly(chunk, 0, want);
                for (int at = 0; at < want; at += bs, block++) Digest(chunk.AsSpan(at, bs), levels[0].AsSpan((int)(block * 32), 32));
            }
        }
        for (int i = 1; i < levels.Length; i++)
        {
            levels[i] = new byte[checked(sizes[i] * bs)];
            for (long b = 0; b < sizes[i - 1]; b++) Digest(levels[i - 1].AsSpan((int)(b * bs), bs), levels[i].AsSpan((int)(b * 32), 32));
        }
        var root = new byte[32];
        Digest(levels[^1], root);

        using (var output = new FileStream(image, FileMode.Append, FileAccess.Write))
        {
            for (int i = levels.Length - 1; i >= 0; i--) output.Write(levels[i]);
            output.Flush(flushToDisk: true);
        }
        return new VerityParameters(dataBlocks, Convert.ToHexStringLower(root), Convert.ToHexStringLower(salt));
    }
}

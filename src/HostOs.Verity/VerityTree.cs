using System.Security.Cryptography;
using HostOs.Platform.Disk;

namespace HostOs.Verity;

/// <summary>
/// The dm-verity hash tree of an image (<see cref="VerityParameters"/>' format): built by
/// the image builder, which appends it to every root, and rebuilt by the updater from the
/// data it wrote, whose root hash the signed manifest names (a payload carries no tree).
/// </summary>
public static class VerityTree
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

    /// <summary>The tree's size in blocks for <paramref name="dataBlocks"/> blocks of data.</summary>
    public static long TreeBlocks(long dataBlocks) => LevelBlocks(dataBlocks).Sum();

    /// <summary>
    /// The tree of <paramref name="dataBlocks"/> 4 KiB blocks (at least two) that
    /// <paramref name="read"/> gives (offset, buffer: it must be safe to call from several
    /// threads at once, as positional reads are), laid out as the kernel reads it: top level
    /// first. Level 0, nearly all of the work, is hashed on every core. Memory: the tree
    /// (1/128 of the data) and 1 MiB per core.
    /// </summary>
    public static (byte[] Tree, byte[] RootHash) Build(long dataBlocks, byte[] salt, Action<long, Span<byte>> read)
    {
        byte[] leaves = NewLeaves(dataBlocks);
        HashLeaves(salt, 0, dataBlocks, read, leaves, parallel: true);
        return FromLeaves(dataBlocks, salt, leaves);
    }

    /// <summary>Level 0 for <paramref name="dataBlocks"/> blocks, to be filled by <see cref="HashLeaves"/> (in parts, by several callers).</summary>
    public static byte[] NewLeaves(long dataBlocks)
    {
        if (dataBlocks < 2) throw new InvalidDataException($"{dataBlocks} block(s) is too small for a hash tree");
        return new byte[checked(LevelBlocks(dataBlocks)[0] * VerityParameters.BlockSize)];
    }

    /// <summary>
    /// The digests of data blocks [<paramref name="first"/>, +<paramref name="count"/>) into
    /// <paramref name="leaves"/>, on every core or on the caller's; blocks marked in
    /// <paramref name="known"/> (digests already there) are not hashed, nor read when a whole
    /// chunk of them is. One <see cref="LeafHasher"/> per thread.
    /// </summary>
    public static void HashLeaves(byte[] salt, long first, long count, Action<long, Span<byte>> read, byte[] leaves, bool parallel, bool[]? known = null) =>
        EachChunk(salt, count, parallel, (hasher, at, n) => hasher.HashLeaves(first + at, n, read, leaves, known));

    /// <summary>
    /// <paramref name="hash"/>(its thread's hasher, first block, blocks) for each chunk of
    /// <see cref="LeafHasher.ChunkBlocks"/> of <paramref name="blocks"/>, on every core or on the caller's.
    /// </summary>
    private static void EachChunk(byte[] salt, long blocks, bool parallel, Action<LeafHasher, long, int> hash) =>
        Parallel.For(0L, (blocks + LeafHasher.ChunkBlocks - 1) / LeafHasher.ChunkBlocks,
            new ParallelOptions { MaxDegreeOfParallelism = parallel ? Environment.ProcessorCount : 1 },
            () => new LeafHasher(salt),
            (chunk, _, hasher) =>
            {
                long at = chunk * LeafHasher.ChunkBlocks;
                hash(hasher, at, (int)Math.Min(LeafHasher.ChunkBlocks, blocks - at));
                return hasher;
            },
            hasher => hasher.Dispose());

    /// <summary>
    /// The digests (leaves) of the whole blocks of <paramref name="data"/>, in order, on every
    /// core or on the caller's: what a payload's data operations are checked by (format 4).
    /// Hashed where they are, not copied.
    /// </summary>
    public static byte[] BlockDigests(byte[] salt, byte[] data, bool parallel)
    {
        const int bs = VerityParameters.BlockSize;
        if (data.Length % bs != 0) throw new ArgumentException($"{data.Length} bytes is not a whole number of {bs}-byte blocks", nameof(data));
        byte[] digests = new byte[data.Length / bs * 32];
        EachChunk(salt, data.Length / bs, parallel,
            (hasher, at, n) => hasher.Digests(data.AsSpan((int)at * bs, n * bs), digests.AsSpan((int)at * 32, n * 32)));
        return digests;
    }

    /// <summary>SHA-256 (hex) of <see cref="BlockDigests"/>: what <c>dstLeavesSha256</c> names.</summary>
    public static string BlockDigestsSha256(byte[] salt, byte[] data) =>
        Convert.ToHexStringLower(SHA256.HashData(BlockDigests(salt, data, parallel: true)));

    /// <summary>The levels above complete <paramref name="leaves"/>, the root, and the tree as the kernel reads it (top level first).</summary>
    public static (byte[] Tree, byte[] RootHash) FromLeaves(long dataBlocks, byte[] salt, byte[] leaves)
    {
        const int bs = VerityParameters.BlockSize;
        long[] sizes = LevelBlocks(dataBlocks);
        var levels = new byte[sizes.Length][];
        levels[0] = leaves;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 1; i < levels.Length; i++)
        {
            levels[i] = new byte[checked(sizes[i] * bs)];
            for (long b = 0; b < sizes[i - 1]; b++) Digest(hash, salt, levels[i - 1].AsSpan((int)(b * bs), bs), levels[i].AsSpan((int)(b * 32), 32));
        }
        var root = new byte[32];
        Digest(hash, salt, levels[^1], root);
        var tree = new byte[checked(sizes.Sum() * bs)];
        int offset = 0;
        for (int i = levels.Length - 1; i >= 0; i--)
        {
            levels[i].CopyTo(tree, offset);
            offset += levels[i].Length;
        }
        return (tree, root);
    }

    internal static void Digest(IncrementalHash hash, byte[] salt, ReadOnlySpan<byte> block, Span<byte> into)
    {
        hash.AppendData(salt);
        hash.AppendData(block);
        hash.GetHashAndReset(into);
    }

    /// <summary>
    /// Hashes <paramref name="image"/> (a whole number of 4 KiB blocks, at least two) and
    /// appends the tree; returns what the kernel needs.
    /// </summary>
    public static VerityParameters Append(string image, byte[] salt)
    {
        long length = new FileInfo(image).Length;
        const int bs = VerityParameters.BlockSize;
        if (length % bs != 0) throw new InvalidDataException($"{image}: {length} bytes is not a whole number of {bs}-byte blocks");
        byte[] tree, root;
        using (var data = File.OpenHandle(image))
        {
            (tree, root) = Build(length / bs, salt, (offset, buffer) => ReadExactly(data, offset, buffer, image));
        }
        using (var output = new FileStream(image, FileMode.Append, FileAccess.Write))
        {
            output.Write(tree);
            output.Flush(flushToDisk: true);
        }
        return new VerityParameters(length / bs, Convert.ToHexStringLower(root), Convert.ToHexStringLower(salt));
    }

    private static void ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, Span<byte> buffer, string name)
    {
        for (int done = 0; done < buffer.Length;)
        {
            int n = RandomAccess.Read(file, buffer[done..], offset + done);
            if (n == 0) throw new InvalidDataException($"{name}: ends at {offset + done}");
            done += n;
        }
    }
}

using System.Security.Cryptography;
using HostOs.Platform.Disk;

namespace HostOs.Verity;

/// <summary>
/// What one thread needs to hash a tree's first level: its SHA-256 context and, when blocks
/// are read, one 1 MiB buffer (aligned, so a reader with O_DIRECT reads into it around the
/// page cache), both kept from chunk to chunk. A buffer per chunk was 1 MiB of fresh memory
/// each time: page faults and zeroing, which under TCG cost as much as part of the hashing.
/// </summary>
public sealed class LeafHasher(byte[] salt) : IDisposable
{
    public const int ChunkBlocks = 256;
    private const int BlockSize = VerityParameters.BlockSize;
    private readonly IncrementalHash _hash = salt.Length is 0 or > 256
        ? throw new ArgumentException("salt must be 1..256 bytes", nameof(salt))
        : IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private ArraySegment<byte> _buffer;

    /// <summary>
    /// Reads blocks [<paramref name="first"/>, +<paramref name="count"/>) (at most
    /// <see cref="ChunkBlocks"/>) and writes their digests into <paramref name="leaves"/>;
    /// blocks marked in <paramref name="known"/> are not hashed, nor read when all of them are.
    /// </summary>
    public void HashLeaves(long first, long count, Action<long, Span<byte>> read, byte[] leaves, bool[]? known)
    {
        if (count > ChunkBlocks) throw new ArgumentOutOfRangeException(nameof(count), $"{count} blocks, at most {ChunkBlocks} at a time");
        if (known is not null && known.AsSpan((int)first, (int)count).IndexOf(false) < 0) return;
        if (_buffer.Array is null) _buffer = DirectIo.AlignedBuffer(ChunkBlocks * BlockSize);
        Span<byte> bytes = _buffer.AsSpan(0, (int)(count * BlockSize));
        read(first * BlockSize, bytes);
        for (int b = 0; b < count; b++)
        {
            if (known is null || !known[first + b]) VerityTree.Digest(_hash, salt, bytes.Slice(b * BlockSize, BlockSize), leaves.AsSpan((int)((first + b) * 32), 32));
        }
    }

    /// <summary>The digests of <paramref name="data"/>'s blocks, in order, into <paramref name="digests"/> (32 bytes each).</summary>
    public void Digests(ReadOnlySpan<byte> data, Span<byte> digests)
    {
        for (int b = 0; b < data.Length / BlockSize; b++) VerityTree.Digest(_hash, salt, data.Slice(b * BlockSize, BlockSize), digests.Slice(b * 32, 32));
    }

    public void Dispose() => _hash.Dispose();
}

using HostOs.Platform.Disk;
using HostOs.Verity;

namespace HostOs.Updater.Payload;

/// <summary>
/// Builds the target's dm-verity tree while the operations write its data: a thread per core
/// reads it back (through a handle of its own, around the page cache on a block device) and hashes each block once the target holds every
/// block before it, taking 1 MiB at a time in order, so the tree is mostly done when the verity operation
/// comes (<see cref="Finish"/>), which hashes what is left on every core. The writer's
/// waits (source reads, flushes) are the followers' time: under TCG, where hashing is the
/// floor, one follower left the second core idle whenever the writer waited. Only blocks in
/// the written prefix are hashed early, and a manifest writes every block exactly once, so
/// a block hashed early is the block the target keeps; the root is checked all the same.
/// Blocks whose digests the apply already has (<see cref="Known"/>: a data operation's
/// output checked by its blocks' digests before it was written, zeros) are not read again.
/// </summary>
internal sealed class TreeFollower : IDisposable
{
    private readonly SafeFileHandleReader _target;
    private readonly long _dataBlocks;
    private readonly byte[] _salt, _leaves;
    private readonly bool[] _known;
    private byte[]? _zeroDigest;
    private readonly Thread[] _threads;
    private readonly object _gate = new();
    // Blocks: the target's prefix that is final; the prefix the followers have taken (each
    // chunk taken is hashed before its follower stops); the first block of a chunk a follower failed on.
    private long _written, _taken, _failed = long.MaxValue;
    private bool _stop;

    public TreeFollower(SafeFileHandleReader target, VerityParameters verity)
    {
        _target = target;
        _dataBlocks = verity.DataBlocks;
        _salt = Convert.FromHexString(verity.Salt);
        _leaves = VerityTree.NewLeaves(_dataBlocks);
        _known = new bool[_dataBlocks];
        _threads = new Thread[Math.Max(1, Environment.ProcessorCount)];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"verity tree {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>
    /// The digests of blocks <paramref name="dst"/> (in order, 32 bytes each), before the
    /// blocks are written: they are not read back. Blocks past the data (the tree's own) are ignored.
    /// </summary>
    public void Known(List<long[]> dst, ReadOnlySpan<byte> digests) => Mark(dst, digests, 32);

    /// <summary>Every block of <paramref name="dst"/> is zeros (written from a fresh buffer: its digest is a constant).</summary>
    public void KnownZeros(List<long[]> dst) =>
        Mark(dst, _zeroDigest ??= VerityTree.BlockDigests(_salt, new byte[VerityParameters.BlockSize], parallel: false), 0);

    /// <summary>The digests of blocks <paramref name="dst"/>: the next one <paramref name="step"/> bytes on for each block.</summary>
    private void Mark(List<long[]> dst, ReadOnlySpan<byte> digests, int step)
    {
        int at = 0;
        foreach (long[] e in dst)
        {
            for (long b = e[0]; b < e[0] + e[1]; b++, at += step)
            {
                if (b >= _dataBlocks) continue;
                digests.Slice(at, 32).CopyTo(_leaves.AsSpan((int)(b * 32), 32));
                _known[b] = true;
            }
        }
    }

    /// <summary>The digests of <paramref name="data"/>'s blocks with this tree's salt, on every core.</summary>
    public byte[] Digests(byte[] data) => VerityTree.BlockDigests(_salt, data, parallel: true);

    /// <summary>The target holds its final data blocks [0, <paramref name="blocks"/>).</summary>
    public void Written(long blocks)
    {
        lock (_gate)
        {
            if (blocks <= _written) return;
            _written = Math.Min(blocks, _dataBlocks);
            Monitor.PulseAll(_gate);
        }
    }

    private void Run()
    {
        LeafHasher? hasher = null;
        try
        {
            while (true)
            {
                long from, count;
                lock (_gate)
                {
                    while (!_stop && _written <= _taken) Monitor.Wait(_gate);
                    if (_stop) return;
                    from = _taken;
                    count = Math.Min(LeafHasher.ChunkBlocks, _written - _taken);
                    _taken += count;
                }
                try
                {
                    hasher ??= new LeafHasher(_salt);
                    hasher.HashLeaves(from, count, _target.Read, _leaves, _known);
                }
                catch (Exception)
                {
                    // A read that failed here fails again, named, in Finish, which hashes from here on.
                    lock (_gate) _failed = Math.Min(_failed, from);
                    return;
                }
            }
        }
        finally
        {
            hasher?.Dispose();
        }
    }

    /// <summary>
    /// Every data block written: the rest hashed on every core, then the levels above and the
    /// root. Also says how many digests were known and how many of the others were hashed before.
    /// </summary>
    public (byte[] Tree, byte[] RootHash, long Known, long HashedAhead) Finish()
    {
        Stop();
        long hashed = Math.Min(_taken, _failed), ahead = 0, known = 0;
        for (long b = 0; b < _dataBlocks; b++)
        {
            if (_known[b]) known++;
            else if (b < hashed) ahead++;
        }
        try
        {
            VerityTree.HashLeaves(_salt, hashed, _dataBlocks - hashed, _target.Read, _leaves, parallel: true, _known);
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            // A read of the target that failed, as itself (named: "... ends at", an I/O error).
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
        }
        var (tree, root) = VerityTree.FromLeaves(_dataBlocks, _salt, _leaves);
        return (tree, root, known, ahead);
    }

    private void Stop()
    {
        lock (_gate)
        {
            _stop = true;
            Monitor.PulseAll(_gate);
        }
        foreach (Thread thread in _threads) thread.Join();
    }

    public void Dispose() => Stop();
}

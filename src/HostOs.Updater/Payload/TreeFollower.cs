using HostOs.Platform.Disk;
using HostOs.Verity;

namespace HostOs.Updater.Payload;

/// <summary>
/// Builds the target's dm-verity tree while the operations write its data: a thread of its
/// own reads it back (from the page cache, through a handle of its own) and hashes each block once the target holds every
/// block before it, so on a second core the tree is mostly done when the verity operation
/// comes (<see cref="Finish"/>), which hashes what is left on every core. Only blocks in
/// the written prefix are hashed early, and a manifest writes every block exactly once, so
/// a block hashed early is the block the target keeps; the root is checked all the same.
/// </summary>
internal sealed class TreeFollower : IDisposable
{
    private const long ChunkBlocks = 256;
    private readonly SafeFileHandleReader _target;
    private readonly long _dataBlocks;
    private readonly byte[] _salt, _leaves;
    private readonly Thread _thread;
    private readonly object _gate = new();
    private long _written, _hashed; // blocks: the target's prefix that is final, and the prefix hashed
    private bool _stop;

    public TreeFollower(SafeFileHandleReader target, VerityParameters verity)
    {
        _target = target;
        _dataBlocks = verity.DataBlocks;
        _salt = Convert.FromHexString(verity.Salt);
        _leaves = VerityTree.NewLeaves(_dataBlocks);
        _thread = new Thread(Run) { IsBackground = true, Name = "verity tree" };
        _thread.Start();
    }

    /// <summary>The target holds its final data blocks [0, <paramref name="blocks"/>).</summary>
    public void Written(long blocks)
    {
        lock (_gate)
        {
            if (blocks <= _written) return;
            _written = Math.Min(blocks, _dataBlocks);
            Monitor.Pulse(_gate);
        }
    }

    private void Run()
    {
        try
        {
            while (true)
            {
                long from, count;
                lock (_gate)
                {
                    while (!_stop && _written <= _hashed) Monitor.Wait(_gate);
                    if (_stop) return;
                    from = _hashed;
                    count = Math.Min(ChunkBlocks, _written - _hashed);
                }
                VerityTree.HashLeaves(_salt, from, count, _target.Read, _leaves, parallel: false);
                lock (_gate) _hashed = from + count;
            }
        }
        catch (Exception)
        {
            // A read that failed here fails again, named, in Finish, which hashes from where this stopped.
        }
    }

    /// <summary>Every data block written: the rest hashed on every core, then the levels above and the root.</summary>
    public (byte[] Tree, byte[] RootHash, long HashedAhead) Finish()
    {
        Stop();
        VerityTree.HashLeaves(_salt, _hashed, _dataBlocks - _hashed, _target.Read, _leaves, parallel: true);
        var (tree, root) = VerityTree.FromLeaves(_dataBlocks, _salt, _leaves);
        return (tree, root, _hashed);
    }

    private void Stop()
    {
        lock (_gate)
        {
            _stop = true;
            Monitor.Pulse(_gate);
        }
        _thread.Join();
    }

    public void Dispose() => Stop();
}

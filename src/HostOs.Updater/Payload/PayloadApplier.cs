using IncrementalHash = System.Security.Cryptography.IncrementalHash;
using HashAlgorithmName = System.Security.Cryptography.HashAlgorithmName;
using Microsoft.Win32.SafeHandles;
using NSec.Cryptography;
using ZstdSharp;

namespace HostOs.Updater.Payload;

/// <summary>Where an apply writes and reads: the inactive slot (a partition or an image file), and for a delta the source.</summary>
/// <param name="BeforeFirstWrite">Runs once everything before the first write to the target is verified
/// (signature, version, the whole source when the target is checked by its SHA-256, the first
/// operation's data and output unless it is a copy or zeros): the machine's updater removes
/// the boot entry that still points at the slot there.</param>
public sealed record ApplyTarget(string TargetPath, string? SourcePath, string BootDirectory, string? SourceBootDirectory = null,
    Action? BeforeFirstWrite = null);

/// <summary>
/// Applies a payload as it streams in (docs/updates.md): the signed head first (nothing
/// else is read before its signature is checked), then each operation: its data read and
/// hashed and its output produced (on one thread), that output hashed and only then
/// written to the target (on another; copies and zeros, which may be as long as the image,
/// go in chunks). Then the whole target is checked:
/// when the payload ends with a verity operation, by rebuilding the dm-verity tree from the
/// written data on every core and comparing its root with the manifest's (the tree is then
/// written: it verifies the rest); otherwise by its SHA-256 (on the way when the operations
/// write it in order), and a delta's source is hashed whole before the first operation.
/// The boot files (each verified) land in the boot directory through a temporary name, fsync and rename.
/// The data is read once, in order: the payload never has to be on disk, and memory stays
/// within a few operations' bounds (<see cref="PayloadManifest.MaxOperationBytes"/> and the
/// like). Any failure is a <see cref="PayloadException"/> naming it; the target is then
/// left partly written, which is why it is never the running slot and nothing points at it.
/// </summary>
public sealed class PayloadApplier(IReadOnlyList<PublicKey> trusted, Action<string>? say = null)
{
    public sealed record Progress(long Done, long Total);

    /// <summary>
    /// Whether the slot's writes and read-backs and a copy's source reads go around the page
    /// cache (O_DIRECT, where the file system allows it). By default only for block devices
    /// (by what the path names, links followed): a machine's slots, whose raw bytes nothing
    /// else reads through the cache; an image file on a build host is often in the page cache,
    /// and buffered writes to it are written back in parallel.
    /// </summary>
    public bool? AroundPageCache { get; init; }

    private bool Direct(string? path) => path is not null && (AroundPageCache ?? HostOs.Platform.Interop.Sys.IsBlockDevice(path));

    public PayloadManifest Apply(Stream payload, ApplyTarget where, string? currentVersion, bool allowDowngrade,
        Action<Progress>? progress = null, CancellationToken cancel = default) =>
        Apply(payload, _ => where, currentVersion, allowDowngrade, progress, cancel);

    /// <summary>
    /// As above, with the place to write decided once the head is verified and the version
    /// accepted (<paramref name="accept"/> sees the signed manifest; the machine's updater
    /// names the version's boot directory on the ESP there).
    /// </summary>
    public PayloadManifest Apply(Stream payload, Func<PayloadManifest, ApplyTarget> accept, string? currentVersion, bool allowDowngrade,
        Action<Progress>? progress = null, CancellationToken cancel = default)
    {
        PayloadFile.StartHashing();
        var (manifest, signer) = PayloadFile.ReadHead(payload, trusted, out long headLength);
        HostOs.Platform.StepTrace.Step("apply", "head verified");
        say?.Invoke($"payload {manifest.Version} ({(manifest.IsDelta ? $"delta from {manifest.Source!.Version}" : "full")}), signed by key {signer}");
        if (currentVersion is not null && !allowDowngrade
            && SemanticVersion.Parse(manifest.Version) <= SemanticVersion.Parse(currentVersion))
        {
            throw new PayloadException($"refusing {manifest.Version}: it is not newer than the running {currentVersion} (a downgrade must be allowed explicitly)");
        }
        if (manifest.IsDelta && currentVersion is not null && manifest.Source!.Version != currentVersion)
        {
            throw new PayloadException($"the delta is from {manifest.Source.Version}, this machine runs {currentVersion}");
        }
        ApplyTarget where = accept(manifest);
        int bs = manifest.BlockSize;
        using SafeFileHandleReader? source = manifest.IsDelta
            ? new SafeFileHandleReader(where.SourcePath ?? throw new PayloadException("a delta payload needs the source image"), direct: Direct(where.SourcePath))
            : null;
        if (source is not null)
        {
            ImageIdentity expected = manifest.Source!;
            if (source.Length < expected.Size) throw new PayloadException($"the source {source.Path} has {source.Length} bytes, the delta expects {expected.Size} (version {expected.Version})");
            // Checked by the tree of what it helps make when there is one (a source that is not
            // the version named shows there, and is then named); else hashed whole first.
            if (!manifest.VerifiedByTree && SourceProblem(source, expected) is string problem) throw new PayloadException(problem);
        }
        // The running version's boot files a delta starts from are read and checked on another
        // core while the root is written (they are needed only at the end).
        // An apply that fails first still waits for it: nothing of ours stays open in the ESP the caller unmounts.
        Task<Dictionary<string, byte[]>> runningBootFiles = Task.Run(() => RunningBootFiles(manifest, where));
        using var waitForBootFiles = new Joined(runningBootFiles);
        using SafeFileHandle target = OpenTarget(where.TargetPath, manifest.Target.Size);
        // Writes, copies and the tree's read-back around the page cache (see AroundPageCache):
        // under TCG the buffered kernel work cost more than dd's whole copy.
        using HostOs.Platform.Disk.DirectHandle? targetDirect = Direct(where.TargetPath) ? HostOs.Platform.Disk.DirectHandle.Open(where.TargetPath, write: true) : null;
        using SafeFileHandleReader slot = new(where.TargetPath, direct: targetDirect is not null);
        using TreeFollower? tree = manifest.VerifiedByTree ? new TreeFollower(slot, manifest.TargetVerity!) : null;
        using var writer = new TargetWriter(target, bs, manifest.Target.Size, where.BeforeFirstWrite, progress, hashOnTheWay: !manifest.VerifiedByTree,
            inOrder: tree is null ? null : bytes => tree.Written(bytes / bs), direct: targetDirect);
        // Resume: what an interrupted apply of this payload already wrote, verified against
        // the manifest in the target itself (no record of progress is trusted), is kept,
        // and the payload's data goes on from the first operation still to do.
        // Format 4 with a tree: what data operations make is checked by its blocks' digests
        // (salted SHA-256s), which the tree is built from; so are the operations kept here.
        int first = VerifiedPrefix(manifest, slot, source, tree, cancel);
        HostOs.Platform.StepTrace.Step("apply", $"the target already holds the output of {first} operations");
        if (first > 0)
        {
            long verified = manifest.Operations.Take(first).Sum(o => o.Dst.Sum(e => e[1])) * bs;
            long skip = manifest.Operations.Take(first).Sum(o => o.DataLength);
            say?.Invoke($"resuming: the target already holds the verified output of operations 0..{first - 1} of {manifest.Operations.Count} " +
                        $"({verified} bytes); {skip} bytes of their data are skipped");
            writer.Resumed(verified, prefix: IsPrefix(manifest.Operations.Take(first).SelectMany(o => o.Dst), verified / bs));
            Skip(payload, headLength, skip);
        }
        // Two stages on two threads: this one reads each operation's data, checks it and
        // decompresses it; the caller's checks the output and writes it (copies, zeros and
        // the tree are the writer's alone). At most two outputs wait between them.
        using (var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel))
        using (var made = new System.Collections.Concurrent.BlockingCollection<(int Index, byte[]? Output)>(boundedCapacity: 2))
        {
            Task reader = Task.Run(() =>
            {
                try
                {
                    for (int i = first; i < manifest.Operations.Count; i++)
                    {
                        stop.Token.ThrowIfCancellationRequested();
                        made.Add((i, Make(payload, manifest, i, source)), stop.Token);
                    }
                }
                finally
                {
                    made.CompleteAdding();
                }
            });
            ArraySegment<byte> copyBuffer = default;
            try
            {
                foreach (var (i, output) in made.GetConsumingEnumerable(stop.Token))
                {
                    Operation op = manifest.Operations[i];
                    string at = $"operation {i} ({op.Type})";
                    if (HostOs.Platform.StepTrace.Enabled) HostOs.Platform.StepTrace.Step("apply", $"operation {i} ({op.Type}) to write");
                    switch (op.Type)
                    {
                        case OperationType.Zero:
                            tree?.KnownZeros(op.Dst);
                            writer.Zero(op.Dst);
                            break;
                        case OperationType.Copy:
                            Copy(source!, writer, op, bs, ref copyBuffer, stop.Token);
                            break;
                        case OperationType.Verity:
                            writer.Write(op.Dst, VerifiedTree(manifest, tree!, source, at));
                            break;
                        default:
                            if (Checked(output!, op, at, source, manifest, tree) is byte[] digests) tree!.Known(op.Dst, digests);
                            writer.Write(op.Dst, output!);
                            break;
                    }
                }
            }
            catch
            {
                stop.Cancel();
                WaitQuietly(reader);
                throw;
            }
            reader.GetAwaiter().GetResult(); // the reader's own failure, by name
        }
        HostOs.Platform.StepTrace.Step("apply", "every operation written");
        writer.Flush();
        HostOs.Platform.StepTrace.Step("apply", "the target flushed");
        if (!manifest.VerifiedByTree)
        {
            string written = writer.Sha256() ?? slot.Sha256(manifest.Target.Size);
            if (written != manifest.Target.Sha256) throw new PayloadException($"the written image's sha256 is {written}, the manifest says {manifest.Target.Sha256}");
        }
        say?.Invoke($"root image {manifest.Target.Version} written and verified ({manifest.Target.Size} bytes)");
        HostOs.Platform.Interop.Sys.CreateDirectoryDurably(where.BootDirectory);
        // Each boot file is written under a temporary name and synced; only when all are
        // verified do they take their names: never a new kernel beside an old initramfs.
        var staged = new List<(string Temporary, string Final)>();
        try
        {
            StageBootFiles(payload, manifest, where, Await(runningBootFiles), staged);
            HostOs.Platform.StepTrace.Step("apply", "boot files staged");
            foreach (var (temporary, final) in staged) HostOs.Platform.Interop.Sys.RenameDurably(temporary, final, overwrite: true);
        }
        finally
        {
            foreach (var (temporary, _) in staged) File.Delete(temporary);
        }
        if (payload.ReadByte() >= 0) throw new PayloadException("the payload has bytes after its last boot file");
        return manifest;
    }

    /// <summary>The running version's boot files that a delta's copies and patches start from; a copy's checked against its srcSha256.</summary>
    private static Dictionary<string, byte[]> RunningBootFiles(PayloadManifest manifest, ApplyTarget where)
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (BootFile f in manifest.BootFiles.Where(f => f.Type != OperationType.Data))
        {
            string at = $"boot file {f.Name}";
            string path = Path.Combine(where.SourceBootDirectory ?? throw new PayloadException($"{at}: the running version's boot files are needed"), f.Name);
            if (!File.Exists(path)) throw new PayloadException($"{at}: {path} is missing");
            byte[] old = File.ReadAllBytes(path);
            // A copy's content is the old file: checked here. A patch's is checked once made, and
            // the old file hashed only then if it does not match, to name it (NotTheSource).
            if (f.Type == OperationType.Copy && NotTheSource(f, old, path) is string problem) throw new PayloadException(problem);
            HostOs.Platform.StepTrace.Step("apply", $"the running {f.Name} read");
            files[f.Name] = old;
        }
        return files;
    }

    private static string? NotTheSource(BootFile f, byte[] old, string path) =>
        PayloadFile.Sha256(old) == f.SrcSha256 ? null : $"boot file {f.Name}: {path} is not the one this delta was made from";

    private static T Await<T>(Task<T> task)
    {
        try
        {
            return task.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PayloadException($"the running version's boot files: {e.Message}");
        }
    }

    /// <summary>Whether <paramref name="extents"/> cover exactly blocks [0, <paramref name="blocks"/>).</summary>
    private static bool IsPrefix(IEnumerable<long[]> extents, long blocks)
    {
        long next = 0;
        foreach (long[] e in extents.OrderBy(e => e[0]))
        {
            if (e[0] != next) return false;
            next += e[1];
        }
        return next == blocks;
    }

    /// <summary>
    /// What operation <paramref name="i"/> makes from the payload's data (read and checked
    /// here, in order): the output of a data, patch or diff operation, not yet checked
    /// against its hash; null for the writer's own (zeros, copies, the tree).
    /// </summary>
    private static byte[]? Make(Stream payload, PayloadManifest manifest, int i, SafeFileHandleReader? source)
    {
        Operation op = manifest.Operations[i];
        string at = $"operation {i} ({op.Type})";
        int bs = manifest.BlockSize;
        byte[] data = op.DataLength > 0 ? ReadData(payload, op.DataLength, op.DataSha256!, at) : [];
        long length = op.Dst.Sum(e => e[1]) * bs;
        switch (op.Type)
        {
            case OperationType.Data:
                return Decompress(data, null, length, at);
            case OperationType.Diff:
                byte[] sum = Decompress(data, null, length, at);
                AddBytes(sum, ReadExtents(source!, op.Src!, bs));
                return sum;
            case OperationType.Patch:
                return Decompress(data, ReadExtents(source!, op.Src!, bs), length, at);
            default:
                return null;
        }
    }

    /// <summary>Waits for a stage that was told to stop, or whose result is no longer needed; what it failed with then is not the error to report.</summary>
    private static void WaitQuietly(Task task)
    {
        try
        {
            task.Wait();
        }
        catch (AggregateException)
        {
        }
    }

    private sealed class Joined(Task task) : IDisposable
    {
        public void Dispose() => WaitQuietly(task);
    }

    /// <summary>
    /// The boot files, each written under a temporary name and synced (<paramref name="staged"/>).
    /// Their data comes in order from the stream; each file is checked, made and checked again
    /// on a core of its own as soon as its data is read (the next one is read meanwhile).
    /// </summary>
    private static void StageBootFiles(Stream payload, PayloadManifest manifest, ApplyTarget where, Dictionary<string, byte[]> running,
        List<(string, string)> staged)
    {
        var made = new List<Task<byte[]>>();
        try
        {
            foreach (BootFile f in manifest.BootFiles)
            {
                byte[]? frame = null;
                if (f.Type != OperationType.Copy)
                {
                    frame = new byte[f.DataLength];
                    PayloadFile.ReadExactly(payload, frame, $"the data of boot file {f.Name}");
                }
                made.Add(Task.Run(() => BootFileContent(f, frame, where, running)));
            }
        }
        catch
        {
            // What an earlier file failed with comes first, as it would have one file at a time;
            // none is left running.
            foreach (Task<byte[]> task in made) WaitQuietly(task);
            foreach (Task<byte[]> task in made.Where(t => t.IsFaulted)) task.GetAwaiter().GetResult();
            throw;
        }
        using var waitForAll = new Joined(Task.WhenAll(made));
        for (int i = 0; i < made.Count; i++)
        {
            byte[] content = made[i].GetAwaiter().GetResult();
            string final = Path.Combine(where.BootDirectory, manifest.BootFiles[i].Name), temporary = final + ".new";
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            staged.Add((temporary, final));
        }
    }

    /// <summary>A boot file's content from its data (<paramref name="frame"/>, checked first) and the running version's file, checked.</summary>
    private static byte[] BootFileContent(BootFile f, byte[]? frame, ApplyTarget where, Dictionary<string, byte[]> running)
    {
        string at = $"boot file {f.Name}";
        byte[]? old = f.Type == OperationType.Data ? null : running[f.Name];
        string path = f.Type == OperationType.Data ? "" : Path.Combine(where.SourceBootDirectory!, f.Name);
        byte[] content;
        if (f.Type == OperationType.Copy) content = old!;
        else
        {
            CheckData(frame!, f.DataSha256!, at);
            if (old is null) content = Decompress(frame!, null, f.Size, at);
            else
            {
                // A patch: the old file's first and last bytes as they are (keep), the
                // frame makes what lies between with the old file's middle as dictionary.
                try
                {
                    long head = f.Keep?[0] ?? 0, tail = f.Keep?[1] ?? 0;
                    if (head + tail > old.Length) throw new PayloadException($"{at}: keeps {head} + {tail} bytes of {path}, which has {old.Length}");
                    content = new byte[f.Size];
                    old.AsSpan(0, (int)head).CopyTo(content);
                    old.AsSpan(old.Length - (int)tail).CopyTo(content.AsSpan((int)(f.Size - tail)));
                    // Made in place, the old middle as the dictionary where it lies: no copies of either.
                    Decompress(frame!, old.AsSpan((int)head, old.Length - (int)(head + tail)), content.AsSpan((int)head, (int)(f.Size - head - tail)), at);
                }
                catch (PayloadException e)
                {
                    // The data was just checked: a patch that does not apply points at the old file first.
                    throw new PayloadException(NotTheSource(f, old, path) ?? e.Message);
                }
            }
        }
        // A copy's content is the old file, already checked against the same hash (the manifest
        // says srcSha256 == sha256 for a copy): hashed once.
        if (f.Type != OperationType.Copy && PayloadFile.Sha256(content) != f.Sha256)
        {
            throw new PayloadException((old is null ? null : NotTheSource(f, old, path)) ?? $"{at}: its content does not match its hash");
        }
        HostOs.Platform.StepTrace.Step("apply", $"boot file {f.Name} made");
        if (content.Length != f.Size) throw new PayloadException($"{at}: {content.Length} bytes, the manifest says {f.Size}");
        return content;
    }

    private static string? SourceProblem(SafeFileHandleReader source, ImageIdentity expected)
    {
        string actual = source.Sha256(expected.Size);
        return actual == expected.Sha256 ? null : $"the source {source.Path} is not version {expected.Version} (sha256 {actual}, the delta expects {expected.Sha256})";
    }

    /// <summary>
    /// ": the source … is not version V" after a check that failed, when the source of a
    /// delta checked by its tree (not hashed first) is the reason; else nothing.
    /// </summary>
    private static string SourceSuspect(SafeFileHandleReader? source, PayloadManifest manifest) =>
        source is not null && manifest.VerifiedByTree && SourceProblem(source, manifest.Source!) is string problem ? $": {problem}" : "";

    /// <summary>
    /// The verity operation: the dm-verity tree of the data blocks now in the target (hashed
    /// as they were written, the rest now on every core: <see cref="TreeFollower"/>), whose root must be the one the signed manifest names (so every data
    /// block is the target's), and whose bytes must hash as the manifest says (so the whole
    /// image is). When the root differs in a delta, the source is the first suspect: it is
    /// hashed and named when it is not the version the delta was made from.
    /// </summary>
    private byte[] VerifiedTree(PayloadManifest manifest, TreeFollower follower, SafeFileHandleReader? source, string at)
    {
        var (tree, root, known, ahead) = follower.Finish();
        HostOs.Platform.StepTrace.Step("apply", "the tree follower stopped");
        long blocks = manifest.TargetVerity!.DataBlocks;
        say?.Invoke($"dm-verity tree built from {blocks} blocks: {known} digests known (checked outputs, zeros), {ahead} read back while the others were written, {blocks - known - ahead} after");
        string got = Convert.ToHexStringLower(root);
        if (got != manifest.Target.VerityRootHash)
        {
            throw new PayloadException($"{at}: the written data's dm-verity root hash is {got}, the manifest says {manifest.Target.VerityRootHash}{SourceSuspect(source, manifest)}");
        }
        if (PayloadFile.Sha256(tree) != manifest.Operations[^1].DstSha256) throw new PayloadException($"{at}: the tree's bytes do not match its hash");
        return tree;
    }

    private static SafeFileHandle OpenTarget(string path, long size)
    {
        bool device = HostOs.Platform.Interop.Sys.IsBlockDevice(path);
        // A name under /dev/ that is no device is a mistyped slot: never made there as a file.
        if (!device && path.StartsWith("/dev/", StringComparison.Ordinal)) throw new PayloadException($"{path} is not a block device");
        SafeFileHandle h = File.OpenHandle(path, device ? FileMode.Open : FileMode.OpenOrCreate, FileAccess.ReadWrite);
        // A block device's size is not its stat size: sysfs counts it in 512-byte sectors.
        long length = device ? SafeFileHandleReader.BlockDeviceSize(path) : RandomAccess.GetLength(h);
        if (device && length < size)
        {
            h.Dispose();
            throw new PayloadException($"{path} has {length} bytes, the image needs {size}");
        }
        if (!device && length != size) RandomAccess.SetLength(h, size);
        return h;
    }

    /// <summary>The diff operation's sum: <paramref name="sum"/> += <paramref name="source"/>, byte by byte modulo 256.</summary>
    internal static void AddBytes(Span<byte> sum, ReadOnlySpan<byte> source)
    {
        int i = 0;
        for (; i <= sum.Length - System.Numerics.Vector<byte>.Count; i += System.Numerics.Vector<byte>.Count)
        {
            (new System.Numerics.Vector<byte>(sum[i..]) + new System.Numerics.Vector<byte>(source[i..])).CopyTo(sum[i..]);
        }
        for (; i < sum.Length; i++) sum[i] += source[i];
    }

    /// <summary>
    /// How many operations, from the first, the target already holds the output of: each
    /// checked as the apply would check it (its output's hash; zeros; a copy against the
    /// source), stopping at the first that does not match or at the verity operation. On a slot that held
    /// something else that is at once, after an interrupted apply of this payload it is
    /// where the interruption came (a flush starts every 16 MiB written, one at a time).
    /// </summary>
    private static int VerifiedPrefix(PayloadManifest manifest, SafeFileHandleReader written, SafeFileHandleReader? source, TreeFollower? tree,
        CancellationToken cancel)
    {
        int bs = manifest.BlockSize;
        byte[] here = new byte[TargetWriter.ChunkBytes], there = new byte[TargetWriter.ChunkBytes];
        for (int i = 0; i < manifest.Operations.Count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            // The tree is always built again: it is the check of everything kept.
            if (manifest.Operations[i].Type == OperationType.Verity || !Holds(manifest.Operations[i])) return i;
        }
        return manifest.Operations.Count;

        bool Holds(Operation op)
        {
            if (op.Type is not (OperationType.Zero or OperationType.Copy))
            {
                byte[] held = ReadExtents(written, op.Dst, bs);
                if (!manifest.ByLeaves) return PayloadFile.Sha256(held) == op.DstSha256;
                // The digests that matched are the tree's for those blocks: not read back again.
                byte[] digests = tree!.Digests(held);
                if (PayloadFile.Sha256(digests) != op.DstLeavesSha256) return false;
                tree.Known(op.Dst, digests);
                return true;
            }
            foreach (var (dst, src, n) in Pieces(op.Dst, op.Src ?? op.Dst, here.Length / bs))
            {
                Span<byte> have = here.AsSpan(0, (int)(n * bs));
                written.Read(dst * bs, have);
                if (op.Type == OperationType.Zero)
                {
                    if (have.IndexOfAnyExcept((byte)0) >= 0) return false;
                    continue;
                }
                Span<byte> want = there.AsSpan(0, have.Length);
                source!.Read(src * bs, want);
                if (!have.SequenceEqual(want)) return false;
            }
            if (op.Type == OperationType.Zero) tree?.KnownZeros(op.Dst);
            return true;
        }
    }

    /// <summary>
    /// Two extent lists of the same length in blocks, walked together in pieces of at most
    /// <paramref name="most"/> blocks that neither list cuts: (block in a, block in b, count).
    /// </summary>
    internal static IEnumerable<(long A, long B, long Count)> Pieces(List<long[]> a, List<long[]> b, long most)
    {
        int ai = 0, bi = 0;
        long aDone = 0, bDone = 0;
        while (ai < a.Count && bi < b.Count)
        {
            long n = Math.Min(most, Math.Min(a[ai][1] - aDone, b[bi][1] - bDone));
            yield return (a[ai][0] + aDone, b[bi][0] + bDone, n);
            if ((aDone += n) == a[ai][1]) { ai++; aDone = 0; }
            if ((bDone += n) == b[bi][1]) { bi++; bDone = 0; }
        }
    }

    /// <summary>Goes on in the payload <paramref name="dataOffset"/> bytes into its data: a range request, or a seek in a file.</summary>
    private static void Skip(Stream payload, long headLength, long dataOffset)
    {
        if (payload is ISkippingStream skipping) skipping.SkipTo(headLength + dataOffset);
        else payload.Position = headLength + dataOffset;
    }

    /// <summary>
    /// Checks an operation's output before it is written: by its SHA-256, or (format 4 with a
    /// tree) by the SHA-256 of its blocks' digests, computed on every core and returned for
    /// the tree. When it does not match and it was made from the source, the source is the
    /// first suspect: see <see cref="SourceSuspect"/>.
    /// </summary>
    private static byte[]? Checked(byte[] output, Operation op, string at, SafeFileHandleReader? source, PayloadManifest manifest, TreeFollower? tree)
    {
        byte[]? digests = manifest.ByLeaves ? tree!.Digests(output) : null;
        if (digests is null ? PayloadFile.Sha256(output) == op.DstSha256 : PayloadFile.Sha256(digests) == op.DstLeavesSha256) return digests;
        throw new PayloadException($"{at}: its output does not match its hash{(op.Src is null ? "" : SourceSuspect(source, manifest))}");
    }

    private static byte[] ReadExtents(SafeFileHandleReader image, List<long[]> extents, int bs)
    {
        byte[] bytes = new byte[extents.Sum(e => e[1]) * bs];
        long offset = 0;
        foreach (long[] e in extents)
        {
            image.Read(e[0] * bs, bytes.AsSpan((int)offset, (int)(e[1] * bs)));
            offset += e[1] * bs;
        }
        return bytes;
    }

    /// <summary>4 MiB: a direct read or write that large is split by the block layer into requests that are in flight together.</summary>
    private const int CopyChunkBytes = 4 << 20;

    /// <summary>
    /// A copy of any length, in chunks of at most <see cref="CopyChunkBytes"/>; what it
    /// wrote is checked with the whole target after the last operation.
    /// </summary>
    private static void Copy(SafeFileHandleReader source, TargetWriter writer, Operation op, int bs, ref ArraySegment<byte> buffer, CancellationToken cancel)
    {
        // One buffer for every copy of the apply: fresh memory is page faults and zeroing.
        if (buffer.Array is null) buffer = HostOs.Platform.Disk.DirectIo.AlignedBuffer(CopyChunkBytes);
        foreach (var (dst, src, n) in Pieces(op.Dst, op.Src!, buffer.Count / bs))
        {
            cancel.ThrowIfCancellationRequested();
            Span<byte> chunk = buffer.AsSpan(0, (int)(n * bs));
            source.Read(src * bs, chunk);
            writer.Write([[dst, n]], chunk);
        }
    }

    /// <summary>The next <paramref name="length"/> bytes of the payload, which must hash to <paramref name="sha256"/>.</summary>
    private static byte[] ReadData(Stream payload, long length, string sha256, string what)
    {
        byte[] data = new byte[length];
        PayloadFile.ReadExactly(payload, data, $"the data of {what}");
        CheckData(data, sha256, what);
        return data;
    }

    private static void CheckData(byte[] data, string sha256, string what)
    {
        if (PayloadFile.Sha256(data) != sha256) throw new PayloadException($"{what}: its data does not match its hash: the payload is corrupt");
    }

    /// <summary>Exactly <paramref name="length"/> bytes out of one frame, or a named error (never more memory than that).</summary>
    private static byte[] Decompress(byte[] frame, byte[]? dictionary, long length, string at)
    {
        byte[] output = new byte[length];
        Decompress(frame, dictionary, output, at);
        return output;
    }

    /// <summary>Exactly <paramref name="output"/>'s length out of one frame, into it, or a named error.</summary>
    private static void Decompress(byte[] frame, ReadOnlySpan<byte> dictionary, Span<byte> output, string at)
    {
        try
        {
            using var d = new Decompressor();
            if (!dictionary.IsEmpty) d.LoadDictionary(dictionary);
            int n = d.Unwrap(frame, output);
            if (n != output.Length) throw new PayloadException($"{at}: decompresses to {n} bytes, not {output.Length}");
        }
        catch (ZstdException e)
        {
            throw new PayloadException($"{at}: its data does not decompress: {e.Message}");
        }
    }
}

/// <summary>
/// Writes the target: the first write runs <see cref="ApplyTarget.BeforeFirstWrite"/>,
/// progress follows the bytes written, and while the operations write the target in order
/// from its first block (as the builder makes them) its SHA-256 is computed on the way, so
/// the written image needs no second read; otherwise the caller reads it back. Not when the
/// target is checked by its rebuilt hash tree instead.
/// </summary>
/// <param name="direct">The target opened with O_DIRECT, if it could be: writes go through it
/// (from an aligned copy when the bytes are not aligned), around the page cache.</param>
internal sealed class TargetWriter(SafeFileHandle target, int blockSize, long total, Action? beforeFirstWrite,
    Action<PayloadApplier.Progress>? progress, bool hashOnTheWay = true, Action<long>? inOrder = null, HostOs.Platform.Disk.DirectHandle? direct = null) : IDisposable
{
    public const int ChunkBytes = 1 << 20;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _next;            // the target's prefix written in order, in bytes
    private bool _inOrder = true, _hashing = hashOnTheWay;
    private long _done, _unflushed;
    private bool _started;
    private Task _flushing = Task.CompletedTask;

    /// <summary>
    /// <paramref name="verified"/> bytes are already there (the target's first ones when
    /// <paramref name="prefix"/>): they count as done, the target will be read back to be
    /// hashed, and the slot is taken now (what it holds is relied on).
    /// </summary>
    public void Resumed(long verified, bool prefix)
    {
        _hashing = false;
        if (prefix)
        {
            _next = verified;
            inOrder?.Invoke(_next);
        }
        else _inOrder = false;
        _done = verified;
        Start();
        progress?.Invoke(new PayloadApplier.Progress(_done, total));
    }

    private void Start()
    {
        if (_started) return;
        _started = true;
        beforeFirstWrite?.Invoke();
    }

    public void Write(List<long[]> dst, ReadOnlySpan<byte> bytes)
    {
        Start();
        long offset = 0;
        foreach (long[] e in dst)
        {
            long at = e[0] * blockSize, length = e[1] * blockSize;
            ReadOnlySpan<byte> part = bytes.Slice((int)offset, (int)length);
            WriteAt(part, at);
            if (_inOrder && at == _next)
            {
                if (_hashing) _hash.AppendData(part);
                _next += length;
            }
            else _inOrder = false;
            offset += length;
        }
        if (_inOrder) inOrder?.Invoke(_next);
        _done += bytes.Length;
        // Durable as it goes, so that what an interrupted apply wrote is there to resume from:
        // a flush every 16 MiB, on another thread while the writes go on. One still under way
        // is not waited for: the next starts once it is done (a device's cache flush can take
        // longer than writing 16 MiB; the writes never wait for one).
        if ((_unflushed += bytes.Length) >= 16 << 20 && _flushing.IsCompleted)
        {
            _flushing.GetAwaiter().GetResult(); // the last one's failure, by name
            HostOs.Platform.StepTrace.Step("apply", "a flush started");
            _flushing = Task.Run(() => RandomAccess.FlushToDisk(target));
            _unflushed = 0;
        }
        progress?.Invoke(new PayloadApplier.Progress(_done, total));
    }

    private ArraySegment<byte> _staging;

    private void WriteAt(ReadOnlySpan<byte> part, long at)
    {
        const int Alignment = HostOs.Platform.Disk.DirectIo.Alignment;
        // Direct where the place is aligned: the bytes as they are when their memory is too,
        // else through an aligned copy; buffered where the device refuses.
        if (direct is not { Usable: true } || at % Alignment != 0 || part.Length % Alignment != 0)
        {
            RandomAccess.Write(target, part, at);
            return;
        }
        if (direct.TryWrite(part, at)) return;
        if (_staging.Array is null) _staging = HostOs.Platform.Disk.DirectIo.AlignedBuffer(ChunkBytes);
        for (int done = 0; done < part.Length; done += _staging.Count)
        {
            ReadOnlySpan<byte> piece = part.Slice(done, Math.Min(_staging.Count, part.Length - done));
            piece.CopyTo(_staging);
            if (!direct.TryWrite(_staging.AsSpan(0, piece.Length), at + done)) RandomAccess.Write(target, piece, at + done);
        }
    }

    public void Zero(List<long[]> dst)
    {
        byte[] zeros = new byte[Math.Min(ChunkBytes, dst.Max(e => e[1]) * blockSize)];
        foreach (var (at, _, n) in PayloadApplier.Pieces(dst, dst, zeros.Length / blockSize)) Write([[at, n]], zeros.AsSpan(0, (int)(n * blockSize)));
    }

    /// <summary>Everything written is on the disk: the flush under way, if any, then one more.</summary>
    public void Flush()
    {
        _flushing.GetAwaiter().GetResult();
        RandomAccess.FlushToDisk(target);
    }

    /// <summary>A flush still under way when the apply failed: waited for, its own failure not the one to report.</summary>
    public void Dispose()
    {
        try
        {
            _flushing.Wait();
        }
        catch (AggregateException)
        {
        }
        _hash.Dispose();
    }

    /// <summary>The target's SHA-256 when it was written in order, else null (read it back).</summary>
    public string? Sha256() => _hashing && _inOrder && _next == total ? Convert.ToHexStringLower(_hash.GetHashAndReset()) : null;
}


using System.Buffers.Binary;
using System.Security.Cryptography;
using NSec.Cryptography;
using ZstdSharp;
using ZstdSharp.Unsafe;

namespace HostOs.Updater.Payload;

/// <summary>The inputs of a payload: an image build's root image, kernel, initramfs and identity.</summary>
public sealed record ImageBuild(string Version, string RootImage, string Kernel, string Initrd, string Cmdline)
{
    /// <summary>A build output directory of build.sh (out/NAME: root.img, vmlinuz, initrd.img, manifest.json).</summary>
    public static ImageBuild FromDirectory(string dir)
    {
        string manifest = Path.Combine(dir, "manifest.json");
        if (!File.Exists(manifest)) throw new PayloadException($"{dir} is not an image build (no manifest.json)");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(manifest));
        string version = doc.RootElement.GetProperty("version").GetString() ?? throw new PayloadException($"{manifest}: no version");
        string cmdline = doc.RootElement.GetProperty("cmdline").GetString() ?? "";
        // The build's command line names its slot and version; the payload's leaves them to the applier.
        cmdline = string.Join(' ', cmdline.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(a => !a.StartsWith("hostos.slot=", StringComparison.Ordinal) && !a.StartsWith("hostos.version=", StringComparison.Ordinal)));
        return new ImageBuild(version, Path.Combine(dir, "root.img"), Path.Combine(dir, "vmlinuz"), Path.Combine(dir, "initrd.img"), cmdline);
    }

    /// <summary>A build directory, or a root image (a file or a device) with its build's manifest.json beside it.</summary>
    public static ImageBuild Of(string path) =>
        File.Exists(path)
            ? FromDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!) with { RootImage = path }
            : FromDirectory(path);

    /// <summary>The dm-verity parameters its command line gives the kernel (<c>hostos.verity=</c>), or null when its root has no tree.</summary>
    public HostOs.Platform.Disk.VerityParameters? Verity()
    {
        try
        {
            return HostOs.Platform.Disk.VerityParameters.FromCommandLine(HostOs.Platform.Kernel.KernelCommandLine.Parse(Cmdline));
        }
        catch (InvalidDataException e)
        {
            throw new PayloadException($"the build's command line: {e.Message}");
        }
    }
}

/// <summary>
/// Makes payloads (docs/updates.md). Full: every target block zero or in 4 MiB zstd
/// frames. Delta against an exact source image: each target block is found, by content,
/// anywhere in the source (a copy: an extent of block numbers, nothing else), or is zero,
/// or is new; each run of new blocks becomes the smallest of a patch (zstd with the source
/// bytes around the same place as a raw dictionary: what <c>zstd --patch-from</c> does for
/// a whole file, here within a bounded window) and a diff against the source where the run
/// would be if it moved as its neighbours or most copies did. Every operation that makes
/// new bytes is bounded (4 MiB out, 16 MiB of source in); copies and zeros are streamed,
/// so applying needs little memory.
/// </summary>
/// <param name="format">The manifest format written: 4, or 3 (data operations checked by
/// their output's SHA-256 also with a tree) for machines whose updater reads no newer.</param>
public sealed class PayloadBuilder(int level = 19, int format = PayloadManifest.CurrentFormat)
{
    private const int ChunkBlocks = 1024;             // new data per frame: 4 MiB of 4 KiB blocks
    private const long WindowBytes = 4 << 20;         // source on each side of a new run, as its dictionary

    public sealed record Result(PayloadManifest Manifest, long PayloadBytes)
    {
        public int Count(OperationType type) => Manifest.Operations.Count(o => o.Type == type);
    }

    public Result Create(ImageBuild target, ImageBuild? source, IReadOnlyList<Key> keys, string output)
    {
        if (keys.Count == 0) throw new PayloadException("no signing key");
        if (format is < 3 or > PayloadManifest.CurrentFormat) throw new PayloadException($"payloads are made in format 3 or {PayloadManifest.CurrentFormat}, not {format}");
        if (source is not null && SemanticVersion.Parse(target.Version) <= SemanticVersion.Parse(source.Version))
        {
            throw new PayloadException($"a delta goes forward: {source.Version} -> {target.Version} does not");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        const int bs = 4096;
        using SafeFileHandleReader tgt = new(target.RootImage);
        using SafeFileHandleReader? src = source is null ? null : new(source.RootImage);
        if (tgt.Length % bs != 0) throw new PayloadException($"{target.RootImage}: {tgt.Length} bytes is not a whole number of {bs}-byte blocks");
        if (src is not null && src.Length % bs != 0) throw new PayloadException($"{source!.RootImage}: {src.Length} bytes is not a whole number of {bs}-byte blocks");

        string dataFile = output + ".data.tmp";
        var ops = new List<Operation>();
        using (var data = new FileStream(dataFile, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose))
        {
            Dictionary<ulong, long>? index = src is null ? null : Index(src, bs);
            // A root with a dm-verity tree: the operations make its data, and the last one has
            // the applier build the tree again (random bytes wherever a block changed: no
            // compressor shrinks them, and the applier checks everything by its root).
            HostOs.Platform.Disk.VerityParameters? verity = target.Verity();
            byte[]? tree = verity is null ? null : ImageCheck.CheckedTree(target.RootImage, tgt, verity);
            // Format 4 with a tree: what a data operation makes is named by its blocks' digests.
            byte[]? salt = tree is not null && format >= 4 ? Convert.FromHexString(verity!.Salt) : null;
            long blocks = verity?.DataBlocks ?? tgt.Length / bs;
            byte[] block = new byte[bs], other = new byte[bs];
            // Classify every target block, then emit runs.
            var kinds = new (char Kind, long Src)[blocks];
            for (long b = 0; b < blocks; b++)
            {
                tgt.Read(b * bs, block);
                // The same place in the source first: unchanged blocks, and zeros where the
                // source has zeros too (so copy runs are not cut at every hole of the file system).
                bool samePlace = src is not null && b * bs < src.Length;
                if (samePlace) src!.Read(b * bs, other);
                if (samePlace && block.AsSpan().SequenceEqual(other)) kinds[b] = ('c', b);
                else if (block.AsSpan().IndexOfAnyExcept((byte)0) < 0) kinds[b] = ('z', 0);
                else if (index is not null && index.TryGetValue(BlockKey(block), out long at) && SameAs(src!, at, block, other)) kinds[b] = ('c', at);
                else kinds[b] = ('n', 0);
            }
            MergeNearbyChanges(kinds);
            long[] shifts = CommonShifts(kinds);
            long i = 0;
            while (i < blocks)
            {
                char kind = kinds[i].Kind;
                long start = i;
                if (kind == 'c')
                {
                    // A copy is streamed by the applier: as long as the source's blocks follow on.
                    while (i < blocks && kinds[i].Kind == 'c' && kinds[i].Src == kinds[start].Src + (i - start)) i++;
                    ops.Add(new Operation
                    {
                        Type = OperationType.Copy, Dst = [[start, i - start]], Src = [[kinds[start].Src, i - start]],
                    });
                }
                else if (kind == 'z')
                {
                    while (i < blocks && kinds[i].Kind == 'z') i++;
                    ops.Add(new Operation { Type = OperationType.Zero, Dst = [[start, i - start]] });
                }
                else
                {
                    while (i < blocks && i - start < ChunkBlocks && kinds[i].Kind == 'n') i++;
                    byte[] bytes = tgt.ReadRange(start * bs, (i - start) * bs);
                    if (src is not null)
                    {
                        ops.Add(Changed(src, kinds, shifts, start, i, bytes, data, salt));
                        continue;
                    }
                    byte[] plain = Compress(bytes, null);
                    ops.Add(new Operation
                    {
                        Type = OperationType.Data, Dst = [[start, i - start]],
                        DataLength = plain.Length, DataSha256 = Sha256(plain),
                        DstSha256 = salt is null ? Sha256(bytes) : null, DstLeavesSha256 = LeavesSha256(salt, bytes),
                    });
                    data.Write(plain);
                }
            }
            if (tree is not null) ops.Add(new Operation { Type = OperationType.Verity, Dst = [[blocks, tree.Length / bs]], DstSha256 = Sha256(tree) });
            var bootFiles = new List<BootFile>();
            foreach (var (name, path, previous) in new[] { ("vmlinuz", target.Kernel, source?.Kernel), ("initrd.img", target.Initrd, source?.Initrd) })
            {
                byte[] content = File.ReadAllBytes(path);
                byte[]? old = previous is null ? null : File.ReadAllBytes(previous);
                if (old is not null && content.AsSpan().SequenceEqual(old))
                {
                    bootFiles.Add(new BootFile { Name = name, Type = OperationType.Copy, Size = content.Length, Sha256 = Sha256(content), SrcSha256 = Sha256(old), DataLength = 0 });
                    continue;
                }
                byte[] packed = Compress(content, null);
                // A patch keeps the old file's bytes where both begin and end alike (the
                // initramfs puts what changes with every version last), and makes the rest.
                long[]? keep = null;
                byte[]? patch = null;
                if (old is not null && old.Length <= PayloadManifest.MaxReferenceBytes * 2)
                {
                    int most = Math.Min(old.Length, content.Length);
                    int head = content.AsSpan(0, most).CommonPrefixLength(old.AsSpan(0, most));
                    int tail = 0;
                    while (tail < most - head && content[^(tail + 1)] == old[^(tail + 1)]) tail++;
                    keep = head + tail > 0 ? [head, tail] : null;
                    patch = Compress(content[head..(content.Length - tail)], old[head..(old.Length - tail)], PatchLevel);
                }
                bool patched = patch is not null && patch.Length < packed.Length;
                byte[] frame = patched ? patch! : packed;
                bootFiles.Add(new BootFile
                {
                    Name = name, Type = patched ? OperationType.Patch : OperationType.Data, Size = content.Length, Sha256 = Sha256(content),
                    SrcSha256 = patched ? Sha256(old) : null, Keep = patched ? keep : null,
                    DataLength = frame.Length, DataSha256 = Sha256(frame),
                });
                data.Write(frame);
            }
            var manifest = new PayloadManifest
            {
                Version = target.Version,
                Created = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
                Source = source is null ? null : new ImageIdentity
                {
                    Version = source.Version, Size = src!.Length, Sha256 = src.Sha256(), VerityRootHash = source.Verity()?.RootHash,
                },
                Target = new ImageIdentity { Version = target.Version, Size = tgt.Length, Sha256 = tgt.Sha256(), VerityRootHash = verity?.RootHash },
                Cmdline = target.Cmdline,
                Format = format,
                BlockSize = bs,
                Operations = ops,
                BootFiles = bootFiles,
            };
            manifest.Validate(); // what we write is what a reader accepts
            string tmp = output + ".tmp";
            using (var outStream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                outStream.Write(PayloadFile.Head(manifest.ToJsonBytes(), keys));
                data.Position = 0;
                data.CopyTo(outStream);
                outStream.Flush(flushToDisk: true);
            }
            File.Move(tmp, output, overwrite: true);
            return new Result(manifest, new FileInfo(output).Length);
        }
    }

    /// <summary>
    /// A run of changed target blocks [<paramref name="start"/>, <paramref name="end"/>) in a
    /// delta: the smallest of a patch (zstd with the source around the same place as its
    /// dictionary) and a diff against the source where the run would be had nothing moved,
    /// or where the copies on either side say it moved to (metadata blocks whose pointers
    /// shifted with the files they point at differ from their old selves by a few repeated
    /// values, which zstd packs to almost nothing; bsdiff gets its size from the same idea).
    /// </summary>
    private Operation Changed(SafeFileHandleReader src, (char Kind, long Src)[] kinds, long[] shifts, long start, long end, byte[] bytes, FileStream data,
        byte[]? salt)
    {
        const int bs = 4096;
        long n = end - start, sourceBlocks = src.Length / bs;
        long refStart = Math.Max(0, Math.Min(start, sourceBlocks - 1) - WindowBytes / bs);
        long refCount = Math.Min(sourceBlocks, end + WindowBytes / bs) - refStart; // at least one block: a source has one
        byte[] best = Compress(bytes, src.ReadRange(refStart * bs, refCount * bs), PatchLevel);
        List<long[]> bestSrc = [[refStart, refCount]];
        OperationType type = OperationType.Patch;
        var tried = new HashSet<long>();
        long[] candidates =
        [
            start,
            start > 0 && kinds[start - 1].Kind == 'c' ? kinds[start - 1].Src + 1 : -1,
            end < kinds.Length && kinds[end].Kind == 'c' ? kinds[end].Src - n : -1,
            .. shifts.Select(shift => start + shift),
        ];
        foreach (long at in candidates)
        {
            if (at < 0 || at + n > sourceBlocks || !tried.Add(at)) continue;
            byte[] diff = src.ReadRange(at * bs, n * bs);
            int same = 0;
            for (int k = 0; k < diff.Length; k++)
            {
                if (bytes[k] == diff[k]) same++;
                diff[k] = (byte)(bytes[k] - diff[k]);
            }
            if (same < diff.Length / 2) continue; // not the same place moved: a patch does better
            byte[] frame = Compress(diff, null, PatchLevel);
            if (frame.Length >= best.Length) continue;
            (best, bestSrc, type) = (frame, [[at, n]], OperationType.Diff);
        }
        var op = new Operation
        {
            Type = type, Dst = [[start, n]], Src = bestSrc,
            DataLength = best.Length, DataSha256 = Sha256(best),
            DstSha256 = salt is null ? Sha256(bytes) : null, DstLeavesSha256 = LeavesSha256(salt, bytes),
        };
        data.Write(best);
        return op;
    }

    /// <summary>
    /// The few distances (source block - target block) most of the copies share: where the
    /// files moved to as a whole when something was inserted before them. A changed run
    /// that moved with them (a binary rebuilt, its addresses moved too) diffs well there,
    /// even where its neighbours are not copies of the same distance.
    /// </summary>
    private static long[] CommonShifts((char Kind, long Src)[] kinds)
    {
        var count = new Dictionary<long, long>();
        for (long b = 0; b < kinds.Length; b++)
        {
            if (kinds[b].Kind == 'c') count[kinds[b].Src - b] = count.GetValueOrDefault(kinds[b].Src - b) + 1;
        }
        return [.. count.OrderByDescending(c => c.Value).Take(4).Select(c => c.Key)];
    }

    /// <summary>
    /// New runs a few blocks apart become one (the copies between them cost next to nothing
    /// inside a patch whose dictionary holds them): fewer operations, less manifest. Only
    /// over zeros and copies from near the same place: the dictionary is the source around
    /// it, and a copy from far away would become new data.
    /// </summary>
    private static void MergeNearbyChanges((char Kind, long Src)[] kinds)
    {
        const int Gap = 256;
        const long NearBlocks = WindowBytes / 4096 / 2;
        long lastNewEnd = -1, runStart = -1;
        for (long b = 0; b < kinds.Length; b++)
        {
            if (kinds[b].Kind != 'n') continue;
            if (lastNewEnd >= 0 && b - lastNewEnd <= Gap && b - runStart < ChunkBlocks && Near(lastNewEnd, b))
            {
                for (long g = lastNewEnd; g < b; g++) kinds[g] = ('n', 0);
            }
            else runStart = b;
            lastNewEnd = b + 1;
        }

        bool Near(long from, long to)
        {
            for (long g = from; g < to; g++)
            {
                if (kinds[g].Kind != 'z' && Math.Abs(kinds[g].Src - g) > NearBlocks) return false;
            }
            return true;
        }
    }

    private static bool SameAs(SafeFileHandleReader src, long at, byte[] block, byte[] scratch)
    {
        src.Read(at * block.Length, scratch);
        return block.AsSpan().SequenceEqual(scratch);
    }

    /// <summary>The first source block of each content (8 bytes of its SHA-256); zero blocks left out.</summary>
    private static Dictionary<ulong, long> Index(SafeFileHandleReader src, int bs)
    {
        var index = new Dictionary<ulong, long>();
        byte[] block = new byte[bs];
        for (long b = 0; b < src.Length / bs; b++)
        {
            src.Read(b * bs, block);
            if (block.AsSpan().IndexOfAnyExcept((byte)0) < 0) continue;
            index.TryAdd(BlockKey(block), b);
        }
        return index;
    }

    private static ulong BlockKey(byte[] block) => BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(block));

    private static string Sha256(ReadOnlySpan<byte> data) => PayloadFile.Sha256(data);

    private static string? LeavesSha256(byte[]? salt, byte[] bytes) => salt is null ? null : HostOs.Verity.VerityTree.BlockDigestsSha256(salt, bytes);

    /// <summary>
    /// The level of every patch, whatever the payload's: a patch is worth only the matches it
    /// finds in its dictionary, and below about 19 zstd finds few in a dictionary of several
    /// MiB (a 9 MiB initramfs that differs in a few bytes patched to 4 MB at level 3, 1.5 KB at
    /// 19). Patches are small, so this costs seconds, not minutes.
    /// </summary>
    private int PatchLevel => Math.Max(level, 19);

    /// <summary>One zstd frame (with its content size); with a dictionary, that raw content as its prefix.</summary>
    internal byte[] Compress(byte[] data, byte[]? dictionary, int? atLevel = null)
    {
        using var c = new Compressor(atLevel ?? level);
        c.SetParameter(ZSTD_cParameter.ZSTD_c_windowLog, 24);
        c.SetParameter(ZSTD_cParameter.ZSTD_c_enableLongDistanceMatching, 1);
        c.SetParameter(ZSTD_cParameter.ZSTD_c_contentSizeFlag, 1);
        if (dictionary is not null) c.LoadDictionary(dictionary);
        return c.Wrap(data).ToArray();
    }
}

/// <summary>
/// Positional reads of an image file. With <c>direct</c>, reads into an aligned buffer at an
/// aligned offset bypass the page cache (<see cref="HostOs.Platform.Disk.DirectIo"/>); the rest are buffered.
/// </summary>
internal sealed class SafeFileHandleReader : IDisposable
{
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
    private readonly HostOs.Platform.Disk.DirectHandle? _direct;
    public long Length { get; }
    public string Path { get; }

    public SafeFileHandleReader(string path, bool direct = false)
    {
        Path = path;
        bool device = HostOs.Platform.Interop.Sys.IsBlockDevice(path);
        if (!device && !File.Exists(path)) throw new PayloadException($"{path} does not exist");
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        Length = device ? BlockDeviceSize(path) : RandomAccess.GetLength(_handle);
        if (direct) _direct = HostOs.Platform.Disk.DirectHandle.Open(path, write: false);
    }

    internal static long BlockDeviceSize(string path)
    {
        string name = System.IO.Path.GetFileName(new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? path);
        string sys = $"/sys/class/block/{name}/size";
        if (!File.Exists(sys)) throw new PayloadException($"{path} is not a block device this updater can size ({sys} is missing)");
        return long.Parse(File.ReadAllText(sys).Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512;
    }

    public void Read(long offset, Span<byte> buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            Span<byte> rest = buffer[read..];
            int n = _direct?.TryRead(rest, offset + read) ?? RandomAccess.Read(_handle, rest, offset + read);
            if (n == 0) throw new PayloadException($"{Path}: ends at {offset + read}");
            read += n;
        }
    }

    public byte[] ReadRange(long offset, long length)
    {
        byte[] b = new byte[length];
        Read(offset, b);
        return b;
    }

    /// <summary>SHA-256 of the first <paramref name="size"/> bytes (all of them by default).</summary>
    public string Sha256(long? size = null)
    {
        long end = size ?? Length;
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        for (long at = 0; at < end; at += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, end - at);
            Read(at, buffer.AsSpan(0, n));
            hash.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        _handle.Dispose();
        _direct?.Dispose();
    }
}

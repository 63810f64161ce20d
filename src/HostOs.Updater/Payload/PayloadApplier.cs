using Microsoft.Win32.SafeHandles;
using NSec.Cryptography;
using ZstdSharp;

namespace HostOs.Updater.Payload;

/// <summary>Where an apply writes and reads: the inactive slot (a partition or an image file), and for a delta the source.</summary>
/// <param name="BeforeFirstWrite">Runs once everything before the first write to the target is verified
/// (signature, version, source, the first operation's output): the machine's updater removes
/// the boot entry that still points at the slot there.</param>
public sealed record ApplyTarget(string TargetPath, string? SourcePath, string BootDirectory, string? SourceBootDirectory = null,
    Action? BeforeFirstWrite = null);

/// <summary>
/// Applies a payload as it streams in (docs/updates.md): the signed head first (nothing
/// else is read before its signature is checked), then for a delta the whole source is
/// hashed against the manifest, then each operation: its data read and hashed, its source
/// extents read and hashed, its output produced and hashed, and only then written to the
/// target. At the end the whole target is hashed against the manifest, and the boot files
/// (each verified) land in the boot directory through a temporary name, fsync and rename.
/// The data is read once, in order: the payload never has to be on disk, and memory stays
/// within a few operations' bounds (<see cref="PayloadManifest.MaxOperationBytes"/> and the
/// like). Any failure is a <see cref="PayloadException"/> naming it; the target is then
/// left partly written, which is why it is never the running slot and nothing points at it.
/// </summary>
public sealed class PayloadApplier(IReadOnlyList<PublicKey> trusted, Action<string>? say = null)
{
    public sealed record Progress(long Done, long Total);

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
        var (manifest, signer) = PayloadFile.ReadHead(payload, trusted);
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
            ? new SafeFileHandleReader(where.SourcePath ?? throw new PayloadException("a delta payload needs the source image"))
            : null;
        if (source is not null)
        {
            ImageIdentity expected = manifest.Source!;
            if (source.Length < expected.Size) throw new PayloadException($"the source {source.Path} has {source.Length} bytes, the delta expects {expected.Size} (version {expected.Version})");
            string actual = source.Sha256(expected.Size);
            if (actual != expected.Sha256) throw new PayloadException($"the source {source.Path} is not version {expected.Version} (sha256 {actual}, the delta expects {expected.Sha256})");
        }
        using SafeFileHandle target = OpenTarget(where.TargetPath, manifest.Target.Size);
        long total = manifest.Target.Size, done = 0;
        byte[] data = [];
        for (int i = 0; i < manifest.Operations.Count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            Operation op = manifest.Operations[i];
            string at = $"operation {i} ({op.Type})";
            if (op.DataLength > 0) data = ReadData(payload, op.DataLength, op.DataSha256!, at);
            long length = op.Dst.Sum(e => e[1]) * bs;
            byte[] output;
            switch (op.Type)
            {
                case OperationType.Zero:
                    output = new byte[length];
                    break;
                case OperationType.Copy:
                    output = ReadSource(source!, op, bs, at);
                    break;
                case OperationType.Data:
                    output = Decompress(data, null, length, at);
                    break;
                default:
                    output = Decompress(data, ReadSource(source!, op, bs, at), length, at);
                    break;
            }
            if (PayloadFile.Sha256(output) != op.DstSha256) throw new PayloadException($"{at}: its output does not match its hash");
            if (i == 0) where.BeforeFirstWrite?.Invoke();
            long offset = 0;
            foreach (long[] e in op.Dst)
            {
                RandomAccess.Write(target, output.AsSpan((int)offset, (int)(e[1] * bs)), e[0] * bs);
                offset += e[1] * bs;
            }
            done += length;
            progress?.Invoke(new Progress(done, total));
        }
        RandomAccess.FlushToDisk(target);
        using (var check = new SafeFileHandleReader(where.TargetPath))
        {
            string written = check.Sha256(manifest.Target.Size);
            if (written != manifest.Target.Sha256) throw new PayloadException($"the written image's sha256 is {written}, the manifest says {manifest.Target.Sha256}");
        }
        say?.Invoke($"root image {manifest.Target.Version} written and verified ({manifest.Target.Size} bytes)");
        HostOs.Platform.Interop.Sys.CreateDirectoryDurably(where.BootDirectory);
        // Each boot file is written under a temporary name and synced; only when all are
        // verified do they take their names: never a new kernel beside an old initramfs.
        var staged = new List<(string Temporary, string Final)>();
        try
        {
            StageBootFiles(payload, manifest, where, staged);
            foreach (var (temporary, final) in staged) HostOs.Platform.Interop.Sys.RenameDurably(temporary, final, overwrite: true);
        }
        finally
        {
            foreach (var (temporary, _) in staged) File.Delete(temporary);
        }
        if (payload.ReadByte() >= 0) throw new PayloadException("the payload has bytes after its last boot file");
        return manifest;
    }

    private static void StageBootFiles(Stream payload, PayloadManifest manifest, ApplyTarget where, List<(string, string)> staged)
    {
        foreach (BootFile f in manifest.BootFiles)
        {
            string at = $"boot file {f.Name}";
            byte[]? old = null;
            if (f.Type != OperationType.Data)
            {
                string path = Path.Combine(where.SourceBootDirectory ?? throw new PayloadException($"{at}: the running version's boot files are needed"), f.Name);
                if (!File.Exists(path)) throw new PayloadException($"{at}: {path} is missing");
                old = File.ReadAllBytes(path);
                if (PayloadFile.Sha256(old) != f.SrcSha256) throw new PayloadException($"{at}: {path} is not the one this delta was made from");
            }
            byte[] content;
            if (f.Type == OperationType.Copy) content = old!;
            else
            {
                content = Decompress(ReadData(payload, f.DataLength, f.DataSha256!, at), old, f.Size, at);
            }
            if (PayloadFile.Sha256(content) != f.Sha256) throw new PayloadException($"boot file {f.Name}: its content does not match its hash");
            string final = Path.Combine(where.BootDirectory, f.Name), temporary = final + ".new";
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            staged.Add((temporary, final));
        }
    }

    private static SafeFileHandle OpenTarget(string path, long size)
    {
        bool device = path.StartsWith("/dev/", StringComparison.Ordinal);
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

    private static byte[] ReadSource(SafeFileHandleReader source, Operation op, int bs, string at)
    {
        byte[] bytes = new byte[op.Src!.Sum(e => e[1]) * bs];
        long offset = 0;
        foreach (long[] e in op.Src!)
        {
            source.Read(e[0] * bs, bytes.AsSpan((int)offset, (int)(e[1] * bs)));
            offset += e[1] * bs;
        }
        if (PayloadFile.Sha256(bytes) != op.SrcSha256) throw new PayloadException($"{at}: the source blocks it reads do not match their hash");
        return bytes;
    }

    /// <summary>The next <paramref name="length"/> bytes of the payload, which must hash to <paramref name="sha256"/>.</summary>
    private static byte[] ReadData(Stream payload, long length, string sha256, string what)
    {
        byte[] data = new byte[length];
        PayloadFile.ReadExactly(payload, data, $"the data of {what}");
        if (PayloadFile.Sha256(data) != sha256) throw new PayloadException($"{what}: its data does not match its hash: the payload is corrupt");
        return data;
    }

    /// <summary>Exactly <paramref name="length"/> bytes out of one frame, or a named error (never more memory than that).</summary>
    private static byte[] Decompress(byte[] frame, byte[]? dictionary, long length, string at)
    {
        byte[] output = new byte[length];
        try
        {
            using var d = new Decompressor();
            if (dictionary is not null) d.LoadDictionary(dictionary);
            int n = d.Unwrap(frame, output);
            if (n != length) throw new PayloadException($"{at}: decompresses to {n} bytes, not {length}");
        }
        catch (ZstdException e)
        {
            throw new PayloadException($"{at}: its data does not decompress: {e.Message}");
        }
        return output;
    }
}

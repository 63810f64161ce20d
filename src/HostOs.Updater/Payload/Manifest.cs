using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Updater.Payload;

/// <summary>
/// What a payload produces and how (docs/updates.md): the signed part of a payload. Every
/// operation names its input and output by SHA-256; the target image and the boot files
/// by size and SHA-256. Parsed only after its signature has been checked, then validated
/// strictly (<see cref="Validate"/>): a signed manifest is trusted to be ours, never to be
/// well-formed.
/// </summary>
public sealed class PayloadManifest
{
    /// <summary>
    /// 3 added the verity operation; 4 checks what data operations make, in a payload that
    /// ends with one, by their blocks' dm-verity digests (<see cref="Operation.DstLeavesSha256"/>).
    /// Formats 2 and 3 read as they always did.
    /// </summary>
    public const int CurrentFormat = 4, OldestFormat = 2;
    /// <summary>
    /// Bounds that keep apply's memory small whatever the payload says: what a data or patch
    /// operation produces, the source a patch reads as its dictionary, an operation's data.
    /// Copies and zeros are streamed in chunks and may be as long as the image.
    /// </summary>
    public const long MaxOperationBytes = 4 << 20, MaxReferenceBytes = 16 << 20, MaxDataBytes = 8 << 20;
    public const long MaxImageBytes = 64L << 30;
    /// <summary>A dm-verity tree the applier builds is held whole: 1/128 of the data, so data up to ~2 GiB.</summary>
    public const long MaxTreeBytes = 16 << 20;

    public int Format { get; set; } = CurrentFormat;
    /// <summary>The version this payload installs.</summary>
    public required string Version { get; init; }
    public string Created { get; set; } = "";
    /// <summary>The exact image a delta applies to; null for a full payload.</summary>
    public ImageIdentity? Source { get; init; }
    public required ImageIdentity Target { get; init; }
    /// <summary>The kernel command line of the new version, without hostos.slot/hostos.version (the applier adds them).</summary>
    public string Cmdline { get; set; } = "";
    public int BlockSize { get; set; } = 4096;
    public List<Operation> Operations { get; set; } = [];
    /// <summary>For the ESP: vmlinuz and initrd.img.</summary>
    public List<BootFile> BootFiles { get; set; } = [];

    [JsonIgnore] public bool IsDelta => Source is not null;

    /// <summary>
    /// The target's dm-verity tree is rebuilt by the applier (a verity operation, always the
    /// last): its root hash, which the manifest names, then verifies every data block written
    /// and the tree verifies itself, so the whole image needs no other hash (docs/updates.md).
    /// </summary>
    [JsonIgnore] public bool VerifiedByTree => Operations.Count > 0 && Operations[^1].Type == OperationType.Verity;
    /// <summary>Whether data, patch and diff operations name the hash of their blocks' dm-verity digests (format 4 with a tree).</summary>
    [JsonIgnore] public bool ByLeaves => Format >= 4 && VerifiedByTree;

    /// <summary>The target's dm-verity parameters from the new command line, if it has them (checked by <see cref="Validate"/>).</summary>
    [JsonIgnore] public HostOs.Platform.Disk.VerityParameters? TargetVerity =>
        HostOs.Platform.Disk.VerityParameters.FromCommandLine(HostOs.Platform.Kernel.KernelCommandLine.Parse(Cmdline));

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, PayloadJson.Default.PayloadManifest);

    public static PayloadManifest Parse(ReadOnlySpan<byte> json)
    {
        PayloadManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(json, PayloadJson.Default.PayloadManifest)
                ?? throw new PayloadException("the manifest is empty");
        }
        catch (JsonException e)
        {
            throw new PayloadException($"the manifest is not valid: {e.Message}");
        }
        manifest.Validate();
        return manifest;
    }

    /// <summary>Every bound apply relies on; the first violation is named.</summary>
    public void Validate()
    {
        if (Format is < OldestFormat or > CurrentFormat) throw new PayloadException($"manifest format {Format} is not understood (this updater reads {OldestFormat} to {CurrentFormat})");
        if (!SemanticVersion.TryParse(Version, out _)) throw new PayloadException($"version '{Version}' is not MAJOR.MINOR.PATCH");
        if (BlockSize is < 512 or > 1 << 20 || (BlockSize & (BlockSize - 1)) != 0) throw new PayloadException($"block size {BlockSize} is not a power of two from 512 to 1 MiB");
        Target.Validate("target", BlockSize);
        Source?.Validate("source", BlockSize);
        // The root hash the new entry's command line gives dm-verity is the one the target names.
        HostOs.Platform.Disk.VerityParameters? parameters;
        try
        {
            parameters = TargetVerity;
        }
        catch (InvalidDataException e)
        {
            throw new PayloadException($"cmdline: {e.Message}");
        }
        if (parameters is null && Target.VerityRootHash is not null) throw new PayloadException("target names a dm-verity root hash, but cmdline has no hostos.verity=");
        if (parameters is not null)
        {
            if (parameters.RootHash != Target.VerityRootHash) throw new PayloadException($"cmdline's dm-verity root hash {parameters.RootHash} is not the target's ({Target.VerityRootHash ?? "none"})");
            if (parameters.DataBlocks * HostOs.Platform.Disk.VerityParameters.BlockSize >= Target.Size)
            {
                throw new PayloadException($"cmdline's dm-verity data ({parameters.DataBlocks} blocks) leaves no room for the hash tree in the {Target.Size}-byte target");
            }
        }
        long targetBlocks = Target.Size / BlockSize;
        long sourceBlocks = Source is null ? 0 : Source.Size / BlockSize;
        var covered = new List<(long Start, long Count)>();
        for (int i = 0; i < Operations.Count; i++)
        {
            Operation op = Operations[i];
            string at = $"operation {i} ({op.Type})";
            long dst = CheckExtents(op.Dst, targetBlocks, at, "dst");
            if (dst == 0) throw new PayloadException($"{at}: no destination");
            bool streamed = op.Type is OperationType.Copy or OperationType.Zero or OperationType.Verity;
            if (!streamed && dst * BlockSize > MaxOperationBytes) throw new PayloadException($"{at}: writes {dst * BlockSize} bytes, more than {MaxOperationBytes}");
            covered.AddRange(op.Dst.Select(e => (e[0], e[1])));
            // Zeros and copies name no hash: the written target is checked whole after the last
            // operation (by the rebuilt tree's root, or its SHA-256 when there is no verity
            // operation, when a delta's source is also hashed whole before the first); what is
            // made from data names the hash of its output (format 4 with a tree: of its blocks'
            // digests, which the tree is then built from), and the tree the hash of its bytes.
            if (op.Type is OperationType.Zero or OperationType.Copy)
            {
                if (op.DstSha256 is not null || op.DstLeavesSha256 is not null) throw new PayloadException($"{at}: a {op.Type.ToString().ToLowerInvariant()} operation carries no hash");
            }
            else if (op.Type != OperationType.Verity && ByLeaves)
            {
                if (op.DstSha256 is not null) throw new PayloadException($"{at}: in a format {Format} payload with a hash tree, an operation's output is checked by dstLeavesSha256, not dstSha256");
                CheckHash(op.DstLeavesSha256, at, "dstLeavesSha256");
            }
            else
            {
                if (op.DstLeavesSha256 is not null) throw new PayloadException($"{at}: dstLeavesSha256 belongs only to data operations of a format 4 payload with a hash tree");
                CheckHash(op.DstSha256, at, "dstSha256");
            }
            switch (op.Type)
            {
                case OperationType.Copy:
                case OperationType.Patch:
                case OperationType.Diff:
                    if (Source is null) throw new PayloadException($"{at}: reads the source, but this is a full payload");
                    long src = CheckExtents(op.Src, sourceBlocks, at, "src");
                    if (op.Type is OperationType.Copy or OperationType.Diff && src != dst) throw new PayloadException($"{at}: reads {src} source blocks for {dst}");
                    if (src == 0 || (op.Type == OperationType.Patch && src * BlockSize > MaxReferenceBytes)) throw new PayloadException($"{at}: reads {src * BlockSize} source bytes (1 to {MaxReferenceBytes})");
                    break;
                case OperationType.Zero:
                case OperationType.Data:
                    if (op.Src is not null) throw new PayloadException($"{at}: reads no source, yet names one");
                    break;
                case OperationType.Verity:
                    // The tree of everything before it, exactly where dm-verity reads it and as
                    // large as the data needs, the last operation, and one the applier can hold.
                    if (op.Src is not null) throw new PayloadException($"{at}: reads no source, yet names one");
                    if (parameters is null) throw new PayloadException($"{at}: the target has no dm-verity root hash to check the tree against");
                    if (BlockSize != HostOs.Platform.Disk.VerityParameters.BlockSize) throw new PayloadException($"{at}: needs {HostOs.Platform.Disk.VerityParameters.BlockSize}-byte blocks");
                    if (i != Operations.Count - 1) throw new PayloadException($"{at}: the tree is built from the data written before it, so it must be the last operation");
                    long treeBlocks = HostOs.Verity.VerityTree.TreeBlocks(parameters.DataBlocks);
                    if (op.Dst.Count != 1 || op.Dst[0][0] != parameters.DataBlocks || op.Dst[0][1] != treeBlocks || parameters.DataBlocks + treeBlocks != targetBlocks)
                    {
                        throw new PayloadException($"{at}: the tree of {parameters.DataBlocks} data blocks is [{parameters.DataBlocks},{treeBlocks}] and ends the {targetBlocks}-block target");
                    }
                    if (treeBlocks * BlockSize > MaxTreeBytes) throw new PayloadException($"{at}: a tree of {treeBlocks * BlockSize} bytes is more than {MaxTreeBytes}");
                    break;
                default:
                    throw new PayloadException($"{at}: type {op.Type} is not copy, zero, data, patch, diff or verity");
            }
            bool hasData = op.Type is OperationType.Data or OperationType.Patch or OperationType.Diff;
            if (hasData)
            {
                if (op.DataLength is < 1 or > MaxDataBytes) throw new PayloadException($"{at}: data length {op.DataLength} (1 to {MaxDataBytes})");
                CheckHash(op.DataSha256, at, "dataSha256");
            }
            else if (op.DataLength != 0 || op.DataSha256 is not null) throw new PayloadException($"{at}: carries data it does not use");
        }
        // Every block of the target written exactly once.
        long next = 0;
        foreach (var (start, count) in covered.OrderBy(c => c.Start))
        {
            if (start != next) throw new PayloadException(start < next ? $"target block {start} is written twice" : $"target blocks {next}..{start - 1} are never written");
            next = start + count;
        }
        if (next != targetBlocks) throw new PayloadException($"target blocks {next}..{targetBlocks - 1} are never written");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (BootFile f in BootFiles)
        {
            if (f.Name is not ("vmlinuz" or "initrd.img")) throw new PayloadException($"boot file '{f.Name}' is not vmlinuz or initrd.img");
            if (!names.Add(f.Name)) throw new PayloadException($"boot file '{f.Name}' is listed twice");
            if (f.Size is < 1 or > 512 << 20) throw new PayloadException($"boot file {f.Name}: size {f.Size}");
            CheckHash(f.Sha256, $"boot file {f.Name}", "sha256");
            switch (f.Type)
            {
                case OperationType.Data or OperationType.Patch:
                    if (f.DataLength is < 1 or > 512 << 20) throw new PayloadException($"boot file {f.Name}: data length {f.DataLength}");
                    CheckHash(f.DataSha256, $"boot file {f.Name}", "dataSha256");
                    break;
                case OperationType.Copy:
                    if (f.DataLength != 0 || f.DataSha256 is not null) throw new PayloadException($"boot file {f.Name}: a copy carries no data");
                    break;
                default:
                    throw new PayloadException($"boot file {f.Name}: type {f.Type} is not data, copy or patch");
            }
            if (f.Keep is not null && (f.Type != OperationType.Patch || f.Keep.Length != 2 || f.Keep[0] < 0 || f.Keep[1] < 0 || f.Keep[0] > f.Size - f.Keep[1]))
            {
                throw new PayloadException($"boot file {f.Name}: keep must be [start, end] byte counts of a patch within its size");
            }
            if (f.Type == OperationType.Data) { if (f.SrcSha256 is not null) throw new PayloadException($"boot file {f.Name}: data names a source"); }
            else
            {
                if (Source is null) throw new PayloadException($"boot file {f.Name}: reads the running version's file, but this is a full payload");
                CheckHash(f.SrcSha256, $"boot file {f.Name}", "srcSha256");
                if (f.Type == OperationType.Copy && f.SrcSha256 != f.Sha256)
                {
                    throw new PayloadException($"boot file {f.Name}: a copy's srcSha256 and sha256 must be the same");
                }
            }
        }
        if (!names.SetEquals(["vmlinuz", "initrd.img"])) throw new PayloadException("the payload must carry vmlinuz and initrd.img");
        if (Cmdline.Contains("hostos.slot=", StringComparison.Ordinal) || Cmdline.Any(c => c is '\n' or '\r'))
        {
            throw new PayloadException("cmdline must be one line without hostos.slot= (the applier adds it)");
        }
    }

    /// <summary>The data section's length, as the operations and boot files add up.</summary>
    [JsonIgnore] public long DataLength => Operations.Sum(o => o.DataLength) + BootFiles.Sum(f => f.DataLength);

    private static long CheckExtents(List<long[]>? extents, long limit, string at, string field)
    {
        if (extents is null) throw new PayloadException($"{at}: {field} is missing");
        long total = 0;
        foreach (long[] e in extents)
        {
            if (e.Length != 2 || e[0] < 0 || e[1] < 1 || e[0] > limit || e[1] > limit - e[0])
            {
                throw new PayloadException($"{at}: {field} extent [{string.Join(",", e)}] is not [start, count] within {limit} blocks");
            }
            total += e[1];
        }
        return total;
    }

    internal static void CheckHash(string? hex, string at, string field)
    {
        if (hex is null || hex.Length != 64 || !hex.All(char.IsAsciiHexDigitLower)) throw new PayloadException($"{at}: {field} is not a lower-case SHA-256 in hex");
    }
}

public sealed class ImageIdentity
{
    public required string Version { get; init; }
    public required long Size { get; init; }
    public required string Sha256 { get; init; }
    /// <summary>The dm-verity root hash of the image, when it has a hash tree (the target's must match the cmdline's hostos.verity=).</summary>
    public string? VerityRootHash { get; init; }

    internal void Validate(string what, int blockSize)
    {
        if (VerityRootHash is not null) PayloadManifest.CheckHash(VerityRootHash, what, "verityRootHash");
        if (!SemanticVersion.TryParse(Version, out _)) throw new PayloadException($"{what}: version '{Version}' is not MAJOR.MINOR.PATCH");
        if (Size < blockSize || Size > PayloadManifest.MaxImageBytes || Size % blockSize != 0) throw new PayloadException($"{what}: size {Size} is not a whole number of {blockSize}-byte blocks up to 64 GiB");
        PayloadManifest.CheckHash(Sha256, what, "sha256");
    }
}

public enum OperationType { Copy, Zero, Data, Patch, Diff, Verity }

/// <summary>
/// One step of the target's construction. Extents are [start block, block count].
/// Copy: the source's <c>src</c> blocks, as they are. Zero: zeros. Data: the zstd frame in
/// the data section. Patch: the zstd frame, decompressed with the source's <c>src</c>
/// blocks as its dictionary (raw content), as <c>zstd --patch-from</c> does for a whole file.
/// Diff: the source's <c>src</c> blocks (as many as <c>dst</c>) plus, byte by byte modulo
/// 256, what the zstd frame decompresses to (bsdiff's idea, aligned: metadata whose
/// pointers all moved by the same amount is a few distinct differences among zeros).
/// Verity (format 3, the last operation): the dm-verity hash tree of the target's data
/// blocks, built by the applier from what it wrote; its root must be the target's
/// <c>verityRootHash</c> and its bytes hash to <c>dstSha256</c>. No data: a tree is
/// random bytes wherever a block changed, which no compressor shrinks.
/// The bytes produced go to <c>dst</c> in order; the data section holds each operation's
/// data in operation order, so no offsets are stored. What an operation reads from the source is
/// not hashed on its own: the operation's output hash, and the check of the whole target
/// after the last operation, cover whatever it read (without a verity operation a delta's
/// whole source is also hashed before the first).
/// </summary>
public sealed class Operation
{
    public required OperationType Type { get; init; }
    public required List<long[]> Dst { get; init; }
    public List<long[]>? Src { get; init; }
    public long DataLength { get; set; }
    public string? DataSha256 { get; set; }
    /// <summary>The SHA-256 of the bytes the operation produces (none for zeros and copies).</summary>
    public string? DstSha256 { get; init; }
    /// <summary>
    /// Instead of <see cref="DstSha256"/>, for a data, patch or diff operation of a format 4
    /// payload that ends with a verity operation: the SHA-256 of the dm-verity digests of the
    /// blocks it produces (each SHA-256 of the tree's salt and the block), in order. The
    /// applier computes those digests to check the output and builds the tree from them, so
    /// what an operation makes is hashed once.
    /// </summary>
    public string? DstLeavesSha256 { get; init; }
}

/// <summary>
/// A file for the ESP. Data: the zstd frame. Copy: the running version's file of that
/// name, unchanged (no data). Patch: the zstd frame, with the running version's file as
/// its dictionary; with <c>keep</c> = [a, b], the first a and the last b bytes are the
/// running version's file's own, and the frame (dictionary: the old file between those)
/// produces only what lies between. The running version's file is checked against
/// <c>srcSha256</c> first.
/// </summary>
public sealed class BootFile
{
    public required string Name { get; init; }
    public OperationType Type { get; init; } = OperationType.Data;
    public required long Size { get; init; }
    public required string Sha256 { get; init; }
    public string? SrcSha256 { get; init; }
    /// <summary>A patch's bytes taken unchanged from the start and the end of the running version's file.</summary>
    public long[]? Keep { get; init; }
    public required long DataLength { get; init; }
    public string? DataSha256 { get; init; }
}

public sealed class PayloadException(string message) : Exception(message);

/// <summary>MAJOR.MINOR.PATCH, compared numerically (downgrades are refused by it).</summary>
public readonly record struct SemanticVersion(int Major, int Minor, int Patch) : IComparable<SemanticVersion>
{
    public static bool TryParse(string? text, out SemanticVersion version)
    {
        version = default;
        string[] p = (text ?? "").Split('.');
        if (p.Length != 3) return false;
        int[] n = new int[3];
        for (int i = 0; i < 3; i++)
        {
            if (p[i].Length is 0 or > 9 || !p[i].All(char.IsAsciiDigit) || (p[i].Length > 1 && p[i][0] == '0')) return false;
            n[i] = int.Parse(p[i], System.Globalization.CultureInfo.InvariantCulture);
        }
        version = new SemanticVersion(n[0], n[1], n[2]);
        return true;
    }

    public static SemanticVersion Parse(string text) =>
        TryParse(text, out var v) ? v : throw new PayloadException($"version '{text}' is not MAJOR.MINOR.PATCH");

    public int CompareTo(SemanticVersion other) =>
        Major != other.Major ? Major.CompareTo(other.Major) : Minor != other.Minor ? Minor.CompareTo(other.Minor) : Patch.CompareTo(other.Patch);

    public static bool operator <(SemanticVersion a, SemanticVersion b) => a.CompareTo(b) < 0;
    public static bool operator >(SemanticVersion a, SemanticVersion b) => a.CompareTo(b) > 0;
    public static bool operator <=(SemanticVersion a, SemanticVersion b) => a.CompareTo(b) <= 0;
    public static bool operator >=(SemanticVersion a, SemanticVersion b) => a.CompareTo(b) >= 0;

    public override string ToString() => $"{Major}.{Minor}.{Patch}";
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PayloadManifest))]
[JsonSerializable(typeof(SignatureBlock))]
internal sealed partial class PayloadJson : JsonSerializerContext;

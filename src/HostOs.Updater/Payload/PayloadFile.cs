using System.Buffers.Binary;
using System.Text.Json;
using NSec.Cryptography;

namespace HostOs.Updater.Payload;

/// <summary>One signature of the signed head.</summary>
public sealed class Signature
{
    public required string KeyId { get; init; }
    public required string Value { get; init; }
}

public sealed class SignatureBlock
{
    public List<Signature> Signatures { get; set; } = [];
}

/// <summary>
/// The payload file (docs/updates.md):
/// <code>
///   0  8  magic "HOSTOSUP"
///   8  4  format (1), little-endian
///  12  4  manifest length M (at most 16 MiB): a zstd frame of the manifest's JSON
///  16  4  signature block length S (at most 64 KiB)
///  20  4  zero
///  24  M  manifest (JSON)
///  24+M S signature block (JSON: key id and Ed25519 signature, hex, per signer)
///  ...    data: each operation's, then each boot file's, in manifest order
/// </code>
/// The signatures cover the 24-byte header and the manifest. A reader checks them before
/// it parses a byte of the manifest; the manifest then names the hash of every piece of
/// data, so nothing after it is used unverified. Several signatures let a key be rotated:
/// a payload signed by the old and the new key is accepted by machines that trust either.
/// </summary>
public static class PayloadFile
{
    public static ReadOnlySpan<byte> Magic => "HOSTOSUP"u8;
    public const int HeaderLength = 24, Format = 1;
    public const int MaxManifest = 16 << 20, MaxSignatures = 64 << 10;

    /// <summary>The manifest as it is stored and signed: one zstd frame of its JSON (half the size: hashes are hex).</summary>
    public static byte[] PackManifest(byte[] json)
    {
        using var c = new ZstdSharp.Compressor(19);
        return c.Wrap(json).ToArray();
    }

    /// <summary>The JSON of a stored manifest: called only once its signature has been checked, and still bounded.</summary>
    private static byte[] UnpackManifest(byte[] packed)
    {
        ulong size = ZstdSharp.Decompressor.GetDecompressedSize(packed);
        if (size is 0 or > MaxManifest) throw new PayloadException($"the manifest unpacks to {size} bytes (1 to {MaxManifest})");
        try
        {
            using var d = new ZstdSharp.Decompressor();
            byte[] json = new byte[size];
            if (d.Unwrap(packed, json) != (int)size) throw new PayloadException("the manifest does not unpack to its stated size");
            return json;
        }
        catch (ZstdSharp.ZstdException e)
        {
            throw new PayloadException($"the manifest does not unpack: {e.Message}");
        }
    }

    /// <summary>
    /// The signed head of a payload: header, packed manifest, signature block. The
    /// signatures' length is in the signed header, so a first signing measures it (hex
    /// signatures of fixed keys have a fixed length).
    /// </summary>
    public static byte[] Head(byte[] manifestJson, IReadOnlyList<Key> keys)
    {
        byte[] manifest = PackManifest(manifestJson);
        int signaturesLength = SignatureBlockFor(Signed(Header(manifest.Length, 0), manifest), keys).Length;
        byte[] header = Header(manifest.Length, signaturesLength);
        byte[] signatures = SignatureBlockFor(Signed(header, manifest), keys);
        if (signatures.Length != signaturesLength) throw new InvalidOperationException("signature block length changed");
        return [.. header, .. manifest, .. signatures];
    }

    /// <summary>
    /// Loads what SHA-256 goes through (.NET's OpenSSL) on another core, without waiting:
    /// its start, 0.2-0.4 s under TCG, then overlaps reading and checking the signed head
    /// (whose key ids libsodium hashes), instead of coming before the first data hash.
    /// Every apply starts with it: the CLI's, the machine's update and install, the daemon's.
    /// A failure to load it there shows again where the data is hashed.
    /// </summary>
    public static void StartHashing() => Task.Run(() => System.Security.Cryptography.SHA256.HashData(ReadOnlySpan<byte>.Empty));

    internal static string Sha256(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));

    public static byte[] Header(int manifestLength, int signatureLength)
    {
        byte[] h = new byte[HeaderLength];
        Magic.CopyTo(h);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(8), Format);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(12), manifestLength);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(16), signatureLength);
        return h;
    }

    /// <summary>The signed bytes: header and manifest.</summary>
    public static byte[] Signed(ReadOnlySpan<byte> header, ReadOnlySpan<byte> manifest) => [.. header, .. manifest];

    public static byte[] SignatureBlockFor(byte[] signed, IEnumerable<Key> keys)
    {
        var block = new SignatureBlock();
        foreach (Key k in keys)
        {
            block.Signatures.Add(new Signature { KeyId = UpdateKeys.KeyId(k.PublicKey), Value = Convert.ToHexStringLower(UpdateKeys.Algorithm.Sign(k, signed)) });
        }
        return JsonSerializer.SerializeToUtf8Bytes(block, PayloadJson.Default.SignatureBlock);
    }

    /// <summary>
    /// Reads the signed head from <paramref name="payload"/> (left positioned at the data),
    /// checks a signature of a trusted key, and only then parses and validates the manifest.
    /// Which key signed is returned; every failure is named.
    /// </summary>
    public static (PayloadManifest Manifest, string KeyId) ReadHead(Stream payload, IReadOnlyList<PublicKey> trusted) =>
        ReadHead(payload, trusted, out _);

    /// <summary>As above; <paramref name="length"/> is where the data section starts.</summary>
    public static (PayloadManifest Manifest, string KeyId) ReadHead(Stream payload, IReadOnlyList<PublicKey> trusted, out long length)
    {
        if (trusted.Count == 0) throw new PayloadException("no trusted update keys: nothing can be verified");
        var (header, manifest, block) = ReadRaw(payload, out length);
        HostOs.Platform.StepTrace.Step("apply", "head read");
        string signer = Signer(block, Signed(header, manifest), trusted, "the payload");
        HostOs.Platform.StepTrace.Step("apply", "signature checked");
        return (PayloadManifest.Parse(UnpackManifest(manifest)), signer);
    }

    /// <summary>
    /// The id of the trusted key whose signature in <paramref name="block"/> verifies
    /// <paramref name="signed"/>. A trusted key's signature that does not verify is tampering,
    /// refused at once; no trusted signature at all is refused naming who did sign.
    /// </summary>
    internal static string Signer(SignatureBlock block, byte[] signed, IReadOnlyList<PublicKey> trusted, string what)
    {
        foreach (Signature s in block.Signatures)
        {
            PublicKey? key = trusted.FirstOrDefault(k => UpdateKeys.KeyId(k) == s.KeyId);
            if (key is null) continue;
            byte[]? value = null;
            try { value = Convert.FromHexString(s.Value); } catch (FormatException) { }
            if (value is null || !UpdateKeys.Algorithm.Verify(key, signed, value))
            {
                throw new PayloadException($"the signature of {what} by key {s.KeyId} does not match: {what} was altered or corrupted");
            }
            return s.KeyId;
        }
        throw new PayloadException(block.Signatures.Count == 0
            ? $"{what} is not signed"
            : $"{what} is signed only by unknown key(s) {string.Join(", ", block.Signatures.Select(s => s.KeyId))}; trusted: {string.Join(", ", trusted.Select(UpdateKeys.KeyId))}");
    }

    /// <summary>The head without checking signatures, for <c>payload inspect</c>: never for applying.</summary>
    public static (PayloadManifest Manifest, SignatureBlock Signatures) ReadHeadUnverified(Stream payload)
    {
        var (_, manifest, block) = ReadRaw(payload, out _);
        return (PayloadManifest.Parse(UnpackManifest(manifest)), block);
    }

    /// <summary>Header (checked), packed manifest and signature block, as bytes: nothing of the manifest is interpreted.</summary>
    private static (byte[] Header, byte[] Manifest, SignatureBlock Signatures) ReadRaw(Stream payload, out long length)
    {
        byte[] header = new byte[HeaderLength];
        ReadExactly(payload, header, "the header");
        if (!header.AsSpan(0, 8).SequenceEqual(Magic)) throw new PayloadException("not a HostOS update payload (bad magic)");
        int format = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8));
        if (format != Format) throw new PayloadException($"payload format {format} is not understood (this updater reads {Format})");
        int manifestLength = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
        int signatureLength = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(16));
        if (manifestLength is < 2 or > MaxManifest) throw new PayloadException($"manifest length {manifestLength} is out of bounds");
        if (signatureLength is < 2 or > MaxSignatures) throw new PayloadException($"signature block length {signatureLength} is out of bounds");
        if (BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(20)) != 0) throw new PayloadException("header: reserved field is not zero");
        byte[] manifest = new byte[manifestLength];
        ReadExactly(payload, manifest, "the manifest");
        byte[] signatures = new byte[signatureLength];
        ReadExactly(payload, signatures, "the signatures");
        length = HeaderLength + manifestLength + signatureLength;
        try
        {
            return (header, manifest, JsonSerializer.Deserialize(signatures, PayloadJson.Default.SignatureBlock) ?? new SignatureBlock());
        }
        catch (JsonException e)
        {
            throw new PayloadException($"the signature block is not valid: {e.Message}");
        }
    }

    internal static void ReadExactly(Stream s, Span<byte> buffer, string what)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = s.Read(buffer[read..]);
            if (n == 0) throw new PayloadException($"the payload ends inside {what} (truncated)");
            read += n;
        }
    }
}

/// <summary>
/// A payload stream that can go on further along without reading what lies between: an
/// HTTP download asks for a range. A resumed apply uses it to leave out the data of the
/// operations already written and verified.
/// </summary>
public interface ISkippingStream
{
    /// <summary>Continues at <paramref name="position"/> (not before the current one).</summary>
    void SkipTo(long position);
}

using System.Security.Cryptography;
using System.Text;
using NSec.Cryptography;

namespace HostOs.Updater.Payload;

/// <summary>
/// Ed25519 signing keys (NSec.Cryptography over libsodium). A private key file is
/// "hostos-update-key-v1" and the base64 of the 32-byte seed (mode 0600); a public key
/// file (NAME.pub) is the base64 of the 32-byte public key, the form first-boot
/// configuration takes too. A key's id is the first 8 bytes of the SHA-256 of its public
/// key, in hex: signatures name the key they were made with.
/// </summary>
public static class UpdateKeys
{
    private const string PrivateHeader = "hostos-update-key-v1";
    public static readonly SignatureAlgorithm Algorithm = SignatureAlgorithm.Ed25519;
    /// <summary>The keys every HostOS root trusts (from the image definition).</summary>
    public const string RootKeyDirectory = "/usr/lib/hostos/update-keys";

    public static (string PrivateFile, string PublicFile) Generate(string directory, string name)
    {
        Directory.CreateDirectory(directory);
        string privateFile = Path.Combine(directory, name + ".key"), publicFile = Path.Combine(directory, name + ".pub");
        if (File.Exists(privateFile) || File.Exists(publicFile)) throw new PayloadException($"{privateFile} or {publicFile} exists: not overwriting a key");
        using var key = Key.Create(Algorithm, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        byte[] seed = key.Export(KeyBlobFormat.RawPrivateKey);
        using (var f = new FileStream(privateFile, new FileStreamOptions
        {
            Mode = FileMode.CreateNew, Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            f.Write(Encoding.ASCII.GetBytes($"{PrivateHeader}\n{Convert.ToBase64String(seed)}\n"));
        }
        CryptographicOperations.ZeroMemory(seed);
        File.WriteAllText(publicFile, Convert.ToBase64String(key.PublicKey.Export(KeyBlobFormat.RawPublicKey)) + "\n");
        return (privateFile, publicFile);
    }

    public static Key LoadPrivate(string path)
    {
        string[] lines = File.ReadAllText(path).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length != 2 || lines[0] != PrivateHeader) throw new PayloadException($"{path} is not a HostOS update signing key ({PrivateHeader})");
        byte[] seed = Base64(lines[1], 32, path);
        try
        {
            return Key.Import(Algorithm, seed, KeyBlobFormat.RawPrivateKey);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(seed);
        }
    }

    public static PublicKey ParsePublic(string base64, string source) =>
        PublicKey.Import(Algorithm, Base64(base64.Trim(), 32, source), KeyBlobFormat.RawPublicKey);

    /// <summary>
    /// Hashed by libsodium, loaded already for the signatures: checking a payload's head needs
    /// no OpenSSL, whose start (~0.3 s under TCG) then runs beside it (<see cref="PayloadFile.StartHashing"/>).
    /// </summary>
    public static string KeyId(PublicKey key) =>
        Convert.ToHexStringLower(NSec.Cryptography.HashAlgorithm.Sha256.Hash(key.Export(KeyBlobFormat.RawPublicKey)).AsSpan(0, 8));

    /// <summary>The public keys of *.pub files in <paramref name="directory"/> (none when it does not exist), and of <paramref name="extra"/> base64 keys.</summary>
    public static List<PublicKey> LoadTrusted(string? directory, IEnumerable<string>? extra = null)
    {
        var keys = new List<PublicKey>();
        if (directory is not null && Directory.Exists(directory))
        {
            foreach (string f in Directory.EnumerateFiles(directory, "*.pub").Order(StringComparer.Ordinal))
            {
                keys.Add(ParsePublic(File.ReadAllText(f), f));
            }
        }
        foreach (string k in extra ?? []) keys.Add(ParsePublic(k, "configured key"));
        return keys;
    }

    private static byte[] Base64(string text, int length, string source)
    {
        byte[]? bytes = null;
        try { bytes = Convert.FromBase64String(text); } catch (FormatException) { }
        if (bytes is null || bytes.Length != length) throw new PayloadException($"{source}: not the base64 of a {length}-byte Ed25519 key");
        return bytes;
    }
}

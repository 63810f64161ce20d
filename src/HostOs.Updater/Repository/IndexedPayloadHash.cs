using System.Security.Cryptography;
using HostOs.Updater.Payload;

namespace HostOs.Updater.Repository;

/// <summary>
/// What a payload's bytes must add up to when a signed index names it (its size and
/// SHA-256): every byte read in order goes into the hash, checked at the last one. After a
/// skip (a resumed apply) there is nothing whole to check, and the payload's own hashes,
/// which its signed manifest names, are what remains. Shared by a download and a payload
/// read from a repository on local media.
/// </summary>
internal sealed class IndexedPayloadHash(string name, UpdateIndex.PayloadRef? expected) : IDisposable
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private bool _skipped;

    public void Skipped() => _skipped = true;

    /// <summary><paramref name="data"/> read; <paramref name="end"/> is the position after it.</summary>
    public void Read(ReadOnlySpan<byte> data, long end)
    {
        if (expected is null || _skipped || data.IsEmpty) return; // empty: a read at the end, after the check
        _hash.AppendData(data);
        if (end != expected.Size) return;
        string sha = Convert.ToHexStringLower(_hash.GetHashAndReset());
        if (sha != expected.Sha256) throw new PayloadException($"{name}: its {expected.Size} bytes have sha256 {sha}, the index says {expected.Sha256}");
    }

    public void Dispose() => _hash.Dispose();
}

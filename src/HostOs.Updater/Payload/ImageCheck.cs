using HostOs.Platform.Disk;
using HostOs.Verity;

namespace HostOs.Updater.Payload;

/// <summary>
/// Checks a root image, or a slot holding one, against its dm-verity parameters: the tree
/// rebuilt from its data on every core must have the root hash the command line names, and
/// the tree stored after the data must be that tree. The payload builder checks every build
/// it reads so; <c>hostos-updater image verify</c> checks a slot, an image file or a build,
/// and files beside it by their SHA-256, with the same hashing an apply's check does (so the
/// bench can show what that check alone costs: docs/updates.md).
/// </summary>
public static class ImageCheck
{
    /// <summary>
    /// The tree of <paramref name="image"/>'s data (which must have the command line's root)
    /// as it is stored right after the data. With <paramref name="exactLength"/> the image
    /// must end with the tree (a build's root.img); else it may be longer (a slot's partition).
    /// </summary>
    internal static byte[] CheckedTree(string name, SafeFileHandleReader image, VerityParameters verity, bool exactLength = true)
    {
        const int bs = VerityParameters.BlockSize;
        long treeBlocks = VerityTree.TreeBlocks(verity.DataBlocks), needed = (verity.DataBlocks + treeBlocks) * bs;
        if (exactLength ? image.Length != needed : image.Length < needed)
        {
            throw new PayloadException($"{name}: {image.Length} bytes, but {verity.DataBlocks} data blocks and their hash tree of {treeBlocks} make {needed}");
        }
        var (tree, root) = VerityTree.Build(verity.DataBlocks, Convert.FromHexString(verity.Salt), image.Read);
        if (Convert.ToHexStringLower(root) != verity.RootHash)
        {
            throw new PayloadException($"{name}: its data's dm-verity root hash is {Convert.ToHexStringLower(root)}, the expected one is {verity.RootHash}");
        }
        if (!image.ReadRange(verity.DataBlocks * bs, tree.Length).AsSpan().SequenceEqual(tree)) throw new PayloadException($"{name}: the hash tree after its data is not the one its data gives");
        return tree;
    }

    /// <summary>
    /// The root to check and its parameters: <paramref name="verity"/>
    /// (<c>BLOCKS:ROOTHASH:SALT</c>) when given, a directory then meaning its root.img; else
    /// a build's (a build directory, or a root image with its build's manifest.json beside it).
    /// </summary>
    public static (string Root, VerityParameters Verity) Locate(string image, string? verity)
    {
        bool directory = Directory.Exists(image);
        if (verity is not null)
        {
            try
            {
                return (directory ? Path.Combine(image, "root.img") : image, VerityParameters.Parse(verity));
            }
            catch (InvalidDataException e)
            {
                throw new PayloadException($"--verity: {e.Message}");
            }
        }
        string dir = directory ? image : Path.GetDirectoryName(Path.GetFullPath(image))!;
        if (!File.Exists(Path.Combine(dir, "manifest.json")))
        {
            throw new PayloadException($"{image}: no build's manifest.json {(directory ? "in it" : "beside it")} to take the dm-verity parameters from: give --verity BLOCKS:ROOTHASH:SALT");
        }
        ImageBuild build = ImageBuild.Of(image);
        return (build.RootImage, build.Verity() ?? throw new PayloadException($"{image}: the build's command line has no {VerityParameters.CommandLineKey}= (give --verity)"));
    }

    /// <summary>A file that must have a given SHA-256 (<c>PATH=SHA256</c> on the command line).</summary>
    public sealed record ExpectedFile(string Path, string Sha256)
    {
        public static ExpectedFile Parse(string value)
        {
            int eq = value.LastIndexOf('=');
            string hash = eq < 0 ? "" : value[(eq + 1)..];
            if (eq <= 0 || hash.Length != 64 || !hash.All(char.IsAsciiHexDigitLower))
            {
                throw new PayloadException($"--file {value}: expected PATH=SHA256 (64 lower-case hex digits)");
            }
            return new ExpectedFile(value[..eq], hash);
        }
    }

    /// <summary>
    /// Checks <paramref name="root"/> (a file or a block device, read around the page cache
    /// when it is a device; either may go on after the tree, as a slot does) against <paramref name="verity"/>, and each of
    /// <paramref name="files"/> against its SHA-256 on the thread pool meanwhile. Every
    /// mismatch is a <see cref="PayloadException"/> naming what did not match; the root's comes first.
    /// </summary>
    public static void Verify(string root, VerityParameters verity, IReadOnlyList<ExpectedFile> files)
    {
        if (HostOs.Platform.StepTrace.Enabled)
        {
            // Traced alone: what OpenSSL's start costs before the first hash (else part of the tree's step).
            System.Security.Cryptography.SHA256.HashData(ReadOnlySpan<byte>.Empty);
            HostOs.Platform.StepTrace.Step("check", "OpenSSL started");
        }
        var hashed = files.Select(f => Task.Run(() => Problem(f))).ToList();
        try
        {
            using var image = new SafeFileHandleReader(root, direct: HostOs.Platform.Interop.Sys.IsBlockDevice(root));
            CheckedTree(root, image, verity, exactLength: false);
            HostOs.Platform.StepTrace.Step("check", "root checked");
        }
        finally
        {
            // Nothing left reading when this returns or throws.
            try { Task.WaitAll(hashed); } catch (AggregateException) { }
        }
        foreach (Task<string?> task in hashed)
        {
            if (task.GetAwaiter().GetResult() is string problem) throw new PayloadException(problem);
        }
        HostOs.Platform.StepTrace.Step("check", "files checked");
    }

    private static string? Problem(ExpectedFile f)
    {
        if (Directory.Exists(f.Path)) return $"{f.Path} is a directory, not a file";
        if (!File.Exists(f.Path)) return $"{f.Path} does not exist";
        using var stream = new FileStream(f.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        string got = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
        return got == f.Sha256 ? null : $"{f.Path}: its sha256 is {got}, the expected one is {f.Sha256}";
    }
}

using HostOs.Platform.Interop;

namespace HostOs.Platform;

/// <summary>
/// A file replaced whole or not at all: written beside itself as PATH.tmp, then renamed
/// over PATH. With <c>durable</c> the content is fsync'ed before the rename and the
/// directory after it, so a power cut leaves the old file or the new one (state on disk);
/// without, only readers racing the writer are protected (files on tmpfs, /run).
/// </summary>
public static class AtomicFile
{
    /// <param name="mode">The file's permissions, set on the temporary file before it takes the
    /// name, so a secret is never readable by others even for a moment.</param>
    public static void Write(string path, ReadOnlySpan<byte> content, bool durable, UnixFileMode? mode = null)
    {
        string temp = path + ".tmp";
        Sys.TryUnlink(temp); // the mode applies to a new file only
        Sys.WriteFile(temp, content, mode is UnixFileMode m ? (int)m : 0b110_110_110, durable);
        Sys.Rename(temp, path);
        if (durable) Sys.FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}

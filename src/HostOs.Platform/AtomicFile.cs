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
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (mode is UnixFileMode m) options.UnixCreateMode = m;
        File.Delete(temp); // UnixCreateMode applies to a new file only
        using (var f = new FileStream(temp, options))
        {
            f.Write(content);
            if (durable) f.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        if (durable) Sys.FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}

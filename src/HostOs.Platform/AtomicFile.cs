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
    public static void Write(string path, ReadOnlySpan<byte> content, bool durable)
    {
        string temp = path + ".tmp";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            f.Write(content);
            if (durable) f.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        if (durable) Sys.FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}

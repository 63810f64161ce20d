using HostOs.Platform.Disk;
using HostOs.Updater.Payload;

namespace HostOs.UnitTests.Updater;

/// <summary>
/// The updater's reads around the page cache: the same bytes as a buffered read, whatever
/// the buffer's alignment and where the file ends; aligned buffers are aligned.
/// </summary>
public sealed class DirectIoTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("direct-io-test-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    [Fact]
    public unsafe void AlignedBuffersAreAligned()
    {
        for (int i = 0; i < 8; i++)
        {
            ArraySegment<byte> buffer = DirectIo.AlignedBuffer(4096 * (i + 1));
            Assert.Equal(4096 * (i + 1), buffer.Count);
            fixed (byte* p = buffer.AsSpan()) Assert.Equal(0, (long)p % DirectIo.Alignment);
            Assert.True(DirectIo.Fits(buffer, 8192));
            Assert.False(DirectIo.Fits(buffer, 100));
            Assert.False(DirectIo.Fits(DirectIo.AlignedBuffer(8192).AsSpan(1, 4096), 0));
        }
    }

    [Fact]
    public void DirectReadsGiveTheBytesABufferedReadGives()
    {
        string path = Path.Combine(_work, "image");
        byte[] content = new byte[3 * 4096 + 1000]; // ends mid-block
        new Random(5).NextBytes(content);
        File.WriteAllBytes(path, content);
        using var reader = new SafeFileHandleReader(path, direct: true);
        ArraySegment<byte> aligned = DirectIo.AlignedBuffer(4 * 4096);
        reader.Read(0, aligned.AsSpan(0, content.Length));
        Assert.Equal(content, aligned.AsSpan(0, content.Length).ToArray());
        reader.Read(4096, aligned.AsSpan(0, 2 * 4096));
        Assert.Equal(content.AsSpan(4096, 2 * 4096).ToArray(), aligned.AsSpan(0, 2 * 4096).ToArray());
        byte[] unaligned = new byte[5000];
        reader.Read(123, unaligned);
        Assert.Equal(content.AsSpan(123, 5000).ToArray(), unaligned);
        // Aligned past the end: the direct read comes back short, the rest (unaligned now) finds the end.
        aligned.AsSpan().Clear();
        Assert.EndsWith($"ends at {content.Length}", Assert.Throws<PayloadException>(() => reader.Read(0, aligned.AsSpan(0, 4 * 4096))).Message);
        Assert.Equal(content, aligned.AsSpan(0, content.Length).ToArray());
    }

    /// <summary>
    /// Where the file system takes O_DIRECT (the test directory's ext4 here), the handle is
    /// really direct: a wrong flag would leave every direct test above passing through the buffered path.
    /// </summary>
    [Fact]
    public void TheDirectHandleIsDirect()
    {
        string path = Path.Combine(_work, "file");
        File.WriteAllBytes(path, new byte[8192]);
        using var handle = DirectHandle.Open(path, write: true);
        if (handle is null)
        {
            Assert.Equal("tmpfs", FileSystemOf(_work)); // the one file system here that refuses it (before Linux 6.6)
            return;
        }
        string flags = File.ReadAllLines($"/proc/self/fdinfo/{handle.Handle.DangerousGetHandle()}").Single(l => l.StartsWith("flags:", StringComparison.Ordinal));
        long octal = Convert.ToInt64(flags["flags:".Length..].Trim(), 8);
        Assert.True((octal & 0x4000) != 0, $"O_DIRECT not in {flags}");
    }

    private static string FileSystemOf(string path) =>
        HostOs.Platform.Kernel.MountInfo.ParseAll(File.ReadAllText("/proc/self/mountinfo"))
            .Where(m => path == m.MountPoint || path.StartsWith(m.MountPoint.TrimEnd('/') + "/", StringComparison.Ordinal))
            .MaxBy(m => m.MountPoint.Length)!.FsType;

    [Fact]
    public void NoDirectHandleWhereNoneCanBeHad()
    {
        // The buffered handle is then used for everything (and names the error, if any).
        Assert.Null(DirectHandle.Open(Path.Combine(_work, "missing"), write: false));
        Assert.Throws<PayloadException>(() => new SafeFileHandleReader(Path.Combine(_work, "missing"), direct: true));
    }
}

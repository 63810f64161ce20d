using HostOs.Platform;
using HostOs.Platform.Interop;

namespace HostOs.UnitTests.Platform;

/// <summary>The interop layer against the real kernel (as any user, or as root where marked).</summary>
public class SysTests
{
    [Fact]
    public void WholeFilesByRawCalls_ReadWriteReplaceAndAbsence()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-sys-").FullName;
        try
        {
            string path = Path.Combine(dir, "f");
            Assert.Null(Sys.TryReadFile(path));
            Assert.Null(Sys.TryReadFile(Path.Combine(dir, "no-such-dir", "f")));
            var missing = Assert.Throws<SysException>(() => Sys.ReadFile(path));
            Assert.Contains(path, missing.Message);
            Assert.Equal(Errno.ENOENT, missing.Errno);

            // Larger than the first read's buffer, and truncated by a shorter second write.
            byte[] big = Enumerable.Range(0, 10_000).Select(i => (byte)i).ToArray();
            Sys.WriteFile(path, big, mode: 0b110_000_000);
            Assert.Equal(big, Sys.TryReadFile(path));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            Sys.WriteFile(path, "short"u8);
            Assert.Equal("short"u8.ToArray(), Sys.ReadFile(path));

            // /proc files report a size of 0: read to the end, not by size.
            Assert.StartsWith($"{Environment.ProcessId} (", System.Text.Encoding.ASCII.GetString(Sys.ReadFile("/proc/self/stat")));

            AtomicFile.Write(path, "replaced"u8, durable: true, mode: UnixFileMode.UserRead);
            Assert.Equal("replaced"u8.ToArray(), Sys.ReadFile(path));
            Assert.Equal(UnixFileMode.UserRead, File.GetUnixFileMode(path));
            Assert.False(File.Exists(path + ".tmp"));

            Assert.False(Sys.TryRemoveDirectory(dir)); // not empty
            Assert.True(Sys.TryUnlink(path));
            Assert.False(Sys.TryUnlink(path));
            Assert.True(Sys.TryRemoveDirectory(dir));
            Assert.False(Sys.TryRemoveDirectory(dir));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void IsBlockDevice_ByWhatThePathNames_LinksFollowed()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-sys-").FullName;
        try
        {
            string file = Path.Combine(dir, "image"), toFile = Path.Combine(dir, "to-image");
            File.WriteAllBytes(file, new byte[4096]);
            File.CreateSymbolicLink(toFile, file);
            Assert.False(Sys.IsBlockDevice(file));
            Assert.False(Sys.IsBlockDevice(toFile));
            Assert.False(Sys.IsBlockDevice(dir));
            Assert.False(Sys.IsBlockDevice("/dev/null")); // a character device
            Assert.False(Sys.IsBlockDevice(Path.Combine(dir, "missing")));
            Assert.False(Sys.IsBlockDevice(Path.Combine(file, "under-a-file")));
            // Any block device this machine has (sysfs lists them; the node may be absent in a container).
            string? device = Directory.EnumerateDirectories("/sys/class/block").Select(d => "/dev/" + Path.GetFileName(d)).FirstOrDefault(File.Exists);
            if (device is null) return;
            string toDevice = Path.Combine(dir, "to-device");
            File.CreateSymbolicLink(toDevice, device);
            Assert.True(Sys.IsBlockDevice(device));
            Assert.True(Sys.IsBlockDevice(toDevice));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ReadToEnd_ReadsAPipeUntilItsWriterCloses()
    {
        var (read, write) = Sys.Pipe();
        byte[] sent = Enumerable.Range(0, 10_000).Select(i => (byte)(i * 7)).ToArray();
        using (write) Sys.WriteAll((int)write.DangerousGetHandle(), sent); // fits in the pipe's 64 KiB
        using (read) Assert.Equal(sent, Sys.ReadToEnd(read, "the test pipe"));
    }

    [Fact]
    public void WriteExisting_WritesWithoutCreatingOrTruncating()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-sys-").FullName;
        try
        {
            string path = Path.Combine(dir, "f");
            Assert.False(Sys.TryWriteExisting(path, "x"u8));
            Assert.False(File.Exists(path));
            File.WriteAllText(path, "12345");
            Assert.True(Sys.TryWriteExisting(path, "ab"u8));
            Assert.Equal("ab345", File.ReadAllText(path)); // cgroup and proc files take each write whole
            var e = Assert.Throws<SysException>(() => Sys.TryWriteExisting(dir, "x"u8));
            Assert.Equal(Errno.EISDIR, e.Errno);
            Assert.Contains(dir, e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void SpawnAndWait_ExitCodeAndSignalAreDecoded()
    {
        int pid = Sys.Spawn(new SpawnRequest { Path = "/bin/sh", Args = ["sh", "-c", "exit 7"] });
        Assert.Equal(pid, Sys.WaitPid(pid, 0, out ExitStatus status));
        Assert.True(status.Exited);
        Assert.Equal(7, status.Code);

        pid = Sys.Spawn(new SpawnRequest { Path = "/bin/sh", Args = ["sh", "-c", "kill -TERM $$"] });
        Sys.WaitPid(pid, 0, out status);
        Assert.True(status.Signaled);
        Assert.Equal(15, status.Signal);
        Assert.Equal(143, status.ShellCode);
    }

    [Fact]
    public void SpawnedChildGetsDefaultSignalDispositions()
    {
        // .NET ignores SIGPIPE; exec would keep "ignored". The child must see SIG_DFL.
        var (read, write) = Sys.Pipe();
        int pid = Sys.Spawn(new SpawnRequest { Path = "/bin/sh", Args = ["sh", "-c", "grep SigIgn /proc/self/status"], Stdout = write });
        write.Dispose();
        using var reader = new StreamReader(new FileStream(read, FileAccess.Read));
        string line = reader.ReadToEnd().Trim();
        Sys.WaitPid(pid, 0, out _);
        ulong ignored = Convert.ToUInt64(line.Split('\t').Last(), 16);
        Assert.Equal(0UL, ignored & (1UL << (13 - 1))); // SIGPIPE = 13
    }

    [Fact]
    public void ExtraFdsArriveAt3And4EvenWhenTheSourcesSitThere()
    {
        // Two pipes delivered as fds 3 and 4 in order (the crossed case, a source already at
        // 3 or 4, cannot be arranged in a test host whose low fds belong to the runtime).
        var (r1, w1) = Sys.Pipe();
        var (r2, w2) = Sys.Pipe();
        using (var a = new StreamWriter(new FileStream(w1, FileAccess.Write))) a.Write("one");
        using (var b = new StreamWriter(new FileStream(w2, FileAccess.Write))) b.Write("two");
        var (outRead, outWrite) = Sys.Pipe();
        int pid = Sys.Spawn(new SpawnRequest
        {
            Path = "/bin/sh",
            Args = ["sh", "-c", "cat <&3; echo; cat <&4"],
            Stdout = outWrite,
            ExtraFds = [r1, r2],
        });
        outWrite.Dispose();
        using var reader = new StreamReader(new FileStream(outRead, FileAccess.Read));
        string output = reader.ReadToEnd();
        Sys.WaitPid(pid, 0, out _);
        Assert.Equal("one\ntwo", output);
    }

    [Fact]
    public void SpawnOfAMissingProgramNamesIt()
    {
        var e = Assert.Throws<SysException>(() => Sys.Spawn(new SpawnRequest { Path = "/nonexistent/prog", Args = ["prog"] }));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("posix_spawn '/nonexistent/prog'", e.Message);
        Assert.Contains("(ENOENT)", e.Message);
    }

    [Fact]
    public void WaitWithNoChildrenIsEchildNotAnException() =>
        Assert.Equal(-Errno.ECHILD, Sys.WaitPid(999_999_999, Sys.WNOHANG, out _));

    [Fact]
    public void KillOfAGoneProcessIsFalse()
    {
        int pid = Sys.Spawn(new SpawnRequest { Path = "/bin/true", Args = ["true"] });
        Sys.WaitPid(pid, 0, out _);
        Assert.False(Sys.TryKill(pid, 0));
    }

    [Fact]
    public void GetRandomFillsTheBuffer()
    {
        byte[] a = new byte[32], b = new byte[32];
        Sys.GetRandom(a);
        Sys.GetRandom(b);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void MountErrorNamesTargetAndErrno()
    {
        var e = Assert.Throws<SysException>(() => Sys.Mount("none", "/nonexistent-mountpoint", "tmpfs", MountFlags.None));
        Assert.Contains("mount '/nonexistent-mountpoint'", e.Message);
        Assert.Contains("(ENOENT)", e.Message);
    }

    [RootFact]
    public void MountTmpfsRemountReadOnlyAndUnmount()
    {
        string dir = Directory.CreateTempSubdirectory("hostos-mount-").FullName;
        try
        {
            Sys.Mount("tmpfs", dir, "tmpfs", MountFlags.NoSuid | MountFlags.NoDev, "size=1m");
            File.WriteAllText(Path.Combine(dir, "f"), "x");
            Sys.Mount(null, dir, null, MountFlags.Remount | MountFlags.ReadOnly);
            var e = Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(dir, "g"), "y"));
            Assert.Contains("Read-only file system", e.Message);
            Sys.Umount(dir);
            Assert.False(File.Exists(Path.Combine(dir, "f")));
        }
        finally
        {
            Sys.TryUmount(dir, Sys.MNT_DETACH);
            Directory.Delete(dir, true);
        }
    }
}

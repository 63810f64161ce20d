using System.Buffers.Binary;
using HostOs.Init;
using HostOs.Init.Health;
using HostOs.Init.Phase1;
using HostOs.Init.Phase2;
using HostOs.Platform.Boot;
using HostOs.Platform.Disk;
using HostOs.Platform.Kernel;

namespace HostOs.UnitTests.Init;

public class RootSpecTests
{
    [Theory]
    [InlineData("hostos.slot=a", "PARTLABEL=root-a")]
    [InlineData("hostos.slot=b quiet", "PARTLABEL=root-b")]
    [InlineData("hostos.slot=a hostos.root=PARTUUID=0b1c3a0e-0000-4000-8000-000000000001", "PARTUUID=0b1c3a0e-0000-4000-8000-000000000001")]
    public void RootComesFromTheCommandLine(string cmdline, string spec) =>
        Assert.Equal(spec, InitramfsBoot.RootSpec(KernelCommandLine.Parse(cmdline)));

    [Theory]
    [InlineData("quiet", "names no root")]
    [InlineData("hostos.slot=c", "hostos.slot=c")]
    public void BadRootIsNamed(string cmdline, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => InitramfsBoot.RootSpec(KernelCommandLine.Parse(cmdline)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void PartitionSpecsAreStrict()
    {
        Assert.NotNull(BlockDevices.ParseSpec("PARTLABEL=root-a"));
        Assert.Throws<FormatException>(() => BlockDevices.ParseSpec("LABEL=root-a"));
        Assert.Throws<FormatException>(() => BlockDevices.ParseSpec("PARTUUID=not-a-guid"));
    }
}

public class BootEntryFilesTests
{
    [Theory]
    [InlineData(@"\loader\entries\hostos-0.2.0+1-2.conf", "hostos-0.2.0+1-2.conf")]
    [InlineData("/loader/entries/hostos-1+2.conf", "hostos-1+2.conf")]
    public void CountedEntryFromLoaderBootCountPath(string path, string file) =>
        Assert.Equal(file, BootEntryFiles.FromBootCountPath(path)?.FileName);

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData(@"\loader\entries\hostos-1.conf")]
    public void UncountedBoots(string? path) => Assert.Null(BootEntryFiles.FromBootCountPath(path));

    [Fact]
    public void BlessRenamesTheCountedFile()
    {
        string esp = Directory.CreateTempSubdirectory("esp-").FullName;
        string entries = Path.Combine(esp, "loader", "entries");
        Directory.CreateDirectory(entries);
        File.WriteAllText(Path.Combine(entries, "hostos-2+1-2.conf"), "title x\n");
        BootEntryName.TryParse("hostos-2+1-2.conf", out BootEntryName n);
        BootEntryFiles.Bless(esp, n);
        Assert.Equal(["hostos-2.conf"], Directory.GetFiles(entries).Select(Path.GetFileName));
        Assert.Equal("title x\n", File.ReadAllText(Path.Combine(entries, "hostos-2.conf")));
        var e = Assert.Throws<FileNotFoundException>(() => BootEntryFiles.Bless(esp, n));
        Assert.Contains("hostos-2+1-2.conf", e.Message);
        Directory.Delete(esp, true);
    }

    [Fact]
    public void EfiStringsAreUtf16WithNul()
    {
        byte[] raw = System.Text.Encoding.Unicode.GetBytes("hostos-1+2-1.conf\0junk");
        Assert.Equal("hostos-1+2-1.conf", EfiVariables.DecodeString(raw));
    }

    [Fact]
    public void EfiVariableFileSkipsTheAttributeWord()
    {
        string dir = Directory.CreateTempSubdirectory("efivars-").FullName;
        byte[] value = [7, 0, 0, 0, .. System.Text.Encoding.Unicode.GetBytes("abc\0")];
        File.WriteAllBytes(Path.Combine(dir, "LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"), value);
        Assert.Equal("abc", EfiVariables.ReadLoaderString("LoaderEntrySelected", dir));
        Assert.Null(EfiVariables.ReadLoaderString("LoaderBootCountPath", dir));
        Directory.Delete(dir, true);
    }
}

public class Phase2PartsTests
{
    [Fact]
    public void PowerKeyPressIsRecognised()
    {
        byte[] ev = new byte[24];
        BinaryPrimitives.WriteUInt16LittleEndian(ev.AsSpan(16), 1);   // EV_KEY
        BinaryPrimitives.WriteUInt16LittleEndian(ev.AsSpan(18), 116); // KEY_POWER
        BinaryPrimitives.WriteInt32LittleEndian(ev.AsSpan(20), 1);    // press
        Assert.True(PowerButton.IsPowerPress(ev));
        BinaryPrimitives.WriteInt32LittleEndian(ev.AsSpan(20), 0);    // release
        Assert.False(PowerButton.IsPowerPress(ev));
    }

    [Theory]
    [InlineData("42 (sh) S 1 42 42 0", 1)]
    [InlineData("43 (my (odd) proc) R 7 43 43 0", 7)]
    [InlineData("2 (kthreadd) S 0 0 0 0", 0)]
    public void ParentPidFromStat(string stat, int ppid) => Assert.Equal(ppid, Shutdown.ParentOf(stat));

    [Fact]
    public void MachineIdIsMadeOnceAndKept()
    {
        string dir = Directory.CreateTempSubdirectory("mid-").FullName;
        string path = Path.Combine(dir, "machine-id");
        string id = MachineIdentity.EnsureMachineId(path, "/nonexistent");
        Assert.Matches("^[0-9a-f]{32}$", id);
        Assert.Equal(id + "\n", File.ReadAllText(path));
        Assert.Equal(id, MachineIdentity.EnsureMachineId(path, "/nonexistent"));
        File.WriteAllText(path, "uninitialized\n");
        Assert.NotEqual(id, MachineIdentity.EnsureMachineId(path, "/nonexistent"));
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData("node-1", true)]
    [InlineData("a.example.com", true)]
    [InlineData("-bad", false)]
    [InlineData("bad_underscore", false)]
    [InlineData("", false)]
    public void HostnameValidity(string name, bool valid) => Assert.Equal(valid, MachineIdentity.IsValidHostname(name));

    [Fact]
    public void HostnameFallsBackToMachineIdPrefix()
    {
        string dir = Directory.CreateTempSubdirectory("hn-").FullName;
        string path = Path.Combine(dir, "hostname");
        Assert.Equal("hostos-0123abcd", MachineIdentity.Hostname("0123abcd" + new string('0', 24), path));
        File.WriteAllText(path, "web-7\n");
        Assert.Equal("web-7", MachineIdentity.Hostname("0123abcd" + new string('0', 24), path));
        File.WriteAllText(path, "not valid!\n");
        Assert.Equal("hostos-0123abcd", MachineIdentity.Hostname("0123abcd" + new string('0', 24), path));
        Directory.Delete(dir, true);
    }
}

public class StateVolumeTests
{
    private static byte[] Superblock(ushort state, uint incompat, ushort magic = 0xEF53)
    {
        byte[] sb = new byte[1024];
        BinaryPrimitives.WriteUInt16LittleEndian(sb.AsSpan(0x38), magic);
        BinaryPrimitives.WriteUInt16LittleEndian(sb.AsSpan(0x3A), state);
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x60), incompat);
        return sb;
    }

    [Fact]
    public void SuperblockStatesAreClassified()
    {
        Assert.Equal(StateVolume.Ext4State.Clean, StateVolume.Classify(Superblock(1, 0x2C2)));
        Assert.Equal(StateVolume.Ext4State.NotClean, StateVolume.Classify(Superblock(0, 0x2C2)));
        Assert.Equal(StateVolume.Ext4State.HasErrors, StateVolume.Classify(Superblock(3, 0x2C2)));
        Assert.Equal(StateVolume.Ext4State.NeedsRecovery, StateVolume.Classify(Superblock(1, 0x2C6)));
        Assert.Equal(StateVolume.Ext4State.Missing, StateVolume.Classify(Superblock(1, 0, 0)));
    }

    [RootFact]
    public void RealMke2fsImagesAreCleanAndNeedNoCheck()
    {
        string img = Path.GetTempFileName();
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("mkfs.ext4", ["-q", "-F", img, "16M"]) { RedirectStandardError = true };
            using (var p = System.Diagnostics.Process.Start(psi)!) p.WaitForExit();
            Assert.Equal(StateVolume.Ext4State.Clean, StateVolume.ReadSuperblock(img));
        }
        finally
        {
            File.Delete(img);
        }
    }
}

public class MachineIdSourceTests
{
    [Theory]
    [InlineData("4C4C4544-0053-3510-8047-B3C04F4A3732\n", "4c4c4544005335108047b3c04f4a3732")]
    [InlineData("00000000-0000-0000-0000-000000000000\n", null)]
    [InlineData("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\n", null)]
    [InlineData("Not Settable\n", null)]
    [InlineData(null, null)]
    public void SmbiosUuidIsUsedUnlessAPlaceholder(string? uuid, string? expected) =>
        Assert.Equal(expected, MachineIdentity.FromProductUuid(uuid));

    [Fact]
    public void ProductUuidBecomesTheMachineId()
    {
        string dir = Directory.CreateTempSubdirectory("mid-").FullName;
        File.WriteAllText(Path.Combine(dir, "product_uuid"), "4C4C4544-0053-3510-8047-B3C04F4A3732\n");
        Assert.Equal("4c4c4544005335108047b3c04f4a3732",
            MachineIdentity.EnsureMachineId(Path.Combine(dir, "machine-id"), Path.Combine(dir, "product_uuid")));
        Directory.Delete(dir, true);
    }
}

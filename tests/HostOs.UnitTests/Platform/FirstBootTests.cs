using HostOs.Platform.Config;
using HostOs.Platform.Disk;

namespace HostOs.UnitTests.Platform;

public class FirstBootTests
{
    [Fact]
    public void ParsesAFullConfiguration()
    {
        var c = FirstBootConfig.Parse("""
            { "hostname": "edge-1",
              "healthChecks": [ { "name": "disk-ok", "exec": ["/bin/true"] } ],
              "registries": [ { "host": "registry.local:5000", "username": "u", "password": "p" } ],
              "update": { "server": "https://updates.example/hostos", "keys": ["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="] } }
            """, "user-data");
        Assert.Equal("edge-1", c.Hostname);
        Assert.Equal("disk-ok", c.HealthChecks[0].Name);
        Assert.Equal("registry.local:5000", c.Registries[0].Host);
        Assert.Equal("stable", c.Update!.Channel);
    }

    [Theory]
    [InlineData("#cloud-config\nhostname: x\n", "'#cloud-config' YAML is not understood")]
    [InlineData("""{ "hostname": "bad_name!" }""", "hostname 'bad_name!'")]
    [InlineData("""{ "hostnme": "x" }""", "hostnme")]
    [InlineData("""{ "healthChecks": [ { "name": "a", "exec": ["rel"] } ] }""", "exec must start with an absolute path")]
    [InlineData("""{ "healthChecks": [ { "name": "a/b", "exec": ["/x"] } ] }""", "name 'a/b'")]
    [InlineData("""{ "registries": [ { "host": "r", "username": "", "password": "p" } ] }""", "needs both a username and a password, or neither")]
    [InlineData("""{ "update": { "server": "ftp://x" } }""", "update.server 'ftp://x'")]
    [InlineData("""{ "update": { "server": "https://x", "keys": ["c2hvcnQ="] } }""", "not a base64 Ed25519 public key")]
    [InlineData("""{ "hostname": "ok", "update": { "server": "nope" } """, "user-data")]
    public void RefusesWithTheProblemNamed(string text, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => FirstBootConfig.Parse(text, "user-data"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MetaDataAsNoCloudWritesIt()
    {
        var m = FirstBootConfig.ParseMetaData("instance-id: iid-local01\nlocal-hostname: 'cloudimg'\n# comment\n");
        Assert.Equal("iid-local01", m["instance-id"]);
        Assert.Equal("cloudimg", m["local-hostname"]);
        Assert.Equal("i-1", FirstBootConfig.ParseMetaData("""{ "instance-id": "i-1" }""")["instance-id"]);
    }

    [Fact]
    public void LabelsOfFatAndIso9660()
    {
        byte[] fat32 = new byte[FilesystemLabel.BytesNeeded];
        fat32[510] = 0x55; fat32[511] = 0xAA; fat32[0x42] = 0x29;
        "FAT32   "u8.CopyTo(fat32.AsSpan(0x52));
        "CIDATA     "u8.CopyTo(fat32.AsSpan(0x47));
        Assert.Equal(("vfat", "CIDATA"), FilesystemLabel.Read(fat32));

        byte[] fat16 = new byte[1024];
        fat16[510] = 0x55; fat16[511] = 0xAA; fat16[0x26] = 0x29;
        "FAT16   "u8.CopyTo(fat16.AsSpan(0x36));
        "cidata     "u8.CopyTo(fat16.AsSpan(0x2B));
        Assert.Equal(("vfat", "cidata"), FilesystemLabel.Read(fat16));

        byte[] iso = new byte[FilesystemLabel.BytesNeeded];
        iso[0x8000] = 1;
        "CD001"u8.CopyTo(iso.AsSpan(0x8001));
        "cidata                          "u8.CopyTo(iso.AsSpan(0x8028));
        Assert.Equal(("iso9660", "cidata"), FilesystemLabel.Read(iso));

        Assert.Null(FilesystemLabel.Read(new byte[4096]));
    }

    [RootFact]
    public void LabelOfARealMkfsVfat()
    {
        string img = Path.Combine(Path.GetTempPath(), $"cidata-{Guid.NewGuid():N}.img");
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("mkfs.vfat", ["-n", "cidata", "-C", img, "2048"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using (var p = System.Diagnostics.Process.Start(psi)!) p.WaitForExit();
            byte[] head = new byte[FilesystemLabel.BytesNeeded];
            using (FileStream f = File.OpenRead(img)) f.ReadExactly(head);
            Assert.Equal(("vfat", "cidata"), FilesystemLabel.Read(head));
        }
        finally
        {
            File.Delete(img);
        }
    }
}

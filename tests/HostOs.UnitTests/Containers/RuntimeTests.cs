using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Platform.Interop;

namespace HostOs.UnitTests.Containers;

public class MountOptionsTests
{
    [Fact]
    public void FlagsPropagationAndDataAreSeparated()
    {
        var o = MountOptions.Parse(["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        Assert.Equal(MountFlags.NoSuid | MountFlags.StrictAtime, o.Flags);
        Assert.Equal(MountFlags.Slave | MountFlags.Recursive, o.Propagation);
        Assert.Equal("mode=755,size=65536k", o.Data);
        Assert.False(o.Bind);
    }

    [Fact]
    public void BindAndLaterOptionsWin()
    {
        var o = MountOptions.Parse(["rbind", "ro", "rw", "nodev"]);
        Assert.True(o.Bind);
        Assert.True(o.Recursive);
        Assert.Equal(MountFlags.NoDev, o.Flags);
        Assert.Equal(MountFlags.ReadOnly, o.ClearedFlags);
        Assert.Null(o.Data);
        Assert.Equal(MountFlags.None, MountOptions.Parse(null).Flags);
    }
}

public class StageTests
{
    [Fact]
    public void SecureJoinRefusesSymlinksAndDotDot()
    {
        string root = Directory.CreateTempSubdirectory("rootfs-").FullName;
        Directory.CreateDirectory(Path.Combine(root, "usr", "lib"));
        File.CreateSymbolicLink(Path.Combine(root, "etc"), "/etc");
        Assert.Equal(Path.Combine(root, "usr", "lib", "x"), Stage.SecureJoin(root, "/usr/lib/x"));
        var e = Assert.Throws<InvalidDataException>(() => Stage.SecureJoin(root, "/etc/passwd"));
        Assert.Contains("'/etc' is a symbolic link", e.Message);
        Assert.Throws<InvalidDataException>(() => Stage.SecureJoin(root, "/usr/../../x"));
        Directory.Delete(root, true);
    }
}

public class NotYetImplementedTests
{
    [Fact]
    public void RuncsAndCrunsDefaultSpecsAreRunnable()
    {
        // Device filter, terminal: everything `runc spec` and `crun spec` ask for is there.
        foreach (string fixture in new[] { "runc-spec.json", "crun-spec.json" })
        {
            var spec = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", fixture)), fixture);
            Assert.Empty(NotYetImplemented.Problems(spec));
        }
        var noMountNamespace = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "runc-spec.json")), "runc");
        noMountNamespace.Linux!.Namespaces!.RemoveAll(n => n.Type == "mount");
        Assert.Contains("without a mount namespace of its own: not implemented", Assert.Single(NotYetImplemented.Problems(noMountNamespace)));
    }
}

public class StagePlanTests
{
    [Fact]
    public void PlanRoundTripsEveryField()
    {
        var spec = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "runc-spec.json")), "runc");
        spec.Process!.User = new User { Uid = 1000, Gid = 100, Umask = 0x3F, AdditionalGids = [5, 6] };
        spec.Process.OomScoreAdj = -500;
        spec.Process.Capabilities!.Ambient = ["CAP_KILL"];
        spec.Domainname = "example";
        spec.Linux!.Sysctl = new Dictionary<string, string> { ["kernel.shmmax"] = "1024" };
        StagePlan plan = StagePlan.From(spec, "/bundles/x/rootfs");
        var stream = new MemoryStream();
        plan.WriteFramed(stream);
        stream.WriteByte((byte)'G'); // what follows the plan on the pipe must stay unread
        stream.Position = 0;
        StagePlan back = StagePlan.ReadFramed(stream);
        Assert.Equal('G', stream.ReadByte());

        Assert.Equal(plan.Rootfs, back.Rootfs);
        Assert.Equal(plan.Mounts.Select(m => (m.Destination, m.Source, m.Type, string.Join(',', m.Options))),
                     back.Mounts.Select(m => (m.Destination, m.Source, m.Type, string.Join(',', m.Options))));
        Assert.Equal(plan.MaskedPaths, back.MaskedPaths);
        Assert.Equal(plan.ReadonlyPaths, back.ReadonlyPaths);
        Assert.Equal(("runc", "example"), (back.Hostname, back.Domainname));
        Assert.Equal(plan.Sysctl, back.Sysctl);
        Assert.Equal(plan.Rlimits, back.Rlimits);
        Assert.Equal(-500, back.OomScoreAdj);
        Assert.Equal(plan.Args, back.Args);
        Assert.Equal(plan.Env, back.Env);
        Assert.Equal((1000u, 100u, (uint?)0x3F), (back.Uid, back.Gid, back.Umask));
        Assert.Equal([5u, 6u], back.AdditionalGids);
        Assert.Equal(plan.Bounding, back.Bounding);
        Assert.Equal(plan.Effective, back.Effective);
        Assert.Equal(plan.Permitted, back.Permitted);
        Assert.Equal(["CAP_KILL"], back.Ambient);
        Assert.True(back.NoNewPrivileges);
        Assert.True(back.ReadonlyRoot);
        Assert.True(back.OwnNetwork); // runc's default spec has a network namespace of its own
    }
}

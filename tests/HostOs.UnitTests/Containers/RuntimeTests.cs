using System.Text.Json;
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
    public void ABindMountsRelativeSourceIsRelativeToTheBundle()
    {
        var spec = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "runc-spec.json")), "runc");
        spec.Mounts =
        [
            new Mount { Destination = "/data", Source = "data", Type = "bind", Options = ["rbind"] },
            new Mount { Destination = "/etc/x", Source = "conf/x", Options = ["bind", "ro"] },
            new Mount { Destination = "/abs", Source = "/srv/abs", Options = ["bind"] },
            new Mount { Destination = "/proc", Source = "proc", Type = "proc" },
        ];
        var sources = StagePlan.From(spec, "/bundles/x/rootfs", "/bundles/x").Mounts.Select(m => m.Source);
        Assert.Equal(["/bundles/x/data", "/bundles/x/conf/x", "/srv/abs", "proc"], sources);
    }

    [Fact]
    public void PlanCarriesEveryFieldOfTheSpec()
    {
        var spec = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "runc-spec.json")), "runc");
        spec.Process!.User = new User { Uid = 1000, Gid = 100, Umask = 0x3F, AdditionalGids = [5, 6] };
        spec.Process.OomScoreAdj = -500;
        spec.Process.Capabilities!.Ambient = ["CAP_KILL"];
        spec.Domainname = "example";
        spec.Linux!.Sysctl = new Dictionary<string, string> { ["kernel.shmmax"] = "1024" };
        StagePlan plan = StagePlan.From(spec, "/bundles/x/rootfs");
        Assert.Equal("/bundles/x/rootfs", plan.Rootfs);
        Assert.Equal(spec.Mounts!.Select(m => (m.Destination!, m.Source, m.Type, string.Join(',', m.Options ?? []))),
                     plan.Mounts.Select(m => (m.Destination, m.Source, m.Type, string.Join(',', m.Options))));
        Assert.Equal(spec.Linux.MaskedPaths, plan.MaskedPaths);
        Assert.Equal(spec.Linux.ReadonlyPaths, plan.ReadonlyPaths);
        Assert.Equal(("runc", "example"), (plan.Hostname, plan.Domainname));
        Assert.Equal([("kernel.shmmax", "1024")], plan.Sysctl);
        Assert.Equal(spec.Process.Rlimits!.Select(r => (r.Type!, r.Soft, r.Hard)), plan.Rlimits);
        Assert.Equal(-500, plan.OomScoreAdj);
        Assert.Equal(spec.Process.Args, plan.Args);
        Assert.Equal(spec.Process.Env, plan.Env);
        Assert.Equal((1000u, 100u, (uint?)0x3F), (plan.Uid, plan.Gid, plan.Umask));
        Assert.Equal([5u, 6u], plan.AdditionalGids);
        Assert.Equal(spec.Process.Capabilities.Bounding, plan.Bounding);
        Assert.Equal(spec.Process.Capabilities.Effective, plan.Effective);
        Assert.Equal(spec.Process.Capabilities.Permitted, plan.Permitted);
        Assert.Equal(["CAP_KILL"], plan.Ambient);
        Assert.True(plan.NoNewPrivileges);
        Assert.True(plan.ReadonlyRoot);
        Assert.True(plan.OwnNetwork); // runc's default spec has a network namespace of its own
    }
}

public class SavedContainerTests
{
    [Fact]
    public void StartTime_IsField22OfProcStat_AndNullForAGoneProcess()
    {
        string stat = File.ReadAllText($"/proc/{Environment.ProcessId}/stat");
        string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(ulong.Parse(rest[19], System.Globalization.CultureInfo.InvariantCulture), HostOs.Platform.Kernel.ProcessStat.StartTime(Environment.ProcessId));

        using var exited = System.Diagnostics.Process.Start("/bin/true")!;
        exited.WaitForExit();
        Assert.Null(HostOs.Platform.Kernel.ProcessStat.StartTime(exited.Id));
    }

    [Fact]
    public void StateFile_RoundTripsThroughItsReader()
    {
        var saved = new SavedContainer
        {
            Id = "c\"1", Pid = 7, PidStartTime = ulong.MaxValue, Bundle = "/b/ü", Rootfs = "/b/rootfs", Created = SavedContainer.Now(),
            CgroupRoot = "/sys/fs/cgroup", CgroupPath = "hostos/c1", Annotations = new() { ["k\n"] = "v\u0001" },
        };
        SavedContainer back = SavedContainer.FromJson(saved.ToJson());
        Assert.Equal((saved.Id, saved.Pid, saved.PidStartTime, saved.Bundle, saved.Rootfs, saved.Created, saved.CgroupRoot, saved.CgroupPath),
            (back.Id, back.Pid, back.PidStartTime, back.Bundle, back.Rootfs, back.Created, back.CgroupRoot, back.CgroupPath));
        Assert.Equal(saved.Annotations, back.Annotations);
    }

    private const string Complete = """{"id":"c1","pid":5,"pidStartTime":1,"bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","cgroupRoot":"/sys/fs/cgroup","cgroupPath":"hostos/c1"}""";

    [Theory]
    [InlineData("""{"id":"c1"}""", "pid is missing")]
    [InlineData("""{"pid":5,"pidStartTime":1,"bundle":"/b","rootfs":"/b/rootfs","created":"x","cgroupRoot":"/r","cgroupPath":"p"}""", "id is missing")]
    [InlineData("""{"id":7,"pid":5}""", "id is not a string")]
    [InlineData("""{"id":"c1","annotations":{"a":1}}""", "annotations.a is not a string")]
    [InlineData("""{"id":"c1","annotations":[]}""", "annotations is not an object")]
    [InlineData("[]", "not a JSON object")]
    public void StateFile_MissingOrMistypedFieldsAreNamed(string json, string expected)
    {
        var e = Assert.ThrowsAny<JsonException>(() => SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(json)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void StateFile_UnknownFieldsAreSkipped_TrailingTextAndWrongNumbersRefused()
    {
        string withExtra = Complete.Replace("{\"id\"", "{\"later\":{\"x\":[1,{\"y\":null}]},\"id\"");
        Assert.Equal(5, SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(withExtra)).Pid);
        Assert.ThrowsAny<JsonException>(() => SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(Complete + " x")));
        Assert.ThrowsAny<JsonException>(() => SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(Complete[..^1])));
        Assert.Throws<InvalidOperationException>(() => SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(Complete.Replace("\"pid\":5", "\"pid\":\"5\""))));
        Assert.Throws<FormatException>(() => SavedContainer.FromJson(System.Text.Encoding.UTF8.GetBytes(Complete.Replace("\"pid\":5", "\"pid\":5000000000"))));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(638_999_999_999_999_999L)]
    [InlineData(639_000_000_000_000_007L)]
    public void CreatedIsWrittenAsTheFormatStringWould(long ticks)
    {
        var t = new DateTime(ticks, DateTimeKind.Utc);
        Assert.Equal(t.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture), SavedContainer.Rfc3339(t));
    }
}

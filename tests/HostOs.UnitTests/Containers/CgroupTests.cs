using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;

namespace HostOs.UnitTests.Containers;

public class CgroupResourcesTests
{
    [Fact]
    public void ResourcesMapToCgroupV2Files()
    {
        var r = new Resources
        {
            Memory = new Memory { Limit = 64 << 20, Reservation = 32 << 20, Swap = 96 << 20 },
            Cpu = new Cpu { Shares = 1024, Quota = 50_000, Period = 100_000, Cpus = "0-1", Mems = "0" },
            Pids = new Pids { Limit = 64 },
            BlockIO = new BlockIO
            {
                Weight = 500,
                WeightDevice = [new WeightDevice { Major = 8, Minor = 0, Weight = 1000 }],
                ThrottleReadBpsDevice = [new ThrottleDevice { Major = 8, Minor = 0, Rate = 1048576 }],
            },
            HugepageLimits = [new HugepageLimit { PageSize = "2MB", Limit = 0 }],
            Unified = new Dictionary<string, string> { ["memory.high"] = "50331648" },
        };
        Assert.Equal(
        [
            ("memory.max", "67108864"), ("memory.low", "33554432"), ("memory.swap.max", "33554432"),
            ("cpu.weight", "39"), ("cpu.max", "50000 100000"), ("cpuset.cpus", "0-1"), ("cpuset.mems", "0"),
            ("pids.max", "64"),
            ("io.weight", "default 4950"), ("io.weight", "8:0 10000"), ("io.max", "8:0 rbps=1048576"),
            ("hugetlb.2MB.max", "0"), ("memory.high", "50331648"),
        ], CgroupResources.ToFiles(r));
    }

    [Theory]
    [InlineData(2UL, 1UL)]
    [InlineData(1024UL, 39UL)]
    [InlineData(262144UL, 10000UL)]
    public void SharesConvertLikeRunc(ulong shares, ulong weight) => Assert.Equal(weight, CgroupResources.SharesToWeight(shares));

    [Fact]
    public void UnlimitedValuesAreMax()
    {
        var files = CgroupResources.ToFiles(new Resources
        {
            Memory = new Memory { Limit = -1, Swap = -1 },
            Cpu = new Cpu { Quota = -1 },
            Pids = new Pids { Limit = 0 },
        });
        Assert.Equal([("memory.max", "max"), ("memory.swap.max", "max"), ("cpu.max", "max 100000"), ("pids.max", "max")], files);
        Assert.Equal(["memory", "cpu", "pids"], CgroupResources.ControllersFor(files));
    }
}

public class CgroupTreeTests
{
    /// <summary>A fake cgroup2 root: controllers available, control files present.</summary>
    private static string FakeRoot()
    {
        string root = Directory.CreateTempSubdirectory("cgroup-").FullName;
        File.WriteAllText(Path.Combine(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
        File.WriteAllText(Path.Combine(root, "cgroup.subtree_control"), "");
        return root;
    }

    private static void AddControlFiles(string dir, params string[] files)
    {
        File.WriteAllText(Path.Combine(dir, "cgroup.controllers"), "cpu memory pids\n");
        File.WriteAllText(Path.Combine(dir, "cgroup.subtree_control"), "");
        foreach (string f in files) File.WriteAllText(Path.Combine(dir, f), "");
    }

    [Fact]
    public void CreateDelegatesControllersAtEveryLevel()
    {
        string root = FakeRoot();
        // The kernel fills a new cgroup's files; the fake does it for the middle level.
        Directory.CreateDirectory(Path.Combine(root, "hostos"));
        AddControlFiles(Path.Combine(root, "hostos"));
        var cg = Cgroup.Create(root, "/hostos/web", ["memory", "pids"]);
        Assert.Equal(Path.Combine(root, "hostos", "web"), cg.Path);
        Assert.Equal("+memory +pids", File.ReadAllText(Path.Combine(root, "cgroup.subtree_control")));
        Assert.Equal("+memory +pids", File.ReadAllText(Path.Combine(root, "hostos", "cgroup.subtree_control")));
        Assert.True(Directory.Exists(cg.Path));

        AddControlFiles(cg.Path, "memory.max", "pids.max", "cgroup.procs");
        cg.Apply([("memory.max", "1048576"), ("pids.max", "10")]);
        Assert.Equal("1048576", File.ReadAllText(Path.Combine(cg.Path, "memory.max")));
        cg.AddProcess(1234);
        Assert.Equal("1234", File.ReadAllText(Path.Combine(cg.Path, "cgroup.procs")));
        Assert.Equal([1234], cg.Processes());
        Directory.Delete(root, true);
    }

    [Fact]
    public void MissingControllerIsNamed()
    {
        string root = FakeRoot();
        File.WriteAllText(Path.Combine(root, "cgroup.controllers"), "cpu pids\n");
        var e = Assert.Throws<CgroupException>(() => Cgroup.Create(root, "x", ["memory"]));
        Assert.Contains("controller(s) memory not available", e.Message);
        Directory.Delete(root, true);
    }

    [Fact]
    public void WritingAFileOfADisabledControllerSaysSo()
    {
        string root = FakeRoot();
        var cg = Cgroup.Create(root, "y", []);
        var e = Assert.Throws<CgroupException>(() => cg.Apply([("memory.max", "1")]));
        Assert.Contains("memory.max does not exist (is the memory controller enabled", e.Message);
        Directory.Delete(root, true);
    }

    [Fact]
    public void DestroyRemovesAnUnpopulatedCgroup()
    {
        string root = FakeRoot();
        var cg = Cgroup.Create(root, "gone", []);
        File.WriteAllText(Path.Combine(cg.Path, "cgroup.events"), "populated 0\nfrozen 0\n");
        Assert.False(cg.Populated());
        File.Delete(Path.Combine(cg.Path, "cgroup.events")); // a real cgroup's files vanish with rmdir
        cg.Destroy(TimeSpan.FromSeconds(1));
        Assert.False(Directory.Exists(cg.Path));
        Directory.Delete(root, true);
    }

    [Fact]
    public void EscapingPathsAreRefused() =>
        Assert.Throws<CgroupException>(() => Cgroup.Open("/sys/fs/cgroup", "hostos/../../etc"));

    [Fact]
    public void TheRootAndPopulatedCgroupsAreNotAContainersToOwn()
    {
        string root = FakeRoot();
        Assert.Contains("names the root cgroup", Assert.Throws<CgroupException>(() => Cgroup.Create(root, "/", [])).Message);
        Directory.CreateDirectory(Path.Combine(root, "shared"));
        File.WriteAllText(Path.Combine(root, "shared", "cgroup.events"), "populated 1\nfrozen 0\n");
        Assert.Contains("already holds processes", Assert.Throws<CgroupException>(() => Cgroup.Create(root, "shared", [])).Message);
        File.WriteAllText(Path.Combine(root, "shared", "cgroup.events"), "populated 0\nfrozen 0\n");
        Assert.Equal(Path.Combine(root, "shared"), Cgroup.Create(root, "shared", []).Path); // an empty leftover is taken over
        Directory.Delete(root, true);
    }

    [Fact]
    public void EventsAreParsed()
    {
        string root = FakeRoot();
        var cg = Cgroup.Create(root, "z", []);
        File.WriteAllText(Path.Combine(cg.Path, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n");
        Assert.Equal(1, cg.Events("memory")["oom_kill"]);
        Assert.Empty(cg.Events("pids"));
        Directory.Delete(root, true);
    }
}

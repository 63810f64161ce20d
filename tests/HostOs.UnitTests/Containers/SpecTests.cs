using HostOs.Containers.Spec;

namespace HostOs.UnitTests.Containers;

public class SpecTests
{
    private static string Fixture(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", name));

    [Theory]
    [InlineData("runc-spec.json")]      // `runc spec` (runc 1.1.5)
    [InlineData("crun-spec.json")]      // `crun spec` (crun 1.8.1)
    public void DefaultSpecsOfRuncAndCrunAreValid(string fixture)
    {
        RuntimeSpec s = SpecLoader.Parse(Fixture(fixture), fixture);
        Assert.Equal("rootfs", s.Root!.Path);
        Assert.Equal(["sh"], s.Process!.Args);
        Assert.Contains(s.Linux!.Namespaces!, n => n.Type == "pid");
        Assert.Contains(s.Mounts!, m => m.Destination == "/proc" && m.Type == "proc");
        Assert.Contains("CAP_KILL", s.Process.Capabilities!.Bounding!);
    }

    [Fact]
    public void RootlessSpecIsRefusedByName()
    {
        // `runc spec --rootless`: a user namespace with mappings.
        var e = Assert.Throws<SpecException>(() => SpecLoader.Parse(Fixture("runc-rootless.json"), "rootless"));
        Assert.Equal(["$.linux.namespaces: user namespaces are not supported by HostOS yet"], e.Problems);
    }

    [Fact]
    public void RoundTripKeepsTheSpec()
    {
        RuntimeSpec s = SpecLoader.Parse(Fixture("runc-spec.json"), "runc");
        RuntimeSpec again = SpecLoader.Parse(SpecLoader.ToJson(s), "again");
        Assert.Equal(s.Linux!.MaskedPaths, again.Linux!.MaskedPaths);
        Assert.Equal(s.Process!.Rlimits![0].Hard, again.Process!.Rlimits![0].Hard);
    }

    private static SpecException Bad(string mutate)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(Fixture("runc-spec.json"))!;
        var patch = System.Text.Json.Nodes.JsonNode.Parse(mutate)!.AsObject();
        Merge(node.AsObject(), patch);
        return Assert.Throws<SpecException>(() => SpecLoader.Parse(node.ToJsonString(), "config.json"));
    }

    private static void Merge(System.Text.Json.Nodes.JsonObject target, System.Text.Json.Nodes.JsonObject patch)
    {
        foreach (var (key, value) in patch.ToList())
        {
            patch.Remove(key);
            if (value is System.Text.Json.Nodes.JsonObject o && target[key] is System.Text.Json.Nodes.JsonObject t) Merge(t, o);
            else target[key] = value;
        }
    }

    [Theory]
    [InlineData("""{ "linux": { "unknownThing": 1 } }""", "unknownThing")]
    [InlineData("""{ "windows": {} }""", "$.windows: a section for another platform")]
    [InlineData("""{ "ociVersion": "2.0.0" }""", "not a 1.x runtime spec")]
    [InlineData("""{ "root": { "path": "" } }""", "$.root.path: required")]
    [InlineData("""{ "process": { "args": [] } }""", "$.process.args")]
    [InlineData("""{ "process": { "cwd": "relative" } }""", "$.process.cwd")]
    [InlineData("""{ "process": { "env": ["NOVALUE"] } }""", "$.process.env[0]")]
    [InlineData("""{ "process": { "capabilities": { "bounding": ["CAP_FLY"] } } }""", "'CAP_FLY' is not a capability")]
    [InlineData("""{ "process": { "rlimits": [ { "type": "RLIMIT_NOFILE", "soft": 10, "hard": 5 } ] } }""", "soft 10 is above hard 5")]
    [InlineData("""{ "process": { "rlimits": [ { "type": "RLIMIT_NOFILE", "soft": 1, "hard": 1 }, { "type": "RLIMIT_CORE", "soft": 1, "hard": 1 }, { "type": "RLIMIT_NOFILE", "soft": 1, "hard": 1 } ] } }""", "$.process.rlimits[2].type: RLIMIT_NOFILE is set twice")]
    [InlineData("""{ "process": { "rlimits": [ { "type": "RLIMIT_FLY", "soft": 1, "hard": 1 } ] } }""", "$.process.rlimits[0].type: 'RLIMIT_FLY' is not an RLIMIT_ name")]
    [InlineData("""{ "process": { "rlimits": [ { "type": "RLIMIT_STACK", "soft": 1, "hard": 1 }, { "type": "RLIMIT_STACK", "soft": 1, "hard": 1 } ] } }""", "$.process.rlimits[1].type: RLIMIT_STACK is set twice")]
    [InlineData("""{ "process": { "apparmorProfile": "x" } }""", "$.process.apparmorProfile: not supported")]
    [InlineData("""{ "process": { "oomScoreAdj": 5000 } }""", "$.process.oomScoreAdj")]
    [InlineData("""{ "mounts": [ { "destination": "tmp", "type": "tmpfs", "source": "tmpfs" } ] }""", "$.mounts[0].destination")]
    [InlineData("""{ "mounts": [ { "destination": "/a/../../etc", "type": "tmpfs" } ] }""", "must not contain '..'")]
    [InlineData("""{ "mounts": [ { "destination": "/x", "type": "nfs" } ] }""", "'nfs' is not a supported file system type")]
    [InlineData("""{ "mounts": [ { "destination": "/x", "options": ["rbind"] } ] }""", "a bind mount needs a source")]
    [InlineData("""{ "linux": { "namespaces": [ { "type": "pid" }, { "type": "pid" } ] } }""", "pid is listed twice")]
    [InlineData("""{ "linux": { "namespaces": [ { "type": "galaxy" } ] } }""", "'galaxy' is not a namespace type")]
    [InlineData("""{ "linux": { "namespaces": [ { "type": "pid" }, { "type": "user" } ] } }""", "user namespaces are not supported")]
    [InlineData("""{ "linux": { "namespaces": [ { "type": "pid" } ] } }""", "$.hostname: setting a hostname needs a private uts namespace")]
    [InlineData("""{ "linux": { "sysctl": { "kernel.panic": "1" } } }""", "not a namespaced sysctl: it would change the host")]
    [InlineData("""{ "linux": { "namespaces": [ { "type": "pid" }, { "type": "uts" }, { "type": "mount" } ], "sysctl": { "net.ipv4.ip_forward": "1" } } }""", "a net sysctl needs a private network namespace")]
    [InlineData("""{ "linux": { "cgroupsPath": "system.slice:hostos:web" } }""", "systemd slice path")]
    [InlineData("""{ "linux": { "cgroupsPath": "/" } }""", "names the root cgroup")]
    [InlineData("""{ "linux": { "cgroupsPath": "" } }""", "names the root cgroup")]
    [InlineData("""{ "linux": { "devices": [ { "type": "c", "path": "/etc/passwd", "major": 1, "minor": 3 } ] } }""", "must be a path under /dev")]
    [InlineData("""{ "linux": { "resources": { "memory": { "limit": 1000, "swap": 500 } } } }""", "must not be below memory.limit")]
    [InlineData("""{ "linux": { "resources": { "memory": { "kernel": 1000 } } } }""", "memory.kernel (cgroup v1 only): not supported")]
    [InlineData("""{ "linux": { "resources": { "cpu": { "shares": 1 } } } }""", "outside 2..262144")]
    [InlineData("""{ "linux": { "resources": { "cpu": { "quota": 500, "period": 100000 } } } }""", "1000 µs minimum")]
    [InlineData("""{ "linux": { "resources": { "cpu": { "cpus": "0-x" } } } }""", "not a CPU list")]
    [InlineData("""{ "linux": { "resources": { "unified": { "cgroup.procs": "1" } } } }""", "unified.cgroup.procs")]
    [InlineData("""{ "linux": { "resources": { "blockIO": { "weight": 5 } } } }""", "outside 10..1000")]
    [InlineData("""{ "linux": { "seccomp": { "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"] } } }""", "cannot run on this x86-64 machine")]
    [InlineData("""{ "linux": { "seccomp": { "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [ { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [ { "index": 9, "value": 1, "op": "SCMP_CMP_EQ" } ] } ] } } }""", "index: 9")]
    [InlineData("""{ "linux": { "intelRdt": {} } }""", "$.linux.intelRdt: not supported")]
    public void BadSpecsAreRejectedAtTheirPath(string patch, string expected)
    {
        SpecException e = Bad(patch);
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("config.json:", e.Message);
    }

    [Fact]
    public void AllProblemsAreReportedAtOnce()
    {
        SpecException e = Bad("""{ "process": { "cwd": "x", "env": ["Y"] }, "linux": { "sysctl": { "vm.swappiness": "1" } } }""");
        Assert.Equal(3, e.Problems.Count);
    }

    [Fact]
    public void NamespacedSysctlsInOwnNamespacesAreAllowed()
    {
        var ns = new SpecValidator.NamespacePlan(new Dictionary<string, string?> { ["network"] = null, ["ipc"] = null });
        Assert.Null(SpecValidator.SysctlProblem("net.ipv4.ip_unprivileged_port_start", ns));
        Assert.Null(SpecValidator.SysctlProblem("kernel.shmmax", ns));
        Assert.Null(SpecValidator.SysctlProblem("fs.mqueue.msg_max", ns));
        var joined = new SpecValidator.NamespacePlan(new Dictionary<string, string?> { ["network"] = "/proc/1/ns/net" });
        Assert.NotNull(SpecValidator.SysctlProblem("net.ipv4.ip_forward", joined)); // the host's netns
    }

    [Fact]
    public void BundleRootIsResolvedAgainstTheBundle()
    {
        string bundle = Directory.CreateTempSubdirectory("bundle-").FullName;
        Directory.CreateDirectory(Path.Combine(bundle, "rootfs"));
        File.WriteAllText(Path.Combine(bundle, "config.json"), Fixture("runc-spec.json"));
        var (_, root, _) = SpecLoader.LoadBundle(bundle);
        Assert.Equal(Path.Combine(bundle, "rootfs"), root);
        Directory.Delete(Path.Combine(bundle, "rootfs"));
        Assert.Throws<DirectoryNotFoundException>(() => SpecLoader.LoadBundle(bundle));
        Directory.Delete(bundle, true);
    }
}

public class SpecReaderTests
{
    /// <summary>The hand-written reader and System.Text.Json's serializer agree on every fixture.</summary>
    [Theory]
    [InlineData("runc-spec.json")]
    [InlineData("crun-spec.json")]
    [InlineData("runc-rootless.json")]
    [InlineData("allowlist-seccomp-spec.json")]
    public void ReadsWhatTheSerializerReads(string fixture)
    {
        byte[] json = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", fixture));
        RuntimeSpec ours = SpecReader.Read(json);
        RuntimeSpec theirs = System.Text.Json.JsonSerializer.Deserialize(json, SpecJson.Default.RuntimeSpec)!;
        Assert.Equal(SpecLoader.ToJson(theirs), SpecLoader.ToJson(ours));
    }

    [Fact]
    public void EveryFieldRoundTrips()
    {
        // A spec with every optional section filled, written by the serializer, read by us.
        const string json = """
            { "ociVersion": "1.2.0", "root": { "path": "r", "readonly": true }, "hostname": "h", "domainname": "d",
              "annotations": { "a": "b" },
              "mounts": [ { "destination": "/x", "source": "s", "type": "bind", "options": ["rbind"], "uidMappings": [ { "containerID": 0, "hostID": 1000, "size": 1 } ] } ],
              "process": { "terminal": true, "consoleSize": { "height": 24, "width": 80 }, "cwd": "/", "env": ["A=1"], "args": ["sh"],
                "rlimits": [ { "type": "RLIMIT_NOFILE", "soft": 1, "hard": 18446744073709551615 } ], "apparmorProfile": "p",
                "capabilities": { "bounding": ["CAP_KILL"], "effective": [], "inheritable": [], "permitted": [], "ambient": [] },
                "noNewPrivileges": true, "oomScoreAdj": -5, "selinuxLabel": "l",
                "user": { "uid": 1, "gid": 2, "umask": 18, "additionalGids": [3, 4], "username": "u" },
                "ioPriority": { "class": "IOPRIO_CLASS_RT", "priority": 1 }, "scheduler": { "policy": "SCHED_OTHER" }, "execCPUAffinity": { "initial": "0" } },
              "hooks": { "prestart": [ { "path": "/p", "args": ["p"], "env": ["E=1"], "timeout": 5 } ], "createRuntime": [], "createContainer": [], "startContainer": [], "poststart": [], "poststop": [] },
              "linux": { "namespaces": [ { "type": "pid", "path": "/proc/1/ns/pid" } ], "uidMappings": [], "gidMappings": [], "timeOffsets": { "monotonic": { "secs": 1 } },
                "devices": [ { "type": "c", "path": "/dev/x", "major": 1, "minor": 2, "fileMode": 438, "uid": 0, "gid": 0 } ], "cgroupsPath": "/c",
                "resources": { "devices": [ { "allow": false, "type": "a", "major": -1, "minor": null, "access": "rwm" } ],
                  "memory": { "limit": 1, "reservation": 2, "swap": 3, "kernel": 4, "kernelTCP": 5, "swappiness": 6, "disableOOMKiller": true, "useHierarchy": false, "checkBeforeUpdate": true },
                  "cpu": { "shares": 1, "quota": -1, "burst": 2, "period": 3, "realtimeRuntime": 4, "realtimePeriod": 5, "cpus": "0", "mems": "0", "idle": 1 },
                  "pids": { "limit": 7 }, "blockIO": { "weight": 10, "leafWeight": 11, "weightDevice": [ { "major": 8, "minor": 0, "weight": 12, "leafWeight": 13 } ],
                    "throttleReadBpsDevice": [ { "major": 8, "minor": 0, "rate": 1 } ], "throttleWriteBpsDevice": [], "throttleReadIOPSDevice": [], "throttleWriteIOPSDevice": [] },
                  "hugepageLimits": [ { "pageSize": "2MB", "limit": 1 } ], "network": { "classID": 1 }, "rdma": {}, "unified": { "memory.high": "1" } },
                "intelRdt": {}, "sysctl": { "kernel.shmmax": "1" },
                "seccomp": { "defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"], "flags": [], "listenerPath": "/l", "listenerMetadata": "m",
                  "syscalls": [ { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2, "args": [ { "index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ" } ] } ] },
                "rootfsPropagation": "rslave", "maskedPaths": ["/m"], "readonlyPaths": ["/r"], "mountLabel": "ml", "personality": { "domain": "LINUX" }, "memoryPolicy": {}, "netDevices": {} },
              "windows": {}, "solaris": {}, "vm": {}, "zos": {}, "freebsd": {} }
            """;
        byte[] utf8 = System.Text.Encoding.UTF8.GetBytes(json);
        RuntimeSpec theirs = System.Text.Json.JsonSerializer.Deserialize(utf8, SpecJson.Default.RuntimeSpec)!;
        Assert.Equal(SpecLoader.ToJson(theirs), SpecLoader.ToJson(SpecReader.Read(utf8)));
    }

    [Theory]
    [InlineData("""{ "linux": { "frobnicate": 1 } }""", "$.linux.frobnicate: unknown field")]
    [InlineData("""{ "process": { "user": { "uid": -1 } } }""", "$.process.user.uid: expected a 32-bit non-negative integer, found a number")]
    [InlineData("""{ "process": { "args": "sh" } }""", "$.process.args: expected an array, found a string")]
    [InlineData("""{ "process": { "args": ["sh", null] } }""", "$.process.args[1]: null in a list of strings")]
    [InlineData("""{ "root": { "readonly": "yes" } }""", "$.root.readonly: expected true or false")]
    [InlineData("""{ "annotations": { "a": 1 } }""", "$.annotations.a: expected a string")]
    [InlineData("""{ "ociVersion": "1.0.2" } {}""", "is invalid after a single JSON value")]
    [InlineData("""{ "ociVersion": """, "")]
    public void WrongShapesNameTheirPath(string json, string expected)
    {
        var e = Assert.ThrowsAny<System.Text.Json.JsonException>(() => SpecReader.Read(System.Text.Encoding.UTF8.GetBytes(json)));
        Assert.Contains(expected, e.Message);
    }
}

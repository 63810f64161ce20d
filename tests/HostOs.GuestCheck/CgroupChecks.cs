using System.Diagnostics;
using System.Globalization;
using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;
using HostOs.Platform.Interop;

namespace HostOs.GuestCheck;

/// <summary>
/// hostos-guestcheck cgroups: limits written by HostOs.Containers' cgroup code are
/// enforced by the kernel's cgroup v2. Each workload is a shell that moves itself into
/// its cgroup and then execs, so nothing runs outside the limit. One PASS/FAIL line each.
/// </summary>
internal static class CgroupChecks
{
    private const string Parent = "hostos-guestcheck";

    public static int Run()
    {
        int failures = 0;
        failures += Check("memory", Memory);
        failures += Check("pids", Pids);
        failures += Check("cpu", CpuQuota);
        Cgroup.Open(Cgroup.DefaultRoot, Parent).Delete();
        Console.WriteLine(failures == 0 ? "PASS cgroups" : $"FAIL cgroups: {failures} check(s) failed");
        return failures == 0 ? 0 : 1;
    }

    private static int Check(string name, Func<string> check)
    {
        try
        {
            Console.WriteLine($"PASS cgroup {name}: {check()}");
            return 0;
        }
        catch (Exception e)
        {
            Console.WriteLine($"FAIL cgroup {name}: {e.Message}");
            return 1;
        }
    }

    private static Cgroup Make(string name, Resources resources)
    {
        var files = CgroupResources.ToFiles(resources);
        var cg = Cgroup.Create(Cgroup.DefaultRoot, $"{Parent}/{name}", CgroupResources.ControllersFor(files));
        cg.Apply(files);
        return cg;
    }

    private static ExitStatus RunIn(Cgroup cg, string script) =>
        Program.RunStatus("/usr/bin/sh", "-c", $"echo $$ > {cg.Path}/cgroup.procs && {script}");

    /// <summary>A 64 MiB allocation in a 32 MiB cgroup without swap is OOM-killed; the rest lives on.</summary>
    private static string Memory()
    {
        var cg = Make("memory", new Resources { Memory = new Memory { Limit = 32 << 20, Swap = 32 << 20 } });
        string max = File.ReadAllText(Path.Combine(cg.Path, "memory.max")).Trim();
        if (max != (32 << 20).ToString(CultureInfo.InvariantCulture)) throw new InvalidOperationException($"memory.max is {max}");
        ExitStatus status = RunIn(cg, "exec dd if=/dev/zero of=/dev/null bs=64M count=1");
        long kills = cg.Events("memory").GetValueOrDefault("oom_kill");
        cg.Destroy(TimeSpan.FromSeconds(10));
        if (!(status.Signaled && status.Signal == Sys.SIGKILL)) throw new InvalidOperationException($"the hog ended with {status}, not SIGKILL");
        if (kills < 1) throw new InvalidOperationException("memory.events shows no oom_kill");
        return $"64 MiB hog in memory.max={max}: {status}, oom_kill={kills}";
    }

    /// <summary>A fork bomb of 50 in pids.max=10 is stopped at the limit.</summary>
    private static string Pids()
    {
        var cg = Make("pids", new Resources { Pids = new Pids { Limit = 10 } });
        RunIn(cg, "i=0; while [ $i -lt 50 ]; do sleep 3 & i=$((i+1)); done 2>/dev/null; wait");
        long refused = cg.Events("pids").GetValueOrDefault("max");
        cg.Destroy(TimeSpan.FromSeconds(10));
        if (refused < 1) throw new InvalidOperationException("pids.events shows no refused fork");
        return $"50 forks in pids.max=10: {refused} refused by the kernel";
    }

    /// <summary>A busy loop under cpu.max "20000 100000" gets about 20% of one CPU.</summary>
    private static string CpuQuota()
    {
        var cg = Make("cpu", new Resources { Cpu = new Cpu { Quota = 20_000, Period = 100_000 } });
        var clock = Stopwatch.StartNew();
        RunIn(cg, "timeout 3 sh -c 'while :; do :; done'");
        double wallUs = clock.Elapsed.TotalMicroseconds;
        var stat = File.ReadAllLines(Path.Combine(cg.Path, "cpu.stat"))
            .Select(l => l.Split(' ')).ToDictionary(f => f[0], f => long.Parse(f[1], CultureInfo.InvariantCulture));
        cg.Destroy(TimeSpan.FromSeconds(10));
        double share = stat["usage_usec"] / wallUs;
        if (stat["nr_throttled"] < 1) throw new InvalidOperationException($"never throttled (cpu.stat usage {stat["usage_usec"]} µs)");
        if (share > 0.30) throw new InvalidOperationException($"used {share:P0} of a CPU under a 20% quota");
        return $"busy loop under cpu.max 20000/100000 used {share:P0} of a CPU over {wallUs / 1e6:F1} s, throttled {stat["nr_throttled"]} times";
    }
}

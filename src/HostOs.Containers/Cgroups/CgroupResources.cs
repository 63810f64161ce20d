using System.Globalization;
using HostOs.Containers.Spec;

namespace HostOs.Containers.Cgroups;

/// <summary>
/// linux.resources as cgroup v2 control files (Documentation/admin-guide/cgroup-v2.rst).
/// The spec speaks cgroup v1 units in places; the conversions are those runc and crun use,
/// so a bundle gets the same limits under HostOS as under them:
/// <list type="bullet">
/// <item>cpu.shares (2..262144) → cpu.weight = 1 + (shares - 2) * 9999 / 262142</item>
/// <item>cpu.quota/period → cpu.max "QUOTA PERIOD" ("max" for no quota; period defaults to 100000)</item>
/// <item>memory.swap is memory+swap → memory.swap.max = swap - limit</item>
/// <item>blockIO.weight (10..1000) → io.weight = 1 + (weight - 10) * 9999 / 990</item>
/// </list>
/// A pure function: the files are written by <see cref="Cgroup.Apply"/>.
/// </summary>
public static class CgroupResources
{
    public static List<(string File, string Value)> ToFiles(Resources? r)
    {
        var files = new List<(string, string)>();
        if (r is null) return files;
        static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
        static string U(ulong v) => v.ToString(CultureInfo.InvariantCulture);

        if (r.Memory is { } m)
        {
            if (m.Limit is long limit) files.Add(("memory.max", limit == -1 ? "max" : N(limit)));
            if (m.Reservation is long low) files.Add(("memory.low", low == -1 ? "max" : N(low)));
            if (m.Swap is long swap)
            {
                if (swap == -1) files.Add(("memory.swap.max", "max"));
                else if (m.Limit is long l && l > 0) files.Add(("memory.swap.max", N(Math.Max(0, swap - l))));
            }
        }
        if (r.Cpu is { } c)
        {
            if (c.Shares is ulong shares) files.Add(("cpu.weight", U(SharesToWeight(shares))));
            if (c.Quota is not null || c.Period is not null)
            {
                string quota = c.Quota is long q and > 0 ? N(q) : "max";
                files.Add(("cpu.max", $"{quota} {U(c.Period ?? 100_000)}"));
            }
            if (c.Burst is ulong burst) files.Add(("cpu.max.burst", U(burst)));
            if (c.Idle is long idle) files.Add(("cpu.idle", N(idle)));
            if (c.Cpus is { Length: > 0 } cpus) files.Add(("cpuset.cpus", cpus));
            if (c.Mems is { Length: > 0 } mems) files.Add(("cpuset.mems", mems));
        }
        if (r.Pids is { Limit: long pids }) files.Add(("pids.max", pids > 0 ? N(pids) : "max"));
        if (r.BlockIO is { } b)
        {
            if (b.Weight is ushort w) files.Add(("io.weight", $"default {BlkioToIoWeight(w)}"));
            foreach (WeightDevice d in b.WeightDevice ?? [])
            {
                if (d.Weight is ushort dw) files.Add(("io.weight", $"{d.Major}:{d.Minor} {BlkioToIoWeight(dw)}"));
            }
            foreach (var (list, key) in new[] { (b.ThrottleReadBpsDevice, "rbps"), (b.ThrottleWriteBpsDevice, "wbps"), (b.ThrottleReadIopsDevice, "riops"), (b.ThrottleWriteIopsDevice, "wiops") })
            {
                foreach (ThrottleDevice d in list ?? []) files.Add(("io.max", $"{d.Major}:{d.Minor} {key}={U(d.Rate)}"));
            }
        }
        foreach (HugepageLimit h in r.HugepageLimits ?? []) files.Add(($"hugetlb.{h.PageSize}.max", U(h.Limit)));
        foreach (var (key, value) in (r.Unified ?? []).OrderBy(kv => kv.Key, StringComparer.Ordinal)) files.Add((key, value));
        return files;
    }

    public static ulong SharesToWeight(ulong shares) => shares == 0 ? 100 : 1 + (shares - 2) * 9999 / 262142;

    public static ulong BlkioToIoWeight(ushort weight) => 1 + ((ulong)weight - 10) * 9999 / 990;

    /// <summary>The controllers a set of files needs enabled in the parent's subtree_control.</summary>
    public static IEnumerable<string> ControllersFor(IEnumerable<(string File, string Value)> files) =>
        files.Select(f => f.File[..f.File.IndexOf('.')]).Distinct(StringComparer.Ordinal)
             .Where(c => c is "memory" or "cpu" or "cpuset" or "pids" or "io" or "hugetlb");
}

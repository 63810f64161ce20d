using HostOs.Containers.Spec;

namespace HostOs.Containers.Cgroups;

/// <summary>
/// linux.resources.devices on cgroup v2: there is no devices.allow file, so the rules become
/// an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup
/// (the kernel asks it about every open and mknod of a device node, with the device type,
/// major, minor and access; it answers 1 to allow). The rules keep their cgroup v1 meaning:
/// a leading implicit "deny all", then each rule in order, the last match winning; runc's
/// default devices are always allowed (what its AllowedDevices list holds), as are the
/// nodes listed in linux.devices. A rule matches when the request's access is within the
/// rule's (runc's devicefilter rule). docs/containers.md, "Devices".
/// </summary>
public static class DeviceFilter
{
    // struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
    public const int TypeBlock = 1, TypeChar = 2;
    public const int AccessMknod = 1, AccessRead = 2, AccessWrite = 4;

    /// <summary>What every container may use, as runc allows it: mknod of anything, the usual nodes, ptys.</summary>
    public static readonly IReadOnlyList<DeviceRule> DefaultAllowed =
    [
        new() { Allow = true, Type = "c", Access = "m" },
        new() { Allow = true, Type = "b", Access = "m" },
        Char(1, 3), Char(1, 5), Char(1, 7), Char(1, 8), Char(1, 9), // null zero full random urandom
        Char(5, 0), Char(5, 1), Char(5, 2),                         // tty console ptmx
        new() { Allow = true, Type = "c", Major = 136, Access = "rwm" }, // /dev/pts/*
    ];

    private static DeviceRule Char(long major, long minor) => new() { Allow = true, Type = "c", Major = major, Minor = minor, Access = "rwm" };

    /// <summary>The rules a container's cgroup gets: the spec's, then the defaults, then its own nodes.</summary>
    public static List<DeviceRule> RulesFor(LinuxSpec? linux)
    {
        var rules = new List<DeviceRule>(linux?.Resources?.Devices ?? []);
        rules.AddRange(DefaultAllowed);
        foreach (Device d in linux?.Devices ?? [])
        {
            if (d.Type is "c" or "u" or "b") rules.Add(new DeviceRule { Allow = true, Type = d.Type == "b" ? "b" : "c", Major = d.Major, Minor = d.Minor, Access = "rwm" });
        }
        return rules;
    }

    private const byte LdxW = 0x61, And32K = 0x54, Rsh32K = 0x74, Mov32X = 0xbc, JneK = 0x55, JeqK = 0x15, Mov64K = 0xb7, Exit = 0x95;

    /// <summary>
    /// The program, as struct bpf_insn (8 bytes each). r2 = type, r3 = access, r4 = major,
    /// r5 = minor; then one block per rule, last rule first, each ending in "return allow"
    /// and skipped by the first test that fails; then "return 0" unless an unconditional rule
    /// has already answered everything.
    /// </summary>
    public static byte[] Compile(IReadOnlyList<DeviceRule> rules)
    {
        var code = new List<Insn>
        {
            new(LdxW, 2, 1, 0, 0), new(And32K, 2, 0, 0, 0xFFFF),
            new(LdxW, 3, 1, 0, 0), new(Rsh32K, 3, 0, 0, 16),
            new(LdxW, 4, 1, 4, 0),
            new(LdxW, 5, 1, 8, 0),
        };
        for (int i = rules.Count - 1; i >= 0; i--)
        {
            DeviceRule r = rules[i];
            var block = new List<(Insn Insn, bool JumpsToEnd)>();
            if (r.Type is "c" or "b") block.Add((new(JneK, 2, 0, 0, r.Type == "c" ? TypeChar : TypeBlock), true));
            int access = Access(r.Access);
            if (access != (AccessMknod | AccessRead | AccessWrite))
            {
                block.Add((new(Mov32X, 1, 3, 0, 0), false));
                if (r.Allow)
                {
                    // An allow rule grants a request only when all of it is within the rule.
                    block.Add((new(And32K, 1, 0, 0, ~access & 0x7), false));
                    block.Add((new(JneK, 1, 0, 0, 0), true));
                }
                else
                {
                    // A deny rule refuses a request that asks for any of its access
                    // (open O_RDWR asks r and w at once: "deny w" must refuse it).
                    block.Add((new(And32K, 1, 0, 0, access), false));
                    block.Add((new(JeqK, 1, 0, 0, 0), true));
                }
            }
            if (r.Major is long major and >= 0) block.Add((new(JneK, 4, 0, 0, (int)major), true));
            if (r.Minor is long minor and >= 0) block.Add((new(JneK, 5, 0, 0, (int)minor), true));
            block.Add((new(Mov64K, 0, 0, 0, r.Allow ? 1 : 0), false));
            block.Add((new(Exit, 0, 0, 0, 0), false));
            for (int k = 0; k < block.Count; k++)
            {
                var (insn, jumps) = block[k];
                // A jump's offset counts from the next instruction: to just past this block.
                code.Add(jumps ? insn with { Off = (short)(block.Count - k - 1) } : insn);
            }
            // A rule that matches everything decides every request: what would follow is
            // unreachable, which the verifier refuses.
            if (block.Count == 2) break;
            if (i == 0)
            {
                code.Add(new(Mov64K, 0, 0, 0, 0));
                code.Add(new(Exit, 0, 0, 0, 0));
            }
        }
        if (rules.Count == 0)
        {
            code.Add(new(Mov64K, 0, 0, 0, 0));
            code.Add(new(Exit, 0, 0, 0, 0));
        }

        byte[] bytes = new byte[code.Count * 8];
        for (int i = 0; i < code.Count; i++) code[i].WriteTo(bytes.AsSpan(i * 8));
        return bytes;
    }

    /// <summary>"rwm" → the kernel's access bits; an absent access means all three (runtime-spec).</summary>
    public static int Access(string? access) => access is null
        ? AccessMknod | AccessRead | AccessWrite
        : access.Aggregate(0, (bits, c) => bits | c switch { 'r' => AccessRead, 'w' => AccessWrite, 'm' => AccessMknod, _ => 0 });

    internal readonly record struct Insn(byte Code, byte Dst, byte Src, short Off, int Imm)
    {
        public void WriteTo(Span<byte> b)
        {
            b[0] = Code;
            b[1] = (byte)((Src << 4) | Dst);
            BitConverter.TryWriteBytes(b[2..], Off);
            BitConverter.TryWriteBytes(b[4..], Imm);
        }
    }
}

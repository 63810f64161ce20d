using HostOs.Containers.Spec;

namespace HostOs.Containers.Seccomp;

/// <summary>
/// linux.seccomp (the OCI profile, libseccomp's vocabulary) compiled to a classic BPF
/// seccomp filter, without libseccomp. The program:
///   - checks the architecture: x86-64 uses the x86-64 numbers; i386 (int 0x80) the i386
///     numbers when the profile lists SCMP_ARCH_X86, otherwise the process is killed; any
///     other architecture is killed; x32 calls (x86-64 with bit 30) get ENOSYS, whatever the
///     profile says: never more than the profile allows;
///   - tries each rule in order, each syscall name in it, first match deciding (the
///     argument comparisons of one rule must all hold, as in libseccomp; 64-bit arguments
///     are compared as two 32-bit halves);
///   - otherwise returns the default action.
/// Names this kernel's table does not know are skipped, as runc does (profiles carry
/// names of newer kernels and other architectures). docs/containers.md, "Seccomp".
/// </summary>
public static class SeccompCompiler
{
    public const uint AuditArchX86_64 = 0xC000003E, AuditArchI386 = 0x40000003;
    private const uint X32Bit = 0x40000000;

    public const uint RetKillProcess = 0x80000000, RetKillThread = 0, RetTrap = 0x00030000, RetErrno = 0x00050000,
        RetTrace = 0x7ff00000, RetLog = 0x7ffc0000, RetAllow = 0x7fff0000;
    private const int EPERM = 1, ENOSYS = 38;

    // Classic BPF opcodes (linux/bpf_common.h).
    private const ushort LdWAbs = 0x20, JeqK = 0x15, JgtK = 0x25, JgeK = 0x35, AndK = 0x54, RetK = 0x06;
    // struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
    private const uint OffNr = 0, OffArch = 4, OffArgs = 16;

    /// <summary>A struct sock_filter: code, jt, jf, k.</summary>
    public readonly record struct Instruction(ushort Code, byte Jt, byte Jf, uint K);

    /// <summary>The action's SECCOMP_RET_ value.</summary>
    public static uint Action(string action, uint? errnoRet, uint? defaultErrno = null) => action switch
    {
        "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" => RetKillThread,
        "SCMP_ACT_KILL_PROCESS" => RetKillProcess,
        "SCMP_ACT_TRAP" => RetTrap,
        "SCMP_ACT_ERRNO" => RetErrno | ((errnoRet ?? defaultErrno ?? EPERM) & 0xFFFF),
        "SCMP_ACT_TRACE" => RetTrace | ((errnoRet ?? defaultErrno ?? EPERM) & 0xFFFF),
        "SCMP_ACT_LOG" => RetLog,
        "SCMP_ACT_ALLOW" => RetAllow,
        _ => throw new InvalidDataException($"seccomp action '{action}' is not supported"),
    };

    public static List<Instruction> Compile(Spec.Seccomp profile)
    {
        uint defaultAction = Action(profile.DefaultAction!, profile.DefaultErrnoRet);
        bool i386 = profile.Architectures?.Contains("SCMP_ARCH_X86") == true;

        var native = Rules(profile, SyscallTable.X86_64, defaultAction, wide: true);
        // i386 arguments are 32 bits (the kernel zeroes the high half): like libseccomp on a
        // 32-bit architecture, compare the low 32 bits only.
        var compat = i386 ? Rules(profile, SyscallTable.I386, defaultAction, wide: false) : null;

        var code = new List<Instruction>();
        // Architecture dispatch, laid out as: [arch checks] [x86-64 section] [i386 section].
        code.Add(new(LdWAbs, 0, 0, OffArch));
        if (compat is null)
        {
            code.Add(new(JeqK, 1, 0, AuditArchX86_64));   // x86-64: skip the kill
            code.Add(new(RetK, 0, 0, RetKillProcess));
        }
        else
        {
            code.Add(new(JeqK, 3, 0, AuditArchX86_64));   // x86-64: past the jump below, to its section
            code.Add(new(JeqK, 1, 0, AuditArchI386));     // i386: to the jump below
            code.Add(new(RetK, 0, 0, RetKillProcess));
        }
        // (with i386, this slot is "ja i386 section": emitted once the section's size is known)
        int jumpSlot = code.Count;
        if (compat is not null) code.Add(default);

        // x86-64: x32 calls first, then the rules.
        code.Add(new(LdWAbs, 0, 0, OffNr));
        code.Add(new(JgeK, 0, 1, X32Bit));
        code.Add(new(RetK, 0, 0, RetErrno | ENOSYS));
        code.AddRange(native);
        if (compat is not null)
        {
            int distance = code.Count - (jumpSlot + 1);
            code[jumpSlot] = new(0x05 /* BPF_JMP|BPF_JA */, 0, 0, (uint)distance);
            code.Add(new(LdWAbs, 0, 0, OffNr));
            code.AddRange(compat);
        }
        if (code.Count > 4096) throw new InvalidDataException($"seccomp profile compiles to {code.Count} BPF instructions; the kernel takes 4096");
        return code;
    }

    /// <summary>The rules for one architecture's numbers; the accumulator holds nr on entry to each block.</summary>
    private static List<Instruction> Rules(Spec.Seccomp profile, Dictionary<string, int> table, uint defaultAction, bool wide)
    {
        var code = new List<Instruction>();
        foreach (SeccompSyscall rule in profile.Syscalls ?? [])
        {
            uint action = Action(rule.Action!, rule.ErrnoRet, profile.DefaultErrnoRet);
            foreach (string name in rule.Names ?? [])
            {
                if (!table.TryGetValue(name, out int nr)) continue;
                if (rule.Args is not { Count: > 0 })
                {
                    code.Add(new(JeqK, 0, 1, (uint)nr));
                    code.Add(new(RetK, 0, 0, action));
                    continue;
                }
                code.AddRange(ArgumentBlock((uint)nr, rule.Args, action, wide));
            }
        }
        code.Add(new(RetK, 0, 0, defaultAction));
        return code;
    }

    /// <summary>
    /// if nr matches and every comparison holds, return the action; in every other case,
    /// leave with nr reloaded into the accumulator for the next block.
    /// </summary>
    private static List<Instruction> ArgumentBlock(uint nr, List<SeccompArg> args, uint action, bool wide)
    {
        // Built with symbolic targets: "next" (the reload at the block's end) and "ok" for
        // each comparison (the start of the next one); resolved once the block is laid out.
        var block = new List<(Instruction Insn, int TrueTarget, int FalseTarget)>();
        const int Next = -1, Fall = -2;
        block.Add((new(JeqK, 0, 0, nr), Fall, Next));
        foreach (SeccompArg a in args)
        {
            uint lo = OffArgs + 8 * a.Index, hi = lo + 4;
            ulong v = wide ? a.Value : (uint)a.Value, v2 = wide ? a.ValueTwo : (uint)a.ValueTwo;
            uint vhi = (uint)(v >> 32), vlo = (uint)v;
            // Each comparison: a small sequence whose "true" exits go to the comparison's
            // end (Fall past it = the next comparison), "false" exits to Next.
            var seq = new List<(Instruction Insn, int True, int False)>();
            const int End = -3;
            switch (a.Op)
            {
                case "SCMP_CMP_EQ":
                    seq.Add((new(LdWAbs, 0, 0, hi), 0, 0));
                    seq.Add((new(JeqK, 0, 0, vhi), Fall, Next));
                    seq.Add((new(LdWAbs, 0, 0, lo), 0, 0));
                    seq.Add((new(JeqK, 0, 0, vlo), End, Next));
                    break;
                case "SCMP_CMP_NE":
                    seq.Add((new(LdWAbs, 0, 0, hi), 0, 0));
                    seq.Add((new(JeqK, 0, 0, vhi), Fall, End));
                    seq.Add((new(LdWAbs, 0, 0, lo), 0, 0));
                    seq.Add((new(JeqK, 0, 0, vlo), Next, End));
                    break;
                case "SCMP_CMP_MASKED_EQ":
                    seq.Add((new(LdWAbs, 0, 0, hi), 0, 0));
                    seq.Add((new(AndK, 0, 0, vhi), 0, 0));
                    seq.Add((new(JeqK, 0, 0, (uint)(v2 >> 32)), Fall, Next));
                    seq.Add((new(LdWAbs, 0, 0, lo), 0, 0));
                    seq.Add((new(AndK, 0, 0, vlo), 0, 0));
                    seq.Add((new(JeqK, 0, 0, (uint)v2), End, Next));
                    break;
                case "SCMP_CMP_GT":
                case "SCMP_CMP_GE":
                case "SCMP_CMP_LT":
                case "SCMP_CMP_LE":
                {
                    // GT/GE hold when hi > vhi, or hi == vhi and lo > (>=) vlo. LT = !GE, LE = !GT.
                    bool strict = a.Op is "SCMP_CMP_GT" or "SCMP_CMP_LE";
                    bool negate = a.Op is "SCMP_CMP_LT" or "SCMP_CMP_LE";
                    int yes = negate ? Next : End, no = negate ? End : Next;
                    seq.Add((new(LdWAbs, 0, 0, hi), 0, 0));
                    seq.Add((new(JgtK, 0, 0, vhi), yes, Fall));
                    seq.Add((new(JeqK, 0, 0, vhi), Fall, no));
                    seq.Add((new(LdWAbs, 0, 0, lo), 0, 0));
                    seq.Add((new(strict ? JgtK : JgeK, 0, 0, vlo), yes, no));
                    break;
                }
                default:
                    throw new InvalidDataException($"seccomp comparison '{a.Op}' is not supported");
            }
            int start = block.Count;
            for (int k = 0; k < seq.Count; k++)
            {
                var (insn, t, f) = seq[k];
                // End → the first instruction after this sequence; encode as absolute index.
                int Resolve(int target) => target == End ? start + seq.Count : target == Fall ? start + k + 1 : target;
                block.Add((insn, Resolve(t), Resolve(f)));
            }
        }
        // The last comparison's "true" exit falls here.
        block.Add((new(RetK, 0, 0, action), 0, 0));
        int next = block.Count;
        block.Add((new(LdWAbs, 0, 0, OffNr), 0, 0));

        var result = new List<Instruction>(block.Count);
        for (int i = 0; i < block.Count; i++)
        {
            var (insn, t, f) = block[i];
            bool isJump = (insn.Code & 0x07) == 0x05 && insn.Code != 0x05;
            if (!isJump) { result.Add(insn); continue; }
            int trueAt = t == Next ? next : t == Fall ? i + 1 : t;
            int falseAt = f == Next ? next : f == Fall ? i + 1 : f;
            result.Add(insn with { Jt = Offset(i, trueAt), Jf = Offset(i, falseAt) });
        }
        return result;
    }

    private static byte Offset(int from, int to)
    {
        int d = to - from - 1;
        if (d is < 0 or > 255) throw new InvalidDataException($"seccomp rule too long to compile (jump of {d})");
        return (byte)d;
    }

    /// <summary>The program as the kernel reads it: struct sock_filter { u16 code; u8 jt, jf; u32 k; }.</summary>
    public static byte[] ToBytes(List<Instruction> program)
    {
        byte[] bytes = new byte[program.Count * 8];
        for (int i = 0; i < program.Count; i++)
        {
            Span<byte> b = bytes.AsSpan(i * 8);
            BitConverter.TryWriteBytes(b, program[i].Code);
            b[2] = program[i].Jt;
            b[3] = program[i].Jf;
            BitConverter.TryWriteBytes(b[4..], program[i].K);
        }
        return bytes;
    }

    /// <summary>The SECCOMP_FILTER_FLAG_ bits of the profile's flags; TSYNC is dropped (see docs).</summary>
    public static uint Flags(Spec.Seccomp profile)
    {
        uint flags = 0;
        foreach (string f in profile.Flags ?? [])
        {
            flags |= f switch
            {
                "SECCOMP_FILTER_FLAG_LOG" => 2u,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4u,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 32u,
                _ => 0u, // TSYNC: the filter is set on the one thread that execve's; the others end with the exec
            };
        }
        return flags;
    }
}

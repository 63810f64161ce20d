using HostOs.Containers.Seccomp;
using HostOs.Containers.Spec;

namespace HostOs.UnitTests.Containers;

/// <summary>
/// The compiled seccomp filter is run here by an interpreter of classic BPF over a
/// struct seccomp_data, so every rule's meaning is checked on the bytes the kernel gets
/// (the kernel's own answers are checked in QEMU).
/// </summary>
public class SeccompTests
{
    private const uint X86_64 = SeccompCompiler.AuditArchX86_64, I386 = SeccompCompiler.AuditArchI386;
    private const uint Allow = SeccompCompiler.RetAllow, Errno = SeccompCompiler.RetErrno;

    private static uint Run(byte[] program, int nr, uint arch = X86_64, params ulong[] args)
    {
        byte[] data = new byte[64];
        BitConverter.TryWriteBytes(data.AsSpan(0), nr);
        BitConverter.TryWriteBytes(data.AsSpan(4), arch);
        for (int i = 0; i < args.Length; i++) BitConverter.TryWriteBytes(data.AsSpan(16 + 8 * i), args[i]);
        uint a = 0;
        int pc = 0;
        for (int steps = 0; steps < 100_000; steps++)
        {
            ushort code = BitConverter.ToUInt16(program, pc * 8);
            byte jt = program[pc * 8 + 2], jf = program[pc * 8 + 3];
            uint k = BitConverter.ToUInt32(program, pc * 8 + 4);
            pc++;
            switch (code)
            {
                case 0x20: a = BitConverter.ToUInt32(data, (int)k); break;
                case 0x54: a &= k; break;
                case 0x15: pc += a == k ? jt : jf; break;
                case 0x25: pc += a > k ? jt : jf; break;
                case 0x35: pc += a >= k ? jt : jf; break;
                case 0x05: pc += (int)k; break;
                case 0x06: return k;
                default: throw new InvalidOperationException($"opcode 0x{code:x2} at {pc - 1}");
            }
            Assert.InRange(pc, 0, program.Length / 8 - 1);
        }
        throw new InvalidOperationException("no return");
    }

    private static byte[] Compile(Seccomp profile) => SeccompCompiler.ToBytes(SeccompCompiler.Compile(profile));

    private static Seccomp Profile(params SeccompSyscall[] rules) => new()
    {
        DefaultAction = "SCMP_ACT_ERRNO",
        Architectures = ["SCMP_ARCH_X86_64"],
        Syscalls = [.. rules],
    };

    [Fact]
    public void ExecPlansCompileEachProfileObjectOnce()
    {
        // PID 1's exec health probes build a plan every 2 s with the container's profile.
        var process = new HostOs.Containers.Spec.Process { Args = ["/bin/true"], Cwd = "/" };
        Seccomp profile = Profile(new SeccompSyscall { Names = ["read"], Action = "SCMP_ACT_ALLOW" });
        byte[] first = HostOs.Containers.Runtime.StagePlan.ForExec(process, profile).SeccompFilter;
        Assert.Equal(Compile(profile), first);
        Assert.Same(first, HostOs.Containers.Runtime.StagePlan.ForExec(process, profile).SeccompFilter);
        // Another profile object is compiled for itself, even when it reads the same.
        Seccomp other = Profile(new SeccompSyscall { Names = ["write"], Action = "SCMP_ACT_ALLOW" });
        byte[] second = HostOs.Containers.Runtime.StagePlan.ForExec(process, other).SeccompFilter;
        Assert.Equal(Compile(other), second);
        Assert.NotEqual(first, second);
    }

    [Fact]
    public void AllowListWithDefaultErrno()
    {
        byte[] p = Compile(Profile(new SeccompSyscall { Names = ["read", "write", "no_such_syscall_on_this_kernel"], Action = "SCMP_ACT_ALLOW" }));
        Assert.Equal(Allow, Run(p, 0));
        Assert.Equal(Allow, Run(p, 1));
        Assert.Equal(Errno | 1, Run(p, 59)); // execve: EPERM, the default errno
    }

    [Fact]
    public void OtherArchitecturesAndX32()
    {
        byte[] p = Compile(Profile(new SeccompSyscall { Names = ["read"], Action = "SCMP_ACT_ALLOW" }));
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(p, 3, I386));        // i386 not listed: killed
        Assert.Equal(SeccompCompiler.RetKillProcess, Run(p, 0, 0xC00000B7)); // aarch64
        Assert.Equal(Errno | 38, Run(p, 0x40000000 | 0));                     // x32 read: ENOSYS
        Seccomp withI386 = Profile(new SeccompSyscall { Names = ["read"], Action = "SCMP_ACT_ALLOW" });
        withI386.Architectures!.Add("SCMP_ARCH_X86");
        p = Compile(withI386);
        Assert.Equal(Allow, Run(p, 3, I386));      // i386 read is 3
        Assert.Equal(Errno | 1, Run(p, 0, I386));  // i386 0 is restart_syscall
        Assert.Equal(Allow, Run(p, 0));
    }

    [Fact]
    public void ErrnoRetAndDefaultErrnoRet()
    {
        Seccomp s = Profile(new SeccompSyscall { Names = ["mount"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 13 });
        s.DefaultAction = "SCMP_ACT_ALLOW";
        byte[] p = Compile(s);
        Assert.Equal(Errno | 13, Run(p, 165));
        Assert.Equal(Allow, Run(p, 0));
        s = Profile();
        s.DefaultErrnoRet = 38;
        Assert.Equal(Errno | 38, Run(Compile(s), 0));
    }

    [Fact]
    public void ArgumentComparisonsOn64BitValues()
    {
        const ulong Big = 0x1_0000_0005; // the high word matters
        SeccompSyscall Rule(string op, ulong v, ulong v2 = 0) =>
            new() { Names = ["personality"], Action = "SCMP_ACT_ALLOW", Args = [new SeccompArg { Index = 0, Value = v, ValueTwo = v2, Op = op }] };
        uint Check(string op, ulong v, ulong arg, ulong v2 = 0) => Run(Compile(Profile(Rule(op, v, v2))), 135, X86_64, arg);

        Assert.Equal(Allow, Check("SCMP_CMP_EQ", Big, Big));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_EQ", Big, 5));
        Assert.Equal(Allow, Check("SCMP_CMP_NE", Big, 5));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_NE", Big, Big));
        Assert.Equal(Allow, Check("SCMP_CMP_GT", Big, Big + 1));
        Assert.Equal(Allow, Check("SCMP_CMP_GT", 5, Big));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_GT", Big, Big));
        Assert.Equal(Allow, Check("SCMP_CMP_GE", Big, Big));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_GE", Big, 6));
        Assert.Equal(Allow, Check("SCMP_CMP_LT", Big, 6));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_LT", Big, Big));
        Assert.Equal(Allow, Check("SCMP_CMP_LE", Big, Big));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_LE", 5, Big));
        // Docker's clone rule: allowed when no namespace flag is set.
        Assert.Equal(Allow, Check("SCMP_CMP_MASKED_EQ", 0x7E020000, 0x11 /* SIGCHLD */, 0));
        Assert.Equal(Errno | 1, Check("SCMP_CMP_MASKED_EQ", 0x7E020000, 0x20000000 /* CLONE_NEWPID */, 0));
    }

    [Fact]
    public void I386ArgumentsAreComparedOnTheirLow32Bits()
    {
        Seccomp s = Profile(new SeccompSyscall { Names = ["personality"], Action = "SCMP_ACT_ALLOW",
            Args = [new SeccompArg { Index = 0, Value = 0x1_0000_0005, Op = "SCMP_CMP_EQ" }] });
        s.Architectures!.Add("SCMP_ARCH_X86");
        byte[] p = Compile(s);
        Assert.Equal(Allow, Run(p, 136, I386, 5));          // i386 personality: the kernel's high half is 0
        Assert.Equal(Errno | 1, Run(p, 135, X86_64, 5));    // x86-64 compares all 64 bits
        Assert.Equal(Allow, Run(p, 135, X86_64, 0x1_0000_0005));
    }

    [Fact]
    public void AllComparisonsOfARuleMustHoldAndLaterRulesStillApply()
    {
        byte[] p = Compile(Profile(
            new SeccompSyscall { Names = ["socket"], Action = "SCMP_ACT_ALLOW", Args = [
                new SeccompArg { Index = 0, Value = 1, Op = "SCMP_CMP_EQ" },   // AF_UNIX
                new SeccompArg { Index = 1, Value = 1, Op = "SCMP_CMP_EQ" } ] }, // SOCK_STREAM
            new SeccompSyscall { Names = ["write"], Action = "SCMP_ACT_ALLOW" }));
        Assert.Equal(Allow, Run(p, 41, X86_64, 1, 1));
        Assert.Equal(Errno | 1, Run(p, 41, X86_64, 1, 2));
        Assert.Equal(Errno | 1, Run(p, 41, X86_64, 2, 1));
        Assert.Equal(Allow, Run(p, 1, X86_64, 7, 7)); // after a failed block, nr is reloaded
    }

    [Fact]
    public void AnAllowListProfileOfTheWholeTableCompilesWithinTheKernelsLimit()
    {
        var spec = SpecLoader.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "allowlist-seccomp-spec.json")), "allowlist");
        var program = SeccompCompiler.Compile(spec.Linux!.Seccomp!);
        Assert.InRange(program.Count, 300, 4096);
        byte[] p = SeccompCompiler.ToBytes(program);
        Assert.Equal(Allow, Run(p, 0));                  // read
        Assert.Equal(Errno | 1, Run(p, 165));            // mount: EPERM
        Assert.Equal(Errno | 1, Run(p, 246));            // kexec_load
        Assert.Equal(Allow, Run(p, 56, X86_64, 0x11));   // clone(SIGCHLD)
        Assert.Equal(Errno | 1, Run(p, 56, X86_64, 0x20000000)); // clone(CLONE_NEWPID)
        Assert.Equal(Errno | 38, Run(p, 435));           // clone3: ENOSYS, so libc falls back to clone
        Assert.Equal(Allow, Run(p, 3, I386));            // i386 close... is 6; 3 is read
        Assert.Equal(Errno | 1, Run(p, 21, I386));       // i386 mount
    }
}

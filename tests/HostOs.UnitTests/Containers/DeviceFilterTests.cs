using HostOs.Containers.Cgroups;
using HostOs.Containers.Spec;

namespace HostOs.UnitTests.Containers;

/// <summary>
/// The device program is run here by a small interpreter of the instructions it uses, so
/// each rule's meaning is checked on the bytes the kernel will get (the kernel's verifier
/// and the real answers are checked in QEMU).
/// </summary>
public class DeviceFilterTests
{
    private const int R = DeviceFilter.AccessRead, W = DeviceFilter.AccessWrite, M = DeviceFilter.AccessMknod;
    private const int C = DeviceFilter.TypeChar, B = DeviceFilter.TypeBlock;

    /// <summary>Interprets the program for one request (ctx: access &lt;&lt; 16 | type, major, minor).</summary>
    private static int Run(byte[] program, int type, int access, int major, int minor)
    {
        uint[] ctx = [(uint)((access << 16) | type), (uint)major, (uint)minor];
        var reg = new ulong[11];
        int pc = 0;
        for (int steps = 0; steps < 100_000; steps++)
        {
            byte code = program[pc * 8];
            int dst = program[pc * 8 + 1] & 0xF, src = program[pc * 8 + 1] >> 4;
            short off = BitConverter.ToInt16(program, pc * 8 + 2);
            int imm = BitConverter.ToInt32(program, pc * 8 + 4);
            pc++;
            switch (code)
            {
                case 0x61: Assert.Equal(1, src); reg[dst] = ctx[off / 4]; break;
                case 0x54: reg[dst] = (uint)reg[dst] & (uint)imm; break;
                case 0x74: reg[dst] = (uint)reg[dst] >> imm; break;
                case 0xbc: reg[dst] = (uint)reg[src]; break;
                case 0x55: if (reg[dst] != (ulong)(long)imm) pc += off; break;
                case 0x15: if (reg[dst] == (ulong)(long)imm) pc += off; break;
                case 0xb7: reg[dst] = (ulong)(long)imm; break;
                case 0x95: return (int)reg[0];
                default: throw new InvalidOperationException($"opcode 0x{code:x2} at {pc - 1}");
            }
        }
        throw new InvalidOperationException("no exit");
    }

    private static byte[] Compile(params DeviceRule[] specRules) =>
        DeviceFilter.Compile(DeviceFilter.RulesFor(new LinuxSpec { Resources = new Resources { Devices = [.. specRules] } }));

    [Fact]
    public void RuncsDefaultSpecDeniesAllButTheUsualNodes()
    {
        byte[] p = Compile(new DeviceRule { Allow = false, Access = "rwm" });
        Assert.Equal(1, Run(p, C, R | W, 1, 3));   // /dev/null
        Assert.Equal(1, Run(p, C, R, 1, 9));       // /dev/urandom
        Assert.Equal(1, Run(p, C, R | W, 136, 4)); // a pty
        Assert.Equal(1, Run(p, C, M, 10, 229));    // mknod is allowed; opening it is not
        Assert.Equal(0, Run(p, C, R, 10, 229));    // /dev/fuse
        Assert.Equal(0, Run(p, B, R, 8, 0));       // /dev/sda
        Assert.Equal(0, Run(p, C, R | W, 1, 1));   // /dev/mem
        Assert.Equal(0, Run(p, C, W, 4, 1));       // a host tty
    }

    [Fact]
    public void TheLastMatchingRuleWinsAndAccessMustBeWithinTheRule()
    {
        byte[] p = Compile(
            new DeviceRule { Allow = false, Access = "rwm" },
            new DeviceRule { Allow = true, Type = "b", Major = 8, Access = "r" },        // read any sd disk
            new DeviceRule { Allow = false, Type = "b", Major = 8, Minor = 1, Access = "r" }); // but not sda1
        Assert.Equal(1, Run(p, B, R, 8, 0));
        Assert.Equal(0, Run(p, B, R | W, 8, 0)); // write is outside the rule
        Assert.Equal(0, Run(p, B, R, 8, 1));
        Assert.Equal(0, Run(p, C, R, 8, 0));     // the type must match
    }

    [Fact]
    public void APartialDenyRefusesARequestThatIncludesIt()
    {
        // allow everything, then deny writes to sda: O_RDWR asks r and w at once.
        byte[] p = Compile(new DeviceRule { Allow = true, Access = "rwm" }, new DeviceRule { Allow = false, Type = "b", Major = 8, Minor = 0, Access = "w" });
        Assert.Equal(0, Run(p, B, R | W, 8, 0));
        Assert.Equal(0, Run(p, B, W, 8, 0));
        Assert.Equal(1, Run(p, B, R, 8, 0));
        Assert.Equal(1, Run(p, B, R | W, 8, 1));
    }

    [Fact]
    public void NoRulesStillMeansDenyButTheDefaults()
    {
        byte[] p = DeviceFilter.Compile(DeviceFilter.RulesFor(null));
        Assert.Equal(1, Run(p, C, R | W, 5, 2)); // /dev/ptmx
        Assert.Equal(0, Run(p, B, R, 253, 0));
        // An explicit allow-all is honoured.
        Assert.Equal(1, Run(Compile(new DeviceRule { Allow = true, Access = "rwm" }), B, R | W, 253, 0));
    }

    [Fact]
    public void ListedDeviceNodesAreAllowed()
    {
        var linux = new LinuxSpec
        {
            Devices = [new Device { Path = "/dev/fuse", Type = "c", Major = 10, Minor = 229 }],
            Resources = new Resources { Devices = [new DeviceRule { Allow = false, Access = "rwm" }] },
        };
        byte[] p = DeviceFilter.Compile(DeviceFilter.RulesFor(linux));
        Assert.Equal(1, Run(p, C, R | W, 10, 229));
        Assert.Equal(0, Run(p, C, R | W, 10, 228));
    }
}

public class DeviceFilterShapeTests
{
    [Fact]
    public void NothingFollowsAnUnconditionalRule()
    {
        // The kernel's verifier refuses unreachable instructions ("unreachable insn").
        byte[] p = DeviceFilter.Compile([new DeviceRule { Allow = false, Access = "rwm" }, new DeviceRule { Allow = true, Type = "c", Major = 1, Minor = 3, Access = "rwm" }]);
        Assert.Equal(0x95, p[^8]);
        int exits = Enumerable.Range(0, p.Length / 8).Count(i => p[i * 8] == 0x95);
        Assert.Equal(2, exits); // the allow rule's and the deny-all's; no default after it
        Assert.Equal(0x95, DeviceFilter.Compile([])[^8]);
    }
}

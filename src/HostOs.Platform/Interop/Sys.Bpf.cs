using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

/// <summary>
/// bpf(2), for the one use HostOS has: loading a cgroup device program and attaching it to
/// a cgroup (cgroup v2 has no devices.allow). glibc has no wrapper: raw syscall 321.
/// </summary>
public static unsafe partial class Sys
{
    private const long SYS_bpf = 321;
    private const int BPF_PROG_LOAD = 5, BPF_PROG_ATTACH = 8;
    private const int BPF_PROG_TYPE_CGROUP_DEVICE = 15, BPF_CGROUP_DEVICE = 6, BPF_F_ALLOW_MULTI = 2;

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long BpfRaw(long number, long cmd, void* attr, long size);

    /// <summary>
    /// Loads <paramref name="instructions"/> (struct bpf_insn[]) as a cgroup device program
    /// and attaches it to the cgroup directory (with BPF_F_ALLOW_MULTI, so an ancestor's
    /// program still has its say). The attachment keeps the program alive; the cgroup's
    /// removal drops it. On a verifier refusal its log is in the message.
    /// </summary>
    public static void AttachDeviceProgram(string cgroupDirectory, byte[] instructions)
    {
        int program = LoadDeviceProgram(instructions, withLog: false, cgroupDirectory);
        using var programHandle = new SafeFileHandle(program, ownsHandle: true);
        using SafeFileHandle cgroup = OpenDirectory(cgroupDirectory);
        byte* a = stackalloc byte[128];
        new Span<byte>(a, 128).Clear();
        // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
        *(uint*)(a + 0) = (uint)cgroup.DangerousGetHandle();
        *(uint*)(a + 4) = (uint)program;
        *(uint*)(a + 8) = BPF_CGROUP_DEVICE;
        *(uint*)(a + 12) = BPF_F_ALLOW_MULTI;
        if (BpfRaw(SYS_bpf, BPF_PROG_ATTACH, a, 128) < 0)
        {
            throw new SysException("bpf(BPF_PROG_ATTACH) device program", cgroupDirectory, Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>Loads quietly; only a refused program is loaded again with the verifier's log, for the message.</summary>
    private static int LoadDeviceProgram(byte[] instructions, bool withLog, string cgroupDirectory)
    {
        byte[] license = "Apache-2.0\0"u8.ToArray();
        byte[] log = new byte[withLog ? 65536 : 1];
        fixed (byte* insns = instructions, lic = license, logBuffer = log)
        {
            // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license,
            // log_level, log_size, log_buf (the rest zero).
            byte* attr = stackalloc byte[128];
            new Span<byte>(attr, 128).Clear();
            *(uint*)(attr + 0) = BPF_PROG_TYPE_CGROUP_DEVICE;
            *(uint*)(attr + 4) = (uint)(instructions.Length / 8);
            *(ulong*)(attr + 8) = (ulong)insns;
            *(ulong*)(attr + 16) = (ulong)lic;
            if (withLog)
            {
                *(uint*)(attr + 24) = 1;
                *(uint*)(attr + 28) = (uint)log.Length;
                *(ulong*)(attr + 32) = (ulong)logBuffer;
            }
            long fd = BpfRaw(SYS_bpf, BPF_PROG_LOAD, attr, 128);
            if (fd >= 0) return (int)fd;
            int errno = Marshal.GetLastPInvokeError();
            if (!withLog && errno is Errno.EACCES or Errno.EINVAL)
            {
                return LoadDeviceProgram(instructions, withLog: true, cgroupDirectory);
            }
            int end = Array.IndexOf(log, (byte)0);
            string verifier = withLog ? System.Text.Encoding.ASCII.GetString(log, 0, end < 0 ? log.Length : end).Trim() : "";
            if (verifier.Length > 2000) verifier = "..." + verifier[^2000..];
            throw new SysException("bpf(BPF_PROG_LOAD) device program" + (verifier.Length > 0 ? $" [verifier: {verifier}]" : ""), cgroupDirectory, errno);
        }
    }
}

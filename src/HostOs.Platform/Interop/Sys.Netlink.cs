using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;

namespace HostOs.Platform.Interop;

/// <summary>
/// rtnetlink (rtnetlink(7), netlink(7)): the few requests the init's network setup needs,
/// IPv4 addresses and routes, each sent with NLM_F_ACK and checked against the kernel's
/// answer, so a refused change is an error naming the request and the errno.
/// </summary>
public static unsafe partial class Sys
{
    private const int AF_NETLINK = 16, SOCK_RAW = 3, NETLINK_ROUTE = 0;
    private const ushort NLMSG_ERROR = 2, RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_NEWROUTE = 24, RTM_DELROUTE = 25;
    private const ushort NLM_F_REQUEST = 1, NLM_F_ACK = 4, NLM_F_REPLACE = 0x100, NLM_F_CREATE = 0x400;
    private const ushort IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_BROADCAST = 4, IFA_CACHEINFO = 6;
    private const ushort RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PREFSRC = 7;
    private const byte RT_TABLE_MAIN = 254, RTPROT_DHCP = 16, RTPROT_STATIC = 4, RT_SCOPE_UNIVERSE = 0, RTN_UNICAST = 1;
    private static int _netlinkSequence;

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    private static partial nint SendRaw(int fd, byte* buffer, nint length, int flags);

    [LibraryImport(Libc, EntryPoint = "recv", SetLastError = true)]
    private static partial nint RecvRaw(int fd, byte* buffer, nint length, int flags);

    [LibraryImport(Libc, EntryPoint = "bind", SetLastError = true)]
    private static partial int BindRaw(int fd, byte* address, int length);

    /// <summary>Adds or replaces an IPv4 address; valid and preferred lifetimes make the kernel drop it by itself when a lease runs out.</summary>
    public static void AddAddress(int ifindex, IPAddress address, int prefixLength, IPAddress? broadcast, uint lifetimeSeconds)
    {
        var m = new NetlinkMessage(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
        m.Header([2 /* AF_INET */, (byte)prefixLength, 0 /* flags */, 0 /* RT_SCOPE_UNIVERSE */, .. Int(ifindex)]);
        m.Attribute(IFA_LOCAL, address.GetAddressBytes());
        m.Attribute(IFA_ADDRESS, address.GetAddressBytes());
        if (broadcast is not null) m.Attribute(IFA_BROADCAST, broadcast.GetAddressBytes());
        m.Attribute(IFA_CACHEINFO, [.. Int((int)lifetimeSeconds), .. Int((int)lifetimeSeconds), .. Int(0), .. Int(0)]);
        Netlink(m, $"add address {address}/{prefixLength} to interface {ifindex}");
    }

    public static void DeleteAddress(int ifindex, IPAddress address, int prefixLength)
    {
        var m = new NetlinkMessage(RTM_DELADDR, 0);
        m.Header([2, (byte)prefixLength, 0, 0, .. Int(ifindex)]);
        m.Attribute(IFA_LOCAL, address.GetAddressBytes());
        Netlink(m, $"delete address {address}/{prefixLength} from interface {ifindex}");
    }

    /// <summary>
    /// Adds or replaces the IPv4 default route through <paramref name="gateway"/> on the
    /// interface, marked as learnt by DHCP or set statically.
    /// </summary>
    public static void SetDefaultRoute(int ifindex, IPAddress gateway, IPAddress source, bool fromDhcp = true)
    {
        var m = new NetlinkMessage(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
        m.Header([2, 0 /* dst_len */, 0, 0, RT_TABLE_MAIN, fromDhcp ? RTPROT_DHCP : RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, .. Int(0)]);
        m.Attribute(RTA_GATEWAY, gateway.GetAddressBytes());
        m.Attribute(RTA_OIF, Int(ifindex));
        m.Attribute(RTA_PREFSRC, source.GetAddressBytes());
        Netlink(m, $"default route via {gateway} on interface {ifindex}");
    }

    public static void DeleteDefaultRoute(int ifindex)
    {
        var m = new NetlinkMessage(RTM_DELROUTE, 0);
        m.Header([2, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, RT_SCOPE_UNIVERSE, RTN_UNICAST, .. Int(0)]);
        m.Attribute(RTA_OIF, Int(ifindex));
        Netlink(m, $"delete the default route on interface {ifindex}");
    }

    private static byte[] Int(int value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, value); // host order: x86-64
        return b;
    }

    /// <summary>Sends one request on a fresh NETLINK_ROUTE socket and waits for its acknowledgement.</summary>
    private static void Netlink(NetlinkMessage message, string what) => Netlink(NETLINK_ROUTE, [message], what);

    /// <summary>
    /// Sends <paramref name="messages"/> in one datagram on a fresh netlink socket of
    /// <paramref name="protocol"/> (in the calling thread's network namespace) and waits for
    /// the acknowledgement of each that asks for one; the first error ends it, named.
    /// </summary>
    private static void Netlink(int protocol, IReadOnlyList<NetlinkMessage> messages, string what)
    {
        int fd = Check(SocketRaw(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol), "socket(AF_NETLINK)", what);
        try
        {
            byte* address = stackalloc byte[12];
            new Span<byte>(address, 12).Clear();
            *(ushort*)address = AF_NETLINK;
            Check(BindRaw(fd, address, 12), "bind(AF_NETLINK)", what);
            var pending = new HashSet<uint>();
            var bytes = new List<byte>();
            foreach (NetlinkMessage m in messages)
            {
                uint sequence = (uint)Interlocked.Increment(ref _netlinkSequence);
                if (m.WantsAck) pending.Add(sequence);
                bytes.AddRange(m.Finish(sequence));
            }
            byte[] datagram = [.. bytes];
            fixed (byte* p = datagram)
            {
                if (SendRaw(fd, p, datagram.Length, 0) < 0) Check(-1, "send(netlink)", what);
            }
            byte[] reply = new byte[8192];
            while (pending.Count > 0)
            {
                nint n;
                fixed (byte* p = reply) n = RecvRaw(fd, p, reply.Length, 0);
                if (n < 0) Check(-1, "recv(netlink)", what);
                for (int at = 0; at + 16 <= n;)
                {
                    int length = BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(at));
                    ushort type = BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(at + 4));
                    uint seq = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(at + 8));
                    if (length < 16) throw new SysException("recv(netlink)", what, Errno.EIO);
                    if (type == NLMSG_ERROR && pending.Remove(seq))
                    {
                        int error = BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(at + 16));
                        if (error != 0) throw new SysException("netlink", what, -error);
                    }
                    at += (length + 3) & ~3;
                }
            }
        }
        finally
        {
            CloseRaw(fd);
        }
    }

    /// <summary>nlmsghdr, the family header, then attributes (flat or nested), each 4-byte aligned.</summary>
    private sealed class NetlinkMessage(ushort type, ushort flags, bool ack = true)
    {
        private const ushort NLA_F_NESTED = 0x8000;
        private readonly List<byte> _body = [];

        public bool WantsAck => ack;

        public void Header(ReadOnlySpan<byte> header)
        {
            _body.AddRange(header.ToArray());
            Pad();
        }

        public void Attribute(ushort kind, ReadOnlySpan<byte> value)
        {
            int length = 4 + value.Length;
            _body.AddRange([(byte)length, (byte)(length >> 8), (byte)kind, (byte)(kind >> 8)]);
            _body.AddRange(value.ToArray());
            Pad();
        }

        /// <summary>A NUL-terminated string attribute.</summary>
        public void Attribute(ushort kind, string value) => Attribute(kind, [.. System.Text.Encoding.ASCII.GetBytes(value), 0]);

        /// <summary>A 32-bit attribute in network byte order (nf_tables' NLA_BE32).</summary>
        public void AttributeBigEndian(ushort kind, uint value)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
            Attribute(kind, b);
        }

        /// <summary>Opens a nested attribute; what follows until <see cref="End"/> is inside it.</summary>
        public int Begin(ushort kind)
        {
            int at = _body.Count;
            ushort k = (ushort)(kind | NLA_F_NESTED);
            _body.AddRange([0, 0, (byte)k, (byte)(k >> 8)]);
            return at;
        }

        public void End(int at)
        {
            int length = _body.Count - at;
            _body[at] = (byte)length;
            _body[at + 1] = (byte)(length >> 8);
        }

        private void Pad()
        {
            while (_body.Count % 4 != 0) _body.Add(0);
        }

        public byte[] Finish(uint sequence)
        {
            var b = new byte[16 + _body.Count];
            BinaryPrimitives.WriteInt32LittleEndian(b, b.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), type);
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(6), (ushort)(flags | NLM_F_REQUEST | (ack ? NLM_F_ACK : 0)));
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), sequence);
            _body.CopyTo(b, 16);
            return b;
        }
    }
}

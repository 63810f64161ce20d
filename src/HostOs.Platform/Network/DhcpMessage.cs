using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace HostOs.Platform.Network;

public enum DhcpMessageType : byte { Discover = 1, Offer = 2, Request = 3, Decline = 4, Ack = 5, Nak = 6, Release = 7, Inform = 8 }

/// <summary>
/// A DHCPv4 message (RFC 2131 on the BOOTP format of RFC 951, options of RFC 2132):
/// what the init's client sends and the parts of a reply it uses. Parsing is strict about
/// the fixed part and tolerant of options it does not know; a malformed option list is an
/// error naming the option.
/// </summary>
public sealed class DhcpMessage
{
    public const int ServerPort = 67, ClientPort = 68;
    private const uint MagicCookie = 0x63825363;
    private const int FixedLength = 236;

    public byte Op { get; init; } = 1; // BOOTREQUEST
    public uint TransactionId { get; init; }
    public ushort Seconds { get; init; }
    public bool Broadcast { get; init; }
    public IPAddress ClientAddress { get; init; } = IPAddress.Any;   // ciaddr
    public IPAddress YourAddress { get; init; } = IPAddress.Any;     // yiaddr
    public IPAddress ServerAddress { get; init; } = IPAddress.Any;   // siaddr
    public byte[] HardwareAddress { get; init; } = new byte[6];
    public DhcpMessageType? Type { get; init; }
    public IPAddress? RequestedAddress { get; init; }        // 50
    public IPAddress? ServerIdentifier { get; init; }        // 54
    public int? SubnetPrefix { get; init; }                  // 1, as a prefix length
    public List<IPAddress> Routers { get; init; } = [];      // 3
    public List<IPAddress> DnsServers { get; init; } = [];   // 6
    public string? HostName { get; init; }                   // 12
    public string? DomainName { get; init; }                 // 15
    public IPAddress? BroadcastAddress { get; init; }        // 28
    public uint? LeaseSeconds { get; init; }                 // 51
    public uint? RenewalSeconds { get; init; }               // 58 (T1)
    public uint? RebindingSeconds { get; init; }             // 59 (T2)
    public string? Message { get; init; }                    // 56

    /// <summary>The options a client asks for (55): subnet, router, DNS, host name, domain, broadcast, lease, T1, T2.</summary>
    private static readonly byte[] RequestedOptions = [1, 3, 6, 12, 15, 28, 51, 58, 59];

    public byte[] Encode()
    {
        var b = new byte[FixedLength + 4 + 312];
        b[0] = Op;
        b[1] = 1; // htype ethernet
        b[2] = 6; // hlen
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), TransactionId);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(8), Seconds);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(10), (ushort)(Broadcast ? 0x8000 : 0));
        ClientAddress.GetAddressBytes().CopyTo(b, 12);
        YourAddress.GetAddressBytes().CopyTo(b, 16);
        ServerAddress.GetAddressBytes().CopyTo(b, 20);
        HardwareAddress.AsSpan(0, 6).CopyTo(b.AsSpan(28));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(FixedLength), MagicCookie);
        int at = FixedLength + 4;
        void Option(byte code, ReadOnlySpan<byte> value)
        {
            b[at++] = code;
            b[at++] = (byte)value.Length;
            value.CopyTo(b.AsSpan(at));
            at += value.Length;
        }
        if (Type is DhcpMessageType t) Option(53, [(byte)t]);
        // Client identifier (61): hardware type 1 and the MAC, as most clients send it.
        Option(61, [1, .. HardwareAddress.AsSpan(0, 6)]);
        if (RequestedAddress is not null) Option(50, RequestedAddress.GetAddressBytes());
        if (ServerIdentifier is not null) Option(54, ServerIdentifier.GetAddressBytes());
        if (HostName is not null) Option(12, Encoding.ASCII.GetBytes(HostName[..Math.Min(HostName.Length, 63)]));
        if (Op == 1) Option(55, RequestedOptions);
        if (Op == 1) Option(57, [0x05, 0xDC]); // maximum message size 1500
        b[at++] = 255;
        // BOOTP's minimum of 300 bytes: some relays drop shorter packets.
        return b.AsSpan(0, Math.Max(at, 300)).ToArray();
    }

    public static DhcpMessage Decode(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < FixedLength + 4) throw new InvalidDataException($"DHCP message of {packet.Length} bytes is shorter than the {FixedLength + 4} of its fixed part");
        if (packet[1] != 1 || packet[2] != 6) throw new InvalidDataException($"DHCP message for hardware type {packet[1]} length {packet[2]}, not Ethernet");
        if (BinaryPrimitives.ReadUInt32BigEndian(packet[FixedLength..]) != MagicCookie) throw new InvalidDataException("DHCP message without the magic cookie");

        DhcpMessageType? type = null;
        IPAddress? requested = null, serverId = null, broadcast = null;
        int? prefix = null;
        var routers = new List<IPAddress>();
        var dns = new List<IPAddress>();
        string? host = null, domain = null, message = null;
        uint? lease = null, t1 = null, t2 = null;
        int i = FixedLength + 4;
        while (i < packet.Length)
        {
            byte code = packet[i++];
            if (code == 0) continue;   // pad
            if (code == 255) break;    // end
            if (i >= packet.Length) throw new InvalidDataException($"DHCP option {code} has no length");
            int length = packet[i++];
            if (i + length > packet.Length) throw new InvalidDataException($"DHCP option {code} runs past the end of the message");
            ReadOnlySpan<byte> v = packet.Slice(i, length);
            i += length;
            switch (code)
            {
                case 53: type = (DhcpMessageType)One(v, code); break;
                case 1: prefix = PrefixLength(Address(v, code)); break;
                case 3: routers.AddRange(Addresses(v, code)); break;
                case 6: dns.AddRange(Addresses(v, code)); break;
                case 12: host = Text(v); break;
                case 15: domain = Text(v); break;
                case 28: broadcast = Address(v, code); break;
                case 50: requested = Address(v, code); break;
                case 51: lease = Duration(v, code); break;
                case 54: serverId = Address(v, code); break;
                case 56: message = Text(v); break;
                case 58: t1 = Duration(v, code); break;
                case 59: t2 = Duration(v, code); break;
            }
        }
        return new DhcpMessage
        {
            Op = packet[0],
            TransactionId = BinaryPrimitives.ReadUInt32BigEndian(packet[4..]),
            Seconds = BinaryPrimitives.ReadUInt16BigEndian(packet[8..]),
            Broadcast = (BinaryPrimitives.ReadUInt16BigEndian(packet[10..]) & 0x8000) != 0,
            ClientAddress = new IPAddress(packet.Slice(12, 4)),
            YourAddress = new IPAddress(packet.Slice(16, 4)),
            ServerAddress = new IPAddress(packet.Slice(20, 4)),
            HardwareAddress = packet.Slice(28, 6).ToArray(),
            Type = type, RequestedAddress = requested, ServerIdentifier = serverId, SubnetPrefix = prefix,
            Routers = routers, DnsServers = dns, HostName = host, DomainName = domain, BroadcastAddress = broadcast,
            LeaseSeconds = lease, RenewalSeconds = t1, RebindingSeconds = t2, Message = message,
        };
    }

    private static byte One(ReadOnlySpan<byte> v, byte code) =>
        v.Length == 1 ? v[0] : throw new InvalidDataException($"DHCP option {code} has length {v.Length}, not 1");

    private static IPAddress Address(ReadOnlySpan<byte> v, byte code) =>
        v.Length == 4 ? new IPAddress(v) : throw new InvalidDataException($"DHCP option {code} has length {v.Length}, not 4");

    private static IEnumerable<IPAddress> Addresses(ReadOnlySpan<byte> v, byte code)
    {
        if (v.Length == 0 || v.Length % 4 != 0) throw new InvalidDataException($"DHCP option {code} has length {v.Length}, not a multiple of 4");
        var list = new List<IPAddress>();
        for (int k = 0; k < v.Length; k += 4) list.Add(new IPAddress(v.Slice(k, 4)));
        return list;
    }

    private static uint Duration(ReadOnlySpan<byte> v, byte code) =>
        v.Length == 4 ? BinaryPrimitives.ReadUInt32BigEndian(v) : throw new InvalidDataException($"DHCP option {code} has length {v.Length}, not 4");

    /// <summary>Printable ASCII only, trailing NULs dropped (some servers send them).</summary>
    private static string Text(ReadOnlySpan<byte> v)
    {
        string s = Encoding.ASCII.GetString(v).TrimEnd('\0');
        return new string([.. s.Where(c => c is >= ' ' and <= '~')]);
    }

    /// <summary>255.255.255.0 → 24; a mask that is not contiguous ones is refused.</summary>
    public static int PrefixLength(IPAddress mask)
    {
        uint m = BinaryPrimitives.ReadUInt32BigEndian(mask.GetAddressBytes());
        int ones = System.Numerics.BitOperations.PopCount(m);
        uint expected = ones == 0 ? 0 : uint.MaxValue << (32 - ones);
        if (m != expected) throw new InvalidDataException($"subnet mask {mask} is not contiguous");
        return ones;
    }
}

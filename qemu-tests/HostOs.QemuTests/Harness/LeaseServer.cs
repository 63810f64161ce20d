using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace HostOs.QemuTests.Harness;

/// <summary>What the test's DHCP server does with what it receives.</summary>
internal enum LeaseServerMode
{
    /// <summary>Offers and acknowledges everything.</summary>
    Answer,
    /// <summary>Ignores requests sent to its own address (renewals), answers broadcasts (rebinding).</summary>
    IgnoreUnicast,
    /// <summary>Answers nothing, as a server that went away.</summary>
    Silent,
    /// <summary>Refuses renewals of any other address than <see cref="LeaseServer.Address"/> with a NAK; answers discovery.</summary>
    NakOthers,
}

/// <summary>One DHCP message the server received, as it arrived.</summary>
internal sealed record SeenRequest(TimeSpan At, byte Type, IPAddress ClientAddress, bool ToBroadcast, bool Answered);

/// <summary>
/// A one-client Ethernet segment for a VM: QEMU's <c>-netdev socket,udp=</c> sends every
/// frame the guest puts on the wire as one UDP datagram to this endpoint, and takes each
/// datagram sent back as a frame. On it sits a DHCP server (10.9.0.1) with leases as short
/// as a test wants and a mode a test changes while the guest runs, so that renewal (unicast
/// at T1), rebinding (broadcast at T2), a lease that runs out and a NAK are each seen
/// against the init's real client in the real kernel. It answers ARP for its own address;
/// everything else on the wire is dropped. Its DHCP encoding is written here, apart from
/// the init's (HostOs.Platform's DhcpMessage), so that the two are checked against each
/// other rather than against themselves.
/// </summary>
internal sealed class LeaseServer : IAsyncDisposable
{
    public static readonly IPAddress ServerAddress = IPAddress.Parse("10.9.0.1");
    private static readonly byte[] ServerMac = [0x52, 0x54, 0x00, 0x09, 0x00, 0x01];
    private readonly UdpClient _udp;
    private readonly IPEndPoint _qemu;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private readonly List<SeenRequest> _seen = [];

    public LeaseServer()
    {
        _udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        Port = ((IPEndPoint)_udp.Client.LocalEndPoint!).Port;
        QemuPort = QemuMachine.HostPort();
        _qemu = new IPEndPoint(IPAddress.Loopback, QemuPort);
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Where QEMU sends the guest's frames.</summary>
    public int Port { get; }
    /// <summary>Where QEMU listens for frames to the guest.</summary>
    public int QemuPort { get; }
    /// <summary>The <c>-netdev</c> value for QEMU (id net0).</summary>
    public string Netdev => $"socket,id=net0,udp=127.0.0.1:{Port},localaddr=127.0.0.1:{QemuPort}";

    public LeaseServerMode Mode { get; set; } = LeaseServerMode.Answer;
    /// <summary>The address offered (and the only one a NakOthers server acknowledges).</summary>
    public IPAddress Address { get; set; } = IPAddress.Parse("10.9.0.15");
    public uint LeaseSeconds { get; set; } = 24;

    public SeenRequest[] Seen
    {
        get { lock (_seen) return [.. _seen]; }
    }

    public TimeSpan Now => _clock.Elapsed;

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            UdpReceiveResult r;
            try
            {
                r = await _udp.ReceiveAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // ICMP port unreachable from a QEMU not listening yet
            }
            byte[]? reply = Handle(r.Buffer);
            if (reply is not null) await _udp.SendAsync(reply, _qemu, _stop.Token);
        }
    }

    private byte[]? Handle(byte[] frame)
    {
        if (frame.Length < 14) return null;
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12));
        byte[] guestMac = frame[6..12];
        if (etherType == 0x0806) return Arp(frame, guestMac);
        if (etherType != 0x0800 || frame.Length < 14 + 20 + 8) return null;
        ReadOnlySpan<byte> ip = frame.AsSpan(14);
        int ihl = (ip[0] & 0x0F) * 4;
        if (ip[9] != 17 || ip.Length < ihl + 8) return null;
        var destination = new IPAddress(ip.Slice(16, 4));
        ReadOnlySpan<byte> udp = ip[ihl..];
        if (BinaryPrimitives.ReadUInt16BigEndian(udp[2..]) != 67) return null;
        return Dhcp(udp[8..].ToArray(), guestMac, toBroadcast: destination.Equals(IPAddress.Broadcast));
    }

    /// <summary>Who has 10.9.0.1? We do.</summary>
    private static byte[]? Arp(byte[] frame, byte[] guestMac)
    {
        ReadOnlySpan<byte> a = frame.AsSpan(14);
        if (a.Length < 28 || BinaryPrimitives.ReadUInt16BigEndian(a[6..]) != 1) return null;
        if (!new IPAddress(a.Slice(24, 4)).Equals(ServerAddress)) return null;
        var reply = new byte[14 + 28];
        guestMac.CopyTo(reply, 0);
        ServerMac.CopyTo(reply, 6);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(12), 0x0806);
        Span<byte> r = reply.AsSpan(14);
        a[..6].CopyTo(r);                              // htype, ptype, hlen, plen
        BinaryPrimitives.WriteUInt16BigEndian(r[6..], 2); // reply
        ServerMac.CopyTo(r[8..]);
        ServerAddress.GetAddressBytes().CopyTo(r[14..]);
        a.Slice(8, 10).CopyTo(r[18..]);                // the asker's MAC and address
        return reply;
    }

    private byte[]? Dhcp(byte[] m, byte[] guestMac, bool toBroadcast)
    {
        if (m.Length < 240 || m[0] != 1) return null;
        uint xid = BinaryPrimitives.ReadUInt32BigEndian(m.AsSpan(4));
        var ciaddr = new IPAddress(m.AsSpan(12, 4));
        byte type = 0;
        IPAddress? requested = null;
        for (int i = 240; i < m.Length && m[i] != 255;)
        {
            if (m[i] == 0) { i++; continue; }
            byte code = m[i], length = m[i + 1];
            if (code == 53) type = m[i + 2];
            if (code == 50 && length == 4) requested = new IPAddress(m.AsSpan(i + 2, 4));
            i += 2 + length;
        }
        byte answer = (Mode, type) switch
        {
            (LeaseServerMode.Silent, _) => 0,
            (_, 1) => 2,                                                     // DISCOVER -> OFFER
            (LeaseServerMode.IgnoreUnicast, 3) when !toBroadcast => 0,
            (LeaseServerMode.NakOthers, 3) when !Address.Equals(requested ?? ciaddr) => 6,
            (_, 3) => 5,                                                     // REQUEST -> ACK
            _ => 0,
        };
        lock (_seen) _seen.Add(new SeenRequest(Now, type, ciaddr, toBroadcast, answer != 0));
        if (answer == 0) return null;

        bool renewal = !ciaddr.Equals(IPAddress.Any);
        var d = new List<byte>();
        d.AddRange([2, 1, 6, 0]);
        d.AddRange(m.AsSpan(4, 8).ToArray());                                // xid, secs, flags
        d.AddRange(m.AsSpan(12, 4).ToArray());                               // ciaddr
        d.AddRange(answer == 6 ? new byte[4] : (renewal ? ciaddr : Address).GetAddressBytes()); // yiaddr
        d.AddRange(new byte[8]);                                             // siaddr, giaddr
        d.AddRange(m.AsSpan(28, 16).ToArray());                              // chaddr
        d.AddRange(new byte[192]);                                           // sname, file
        d.AddRange([0x63, 0x82, 0x53, 0x63]);
        void Option(byte code, params byte[] value)
        {
            d.Add(code);
            d.Add((byte)value.Length);
            d.AddRange(value);
        }
        byte[] Seconds(uint s) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, s); return b; }
        Option(53, answer);
        Option(54, ServerAddress.GetAddressBytes());
        if (answer == 6) Option(56, "not yours"u8.ToArray());
        else
        {
            Option(51, Seconds(LeaseSeconds));
            Option(1, 255, 255, 255, 0);
            Option(3, ServerAddress.GetAddressBytes());
            Option(6, ServerAddress.GetAddressBytes());
        }
        d.Add(255);
        while (d.Count < 300) d.Add(0);

        // A renewal's answer goes to its address; anything else to everyone (no address yet).
        bool broadcast = !renewal || answer == 6;
        return Frame(broadcast ? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : guestMac,
            broadcast ? IPAddress.Broadcast : ciaddr, [.. d]);
    }

    private static byte[] Frame(byte[] toMac, IPAddress to, byte[] dhcp)
    {
        var f = new byte[14 + 20 + 8 + dhcp.Length];
        toMac.CopyTo(f, 0);
        ServerMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        Span<byte> ip = f.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + 8 + dhcp.Length));
        ip[8] = 64;
        ip[9] = 17;
        ServerAddress.GetAddressBytes().CopyTo(ip[12..]);
        to.GetAddressBytes().CopyTo(ip[16..]);
        uint sum = 0;
        for (int i = 0; i < 20; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~sum);
        Span<byte> udp = f.AsSpan(34, 8);
        BinaryPrimitives.WriteUInt16BigEndian(udp, 67);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], 68);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + dhcp.Length));
        // UDP checksum 0: none, which IPv4 allows.
        dhcp.CopyTo(f, 42);
        return f;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        try { await _loop; } catch (OperationCanceledException) { }
        _udp.Dispose();
    }
}

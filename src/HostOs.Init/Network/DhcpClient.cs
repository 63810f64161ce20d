using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using HostOs.Platform;
using HostOs.Platform.Interop;
using HostOs.Platform.Network;

namespace HostOs.Init.Network;

/// <summary>The first Ethernet interface, as sysfs shows it.</summary>
internal sealed record EthernetInterface(string Name, int Index, byte[] Mac)
{
    /// <summary>
    /// The Ethernet interface (type 1) backed by a device, lowest ifindex first, or null.
    /// Virtual ones (bridges, veths of containers) have no <c>device</c> link.
    /// </summary>
    public static EthernetInterface? First(string sysClassNet = "/sys/class/net")
    {
        if (!Directory.Exists(sysClassNet)) return null;
        var found = new List<EthernetInterface>();
        foreach (string dir in Directory.GetDirectories(sysClassNet))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "type")).Trim() != "1") continue;
                if (!Path.Exists(Path.Combine(dir, "device"))) continue;
                int index = int.Parse(File.ReadAllText(Path.Combine(dir, "ifindex")).Trim(), CultureInfo.InvariantCulture);
                byte[] mac = Convert.FromHexString(File.ReadAllText(Path.Combine(dir, "address")).Trim().Replace(":", ""));
                found.Add(new EthernetInterface(Path.GetFileName(dir), index, mac));
            }
            catch (Exception e) when (e is IOException or FormatException)
            {
                // An interface going away while we look: not the one.
            }
        }
        return found.OrderBy(i => i.Index).FirstOrDefault();
    }
}

/// <summary>What a DHCP server leased: applied to the interface, renewed on time.</summary>
internal sealed record Lease(IPAddress Address, int Prefix, IPAddress? Router, IPAddress? Broadcast, List<IPAddress> Dns,
    string? HostName, string? Domain, IPAddress Server, TimeSpan Length, TimeSpan Renew, TimeSpan Rebind)
{
    public static Lease From(DhcpMessage ack, IPAddress fallbackServer)
    {
        TimeSpan length = TimeSpan.FromSeconds(ack.LeaseSeconds ?? 3600);
        // RFC 2131 4.4.5: T1 defaults to half the lease, T2 to seven eighths.
        TimeSpan renew = ack.RenewalSeconds is uint t1 ? TimeSpan.FromSeconds(t1) : length / 2;
        TimeSpan rebind = ack.RebindingSeconds is uint t2 ? TimeSpan.FromSeconds(t2) : length * 7 / 8;
        if (renew >= rebind || rebind >= length) (renew, rebind) = (length / 2, length * 7 / 8);
        return new Lease(ack.YourAddress, ack.SubnetPrefix ?? 24, ack.Routers.FirstOrDefault(), ack.BroadcastAddress, ack.DnsServers,
            ack.HostName, ack.DomainName, ack.ServerIdentifier ?? fallbackServer, length, renew, rebind);
    }

    public override string ToString() =>
        $"{Address}/{Prefix}" + (Router is null ? "" : $" via {Router}") +
        (Dns.Count == 0 ? "" : $", dns {string.Join(' ', Dns)}") + (HostName is null ? "" : $", hostname {HostName}") +
        $", lease {Length.TotalSeconds:F0} s from {Server}";
}

/// <summary>
/// The DHCPv4 client of the init (RFC 2131): DISCOVER, OFFER, REQUEST, ACK; the lease's
/// address (with the lease as its kernel lifetime, so an address never outlives its lease
/// even if the init stopped renewing), default route, DNS (/run/hostos/resolv.conf, which
/// /etc/resolv.conf points to) and host name applied; renewed at T1 by unicast, rebound
/// at T2 by broadcast, dropped and rediscovered when it runs out or the server says NAK.
/// A UDP socket bound to the interface carries it all (broadcast replies reach it before
/// the interface has an address); no dhclient, no raw sockets.
/// </summary>
internal sealed class DhcpClient(EthernetInterface nic, Action<string> info, Action<string> warn)
{
    public const string ResolvConf = "/run/hostos/resolv.conf";
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(32);
    private Lease? _lease;

    public Lease? Current => _lease;

    public async Task RunAsync(CancellationToken stop)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Broadcast, true);
        socket.SetRawSocketOption(1 /* SOL_SOCKET */, 25 /* SO_BINDTODEVICE */, Encoding.ASCII.GetBytes(nic.Name + "\0"));
        socket.Bind(new IPEndPoint(IPAddress.Any, DhcpMessage.ClientPort));
        while (!stop.IsCancellationRequested)
        {
            Lease lease = await AcquireAsync(socket, stop).ConfigureAwait(false);
            Apply(lease, renewed: false);
            await KeepAsync(socket, lease, stop).ConfigureAwait(false);
        }
    }

    /// <summary>INIT → SELECTING → REQUESTING, until a lease is ACKed.</summary>
    private async Task<Lease> AcquireAsync(Socket socket, CancellationToken stop)
    {
        TimeSpan backoff = TimeSpan.FromSeconds(1);
        while (true)
        {
            uint xid = (uint)Random.Shared.NextInt64(1, uint.MaxValue);
            var started = Environment.TickCount64;
            DhcpMessage? offer = await TransactAsync(socket, Request(DhcpMessageType.Discover, xid, started), IPAddress.Broadcast,
                m => m.Type == DhcpMessageType.Offer && !m.YourAddress.Equals(IPAddress.Any), tries: 4, backoff, stop).ConfigureAwait(false);
            if (offer is not null)
            {
                IPAddress server = offer.ServerIdentifier ?? offer.ServerAddress;
                DhcpMessage request = Request(DhcpMessageType.Request, xid, started, requested: offer.YourAddress, serverId: server);
                DhcpMessage? answer = await TransactAsync(socket, request, IPAddress.Broadcast,
                    m => m.Type is DhcpMessageType.Ack or DhcpMessageType.Nak, tries: 4, TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                if (answer?.Type == DhcpMessageType.Ack) return Lease.From(answer, server);
                if (answer?.Type == DhcpMessageType.Nak) warn($"network: {nic.Name}: {server} refused its own offer of {offer.YourAddress} (NAK{Said(answer)}); starting over");
            }
            else warn($"network: {nic.Name}: no DHCP offer yet; trying again in {backoff.TotalSeconds:F0} s");
            await Task.Delay(backoff, stop).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    /// <summary>BOUND → RENEWING (unicast at T1) → REBINDING (broadcast at T2); returns when the lease is lost.</summary>
    private async Task KeepAsync(Socket socket, Lease lease, CancellationToken stop)
    {
        while (true)
        {
            long boundAt = Environment.TickCount64;
            TimeSpan Since() => TimeSpan.FromMilliseconds(Environment.TickCount64 - boundAt);
            await Task.Delay(lease.Renew, stop).ConfigureAwait(false);
            DhcpMessage? answer = null;
            // Renewing: unicast to the server that leased it, retried until T2.
            while (answer is null && Since() < lease.Rebind)
            {
                TimeSpan wait = Max((lease.Rebind - Since()) / 2, TimeSpan.FromSeconds(5));
                answer = await TransactAsync(socket, Renewal(lease), lease.Server, IsAnswer, tries: 1, wait, stop).ConfigureAwait(false);
            }
            // Rebinding: any server, by broadcast, until the lease ends.
            while (answer is null && Since() < lease.Length)
            {
                TimeSpan wait = Max((lease.Length - Since()) / 2, TimeSpan.FromSeconds(5));
                answer = await TransactAsync(socket, Renewal(lease), IPAddress.Broadcast, IsAnswer, tries: 1, wait, stop).ConfigureAwait(false);
            }
            if (answer?.Type == DhcpMessageType.Ack && answer.YourAddress.Equals(lease.Address))
            {
                lease = Lease.From(answer, lease.Server);
                Apply(lease, renewed: true);
                continue;
            }
            warn(answer is null
                ? $"network: {nic.Name}: lease of {lease.Address} ran out without a renewal; dropping it"
                : $"network: {nic.Name}: lease of {lease.Address} not renewed (NAK{Said(answer)}); dropping it");
            Drop(lease);
            return;
        }

        static bool IsAnswer(DhcpMessage m) => m.Type is DhcpMessageType.Ack or DhcpMessageType.Nak;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static string Said(DhcpMessage m) => m.Message is { Length: > 0 } text ? $": {text}" : "";

    private DhcpMessage Request(DhcpMessageType type, uint xid, long started, IPAddress? requested = null, IPAddress? serverId = null) => new()
    {
        TransactionId = xid,
        Seconds = (ushort)Math.Min((Environment.TickCount64 - started) / 1000, ushort.MaxValue),
        // No address yet: ask for replies by broadcast, which reach our socket.
        Broadcast = true,
        HardwareAddress = nic.Mac,
        Type = type,
        RequestedAddress = requested,
        ServerIdentifier = serverId,
    };

    /// <summary>RENEWING/REBINDING: ciaddr set, no requested address or server id (RFC 2131 4.3.2).</summary>
    private DhcpMessage Renewal(Lease lease) => new()
    {
        TransactionId = (uint)Random.Shared.NextInt64(1, uint.MaxValue),
        ClientAddress = lease.Address,
        HardwareAddress = nic.Mac,
        Type = DhcpMessageType.Request,
    };

    /// <summary>Sends and waits for a matching reply (same xid and MAC), retransmitting with doubling waits.</summary>
    private async Task<DhcpMessage?> TransactAsync(Socket socket, DhcpMessage request, IPAddress to, Func<DhcpMessage, bool> accept,
        int tries, TimeSpan wait, CancellationToken stop)
    {
        byte[] packet = request.Encode();
        byte[] buffer = new byte[1500];
        for (int attempt = 0; attempt < tries; attempt++)
        {
            await socket.SendToAsync(packet, SocketFlags.None, new IPEndPoint(to, DhcpMessage.ServerPort), stop).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
            timeout.CancelAfter(wait);
            try
            {
                while (true)
                {
                    SocketReceiveFromResult r = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), timeout.Token).ConfigureAwait(false);
                    DhcpMessage reply;
                    try
                    {
                        reply = DhcpMessage.Decode(buffer.AsSpan(0, r.ReceivedBytes));
                    }
                    catch (InvalidDataException e)
                    {
                        warn($"network: {nic.Name}: ignored a malformed DHCP message from {r.RemoteEndPoint}: {e.Message}");
                        continue;
                    }
                    if (reply.Op == 2 && reply.TransactionId == request.TransactionId && reply.HardwareAddress.AsSpan().SequenceEqual(nic.Mac) && accept(reply))
                    {
                        return reply;
                    }
                }
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
            }
            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, MaxBackoff.Ticks));
        }
        return null;
    }

    private void Apply(Lease lease, bool renewed)
    {
        Lease? previous = _lease;
        uint lifetime = (uint)Math.Min(lease.Length.TotalSeconds, uint.MaxValue - 1);
        if (previous is not null && !previous.Address.Equals(lease.Address)) Drop(previous);
        Sys.AddAddress(nic.Index, lease.Address, lease.Prefix, lease.Broadcast, lifetime);
        if (lease.Router is not null) Sys.SetDefaultRoute(nic.Index, lease.Router, lease.Address);
        WriteResolvConf(lease);
        // A host name the operator configured (/etc/hostname, e.g. from first-boot
        // configuration) wins over the lease's.
        if (lease.HostName is { Length: > 0 } name && name != previous?.HostName && !File.Exists("/etc/hostname"))
        {
            try
            {
                Sys.SetHostname(name);
            }
            catch (SysException e)
            {
                warn($"network: host name '{name}' from the lease not set: {e.Message}");
            }
        }
        _lease = lease;
        if (renewed && previous is not null && previous.Address.Equals(lease.Address) && Equals(previous.Router, lease.Router))
        {
            info($"network: {nic.Name}: lease of {lease.Address} renewed for {lease.Length.TotalSeconds:F0} s");
        }
        else info($"network: {nic.Name} {lease}");
    }

    private void Drop(Lease lease)
    {
        try
        {
            Sys.DeleteAddress(nic.Index, lease.Address, lease.Prefix);
        }
        catch (SysException e) when (e.Errno == Errno.EADDRNOTAVAIL)
        {
            // The kernel already dropped it at the end of its lifetime.
        }
        _lease = null;
    }

    private static void WriteResolvConf(Lease lease)
    {
        var text = new StringBuilder("# from the DHCP lease (hostos-init)\n");
        foreach (IPAddress dns in lease.Dns.Take(3)) text.Append("nameserver ").Append(dns).Append('\n');
        if (lease.Domain is { Length: > 0 } domain) text.Append("search ").Append(domain).Append('\n');
        Directory.CreateDirectory(Path.GetDirectoryName(ResolvConf)!);
        AtomicFile.Write(ResolvConf, Encoding.ASCII.GetBytes(text.ToString()), durable: false);
    }
}

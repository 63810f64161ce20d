using System.Net;
using HostOs.Init.Network;
using HostOs.Platform.Network;

namespace HostOs.UnitTests.Init;

public class DhcpTests
{
    private static readonly byte[] Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// <summary>A server's reply as QEMU's user network sends one: fixed part, cookie, options.</summary>
    private static byte[] Reply(DhcpMessageType type, params byte[][] options)
    {
        var b = new List<byte>(new byte[236]);
        b[0] = 2; b[1] = 1; b[2] = 6;
        b[4] = 0xAB; b[5] = 0xCD; b[6] = 0x00; b[7] = 0x01;   // xid
        b[16] = 10; b[17] = 0; b[18] = 2; b[19] = 15;          // yiaddr
        for (int i = 0; i < 6; i++) b[28 + i] = Mac[i];
        b.AddRange([0x63, 0x82, 0x53, 0x63, 53, 1, (byte)type]);
        foreach (byte[] o in options) b.AddRange(o);
        b.Add(255);
        return [.. b];
    }

    [Fact]
    public void DecodesAnAckWithEverythingTheClientUses()
    {
        var m = DhcpMessage.Decode(Reply(DhcpMessageType.Ack,
            [1, 4, 255, 255, 255, 0], [3, 4, 10, 0, 2, 2], [6, 8, 10, 0, 2, 3, 1, 1, 1, 1], [12, 9, .."hostos-vm"u8], [15, 4, .."test"u8],
            [51, 4, 0, 1, 81, 128], [54, 4, 10, 0, 2, 2], [58, 4, 0, 0, 0, 60], [59, 4, 0, 0, 0, 100], [0, 0, 0]));
        Assert.Equal(DhcpMessageType.Ack, m.Type);
        Assert.Equal(0xABCD0001u, m.TransactionId);
        Assert.Equal(IPAddress.Parse("10.0.2.15"), m.YourAddress);
        Assert.Equal(24, m.SubnetPrefix);
        Assert.Equal([IPAddress.Parse("10.0.2.2")], m.Routers);
        Assert.Equal([IPAddress.Parse("10.0.2.3"), IPAddress.Parse("1.1.1.1")], m.DnsServers);
        Assert.Equal("hostos-vm", m.HostName);
        Assert.Equal("test", m.DomainName);
        Assert.Equal(86400u, m.LeaseSeconds);
        Assert.Equal(IPAddress.Parse("10.0.2.2"), m.ServerIdentifier);
        Assert.Equal(Mac, m.HardwareAddress);

        var lease = Lease.From(m, IPAddress.Any);
        Assert.Equal(TimeSpan.FromSeconds(60), lease.Renew);
        Assert.Equal(TimeSpan.FromSeconds(100), lease.Rebind);
        Assert.Equal(TimeSpan.FromDays(1), lease.Length);
        Assert.Equal("10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3 1.1.1.1, hostname hostos-vm, lease 86400 s from 10.0.2.2", lease.ToString());
    }

    [Fact]
    public void LeaseTimersDefaultAsTheRfcSays()
    {
        var lease = Lease.From(DhcpMessage.Decode(Reply(DhcpMessageType.Ack, [51, 4, 0, 0, 0x0E, 0x10])), IPAddress.Parse("10.0.2.2"));
        Assert.Equal(TimeSpan.FromSeconds(1800), lease.Renew);
        Assert.Equal(TimeSpan.FromSeconds(3150), lease.Rebind);
        Assert.Equal(24, lease.Prefix);
        Assert.Null(lease.Router);
        Assert.Equal(IPAddress.Parse("10.0.2.2"), lease.Server);
        // T1 after T2 is nonsense: both fall back to the defaults.
        lease = Lease.From(DhcpMessage.Decode(Reply(DhcpMessageType.Ack, [51, 4, 0, 0, 0, 100], [58, 4, 0, 0, 0, 90], [59, 4, 0, 0, 0, 80])), IPAddress.Any);
        Assert.Equal(TimeSpan.FromSeconds(50), lease.Renew);
    }

    [Fact]
    public void EncodesARequestTheServerCanRead()
    {
        var request = new DhcpMessage
        {
            TransactionId = 42, Broadcast = true, HardwareAddress = Mac, Type = DhcpMessageType.Request,
            RequestedAddress = IPAddress.Parse("10.0.2.15"), ServerIdentifier = IPAddress.Parse("10.0.2.2"),
        };
        byte[] bytes = request.Encode();
        Assert.True(bytes.Length >= 300);
        Assert.Equal(1, bytes[0]);
        Assert.Equal(0x80, bytes[10]);
        var back = DhcpMessage.Decode(bytes);
        Assert.Equal(42u, back.TransactionId);
        Assert.True(back.Broadcast);
        Assert.Equal(DhcpMessageType.Request, back.Type);
        Assert.Equal(IPAddress.Parse("10.0.2.15"), back.RequestedAddress);
        Assert.Equal(IPAddress.Parse("10.0.2.2"), back.ServerIdentifier);
    }

    [Theory]
    [InlineData(new byte[] { 51, 4, 0, 0 }, "runs past the end")]
    [InlineData(new byte[] { 1, 4, 255, 0, 255, 0 }, "not contiguous")]
    [InlineData(new byte[] { 3, 3, 10, 0, 2 }, "multiple of 4")]
    [InlineData(new byte[] { 54, 2, 10, 0 }, "not 4")]
    public void MalformedOptionsAreNamed(byte[] option, string expected)
    {
        byte[] packet = Reply(DhcpMessageType.Offer, option);
        // Drop the end marker when the option claims more than is left.
        if (expected == "runs past the end") packet = packet[..^1];
        var e = Assert.Throws<InvalidDataException>(() => DhcpMessage.Decode(packet));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ShortOrForeignMessagesAreRefused()
    {
        Assert.Contains("shorter", Assert.Throws<InvalidDataException>(() => DhcpMessage.Decode(new byte[100])).Message);
        byte[] noCookie = Reply(DhcpMessageType.Ack);
        noCookie[236] = 0;
        Assert.Contains("magic cookie", Assert.Throws<InvalidDataException>(() => DhcpMessage.Decode(noCookie)).Message);
    }

    [Fact]
    public void FindsTheFirstEthernetDeviceNotBridgesOrLoopback()
    {
        string root = Directory.CreateTempSubdirectory("sysnet-").FullName;
        try
        {
            void Nic(string name, int type, int index, string mac, bool device)
            {
                string d = Directory.CreateDirectory(Path.Combine(root, name)).FullName;
                File.WriteAllText(Path.Combine(d, "type"), $"{type}\n");
                File.WriteAllText(Path.Combine(d, "ifindex"), $"{index}\n");
                File.WriteAllText(Path.Combine(d, "address"), mac + "\n");
                if (device) Directory.CreateDirectory(Path.Combine(d, "device"));
            }
            Nic("lo", 772, 1, "00:00:00:00:00:00", false);
            Nic("br0", 1, 2, "02:00:00:00:00:01", false);
            Nic("ens4", 1, 4, "52:54:00:00:00:04", true);
            Nic("ens3", 1, 3, "52:54:00:12:34:56", true);
            var nic = EthernetInterface.First(root)!;
            Assert.Equal("ens3", nic.Name);
            Assert.Equal(3, nic.Index);
            Assert.Equal(Mac, nic.Mac);
            Assert.Null(EthernetInterface.First(Path.Combine(root, "missing")));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.UnitTests.Platform;

/// <summary>
/// The netlink pieces of bridge networking against the host's kernel, in network
/// namespaces of the test's own (nothing of the host's network is touched): a bridge, a
/// veth pair with one end created in a "container" namespace, addresses and a route, and
/// the nf_tables masquerade rule, which `nft` must read back as the rule we meant and
/// which must really rewrite a connection's source on its way to an "outside" namespace.
/// </summary>
public sealed class BridgeNetworkingTests
{
    [RootFact]
    public async Task AContainerOnTheBridgeReachesTheHostAndIsMasqueradedOutside()
    {
        using SafeFileHandle host = NewNamespace(), container = NewNamespace(), outside = NewNamespace();
        IPAddress gateway = IPAddress.Parse("10.88.0.1"), mine = IPAddress.Parse("10.88.0.2");
        IPAddress uplink = IPAddress.Parse("192.168.77.1"), far = IPAddress.Parse("192.168.77.2");

        In(host, () =>
        {
            Sys.SetInterfaceUp("lo");
            Sys.CreateBridge("hostos0");
            int bridge = Sys.InterfaceIndex("hostos0");
            Sys.AddAddress(bridge, gateway, 16, null, uint.MaxValue);
            Sys.SetInterfaceUp("hostos0");
            Sys.CreateVethPair("vethtest", bridge, "eth0", container);
            Sys.SetInterfaceUp("vethtest");
            // The host's uplink: a veth to the outside namespace, no bridge.
            Sys.CreateVethPair("uplink", 0, "eth0", outside);
            Sys.SetInterfaceUp("uplink");
            Sys.AddAddress(Sys.InterfaceIndex("uplink"), uplink, 24, null, uint.MaxValue);
            File.WriteAllText("/proc/sys/net/ipv4/ip_forward", "1");
            Sys.NftMasquerade("hostos", IPAddress.Parse("10.88.0.0"), 16, "hostos0");
            Sys.NftMasquerade("hostos", IPAddress.Parse("10.88.0.0"), 16, "hostos0"); // again: replaced, not doubled
            return 0;
        });
        In(container, () =>
        {
            Sys.SetInterfaceUp("lo");
            Sys.SetInterfaceUp("eth0");
            int eth0 = Sys.InterfaceIndex("eth0");
            Sys.AddAddress(eth0, mine, 16, null, uint.MaxValue);
            Sys.SetDefaultRoute(eth0, gateway, mine, fromDhcp: false);
            return 0;
        });
        In(outside, () =>
        {
            Sys.SetInterfaceUp("lo");
            Sys.SetInterfaceUp("eth0");
            Sys.AddAddress(Sys.InterfaceIndex("eth0"), far, 24, null, uint.MaxValue);
            return 0; // no route back to 10.88/16: only a masqueraded packet can be answered
        });

        string rules = Nft(host, "list", "table", "ip", "hostos");
        Assert.Contains("type nat hook postrouting priority srcnat", rules);
        Assert.Contains("ip saddr 10.88.0.0/16 oifname != \"hostos0\" masquerade", rules);
        Assert.Single(rules.Split('\n'), l => l.Contains("masquerade"));

        // Container -> host over the bridge: the host sees the container's own address.
        using Socket onHost = In(host, () => Listen(gateway));
        Assert.Equal(mine, await ConnectAndAcceptAsync(container, onHost));
        // Container -> outside through the host: the outside sees the host's uplink address.
        using Socket onOutside = In(outside, () => Listen(far));
        Assert.Equal(uplink, await ConnectAndAcceptAsync(container, onOutside));
    }

    private static Socket Listen(IPAddress at)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(at, 0));
        s.Listen(4);
        return s;
    }

    private static async Task<IPAddress> ConnectAndAcceptAsync(SafeFileHandle from, Socket listener)
    {
        using Socket client = In(from, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Task<Socket> accepted = listener.AcceptAsync(timeout.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, timeout.Token);
        using Socket server = await accepted;
        return ((IPEndPoint)server.RemoteEndPoint!).Address;
    }

    /// <summary>A fresh network namespace, held by a descriptor (made by a thread that exits).</summary>
    private static SafeFileHandle NewNamespace() => OnThread(() =>
    {
        Sys.Unshare(CloneFlags.NewNet);
        return File.OpenHandle("/proc/thread-self/ns/net", FileMode.Open, FileAccess.Read);
    });

    /// <summary>Runs <paramref name="f"/> on a thread of its own inside <paramref name="ns"/> (setns is per thread).</summary>
    private static T In<T>(SafeFileHandle ns, Func<T> f) => OnThread(() =>
    {
        Sys.SetNs(ns, CloneFlags.NewNet, "test namespace");
        return f();
    });

    private static T OnThread<T>(Func<T> f)
    {
        T result = default!;
        Exception? failure = null;
        var t = new Thread(() =>
        {
            try { result = f(); }
            catch (Exception e) { failure = e; }
        });
        t.Start();
        t.Join();
        if (failure is not null) throw new InvalidOperationException(failure.Message, failure);
        return result;
    }

    /// <summary>nft (the reference reader of what we wrote) inside <paramref name="ns"/>, through nsenter.</summary>
    private static string Nft(SafeFileHandle ns, params string[] args) =>
        HostOs.UnitTests.Images.Registry.Run("nsenter", [$"--net=/proc/{Environment.ProcessId}/fd/{ns.DangerousGetHandle()}", "nft", .. args]);
}

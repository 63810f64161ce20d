using System.Text.RegularExpressions;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// Networking (issue 4): the init's DHCP client takes a lease from QEMU's user network
/// (address, default route, DNS, host name), and the demo container's page is served to
/// the host through a forwarded port. A lease of 24 s from the test's own DHCP server is
/// renewed, rebound, refused and lost while the test watches.
/// </summary>
public sealed class NetworkTests
{
    [Fact]
    public async Task DhcpLease_AndTheDemoPageReachableFromTheHost()
    {
        await using var vm = QemuMachine.Create("network");
        vm.DhcpHostname = "hostos-vm";
        vm.Start();
        await vm.WaitForReadyAsync();
        await vm.Console.WaitForAsync(@"network: \w+ 10\.0\.2\.15/24 via 10\.0\.2\.2, dns 10\.0\.2\.3, hostname hostos-vm, lease \d+ s from 10\.0\.2\.2",
            TimeSpan.FromSeconds(60));

        SerialShell sh = await vm.ShellAsync();
        Assert.Equal("hostos-vm", await sh.CheckAsync("hostname"));
        Assert.Contains("inet 10.0.2.15/24", await sh.CheckAsync("ip -4 addr show"));
        Assert.Contains("default via 10.0.2.2", await sh.CheckAsync("ip route"));
        Assert.Contains("nameserver 10.0.2.3", await sh.CheckAsync("cat /etc/resolv.conf"));
        // The lease is the address's kernel lifetime: it cannot outlive the lease.
        Assert.Matches(@"valid_lft \d+sec", await sh.CheckAsync("ip -4 addr show dev $(ls /sys/class/net | grep -v lo | head -n 1)"));

        // The demo web container (host network, port 8080) from the host, through QEMU's forward.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        string page = await http.GetStringAsync($"http://127.0.0.1:{vm.WebPort}/");
        Assert.Contains("Hello from HostOS", page);
    }

    [Fact]
    public async Task AShortLease_IsRenewedRebound_DroppedWhenRefusedOrRunOut_AndTakenAgain()
    {
        await using var server = new LeaseServer { LeaseSeconds = 24 };
        await using var vm = QemuMachine.Create("network-lease");
        vm.Netdev = server.Netdev;
        vm.Start();
        await vm.WaitForReadyAsync();
        Match bound = await vm.Console.WaitForAsync(@"network: (\w+) 10\.9\.0\.15/24 via 10\.9\.0\.1, dns 10\.9\.0\.1, lease 24 s from 10\.9\.0\.1",
            TimeSpan.FromSeconds(60));
        string nic = bound.Groups[1].Value;
        SerialShell sh = await vm.ShellAsync();
        Assert.Matches(@"inet 10\.9\.0\.15/24 .*\n.*valid_lft (1\d|2[0-4])sec", await sh.CheckAsync($"ip -4 addr show dev {nic}"));

        // T1 (half the lease): a unicast REQUEST to the server that leased it.
        int mark = vm.Console.Mark();
        await vm.Console.WaitForAsync(@"network: \w+: lease of 10\.9\.0\.15 renewed for 24 s", TimeSpan.FromSeconds(60), mark);
        Assert.Contains(server.Seen, r => r.Type == 3 && r.ClientAddress.ToString() == "10.9.0.15" && !r.ToBroadcast && r.Answered);

        // The server no longer hears unicast: at T2 (7/8) the client asks everyone.
        server.Mode = LeaseServerMode.IgnoreUnicast;
        TimeSpan since = server.Now;
        mark = vm.Console.Mark();
        await vm.Console.WaitForAsync(@"network: \w+: lease of 10\.9\.0\.15 renewed for 24 s", TimeSpan.FromSeconds(60), mark);
        SeenRequest[] rebinding = [.. server.Seen.Where(r => r.At >= since && r.Type == 3)];
        Assert.Contains(rebinding, r => !r.ToBroadcast && !r.Answered);
        Assert.Contains(rebinding, r => r.ToBroadcast && r.ClientAddress.ToString() == "10.9.0.15" && r.Answered);
        Assert.True(rebinding.First(r => r.ToBroadcast).At - rebinding.First().At >= TimeSpan.FromSeconds(5),
            "the client broadcast before T2: " + string.Join(", ", rebinding.Select(r => r.ToString())));

        // The server now says the address is not the client's: NAK, dropped, a new one taken.
        server.Address = System.Net.IPAddress.Parse("10.9.0.16");
        server.Mode = LeaseServerMode.NakOthers;
        mark = vm.Console.Mark();
        await vm.Console.WaitForAsync(@"network: \w+: lease of 10\.9\.0\.15 not renewed \(NAK: not yours\); dropping it", TimeSpan.FromSeconds(60), mark);
        await vm.Console.WaitForAsync(@"network: \w+ 10\.9\.0\.16/24 via 10\.9\.0\.1", TimeSpan.FromSeconds(60), mark);
        string addresses = await sh.CheckAsync($"ip -4 addr show dev {nic}");
        Assert.Contains("inet 10.9.0.16/24", addresses);
        Assert.DoesNotContain("10.9.0.15", addresses);
        Assert.Contains("default via 10.9.0.1", await sh.CheckAsync("ip route"));

        // The server goes away: the lease runs out, the address goes with it, discovery goes on.
        server.Mode = LeaseServerMode.Silent;
        mark = vm.Console.Mark();
        await vm.Console.WaitForAsync(@"network: \w+: lease of 10\.9\.0\.16 ran out without a renewal; dropping it", TimeSpan.FromSeconds(60), mark);
        Assert.DoesNotContain("10.9.0.16", await sh.CheckAsync($"ip -4 addr show dev {nic}"));
        await vm.Console.WaitForAsync(@"network: \w+: no DHCP offer yet", TimeSpan.FromSeconds(60), mark);

        // And comes back.
        server.Mode = LeaseServerMode.Answer;
        await vm.Console.WaitForAsync(@"network: \w+ 10\.9\.0\.16/24 via 10\.9\.0\.1, dns 10\.9\.0\.1, lease 24 s", TimeSpan.FromSeconds(60), mark);
        Assert.Contains("inet 10.9.0.16/24", await sh.CheckAsync($"ip -4 addr show dev {nic}"));
    }
}

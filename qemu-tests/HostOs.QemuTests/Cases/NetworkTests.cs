using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// Networking (issue 4): the init's DHCP client takes a lease from QEMU's user network
/// (address, default route, DNS, host name), and the demo container's page is served to
/// the host through a forwarded port.
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
}

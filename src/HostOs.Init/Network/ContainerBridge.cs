using System.Net;
using HostOs.Init.Processes;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Network;

/// <summary>A container's place on the bridge: its address, given back when it stops.</summary>
internal sealed class BridgeAttachment(IPAddress address, Action release)
{
    private int _released;
    public IPAddress Address => address;

    public void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) release();
    }
}

/// <summary>
/// Network <c>bridge</c> (docs/workload.md): the bridge <c>hostos0</c> at 10.88.0.1/16 in
/// the host's namespace, made at the first such container's start, with IPv4 forwarding
/// and one nf_tables rule that masquerades what leaves the subnet by another interface
/// (so a container reaches whatever the host reaches); per container a veth pair, the
/// host's end on the bridge, the other created as <c>eth0</c> straight in the
/// container's network namespace, with the lowest free address of the subnet and a
/// default route through the bridge. Everything through netlink (Sys.Links, Sys.Nftables);
/// no ip, no nft, no iptables in the image.
/// </summary>
internal static class ContainerBridge
{
    public const string Name = "hostos0";
    public static readonly IPAddress Subnet = IPAddress.Parse("10.88.0.0"), Gateway = IPAddress.Parse("10.88.0.1");
    public const int Prefix = 16;
    private static readonly string[] Modules = ["bridge", "veth", "nft_chain_nat", "nft_masq"];
    private static readonly Lock Gate = new();
    private static readonly HashSet<int> Used = [];
    private static bool s_up;
    private static int s_links;

    /// <summary>Puts the network namespace of <paramref name="pid"/> (a created container) on the bridge.</summary>
    public static BridgeAttachment Attach(int pid)
    {
        lock (Gate)
        {
            EnsureUp();
            int host = 2;
            while (Used.Contains(host)) host++;
            if (host > 65534) throw new InvalidOperationException($"bridge {Name}: all addresses of {Subnet}/{Prefix} are taken");
            byte[] bytes = Subnet.GetAddressBytes();
            (bytes[2], bytes[3]) = ((byte)(host >> 8), (byte)host);
            var address = new IPAddress(bytes);
            // A new name each time: the kernel deletes a pair when its namespace dies, a little later.
            string veth = $"hv{++s_links}";
            using (SafeFileHandle ns = File.OpenHandle($"/proc/{pid}/ns/net", FileMode.Open, FileAccess.Read))
            {
                Sys.CreateVethPair(veth, Sys.InterfaceIndex(Name), "eth0", ns);
                Sys.SetInterfaceUp(veth);
                ThrowawayThread.Run("bridge-netns", () =>
                {
                    Sys.SetNs(ns, CloneFlags.NewNet, $"/proc/{pid}/ns/net");
                    Sys.SetInterfaceUp("lo");
                    Sys.SetInterfaceUp("eth0");
                    int eth0 = Sys.InterfaceIndex("eth0");
                    Sys.AddAddress(eth0, address, Prefix, null, uint.MaxValue);
                    Sys.SetDefaultRoute(eth0, Gateway, address, fromDhcp: false);
                    return 0;
                });
            }
            Used.Add(host);
            return new BridgeAttachment(address, () => Release(host, veth));
        }
    }

    private static void Release(int host, string veth)
    {
        lock (Gate)
        {
            Used.Remove(host);
            try
            {
                Sys.DeleteLink(veth);
            }
            catch (SysException e) when (e.Errno is Errno.ENODEV or Errno.ENOENT)
            {
                // Gone with the container's namespace already.
            }
        }
    }

    private static void EnsureUp()
    {
        if (s_up) return;
        // In the root as the image's kernel.onDemandModules; not loaded by the boot.
        List<string> failed = ModuleLoader.Load(ModuleLoader.ModulesDirectory(), Modules);
        if (failed.Count > 0) throw new InvalidOperationException($"bridge {Name}: kernel modules missing: {string.Join("; ", failed)}");
        if (!Directory.Exists($"/sys/class/net/{Name}")) Sys.CreateBridge(Name);
        Sys.AddAddress(Sys.InterfaceIndex(Name), Gateway, Prefix, null, uint.MaxValue);
        Sys.SetInterfaceUp(Name);
        File.WriteAllText("/proc/sys/net/ipv4/ip_forward", "1");
        Sys.NftMasquerade("hostos", Subnet, Prefix, Name);
        s_up = true;
        Log.Info($"network: bridge {Name} {Gateway}/{Prefix} up, outbound traffic of its containers masqueraded");
    }
}

using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

/// <summary>
/// Network links through rtnetlink (rtnetlink(7)): a bridge, and a veth pair whose one end
/// is on the bridge and whose other end is created straight in another network namespace,
/// as `ip link add NAME master BRIDGE type veth peer name PEER netns FD` does. Each request
/// acts in the calling thread's network namespace.
/// </summary>
public static unsafe partial class Sys
{
    private const ushort RTM_NEWLINK = 16, RTM_DELLINK = 17, NLM_F_EXCL = 0x200;
    private const ushort IFLA_IFNAME = 3, IFLA_MASTER = 10, IFLA_LINKINFO = 18, IFLA_NET_NS_FD = 28;
    private const ushort IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, VETH_INFO_PEER = 1;

    [LibraryImport(Libc, EntryPoint = "if_nametoindex", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial uint IfNameToIndex(string name);

    /// <summary>struct ifinfomsg: family (AF_UNSPEC), type, index, flags, change.</summary>
    private static byte[] InterfaceInfo(int index = 0) => [0, 0, 0, 0, .. Int(index), .. Int(0), .. Int(0)];

    /// <summary>The index of interface <paramref name="name"/> in this thread's network namespace.</summary>
    public static int InterfaceIndex(string name)
    {
        uint index = IfNameToIndex(name);
        if (index == 0) throw new SysException("if_nametoindex", name, Marshal.GetLastPInvokeError());
        return (int)index;
    }

    /// <summary>Creates bridge <paramref name="name"/> (down, no address).</summary>
    public static void CreateBridge(string name)
    {
        var m = new NetlinkMessage(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.Header(InterfaceInfo());
        m.Attribute(IFLA_IFNAME, name);
        int info = m.Begin(IFLA_LINKINFO);
        m.Attribute(IFLA_INFO_KIND, "bridge");
        m.End(info);
        Netlink(m, $"create bridge {name}");
    }

    /// <summary>
    /// Creates veth <paramref name="name"/> enslaved to the bridge with index
    /// <paramref name="masterIndex"/> (0: none), its peer <paramref name="peerName"/> made directly in
    /// the network namespace <paramref name="peerNamespace"/> (so the peer's name cannot
    /// clash with ours). Both ends are down.
    /// </summary>
    public static void CreateVethPair(string name, int masterIndex, string peerName, SafeFileHandle peerNamespace)
    {
        var m = new NetlinkMessage(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.Header(InterfaceInfo());
        m.Attribute(IFLA_IFNAME, name);
        if (masterIndex != 0) m.Attribute(IFLA_MASTER, Int(masterIndex));
        int info = m.Begin(IFLA_LINKINFO);
        m.Attribute(IFLA_INFO_KIND, "veth");
        int data = m.Begin(IFLA_INFO_DATA);
        int peer = m.Begin(VETH_INFO_PEER);
        m.Header(InterfaceInfo());
        m.Attribute(IFLA_IFNAME, peerName);
        m.Attribute(IFLA_NET_NS_FD, Int((int)peerNamespace.DangerousGetHandle()));
        m.End(peer);
        m.End(data);
        m.End(info);
        Netlink(m, $"create veth {name} (peer {peerName} in another namespace) on bridge {masterIndex}");
    }

    /// <summary>Deletes a link (a veth pair goes with either end).</summary>
    public static void DeleteLink(string name)
    {
        var m = new NetlinkMessage(RTM_DELLINK, 0);
        m.Header(InterfaceInfo());
        m.Attribute(IFLA_IFNAME, name);
        Netlink(m, $"delete link {name}");
    }
}

using System.Net;

namespace HostOs.Platform.Interop;

/// <summary>
/// nf_tables over netlink (NETLINK_NETFILTER, linux/netfilter/nf_tables.h): the one rule
/// set the init needs, written as one batch (a transaction: all of it or nothing), as
/// `nft -f` would send it. No nft binary, no libnftnl.
/// </summary>
public static unsafe partial class Sys
{
    private const int NETLINK_NETFILTER = 12;
    private const ushort NFNL_SUBSYS_NFTABLES = 10, NFNL_MSG_BATCH_BEGIN = 0x10, NFNL_MSG_BATCH_END = 0x11, NLM_F_APPEND = 0x800;
    private const ushort NFT_MSG_NEWTABLE = 0, NFT_MSG_DELTABLE = 2, NFT_MSG_NEWCHAIN = 3, NFT_MSG_NEWRULE = 6;
    private const byte NFPROTO_IPV4 = 2;
    // Attributes: table, chain, hook, rule, list, expression, data.
    private const ushort NFTA_TABLE_NAME = 1, NFTA_CHAIN_TABLE = 1, NFTA_CHAIN_NAME = 3, NFTA_CHAIN_HOOK = 4, NFTA_CHAIN_TYPE = 7;
    private const ushort NFTA_HOOK_HOOKNUM = 1, NFTA_HOOK_PRIORITY = 2;
    private const ushort NFTA_RULE_TABLE = 1, NFTA_RULE_CHAIN = 2, NFTA_RULE_EXPRESSIONS = 4, NFTA_LIST_ELEM = 1;
    private const ushort NFTA_EXPR_NAME = 1, NFTA_EXPR_DATA = 2, NFTA_DATA_VALUE = 1;
    private const uint NF_INET_POST_ROUTING = 4, NFT_REG_1 = 1, NFT_PAYLOAD_NETWORK_HEADER = 1, NFT_CMP_EQ = 0, NFT_CMP_NEQ = 1, NFT_META_OIFNAME = 7;

    private static ushort NftType(ushort message) => (ushort)((NFNL_SUBSYS_NFTABLES << 8) | message);

    /// <summary>struct nfgenmsg: family, version 0, resource id (big-endian).</summary>
    private static byte[] NfGen(byte family, ushort resourceId = 0) => [family, 0, (byte)(resourceId >> 8), (byte)resourceId];

    /// <summary>
    /// Table <c>ip TABLE</c> with a nat chain on postrouting holding
    /// <c>ip saddr SUBNET/PREFIX oifname != BRIDGE masquerade</c>: packets from the
    /// containers' subnet leaving by any other interface take that interface's address.
    /// The table is replaced if it exists, in the same transaction, so calling it again leaves
    /// one rule, not two, and never a moment without one.
    /// </summary>
    public static void NftMasquerade(string table, IPAddress subnet, int prefix, string bridge)
    {
        if (bridge.Length is 0 or > 15) throw new ArgumentException($"interface name '{bridge}'", nameof(bridge));
        string what = $"nftables: masquerade {subnet}/{prefix} leaving by other interfaces than {bridge} (table ip {table})";
        // One transaction, as `nft -f` writes "add table; delete table; add table ...": the
        // first add makes sure there is a table to delete, so an earlier rule set is replaced
        // and a missing one is no error.
        NetlinkMessage Table(ushort message)
        {
            var m = new NetlinkMessage(NftType(message), message == NFT_MSG_NEWTABLE ? NLM_F_CREATE : (ushort)0);
            m.Header(NfGen(NFPROTO_IPV4));
            m.Attribute(NFTA_TABLE_NAME, table);
            return m;
        }

        var c = new NetlinkMessage(NftType(NFT_MSG_NEWCHAIN), NLM_F_CREATE);
        c.Header(NfGen(NFPROTO_IPV4));
        c.Attribute(NFTA_CHAIN_TABLE, table);
        c.Attribute(NFTA_CHAIN_NAME, "postrouting");
        int hook = c.Begin(NFTA_CHAIN_HOOK);
        c.AttributeBigEndian(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING);
        c.AttributeBigEndian(NFTA_HOOK_PRIORITY, 100); // srcnat
        c.End(hook);
        c.Attribute(NFTA_CHAIN_TYPE, "nat");

        var r = new NetlinkMessage(NftType(NFT_MSG_NEWRULE), NLM_F_CREATE | NLM_F_APPEND);
        r.Header(NfGen(NFPROTO_IPV4));
        r.Attribute(NFTA_RULE_TABLE, table);
        r.Attribute(NFTA_RULE_CHAIN, "postrouting");
        int list = r.Begin(NFTA_RULE_EXPRESSIONS);
        byte[] mask = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(mask, prefix == 0 ? 0 : uint.MaxValue << (32 - prefix));
        byte[] network = subnet.GetAddressBytes();
        for (int i = 0; i < 4; i++) network[i] &= mask[i];
        byte[] name = new byte[16]; // IFNAMSIZ, NUL-padded: what meta oifname loads
        System.Text.Encoding.ASCII.GetBytes(bridge).CopyTo(name, 0);
        // ip saddr (network header, offset 12, 4 bytes) & mask == network
        Expression(r, "payload", e =>
        {
            e.AttributeBigEndian(1 /* DREG */, NFT_REG_1);
            e.AttributeBigEndian(2 /* BASE */, NFT_PAYLOAD_NETWORK_HEADER);
            e.AttributeBigEndian(3 /* OFFSET */, 12);
            e.AttributeBigEndian(4 /* LEN */, 4);
        });
        Expression(r, "bitwise", e =>
        {
            e.AttributeBigEndian(1 /* SREG */, NFT_REG_1);
            e.AttributeBigEndian(2 /* DREG */, NFT_REG_1);
            e.AttributeBigEndian(3 /* LEN */, 4);
            Data(e, 4 /* MASK */, mask);
            Data(e, 5 /* XOR */, new byte[4]);
        });
        Expression(r, "cmp", e =>
        {
            e.AttributeBigEndian(1 /* SREG */, NFT_REG_1);
            e.AttributeBigEndian(2 /* OP */, NFT_CMP_EQ);
            Data(e, 3 /* DATA */, network);
        });
        // oifname != bridge
        Expression(r, "meta", e =>
        {
            e.AttributeBigEndian(2 /* KEY */, NFT_META_OIFNAME);
            e.AttributeBigEndian(1 /* DREG */, NFT_REG_1);
        });
        Expression(r, "cmp", e =>
        {
            e.AttributeBigEndian(1 /* SREG */, NFT_REG_1);
            e.AttributeBigEndian(2 /* OP */, NFT_CMP_NEQ);
            Data(e, 3 /* DATA */, name);
        });
        Expression(r, "masq", null);
        r.End(list);

        Netlink(NETLINK_NETFILTER, [BatchBoundary(NFNL_MSG_BATCH_BEGIN), Table(NFT_MSG_NEWTABLE), Table(NFT_MSG_DELTABLE),
            Table(NFT_MSG_NEWTABLE), c, r, BatchBoundary(NFNL_MSG_BATCH_END)], what);
    }

    private static NetlinkMessage BatchBoundary(ushort type)
    {
        var m = new NetlinkMessage(type, 0, ack: false);
        m.Header(NfGen(0, NFNL_SUBSYS_NFTABLES));
        return m;
    }

    private static void Expression(NetlinkMessage m, string name, Action<NetlinkMessage>? data)
    {
        int element = m.Begin(NFTA_LIST_ELEM);
        m.Attribute(NFTA_EXPR_NAME, name);
        if (data is not null)
        {
            int d = m.Begin(NFTA_EXPR_DATA);
            data(m);
            m.End(d);
        }
        m.End(element);
    }

    private static void Data(NetlinkMessage m, ushort kind, byte[] value)
    {
        int d = m.Begin(kind);
        m.Attribute(NFTA_DATA_VALUE, value);
        m.End(d);
    }
}

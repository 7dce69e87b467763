// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
//
// podswitch XDP programs.
//
//   xdp_uplink       - node uplink: steer ONLY the traffic podswitch owns into the
//                      AF_XDP socket of the receive queue; everything else (ARP, ssh,
//                      ICMP to the node, IPv6, ...) goes to the kernel (XDP_PASS).
//   xdp_redirect_all - pod ports: every frame to the AF_XDP socket of the queue
//                      (same semantics as libbpf's built-in xsk default program).
//
// Both use bpf_redirect_map(&xsks_map, rx_queue_index, XDP_PASS): when no socket
// is bound at that queue (podswitch crashed / not started yet) the kernel keeps
// the packet, so the node stays reachable.
//
// Self-contained on purpose (no kernel / libbpf headers): the only build
// requirement is `clang -O2 -target bpf`, no arch-specific include paths, and no
// BTF (built without -g) so the 2020-era libbpf vendored by libbpf-sys 0.3 can
// load it with "legacy" SEC("maps") map definitions.
//
// Must stay in sync with `UplinkConfigRaw` / `Counter` / `MAX_OWNED_PREFIXES` in
// src/port/xdp_prog.rs.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum xdp_action { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_F_NO_PREALLOC (1u << 0)

/* Legacy map definition understood by every libbpf version. */
struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

/* ---- wire headers (only the fields we read) ---- */
struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__u16 h_proto;
} __attribute__((packed));

struct vlanhdr {
	__u16 tci;
	__u16 proto;
};

struct icmp_echo {
	__u8 type;
	__u8 code;
	__u16 csum;
	__u16 id;
	__u16 seq;
};

struct iphdr {
	__u8 ihl_version; /* little-endian bitfield order: ihl in low nibble */
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct l4ports {
	__u16 source;
	__u16 dest;
};

#define bswap16(x) ((__u16)__builtin_bswap16(x))
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMP 1
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define IPPROTO_IPIP 4
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* ---- configuration (array map, 1 entry, written by the loader) ---- */
#define CFG_VXLAN (1u << 0)
#define CFG_IPIP (1u << 1)
#define CFG_OWNED (1u << 2) /* owned_prefixes holds at least one entry */
#define CFG_SVC_CIDR (1u << 3)
#define CFG_NODEPORT (1u << 4)
#define CFG_SNAT (1u << 5)
/* Capacity of owned_prefixes; MAX_OWNED_PREFIXES in src/port/xdp_prog.rs. */
#define MAX_OWNED_PREFIXES 65536

struct uplink_config {
	__u32 flags;
	__u32 node_addr; /* network byte order */
	__u32 svc_addr;  /* network byte order */
	__u32 svc_mask;  /* network byte order */
	__u16 vxlan_port; /* host byte order */
	__u16 nodeport_lo; /* host byte order, inclusive */
	__u16 nodeport_hi; /* host byte order, inclusive */
	__u16 snat_lo; /* host byte order, inclusive: replies of masqueraded flows */
	__u16 snat_hi;
	__u16 _pad;
};

/* ---- owned destination prefixes (LPM trie, written by the loader) ----
 * The pod CIDR (host-gw peers route pod traffic to the node) and every Service
 * externalIP / LoadBalancer IP (/32). The value is the counter class of a match. */
struct lpm_v4_key {
	__u32 prefixlen; /* 0..32 */
	__u32 addr;      /* network byte order */
};

/* ---- fragmented datagrams to the node address that podswitch owns ----
 * Only the first fragment carries the ports that decide (VXLAN, NodePort, SNAT
 * range). When it is steered, its datagram is remembered here so the later
 * fragments follow it; a later fragment that arrives before its first goes to
 * the kernel (which drops it after its reassembly timeout). The value is the time
 * the first fragment was seen: an entry older than FRAG_LIFETIME_NS is ignored, so
 * a sender's IP id coming round again cannot send a kernel datagram's fragments
 * to podswitch; LRU eviction bounds the map. */
#define FRAG_LIFETIME_NS 2000000000ULL
struct frag_key {
	__u32 saddr; /* network byte order */
	__u32 daddr;
	__u16 id;
	__u8 protocol;
	__u8 _pad;
};

/* ---- counters (per-CPU array, index = enum counter) ---- */
enum counter {
	C_PASS = 0,     /* not ours -> kernel */
	C_VXLAN = 1,
	C_IPIP = 2,
	C_POD = 3,
	C_SVC = 4,
	C_NODEPORT = 5,
	C_NO_SOCKET = 6, /* subset of the above with no socket at rx_queue_index -> kernel */
	C_SNAT = 7,      /* replies to masqueraded flows (node address, SNAT port range) */
	C_SNAT_ICMP_ERROR = 8, /* ICMP errors to the node quoting a masqueraded flow */
	C_EXTERNAL = 9,  /* destination is a Service externalIP / LoadBalancer IP */
	C_FRAGMENT = 10, /* non-first fragment following its steered first fragment */
	C_MAX = 11,
};

struct bpf_map_def SEC("maps") xsks_map = {
	.type = BPF_MAP_TYPE_XSKMAP,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 64,
};

struct bpf_map_def SEC("maps") uplink_cfg = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct uplink_config),
	.max_entries = 1,
};

/* ---- TCP ports of the node address that belong to the kernel (array map, index =
 * port, value != 0): health-check NodePorts, answered by podswitchd's own listener in
 * the node's stack, are left to the kernel although they lie in the NodePort range. */
struct bpf_map_def SEC("maps") kernel_tcp_ports = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 65536,
};

struct bpf_map_def SEC("maps") owned_prefixes = {
	.type = BPF_MAP_TYPE_LPM_TRIE,
	.key_size = sizeof(struct lpm_v4_key),
	.value_size = sizeof(__u32),
	.max_entries = MAX_OWNED_PREFIXES,
	.map_flags = BPF_F_NO_PREALLOC, /* required for LPM tries */
};

struct bpf_map_def SEC("maps") steered_frags = {
	.type = BPF_MAP_TYPE_LRU_HASH,
	.key_size = sizeof(struct frag_key),
	.value_size = sizeof(__u64),
	.max_entries = 4096,
};

struct bpf_map_def SEC("maps") xdp_counters = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = C_MAX,
};

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&xdp_counters, &idx);
	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline int to_xsk(struct xdp_md *ctx, __u32 cls)
{
	long ret = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	count(cls);
	if (ret != XDP_REDIRECT)
		count(C_NO_SOCKET);
	return (int)ret;
}

/* A first fragment steered to podswitch: its later fragments follow it. */
/* A TCP port of the node address the kernel answers (health-check NodePorts). */
static __always_inline int kernel_tcp_port(__u8 protocol, __u16 port)
{
	if (protocol != IPPROTO_TCP)
		return 0;
	__u32 k = port;
	__u32 *v = bpf_map_lookup_elem(&kernel_tcp_ports, &k);
	return v && *v;
}

static __always_inline void remember_datagram(struct iphdr *ip)
{
	if (!(ip->frag_off & bswap16(IP_MF)))
		return;
	struct frag_key k = { .saddr = ip->saddr, .daddr = ip->daddr, .id = ip->id,
			      .protocol = ip->protocol };
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&steered_frags, &k, &now, 0);
}

SEC("xdp")
int xdp_uplink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 key = 0;
	__u16 proto;
	void *l3;

	struct uplink_config *cfg = bpf_map_lookup_elem(&uplink_cfg, &key);
	if (!cfg)
		goto pass;

	if ((void *)(eth + 1) > data_end)
		goto pass;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bswap16(ETH_P_8021Q) || proto == bswap16(ETH_P_8021AD)) {
		struct vlanhdr *vh = l3;
		if ((void *)(vh + 1) > data_end)
			goto pass;
		proto = vh->proto;
		l3 = vh + 1;
	}
	if (proto != bswap16(ETH_P_IP))
		goto pass; /* ARP, IPv6, LLDP, ... */

	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > data_end)
		goto pass;
	__u32 ihl = (ip->ihl_version & 0x0f) * 4;
	if (ihl < sizeof(*ip))
		goto pass;
	__u32 daddr = ip->daddr;
	__u32 flags = cfg->flags;

	/* (c) host-gw: destination inside the pod CIDR; Service externalIPs and
	 * LoadBalancer IPs. One longest-prefix lookup whatever their number. */
	if (flags & CFG_OWNED) {
		struct lpm_v4_key k = { .prefixlen = 32, .addr = daddr };
		__u32 *cls = bpf_map_lookup_elem(&owned_prefixes, &k);
		if (cls)
			return to_xsk(ctx, *cls == C_EXTERNAL ? C_EXTERNAL : C_POD);
	}

	/* (d) destination inside the Service CIDR */
	if ((flags & CFG_SVC_CIDR) && (daddr & cfg->svc_mask) == cfg->svc_addr)
		return to_xsk(ctx, C_SVC);

	if (daddr != cfg->node_addr)
		goto pass;

	/* (b) IPIP to the node address */
	if (ip->protocol == IPPROTO_IPIP) {
		if (flags & CFG_IPIP)
			return to_xsk(ctx, C_IPIP);
		goto pass;
	}

	/* A later fragment follows its first one (steered_frags) if that was steered
	 * recently; otherwise it is the kernel's. */
	if (ip->frag_off & bswap16(IP_OFFSET)) {
		struct frag_key fk = { .saddr = ip->saddr, .daddr = daddr, .id = ip->id,
				       .protocol = ip->protocol };
		__u64 *seen = bpf_map_lookup_elem(&steered_frags, &fk);
		if (seen && bpf_ktime_get_ns() - *seen < FRAG_LIFETIME_NS)
			return to_xsk(ctx, C_FRAGMENT);
		goto pass;
	}

	/* Echo replies to masqueraded pings: the identifier is the SNAT "port". ICMP
	 * errors about masqueraded flows (PMTU, TTL, unreachable from outside the
	 * cluster): the quoted packet left the node with source = node address and a
	 * source port / echo identifier in the SNAT range; podswitch translates the
	 * error back to the pod, the kernel knows nothing about such a flow. */
	if (ip->protocol == IPPROTO_ICMP && (flags & CFG_SNAT)) {
		struct icmp_echo *ic = (void *)ip + ihl;
		if ((void *)(ic + 1) > data_end)
			goto pass;
		if (ic->type == ICMP_ECHOREPLY) {
			/* A large reply comes fragmented: the first fragment decides. */
			__u16 id = bswap16(ic->id);
			if (id >= cfg->snat_lo && id <= cfg->snat_hi) {
				remember_datagram(ip);
				return to_xsk(ctx, C_SNAT);
			}
			goto pass;
		}
		if (ip->frag_off & bswap16(IP_MF))
			goto pass; /* a fragmented ICMP error: not ours to classify */
		if (ic->type != ICMP_DEST_UNREACH && ic->type != ICMP_TIME_EXCEEDED &&
		    ic->type != ICMP_PARAMETERPROB)
			goto pass;
		/* The quote: IPv4 header (options allowed) + at least 8 bytes. */
		struct iphdr *qip = (void *)(ic + 1);
		if ((void *)(qip + 1) > data_end)
			goto pass;
		if ((qip->ihl_version >> 4) != 4)
			goto pass;
		__u32 qihl = (qip->ihl_version & 0x0f) * 4;
		if (qihl < sizeof(*qip))
			goto pass;
		if (qip->saddr != cfg->node_addr)
			goto pass;
		/* A quoted non-first fragment carries no L4 header. */
		if (qip->frag_off & bswap16(IP_OFFSET))
			goto pass;
		struct icmp_echo *ql4 = (void *)qip + qihl; /* 8 bytes: ports or echo header */
		if ((void *)(ql4 + 1) > data_end)
			goto pass;
		__u16 qport;
		if (qip->protocol == IPPROTO_TCP || qip->protocol == IPPROTO_UDP)
			qport = bswap16(((struct l4ports *)ql4)->source);
		else if (qip->protocol == IPPROTO_ICMP && ql4->type == ICMP_ECHO)
			qport = bswap16(ql4->id);
		else
			goto pass;
		if (qport >= cfg->snat_lo && qport <= cfg->snat_hi)
			return to_xsk(ctx, C_SNAT_ICMP_ERROR);
		goto pass;
	}

	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
		goto pass; /* other ICMP etc. to the node */

	__u32 cls;

	struct l4ports *l4 = (void *)ip + ihl;
	if ((void *)(l4 + 1) > data_end)
		goto pass;
	__u16 dport = bswap16(l4->dest);

	if ((flags & CFG_VXLAN) && ip->protocol == IPPROTO_UDP && dport == cfg->vxlan_port)
		cls = C_VXLAN; /* (a) VXLAN */
	else if ((flags & CFG_NODEPORT) && dport >= cfg->nodeport_lo &&
		 dport <= cfg->nodeport_hi && !kernel_tcp_port(ip->protocol, dport))
		cls = C_NODEPORT; /* (e) NodePort range, TCP or UDP */
	else if ((flags & CFG_SNAT) && dport >= cfg->snat_lo && dport <= cfg->snat_hi)
		/* (f) replies to masqueraded pod flows: the SNAT port range, kept clear of
		 * the kernel's own ephemeral ports by configuration. */
		cls = C_SNAT;
	else
		goto pass;
	remember_datagram(ip);
	return to_xsk(ctx, cls);

pass:
	count(C_PASS);
	return XDP_PASS;
}

/* Pod ports. Section xdp.frags: it never reads past the first buffer, so it may be
 * loaded for multi-buffer frames (BPF_F_XDP_HAS_FRAGS, see xdp_prog.rs), which lets the
 * pod's veth carry GSO super-frames to an AF_XDP socket bound with XDP_USE_SG. */
SEC("xdp.frags")
int xdp_redirect_all(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";

/* Packets no socket hook judged (cgroup_skb: offset 0 is the IP header; tc: after the Ethernet
 * header): parse, source check, fragments, and the same tiers by destination. */
#ifndef EG_LIB_PACKET_H
#define EG_LIB_PACKET_H

#include "evaluate.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_ADDRESSES);
	__type(key, struct eg_addr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workload_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_MAX_FRAGMENTS);
	__type(key, struct eg_fragment_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_fragments SEC(".maps");

enum eg_fragment { EG_FRAG_NONE = 0, EG_FRAG_FIRST = 1, EG_FRAG_LATER = 2 };

struct eg_packet {
	__u8 src[16];
	__u8 dst[16];
	__u32 fragment_id;
	__u32 seq;         /* TCP */
	__u32 ack;         /* TCP */
	__u32 payload_off; /* TCP */
	__u16 sport;       /* host order; TCP/UDP outside later fragments */
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 fragment; /* enum eg_fragment */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 hop_limit;      /* IPv4 TTL, IPv6 hop limit */
	__u8 source_routed;  /* the destination field is only the first hop (see eg_parse_packet) */
};

struct eg_ipv4_header {
	__u8 version_ihl;
	__u8 tos;
	__u16 total_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct eg_ipv6_header {
	__u32 version_class_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct eg_tcp_header {
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack;
	__u8 doff;
	__u8 flags;
	__u16 window;
};

#define EG_IPV4_OPTIONS_MAX 40
#define EG_IPOPT_END 0
#define EG_IPOPT_NOOP 1
#define EG_IPOPT_LSRR 131
#define EG_IPOPT_SSRR 137

/* Protocols whose first four transport bytes are the source and destination ports. */
static __always_inline int has_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE ||
	       protocol == IPPROTO_SCTP || protocol == IPPROTO_DCCP;
}

/* IPv4 loose or strict source route options (RFC 791) make the destination field the first hop
 * only. Walks at most the 40 option bytes; 1 when such an option is present, -1 when unreadable. */
static __always_inline int ipv4_source_routed(struct __sk_buff *skb, __u32 start, __u32 end)
{
	__u32 offset = start;

#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_IPV4_OPTIONS_MAX; index++) {
		__u8 option[2];

		if (offset >= end)
			break;
		if (bpf_skb_load_bytes(skb, offset, option, 1))
			return -1;
		if (option[0] == EG_IPOPT_END)
			break;
		if (option[0] == EG_IPOPT_NOOP) {
			offset++;
			continue;
		}
		if (option[0] == EG_IPOPT_LSRR || option[0] == EG_IPOPT_SSRR)
			return 1;
		if (bpf_skb_load_bytes(skb, offset, option, 2) || option[1] < 2)
			return -1;
		offset += option[1];
	}
	return 0;
}

/*
 * Returns 0 with pkt filled, -1 for what cannot be judged (truncated, too many IPv6 headers).
 * Source routing is flagged, never followed: an IPv6 routing header with segments left, or an
 * IPv4 LSRR/SSRR option, sends the packet first to the address in the destination field and
 * from there on to addresses no hook judged, so callers deny it (EG_REASON_SOURCE_ROUTED).
 */
EG_SUBPROG int eg_parse_packet(struct __sk_buff *skb, __u32 l3, struct eg_packet *pkt)
{
	__u8 version;
	__u8 protocol;
	__u32 l4;

	if (!pkt)
		return -1;
	__builtin_memset(pkt, 0, sizeof(*pkt));
	if (bpf_skb_load_bytes(skb, l3, &version, 1))
		return -1;
	if ((version >> 4) == 4) {
		struct eg_ipv4_header ip;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) || (ip.version_ihl & 0xf) < 5)
			return -1;
		mapped_v4(pkt->src, ip.saddr);
		mapped_v4(pkt->dst, ip.daddr);
		pkt->family = 4;
		protocol = ip.protocol;
		frag = bpf_ntohs(ip.frag_off);
		if (frag & 0x1fff)
			pkt->fragment = EG_FRAG_LATER;
		else if (frag & 0x2000)
			pkt->fragment = EG_FRAG_FIRST;
		pkt->fragment_id = bpf_ntohs(ip.id);
		pkt->hop_limit = ip.ttl;
		l4 = l3 + (ip.version_ihl & 0xf) * 4;
		if ((ip.version_ihl & 0xf) > 5) {
			int routed = ipv4_source_routed(skb, l3 + sizeof(ip), l4);

			if (routed < 0)
				return -1;
			pkt->source_routed = routed;
		}
	} else if ((version >> 4) == 6) {
		struct eg_ipv6_header ip;
		int index;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
			return -1;
		__builtin_memcpy(pkt->src, ip.saddr, 16);
		__builtin_memcpy(pkt->dst, ip.daddr, 16);
		pkt->family = 6;
		pkt->hop_limit = ip.hop_limit;
		protocol = ip.nexthdr;
		l4 = l3 + sizeof(ip);
#pragma clang loop unroll(disable)
		for (index = 0; index < EG_MAX_IPV6_EXT_HEADERS; index++) {
			if (protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING || protocol == IPPROTO_DSTOPTS) {
				__u8 ext[4]; /* next header, length, and for a routing header: type, segments left */

				if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
					return -1;
				if (protocol == IPPROTO_ROUTING && ext[3] > 0)
					pkt->source_routed = 1;
				protocol = ext[0];
				l4 += (ext[1] + 1) * 8;
			} else if (protocol == IPPROTO_FRAGMENT) {
				struct {
					__u8 nexthdr;
					__u8 reserved;
					__u16 frag_off;
					__u32 id;
				} ext;
				__u16 frag;

				if (bpf_skb_load_bytes(skb, l4, &ext, sizeof(ext)))
					return -1;
				protocol = ext.nexthdr;
				frag = bpf_ntohs(ext.frag_off);
				if (frag & 0xfff8)
					pkt->fragment = EG_FRAG_LATER;
				else if (frag & 1)
					pkt->fragment = EG_FRAG_FIRST;
				pkt->fragment_id = bpf_ntohl(ext.id);
				l4 += sizeof(ext);
			} else {
				break;
			}
		}
		if (protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING || protocol == IPPROTO_DSTOPTS ||
		    protocol == IPPROTO_FRAGMENT)
			return -1;
	} else {
		return -1;
	}
	pkt->protocol = protocol;
	if (pkt->fragment == EG_FRAG_LATER)
		return 0;
	if (protocol == IPPROTO_TCP) {
		struct eg_tcp_header tcp;

		if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)))
			return -1;
		pkt->sport = bpf_ntohs(tcp.sport);
		pkt->dport = bpf_ntohs(tcp.dport);
		pkt->seq = bpf_ntohl(tcp.seq);
		pkt->ack = bpf_ntohl(tcp.ack);
		pkt->tcp_flags = tcp.flags;
		pkt->payload_off = l4 + (tcp.doff >> 4) * 4;
	} else if (has_ports(protocol)) {
		__u16 ports[2];

		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
			return -1;
		pkt->sport = bpf_ntohs(ports[0]);
		pkt->dport = bpf_ntohs(ports[1]);
	} else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, l4, &pkt->icmp_type, 1))
			return -1;
	}
	return 0;
}

static __always_inline void flow_key_of(const struct eg_packet *pkt, struct eg_flow_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->src, pkt->src, 16);
	__builtin_memcpy(key->dst, pkt->dst, 16);
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->protocol = pkt->protocol;
}

static __always_inline void fragment_key_of(const struct eg_packet *pkt, struct eg_fragment_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->src, pkt->src, 16);
	__builtin_memcpy(key->dst, pkt->dst, 16);
	key->id = pkt->fragment_id;
	key->protocol = pkt->protocol;
}

static __always_inline void flow_from_packet(struct eg_flow *flow, const struct eg_packet *pkt)
{
	__builtin_memcpy(flow->addr, pkt->dst, 16);
	__builtin_memcpy(flow->src, pkt->src, 16);
	flow->family = pkt->family;
	flow->protocol = pkt->protocol;
	flow->port = has_ports(pkt->protocol) ? pkt->dport : 0;
}

/* A drop no rule decided: tier 0, rule 0, and the reason (and, via flow->src, the source) in the event. */
static __always_inline int deny_for(struct eg_flow *flow, __u8 reason)
{
	flow->reason = reason;
	return finish(flow, 0, EG_TIER_DENY_LIST, 0, 1, 0, 0);
}

/* A packet no socket hook judged: the same tiers by destination, IP protocol and port (webGroup
 * TCP rules cannot match without a ClientHello). Later fragments take their first fragment's verdict. */
static __always_inline int judge_packet(const struct eg_packet *pkt, struct eg_flow *flow, struct eg_decision *decision)
{
	struct eg_fragment_key fragment;
	__u8 verdict;

	flow_from_packet(flow, pkt);
	if (pkt->fragment != EG_FRAG_NONE)
		fragment_key_of(pkt, &fragment);
	if (pkt->fragment == EG_FRAG_LATER) {
		__u8 *known = bpf_map_lookup_elem(&eg_fragments, &fragment);

		if (known)
			return *known ? 1 : 0;
		return deny_for(flow, EG_REASON_ORPHAN_FRAGMENT);
	}
	eg_evaluate(flow, decision, EG_WEB_NEVER);
	verdict = finish_decision(flow, decision);
	if (pkt->fragment == EG_FRAG_FIRST)
		bpf_map_update_elem(&eg_fragments, &fragment, &verdict, BPF_ANY);
	return verdict ? 1 : 0;
}

/* A workload may only send from its own addresses (when it declared them). */
static __always_inline int source_allowed(const struct eg_workload *workload, const struct eg_packet *pkt, int required)
{
	struct eg_addr_key key = { .workload_id = workload->workload_id };

	if (!(workload->flags & EG_WORKLOAD_HAS_ADDRESSES))
		return !required;
	__builtin_memcpy(key.addr, pkt->src, 16);
	return bpf_map_lookup_elem(&eg_workload_addrs, &key) != 0;
}

/* What every packet-layer verdict checks before the tiers: the source, and where the packet really goes.
 * Returns 1 when pkt may go on to the tiers, else the (reported) drop's verdict 0. */
static __always_inline int packet_integrity(struct eg_flow *flow, const struct eg_packet *pkt, int source_required)
{
	if (!source_allowed(&flow->workload, pkt, source_required)) {
		flow_from_packet(flow, pkt);
		return deny_for(flow, EG_REASON_FORGED_SOURCE);
	}
	if (pkt->source_routed) {
		flow_from_packet(flow, pkt);
		return deny_for(flow, EG_REASON_SOURCE_ROUTED);
	}
	return 1;
}

/*
 * Sockets whose every packet is judged here, whatever connect/sendmsg saw: raw sockets, ping
 * sockets (one connect()ed to a permitted address may still sendto() any other), and every
 * protocol but TCP and UDP (SCTP, DCCP, UDP-Lite, L2TP/IP, ...), which have no connect/sendmsg
 * hook on every kernel and type (SCTP one-to-many never connects): none of them is ever approved.
 */
static __always_inline int is_socketless(const struct bpf_sock *sk)
{
	return sk->type == SOCK_RAW_TYPE || (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP);
}

/* The flow of a packet a workload's socket sends at cgroup_skb egress, before it is parsed; 0 when the
 * socket's cgroup is no workload's. */
static __always_inline int skb_flow(struct __sk_buff *skb, struct eg_flow *flow)
{
	__builtin_memset(flow, 0, sizeof(*flow));
	if (!find_workload(skb, &flow->workload))
		return 0;
	flow->hook = EG_HOOK_SKB_EGRESS;
	flow->layer = EG_LAYER_PACKET;
	flow->cgroup_id = bpf_skb_cgroup_id(skb);
	flow_set_task(flow);
	return 1;
}

/* Every packet of a socket is_socketless() names is judged here (pkt, flow, decision: working memory). */
static __always_inline int judge_socketless(struct __sk_buff *skb, struct eg_packet *pkt, struct eg_flow *flow,
					    struct eg_decision *decision)
{
	if (!skb_flow(skb, flow))
		return 1;
	if (eg_parse_packet(skb, 0, pkt))
		return deny_for(flow, EG_REASON_MALFORMED);
	if (!packet_integrity(flow, pkt, 0))
		return 0;
	return judge_packet(pkt, flow, decision);
}

/* Only IPv4 with options or IPv6 with an extension header first can be source-routed: one load
 * keeps the check off every other packet of a decided socket. */
static __always_inline int may_be_source_routed(struct __sk_buff *skb)
{
	__u8 head[7]; /* IPv4: version and header length first; IPv6: next header at offset 6 */

	if (bpf_skb_load_bytes(skb, 0, head, sizeof(head)))
		return 1;
	if ((head[0] >> 4) == 4)
		return (head[0] & 0xf) > 5;
	return head[6] == IPPROTO_HOPOPTS || head[6] == IPPROTO_ROUTING || head[6] == IPPROTO_DSTOPTS;
}

/* A packet of a socket a hook decided, from a workload, that names another first hop than its
 * socket was judged for (or cannot be read): dropped and reported. 1 lets it go on. */
static __always_inline int socket_first_hop_allowed(struct __sk_buff *skb, struct eg_packet *pkt, struct eg_flow *flow)
{
	if (!may_be_source_routed(skb) || !skb_flow(skb, flow))
		return 1;
	if (eg_parse_packet(skb, 0, pkt))
		return deny_for(flow, EG_REASON_MALFORMED);
	if (!pkt->source_routed)
		return 1;
	flow_from_packet(flow, pkt);
	return deny_for(flow, EG_REASON_SOURCE_ROUTED);
}

#endif

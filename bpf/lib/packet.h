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
	__u32 payload_off; /* TCP */
	__u16 sport;       /* host order; TCP/UDP outside later fragments */
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 fragment; /* enum eg_fragment */
	__u8 tcp_flags;
	__u8 icmp_type;
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

/* Returns 0 with pkt filled, -1 for what cannot be judged (truncated, too many IPv6 headers). */
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
		l4 = l3 + (ip.version_ihl & 0xf) * 4;
	} else if ((version >> 4) == 6) {
		struct eg_ipv6_header ip;
		int index;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
			return -1;
		__builtin_memcpy(pkt->src, ip.saddr, 16);
		__builtin_memcpy(pkt->dst, ip.daddr, 16);
		pkt->family = 6;
		protocol = ip.nexthdr;
		l4 = l3 + sizeof(ip);
#pragma clang loop unroll(disable)
		for (index = 0; index < EG_MAX_IPV6_EXT_HEADERS; index++) {
			if (protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING || protocol == IPPROTO_DSTOPTS) {
				__u8 ext[2];

				if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
					return -1;
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
		pkt->tcp_flags = tcp.flags;
		pkt->payload_off = l4 + (tcp.doff >> 4) * 4;
	} else if (protocol == IPPROTO_UDP) {
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
	flow->family = pkt->family;
	flow->protocol = pkt->protocol;
	flow->port = pkt->protocol == IPPROTO_TCP || pkt->protocol == IPPROTO_UDP ? pkt->dport : 0;
}

/* A packet no socket hook judged: the same tiers by destination, IP protocol and port (webGroup
 * TCP rules cannot match without a ClientHello). Later fragments take their first fragment's verdict. */
static __always_inline int judge_packet(const struct eg_packet *pkt, struct eg_flow *flow)
{
	struct eg_fragment_key fragment;
	struct eg_decision decision;
	__u8 verdict;

	flow_from_packet(flow, pkt);
	if (pkt->fragment != EG_FRAG_NONE)
		fragment_key_of(pkt, &fragment);
	if (pkt->fragment == EG_FRAG_LATER) {
		__u8 *known = bpf_map_lookup_elem(&eg_fragments, &fragment);

		if (known)
			return *known ? 1 : 0;
		return finish(flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0); /* no first fragment seen */
	}
	eg_evaluate(flow, &decision, EG_WEB_NEVER);
	verdict = finish_decision(flow, &decision);
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

static __always_inline int deny_forged_source(struct eg_flow *flow, const struct eg_packet *pkt)
{
	flow_from_packet(flow, pkt);
	return finish(flow, 0, EG_TIER_DENY_LIST, 0, 1, 0, 0);
}

/* Raw and ping sockets never pass connect/sendmsg hooks: their packets are judged one by one. */
static __always_inline int is_socketless(const struct bpf_sock *sk)
{
	return sk->type == SOCK_RAW_TYPE ||
	       (sk->type == SOCK_DGRAM_TYPE && (sk->protocol == IPPROTO_ICMP || sk->protocol == IPPROTO_ICMPV6));
}

/* Every packet of a raw or ping socket is judged here. */
static __always_inline int judge_socketless(struct __sk_buff *skb)
{
	struct eg_flow flow = {};
	struct eg_packet pkt;

	if (!find_workload(skb, &flow.workload))
		return 1;
	flow.hook = EG_HOOK_SKB_EGRESS;
	flow.layer = EG_LAYER_PACKET;
	flow.cgroup_id = bpf_skb_cgroup_id(skb);
	flow_set_task(&flow);
	if (eg_parse_packet(skb, 0, &pkt))
		return finish(&flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0);
	if (!source_allowed(&flow.workload, &pkt, 0))
		return deny_forged_source(&flow, &pkt);
	return judge_packet(&pkt, &flow);
}

#endif

/* The tc ingress backstop on workload interfaces, and the approved flows it passes unjudged. */
#ifndef EG_LIB_BACKSTOP_H
#define EG_LIB_BACKSTOP_H

#include "packet.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_interfaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_WORKLOADS);
	__type(key, __u32);
	__type(value, struct eg_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workload_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_MAX_FLOWS);
	__type(key, struct eg_flow_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_approved SEC(".maps");

/* Records this packet's 5-tuple in eg_approved, so the backstop passes the flow without judging it again. */
static __always_inline void approve_packet(const struct eg_packet *pkt)
{
	struct eg_flow_key key;
	__u8 approved = 1;

	flow_key_of(pkt, &key);
	bpf_map_update_elem(&eg_approved, &key, &approved, BPF_ANY);
}

static __always_inline int backstop_on(void)
{
	struct eg_config *config = config_get();

	return config && (config->flags & EG_CONFIG_BACKSTOP);
}

/*
 * Connections the workload accepted never pass a connect hook: egress policy does not judge replies on them.
 * The SYN-ACK belongs to a request socket, but cgroup_skb runs with skb->sk set to its full socket (the kernel's
 * sk_to_full_sk): the program sees the listener, for every SYN-ACK of every connection it accepts. Later
 * segments leave from the accepted socket. Both are recorded as approved so the backstop lets the replies through.
 */
static __always_inline int approve_syn_ack(struct __sk_buff *skb)
{
	struct eg_packet pkt;

	if (!backstop_on() || eg_parse_packet(skb, 0, &pkt))
		return 1;
	if (pkt.protocol == IPPROTO_TCP && (pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK))
		approve_packet(&pkt);
	return 1;
}

#define EG_AF_INET6 10
#define EG_ND_HOP_LIMIT 255 /* RFC 4861: neighbour discovery is accepted only from on-link senders */
#define EG_MLD_HOP_LIMIT 1  /* RFC 3810: listener reports never leave the link */

static __always_inline int is_link_local_unicast(const __u8 addr[16])
{
	return addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
}

static __always_inline int is_unspecified(const __u8 addr[16])
{
	__u64 high, low;

	__builtin_memcpy(&high, addr, 8);
	__builtin_memcpy(&low, addr + 8, 8);
	return high == 0 && low == 0;
}

/* A destination the packet cannot leave the node for: link-local unicast, link-scope multicast
 * (ffx2::), or an address of the node itself (the fib says it is not forwarded: a unicast NS to the
 * pod's global gateway address, as neighbour unreachability detection sends). */
static __always_inline int is_link_scoped_destination(struct __sk_buff *skb, const struct eg_packet *pkt)
{
	struct bpf_fib_lookup fib = {};

	if (pkt->dst[0] == 0xff)
		return (pkt->dst[1] & 0x0f) == 0x02;
	if (is_link_local_unicast(pkt->dst))
		return 1;
	fib.family = EG_AF_INET6;
	fib.ifindex = skb->ifindex;
	fib.l4_protocol = IPPROTO_ICMPV6;
	__builtin_memcpy(fib.ipv6_dst, pkt->dst, 16); /* source left unspecified: a link-local one short-cuts the lookup */
	return bpf_fib_lookup(skb, &fib, sizeof(fib), 0) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

/*
 * IPv6 link control the node needs before any policy can apply: neighbour and router discovery
 * (133-137, hop limit 255) and multicast listener reports (130-132, 143, hop limit 1), only when
 * link-scoped (the destination cannot leave the node) and sent from the workload's own, the
 * unspecified or a link-local address. Anything else with these types is judged like any packet.
 */
static __always_inline int is_link_control(struct __sk_buff *skb, const struct eg_workload *workload,
					   const struct eg_packet *pkt)
{
	int discovery, listener;

	if (pkt->protocol != IPPROTO_ICMPV6 || pkt->fragment != EG_FRAG_NONE || pkt->source_routed)
		return 0;
	discovery = pkt->icmp_type >= 133 && pkt->icmp_type <= 137 && pkt->hop_limit == EG_ND_HOP_LIMIT;
	listener = (pkt->icmp_type == 143 || (pkt->icmp_type >= 130 && pkt->icmp_type <= 132)) &&
		   pkt->hop_limit == EG_MLD_HOP_LIMIT;
	if (!discovery && !listener)
		return 0;
	if (!is_unspecified(pkt->src) && !is_link_local_unicast(pkt->src) && !source_allowed(workload, pkt, 1))
		return 0;
	return is_link_scoped_destination(skb, pkt);
}

struct eg_arp_ipv4 {
	__u16 hardware_type;
	__u16 protocol_type;
	__u8 hardware_len;
	__u8 protocol_len;
	__u16 operation;
	__u8 sender_mac[6];
	__u8 sender_ip[4];
	__u8 target_mac[6];
	__u8 target_ip[4];
} __attribute__((packed));

/* ARP (never routed) for the workload's own addresses only: its sender is one of them, or 0.0.0.0
 * for an RFC 5227 probe. Anything else would poison the node's neighbour table and is dropped. */
static __always_inline int arp_verdict(struct __sk_buff *skb, struct eg_flow *flow)
{
	struct eg_arp_ipv4 arp;
	struct eg_packet sender = {};
	__u32 sender_ip, target_ip;

	flow->family = 4;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) || arp.hardware_type != bpf_htons(1) ||
	    arp.protocol_type != bpf_htons(ETH_P_IP) || arp.hardware_len != 6 || arp.protocol_len != 4)
		return deny_for(flow, EG_REASON_MALFORMED);
	__builtin_memcpy(&sender_ip, arp.sender_ip, 4);
	__builtin_memcpy(&target_ip, arp.target_ip, 4);
	mapped_v4(sender.src, sender_ip);
	if (sender_ip == 0 || source_allowed(&flow->workload, &sender, 1))
		return 1;
	mapped_v4(flow->src, sender_ip);
	mapped_v4(flow->addr, target_ip);
	return deny_for(flow, EG_REASON_FORGED_SOURCE);
}

/* A packet a workload's host-side interface received: passed when a socket hook approved its flow (or
 * its first fragment), else judged like a socket-less packet. Returns a TC_ACT_* code. */
static __always_inline int backstop_ingress(struct __sk_buff *skb)
{
	struct eg_flow flow = {};
	struct eg_flow_key key;
	struct eg_packet pkt;
	struct eg_workload *workload;
	__u32 ifindex = skb->ifindex;
	__u32 *workload_id;
	__u8 family;

	workload_id = bpf_map_lookup_elem(&eg_interfaces, &ifindex);
	if (!workload_id)
		return TC_ACT_OK; /* not (or no longer) a workload interface */
	workload = bpf_map_lookup_elem(&eg_workload_ids, workload_id);
	if (!workload)
		return TC_ACT_OK;
	flow.workload = *workload;
	flow.hook = EG_HOOK_TC_INGRESS;
	flow.layer = EG_LAYER_PACKET;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return arp_verdict(skb, &flow) ? TC_ACT_OK : TC_ACT_SHOT;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		family = 4;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		family = 6;
	else
		return TC_ACT_SHOT; /* neither IP nor ARP */
	if (eg_parse_packet(skb, ETH_HLEN, &pkt) || pkt.family != family)
		return deny_for(&flow, EG_REASON_MALFORMED) ? TC_ACT_OK : TC_ACT_SHOT;
	if (is_link_control(skb, &flow.workload, &pkt))
		return TC_ACT_OK;
	if (!packet_integrity(&flow, &pkt, 1))
		return TC_ACT_SHOT;
	if (pkt.fragment != EG_FRAG_LATER) {
		flow_key_of(&pkt, &key);
		if (bpf_map_lookup_elem(&eg_approved, &key)) {
			if (pkt.fragment == EG_FRAG_FIRST) {
				struct eg_fragment_key fragment;
				__u8 approved = 1;

				fragment_key_of(&pkt, &fragment);
				bpf_map_update_elem(&eg_fragments, &fragment, &approved, BPF_ANY);
			}
			return TC_ACT_OK; /* a socket hook judged this flow: live connections are not re-judged */
		}
	}
	return judge_packet(&pkt, &flow) ? TC_ACT_OK : TC_ACT_SHOT;
}

#endif

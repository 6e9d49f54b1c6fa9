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

/* IPv6 link control that may come from :: or a link-local source: neighbour/router discovery
 * (133-137) and multicast listener reports (130-132, 143) to link-local multicast. */
static __always_inline int is_link_control(const struct eg_packet *pkt)
{
	if (pkt->protocol != IPPROTO_ICMPV6 || pkt->fragment != EG_FRAG_NONE)
		return 0;
	if (pkt->icmp_type >= 133 && pkt->icmp_type <= 137)
		return 1;
	return (pkt->icmp_type == 143 || (pkt->icmp_type >= 130 && pkt->icmp_type <= 132)) && pkt->dst[0] == 0xff &&
	       pkt->dst[1] == 0x02;
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

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	workload_id = bpf_map_lookup_elem(&eg_interfaces, &ifindex);
	if (!workload_id)
		return TC_ACT_OK; /* not (or no longer) a workload interface */
	workload = bpf_map_lookup_elem(&eg_workload_ids, workload_id);
	if (!workload)
		return TC_ACT_OK;
	flow.workload = *workload;
	flow.hook = EG_HOOK_TC_INGRESS;
	flow.layer = EG_LAYER_PACKET;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		family = 4;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		family = 6;
	else
		return TC_ACT_SHOT; /* neither IP nor ARP */
	if (eg_parse_packet(skb, ETH_HLEN, &pkt) || pkt.family != family)
		return finish(&flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0) ? TC_ACT_OK : TC_ACT_SHOT;
	if (is_link_control(&pkt))
		return TC_ACT_OK;
	if (!source_allowed(&flow.workload, &pkt, 1))
		return deny_forged_source(&flow, &pkt) ? TC_ACT_OK : TC_ACT_SHOT;
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

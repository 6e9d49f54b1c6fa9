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
	__type(value, struct eg_approval);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_approved SEC(".maps");

/* Records this packet's 5-tuple in eg_approved for workload_id, so the backstop passes the flow on
 * that workload's interfaces without judging it again. */
static __always_inline void approve_packet(const struct eg_packet *pkt, __u32 workload_id)
{
	struct eg_approval approval = { .kind = EG_APPROVED_FLOW };
	struct eg_flow_key key;

	flow_key_of(pkt, &key);
	key.workload_id = workload_id;
	bpf_map_update_elem(&eg_approved, &key, &approval, BPF_ANY);
}

/* The SYN of a flow waiting for its ClientHello: approved for its handshake only (struct eg_approval). */
static __always_inline void approve_handshake(const struct eg_packet *pkt, __u32 workload_id)
{
	struct eg_approval approval = { .kind = EG_APPROVED_HANDSHAKE, .seq_start = pkt->seq + 1, .seq_end = pkt->seq + 1 };
	struct eg_flow_key key;

	flow_key_of(pkt, &key);
	key.workload_id = workload_id;
	bpf_map_update_elem(&eg_approved, &key, &approval, BPF_ANY);
}

/* The approval of this packet's flow for workload_id, or null. */
static __always_inline struct eg_approval *approval_of(const struct eg_packet *pkt, __u32 workload_id)
{
	struct eg_flow_key key;

	flow_key_of(pkt, &key);
	key.workload_id = workload_id;
	return bpf_map_lookup_elem(&eg_approved, &key);
}

/* A pending flow's segment at the backstop: no payload, or payload its own socket already sent (a copy
 * of those bytes can only repeat them: the receiver keeps the ones that arrived first). */
static __always_inline int handshake_passes(struct __sk_buff *skb, const struct eg_packet *pkt,
					    const struct eg_approval *approval)
{
	__u32 payload_len = skb->len > pkt->payload_off ? skb->len - pkt->payload_off : 0;

	if (pkt->protocol != IPPROTO_TCP || pkt->fragment != EG_FRAG_NONE)
		return 0;
	return payload_len == 0 || ((__s32)(pkt->seq - approval->seq_start) >= 0 &&
				    (__s32)(pkt->seq + payload_len - approval->seq_end) <= 0);
}

static __always_inline int backstop_on(void)
{
	struct eg_config *config = config_get();

	return config && (config->flags & EG_CONFIG_BACKSTOP);
}

/* The workload whose host-side interface this is (eg_interfaces), or null. */
static __always_inline struct eg_workload *interface_workload(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u32 *workload_id = bpf_map_lookup_elem(&eg_interfaces, &ifindex);

	return workload_id ? bpf_map_lookup_elem(&eg_workload_ids, workload_id) : 0;
}

/*
 * Connections a workload accepts never pass a connect hook: egress policy does not judge the answers on them.
 * What makes a connection accepted is that the node delivered its SYN over the workload's own interface (tc
 * egress of the host-side end, out of the workload's reach): the answer's 5-tuple is approved for that workload,
 * from its own address. A SYN the workload makes its own stack receive (AF_PACKET on lo, a tc redirect, a veth
 * pair inside its netns) never passes here, so its listener's answer is judged like any packet.
 */
static __always_inline int backstop_inbound(struct __sk_buff *skb)
{
	struct eg_packet pkt, answer = {};
	struct eg_workload *workload = interface_workload(skb);

	if (!workload || (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6)))
		return TC_ACT_OK;
	if (eg_parse_packet(skb, ETH_HLEN, &pkt) || pkt.protocol != IPPROTO_TCP || pkt.fragment != EG_FRAG_NONE ||
	    (pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return TC_ACT_OK;
	__builtin_memcpy(answer.src, pkt.dst, sizeof(answer.src));
	__builtin_memcpy(answer.dst, pkt.src, sizeof(answer.dst));
	answer.sport = pkt.dport;
	answer.dport = pkt.sport;
	answer.protocol = IPPROTO_TCP;
	if (source_allowed(workload, &answer, 0))
		approve_packet(&answer, workload->workload_id);
	return TC_ACT_OK;
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
	struct eg_packet pkt;
	struct eg_workload *workload;
	__u8 family;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	workload = interface_workload(skb);
	if (!workload)
		return TC_ACT_OK; /* not (or no longer) a workload interface */
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
		struct eg_approval *approval = approval_of(&pkt, flow.workload.workload_id);

		if (approval && (approval->kind == EG_APPROVED_FLOW || handshake_passes(skb, &pkt, approval))) {
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

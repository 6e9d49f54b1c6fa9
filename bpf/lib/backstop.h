/* The tc ingress backstop on workload interfaces, and the approved flows it passes unjudged. */
#ifndef EG_LIB_BACKSTOP_H
#define EG_LIB_BACKSTOP_H

#include "scratch.h"

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

/* Not an LRU: one workload's flood must not evict another's live flow. Each workload holds at most
 * EG_MAX_FLOWS_PER_WORKLOAD entries (eg_flow_counts); entries leave when their TCP connection closes (tc, below),
 * with their socket (eg_sock_release), with their workload, or idle (the agent's sweep, src/datapath). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_flow_key);
	__type(value, struct eg_approval);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_approved SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EG_MAX_WORKLOADS + 1);
	__type(key, __u32);
	__type(value, struct eg_flow_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_flow_counts SEC(".maps");

/* The first flight of each flow tc still compares (HANDSHAKE, JUDGED), keyed like eg_approved: tc has no socket
 * to read eg_sk_hello from. Each workload holds at most EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD (eg_flow_count.flights);
 * a flight leaves with its approval, or when the peer acknowledges it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_FIRST_FLIGHTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_flow_key);
	__type(value, struct eg_sk_hello);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_first_flights SEC(".maps");

#define EG_SEEN_REFRESH_NS 1000000000ULL /* seen_ns is rewritten at most once a second per flow */

static __always_inline struct eg_flow_count *flow_count_of(__u32 workload_id)
{
	__u32 index = workload_id <= EG_MAX_WORKLOADS ? workload_id : 0;

	return bpf_map_lookup_elem(&eg_flow_counts, &index);
}

static __always_inline void approval_refused(struct eg_flow_count *count)
{
	__sync_fetch_and_add(&count->refused, 1);
	stat_inc(EG_STAT_FLOWS_REFUSED);
}

/* Adds key -> value to map as a new entry charged to a workload's count *held, capped at cap. Checked, then
 * taken: CPUs adding for one workload at the same instant can pass the cap by one each. Signed: the agent's sweep
 * writes the count back and can race an atomic step, which may leave it one below zero. Returns 0 when added,
 * -ENOSPC when the share is full, else the map's error (-EEXIST: another CPU just added it; -E2BIG: the table
 * is full), the count given back. */
static __always_inline long charged_insert(void *map, const void *key, const void *value, __u32 *held, __u32 cap)
{
	long error;

	if ((__s32)*held >= (__s32)cap)
		return -ENOSPC;
	__sync_fetch_and_add(held, 1);
	error = bpf_map_update_elem(map, key, value, BPF_NOEXIST);
	if (error)
		__sync_fetch_and_add(held, -1);
	return error;
}

/* Removes a flow's first flight, if it has one, and gives its workload's share back. */
static __always_inline void flight_forget(const struct eg_flow_key *key, struct eg_flow_count *count)
{
	if (!bpf_map_delete_elem(&eg_first_flights, key))
		__sync_fetch_and_add(&count->flights, -1);
}

/* Records this packet's 5-tuple in eg_approved for workload_id, so the backstop passes the flow on that
 * workload's interfaces without judging it again: all of it (EG_APPROVED_FLOW), or, for the SYN of a flow
 * waiting for its ClientHello, its handshake only (EG_APPROVED_HANDSHAKE, see struct eg_approval). A new
 * entry takes one of the workload's EG_MAX_FLOWS_PER_WORKLOAD; without one it is refused and counted. replace:
 * an existing entry of the tuple is overwritten (a socket's own judged flow); else it is left as it is. */
static __always_inline void approve(struct eg_scratch *work, const struct eg_packet *pkt, __u32 workload_id, __u8 kind,
				    int replace)
{
	struct eg_flow_count *count;
	long error;

	flow_key_of(pkt, &work->key);
	work->key.workload_id = workload_id;
	__builtin_memset(&work->approval, 0, sizeof(work->approval));
	work->approval.kind = kind;
	/* A SYN's data starts one past its sequence number; a TCP_REPAIR socket's first packet is already data. */
	work->approval.seq_start = kind == EG_APPROVED_HANDSHAKE ? pkt->seq + ((pkt->tcp_flags & TCP_FLAG_SYN) ? 1 : 0) : 0;
	work->approval.seen_ns = bpf_ktime_get_ns();
	count = flow_count_of(workload_id);
	if (replace && !bpf_map_update_elem(&eg_approved, &work->key, &work->approval, BPF_EXIST)) {
		/* The same tuple judged again (a new socket on it): its entry is already counted, and a first flight
		 * an earlier socket left on it is not this one's. */
		if (count)
			flight_forget(&work->key, count);
		return;
	}
	if (!count)
		return;
	error = charged_insert(&eg_approved, &work->key, &work->approval, &count->held, EG_MAX_FLOWS_PER_WORKLOAD);
	if (error && error != -EEXIST) /* -EEXIST: another CPU just added it */
		approval_refused(count);
}

/* Removes an approval (and its first flight) and gives its workload's share back. */
static __always_inline void unapprove(const struct eg_flow_key *key)
{
	struct eg_flow_count *count;

	if (bpf_map_delete_elem(&eg_approved, key))
		return; /* already gone (another CPU, or the agent's sweep) */
	count = flow_count_of(key->workload_id);
	if (!count)
		return;
	__sync_fetch_and_add(&count->held, -1);
	flight_forget(key, count);
}

/* The approval of this packet's flow for workload_id, or null. */
static __always_inline struct eg_approval *approval_of(struct eg_scratch *work, const struct eg_packet *pkt,
						       __u32 workload_id)
{
	flow_key_of(pkt, &work->key);
	work->key.workload_id = workload_id;
	return bpf_map_lookup_elem(&eg_approved, &work->key);
}

#define EG_FLIGHT_COMPARE 64 /* bytes compared per bpf_skb_load_bytes call */

/* A comparison of packet bytes with a first flight's, one chunk per step (a bpf_loop callback's data). */
struct eg_flight_compare {
	struct __sk_buff *skb;
	const struct eg_sk_hello *flight;
	__u32 skb_off;
	__u32 flight_off;
	__u32 len; /* bytes still to compare */
	int matches;
};

static long flight_chunk_matches(__u64 index, void *data)
{
	struct eg_flight_compare *compare = data;
	const struct eg_sk_hello *flight = compare->flight;
	__u32 n = compare->len < EG_FLIGHT_COMPARE ? compare->len : EG_FLIGHT_COMPARE;
	__u8 sent[EG_FLIGHT_COMPARE] = {};
	__u32 base;

	if (n == 0) {
		compare->matches = 1;
		return 1;
	}
	/* equal to n (1..EG_FLIGHT_COMPARE), written so the verifier sees the bound */
	if (!flight || bpf_skb_load_bytes(compare->skb, compare->skb_off, sent, ((n - 1) & (EG_FLIGHT_COMPARE - 1)) + 1))
		return 1;
	base = compare->flight_off & (EG_HELLO_MAX - 1); /* within the flight already: shows the verifier the bound */
#pragma clang loop unroll(disable)
	for (__u32 offset = 0; offset < EG_FLIGHT_COMPARE && offset < n; offset++)
		if (sent[offset] != flight->buf[base + offset])
			return 1;
	compare->skb_off += n;
	compare->flight_off += n;
	compare->len -= n;
	return 0;
}

/* Whether len bytes of the packet at skb_off are the first flight's bytes at flight_off (flight_off + len is
 * within the flight). */
EG_SUBPROG int eg_flight_matches(struct __sk_buff *skb, __u32 skb_off, const struct eg_sk_hello *flight, __u32 flight_off,
				 __u32 len)
{
	struct eg_flight_compare compare = {
		.skb = skb, .flight = flight, .skb_off = skb_off, .flight_off = flight_off, .len = len,
	};

	if (!skb || !flight)
		return 0;
	bpf_loop(EG_HELLO_MAX / EG_FLIGHT_COMPARE + 1, flight_chunk_matches, &compare, 0);
	return compare.matches;
}

/* A segment of a flow whose first flight tc still compares (HANDSHAKE, JUDGED; work->key is its key): no
 * payload, or payload whose bytes within the first flight are the ones its own socket sent (a retransmission
 * or re-segmentation repeats them); bytes past it pass once the ClientHello was permitted (JUDGED) only.
 * Offsets count from the socket's own initial sequence number, so a SYN passes only with that number: the
 * server's stream then starts with the compared bytes, and bytes past the copy can only follow them (a SYN with
 * another number would put forged bytes at the start of the server's stream, at offsets past the copy). Urgent
 * data never passes: the server's stack takes the urgent byte out of the stream, so it would read other bytes
 * than those judged. */
static __always_inline int first_flight_passes(struct __sk_buff *skb, struct eg_scratch *work,
					       const struct eg_approval *approval)
{
	const struct eg_packet *pkt = &work->pkt;
	__u32 payload_len = skb->len > pkt->payload_off ? skb->len - pkt->payload_off : 0;
	struct eg_sk_hello *flight;
	__u32 offset, overlap;

	if (pkt->protocol != IPPROTO_TCP || pkt->fragment != EG_FRAG_NONE || (pkt->tcp_flags & TCP_FLAG_URG))
		return 0;
	if ((pkt->tcp_flags & TCP_FLAG_SYN) && pkt->seq + 1 != approval->seq_start)
		return 0;
	if (payload_len == 0)
		return 1;
	offset = pkt->seq + ((pkt->tcp_flags & TCP_FLAG_SYN) ? 1 : 0) - approval->seq_start; /* data on a SYN */
	flight = bpf_map_lookup_elem(&eg_first_flights, &work->key);
	if (!flight || (__s32)offset < 0)
		return 0;
	if (offset >= flight->len)
		return approval->kind == EG_APPROVED_JUDGED;
	overlap = flight->len - offset;
	if (overlap < payload_len && approval->kind != EG_APPROVED_JUDGED)
		return 0;
	return eg_flight_matches(skb, pkt->payload_off, flight, offset, overlap < payload_len ? overlap : payload_len);
}

/* The peer's ACK on a JUDGED flow (answer: the flow as the workload sends it): once it covers the first flight,
 * the server has those bytes and no copy can replace them; the approval becomes a full one and the flight goes. */
static __always_inline void first_flight_acknowledged(struct eg_scratch *work, const struct eg_packet *answer,
						      __u32 workload_id, __u32 ack, struct eg_flow_count *count)
{
	struct eg_approval *approval = approval_of(work, answer, workload_id);
	struct eg_sk_hello *flight;

	if (!approval || approval->kind != EG_APPROVED_JUDGED)
		return;
	flight = bpf_map_lookup_elem(&eg_first_flights, &work->key);
	/* No copy left to compare with (not expected: a copy goes with its approval's kind): stays judged, fail closed. */
	if (!flight || (__s32)(ack - (approval->seq_start + flight->len)) < 0)
		return;
	approval->kind = EG_APPROVED_FLOW;
	flight_forget(&work->key, count);
}

/*
 * A workload's packet tc passed on an approved flow (work->key is its key): refreshes seen_ns for the
 * agent's idle sweep and ends a TCP flow's approval with its last segment: a reset, the workload's FIN once
 * the peer sent one, or the ACK after both FINs. A segment the workload sends later on that tuple (a
 * retransmission) is judged like any packet.
 */
static __always_inline void workload_segment_passed(struct eg_scratch *work, struct eg_approval *approval,
						    const struct eg_packet *pkt)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - approval->seen_ns > EG_SEEN_REFRESH_NS)
		approval->seen_ns = now;
	if (pkt->protocol != IPPROTO_TCP)
		return;
	if ((pkt->tcp_flags & TCP_FLAG_RST) || ((pkt->tcp_flags & TCP_FLAG_FIN) && (approval->closing & EG_CLOSING_PEER)) ||
	    approval->closing == (EG_CLOSING_WORKLOAD | EG_CLOSING_PEER))
		unapprove(&work->key);
	else if (pkt->tcp_flags & TCP_FLAG_FIN)
		approval->closing |= EG_CLOSING_WORKLOAD;
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
 * A FIN or reset from the peer marks the flow closing (reset too: it cannot be told from a forged one here,
 * so it only lets the idle sweep remove the flow sooner).
 */
static __always_inline int backstop_inbound(struct __sk_buff *skb, struct eg_scratch *work)
{
	struct eg_packet *pkt = &work->pkt, *answer = &work->peer;
	struct eg_workload *workload = interface_workload(skb);
	struct eg_flow_count *count;
	int peer_end;

	if (!workload || (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6)))
		return TC_ACT_OK;
	if (eg_parse_packet(skb, ETH_HLEN, pkt) || pkt->protocol != IPPROTO_TCP || pkt->fragment != EG_FRAG_NONE)
		return TC_ACT_OK;
	peer_end = (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0;
	count = (pkt->tcp_flags & TCP_FLAG_ACK) ? flow_count_of(workload->workload_id) : 0;
	if (!peer_end && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN && !(count && count->flights))
		return TC_ACT_OK; /* neither a flow's end or start, nor an ACK a first flight may wait for */
	__builtin_memset(answer, 0, sizeof(*answer));
	__builtin_memcpy(answer->src, pkt->dst, sizeof(answer->src));
	__builtin_memcpy(answer->dst, pkt->src, sizeof(answer->dst));
	answer->sport = pkt->dport;
	answer->dport = pkt->sport;
	answer->protocol = IPPROTO_TCP;
	if (count && count->flights)
		first_flight_acknowledged(work, answer, workload->workload_id, pkt->ack, count);
	if (peer_end) {
		struct eg_approval *approval = approval_of(work, answer, workload->workload_id);

		if (approval)
			approval->closing |= EG_CLOSING_PEER;
	} else if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN && source_allowed(workload, answer, 0)) {
		/* Never over an existing approval (created only, in one step): a SYN on the tuple of a flow waiting for
		 * (or judged on) its first flight would otherwise make it a full one, its first flight no longer compared. */
		approve(work, answer, workload->workload_id, EG_APPROVED_FLOW, 0);
	}
	return TC_ACT_OK;
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
static __always_inline int arp_verdict(struct __sk_buff *skb, struct eg_flow *flow, struct eg_packet *sender)
{
	struct eg_arp_ipv4 arp;
	__u32 sender_ip, target_ip;

	flow->family = 4;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) || arp.hardware_type != bpf_htons(1) ||
	    arp.protocol_type != bpf_htons(ETH_P_IP) || arp.hardware_len != 6 || arp.protocol_len != 4)
		return deny_for(flow, EG_REASON_MALFORMED);
	__builtin_memcpy(&sender_ip, arp.sender_ip, 4);
	__builtin_memcpy(&target_ip, arp.target_ip, 4);
	__builtin_memset(sender, 0, sizeof(*sender));
	mapped_v4(sender->src, sender_ip);
	if (sender_ip == 0 || source_allowed(&flow->workload, sender, 1))
		return 1;
	mapped_v4(flow->src, sender_ip);
	mapped_v4(flow->addr, target_ip);
	return deny_for(flow, EG_REASON_FORGED_SOURCE);
}

/* A packet a workload's host-side interface received: passed when a socket hook approved its flow (or
 * its first fragment), else judged like a socket-less packet. Returns a TC_ACT_* code. */
static __always_inline int backstop_ingress(struct __sk_buff *skb, struct eg_scratch *work)
{
	struct eg_flow *flow = &work->flow;
	struct eg_packet *pkt = &work->pkt;
	struct eg_workload *workload;
	struct eg_approval *approval;
	__u8 family;

	workload = interface_workload(skb);
	if (!workload)
		return TC_ACT_OK; /* not (or no longer) a workload interface */
	__builtin_memset(flow, 0, sizeof(*flow));
	flow->workload = *workload;
	flow->hook = EG_HOOK_TC_INGRESS;
	flow->layer = EG_LAYER_PACKET;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return arp_verdict(skb, flow, &work->peer) ? TC_ACT_OK : TC_ACT_SHOT;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		family = 4;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		family = 6;
	else
		return TC_ACT_SHOT; /* neither IP nor ARP */
	if (eg_parse_packet(skb, ETH_HLEN, pkt) || pkt->family != family)
		return deny_for(flow, EG_REASON_MALFORMED) ? TC_ACT_OK : TC_ACT_SHOT;
	if (is_link_control(skb, &flow->workload, pkt))
		return TC_ACT_OK;
	if (!packet_integrity(flow, pkt, 1))
		return TC_ACT_SHOT;
	if (pkt->fragment == EG_FRAG_LATER)
		return judge_packet(pkt, flow, &work->decision) ? TC_ACT_OK : TC_ACT_SHOT;
	approval = approval_of(work, pkt, flow->workload.workload_id);
	if (approval && approval->kind != EG_APPROVED_FLOW && !first_flight_passes(skb, work, approval)) {
		/* Not the bytes its socket sent: tampering on the tuple inside the pod. Revoked, so a retry or a
		 * race won another time finds nothing approved, and reported where it goes. */
		unapprove(&work->key);
		flow_from_packet(flow, pkt);
		return deny_for(flow, EG_REASON_NOT_AS_SENT) ? TC_ACT_OK : TC_ACT_SHOT;
	}
	if (approval) {
		if (pkt->fragment == EG_FRAG_FIRST) {
			struct eg_fragment_key fragment;
			__u8 approved = 1;

			fragment_key_of(pkt, &fragment);
			bpf_map_update_elem(&eg_fragments, &fragment, &approved, BPF_ANY);
		}
		workload_segment_passed(work, approval, pkt);
		return TC_ACT_OK; /* a socket hook judged this flow: live connections are not re-judged */
	}
	return judge_packet(pkt, flow, &work->decision) ? TC_ACT_OK : TC_ACT_SHOT;
}

#endif

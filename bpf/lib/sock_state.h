/* Socket state: connect/sendmsg leave a verdict (or an SNI-pending decision) on the socket,
 * cgroup_skb egress reads it, buffers the ClientHello and decides. */
#ifndef EG_LIB_SOCK_STATE_H
#define EG_LIB_SOCK_STATE_H

#include "backstop.h"
#include "tls_hello.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_hello);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_hello SEC(".maps");

/* What the first flight of a TCP socket permitted after it was read named (its ClientHello's SNI or its request's
 * Host): the re-judgment matches it against the rules in force as the first flight was matched (lib/reap.h), so a
 * flow permitted on its name ends when that name stops being permitted. Kernel-private, like eg_sk_state. */
struct eg_sk_name {
	struct eg_domain_key key;  /* the name's lookup key (info.name_ok); its rule_id is set per lookup */
	struct eg_hello_info info; /* what eg_hello_inspect found (zero: no first flight was read) */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_name SEC(".maps");

/* Keeps what a permitted socket's first flight named (hello null: none was read). Without memory for it the socket is
 * re-judged on its address alone, as before names were kept. */
static __always_inline void keep_name(struct bpf_sock *sk, const struct eg_sk_hello *hello, const struct eg_hello_info *info)
{
	struct eg_sk_name *name = bpf_sk_storage_get(&eg_sk_name, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!name)
		return;
	name->info = *info;
	if (hello)
		__builtin_memcpy(&name->key, &hello->key, sizeof(name->key));
}

/* Whether a permitted connect's first flight is read for its events: a TCP flow whose decision is reported (the
 * default action's always is, so every flow in discovery mode), when the cgroup_skb program runs to read it. */
static __always_inline int wants_evidence(const struct eg_flow *flow, const struct eg_decision *decision, __u8 config_flags)
{
	return decision && (config_flags & EG_CONFIG_TLS) && flow->protocol == IPPROTO_TCP && decision->permit && decision->log;
}

/* A permitted socket: with the backstop on, its next packet is checked against what was judged here
 * (the destination the socket will really address, after DNS steering, and the workload) and only
 * then recorded as approved. A socket read for evidence keeps its decision; the buffer for its first flight comes
 * with its first payload (eg_hello_read), so a connect that never sends allocates none (decision null: a steered
 * DNS socket, never read). A socket bound to its port before connect() always keeps state: the port may be the one
 * its workload listens on (SO_REUSEPORT), and the re-judgment tells it from an accepted connection by that state
 * (lib/reap.h); 0 when that state cannot be kept, and the connect is denied. */
static __always_inline int socket_approved(struct bpf_sock_addr *ctx, const struct eg_flow *flow, int v6,
					   const struct eg_decision *decision, __u8 config_flags)
{
	struct eg_sk_state *state;
	int evidence = wants_evidence(flow, decision, config_flags);
	int bound;
	__u32 ip6[4];

	if (!ctx->sk)
		return 1;
	bound = flow->protocol == IPPROTO_TCP && ctx->sk->src_port != 0;
	state = bpf_sk_storage_get(&eg_sk_state, ctx->sk, 0,
				   ((config_flags & EG_CONFIG_BACKSTOP) || evidence || bound) ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!state)
		return !bound;
	state->verdict = EG_SK_PERMIT;
	/* A withdrawn datagram socket's sendto() to another, permitted destination leaves its peer withdrawn; a new
	 * connect() judged its new peer. */
	state->flags = ((config_flags & EG_CONFIG_BACKSTOP) ? EG_SK_RECORD : 0) |
		       ((flow->hook == EG_HOOK_SENDMSG4 || flow->hook == EG_HOOK_SENDMSG6) ? (state->flags & EG_SK_WITHDRAWN) : 0);
	state->approved_sport = 0; /* until its next packet is recorded (record_flow) */
	state->family = sock_addr_get(ctx, v6, ip6);
	__builtin_memcpy(state->addr, ip6, sizeof(state->addr));
	state->port = bpf_ntohs((__u16)ctx->user_port);
	state->protocol = flow->protocol;
	state->workload = flow->workload;
	state->cgroup_id = flow->cgroup_id;
	if (!evidence)
		return 1;
	state->flags |= EG_SK_EVIDENCE;
	state->fallback_action = decision->permit;
	state->fallback_tier = decision->tier;
	state->fallback_log = decision->log;
	state->fallback_rule_id = decision->rule_id;
	state->seq_known = 0;
	state->base_seq = 0;
	state->pid = flow->pid;
	__builtin_memcpy(state->comm, flow->comm, sizeof(state->comm));
	return 1;
}

/* Leaves the socket SNI-pending with the connect-time decision; 0 when storage is unavailable. The ClientHello's
 * buffer is allocated with its first byte (eg_hello_read): allocating and zeroing it here was most of a connect's
 * cost in the hook, paid also by connects that never send. */
static __always_inline int socket_pending(struct bpf_sock_addr *ctx, const struct eg_flow *flow,
					  const struct eg_decision *decision, __u8 config_flags)
{
	struct eg_sk_state *state;

	if (!ctx->sk)
		return 0;
	state = bpf_sk_storage_get(&eg_sk_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state)
		return 0;
	state->verdict = EG_SK_PENDING;
	state->flags = ((config_flags & EG_CONFIG_BACKSTOP) ? EG_SK_RECORD : 0) |
		       ((decision->overflow & EG_OVERFLOW) ? EG_SK_OVERFLOW : 0);
	state->approved_sport = 0;
	state->fallback_action = decision->permit;
	state->fallback_tier = decision->tier;
	state->fallback_log = decision->log;
	state->fallback_rule_id = decision->rule_id;
	state->seq_known = 0;
	state->base_seq = 0;
	state->family = flow->family;
	state->port = flow->port;
	state->protocol = flow->protocol;
	__builtin_memcpy(state->addr, flow->addr, sizeof(state->addr));
	state->cgroup_id = flow->cgroup_id;
	state->workload = flow->workload;
	state->pid = flow->pid;
	__builtin_memcpy(state->comm, flow->comm, sizeof(state->comm));
	state->candidates = decision->candidates;
	return 1;
}

/*
 * connect/sendmsg verdict. Without TLS candidates it is final. With candidates (TCP to a learned
 * address of a webGroup rule, or a tlsRequired rule) the connect goes ahead when any candidate or
 * the fallback could permit, and the ClientHello decides in eg_skb_egress; otherwise EPERM now.
 * More candidates than the list holds (a CDN address shared by many names) leave the socket
 * pending all the same, marked EG_SK_OVERFLOW, and counted.
 */
static __always_inline int judge_socket(struct bpf_sock_addr *ctx, struct eg_flow *flow, int v6)
{
	struct eg_decision decision;
	struct eg_config *config = config_get();
	__u8 config_flags = config ? config->flags : 0;

	eg_evaluate(flow, &decision, (config_flags & EG_CONFIG_TLS) ? EG_WEB_CANDIDATE : EG_WEB_IP_ONLY);
	if (decision.candidates.count == 0) {
		if (!finish_decision(flow, &decision))
			return 0;
		return socket_approved(ctx, flow, v6, &decision, config_flags);
	}
	if (decision_could_permit(&decision) && socket_pending(ctx, flow, &decision, config_flags)) {
		if (decision.overflow & EG_OVERFLOW)
			stat_inc(EG_STAT_CANDIDATE_OVERFLOWS);
		return 1;
	}
	/* Every outcome denies, or no SNI check is possible: no candidate can match. */
	if (!finish_decision(flow, &decision))
		return 0;
	return socket_approved(ctx, flow, v6, &decision, config_flags);
}

#define EG_LOOPBACK_IFINDEX 1 /* lo, in every network namespace */

static __always_inline int same_addr(const __u8 a[16], const __u8 b[16])
{
	__u32 x[4], y[4];

	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* 0 only in a tests-only object (Makefile): judged_mismatch then skips the source and owner check, so that the tc
 * backstop's per-workload approvals are tested on their own. */
#ifndef EG_SKB_CHECKS_SOURCE
#define EG_SKB_CHECKS_SOURCE 1
#endif

/* Whether the packet leaves as the hook judged it: EG_REASON_NONE when it goes to the judged destination,
 * port and protocol, from one of the workload's own addresses, from a socket whose own cgroup is that
 * workload's; otherwise why not (a foreign source is forged-source, anything else not-as-judged). */
static __always_inline __u8 judged_mismatch(struct __sk_buff *skb, const struct eg_sk_state *state,
					    const struct eg_packet *pkt)
{
	struct eg_workload owner;

	if (pkt->protocol != state->protocol || pkt->dport != state->port || pkt->fragment == EG_FRAG_LATER ||
	    !same_addr(pkt->dst, state->addr))
		return EG_REASON_NOT_AS_JUDGED;
	if (!EG_SKB_CHECKS_SOURCE)
		return EG_REASON_NONE;
	/* Loopback traffic never leaves the network namespace, and its sources are loopback addresses. */
	if (skb->ifindex != EG_LOOPBACK_IFINDEX && !source_allowed(&state->workload, pkt, 0))
		return EG_REASON_FORGED_SOURCE;
	if (!find_workload(skb, &owner) || owner.workload_id != state->workload.workload_id)
		return EG_REASON_NOT_AS_JUDGED;
	return EG_REASON_NONE;
}

/*
 * The first packet after a verdict: recorded as approved for the socket's workload when it is what
 * was judged. Anything else (NAT, encapsulation or routing inside the pod that rewrote it, a
 * source that is not the workload's, a socket judged under another cgroup than its own) is dropped
 * and reported where it really goes, and the socket sends nothing more until judged again.
 */
static __always_inline int record_flow(struct __sk_buff *skb, struct eg_sk_state *state, struct eg_scratch *work)
{
	struct eg_flow *flow = &work->flow;
	struct eg_packet *pkt = &work->pkt;
	__u8 reason = EG_REASON_MALFORMED;

	state->flags &= ~EG_SK_RECORD;
	__builtin_memset(flow, 0, sizeof(*flow));
	if (!eg_parse_packet(skb, 0, pkt)) {
		reason = judged_mismatch(skb, state, pkt);
		if (reason == EG_REASON_NONE) {
			approve(work, pkt, state->workload.workload_id,
				state->verdict == EG_SK_PENDING ? EG_APPROVED_HANDSHAKE : EG_APPROVED_FLOW, 1);
			__builtin_memcpy(state->approved_src, pkt->src, sizeof(state->approved_src));
			state->approved_sport = pkt->sport;
			return 1;
		}
		flow_from_packet(flow, pkt);
	}
	state->verdict = EG_SK_DENY;
	flow->workload = state->workload;
	flow->cgroup_id = state->cgroup_id;
	flow->hook = EG_HOOK_SKB_EGRESS;
	flow->layer = EG_LAYER_PACKET;
	flow_set_task(flow);
	return deny_for(flow, reason);
}

/*
 * The backstop's copy of a pending flow's first flight (eg_first_flights, by its approval's key): rewritten with
 * each segment that added bytes, before the segment reaches tc, which passes only those bytes at those sequence
 * numbers. Created with the first payload, within the workload's share. 0 when it cannot be kept (share or table
 * full, no memory): the flow is then decided without its ClientHello (fail closed). Without a handshake
 * approval (no backstop, or none granted) tc passes nothing of the flow unjudged, and nothing is kept.
 */
static __always_inline int flight_recorded(struct eg_scratch *work, const struct eg_sk_state *state,
					   const struct eg_sk_hello *hello)
{
	struct eg_approval *approval = approval_of(work, &work->pkt, state->workload.workload_id);
	struct eg_flow_count *count;

	if (!approval || approval->kind != EG_APPROVED_HANDSHAKE)
		return 1;
	if (!bpf_map_update_elem(&eg_first_flights, &work->key, hello, BPF_EXIST))
		return 1;
	count = flow_count_of(state->workload.workload_id);
	if (!count)
		return 0;
	if (!charged_insert(&eg_first_flights, &work->key, hello, &count->flights, EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD))
		return 1;
	stat_inc(EG_STAT_FLIGHTS_REFUSED);
	return 0;
}

/* The ClientHello's verdict reaches the backstop at once: the handshake approval becomes a judged one (its first
 * flight still compared until the peer acknowledges it), or a full one when it has none (never created here: a
 * tuple the SYN did not establish stays unapproved), or it is removed. */
static __always_inline void handshake_settled(struct __sk_buff *skb, const struct eg_sk_state *state, int permit,
					      struct eg_scratch *work)
{
	struct eg_approval *approval;

	if (eg_parse_packet(skb, 0, &work->pkt))
		return;
	approval = approval_of(work, &work->pkt, state->workload.workload_id);
	if (!approval)
		return;
	if (!permit)
		unapprove(&work->key);
	else if (bpf_map_lookup_elem(&eg_first_flights, &work->key))
		approval->kind = EG_APPROVED_JUDGED;
	else
		approval->kind = EG_APPROVED_FLOW;
}

/* The flow a socket's state describes (its connect), as a later hook reports it: evidence joins its flow by it. */
static __always_inline void flow_from_state(struct eg_flow *flow, const struct eg_sk_state *state, __u8 hook, __u8 layer)
{
	__builtin_memset(flow, 0, sizeof(*flow));
	__builtin_memcpy(flow->addr, state->addr, sizeof(flow->addr));
	flow->port = state->port;
	flow->protocol = state->protocol;
	flow->family = state->family;
	flow->hook = hook;
	flow->layer = layer;
	flow->pid = state->pid;
	flow->cgroup_id = state->cgroup_id;
	flow->workload = state->workload;
	__builtin_memcpy(flow->comm, state->comm, sizeof(flow->comm));
}

/* The overflow walk's state (a bpf_loop callback's data: the verifier checks the step once). */
struct eg_overflow_walk {
	const struct eg_flow *flow;
	struct eg_domain_key *key;
	const struct eg_hello_info *info;
	struct eg_candidate *match;
	__u64 now;
	int found;
};

/* One rule, in order: a candidate whose name set accepts the first flight decides; a rule that decides
 * without the name is where connect found the fallback, and every candidate comes before it. */
static long overflow_step(__u64 index, void *data)
{
	struct eg_overflow_walk *walk = data;
	const struct eg_flow *flow = walk->flow;
	struct eg_candidate candidate = {};
	struct eg_rule_key key;
	struct eg_rule *rule;
	int role;

	if (index >= flow->workload.rule_count)
		return 1;
	key.workload_id = flow->workload.workload_id;
	key.rule_ref = (flow->workload.slot ? EG_MAX_RULES : 0) + (__u32)index;
	rule = bpf_map_lookup_elem(&eg_rules, &key);
	if (!rule)
		return 1;
	role = rule_role(rule, key.rule_ref, flow, walk->now, EG_WEB_CANDIDATE);
	if (role == EG_ROLE_DECIDES)
		return 1;
	if (role != EG_ROLE_CANDIDATE)
		return 0; /* watch rules were reported at connect */
	candidate.rule_id = rule->rule_id;
	candidate.flags = rule->flags;
	candidate.action = rule->action;
	if (!candidate_matches(&candidate, walk->key, walk->info))
		return 0;
	*walk->match = candidate;
	walk->found = 1;
	return 1;
}

/*
 * The candidate that decides an EG_SK_OVERFLOW socket: the workload's rules walked in order for this
 * flow, as at connect, each candidate matched against the first flight (info and key, from
 * eg_hello_inspect). Same semantics as the list: first match wins, so a deny before a permit
 * for the same name denies. 1 with match set, or 0: the fallback decides.
 */
EG_SUBPROG int eg_overflow_match(const struct eg_flow *flow, struct eg_domain_key *key, const struct eg_hello_info *info,
				 struct eg_candidate *match)
{
	struct eg_overflow_walk walk = {};

	if (!flow || !key || !info || !match)
		return 0;
	walk.flow = flow;
	walk.key = key;
	walk.info = info;
	walk.match = match;
	walk.now = bpf_ktime_get_ns();
	bpf_loop(EG_MAX_RULES, overflow_step, &walk, 0);
	return walk.found;
}

/*
 * The verdict of an inspected first flight (info; key: its name's lookup key) under a connect-time decision: the first
 * candidate in rule order its name satisfies (list; past the list's end, overflow, by walking the rules), else the
 * fallback already in *permit, *tier, *rule_id, *log; a baseline that refuses ECH denies it whatever matched. The one
 * rule for the ClientHello's verdict (tls_decide) and for a permitted flow's re-judgment on its name (lib/reap.h).
 */
static __always_inline void name_verdict(const struct eg_flow *flow, const struct eg_candidate_list *list, int overflow,
					 struct eg_domain_key *key, const struct eg_hello_info *info, __u8 *permit,
					 __u8 *tier, __u32 *rule_id, __u8 *log)
{
	struct eg_config *config = config_get();
	struct eg_candidate match = {};
	int index = eg_first_candidate(list, key, info), matched = 0;

	if (index >= 0) {
		match = list->items[index & (EG_TLS_MAX_CANDIDATES - 1)];
		matched = 1;
	} else if (overflow) {
		matched = eg_overflow_match(flow, key, info, &match);
	}
	if (matched) {
		*permit = match.action == EG_ACTION_PERMIT;
		*tier = EG_TIER_POLICY;
		*rule_id = match.rule_id;
		*log = (match.flags & EG_RULE_LOG) != 0;
	}
	if (info->ech && config && (config->flags & EG_CONFIG_DENY_ECH)) {
		*permit = 0; /* the baseline refuses names it cannot see */
		*tier = EG_TIER_BASELINE;
		*rule_id = 0;
	}
}

/* The ClientHello (or what came instead) decides a pending socket; 1 passes this packet. */
static __always_inline int tls_decide(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state,
				      struct eg_sk_hello *hello, int status, struct eg_scratch *work)
{
	struct eg_hello_info info = {};
	struct eg_flow *flow = &work->flow;
	__u8 permit = state->fallback_action, tier = state->fallback_tier, log = state->fallback_log;
	__u32 rule_id = state->fallback_rule_id;
	int verdict;

	flow_from_state(flow, state, EG_HOOK_SKB_EGRESS, EG_LAYER_TLS);
	if (hello) {
		eg_hello_inspect(hello, status, &info);
		name_verdict(flow, &state->candidates, state->flags & EG_SK_OVERFLOW, &hello->key, &info, &permit, &tier,
			     &rule_id, &log);
	}
	flow->layer = info.http ? EG_LAYER_HTTP : EG_LAYER_TLS;
	/* Marked before the event leaves: the agent's answer to a deny is to end the socket marked denied. */
	state->verdict = permit ? EG_SK_PERMIT : EG_SK_DENY;
	verdict = finish(flow, permit, tier, rule_id, log, hello, hello ? hello_evidence(status, &info) : EG_EVIDENCE_OTHER);
	if (verdict)
		keep_name(sk, hello, &info);
	bpf_sk_storage_delete(&eg_sk_hello, sk);
	handshake_settled(skb, state, verdict, work);
	return verdict;
}

/* eg_hello_read's answers besides an enum eg_hello_status. */
enum eg_read {
	EG_READ_PASS = -1,      /* nothing new: the segment passes */
	EG_READ_HOLD = -2,      /* held back */
	EG_READ_NO_BUFFER = -3, /* payload, but no memory for the first flight's buffer */
};

/*
 * One egress segment of a socket whose first flight is read (a pending one, or one read for evidence): its in-order
 * payload is appended to *hello, up to EG_HELLO_MAX; the buffer is created with the first payload (*hello null
 * until then). Returns the first flight's status after it, EG_READ_PASS for a segment without new bytes (handshake,
 * retransmission), EG_READ_HOLD for one that cannot be read now (unparsable, or after a gap the stack fills by
 * sending again) or EG_READ_NO_BUFFER.
 */
static __always_inline int eg_hello_read(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state,
					 struct eg_sk_hello **buffer, struct eg_packet *pkt)
{
	struct eg_sk_hello *hello;
	__u32 payload_len, data_seq, have, offset, skip;

	if (eg_parse_packet(skb, 0, pkt) || pkt->protocol != IPPROTO_TCP || pkt->fragment != EG_FRAG_NONE)
		return EG_READ_HOLD;
	/* Urgent data (send MSG_OOB): the peer's stack takes the urgent byte out of the stream, so it reads other
	 * bytes than these; decided as not a ClientHello (tc passes no urgent segment of a pending flow either). */
	if (pkt->tcp_flags & TCP_FLAG_URG)
		return EG_HELLO_NOT_HELLO;
	payload_len = skb->len > pkt->payload_off ? skb->len - pkt->payload_off : 0;
	if (payload_len == 0) {
		if (pkt->tcp_flags & TCP_FLAG_SYN) {
			state->base_seq = pkt->seq + 1;
			state->seq_known = 1;
		}
		return EG_READ_PASS;
	}
	data_seq = pkt->seq + ((pkt->tcp_flags & TCP_FLAG_SYN) ? 1 : 0); /* data on a SYN (fast open) */
	if (!state->seq_known) {
		state->base_seq = data_seq;
		state->seq_known = 1;
	}
	hello = *buffer;
	if (!hello) {
		hello = bpf_sk_storage_get(&eg_sk_hello, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!hello)
			return EG_READ_NO_BUFFER;
		hello->len = 0;
		hello->sni_len = 0;
		*buffer = hello;
	}
	have = hello->len;
	offset = data_seq - state->base_seq;
	if (offset > have)
		return EG_READ_HOLD;
	skip = have - offset;
	if (skip >= payload_len)
		return EG_READ_PASS; /* bytes already buffered (and already passed to the backstop) */
	return hello_status_after(hello, eg_hello_append(skb, pkt->payload_off + skip, payload_len - skip, hello));
}

/*
 * A packet of an SNI-pending socket. Payload of in-order segments is buffered up to EG_HELLO_MAX;
 * those segments leave while the ClientHello is incomplete (at most that much, and only to an
 * address the connect hook accepted); the segment that completes it is passed or dropped with
 * the verdict, and so is everything after.
 */
static __always_inline int tls_pending(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state,
				       struct eg_scratch *work)
{
	struct eg_sk_hello *hello = bpf_sk_storage_get(&eg_sk_hello, sk, 0, 0);
	int status;

	status = eg_hello_read(skb, sk, state, &hello, &work->pkt);
	if (status == EG_READ_HOLD)
		return 0;
	if (status == EG_READ_PASS)
		return 1;
	if (status == EG_READ_NO_BUFFER || !hello || !flight_recorded(work, state, hello))
		return tls_decide(skb, sk, state, 0, EG_HELLO_NOT_HELLO, work);
	if (status == EG_HELLO_INCOMPLETE)
		return 1;
	return tls_decide(skb, sk, state, hello, status, work);
}

/*
 * A packet of a permitted socket read for evidence: every segment passes as it is; once the first flight is
 * complete (or shows it is neither a ClientHello nor a request head) one evidence event reports what it named,
 * with the connect's decision, and the socket is read no more.
 */
static __always_inline int evidence_pending(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state,
					    struct eg_scratch *work)
{
	struct eg_sk_hello *hello = bpf_sk_storage_get(&eg_sk_hello, sk, 0, 0);
	struct eg_hello_info info = {};
	int status;

	status = eg_hello_read(skb, sk, state, &hello, &work->pkt);
	if (status == EG_READ_NO_BUFFER) {
		state->flags &= ~EG_SK_EVIDENCE; /* no memory for the buffer: the flow goes unread, never held back */
		return 1;
	}
	if (status < 0 || status == EG_HELLO_INCOMPLETE || !hello)
		return 1;
	eg_hello_inspect(hello, status, &info);
	flow_from_state(&work->flow, state, EG_HOOK_SKB_EGRESS, info.http ? EG_LAYER_HTTP : EG_LAYER_TLS);
	stat_inc(EG_STAT_EVIDENCE_READ);
	emit_event(&work->flow, EG_KIND_EVIDENCE, EG_VERDICT_PERMITTED, state->fallback_tier, state->fallback_rule_id, hello,
		   hello_evidence(status, &info));
	keep_name(sk, hello, &info);
	state->flags &= ~EG_SK_EVIDENCE;
	bpf_sk_storage_delete(&eg_sk_hello, sk);
	return 1;
}

/*
 * A packet of a socket whose permission a re-judgment withdrew but could not end (lib/reap.h mark_withdrawn). It
 * passes only where the hooks permitted it since: a datagram socket's sendto() to another, permitted destination
 * (socket_approved kept the mark and recorded that destination), sent as judged. Anything else (its withdrawn peer,
 * or a packet rewritten on its way) is dropped, counted as denied and reported (rate-limited) where it really goes,
 * with the rule that denies the socket now. Returns -1 when the packet goes on to the socket's verdict.
 */
static __always_inline int withdrawn_egress(struct __sk_buff *skb, const struct eg_sk_state *state, struct eg_scratch *work)
{
	struct eg_flow *flow = &work->flow;
	int parsed = !eg_parse_packet(skb, 0, &work->pkt);

	if (parsed && state->verdict == EG_SK_PERMIT && judged_mismatch(skb, state, &work->pkt) == EG_REASON_NONE)
		return -1;
	flow_from_state(flow, state, EG_HOOK_SKB_EGRESS, EG_LAYER_PACKET);
	if (parsed)
		flow_from_packet(flow, &work->pkt);
	flow->reason = EG_REASON_WITHDRAWN;
	return finish(flow, 0, state->fallback_tier, state->fallback_rule_id, 1, 0, 0);
}

/* A packet of a socket that has state: a denied socket sends nothing, a pending one waits for its
 * ClientHello; the first packet after connect records the flow for the backstop. */
static __always_inline int socket_egress(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state,
					 struct eg_scratch *work)
{
	if (state->flags & EG_SK_WITHDRAWN) {
		int withdrawn = withdrawn_egress(skb, state, work);

		if (withdrawn >= 0)
			return withdrawn;
	}
	if (state->verdict == EG_SK_DENY)
		return 0;
	if ((state->flags & EG_SK_RECORD) && !record_flow(skb, state, work))
		return 0;
	if (state->verdict == EG_SK_PENDING)
		return tls_pending(skb, sk, state, work);
	if (state->flags & EG_SK_EVIDENCE)
		return evidence_pending(skb, sk, state, work);
	return 1;
}

/* The rule that let a pending socket connect: its first candidate that permits, else its fallback. */
static __always_inline void pending_permit(const struct eg_sk_state *state, __u8 *tier, __u32 *rule_id)
{
	*tier = state->fallback_tier;
	*rule_id = state->fallback_rule_id;
#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_TLS_MAX_CANDIDATES; index++) {
		const struct eg_candidate *candidate = &state->candidates.items[index];

		if (index >= state->candidates.count)
			break;
		if (candidate->action == EG_ACTION_PERMIT) {
			*tier = EG_TIER_POLICY;
			*rule_id = candidate->rule_id;
			return;
		}
	}
}

/*
 * cgroup/sock_release. A socket still pending its ClientHello never sent one: the connect its rules let through
 * is reported as evidence naming that rule ("no ClientHello"), so no permitted connect goes unrecorded.
 * A closing datagram socket gives back the approval of the flow it last had judged (a resolver's socket per
 * query, say). A TCP connection outlives close() until its FINs: it ends its approval at tc with its last
 * segment (workload_segment_passed). Older flows of an unconnected socket, and TCP flows that end without a
 * segment, are left to the agent's idle sweep.
 */
static __always_inline void socket_released(struct bpf_sock *sk, struct eg_flow *flow)
{
	struct eg_sk_state *state = bpf_sk_storage_get(&eg_sk_state, sk, 0, 0);
	struct eg_flow_key key = {};
	__u32 rule_id;
	__u8 tier;

	if (!state)
		return;
	if (state->verdict == EG_SK_PENDING) {
		pending_permit(state, &tier, &rule_id);
		flow_from_state(flow, state, EG_HOOK_SOCK_RELEASE, EG_LAYER_TLS);
		emit_event(flow, EG_KIND_EVIDENCE, EG_VERDICT_PERMITTED, tier, rule_id, 0, EG_EVIDENCE_NO_HELLO);
	}
	if (sk->type == SOCK_STREAM_TYPE || !state->approved_sport)
		return;
	__builtin_memcpy(key.src, state->approved_src, sizeof(key.src));
	__builtin_memcpy(key.dst, state->addr, sizeof(key.dst));
	key.sport = state->approved_sport;
	key.dport = state->port;
	key.protocol = state->protocol;
	key.workload_id = state->workload.workload_id;
	unapprove(&key);
}

#endif

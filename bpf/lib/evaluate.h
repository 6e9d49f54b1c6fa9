/* The verdict: one tier evaluation (deny list, baseline, workload rules, default) for every hook. */
#ifndef EG_LIB_EVALUATE_H
#define EG_LIB_EVALUATE_H

#include "maps.h"
#include "report.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_WORKLOADS * 2 * EG_MAX_RULES);
	__type(key, struct eg_rule_key);
	__type(value, struct eg_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_rule_cidr_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_rule_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_cidr_key);
	__type(value, struct eg_cidr_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_deny_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_cidr_key);
	__type(value, struct eg_cidr_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_base_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_LEARNED);
	__type(key, struct eg_learned_key);
	__type(value, struct eg_learned_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_learned SEC(".maps");

/* eg_decision.overflow: candidates met past the list's EG_TLS_MAX_CANDIDATES (not remembered: the
 * ClientHello's name is then matched by walking the rules again, eg_overflow_match). */
enum eg_overflow { EG_OVERFLOW = 1 << 0, EG_OVERFLOW_PERMIT = 1 << 1 /* one of them is a permit */ };

/* What evaluate() concluded: the verdict of the deciding rule (or default) and, for TCP at
 * connect time, the TLS candidate rules met before it. */
struct eg_decision {
	__u32 rule_id;
	__u8 permit;
	__u8 tier;
	__u8 log;
	__u8 overflow; /* enum eg_overflow */
	struct eg_candidate_list candidates;
};

/* How webGroup / tlsRequired rules take part for TCP. */
enum eg_web_mode {
	EG_WEB_NEVER = 0,     /* packet layer: no SNI can be known, they never match */
	EG_WEB_CANDIDATE = 1, /* connect with the TLS program attached: collected as candidates */
	EG_WEB_IP_ONLY = 2,   /* connect without the TLS program: the learned-IP condition alone */
};

static __always_inline int proto_port_match(__u8 want_proto, __u16 lo, __u16 hi, const struct eg_flow *flow)
{
	if (want_proto != EG_PROTO_ANY && want_proto != flow->protocol &&
	    !(want_proto == IPPROTO_ICMP && flow->protocol == IPPROTO_ICMPV6))
		return 0;
	return flow->port >= lo && flow->port <= hi;
}

/* by_sni: the SNI will decide a deny webGroup rule, which then needs no learned address: a deny must hold for its
 * names wherever they resolve (the agent may have learned them for a later permit only). */
static __always_inline int rule_destination_match(const struct eg_rule *rule, __u32 rule_ref,
						  const struct eg_flow *flow, __u64 now, int by_sni)
{
	__u16 flags = rule->flags;

	if (!(flags & EG_RULE_ANY_DEST)) {
		if (flags & EG_RULE_HAS_CIDR) {
			struct eg_rule_cidr_key key = {
				.prefixlen = EG_RULE_CIDR_FIXED_BITS + 128,
				.workload_id = flow->workload.workload_id,
				.rule_ref = rule_ref,
			};

			__u32 *hit;

			__builtin_memcpy(key.addr, flow->addr, sizeof(key.addr));
			/* 0: an exclusion (an IPv6 prefix covering ::ffff:0:0/96 never matches IPv4). */
			hit = bpf_map_lookup_elem(&eg_rule_cidrs, &key);
			if (!hit || !*hit)
				return 0;
		} else if (!(flags & EG_RULE_WEB)) {
			return 0; /* no destination at all: never matches */
		}
	}
	if ((flags & EG_RULE_WEB) && !(flags & EG_RULE_ANY_NAME) && !(by_sni && rule->action == EG_ACTION_DENY)) {
		struct eg_learned_key key = {
			.workload_id = flow->workload.workload_id,
			.rule_id = rule->rule_id,
		};
		struct eg_learned_value *learned;

		__builtin_memcpy(key.addr, flow->addr, sizeof(key.addr));
		learned = bpf_map_lookup_elem(&eg_learned, &key);
		if (!learned || learned->expires_ns <= now)
			return 0;
	}
	return 1;
}

/* What one rule is to a flow: evaluation order is the caller's, this is the rule alone. */
enum eg_rule_role {
	EG_ROLE_NONE = 0,      /* does not match the flow */
	EG_ROLE_WATCH = 1,     /* matches a watch rule: reported, never decides */
	EG_ROLE_CANDIDATE = 2, /* a TLS candidate: the first flight's name decides (EG_WEB_CANDIDATE only) */
	EG_ROLE_DECIDES = 3,   /* matches and decides */
};

/*
 * A webGroup rule matches UDP only when its protocol is explicitly udp (QUIC's SNI is not visible)
 * and never other protocols; for TCP it depends on web_mode. tlsRequired rules are TCP only.
 * Shared by eg_evaluate and the overflow walk (eg_overflow_match), so both see the same rules.
 */
static __always_inline int rule_role(const struct eg_rule *rule, __u32 rule_ref, const struct eg_flow *flow, __u64 now,
				     int web_mode)
{
	int tls;

	if (!proto_port_match(rule->protocol, rule->port_lo, rule->port_hi, flow))
		return EG_ROLE_NONE;
	if ((rule->flags & EG_RULE_WEB) && flow->protocol != IPPROTO_TCP &&
	    !(flow->protocol == IPPROTO_UDP && rule->protocol == IPPROTO_UDP))
		return EG_ROLE_NONE;
	if ((rule->flags & EG_RULE_TLS_REQUIRED) && flow->protocol != IPPROTO_TCP)
		return EG_ROLE_NONE;
	tls = flow->protocol == IPPROTO_TCP && (rule->flags & (EG_RULE_WEB | EG_RULE_TLS_REQUIRED));
	if (tls && web_mode == EG_WEB_NEVER)
		return EG_ROLE_NONE;
	if (!rule_destination_match(rule, rule_ref, flow, now, tls && web_mode == EG_WEB_CANDIDATE))
		return EG_ROLE_NONE;
	if (rule->flags & EG_RULE_WATCH)
		return EG_ROLE_WATCH;
	return tls && web_mode == EG_WEB_CANDIDATE ? EG_ROLE_CANDIDATE : EG_ROLE_DECIDES;
}

static __always_inline void decision_set(struct eg_decision *decision, __u8 permit, __u8 tier, __u32 rule_id, __u8 log)
{
	decision->permit = permit;
	decision->tier = tier;
	decision->rule_id = rule_id;
	decision->log = log;
}

/* The one tier evaluation (deny list, baseline, workload rules in order, default) for every hook. */
EG_SUBPROG int eg_evaluate(const struct eg_flow *flow, struct eg_decision *decision, int web_mode)
{
	struct eg_cidr_key cidr_key = { .prefixlen = 128 };
	struct eg_cidr_value *cidr;
	struct eg_config *config;
	__u64 now;

	if (!flow || !decision)
		return 0;
	decision->candidates.count = 0;
	decision->overflow = 0;
	__builtin_memcpy(cidr_key.addr, flow->addr, sizeof(cidr_key.addr));
	cidr = bpf_map_lookup_elem(&eg_deny_cidrs, &cidr_key);
	if (cidr && proto_port_match(cidr->protocol, cidr->port_lo, cidr->port_hi, flow)) {
		decision_set(decision, 0, EG_TIER_DENY_LIST, cidr->rule_id, 1);
		return 0;
	}

	cidr = bpf_map_lookup_elem(&eg_base_cidrs, &cidr_key);
	if (cidr && proto_port_match(cidr->protocol, cidr->port_lo, cidr->port_hi, flow)) {
		decision_set(decision, 1, EG_TIER_BASELINE, cidr->rule_id, cidr->flags & EG_RULE_LOG);
		return 0;
	}

	now = bpf_ktime_get_ns();
#pragma clang loop unroll(disable)
	for (__u32 index = 0; index < EG_MAX_RULES; index++) {
		struct eg_rule_key key;
		struct eg_rule *rule;
		__u8 permit;
		int role;

		if (index >= flow->workload.rule_count)
			break;
		key.workload_id = flow->workload.workload_id;
		key.rule_ref = (flow->workload.slot ? EG_MAX_RULES : 0) + index;
		rule = bpf_map_lookup_elem(&eg_rules, &key);
		if (!rule)
			break; /* never expected: fall to the default rather than guess */
		role = rule_role(rule, key.rule_ref, flow, now, web_mode);
		if (role == EG_ROLE_NONE)
			continue;
		permit = rule->action == EG_ACTION_PERMIT;
		if (role == EG_ROLE_WATCH) {
			emit(flow, permit ? EG_VERDICT_WOULD_PERMIT : EG_VERDICT_WOULD_DENY, EG_TIER_POLICY, rule->rule_id);
			continue;
		}
		if (role == EG_ROLE_CANDIDATE) {
			__u8 count = decision->candidates.count;
			struct eg_candidate *candidate;

			if (count >= EG_TLS_MAX_CANDIDATES) {
				/* Not remembered: the ClientHello walks the rules again (eg_overflow_match). */
				decision->overflow |= EG_OVERFLOW | (permit ? EG_OVERFLOW_PERMIT : 0);
				continue;
			}
			candidate = &decision->candidates.items[count & (EG_TLS_MAX_CANDIDATES - 1)];
			candidate->rule_id = rule->rule_id;
			candidate->flags = rule->flags;
			candidate->action = rule->action;
			candidate->_pad = 0;
			decision->candidates.count = count + 1;
			continue;
		}
		decision_set(decision, permit, EG_TIER_POLICY, rule->rule_id, (rule->flags & EG_RULE_LOG) != 0);
		return 0;
	}

	config = config_get();
	decision_set(decision, config && config->default_action == EG_ACTION_PERMIT, EG_TIER_DEFAULT, 0, 1);
	return 0;
}

/* Whether some outcome of a connect-time decision could permit: its fallback, or a TLS candidate (remembered or not). */
static __always_inline int decision_could_permit(const struct eg_decision *decision)
{
	if (decision->permit || (decision->overflow & EG_OVERFLOW_PERMIT))
		return 1;
#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_TLS_MAX_CANDIDATES; index++) {
		if (index >= decision->candidates.count)
			break;
		if (decision->candidates.items[index].action == EG_ACTION_PERMIT)
			return 1;
	}
	return 0;
}

static __always_inline int finish_decision(const struct eg_flow *flow, const struct eg_decision *decision)
{
	return finish(flow, decision->permit, decision->tier, decision->rule_id, decision->log, 0, 0);
}

#endif

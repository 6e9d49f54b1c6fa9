// SPDX-License-Identifier: GPL-2.0
/* egressguard datapath: per-workload egress verdicts at the cgroup sock_addr hooks.
 * connect/sendmsg decide (deny list, baseline, workload rules, default) and steer DNS to the
 * agent's proxy; recvmsg/getpeername make a steered socket see the resolver it addressed. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "egressguard.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, struct eg_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workloads SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_origin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EG_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EG_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_stats SEC(".maps");


/* Never called or loaded: its signature keeps struct eg_event in the object's BTF, where
 * userspace checks the event layout (ring buffer maps carry no value type). */
__attribute__((noinline, used)) int eg_abi_event(struct eg_event *event)
{
	return event != 0;
}

/* One connection attempt as the verdict logic sees it. */
struct eg_flow {
	__u8 addr[16];
	__u16 port; /* host order */
	__u8 protocol;
	__u8 family;
	__u8 hook;
	__u64 cgroup_id;
	struct eg_workload workload;
};

static __always_inline void stat_inc(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&eg_stats, &index);

	if (value)
		*value += 1;
}

/*
 * getaddrinfo() sorts answers by connecting a UDP socket to port 0 of each address (RFC 6724 source selection);
 * nothing is sent. The verdict still applies; only the event, which would bury real attempts, is left out.
 */
static __always_inline int is_address_probe(const struct eg_flow *flow)
{
	return flow->protocol == IPPROTO_UDP && flow->port == 0;
}

static __always_inline void emit(const struct eg_flow *flow, __u8 verdict, __u8 tier, __u32 rule_id)
{
	struct eg_event *event;

	if (is_address_probe(flow))
		return;
	event = bpf_ringbuf_reserve(&eg_events, sizeof(*event), 0);
	if (!event) {
		stat_inc(EG_STAT_EVENTS_LOST);
		return;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	event->cgroup_id = flow->cgroup_id;
	event->workload_id = flow->workload.workload_id;
	event->rule_id = rule_id;
	__builtin_memcpy(event->addr, flow->addr, sizeof(event->addr));
	event->port = flow->port;
	event->protocol = flow->protocol;
	event->family = flow->family;
	event->verdict = verdict;
	event->tier = tier;
	event->layer = EG_LAYER_CONNECT;
	event->hook = flow->hook;
	event->pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_get_current_comm(event->comm, sizeof(event->comm)))
		__builtin_memset(event->comm, 0, sizeof(event->comm));
	__builtin_memset(event->_pad, 0, sizeof(event->_pad));
	bpf_ringbuf_submit(event, 0);
}

/* Deepest enrolled ancestor (or the cgroup itself) gives the workload: nested cgroups inherit it. */
static __always_inline int find_workload(struct eg_workload *out)
{
	int found = 0;

#pragma clang loop unroll(disable)
	for (int level = 0; level < EG_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		struct eg_workload *workload;

		if (!id)
			break;
		workload = bpf_map_lookup_elem(&eg_workloads, &id);
		if (workload) {
			*out = *workload;
			found = 1;
		}
	}
	return found;
}

static __always_inline int proto_port_match(__u8 want_proto, __u16 lo, __u16 hi, const struct eg_flow *flow)
{
	if (want_proto != EG_PROTO_ANY && want_proto != flow->protocol &&
	    !(want_proto == IPPROTO_ICMP && flow->protocol == IPPROTO_ICMPV6))
		return 0;
	return flow->port >= lo && flow->port <= hi;
}

static __always_inline int rule_destination_match(const struct eg_rule *rule, __u32 rule_ref,
						  const struct eg_flow *flow, __u64 now)
{
	__u16 flags = rule->flags;

	if (!(flags & EG_RULE_ANY_DEST)) {
		if (flags & EG_RULE_HAS_CIDR) {
			struct eg_rule_cidr_key key = {
				.prefixlen = EG_RULE_CIDR_FIXED_BITS + 128,
				.workload_id = flow->workload.workload_id,
				.rule_ref = rule_ref,
			};

			__builtin_memcpy(key.addr, flow->addr, sizeof(key.addr));
			if (!bpf_map_lookup_elem(&eg_rule_cidrs, &key))
				return 0;
		} else if (!(flags & EG_RULE_WEB)) {
			return 0; /* no destination at all: never matches */
		}
	}
	if ((flags & EG_RULE_WEB) && !(flags & EG_RULE_ANY_NAME)) {
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

static __always_inline int decide(const struct eg_flow *flow, __u8 verdict, __u8 tier, __u32 rule_id, int log)
{
	if (verdict == EG_VERDICT_PERMITTED) {
		stat_inc(EG_STAT_PERMITTED);
		if (log)
			emit(flow, verdict, tier, rule_id);
		return 1;
	}
	stat_inc(EG_STAT_DENIED);
	emit(flow, EG_VERDICT_DENIED, tier, rule_id);
	return 0;
}

/* Returns 1 to permit, 0 to deny (the syscall fails with EPERM). */
static __always_inline int evaluate(const struct eg_flow *flow)
{
	struct eg_cidr_key cidr_key = { .prefixlen = 128 };
	struct eg_cidr_value *cidr;
	struct eg_config *config;
	__u32 zero = 0;
	__u64 now;

	__builtin_memcpy(cidr_key.addr, flow->addr, sizeof(cidr_key.addr));
	cidr = bpf_map_lookup_elem(&eg_deny_cidrs, &cidr_key);
	if (cidr && proto_port_match(cidr->protocol, cidr->port_lo, cidr->port_hi, flow))
		return decide(flow, EG_VERDICT_DENIED, EG_TIER_DENY_LIST, cidr->rule_id, 1);

	cidr = bpf_map_lookup_elem(&eg_base_cidrs, &cidr_key);
	if (cidr && proto_port_match(cidr->protocol, cidr->port_lo, cidr->port_hi, flow))
		return decide(flow, EG_VERDICT_PERMITTED, EG_TIER_BASELINE, cidr->rule_id,
			      cidr->flags & EG_RULE_LOG);

	now = bpf_ktime_get_ns();
#pragma clang loop unroll(disable)
	for (__u32 index = 0; index < EG_MAX_RULES; index++) {
		struct eg_rule_key key;
		struct eg_rule *rule;
		__u8 permit;

		if (index >= flow->workload.rule_count)
			break;
		key.workload_id = flow->workload.workload_id;
		key.rule_ref = (flow->workload.slot ? EG_MAX_RULES : 0) + index;
		rule = bpf_map_lookup_elem(&eg_rules, &key);
		if (!rule)
			break; /* never expected: fall to the default rather than guess */
		if (!proto_port_match(rule->protocol, rule->port_lo, rule->port_hi, flow) ||
		    !rule_destination_match(rule, key.rule_ref, flow, now))
			continue;
		permit = rule->action == EG_ACTION_PERMIT;
		if (rule->flags & EG_RULE_WATCH) {
			emit(flow, permit ? EG_VERDICT_WOULD_PERMIT : EG_VERDICT_WOULD_DENY, EG_TIER_POLICY,
			     rule->rule_id);
			continue;
		}
		return decide(flow, permit ? EG_VERDICT_PERMITTED : EG_VERDICT_DENIED, EG_TIER_POLICY,
			      rule->rule_id, rule->flags & EG_RULE_LOG);
	}

	config = bpf_map_lookup_elem(&eg_config, &zero);
	if (config && config->default_action == EG_ACTION_PERMIT)
		return decide(flow, EG_VERDICT_PERMITTED, EG_TIER_DEFAULT, 0, 1);
	return decide(flow, EG_VERDICT_DENIED, EG_TIER_DEFAULT, 0, 1);
}

static __always_inline int is_dns(const struct eg_flow *flow)
{
	return flow->port == EG_DNS_PORT &&
	       (flow->protocol == IPPROTO_UDP || flow->protocol == IPPROTO_TCP);
}

static __always_inline void remember_origin(struct bpf_sock_addr *ctx, const struct eg_flow *flow)
{
	struct eg_sk_origin *origin;

	if (!ctx->sk)
		return;
	origin = bpf_sk_storage_get(&eg_sk_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!origin)
		return;
	__builtin_memcpy(origin->addr, flow->addr, sizeof(origin->addr));
	origin->port = bpf_htons(flow->port);
	origin->family = flow->family;
}

static __always_inline void mapped_v4(__u8 addr[16], __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4_be, 4);
}

static __always_inline int verdict4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct eg_flow flow = {};
	struct eg_config *config;
	__u32 zero = 0;

	if (!find_workload(&flow.workload))
		return 1;
	mapped_v4(flow.addr, ctx->user_ip4);
	flow.port = bpf_ntohs((__u16)ctx->user_port);
	flow.protocol = ctx->protocol;
	flow.family = 4;
	flow.hook = hook;
	flow.cgroup_id = bpf_get_current_cgroup_id();

	if (is_dns(&flow)) {
		config = bpf_map_lookup_elem(&eg_config, &zero);
		if (config && (config->flags & EG_CONFIG_PROXY_V4)) {
			__u32 proxy;

			remember_origin(ctx, &flow);
			__builtin_memcpy(&proxy, &config->proxy_v4[12], 4);
			ctx->user_ip4 = proxy;
			ctx->user_port = bpf_htons(config->proxy_port);
			stat_inc(EG_STAT_DNS_STEERED);
			return 1;
		}
	}
	return evaluate(&flow);
}

static __always_inline int is_mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff);
}

static __always_inline int verdict6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct eg_flow flow = {};
	struct eg_config *config;
	__u32 ip6[4];
	__u32 zero = 0;

	if (!find_workload(&flow.workload))
		return 1;
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	__builtin_memcpy(flow.addr, ip6, sizeof(flow.addr));
	flow.port = bpf_ntohs((__u16)ctx->user_port);
	flow.protocol = ctx->protocol;
	flow.family = is_mapped(ip6) ? 4 : 6;
	flow.hook = hook;
	flow.cgroup_id = bpf_get_current_cgroup_id();

	if (is_dns(&flow)) {
		__u8 need = flow.family == 4 ? EG_CONFIG_PROXY_V4 : EG_CONFIG_PROXY_V6;

		config = bpf_map_lookup_elem(&eg_config, &zero);
		if (config && (config->flags & need)) {
			__u32 proxy[4];

			remember_origin(ctx, &flow);
			if (flow.family == 4)
				__builtin_memcpy(proxy, config->proxy_v4, sizeof(proxy));
			else
				__builtin_memcpy(proxy, config->proxy_v6, sizeof(proxy));
			ctx->user_ip6[0] = proxy[0];
			ctx->user_ip6[1] = proxy[1];
			ctx->user_ip6[2] = proxy[2];
			ctx->user_ip6[3] = proxy[3];
			ctx->user_port = bpf_htons(config->proxy_port);
			stat_inc(EG_STAT_DNS_STEERED);
			return 1;
		}
	}
	return evaluate(&flow);
}

/* A reply (or peer) that is the proxy on a steered socket is shown as the resolver first addressed. */
static __always_inline void restore4(struct bpf_sock_addr *ctx)
{
	struct eg_config *config;
	struct eg_sk_origin *origin;
	__u32 zero = 0;
	__u32 proxy;

	if (!ctx->sk)
		return;
	config = bpf_map_lookup_elem(&eg_config, &zero);
	if (!config || !(config->flags & EG_CONFIG_PROXY_V4))
		return;
	__builtin_memcpy(&proxy, &config->proxy_v4[12], 4);
	if (ctx->user_ip4 != proxy || ctx->user_port != bpf_htons(config->proxy_port))
		return;
	origin = bpf_sk_storage_get(&eg_sk_origin, ctx->sk, 0, 0);
	if (!origin || origin->family != 4)
		return;
	__builtin_memcpy(&proxy, &origin->addr[12], 4);
	ctx->user_ip4 = proxy;
	ctx->user_port = origin->port;
}

static __always_inline void restore6(struct bpf_sock_addr *ctx)
{
	struct eg_config *config;
	struct eg_sk_origin *origin;
	__u32 zero = 0;
	__u32 peer[4], proxy[4], orig[4];

	if (!ctx->sk)
		return;
	config = bpf_map_lookup_elem(&eg_config, &zero);
	if (!config || ctx->user_port != bpf_htons(config->proxy_port))
		return;
	peer[0] = ctx->user_ip6[0];
	peer[1] = ctx->user_ip6[1];
	peer[2] = ctx->user_ip6[2];
	peer[3] = ctx->user_ip6[3];
	if (is_mapped(peer)) {
		if (!(config->flags & EG_CONFIG_PROXY_V4))
			return;
		__builtin_memcpy(proxy, config->proxy_v4, sizeof(proxy));
	} else {
		if (!(config->flags & EG_CONFIG_PROXY_V6))
			return;
		__builtin_memcpy(proxy, config->proxy_v6, sizeof(proxy));
	}
	if (peer[0] != proxy[0] || peer[1] != proxy[1] || peer[2] != proxy[2] || peer[3] != proxy[3])
		return;
	origin = bpf_sk_storage_get(&eg_sk_origin, ctx->sk, 0, 0);
	if (!origin)
		return;
	__builtin_memcpy(orig, origin->addr, sizeof(orig));
	ctx->user_ip6[0] = orig[0];
	ctx->user_ip6[1] = orig[1];
	ctx->user_ip6[2] = orig[2];
	ctx->user_ip6[3] = orig[3];
	ctx->user_port = origin->port;
}

SEC("cgroup/connect4")
int eg_connect4(struct bpf_sock_addr *ctx)
{
	return verdict4(ctx, EG_HOOK_CONNECT4);
}

SEC("cgroup/connect6")
int eg_connect6(struct bpf_sock_addr *ctx)
{
	return verdict6(ctx, EG_HOOK_CONNECT6);
}

SEC("cgroup/sendmsg4")
int eg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return verdict4(ctx, EG_HOOK_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int eg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return verdict6(ctx, EG_HOOK_SENDMSG6);
}

SEC("cgroup/recvmsg4")
int eg_recvmsg4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int eg_recvmsg6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int eg_getpeername4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int eg_getpeername6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}

/* Live sockets re-judged. Connect-time verdicts last as long as the socket, so after every policy
 * write (and every SNI deny) the agent runs the socket iterators: each workload socket its policy no
 * longer permits is ended with bpf_sock_destroy (kernel >= 6.5; the application sees ECONNABORTED at
 * once) and its tc approval is purged. One that cannot be ended (before 6.5) is marked withdrawn in its
 * own state, and the cgroup_skb program drops every packet it sends (socket_egress, lib/sock_state.h). */
#ifndef EG_LIB_REAP_H
#define EG_LIB_REAP_H

#include <bpf/bpf_core_read.h>
#include "dns_steer.h"

/* The kernel types the iterators read: only the fields used, relocated (CO-RE) against the running
 * kernel's BTF. The ___eg suffix keeps them apart from any uapi name. */
struct seq_file;

struct bpf_iter_meta___eg {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct kernfs_node___eg {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup___eg {
	int level;
	struct kernfs_node___eg *kn;
	struct cgroup___eg *ancestors[];
} __attribute__((preserve_access_index));

struct sock_common___eg {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock_cgroup_data___eg {
	struct cgroup___eg *cgroup;
} __attribute__((preserve_access_index));

struct sock___eg {
	struct sock_common___eg __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
	struct sock_cgroup_data___eg sk_cgrp_data;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp___eg {
	struct bpf_iter_meta___eg *meta;
	struct sock_common___eg *sk_common;
} __attribute__((preserve_access_index));

struct bpf_iter__udp___eg {
	struct bpf_iter_meta___eg *meta;
	struct sock___eg *udp_sk;
} __attribute__((preserve_access_index));

/* Weak: the object still loads on kernels before 6.5, where the iterators only report (see reap_end). */
extern int bpf_sock_destroy(struct sock_common___eg *sk) __ksym __weak;

#define EG_AF_INET 2
#define EG_AF_INET6 10
#define EG_TCP_ESTABLISHED 1
#define EG_TCP_SYN_SENT 2
#define EG_TCP_CLOSE_WAIT 8
#define EG_TCP_LISTEN 10

/* (workload id, local port) of each workload listener seen in this pass: the iterator visits
 * listeners before connections, and a connection without state on such a port came from accept()
 * (inbound: egress rules do not judge it; reap_socket). Not pinned; the agent empties it before
 * each pass. */
struct eg_listener_key {
	__u32 workload_id;
	__u16 port;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct eg_listener_key);
	__type(value, __u8);
} eg_reap_listeners SEC(".maps");

/* The socket's workload: the deepest enrolled ancestor of the cgroup it was created in (the same
 * rule find_workload applies to the calling task). */
static __always_inline int reaped_socket_workload(struct sock___eg *sk, struct eg_flow *flow)
{
	struct cgroup___eg *cgroup = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	__u64 ancestors = bpf_core_field_offset(struct cgroup___eg, ancestors);
	int found = 0, level;

	if (!cgroup)
		return 0;
	level = BPF_CORE_READ(cgroup, level);
	flow->cgroup_id = BPF_CORE_READ(cgroup, kn, id);
#pragma clang loop unroll(disable)
	for (int depth = 0; depth < EG_MAX_CGROUP_DEPTH; depth++) {
		struct cgroup___eg *ancestor = 0;
		struct eg_workload *workload;
		__u64 id;

		if (depth > level)
			break;
		if (bpf_probe_read_kernel(&ancestor, sizeof(ancestor), (void *)cgroup + ancestors + depth * sizeof(ancestor)) ||
		    !ancestor)
			break;
		id = BPF_CORE_READ(ancestor, kn, id);
		workload = bpf_map_lookup_elem(&eg_workloads, &id);
		if (workload) {
			flow->workload = *workload;
			found = 1;
		}
	}
	return found;
}

/* Destination (into flow) and approval key of a connected socket; 0 when it has no peer. */
static __always_inline int socket_peer(struct sock___eg *sk, __u8 protocol, struct eg_flow *flow, struct eg_flow_key *key)
{
	struct sock_common___eg *common = &sk->__sk_common;
	__u16 family = BPF_CORE_READ(common, skc_family);

	__builtin_memset(key, 0, sizeof(*key));
	if (family == EG_AF_INET) {
		__u32 daddr = BPF_CORE_READ(common, skc_daddr), saddr = BPF_CORE_READ(common, skc_rcv_saddr);

		mapped_v4(key->dst, daddr);
		mapped_v4(key->src, saddr);
	} else if (family == EG_AF_INET6) {
		BPF_CORE_READ_INTO(&key->dst, common, skc_v6_daddr);
		BPF_CORE_READ_INTO(&key->src, common, skc_v6_rcv_saddr);
	} else {
		return 0;
	}
	key->dport = bpf_ntohs(BPF_CORE_READ(common, skc_dport));
	key->sport = BPF_CORE_READ(common, skc_num);
	key->protocol = protocol;
	key->workload_id = flow->workload.workload_id; /* approvals are per workload (lib/backstop.h) */
	if (key->dport == 0)
		return 0; /* not connected: each datagram is judged at sendmsg */
	__builtin_memcpy(flow->addr, key->dst, sizeof(flow->addr));
	flow->family = is_mapped((const __u32 *)key->dst) ? 4 : 6;
	flow->port = key->dport;
	flow->protocol = protocol;
	flow->hook = EG_HOOK_SOCKET_ITER;
	flow->layer = EG_LAYER_CONNECT;
	return 1;
}

/* Whether the flow's verdict still holds under the rules in force now. A DNS socket holds only when
 * it talks to the proxy (enrolled DNS is always steered there). A TCP flow whose first flight was
 * read (name: what it named, lib/sock_state.h) is judged on that name as its ClientHello (or request
 * head) was: the rules covering its address now, in order, the first whose name set accepts it deciding,
 * so withdrawing the rule that permitted its name ends it even while another name's rule covers the same
 * (CDN-shared) address. Any other flow holds while some rule could permit its address. Events are
 * emitted for the ones that do not hold. decision: what the rules in force now decide (for a flow that does
 * not hold, the tier and rule that deny it). */
static __always_inline int verdict_holds(struct eg_flow *flow, struct eg_sk_name *name, struct eg_decision *decision)
{
	struct eg_config *config = config_get();
	__u8 config_flags = config ? config->flags : 0;

	decision->tier = EG_TIER_DEFAULT;
	decision->rule_id = 0;

	if (is_dns(flow) && config && (config_flags & (flow->family == 4 ? EG_CONFIG_PROXY_V4 : EG_CONFIG_PROXY_V6))) {
		__u32 proxy[4];

		const __u32 *addr = (const __u32 *)flow->addr;

		proxy_addr(config, flow->family, proxy);
		if (flow->port == config->proxy_port && proxy[0] == addr[0] && proxy[1] == addr[1] && proxy[2] == addr[2] &&
		    proxy[3] == addr[3])
			return 1;
		return finish(flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0);
	}
	eg_evaluate(flow, decision, (config_flags & EG_CONFIG_TLS) ? EG_WEB_CANDIDATE : EG_WEB_IP_ONLY);
	if (name && (config_flags & EG_CONFIG_TLS)) {
		name_verdict(flow, &decision->candidates, decision->overflow & EG_OVERFLOW, &name->key, &name->info,
			     &decision->permit, &decision->tier, &decision->rule_id, &decision->log);
		if (decision->permit)
			return 1;
	} else if (decision_could_permit(decision)) {
		return 1; /* no event: nothing changed for this flow */
	}
	return finish_decision(flow, decision);
}

/* A socket still waiting for its first flight is decided on it with what its connect found: it takes the
 * decision of the rules in force now instead, so a rule edited in place (same id, another action) decides its
 * ClientHello (or request head) as the rule reads now. */
static __always_inline void pending_decision_renewed(struct eg_sk_state *state, const struct eg_decision *now)
{
	state->candidates = now->candidates;
	state->flags = (state->flags & ~EG_SK_OVERFLOW) | ((now->overflow & EG_OVERFLOW) ? EG_SK_OVERFLOW : 0);
	state->fallback_action = now->permit;
	state->fallback_tier = now->tier;
	state->fallback_log = now->log;
	state->fallback_rule_id = now->rule_id;
}

/* Ends a socket: destroys it, purges its approval, counts it and tells the agent (one line per
 * socket: "<workload id> <result>", result 0 or -errno; -EOPNOTSUPP before kernel 6.5). Returns result. */
static __always_inline int reap_end(struct seq_file *seq, struct sock_common___eg *sk, const struct eg_flow *flow,
				    const struct eg_flow_key *key)
{
	__u64 args[2];
	int result = -95; /* EOPNOTSUPP */

	unapprove(key);
	if (bpf_sock_destroy) /* resolved: a missing weak kfunc is null */
		result = bpf_sock_destroy(sk);
	if (result == 0)
		stat_inc(EG_STAT_FLOWS_ENDED);
	args[0] = flow->workload.workload_id;
	args[1] = (__u64)(__s64)result;
	bpf_seq_printf(seq, "%u %lld\n", sizeof("%u %lld\n"), args, sizeof(args));
	return result;
}

/* A socket the re-judgment denied but could not end: its own state says so, and the cgroup_skb program drops
 * whatever it sends from now on, reported with the rule that denies it (the socket may have had no state:
 * sockets without the backstop or evidence reading keep none). Without memory for the state it stays as
 * before: its approval is purged, so only a workload under the tc backstop is still contained. */
static __always_inline void mark_withdrawn(void *full, const struct eg_flow *flow, const struct eg_decision *denied)
{
	struct eg_sk_state *state = bpf_sk_storage_get(&eg_sk_state, full, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!state)
		return;
	state->verdict = EG_SK_DENY;
	state->flags = EG_SK_WITHDRAWN;
	state->fallback_action = 0;
	state->fallback_tier = denied->tier;
	state->fallback_rule_id = denied->rule_id;
	state->family = flow->family;
	__builtin_memcpy(state->addr, flow->addr, sizeof(state->addr));
	state->port = flow->port;
	state->protocol = flow->protocol;
	state->workload = flow->workload;
	state->cgroup_id = flow->cgroup_id;
}

/* One socket of either iterator: 1 when it was ended. full is the same socket typed as the full
 * socket socket storage wants (tcp_sock, udp_sock). */
static __always_inline int reap_socket(struct seq_file *seq, struct sock_common___eg *common, void *full, __u8 protocol)
{
	struct sock___eg *sk = (struct sock___eg *)common;
	struct eg_sk_state *state;
	struct eg_decision decision;
	struct eg_flow flow = {};
	struct eg_flow_key key;
	__u8 tcp_state;

	if (!reaped_socket_workload(sk, &flow))
		return 0;
	if (protocol == IPPROTO_TCP) {
		tcp_state = BPF_CORE_READ(common, skc_state);
		if (tcp_state == EG_TCP_LISTEN) {
			struct eg_listener_key listener = { .workload_id = flow.workload.workload_id,
							    .port = BPF_CORE_READ(common, skc_num) };
			__u8 seen = 1;

			bpf_map_update_elem(&eg_reap_listeners, &listener, &seen, BPF_ANY);
			return 0;
		}
		/* Only states in which the application can still send; the rest are closing anyway. */
		if (tcp_state != EG_TCP_ESTABLISHED && tcp_state != EG_TCP_SYN_SENT && tcp_state != EG_TCP_CLOSE_WAIT)
			return 0;
	}
	if (!socket_peer(sk, protocol, &flow, &key))
		return 0;
	state = bpf_sk_storage_get(&eg_sk_state, full, 0, 0);
	if (state && state->verdict == EG_SK_DENY) {
		reap_end(seq, common, &flow, &key); /* denied on its ClientHello: the event was emitted then */
		return 1;
	}
	/* Inbound connections are kept: a socket on a port its workload listens on that came from accept(). Such a
	 * socket has no state (eg_sk_state is not cloned to it); one that went through connect() with its port bound
	 * beforehand (SO_REUSEPORT or SO_REUSEADDR to the listener's port) always has (socket_approved). */
	if (protocol == IPPROTO_TCP && !state) {
		struct eg_listener_key listener = { .workload_id = flow.workload.workload_id, .port = key.sport };

		if (bpf_map_lookup_elem(&eg_reap_listeners, &listener))
			return 0;
	}
	if (verdict_holds(&flow, state && protocol == IPPROTO_TCP ? bpf_sk_storage_get(&eg_sk_name, full, 0, 0) : 0, &decision)) {
		if (state && state->verdict == EG_SK_PENDING && !is_dns(&flow)) /* DNS holds on the proxy, not evaluated */
			pending_decision_renewed(state, &decision);
		return 0;
	}
	if (reap_end(seq, common, &flow, &key))
		mark_withdrawn(full, &flow, &decision);
	return 1;
}

#endif

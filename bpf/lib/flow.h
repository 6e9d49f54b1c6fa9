/* A flow as the verdict logic sees it, and the workload (identity) it belongs to. */
#ifndef EG_LIB_FLOW_H
#define EG_LIB_FLOW_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, struct eg_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workloads SEC(".maps");

/*
 * A socket's owner, fixed when the socket is created (cgroup/sock_create runs in the creating task,
 * whose cgroup the kernel also gives the socket for good): the enrolled cgroup whose workload it
 * belongs to. connect/sendmsg judge by it, not by the calling task's cgroup, so a process that moves
 * to another cgroup (unenrolled, the cgroup2 root or another workload's) keeps its sockets' identity.
 * Not cloned: an accepted socket has no owner and no connect to judge (lib/backstop.h approves its flow).
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_owner SEC(".maps");

/* One flow as the verdict logic sees it: a connect, a datagram or a packet. */
struct eg_flow {
	__u8 addr[16]; /* destination */
	__u16 port;    /* host order; 0 for protocols without ports */
	__u8 protocol;
	__u8 family;
	__u8 hook;  /* enum eg_hook */
	__u8 layer; /* enum eg_layer */
	__u32 pid;
	__u64 cgroup_id;
	struct eg_workload workload;
	char comm[16];
	__u8 src[16]; /* packet layer only */
	__u8 reason;  /* enum eg_reason */
};

/* The process behind a socket-hook decision (packet layers have none: pid 0, empty comm). */
static __always_inline void flow_set_task(struct eg_flow *flow)
{
	flow->pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_get_current_comm(flow->comm, sizeof(flow->comm)))
		__builtin_memset(flow->comm, 0, sizeof(flow->comm));
}

/* Deepest enrolled ancestor (or the cgroup itself) gives the workload: nested cgroups inherit it.
 * skb null: the current task's cgroup (socket creation); otherwise the cgroup of skb's socket.
 * key (may be null) receives the enrolled cgroup's id. */
static __always_inline int find_workload_key(struct __sk_buff *skb, struct eg_workload *out, __u64 *key)
{
	int found = 0;

#pragma clang loop unroll(disable)
	for (int level = 0; level < EG_MAX_CGROUP_DEPTH; level++) {
		__u64 id = skb ? bpf_skb_ancestor_cgroup_id(skb, level) : bpf_get_current_ancestor_cgroup_id(level);
		struct eg_workload *workload;

		if (!id)
			break;
		workload = bpf_map_lookup_elem(&eg_workloads, &id);
		if (workload) {
			*out = *workload;
			if (key)
				*key = id;
			found = 1;
		}
	}
	return found;
}

static __always_inline int find_workload(struct __sk_buff *skb, struct eg_workload *out)
{
	return find_workload_key(skb, out, 0);
}

/* cgroup/sock_create: a socket created in an enrolled workload records that workload as its owner. */
static __always_inline void record_owner(struct bpf_sock *sk)
{
	struct eg_workload workload;
	struct eg_sk_owner *owner;
	__u64 key;

	if (!find_workload_key(0, &workload, &key))
		return;
	owner = bpf_sk_storage_get(&eg_sk_owner, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!owner)
		return; /* no memory: the socket falls back to its task (and its packets to the checks at egress) */
	owner->workload_cgroup = key;
	owner->cgroup_id = bpf_get_current_cgroup_id();
}

/*
 * The workload a connect/sendmsg is judged as: the socket's owner when it has one (a withdrawn
 * workload leaves it unjudged, like any unenrolled socket); otherwise (sockets older than the
 * programs or than the enrolment) the calling task's, which cgroup_skb egress cross-checks against
 * the socket's own cgroup before it approves anything (record_flow).
 */
static __always_inline int socket_workload(struct bpf_sock_addr *ctx, struct eg_flow *flow)
{
	struct eg_sk_owner *owner = ctx->sk ? bpf_sk_storage_get(&eg_sk_owner, ctx->sk, 0, 0) : 0;
	struct eg_workload *workload;

	if (!owner) {
		flow->cgroup_id = bpf_get_current_cgroup_id();
		return find_workload(0, &flow->workload);
	}
	workload = bpf_map_lookup_elem(&eg_workloads, &owner->workload_cgroup);
	if (!workload)
		return 0;
	flow->workload = *workload;
	flow->cgroup_id = owner->cgroup_id;
	return 1;
}

/* The user address of a sock_addr hook in either family, as four network-order words (IPv4 mapped).
 * v6 is a constant of the calling program, so each program keeps only its own branch (an IPv4
 * program may not touch user_ip6). Returns the family. */
static __always_inline __u8 sock_addr_get(const struct bpf_sock_addr *ctx, int v6, __u32 ip6[4])
{
	if (!v6) {
		ip6[0] = 0;
		ip6[1] = 0;
		ip6[2] = bpf_htonl(0xffff);
		ip6[3] = ctx->user_ip4;
		return 4;
	}
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	return is_mapped(ip6) ? 4 : 6;
}

static __always_inline void sock_addr_set(struct bpf_sock_addr *ctx, int v6, const __u32 ip6[4])
{
	if (!v6) {
		ctx->user_ip4 = ip6[3];
		return;
	}
	ctx->user_ip6[0] = ip6[0];
	ctx->user_ip6[1] = ip6[1];
	ctx->user_ip6[2] = ip6[2];
	ctx->user_ip6[3] = ip6[3];
}

/* The flow of a connect/sendmsg; 0 when its socket belongs to no enrolled workload. */
static __always_inline int socket_flow(struct bpf_sock_addr *ctx, __u8 hook, int v6, struct eg_flow *flow)
{
	__u32 ip6[4];

	if (!socket_workload(ctx, flow))
		return 0;
	flow->hook = hook;
	flow->layer = EG_LAYER_CONNECT;
	flow_set_task(flow);
	flow->family = sock_addr_get(ctx, v6, ip6);
	__builtin_memcpy(flow->addr, ip6, sizeof(flow->addr));
	flow->port = bpf_ntohs((__u16)ctx->user_port);
	flow->protocol = ctx->protocol;
	return 1;
}

#endif

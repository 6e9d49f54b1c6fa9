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
 * skb null: the current task's cgroup (socket hooks); otherwise the cgroup of skb's socket. */
static __always_inline int find_workload(struct __sk_buff *skb, struct eg_workload *out)
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
			found = 1;
		}
	}
	return found;
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

/* The flow of a connect/sendmsg; 0 when the caller is not in an enrolled workload. */
static __always_inline int socket_flow(struct bpf_sock_addr *ctx, __u8 hook, int v6, struct eg_flow *flow)
{
	__u32 ip6[4];

	if (!find_workload(0, &flow->workload))
		return 0;
	flow->hook = hook;
	flow->layer = EG_LAYER_CONNECT;
	flow->cgroup_id = bpf_get_current_cgroup_id();
	flow_set_task(flow);
	flow->family = sock_addr_get(ctx, v6, ip6);
	__builtin_memcpy(flow->addr, ip6, sizeof(flow->addr));
	flow->port = bpf_ntohs((__u16)ctx->user_port);
	flow->protocol = ctx->protocol;
	return 1;
}

#endif

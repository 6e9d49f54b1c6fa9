/* DNS steering: port 53 of enrolled workloads goes to the agent's proxy; replies and peer
 * names show the resolver the socket addressed. */
#ifndef EG_LIB_DNS_STEER_H
#define EG_LIB_DNS_STEER_H

#include "sock_state.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_origin SEC(".maps");

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

/* The configured proxy of a family (both forms IPv4-mapped for family 4). */
static __always_inline void proxy_addr(const struct eg_config *config, __u8 family, __u32 proxy[4])
{
	if (family == 4)
		__builtin_memcpy(proxy, config->proxy_v4, 16);
	else
		__builtin_memcpy(proxy, config->proxy_v6, 16);
}

/* A workload's DNS (port 53) goes to the proxy of its family when one is configured; 1 when steered. */
static __always_inline int steer_dns(struct bpf_sock_addr *ctx, const struct eg_flow *flow, int v6)
{
	__u8 family = v6 ? flow->family : 4; /* an IPv4 program's flows are IPv4: let the compiler know */
	__u8 need = family == 4 ? EG_CONFIG_PROXY_V4 : EG_CONFIG_PROXY_V6;
	struct eg_config *config;
	__u32 proxy[4];

	if (!is_dns(flow))
		return 0;
	config = config_get();
	if (!config || !(config->flags & need))
		return 0;
	remember_origin(ctx, flow);
	proxy_addr(config, family, proxy);
	sock_addr_set(ctx, v6, proxy);
	ctx->user_port = bpf_htons(config->proxy_port);
	stat_inc(EG_STAT_DNS_STEERED);
	socket_approved(ctx, flow, v6, 0, config->flags);
	return 1;
}

/* A reply (or peer) that is the proxy on a steered socket is shown as the resolver first addressed. */
static __always_inline void restore_origin(struct bpf_sock_addr *ctx, int v6)
{
	struct eg_config *config;
	struct eg_sk_origin *origin;
	__u32 peer[4], proxy[4], orig[4];
	__u8 family;

	if (!ctx->sk)
		return;
	config = config_get();
	if (!config || ctx->user_port != bpf_htons(config->proxy_port))
		return;
	family = sock_addr_get(ctx, v6, peer);
	if (!(config->flags & (family == 4 ? EG_CONFIG_PROXY_V4 : EG_CONFIG_PROXY_V6)))
		return;
	proxy_addr(config, family, proxy);
	/* Family 4: both are IPv4-mapped, the last word decides. */
	if (peer[3] != proxy[3] || (family != 4 && (peer[0] != proxy[0] || peer[1] != proxy[1] || peer[2] != proxy[2])))
		return;
	origin = bpf_sk_storage_get(&eg_sk_origin, ctx->sk, 0, 0);
	if (!origin || (!v6 && origin->family != 4))
		return; /* an IPv4 socket can only be shown an IPv4 resolver */
	__builtin_memcpy(orig, origin->addr, sizeof(orig));
	sock_addr_set(ctx, v6, orig);
	ctx->user_port = origin->port;
}

#endif

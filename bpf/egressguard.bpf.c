// SPDX-License-Identifier: GPL-2.0
/* egressguard datapath: the program entry points, each glue over bpf/lib (one header per concern).
 * - cgroup connect/sendmsg decide (deny list, baseline, workload rules, default) and steer DNS to
 *   the agent's proxy; recvmsg/getpeername make a steered socket see the resolver it addressed.
 * - cgroup_skb egress finishes what connect left open: the TLS ClientHello SNI of flows that
 *   webGroup (or tlsRequired) rules govern, and judges every packet of raw and ping sockets; it also
 *   reads the first flight of every reported TCP flow it permitted, for evidence events.
 * - tc ingress on each workload's host-side interface is the backstop for what no socket hook
 *   saw (packet sockets, forged sources, fragments); tc egress there approves the answers of the
 *   connections the node delivers to the workload.
 * - iter/tcp and iter/udp, run by the agent after every policy write and SNI deny, end the live
 *   sockets the rules in force no longer permit (lib/reap.h).
 * All of them reach their verdict through eg_evaluate() (lib/evaluate.h). */
#include "lib/abi.h"
#include "lib/dns_steer.h"
#include "lib/reap.h"

char LICENSE[] SEC("license") = "GPL";

/* Every socket created in an enrolled workload keeps that workload as its identity (lib/flow.h). */
SEC("cgroup/sock_create")
int eg_sock_create(struct bpf_sock *sk)
{
	record_owner(sk);
	return 1;
}

/* A closing socket gives its approved flow back when nothing of it can follow, and one that never sent the
 * ClientHello its connect waited for is reported (lib/sock_state.h). */
SEC("cgroup/sock_release")
int eg_sock_release(struct bpf_sock *sk)
{
	struct eg_flow flow;

	socket_released(sk, &flow);
	return 1;
}

/* connect/sendmsg: port 53 goes to the proxy, everything else is judged (v6: an IPv6 program). */
static __always_inline int sock_addr_verdict(struct bpf_sock_addr *ctx, __u8 hook, int v6)
{
	struct eg_flow flow = {};

	if (!socket_flow(ctx, hook, v6, &flow))
		return 1;
	if (steer_dns(ctx, &flow, v6))
		return 1;
	return judge_socket(ctx, &flow, v6);
}

SEC("cgroup/connect4")
int eg_connect4(struct bpf_sock_addr *ctx)
{
	return sock_addr_verdict(ctx, EG_HOOK_CONNECT4, 0);
}

SEC("cgroup/connect6")
int eg_connect6(struct bpf_sock_addr *ctx)
{
	return sock_addr_verdict(ctx, EG_HOOK_CONNECT6, 1);
}

SEC("cgroup/sendmsg4")
int eg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_addr_verdict(ctx, EG_HOOK_SENDMSG4, 0);
}

SEC("cgroup/sendmsg6")
int eg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock_addr_verdict(ctx, EG_HOOK_SENDMSG6, 1);
}

SEC("cgroup/recvmsg4")
int eg_recvmsg4(struct bpf_sock_addr *ctx)
{
	restore_origin(ctx, 0);
	return 1;
}

SEC("cgroup/recvmsg6")
int eg_recvmsg6(struct bpf_sock_addr *ctx)
{
	restore_origin(ctx, 1);
	return 1;
}

SEC("cgroup/getpeername4")
int eg_getpeername4(struct bpf_sock_addr *ctx)
{
	restore_origin(ctx, 0);
	return 1;
}

SEC("cgroup/getpeername6")
int eg_getpeername6(struct bpf_sock_addr *ctx)
{
	restore_origin(ctx, 1);
	return 1;
}

/* Which concern a departing packet belongs to: a socket judged per packet (raw, ping, every protocol
 * but TCP and UDP), or its socket's verdict (checked against what the hook judged, or its pending TLS
 * decision). A decided socket's packet that is source-routed is dropped. Sockets without state (a
 * listener's SYN-ACKs, accepted connections) approve nothing here: the backstop approves an inbound
 * connection when the node delivers its SYN (eg_tc_egress). */
static __always_inline int skb_egress(struct __sk_buff *skb, struct eg_scratch *work)
{
	struct bpf_sock *sk = skb->sk;
	struct eg_sk_state *state;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (sk && is_socketless(sk))
		return judge_socketless(skb, &work->pkt, &work->flow, &work->decision);
	if (!socket_first_hop_allowed(skb, &work->pkt, &work->flow))
		return 0;
	if (!sk || (sk->type == SOCK_STREAM_TYPE && sk->state == BPF_TCP_LISTEN))
		return 1;
	state = bpf_sk_storage_get(&eg_sk_state, sk, 0, 0);
	if (state)
		return socket_egress(skb, sk, state, work);
	return 1;
}

/* The packet programs work in their CPU's scratch slot (lib/scratch.h); without one they fail closed. */
SEC("cgroup_skb/egress")
int eg_skb_egress(struct __sk_buff *skb)
{
	struct eg_scratch_cpu *cpu;
	struct eg_scratch *work = scratch_enter(&cpu);
	int verdict;

	if (!work)
		return 0;
	verdict = skb_egress(skb, work);
	scratch_leave(cpu);
	return verdict;
}

SEC("tc")
int eg_tc_ingress(struct __sk_buff *skb)
{
	struct eg_scratch_cpu *cpu;
	struct eg_scratch *work = scratch_enter(&cpu);
	int verdict;

	if (!work)
		return TC_ACT_SHOT;
	verdict = backstop_ingress(skb, work);
	scratch_leave(cpu);
	return verdict;
}

/* The same interfaces' egress: what the node delivers into a workload (never dropped here; without a
 * scratch slot no inbound connection is approved, so its answers are judged). */
SEC("tc")
int eg_tc_egress(struct __sk_buff *skb)
{
	struct eg_scratch_cpu *cpu;
	struct eg_scratch *work = scratch_enter(&cpu);
	int verdict;

	if (!work)
		return TC_ACT_OK;
	verdict = backstop_inbound(skb, work);
	scratch_leave(cpu);
	return verdict;
}

SEC("iter/tcp")
int eg_reap_tcp(struct bpf_iter__tcp___eg *ctx)
{
	struct sock_common___eg *common = ctx->sk_common;
	void *full;

	if (!common)
		return 0;
	full = bpf_skc_to_tcp_sock(common); /* null for time-wait and request sockets */
	if (full)
		reap_socket(ctx->meta->seq, common, full, IPPROTO_TCP);
	return 0;
}

SEC("iter/udp")
int eg_reap_udp(struct bpf_iter__udp___eg *ctx)
{
	struct sock___eg *sk = ctx->udp_sk;

	if (sk)
		reap_socket(ctx->meta->seq, &sk->__sk_common, sk, IPPROTO_UDP);
	return 0;
}

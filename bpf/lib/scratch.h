/*
 * Per-packet working state of the packet programs (cgroup_skb egress, tc ingress and egress), kept off
 * the 512-byte BPF stack. The verifier counts a program's frame plus every subprogram frame on the
 * deepest call chain against that limit: with the parsed packet, the flow, the decision and the keys
 * all on the stack, eg_skb_egress (~400 bytes) plus eg_evaluate went past it. Here they live in one
 * per-CPU array value; the stack keeps only small scalars.
 *
 * Program runs nest on one CPU (a softirq's tc ingress or TCP ACK interrupts a task's cgroup_skb
 * egress between two instructions), so one slot per CPU would be overwritten under its owner. Each
 * entry point takes the slot at the CPU's current depth and gives it back before it returns; a run
 * that interrupts another therefore works in the next slot, and finds the depth as it left it. Four
 * levels cover every context a program can run in (task, softirq, hardirq, NMI); a run that finds
 * them all taken (cannot happen: packet programs never run in hardirq or NMI) fails closed.
 * Not pinned: each loaded object has its own, and nothing in it outlives a program run.
 */
#ifndef EG_LIB_SCRATCH_H
#define EG_LIB_SCRATCH_H

#include "packet.h"

#define EG_SCRATCH_DEPTH 4

/* One program run's slot: each member has one use. */
struct eg_scratch {
	struct eg_packet pkt;        /* the packet this run judges, as parsed */
	struct eg_packet peer;       /* a packet derived from pkt: the answer to an inbound SYN, an ARP sender */
	struct eg_flow flow;         /* the flow the verdict and its event describe */
	struct eg_decision decision; /* the tiers' evaluation of flow (eg_evaluate) */
	struct eg_flow_key key;      /* eg_approved key of pkt or peer */
	struct eg_approval approval; /* eg_approved value written for key */
};

struct eg_scratch_cpu {
	__u32 depth; /* slots taken by the runs now on this CPU */
	__u32 _pad;
	struct eg_scratch slots[EG_SCRATCH_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_scratch_cpu);
} eg_scratch SEC(".maps");

/* The slot of this run, or null (fail closed). Every non-null return is paired with scratch_leave(*cpu). */
static __always_inline struct eg_scratch *scratch_enter(struct eg_scratch_cpu **cpu)
{
	__u32 zero = 0, depth;

	*cpu = bpf_map_lookup_elem(&eg_scratch, &zero);
	if (!*cpu)
		return 0;
	depth = (*cpu)->depth;
	if (depth >= EG_SCRATCH_DEPTH)
		return 0;
	(*cpu)->depth = depth + 1;
	return &(*cpu)->slots[depth];
}

static __always_inline void scratch_leave(struct eg_scratch_cpu *cpu)
{
	if (cpu->depth > 0)
		cpu->depth -= 1;
}

#endif

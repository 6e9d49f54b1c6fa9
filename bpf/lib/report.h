/* Reporting: decision counters and the events ring buffer. */
#ifndef EG_LIB_REPORT_H
#define EG_LIB_REPORT_H

#include "flow.h"

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EG_MAX_WORKLOADS + 1);
	__type(key, __u32);
	__type(value, struct eg_event_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_event_budget SEC(".maps");

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
	return flow->layer == EG_LAYER_CONNECT && flow->protocol == IPPROTO_UDP && flow->port == 0;
}

#define EG_EVENT_COST_NS (1000000000ULL / EG_EVENT_RATE_PER_SEC)

/*
 * The workload's token bucket on this CPU: returns 1 when it may emit (and moves the count of events suppressed
 * before it to *suppressed), 0 when it is over its rate (the event is counted as suppressed). Per CPU, so no lock;
 * a workload's rate is therefore at most EG_EVENT_RATE_PER_SEC per CPU it runs on. Without its state (cannot
 * happen for an array) the event is emitted: reporting fails open, enforcement is not affected either way.
 */
static __always_inline int event_budget_take(__u32 workload_id, __u16 *suppressed)
{
	__u32 index = workload_id <= EG_MAX_WORKLOADS ? workload_id : 0;
	struct eg_event_budget *budget = bpf_map_lookup_elem(&eg_event_budget, &index);
	__u64 now = bpf_ktime_get_ns();
	__u64 credit;

	*suppressed = 0;
	if (!budget)
		return 1;
	credit = budget->credit_ns + (now - budget->updated_ns);
	if (credit > EG_EVENT_BURST * EG_EVENT_COST_NS || now < budget->updated_ns)
		credit = EG_EVENT_BURST * EG_EVENT_COST_NS;
	budget->updated_ns = now;
	if (credit < EG_EVENT_COST_NS) {
		budget->credit_ns = credit;
		budget->suppressed += 1;
		stat_inc(EG_STAT_EVENTS_SUPPRESSED);
		return 0;
	}
	budget->credit_ns = credit - EG_EVENT_COST_NS;
	*suppressed = budget->suppressed > 0xffff ? 0xffff : budget->suppressed;
	budget->suppressed -= *suppressed;
	return 1;
}

/* One event. hello (may be null) holds what was read of the flow's first flight: its sni (sni_len bytes) goes out
 * with the evidence bits (enum eg_evidence) that say what it is. */
static __always_inline void emit_event(const struct eg_flow *flow, __u8 kind, __u8 verdict, __u8 tier, __u32 rule_id,
				       const struct eg_sk_hello *hello, __u8 evidence)
{
	struct eg_event *event;
	__u16 suppressed;

	if (is_address_probe(flow))
		return;
	if (!event_budget_take(flow->workload.workload_id, &suppressed))
		return;
	event = bpf_ringbuf_reserve(&eg_events, sizeof(*event), 0);
	if (!event) {
		/* The suppressed count it carried is lost with it: eg_stats still has it. */
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
	event->layer = flow->layer;
	event->hook = flow->hook;
	event->pid = flow->pid;
	__builtin_memcpy(event->comm, flow->comm, sizeof(event->comm));
	event->reason = flow->reason;
	event->kind = kind;
	__builtin_memcpy(event->src, flow->src, sizeof(event->src));
	event->suppressed = suppressed;
	event->evidence = evidence;
	__builtin_memset(event->_pad2, 0, sizeof(event->_pad2));
	if (hello) {
		event->sni_len = hello->sni_len > EG_SNI_MAX ? EG_SNI_MAX : hello->sni_len;
		__builtin_memcpy(event->sni, hello->sni, EG_SNI_MAX);
	} else {
		event->sni_len = 0;
		__builtin_memset(event->sni, 0, sizeof(event->sni));
	}
	bpf_ringbuf_submit(event, 0);
}

/* A decision taken without reading the flow's payload (connect, sendmsg, packet layers). */
static __always_inline void emit(const struct eg_flow *flow, __u8 verdict, __u8 tier, __u32 rule_id)
{
	emit_event(flow, EG_KIND_DECISION, verdict, tier, rule_id, 0, 0);
}

/* Counts and reports a final decision; returns 1 to permit, 0 to deny. hello and evidence: as for emit_event. */
static __always_inline int finish(const struct eg_flow *flow, __u8 permit, __u8 tier, __u32 rule_id, __u8 log,
				  const struct eg_sk_hello *hello, __u8 evidence)
{
	if (permit) {
		stat_inc(EG_STAT_PERMITTED);
		if (log)
			emit_event(flow, EG_KIND_DECISION, EG_VERDICT_PERMITTED, tier, rule_id, hello, evidence);
		return 1;
	}
	stat_inc(EG_STAT_DENIED);
	emit_event(flow, EG_KIND_DECISION, EG_VERDICT_DENIED, tier, rule_id, hello, evidence);
	return 0;
}

#endif

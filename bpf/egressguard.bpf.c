// SPDX-License-Identifier: GPL-2.0
/* egressguard datapath: per-workload egress verdicts.
 * - cgroup connect/sendmsg decide (deny list, baseline, workload rules, default) and steer DNS to
 *   the agent's proxy; recvmsg/getpeername make a steered socket see the resolver it addressed.
 * - cgroup_skb egress finishes what connect left open: the TLS ClientHello SNI of flows that
 *   webGroup (or tlsRequired) rules govern, and judges every packet of raw and ping sockets.
 * - tc ingress on each workload's host-side interface is the backstop for what no socket hook
 *   saw (packet sockets, forged sources, fragments).
 * All three reach their verdict through evaluate(). */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "egressguard.h"

char LICENSE[] SEC("license") = "GPL";

#define SOCK_STREAM_TYPE 1
#define SOCK_DGRAM_TYPE 2
#define SOCK_RAW_TYPE 3
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
/* A global function: verified once on its own instead of once per calling path. Pointer
 * arguments may be null to the verifier, so each one checks them. */
#define EG_SUBPROG __attribute__((noinline))

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
	__uint(max_entries, EG_MAX_WORKLOADS);
	__type(key, __u32);
	__type(value, struct eg_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workload_ids SEC(".maps");

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
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_domain_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_ADDRESSES);
	__type(key, struct eg_addr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_workload_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_MAX_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_interfaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_MAX_FLOWS);
	__type(key, struct eg_flow_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_approved SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_MAX_FRAGMENTS);
	__type(key, struct eg_fragment_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct eg_sk_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_sk_origin SEC(".maps");

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

/* Scratch for eg_hello_probe (test runs and benchmarks only): the probe has no socket. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_sk_hello);
} eg_probe_hello SEC(".maps");

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

/* Never called or loaded: its signature keeps struct eg_event and struct eg_probe_header in the
 * object's BTF, where userspace checks their layouts (no map carries them as a type). */
__attribute__((noinline, used)) int eg_abi_event(struct eg_event *event, struct eg_probe_header *probe)
{
	return event != 0 && probe != 0;
}

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
};

/* What evaluate() concluded: the verdict of the deciding rule (or default) and, for TCP at
 * connect time, the TLS candidate rules met before it. */
struct eg_decision {
	__u32 rule_id;
	__u8 permit;
	__u8 tier;
	__u8 log;
	__u8 _pad;
	struct eg_candidate_list candidates;
};

/* How webGroup / tlsRequired rules take part for TCP. */
enum eg_web_mode {
	EG_WEB_NEVER = 0,     /* packet layer: no SNI can be known, they never match */
	EG_WEB_CANDIDATE = 1, /* connect with the TLS program attached: collected as candidates */
	EG_WEB_IP_ONLY = 2,   /* connect without the TLS program: the learned-IP condition alone */
};

static __always_inline void stat_inc(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&eg_stats, &index);

	if (value)
		*value += 1;
}

static __always_inline struct eg_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&eg_config, &zero);
}

/*
 * getaddrinfo() sorts answers by connecting a UDP socket to port 0 of each address (RFC 6724 source selection);
 * nothing is sent. The verdict still applies; only the event, which would bury real attempts, is left out.
 */
static __always_inline int is_address_probe(const struct eg_flow *flow)
{
	return flow->layer == EG_LAYER_CONNECT && flow->protocol == IPPROTO_UDP && flow->port == 0;
}

/* sni may be null; it then points at EG_SNI_MAX readable bytes of which sni_len are used. */
static __always_inline void emit(const struct eg_flow *flow, __u8 verdict, __u8 tier, __u32 rule_id,
				 const __u8 *sni, __u16 sni_len)
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
	event->layer = flow->layer;
	event->hook = flow->hook;
	event->pid = flow->pid;
	__builtin_memcpy(event->comm, flow->comm, sizeof(event->comm));
	__builtin_memset(event->_pad, 0, sizeof(event->_pad));
	if (sni) {
		event->sni_len = sni_len > EG_SNI_MAX ? EG_SNI_MAX : sni_len;
		__builtin_memcpy(event->sni, sni, EG_SNI_MAX);
	} else {
		event->sni_len = 0;
		__builtin_memset(event->sni, 0, sizeof(event->sni));
	}
	bpf_ringbuf_submit(event, 0);
}

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

static __always_inline void decision_set(struct eg_decision *decision, __u8 permit, __u8 tier, __u32 rule_id, __u8 log)
{
	decision->permit = permit;
	decision->tier = tier;
	decision->rule_id = rule_id;
	decision->log = log;
}

/*
 * The one tier evaluation (deny list, baseline, workload rules in order, default) for every hook.
 * A webGroup rule matches UDP only when its protocol is explicitly udp (QUIC's SNI is not visible)
 * and never other protocols; for TCP it depends on web_mode. tlsRequired rules are TCP only.
 */
EG_SUBPROG int eg_evaluate(const struct eg_flow *flow, struct eg_decision *decision, int web_mode)
{
	struct eg_cidr_key cidr_key = { .prefixlen = 128 };
	struct eg_cidr_value *cidr;
	struct eg_config *config;
	__u64 now;

	if (!flow || !decision)
		return 0;
	decision->candidates.count = 0;
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
		__u8 permit, tls;

		if (index >= flow->workload.rule_count)
			break;
		key.workload_id = flow->workload.workload_id;
		key.rule_ref = (flow->workload.slot ? EG_MAX_RULES : 0) + index;
		rule = bpf_map_lookup_elem(&eg_rules, &key);
		if (!rule)
			break; /* never expected: fall to the default rather than guess */
		if (!proto_port_match(rule->protocol, rule->port_lo, rule->port_hi, flow))
			continue;
		if ((rule->flags & EG_RULE_WEB) && flow->protocol != IPPROTO_TCP &&
		    !(flow->protocol == IPPROTO_UDP && rule->protocol == IPPROTO_UDP))
			continue;
		if ((rule->flags & EG_RULE_TLS_REQUIRED) && flow->protocol != IPPROTO_TCP)
			continue;
		tls = flow->protocol == IPPROTO_TCP && (rule->flags & (EG_RULE_WEB | EG_RULE_TLS_REQUIRED));
		if (tls && web_mode == EG_WEB_NEVER)
			continue;
		if (!rule_destination_match(rule, key.rule_ref, flow, now))
			continue;
		permit = rule->action == EG_ACTION_PERMIT;
		if (rule->flags & EG_RULE_WATCH) {
			emit(flow, permit ? EG_VERDICT_WOULD_PERMIT : EG_VERDICT_WOULD_DENY, EG_TIER_POLICY,
			     rule->rule_id, 0, 0);
			continue;
		}
		if (tls && web_mode == EG_WEB_CANDIDATE) {
			__u8 count = decision->candidates.count;
			struct eg_candidate *candidate;

			if (count >= EG_TLS_MAX_CANDIDATES) {
				/* Cannot remember it: deciding without it could widen access. */
				decision_set(decision, 0, EG_TIER_POLICY, rule->rule_id, 1);
				return 0;
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

/* Counts and reports a final decision; returns 1 to permit, 0 to deny. */
static __always_inline int finish(const struct eg_flow *flow, __u8 permit, __u8 tier, __u32 rule_id, __u8 log,
				  const __u8 *sni, __u16 sni_len)
{
	if (permit) {
		stat_inc(EG_STAT_PERMITTED);
		if (log)
			emit(flow, EG_VERDICT_PERMITTED, tier, rule_id, sni, sni_len);
		return 1;
	}
	stat_inc(EG_STAT_DENIED);
	emit(flow, EG_VERDICT_DENIED, tier, rule_id, sni, sni_len);
	return 0;
}

static __always_inline int finish_decision(const struct eg_flow *flow, const struct eg_decision *decision)
{
	return finish(flow, decision->permit, decision->tier, decision->rule_id, decision->log, 0, 0);
}

static __always_inline void mapped_v4(__u8 addr[16], __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4_be, 4);
}

/* ---- TLS ClientHello: reassembly, parse, name match (shared by eg_skb_egress and eg_hello_probe) ---- */

#define HELLO_MASK (EG_HELLO_MAX - 1)

enum eg_hello_status { EG_HELLO_INCOMPLETE = 0, EG_HELLO_COMPLETE = 1, EG_HELLO_NOT_HELLO = 2 };

struct eg_hello_info {
	__u32 sni_off; /* into buf */
	__u32 sni_len; /* as sent */
	__u8 valid;    /* a well-formed ClientHello */
	__u8 has_sni;  /* a server_name extension with a host_name entry */
	__u8 ech;      /* encrypted_client_hello extension present */
	__u8 _pad;
};

/* Offsets are bounded by the parse logic; the mask only proves it to the verifier. */
static __always_inline __u32 hello_u8(const struct eg_sk_hello *hello, __u32 off)
{
	return hello->buf[off & HELLO_MASK];
}

static __always_inline __u32 hello_u16(const struct eg_sk_hello *hello, __u32 off)
{
	return (hello_u8(hello, off) << 8) | hello_u8(hello, off + 1);
}

/* Appends len bytes of skb at offset to the buffer: 0, or -1 past EG_HELLO_MAX (or a failed load). */
EG_SUBPROG int eg_hello_append(struct __sk_buff *skb, __u32 offset, __u32 len, struct eg_sk_hello *hello)
{
	if (!hello)
		return -1;
#pragma clang loop unroll(disable)
	for (int chunk = 0; chunk <= EG_HELLO_MAX / EG_HELLO_CHUNK; chunk++) {
		__u32 have = hello->len;
		__u32 n = len;

		if (n == 0)
			return 0;
		if (have >= EG_HELLO_MAX)
			return -1;
		if (n > EG_HELLO_MAX - have)
			n = EG_HELLO_MAX - have;
		if (n > EG_HELLO_CHUNK)
			n = EG_HELLO_CHUNK;
		if (n == 0)
			return -1;
		/* equal to n (1..EG_HELLO_CHUNK), written so the verifier sees the bound */
		if (bpf_skb_load_bytes(skb, offset, &hello->buf[have & HELLO_MASK], ((n - 1) & (EG_HELLO_CHUNK - 1)) + 1))
			return -1;
		hello->len = have + n;
		offset += n;
		len -= n;
	}
	return len ? -1 : 0;
}

/* Whether the buffer starts a ClientHello record, and whether the record is all there. */
static __always_inline int hello_status(const struct eg_sk_hello *hello)
{
	__u32 len = hello->len, record;

	if (len >= 1 && hello_u8(hello, 0) != 0x16) /* handshake record */
		return EG_HELLO_NOT_HELLO;
	if (len >= 2 && hello_u8(hello, 1) != 3)
		return EG_HELLO_NOT_HELLO;
	if (len >= 3 && (hello_u8(hello, 2) < 1 || hello_u8(hello, 2) > 4)) /* 0x0301..0x0304 */
		return EG_HELLO_NOT_HELLO;
	if (len >= 6 && hello_u8(hello, 5) != 1) /* client_hello */
		return EG_HELLO_NOT_HELLO;
	if (len < 5)
		return EG_HELLO_INCOMPLETE;
	record = hello_u16(hello, 3);
	if (record < 4 || record + 5 > EG_HELLO_MAX)
		return EG_HELLO_NOT_HELLO; /* too short, or beyond the bound: fail closed */
	return len >= record + 5 ? EG_HELLO_COMPLETE : EG_HELLO_INCOMPLETE;
}

/* Status once an append returned: bytes past the bound only matter while the record is incomplete. */
static __always_inline int hello_status_after(const struct eg_sk_hello *hello, int append_failed)
{
	int status = hello_status(hello);

	return append_failed && status == EG_HELLO_INCOMPLETE ? EG_HELLO_NOT_HELLO : status;
}

/* Walks a complete ClientHello record (the whole handshake message must be in this record). */
EG_SUBPROG int eg_hello_parse(const struct eg_sk_hello *hello, struct eg_hello_info *info)
{
	__u32 end, hs_end, p;

	if (!hello || !info)
		return 0;
	end = 5 + hello_u16(hello, 3);
	hs_end = 9 + ((hello_u8(hello, 6) << 16) | hello_u16(hello, 7));
	if (hs_end > end)
		return 0;
	p = 9 + 2 + 32; /* legacy_version, random */
	if (p + 1 > hs_end)
		return 0;
	p += 1 + hello_u8(hello, p); /* session id */
	if (p + 2 > hs_end)
		return 0;
	p += 2 + hello_u16(hello, p); /* cipher suites */
	if (p + 1 > hs_end)
		return 0;
	p += 1 + hello_u8(hello, p); /* compression methods */
	if (p == hs_end) {
		info->valid = 1; /* no extensions (TLS 1.0 style) */
		return 0;
	}
	if (p + 2 > hs_end || p + 2 + hello_u16(hello, p) != hs_end)
		return 0;
	p += 2;
	/* One step more than extensions so that a full list still reaches its end; a longer list is not valid. */
#pragma clang loop unroll(disable)
	for (int index = 0; index <= EG_MAX_EXTENSIONS; index++) {
		__u32 type, len;

		if (p == hs_end) {
			info->valid = 1;
			return 0;
		}
		if (p + 4 > hs_end)
			return 0;
		type = hello_u16(hello, p);
		len = hello_u16(hello, p + 2);
		if (p + 4 + len > hs_end)
			return 0;
		if (type == 0) { /* server_name: list length, then name_type 0 (host_name), length, name */
			__u32 list_len, name_len;

			if (info->has_sni || len < 5)
				return 0; /* duplicate or truncated: malformed */
			list_len = hello_u16(hello, p + 4);
			name_len = hello_u16(hello, p + 7);
			if (list_len + 2 != len || hello_u8(hello, p + 6) != 0 || name_len + 3 > list_len)
				return 0;
			info->has_sni = 1;
			info->sni_off = p + 9;
			info->sni_len = name_len;
		} else if (type == 0xfe0d) {
			info->ech = 1;
		}
		p += 4 + len;
	}
	return 0;
}

struct eg_name_walk {
	struct eg_sk_hello *hello;
	__u32 off;      /* of the SNI in buf */
	__u32 len;      /* as sent */
	__u32 name_len; /* without one trailing dot */
	__u32 ok;
	__u32 after_dot; /* the previous byte was a dot (or there was none) */
};

/* One SNI byte (a bpf_loop callback: the verifier checks it once, not once per byte). */
static long name_step(__u64 index, void *data)
{
	struct eg_name_walk *walk = data;
	struct eg_sk_hello *hello = walk->hello;
	__u32 i = index & (EG_SNI_MAX - 1), at;
	__u8 c;

	if (index >= walk->len || index >= EG_SNI_MAX)
		return 1;
	c = hello_u8(hello, walk->off + i);
	if (c >= 'A' && c <= 'Z')
		c += 'a' - 'A';
	hello->sni[i] = c;
	if (!walk->ok || i >= walk->name_len)
		return 0;
	if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.') ||
	    (c == '.' && walk->after_dot)) {
		walk->ok = 0; /* foreign byte, leading dot or empty label */
		return 0;
	}
	walk->after_dot = c == '.';
	at = walk->name_len - 1 - i;
	if (at < EG_DOMAIN_NAME_BYTES)
		hello->key.name[at] = c;
	return 0;
}

/* Copies the lower-cased SNI into hello->sni (for events) and, when it is a host name the domain
 * trie can hold, its reversal + EG_NAME_END into hello->key. Returns 1 when the key is usable. */
EG_SUBPROG int eg_hello_name(struct eg_sk_hello *hello, const struct eg_hello_info *info)
{
	struct eg_name_walk walk = { .ok = 1, .after_dot = 1 };
	__u32 name_len;

	if (!hello || !info)
		return 0;
	walk.hello = hello;
	walk.off = info->sni_off;
	walk.len = info->sni_len;
	name_len = info->sni_len;
	if (name_len > 0 && hello_u8(hello, info->sni_off + name_len - 1) == '.')
		name_len--; /* one trailing dot */
	if (name_len == 0 || name_len > EG_DOMAIN_NAME_MAX)
		walk.ok = 0;
	walk.name_len = name_len;
	hello->sni_len = info->sni_len > EG_SNI_MAX ? EG_SNI_MAX : info->sni_len;
	bpf_loop(EG_SNI_MAX, name_step, &walk, 0);
	if (!walk.ok || walk.after_dot || name_len >= EG_DOMAIN_NAME_BYTES)
		return 0;
	hello->key.name[name_len] = EG_NAME_END;
	hello->key.prefixlen = 32 + 8 * (name_len + 1);
	return 1;
}

static __always_inline int candidate_matches(const struct eg_candidate *candidate, struct eg_sk_hello *hello,
					     const struct eg_hello_info *info, int name_ok)
{
	if (!info->valid)
		return 0;
	if (!(candidate->flags & EG_RULE_WEB))
		return 1; /* tlsRequired alone: any ClientHello */
	if (!info->has_sni || info->sni_len == 0)
		return 0;
	if (candidate->flags & EG_RULE_ANY_NAME)
		return 1;
	if (!name_ok)
		return 0;
	hello->key.rule_id = candidate->rule_id;
	return bpf_map_lookup_elem(&eg_domains, &hello->key) != 0;
}

/*
 * The index of the first candidate (in rule order) the first flight satisfies, or -1.
 * A global function: the verifier checks it once, not once per path of its callers.
 */
EG_SUBPROG int eg_hello_first_match(struct eg_sk_hello *hello, int status, const struct eg_candidate_list *list,
				    struct eg_hello_info *info)
{
	int name_ok = 0;

	if (!hello || !list || !info)
		return -1;
	__builtin_memset(info, 0, sizeof(*info));
	hello->sni_len = 0;
	if (status == EG_HELLO_COMPLETE) {
		eg_hello_parse(hello, info);
		if (info->valid && info->has_sni)
			name_ok = eg_hello_name(hello, info);
	}
#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_TLS_MAX_CANDIDATES; index++) {
		if (index >= list->count)
			break;
		if (candidate_matches(&list->items[index], hello, info, name_ok))
			return index;
	}
	return -1;
}

/* ---- packets (cgroup_skb: offset 0 is the IP header; tc: after the Ethernet header) ---- */

enum eg_fragment { EG_FRAG_NONE = 0, EG_FRAG_FIRST = 1, EG_FRAG_LATER = 2 };

struct eg_packet {
	__u8 src[16];
	__u8 dst[16];
	__u32 fragment_id;
	__u32 seq;         /* TCP */
	__u32 payload_off; /* TCP */
	__u16 sport;       /* host order; TCP/UDP outside later fragments */
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 fragment; /* enum eg_fragment */
	__u8 tcp_flags;
	__u8 icmp_type;
};

struct eg_ipv4_header {
	__u8 version_ihl;
	__u8 tos;
	__u16 total_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct eg_ipv6_header {
	__u32 version_class_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct eg_tcp_header {
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack;
	__u8 doff;
	__u8 flags;
	__u16 window;
};

/* Returns 0 with pkt filled, -1 for what cannot be judged (truncated, too many IPv6 headers). */
EG_SUBPROG int eg_parse_packet(struct __sk_buff *skb, __u32 l3, struct eg_packet *pkt)
{
	__u8 version;
	__u8 protocol;
	__u32 l4;

	if (!pkt)
		return -1;
	__builtin_memset(pkt, 0, sizeof(*pkt));
	if (bpf_skb_load_bytes(skb, l3, &version, 1))
		return -1;
	if ((version >> 4) == 4) {
		struct eg_ipv4_header ip;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) || (ip.version_ihl & 0xf) < 5)
			return -1;
		mapped_v4(pkt->src, ip.saddr);
		mapped_v4(pkt->dst, ip.daddr);
		pkt->family = 4;
		protocol = ip.protocol;
		frag = bpf_ntohs(ip.frag_off);
		if (frag & 0x1fff)
			pkt->fragment = EG_FRAG_LATER;
		else if (frag & 0x2000)
			pkt->fragment = EG_FRAG_FIRST;
		pkt->fragment_id = bpf_ntohs(ip.id);
		l4 = l3 + (ip.version_ihl & 0xf) * 4;
	} else if ((version >> 4) == 6) {
		struct eg_ipv6_header ip;
		int index;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
			return -1;
		__builtin_memcpy(pkt->src, ip.saddr, 16);
		__builtin_memcpy(pkt->dst, ip.daddr, 16);
		pkt->family = 6;
		protocol = ip.nexthdr;
		l4 = l3 + sizeof(ip);
#pragma clang loop unroll(disable)
		for (index = 0; index < EG_MAX_IPV6_EXT_HEADERS; index++) {
			if (protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING || protocol == IPPROTO_DSTOPTS) {
				__u8 ext[2];

				if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
					return -1;
				protocol = ext[0];
				l4 += (ext[1] + 1) * 8;
			} else if (protocol == IPPROTO_FRAGMENT) {
				struct {
					__u8 nexthdr;
					__u8 reserved;
					__u16 frag_off;
					__u32 id;
				} ext;
				__u16 frag;

				if (bpf_skb_load_bytes(skb, l4, &ext, sizeof(ext)))
					return -1;
				protocol = ext.nexthdr;
				frag = bpf_ntohs(ext.frag_off);
				if (frag & 0xfff8)
					pkt->fragment = EG_FRAG_LATER;
				else if (frag & 1)
					pkt->fragment = EG_FRAG_FIRST;
				pkt->fragment_id = bpf_ntohl(ext.id);
				l4 += sizeof(ext);
			} else {
				break;
			}
		}
		if (protocol == IPPROTO_HOPOPTS || protocol == IPPROTO_ROUTING || protocol == IPPROTO_DSTOPTS ||
		    protocol == IPPROTO_FRAGMENT)
			return -1;
	} else {
		return -1;
	}
	pkt->protocol = protocol;
	if (pkt->fragment == EG_FRAG_LATER)
		return 0;
	if (protocol == IPPROTO_TCP) {
		struct eg_tcp_header tcp;

		if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)))
			return -1;
		pkt->sport = bpf_ntohs(tcp.sport);
		pkt->dport = bpf_ntohs(tcp.dport);
		pkt->seq = bpf_ntohl(tcp.seq);
		pkt->tcp_flags = tcp.flags;
		pkt->payload_off = l4 + (tcp.doff >> 4) * 4;
	} else if (protocol == IPPROTO_UDP) {
		__u16 ports[2];

		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
			return -1;
		pkt->sport = bpf_ntohs(ports[0]);
		pkt->dport = bpf_ntohs(ports[1]);
	} else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, l4, &pkt->icmp_type, 1))
			return -1;
	}
	return 0;
}

static __always_inline void flow_key_of(const struct eg_packet *pkt, struct eg_flow_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->src, pkt->src, 16);
	__builtin_memcpy(key->dst, pkt->dst, 16);
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->protocol = pkt->protocol;
}

static __always_inline void fragment_key_of(const struct eg_packet *pkt, struct eg_fragment_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->src, pkt->src, 16);
	__builtin_memcpy(key->dst, pkt->dst, 16);
	key->id = pkt->fragment_id;
	key->protocol = pkt->protocol;
}

static __always_inline void flow_from_packet(struct eg_flow *flow, const struct eg_packet *pkt)
{
	__builtin_memcpy(flow->addr, pkt->dst, 16);
	flow->family = pkt->family;
	flow->protocol = pkt->protocol;
	flow->port = pkt->protocol == IPPROTO_TCP || pkt->protocol == IPPROTO_UDP ? pkt->dport : 0;
}

/* A packet no socket hook judged: the same tiers by destination, IP protocol and port (webGroup
 * TCP rules cannot match without a ClientHello). Later fragments take their first fragment's verdict. */
static __always_inline int judge_packet(const struct eg_packet *pkt, struct eg_flow *flow)
{
	struct eg_fragment_key fragment;
	struct eg_decision decision;
	__u8 verdict;

	flow_from_packet(flow, pkt);
	if (pkt->fragment != EG_FRAG_NONE)
		fragment_key_of(pkt, &fragment);
	if (pkt->fragment == EG_FRAG_LATER) {
		__u8 *known = bpf_map_lookup_elem(&eg_fragments, &fragment);

		if (known)
			return *known ? 1 : 0;
		return finish(flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0); /* no first fragment seen */
	}
	eg_evaluate(flow, &decision, EG_WEB_NEVER);
	verdict = finish_decision(flow, &decision);
	if (pkt->fragment == EG_FRAG_FIRST)
		bpf_map_update_elem(&eg_fragments, &fragment, &verdict, BPF_ANY);
	return verdict ? 1 : 0;
}

/* A workload may only send from its own addresses (when it declared them). */
static __always_inline int source_allowed(const struct eg_workload *workload, const struct eg_packet *pkt, int required)
{
	struct eg_addr_key key = { .workload_id = workload->workload_id };

	if (!(workload->flags & EG_WORKLOAD_HAS_ADDRESSES))
		return !required;
	__builtin_memcpy(key.addr, pkt->src, 16);
	return bpf_map_lookup_elem(&eg_workload_addrs, &key) != 0;
}

static __always_inline int deny_forged_source(struct eg_flow *flow, const struct eg_packet *pkt)
{
	flow_from_packet(flow, pkt);
	return finish(flow, 0, EG_TIER_DENY_LIST, 0, 1, 0, 0);
}

/* ---- socket state: connect/sendmsg leave it, cgroup_skb egress reads it ---- */

/* A permitted socket: with the backstop on, its next packet's 5-tuple is recorded as approved. */
static __always_inline void socket_approved(struct bpf_sock_addr *ctx, __u8 config_flags)
{
	struct eg_sk_state *state;

	if (!ctx->sk)
		return;
	state = bpf_sk_storage_get(&eg_sk_state, ctx->sk, 0,
				   (config_flags & EG_CONFIG_BACKSTOP) ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!state)
		return;
	state->verdict = EG_SK_PERMIT;
	state->flags = (config_flags & EG_CONFIG_BACKSTOP) ? EG_SK_RECORD : 0;
}

/* Leaves the socket SNI-pending with the connect-time decision; 0 when storage is unavailable. */
static __always_inline int socket_pending(struct bpf_sock_addr *ctx, const struct eg_flow *flow,
					  const struct eg_decision *decision, __u8 config_flags)
{
	struct eg_sk_state *state;
	struct eg_sk_hello *hello;

	if (!ctx->sk)
		return 0;
	state = bpf_sk_storage_get(&eg_sk_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state)
		return 0;
	hello = bpf_sk_storage_get(&eg_sk_hello, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!hello) {
		bpf_sk_storage_delete(&eg_sk_state, ctx->sk);
		return 0;
	}
	hello->len = 0;
	hello->sni_len = 0;
	state->verdict = EG_SK_PENDING;
	state->flags = (config_flags & EG_CONFIG_BACKSTOP) ? EG_SK_RECORD : 0;
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
 */
static __always_inline int judge_socket(struct bpf_sock_addr *ctx, struct eg_flow *flow)
{
	struct eg_decision decision;
	struct eg_config *config = config_get();
	__u8 config_flags = config ? config->flags : 0;
	int could_permit;

	eg_evaluate(flow, &decision, (config_flags & EG_CONFIG_TLS) ? EG_WEB_CANDIDATE : EG_WEB_IP_ONLY);
	if (decision.candidates.count == 0) {
		if (!finish_decision(flow, &decision))
			return 0;
		socket_approved(ctx, config_flags);
		return 1;
	}
	could_permit = decision.permit;
#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_TLS_MAX_CANDIDATES; index++) {
		if (index >= decision.candidates.count)
			break;
		if (decision.candidates.items[index].action == EG_ACTION_PERMIT)
			could_permit = 1;
	}
	if (could_permit && socket_pending(ctx, flow, &decision, config_flags))
		return 1;
	/* Every outcome denies, or no SNI check is possible: no candidate can match. */
	if (!finish_decision(flow, &decision))
		return 0;
	socket_approved(ctx, config_flags);
	return 1;
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

static __always_inline int socket_flow(struct eg_flow *flow, __u8 hook)
{
	if (!find_workload(0, &flow->workload))
		return 0;
	flow->hook = hook;
	flow->layer = EG_LAYER_CONNECT;
	flow->cgroup_id = bpf_get_current_cgroup_id();
	flow_set_task(flow);
	return 1;
}

static __always_inline int verdict4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct eg_flow flow = {};
	struct eg_config *config;

	if (!socket_flow(&flow, hook))
		return 1;
	mapped_v4(flow.addr, ctx->user_ip4);
	flow.port = bpf_ntohs((__u16)ctx->user_port);
	flow.protocol = ctx->protocol;
	flow.family = 4;

	if (is_dns(&flow)) {
		config = config_get();
		if (config && (config->flags & EG_CONFIG_PROXY_V4)) {
			__u32 proxy;

			remember_origin(ctx, &flow);
			__builtin_memcpy(&proxy, &config->proxy_v4[12], 4);
			ctx->user_ip4 = proxy;
			ctx->user_port = bpf_htons(config->proxy_port);
			stat_inc(EG_STAT_DNS_STEERED);
			socket_approved(ctx, config->flags);
			return 1;
		}
	}
	return judge_socket(ctx, &flow);
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

	if (!socket_flow(&flow, hook))
		return 1;
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	__builtin_memcpy(flow.addr, ip6, sizeof(flow.addr));
	flow.port = bpf_ntohs((__u16)ctx->user_port);
	flow.protocol = ctx->protocol;
	flow.family = is_mapped(ip6) ? 4 : 6;

	if (is_dns(&flow)) {
		__u8 need = flow.family == 4 ? EG_CONFIG_PROXY_V4 : EG_CONFIG_PROXY_V6;

		config = config_get();
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
			socket_approved(ctx, config->flags);
			return 1;
		}
	}
	return judge_socket(ctx, &flow);
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

/* ---- cgroup_skb egress: SNI of pending sockets, raw and ping sockets ---- */

/* Records this packet's 5-tuple in eg_approved, so the backstop passes the flow without judging it again. */
static __always_inline void approve_packet(const struct eg_packet *pkt)
{
	struct eg_flow_key key;
	__u8 approved = 1;

	flow_key_of(pkt, &key);
	bpf_map_update_elem(&eg_approved, &key, &approved, BPF_ANY);
}

static __always_inline void record_flow(struct __sk_buff *skb, struct eg_sk_state *state)
{
	struct eg_packet pkt;

	state->flags &= ~EG_SK_RECORD;
	if (!eg_parse_packet(skb, 0, &pkt))
		approve_packet(&pkt);
}

static __always_inline int backstop_on(void)
{
	struct eg_config *config = config_get();

	return config && (config->flags & EG_CONFIG_BACKSTOP);
}

/*
 * Connections the workload accepted never pass a connect hook: egress policy does not judge replies on them.
 * The SYN-ACK belongs to a request socket, but cgroup_skb runs with skb->sk set to its full socket (the kernel's
 * sk_to_full_sk): the program sees the listener, for every SYN-ACK of every connection it accepts. Later
 * segments leave from the accepted socket. Both are recorded as approved so the backstop lets the replies through.
 */
static __always_inline int approve_syn_ack(struct __sk_buff *skb)
{
	struct eg_packet pkt;

	if (!backstop_on() || eg_parse_packet(skb, 0, &pkt))
		return 1;
	if (pkt.protocol == IPPROTO_TCP && (pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK))
		approve_packet(&pkt);
	return 1;
}

static __always_inline int approve_accepted(struct __sk_buff *skb, struct bpf_sock *sk)
{
	struct eg_sk_state *state;

	if (!backstop_on())
		return 1;
	state = bpf_sk_storage_get(&eg_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (state) {
		state->verdict = EG_SK_PERMIT;
		record_flow(skb, state);
	}
	return 1;
}

/* The ClientHello (or what came instead) decides a pending socket; 1 passes this packet. */
static __always_inline int tls_decide(struct bpf_sock *sk, struct eg_sk_state *state, struct eg_sk_hello *hello,
				      int status)
{
	struct eg_hello_info info = {};
	struct eg_flow flow = {};
	struct eg_config *config = config_get();
	__u8 permit = state->fallback_action, tier = state->fallback_tier, log = state->fallback_log;
	__u32 rule_id = state->fallback_rule_id;
	int index = -1, verdict;

	if (hello)
		index = eg_hello_first_match(hello, status, &state->candidates, &info);
	if (index >= 0) {
		const struct eg_candidate *candidate = &state->candidates.items[index & (EG_TLS_MAX_CANDIDATES - 1)];

		permit = candidate->action == EG_ACTION_PERMIT;
		tier = EG_TIER_POLICY;
		rule_id = candidate->rule_id;
		log = (candidate->flags & EG_RULE_LOG) != 0;
	}
	if (info.ech && config && (config->flags & EG_CONFIG_DENY_ECH)) {
		permit = 0; /* the baseline refuses names it cannot see */
		tier = EG_TIER_BASELINE;
		rule_id = 0;
	}
	__builtin_memcpy(flow.addr, state->addr, sizeof(flow.addr));
	flow.port = state->port;
	flow.protocol = state->protocol;
	flow.family = state->family;
	flow.hook = EG_HOOK_SKB_EGRESS;
	flow.layer = EG_LAYER_TLS;
	flow.pid = state->pid;
	flow.cgroup_id = state->cgroup_id;
	flow.workload = state->workload;
	__builtin_memcpy(flow.comm, state->comm, sizeof(flow.comm));
	verdict = finish(&flow, permit, tier, rule_id, log, hello ? hello->sni : 0, hello ? hello->sni_len : 0);
	state->verdict = verdict ? EG_SK_PERMIT : EG_SK_DENY;
	bpf_sk_storage_delete(&eg_sk_hello, sk);
	return verdict;
}

/*
 * A packet of an SNI-pending socket. Payload of in-order segments is buffered up to EG_HELLO_MAX;
 * those segments leave while the ClientHello is incomplete (at most that much, and only to an
 * address the connect hook accepted); the segment that completes it is passed or dropped with
 * the verdict, and so is everything after.
 */
static __always_inline int tls_pending(struct __sk_buff *skb, struct bpf_sock *sk, struct eg_sk_state *state)
{
	struct eg_sk_hello *hello = bpf_sk_storage_get(&eg_sk_hello, sk, 0, 0);
	struct eg_packet pkt;
	__u32 payload_len, data_seq, have, offset, skip;
	int status;

	if (!hello)
		return tls_decide(sk, state, 0, EG_HELLO_NOT_HELLO);
	if (eg_parse_packet(skb, 0, &pkt) || pkt.protocol != IPPROTO_TCP || pkt.fragment != EG_FRAG_NONE)
		return 0; /* cannot read the segment: hold it back */
	payload_len = skb->len > pkt.payload_off ? skb->len - pkt.payload_off : 0;
	if (payload_len == 0) {
		if (pkt.tcp_flags & TCP_FLAG_SYN) {
			state->base_seq = pkt.seq + 1;
			state->seq_known = 1;
		}
		return 1;
	}
	data_seq = pkt.seq + ((pkt.tcp_flags & TCP_FLAG_SYN) ? 1 : 0); /* data on a SYN (fast open) */
	if (!state->seq_known) {
		state->base_seq = data_seq;
		state->seq_known = 1;
	}
	have = hello->len;
	offset = data_seq - state->base_seq;
	if (offset > have)
		return 0; /* after a gap: the stack sends it again once the gap is filled */
	skip = have - offset;
	if (skip >= payload_len)
		return 1; /* retransmission of bytes already buffered */
	status = hello_status_after(hello, eg_hello_append(skb, pkt.payload_off + skip, payload_len - skip, hello));
	if (status == EG_HELLO_INCOMPLETE)
		return 1;
	return tls_decide(sk, state, hello, status);
}

/* Raw and ping sockets never pass connect/sendmsg hooks: every packet is judged here. */
static __always_inline int judge_socketless(struct __sk_buff *skb)
{
	struct eg_flow flow = {};
	struct eg_packet pkt;

	if (!find_workload(skb, &flow.workload))
		return 1;
	flow.hook = EG_HOOK_SKB_EGRESS;
	flow.layer = EG_LAYER_PACKET;
	flow.cgroup_id = bpf_skb_cgroup_id(skb);
	flow_set_task(&flow);
	if (eg_parse_packet(skb, 0, &pkt))
		return finish(&flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0);
	if (!source_allowed(&flow.workload, &pkt, 0))
		return deny_forged_source(&flow, &pkt);
	return judge_packet(&pkt, &flow);
}

SEC("cgroup_skb/egress")
int eg_skb_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct eg_sk_state *state;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	/* A listener sends only SYN-ACKs here: record each one, and keep no state on the listener itself. */
	if (!sk || (sk->type == SOCK_STREAM_TYPE && sk->state == BPF_TCP_LISTEN))
		return approve_syn_ack(skb);
	state = bpf_sk_storage_get(&eg_sk_state, sk, 0, 0);
	if (state) {
		if (state->verdict == EG_SK_DENY)
			return 0;
		if (state->flags & EG_SK_RECORD)
			record_flow(skb, state);
		if (state->verdict == EG_SK_PENDING)
			return tls_pending(skb, sk, state);
		return 1;
	}
	if (sk->type == SOCK_RAW_TYPE ||
	    (sk->type == SOCK_DGRAM_TYPE && (sk->protocol == IPPROTO_ICMP || sk->protocol == IPPROTO_ICMPV6)))
		return judge_socketless(skb);
	/* With the backstop on, every socket a connect/sendmsg hook permitted has state: this one was accepted. */
	if (sk->type == SOCK_STREAM_TYPE)
		return approve_accepted(skb, sk);
	return 1;
}

/* ---- tc ingress on a workload's host-side interface: the packet-layer backstop ---- */

/* IPv6 link control that may come from :: or a link-local source: neighbour/router discovery
 * (133-137) and multicast listener reports (130-132, 143) to link-local multicast. */
static __always_inline int is_link_control(const struct eg_packet *pkt)
{
	if (pkt->protocol != IPPROTO_ICMPV6 || pkt->fragment != EG_FRAG_NONE)
		return 0;
	if (pkt->icmp_type >= 133 && pkt->icmp_type <= 137)
		return 1;
	return (pkt->icmp_type == 143 || (pkt->icmp_type >= 130 && pkt->icmp_type <= 132)) && pkt->dst[0] == 0xff &&
	       pkt->dst[1] == 0x02;
}

SEC("tc")
int eg_tc_ingress(struct __sk_buff *skb)
{
	struct eg_flow flow = {};
	struct eg_flow_key key;
	struct eg_packet pkt;
	struct eg_workload *workload;
	__u32 ifindex = skb->ifindex;
	__u32 *workload_id;
	__u8 family;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	workload_id = bpf_map_lookup_elem(&eg_interfaces, &ifindex);
	if (!workload_id)
		return TC_ACT_OK; /* not (or no longer) a workload interface */
	workload = bpf_map_lookup_elem(&eg_workload_ids, workload_id);
	if (!workload)
		return TC_ACT_OK;
	flow.workload = *workload;
	flow.hook = EG_HOOK_TC_INGRESS;
	flow.layer = EG_LAYER_PACKET;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		family = 4;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		family = 6;
	else
		return TC_ACT_SHOT; /* neither IP nor ARP */
	if (eg_parse_packet(skb, ETH_HLEN, &pkt) || pkt.family != family)
		return finish(&flow, 0, EG_TIER_DEFAULT, 0, 1, 0, 0) ? TC_ACT_OK : TC_ACT_SHOT;
	if (is_link_control(&pkt))
		return TC_ACT_OK;
	if (!source_allowed(&flow.workload, &pkt, 1))
		return deny_forged_source(&flow, &pkt) ? TC_ACT_OK : TC_ACT_SHOT;
	if (pkt.fragment != EG_FRAG_LATER) {
		flow_key_of(&pkt, &key);
		if (bpf_map_lookup_elem(&eg_approved, &key)) {
			if (pkt.fragment == EG_FRAG_FIRST) {
				struct eg_fragment_key fragment;
				__u8 approved = 1;

				fragment_key_of(&pkt, &fragment);
				bpf_map_update_elem(&eg_fragments, &fragment, &approved, BPF_ANY);
			}
			return TC_ACT_OK; /* a socket hook judged this flow: live connections are not re-judged */
		}
	}
	return judge_packet(&pkt, &flow) ? TC_ACT_OK : TC_ACT_SHOT;
}

/* ---- eg_hello_probe: the ClientHello path without a socket, for tests and benchmarks ---- */

/*
 * Never attached. BPF_PROG_TEST_RUN input: 14 ignored bytes (Ethernet), struct eg_probe_header,
 * then a client's first bytes. Runs the production reassembly, parse and match against the
 * header's rule and returns enum eg_probe_result bits.
 */
SEC("tc")
int eg_hello_probe(struct __sk_buff *skb)
{
	struct eg_probe_header header;
	struct eg_candidate_list list = { .count = 1 };
	struct eg_hello_info info;
	struct eg_sk_hello *hello;
	__u32 zero = 0, offset = ETH_HLEN + sizeof(header);
	int status, result = 0;

	hello = bpf_map_lookup_elem(&eg_probe_hello, &zero);
	if (!hello || bpf_skb_load_bytes(skb, ETH_HLEN, &header, sizeof(header)))
		return 0;
	hello->len = 0;
	list.items[0].rule_id = header.rule_id;
	list.items[0].flags = header.flags;
	list.items[0].action = EG_ACTION_PERMIT;
	status = hello_status_after(hello, skb->len > offset ? eg_hello_append(skb, offset, skb->len - offset, hello) : 0);
	if (eg_hello_first_match(hello, status, &list, &info) == 0)
		result |= EG_PROBE_MATCH;
	if (status == EG_HELLO_INCOMPLETE)
		result |= EG_PROBE_INCOMPLETE;
	if (info.valid)
		result |= EG_PROBE_VALID;
	if (info.has_sni)
		result |= EG_PROBE_SNI;
	if (info.ech)
		result |= EG_PROBE_ECH;
	return result;
}

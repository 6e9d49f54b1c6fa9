/* egressguard's kernel/userspace ABI: every map key/value and event shared with the agent.
 * Fixed-size fields and explicit padding only; src/datapath/abi.ts mirrors this file and
 * test/unit/abi.test.ts checks that mirror against the compiled object's BTF.
 * Addresses are 16 bytes in network order; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one
 * LPM trie serves both families. */
#ifndef EGRESSGUARD_H
#define EGRESSGUARD_H

#include <linux/types.h>

#define EG_MAX_RULES 64          /* tier-2 rules per workload and slot */
#define EG_MAX_WORKLOADS 4096
#define EG_MAX_CGROUP_DEPTH 32   /* ancestor levels searched for an enrolled workload */
#define EG_MAX_CIDRS 65536
#define EG_MAX_LEARNED 131072
#define EG_RINGBUF_BYTES (1 << 22)
#define EG_DNS_PORT 53

enum eg_action { EG_ACTION_DENY = 0, EG_ACTION_PERMIT = 1 };

enum eg_verdict {
	EG_VERDICT_DENIED = 0,
	EG_VERDICT_PERMITTED = 1,
	EG_VERDICT_WOULD_DENY = 2,
	EG_VERDICT_WOULD_PERMIT = 3,
};

enum eg_tier { EG_TIER_DENY_LIST = 0, EG_TIER_BASELINE = 1, EG_TIER_POLICY = 2, EG_TIER_DEFAULT = 3 };

enum eg_layer { EG_LAYER_CONNECT = 1, EG_LAYER_DNS = 2, EG_LAYER_TLS = 3, EG_LAYER_PACKET = 4 };

enum eg_hook {
	EG_HOOK_CONNECT4 = 1,
	EG_HOOK_CONNECT6 = 2,
	EG_HOOK_SENDMSG4 = 3,
	EG_HOOK_SENDMSG6 = 4,
};

/* eg_rule.flags and eg_cidr_value.flags */
enum eg_rule_flag {
	EG_RULE_HAS_CIDR = 1 << 0,     /* destination must be in the rule's CIDRs (eg_rule_cidrs) */
	EG_RULE_ANY_DEST = 1 << 1,     /* every destination matches */
	EG_RULE_WEB = 1 << 2,          /* destination must be learned for this rule (eg_learned) */
	EG_RULE_ANY_NAME = 1 << 3,     /* webGroup "*": the learned condition always holds */
	EG_RULE_WATCH = 1 << 4,        /* report would-*, keep evaluating */
	EG_RULE_LOG = 1 << 5,          /* emit events for permits */
	EG_RULE_TLS_REQUIRED = 1 << 6, /* enforced by the TLS layer (later) */
};

/* Protocol 0 matches any; otherwise an IP protocol number. IPPROTO_ICMP also matches ICMPv6. */
#define EG_PROTO_ANY 0

enum eg_stat {
	EG_STAT_EVENTS_LOST = 0, /* ring buffer full: an event was dropped */
	EG_STAT_PERMITTED = 1,
	EG_STAT_DENIED = 2,
	EG_STAT_DNS_STEERED = 3,
	EG_STAT_COUNT = 4,
};

enum eg_config_flag { EG_CONFIG_PROXY_V4 = 1 << 0, EG_CONFIG_PROXY_V6 = 1 << 1 };

/* eg_config[0] */
struct eg_config {
	__u8 default_action; /* enum eg_action */
	__u8 flags;          /* enum eg_config_flag */
	__u16 proxy_port;    /* host order */
	__u32 _pad;
	__u8 proxy_v4[16]; /* IPv4-mapped */
	__u8 proxy_v6[16];
};

/* eg_workloads: key __u64 cgroup id (cgroup2 directory inode) */
struct eg_workload {
	__u32 workload_id;
	__u16 rule_count; /* rules in the active slot */
	__u8 slot;        /* 0 or 1: which half of eg_rules is live */
	__u8 _pad;
};

struct eg_rule_key {
	__u32 workload_id;
	__u32 rule_ref; /* slot * EG_MAX_RULES + index */
};

struct eg_rule {
	__u32 rule_id;
	__u16 port_lo; /* host order, inclusive */
	__u16 port_hi;
	__u8 action;   /* enum eg_action */
	__u8 protocol; /* EG_PROTO_ANY or an IP protocol number */
	__u16 flags;   /* enum eg_rule_flag */
};

/* eg_deny_cidrs (tier 0) and eg_base_cidrs (tier 1) */
struct eg_cidr_key {
	__u32 prefixlen; /* of addr: 96 + n for IPv4 /n */
	__u8 addr[16];
};

struct eg_cidr_value {
	__u32 rule_id;
	__u16 port_lo;
	__u16 port_hi;
	__u8 protocol;
	__u8 flags; /* EG_RULE_LOG */
	__u8 _pad[2];
};

/* eg_rule_cidrs: prefixlen counts the 64 bits of workload_id and rule_ref plus the CIDR bits. */
struct eg_rule_cidr_key {
	__u32 prefixlen;
	__u32 workload_id;
	__u32 rule_ref;
	__u8 addr[16];
};

#define EG_RULE_CIDR_FIXED_BITS 64

/* eg_learned: IPs learned (from DNS) for a webGroup rule, keyed by the rule's stable id. */
struct eg_learned_key {
	__u32 workload_id;
	__u32 rule_id;
	__u8 addr[16];
};

struct eg_learned_value {
	__u64 expires_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
};

/* eg_sk_origin: the resolver a steered DNS socket really addressed. */
struct eg_sk_origin {
	__u8 addr[16]; /* IPv4-mapped for IPv4 */
	__u16 port;    /* network order, as in bpf_sock_addr.user_port */
	__u8 family;   /* 4 or 6 */
	__u8 _pad[5];
};

/* eg_events ring buffer record */
struct eg_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u64 cgroup_id;    /* the calling process's own cgroup */
	__u32 workload_id;
	__u32 rule_id; /* 0 for the default action */
	__u8 addr[16];
	__u16 port; /* host order */
	__u8 protocol;
	__u8 family;  /* 4 or 6 */
	__u8 verdict; /* enum eg_verdict */
	__u8 tier;    /* enum eg_tier */
	__u8 layer;   /* enum eg_layer */
	__u8 hook;    /* enum eg_hook */
	__u32 pid;    /* tgid */
	char comm[16];
	__u8 _pad[4];
};

#endif

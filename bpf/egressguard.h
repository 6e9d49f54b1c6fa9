/* egressguard's kernel/userspace ABI: every map key/value and event shared with the agent.
 * Fixed-size fields and explicit padding only; src/datapath/abi.ts mirrors this file and
 * test/unit/abi.test.ts checks that mirror against the compiled object's BTF.
 * Addresses are 16 bytes in network order; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one
 * LPM trie serves both families. */
#ifndef EGRESSGUARD_H
#define EGRESSGUARD_H

#include <linux/types.h>

/*
 * Version of the pinned state this header describes: bump it by hand whenever a pinned map's
 * definition, key or value layout, or an enum stored in one changes (test/unit/abi.test.ts fails
 * until you do). eg_abi_version[0] holds it; its own layout (__u32 key, __u32 value) never changes,
 * so an agent can read it before reusing any other pin. Pins without it were written by v1.
 */
enum eg_abi { EG_ABI_VERSION = 9 };

#define EG_MAX_RULES 64          /* tier-2 rules per workload and slot */
#define EG_MAX_WORKLOADS 4096
#define EG_MAX_CGROUP_DEPTH 32   /* ancestor levels searched for an enrolled workload */
#define EG_MAX_CIDRS 262144
#define EG_MAX_LEARNED 131072
#define EG_RINGBUF_BYTES (1 << 22)
#define EG_DNS_PORT 53

/* TLS (cgroup_skb egress). QUIC / UDP 443 is never SNI-checked: its ClientHello travels inside
 * encrypted QUIC Initial packets, which this datapath does not decrypt. A webGroup rule therefore
 * matches UDP only when its protocol is explicitly udp, and then on the learned-IP condition alone;
 * protocol `any` webGroup rules match TCP only. */
#define EG_TLS_MAX_CANDIDATES 8   /* webGroup/tlsRequired rules remembered per pending socket; past them the
                                   * socket is marked EG_SK_OVERFLOW and its SNI walks the rules (at most EG_MAX_RULES) */
#define EG_HELLO_MAX 4096         /* reassembly bound: a longer first flight fails closed */
#define EG_HELLO_CHUNK 256        /* bytes copied per bpf_skb_load_bytes call */
#define EG_MAX_EXTENSIONS 128     /* ClientHello extensions walked; more fails closed */
#define EG_DOMAIN_NAME_BYTES 252  /* LPM data is at most 256 bytes: 4 of rule id + name + end */
#define EG_DOMAIN_NAME_MAX (EG_DOMAIN_NAME_BYTES - 1) /* longest SNI matched (longer: no match) */
#define EG_NAME_END 0             /* terminator after an exact name; never a valid name byte */
#define EG_SNI_MAX 256            /* SNI bytes carried in events (longer names are cut) */

/* Packet layer (cgroup_skb for raw/ping sockets, tc backstop) */
#define EG_MAX_FLOWS 262144       /* approved 5-tuples (node; never evicted, see eg_flow_count) */
/* Overridable only so the fairness test can build the object without the per-workload share (Makefile). */
#ifndef EG_MAX_FLOWS_PER_WORKLOAD
#define EG_MAX_FLOWS_PER_WORKLOAD 4096 /* approved 5-tuples one workload may hold */
#endif
/* First flights tc compares a pending flow's segments with (eg_first_flights, struct eg_sk_hello each, ~4.6 KB):
 * held from a flow's first payload until the peer acknowledges the flight, its verdict denies it, or it ends. */
#define EG_MAX_FIRST_FLIGHTS 8192
#define EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD 256
#define EG_MAX_FRAGMENTS 16384    /* first-fragment verdicts (LRU) */
#define EG_MAX_ADDRESSES 65536    /* workload source addresses */
#define EG_MAX_INTERFACES 4096
#define EG_MAX_IPV6_EXT_HEADERS 6

enum eg_action { EG_ACTION_DENY = 0, EG_ACTION_PERMIT = 1 };

enum eg_verdict {
	EG_VERDICT_DENIED = 0,
	EG_VERDICT_PERMITTED = 1,
	EG_VERDICT_WOULD_DENY = 2,
	EG_VERDICT_WOULD_PERMIT = 3,
};

enum eg_tier { EG_TIER_DENY_LIST = 0, EG_TIER_BASELINE = 1, EG_TIER_POLICY = 2, EG_TIER_DEFAULT = 3 };

enum eg_layer { EG_LAYER_CONNECT = 1, EG_LAYER_DNS = 2, EG_LAYER_TLS = 3, EG_LAYER_PACKET = 4, EG_LAYER_HTTP = 5 };

/* Why the packet layer dropped a packet before any rule was consulted (eg_event.reason; tier 0, rule 0). */
enum eg_reason {
	EG_REASON_NONE = 0,            /* decided by a tier: rule_id names the rule (0: the default action) */
	EG_REASON_FORGED_SOURCE = 1,   /* source (or ARP sender) is not one of the workload's addresses */
	EG_REASON_SOURCE_ROUTED = 2,   /* IPv6 routing header with segments left, or IPv4 LSRR/SSRR */
	EG_REASON_MALFORMED = 3,       /* cannot be parsed within the bounds (truncated, too many headers) */
	EG_REASON_ORPHAN_FRAGMENT = 4, /* a later fragment whose first fragment was never judged */
	EG_REASON_NOT_AS_JUDGED = 5,   /* a decided socket's packet whose addresses, port or protocol differ from what
					* its hook judged (NAT or encapsulation inside the pod), or whose socket's cgroup
					* is not the judged workload's */
	EG_REASON_WITHDRAWN = 6,       /* a socket a re-judgment denied that the kernel could not end (no bpf_sock_destroy
					* before Linux 6.5): its packets are dropped; tier and rule_id name the rule
					* that denies it now */
	EG_REASON_NOT_AS_SENT = 7,     /* a segment at tc on a flow whose first flight is still compared (pending its
					* ClientHello, or permitted and not yet acknowledged) whose bytes are not the ones
					* its socket sent: substituted or injected inside the pod. The flow is revoked */
};

enum eg_hook {
	EG_HOOK_CONNECT4 = 1,
	EG_HOOK_CONNECT6 = 2,
	EG_HOOK_SENDMSG4 = 3,
	EG_HOOK_SENDMSG6 = 4,
	EG_HOOK_SKB_EGRESS = 5, /* cgroup_skb egress: TLS and raw/ping sockets */
	EG_HOOK_TC_INGRESS = 6, /* tc on the workload's host-side interface */
	EG_HOOK_SOCKET_ITER = 7, /* the socket iterators re-judging live sockets after a policy change */
	EG_HOOK_SOCK_RELEASE = 8, /* cgroup/sock_release: a socket closed before its first flight was read */
};

/* What an event reports: a decision (a verdict a hook took) or evidence (what the datapath read of a flow a
 * decision already permitted: its first flight, or that it ended without one). */
enum eg_event_kind { EG_KIND_DECISION = 0, EG_KIND_EVIDENCE = 1 };

/* eg_event.evidence: what the datapath read of the flow's first flight (0: nothing was read). sni then holds the
 * ClientHello's server_name or the request's Host, as sent. */
enum eg_evidence {
	EG_EVIDENCE_HELLO = 1 << 0,    /* a well-formed ClientHello (sni: its server_name; empty without one) */
	EG_EVIDENCE_HTTP = 1 << 1,     /* an HTTP/1.x request head (sni: its one Host header, port removed) */
	EG_EVIDENCE_OTHER = 1 << 2,    /* a first flight that is neither (or a malformed one) */
	EG_EVIDENCE_NO_HELLO = 1 << 3, /* the socket closed before a complete first flight was sent */
	EG_EVIDENCE_ECH = 1 << 4,      /* the ClientHello carries encrypted_client_hello */
};

/* eg_rule.flags and eg_cidr_value.flags */
enum eg_rule_flag {
	EG_RULE_HAS_CIDR = 1 << 0,     /* destination must be in the rule's CIDRs (eg_rule_cidrs) */
	EG_RULE_ANY_DEST = 1 << 1,     /* every destination matches */
	EG_RULE_WEB = 1 << 2,          /* destination must be learned for this rule (eg_learned) */
	EG_RULE_ANY_NAME = 1 << 3,     /* webGroup "*": the learned condition always holds */
	EG_RULE_WATCH = 1 << 4,        /* report would-*, keep evaluating */
	EG_RULE_LOG = 1 << 5,          /* emit events for permits */
	EG_RULE_TLS_REQUIRED = 1 << 6, /* TCP only, and only when the first payload is a ClientHello */
};

/* Protocol 0 matches any; otherwise an IP protocol number. IPPROTO_ICMP also matches ICMPv6. */
#define EG_PROTO_ANY 0

enum eg_stat {
	EG_STAT_EVENTS_LOST = 0, /* ring buffer full: an event was dropped */
	EG_STAT_PERMITTED = 1,
	EG_STAT_DENIED = 2,
	EG_STAT_DNS_STEERED = 3,
	EG_STAT_EVENTS_SUPPRESSED = 4, /* over a workload's event rate limit: counted, reported by its next event */
	EG_STAT_FLOWS_ENDED = 5,      /* live sockets a re-judgment (or an SNI deny) destroyed */
	EG_STAT_FLOWS_REFUSED = 6,     /* approvals refused: the workload held EG_MAX_FLOWS_PER_WORKLOAD, or the table was full */
	EG_STAT_CANDIDATE_OVERFLOWS = 7, /* TLS connects with more candidates than EG_TLS_MAX_CANDIDATES: decided by a rule walk */
	EG_STAT_EVIDENCE_READ = 8,     /* first flights of permitted flows read for their events (EG_SK_EVIDENCE) */
	EG_STAT_FLIGHTS_REFUSED = 9,   /* pending first flights tc could not be given (share or table full): decided at
					* once without the ClientHello (fail closed) */
	EG_STAT_COUNT = 10,
};

/* Event rate limit per workload and CPU (a token bucket in eg_event_budget): a workload hammering denied
 * destinations cannot fill the ring buffer or the agent; what it is over the limit is counted, not lost silently. */
#define EG_EVENT_RATE_PER_SEC 200
#define EG_EVENT_BURST 400

/* eg_event_budget (per-CPU array, index workload_id; ids beyond EG_MAX_WORKLOADS share index 0) */
struct eg_event_budget {
	__u64 credit_ns;  /* earned emission time, at most EG_EVENT_BURST events' worth */
	__u64 updated_ns; /* CLOCK_MONOTONIC of the last refill */
	__u32 suppressed; /* events suppressed since the last one emitted on this CPU */
	__u32 _pad;
};

enum eg_config_flag {
	EG_CONFIG_PROXY_V4 = 1 << 0,
	EG_CONFIG_PROXY_V6 = 1 << 1,
	EG_CONFIG_TLS = 1 << 2,      /* the cgroup_skb program is attached: webGroup rules wait for the SNI */
	EG_CONFIG_BACKSTOP = 1 << 3, /* tc programs are attached: record approved flows */
	EG_CONFIG_DENY_ECH = 1 << 4, /* a ClientHello with encrypted_client_hello is denied */
};

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
enum eg_workload_flag { EG_WORKLOAD_HAS_ADDRESSES = 1 << 0 /* eg_workload_addrs lists its sources */ };

/* eg_workloads: key __u64 cgroup id (cgroup2 directory inode); eg_workload_ids: key __u32 workload_id */
struct eg_workload {
	__u32 workload_id;
	__u16 rule_count; /* rules in the active slot */
	__u8 slot;        /* 0 or 1: which half of eg_rules is live */
	__u8 flags;       /* enum eg_workload_flag */
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
	__u64 cgroup_id;    /* the socket creator's own cgroup (packet layers: the socket's or 0) */
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
	__u32 pid;    /* tgid; 0 at the tc layer */
	char comm[16];
	__u16 sni_len; /* bytes of sni used; 0 when the event has no SNI */
	__u8 reason;   /* enum eg_reason */
	__u8 kind;     /* enum eg_event_kind */
	char sni[EG_SNI_MAX]; /* lower-cased, as sent (see evidence) */
	__u8 src[16];         /* packet layer: the packet's source (ARP: sender); zero at socket hooks */
	__u16 suppressed;     /* events of this workload suppressed on this CPU just before this one (saturates) */
	__u8 evidence;        /* enum eg_evidence bits */
	__u8 _pad2[5];
};

/* eg_domains (LPM trie): the webGroup domains of a rule. name holds the lower-cased name
 * reversed ("api.example.com" -> "moc.elpmaxe.ipa"); an exact name is followed by EG_NAME_END
 * so it matches only itself, a wildcard "*.example.com" is stored as "moc.elpmaxe." so it
 * matches one or more labels before the apex and never the apex. prefixlen counts the 32 bits of
 * rule_id plus 8 per name byte. A lookup key is the reversed SNI + EG_NAME_END. */
struct eg_domain_key {
	__u32 prefixlen;
	__u32 rule_id;
	__u8 name[EG_DOMAIN_NAME_BYTES];
};

/* eg_workload_addrs: the workload's own source addresses; eg_interfaces: key __u32 ifindex of a
 * host-side interface, value __u32 workload_id. */
struct eg_addr_key {
	__u32 workload_id;
	__u8 addr[16];
};

/* eg_approved: 5-tuples the socket hooks judged (addresses as in eg_cidr_key, ports host order),
 * for the workload that judged them: a flow approved for one workload never passes another's interface. */
struct eg_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 _pad[3];
	__u32 workload_id;
};

/* eg_approved value. A flow waiting for its ClientHello verdict is approved for its handshake only: the
 * backstop passes its segments without payload and payload whose bytes are the ones its own socket sent
 * through the cgroup skb program (its first flight, eg_first_flights, from seq_start). A permit turns it into
 * EG_APPROVED_JUDGED: bytes past the first flight pass, the first flight's still only as sent, until the peer
 * acknowledges it (tc egress) and it becomes a full approval; a deny removes it. */
enum eg_approval_kind { EG_APPROVED_FLOW = 1, EG_APPROVED_HANDSHAKE = 2, EG_APPROVED_JUDGED = 3 };

/* TCP FINs the backstop saw on an approved flow: once both sides sent one, the next segment without FIN
 * is the last ACK, and the approval is removed after it passes. */
enum eg_closing { EG_CLOSING_WORKLOAD = 1 << 0, EG_CLOSING_PEER = 1 << 1 };

struct eg_approval {
	__u8 kind;    /* enum eg_approval_kind */
	__u8 closing; /* enum eg_closing */
	__u8 _pad[2];
	__u32 seq_start; /* HANDSHAKE, JUDGED: TCP sequence number of the first payload byte */
	__u8 _pad2[8];
	__u64 seen_ns; /* CLOCK_MONOTONIC when tc last passed a packet of it (refreshed at most once a second) */
};

/* eg_flow_counts (array, index workload_id; ids beyond EG_MAX_WORKLOADS share index 0): each workload's share
 * of eg_approved. An approval past EG_MAX_FLOWS_PER_WORKLOAD is refused, never evicting another's: the
 * workload's flow is then judged packet by packet at tc. */
struct eg_flow_count {
	__u32 held;    /* approvals of the workload in eg_approved */
	__u32 flights; /* its first flights in eg_first_flights (at most EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD) */
	__u64 refused; /* approvals refused since enrolment (cap reached, or the table full) */
};

/* eg_fragments: verdict of an IP datagram's first fragment, for the ones that follow. */
struct eg_fragment_key {
	__u8 src[16];
	__u8 dst[16];
	__u32 id; /* IPv4 16-bit or IPv6 32-bit identification */
	__u8 protocol;
	__u8 _pad[3];
};

/* eg_hello_probe (bpf/tests/hello_probe.bpf.c) input after the Ethernet header, and its result bits. */
struct eg_probe_header {
	__u32 rule_id;
	__u16 flags; /* enum eg_rule_flag: EG_RULE_WEB, EG_RULE_ANY_NAME */
	__u8 _pad[2];
};

enum eg_probe_result {
	EG_PROBE_MATCH = 1 << 0,      /* the rule's candidate matched: the flow would be permitted */
	EG_PROBE_INCOMPLETE = 1 << 1, /* more bytes needed */
	EG_PROBE_VALID = 1 << 2,      /* a well-formed ClientHello */
	EG_PROBE_SNI = 1 << 3,        /* with a server_name */
	EG_PROBE_ECH = 1 << 4,        /* with encrypted_client_hello */
};

/* ---- kernel-private socket state (sk_storage; userspace never reads it) ---- */

struct eg_candidate {
	__u32 rule_id;
	__u16 flags; /* enum eg_rule_flag */
	__u8 action;
	__u8 _pad;
};

struct eg_candidate_list {
	__u8 count;
	__u8 _pad[3];
	struct eg_candidate items[EG_TLS_MAX_CANDIDATES];
};

/* eg_sk_owner: the workload a socket was created in (see bpf/lib/flow.h). */
struct eg_sk_owner {
	__u64 workload_cgroup; /* eg_workloads key of the owning workload */
	__u64 cgroup_id;       /* the creating task's own cgroup, for events */
};

enum eg_sk_verdict { EG_SK_PERMIT = 1, EG_SK_PENDING = 2, EG_SK_DENY = 3 };
enum eg_sk_flag {
	EG_SK_RECORD = 1 << 0,   /* the next packet's 5-tuple goes to eg_approved */
	EG_SK_OVERFLOW = 1 << 1, /* pending with more candidates than the list holds: the SNI walks the rules */
	EG_SK_EVIDENCE = 1 << 2, /* a permitted socket whose first flight is read for its events (never held back) */
	EG_SK_WITHDRAWN = 1 << 3, /* denied by a re-judgment that could not end it: every packet is dropped and reported
				   * (fallback_tier, fallback_rule_id: the rule that denies it now), but a datagram
				   * socket's sendto() elsewhere that the hook permits (lib/sock_state.h withdrawn_egress) */
};

/* eg_sk_state: decided or SNI-pending sockets. A pending socket keeps the connect-time decision:
 * the candidate rules in order (the first EG_TLS_MAX_CANDIDATES; EG_SK_OVERFLOW when there were more)
 * and the fallback (first non-TLS rule that matched, or the default).
 * A permitted socket read for evidence (EG_SK_EVIDENCE) keeps its connect decision in fallback_*. */
struct eg_sk_state {
	__u8 verdict; /* enum eg_sk_verdict */
	__u8 flags;   /* enum eg_sk_flag */
	__u8 _reserved; /* keeps the byte layout; the count lives in candidates */
	__u8 fallback_action;
	__u8 fallback_tier;
	__u8 fallback_log;
	__u8 seq_known;
	__u8 family;
	__u32 fallback_rule_id;
	__u32 base_seq; /* TCP sequence number of the first payload byte */
	__u32 pid;
	__u16 port;
	__u8 protocol;
	__u8 _pad;
	__u8 addr[16];
	__u64 cgroup_id;
	struct eg_workload workload;
	char comm[16];
	struct eg_candidate_list candidates;
	__u8 approved_src[16]; /* the approved flow's source (with approved_sport): its eg_approved key at release */
	__u16 approved_sport;  /* 0: no flow of this socket is approved */
	__u8 _pad2[6];
};

/* eg_sk_hello: the reassembled first flight of a pending socket, then the parsed name; eg_first_flights holds
 * a copy by flow key for tc. */
struct eg_sk_hello {
	__u16 len;     /* bytes in buf */
	__u16 sni_len; /* bytes in sni */
	__u8 ech;      /* encrypted_client_hello present */
	__u8 _pad[3];
	struct eg_domain_key key;
	__u8 sni[EG_SNI_MAX];
	__u8 buf[EG_HELLO_MAX + EG_HELLO_CHUNK]; /* the tail lets a masked offset plus a chunk stay in bounds */
};

#endif

/* TLS ClientHello, or a plain HTTP/1.x request head: reassembly, parse and name match (cgroup_skb
 * egress and the test probe). The Host header of a request is matched like an SNI: same domain trie,
 * same reassembly bound, same pending decision. */
#ifndef EG_LIB_TLS_HELLO_H
#define EG_LIB_TLS_HELLO_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct eg_domain_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_domains SEC(".maps");

#define HELLO_MASK (EG_HELLO_MAX - 1)

enum eg_hello_status { EG_HELLO_INCOMPLETE = 0, EG_HELLO_COMPLETE = 1, EG_HELLO_NOT_HELLO = 2 };

struct eg_hello_info {
	__u32 sni_off; /* into buf */
	__u32 sni_len; /* as sent */
	__u8 valid;    /* a well-formed ClientHello (or HTTP request head) */
	__u8 has_sni;  /* a server_name extension with a host_name entry (or one Host header) */
	__u8 ech;      /* encrypted_client_hello extension present */
	__u8 http;     /* the first flight is an HTTP request: sni_* is its Host (port removed) */
	__u8 name_ok;  /* hello->key holds the name's lookup key (eg_hello_name) */
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

/* Walk of an HTTP/1.x request head. Only what a server routes on counts: a request line
 * "METHOD SP /..." (or "*"; an absolute-form target names its own host, so it never matches) and
 * exactly one "Host:" header; a folded line or a port that is not digits makes the head invalid. */
struct eg_http_walk {
	const struct eg_sk_hello *hello;
	__u32 len;
	__u32 line_start;
	__u32 value_start; /* of the current line's Host value, when it is a Host line */
	__u32 colon;       /* last ':' in the current Host value, 0 when none */
	__u32 host_off;
	__u32 host_len;
	__u8 stage;       /* request line: 0 method, 1 target's first byte, 2 rest; 3 headers */
	__u8 host_line;   /* the current line is a Host header */
	__u8 port_digits; /* only digits since colon */
	__u8 hosts;       /* Host headers seen */
	__u8 end;         /* the empty line that ends the head was seen */
	__u8 bad;
};

static __always_inline __u32 lower(__u32 c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* The end of a header line at index (the '\n'): its Host value, if it is one. */
static __always_inline void http_line_end(struct eg_http_walk *walk, __u32 index)
{
	__u32 end = index, start = walk->value_start;

	if (end > walk->line_start && hello_u8(walk->hello, end - 1) == '\r')
		end--;
	if (!walk->host_line)
		return;
	if (walk->colon) {
		if (!walk->port_digits) {
			walk->bad = 1;
			return;
		}
		end = walk->colon;
	}
	walk->hosts++;
	walk->host_off = start;
	walk->host_len = end > start ? end - start : 0;
}

/* One byte of the request head (a bpf_loop callback). */
static long http_step(__u64 index, void *data)
{
	struct eg_http_walk *walk = data;
	__u32 i = index, c;

	if (i >= walk->len || walk->bad || walk->end)
		return 1;
	c = hello_u8(walk->hello, i);
	if (walk->stage == 0) { /* method: upper-case letters, then one space */
		if (c == ' ' && i > 0)
			walk->stage = 1;
		else if (!(c >= 'A' && c <= 'Z') || i >= 16)
			walk->bad = 1;
		return 0;
	}
	if (walk->stage == 1) {
		walk->stage = 2;
		if (c != '/' && c != '*')
			walk->bad = 1; /* absolute or authority form: the target names the host */
		return 0;
	}
	if (c == '\n') {
		if (walk->stage == 3)
			http_line_end(walk, i);
		if (walk->stage == 3 && (i == walk->line_start || (i == walk->line_start + 1 && hello_u8(walk->hello, walk->line_start) == '\r')))
			walk->end = 1;
		walk->stage = 3;
		walk->line_start = i + 1;
		walk->host_line = 0;
		walk->colon = 0;
		return 0;
	}
	if (walk->stage != 3)
		return 0;
	if (i == walk->line_start && (c == ' ' || c == '\t')) {
		walk->bad = 1; /* obsolete line folding */
		return 0;
	}
	if (i == walk->line_start + 4 && c == ':' && lower(hello_u8(walk->hello, i - 4)) == 'h' &&
	    lower(hello_u8(walk->hello, i - 3)) == 'o' && lower(hello_u8(walk->hello, i - 2)) == 's' &&
	    lower(hello_u8(walk->hello, i - 1)) == 't') {
		walk->host_line = 1;
		walk->value_start = i + 1;
		return 0;
	}
	if (!walk->host_line)
		return 0;
	if ((c == ' ' || c == '\t') && i == walk->value_start) {
		walk->value_start = i + 1; /* optional whitespace before the value */
		return 0;
	}
	if (c == ':') {
		walk->colon = i;
		walk->port_digits = 1;
	} else if (walk->colon && c != '\r' && !(c >= '0' && c <= '9')) {
		walk->port_digits = 0;
	}
	return 0;
}

struct eg_http_head {
	__u32 host_off;
	__u32 host_len;
	__u8 hosts;
	__u8 end; /* complete */
	__u8 bad;
	__u8 _pad;
};

/* Walks the buffered request head (the walk stays on this frame: it holds a pointer). */
EG_SUBPROG int eg_http_scan(const struct eg_sk_hello *hello, struct eg_http_head *head)
{
	struct eg_http_walk walk = {};

	if (!hello || !head)
		return 0;
	walk.hello = hello;
	walk.len = hello->len > EG_HELLO_MAX ? EG_HELLO_MAX : hello->len;
	bpf_loop(EG_HELLO_MAX, http_step, &walk, 0);
	head->host_off = walk.host_off;
	head->host_len = walk.host_len;
	head->hosts = walk.hosts;
	head->end = walk.end;
	head->bad = walk.bad;
	head->_pad = 0;
	return 0;
}

/* Whether the buffer starts a ClientHello record (or an HTTP request head), and whether it is all there. */
static __always_inline int hello_status(const struct eg_sk_hello *hello)
{
	__u32 len = hello->len, record;

	if (len >= 1 && hello_u8(hello, 0) >= 'A' && hello_u8(hello, 0) <= 'Z') {
		struct eg_http_head head = {};

		eg_http_scan(hello, &head);
		if (head.bad)
			return EG_HELLO_NOT_HELLO;
		return head.end ? EG_HELLO_COMPLETE : EG_HELLO_INCOMPLETE;
	}

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

/* key: the name's lookup key (info->name_ok), its rule_id set here per lookup. */
static __always_inline int candidate_matches(const struct eg_candidate *candidate, struct eg_domain_key *key,
					     const struct eg_hello_info *info)
{
	if (!info->valid)
		return 0;
	if (info->http && (!(candidate->flags & EG_RULE_WEB) || (candidate->flags & EG_RULE_TLS_REQUIRED)))
		return 0; /* a Host header stands for a name, never for TLS */
	if (!(candidate->flags & EG_RULE_WEB))
		return 1; /* tlsRequired alone: any ClientHello */
	if (!info->has_sni || info->sni_len == 0)
		return 0;
	if (candidate->flags & EG_RULE_ANY_NAME)
		return 1;
	if (!info->name_ok)
		return 0;
	key->rule_id = candidate->rule_id;
	return bpf_map_lookup_elem(&eg_domains, key) != 0;
}

/*
 * What a first flight is, as every reader of it sees it: parses a complete ClientHello (or HTTP request head) into
 * info and copies its name into hello->sni (and the lookup key, info->name_ok). Used by the deciding path
 * (eg_hello_first_match) and the evidence path alike (lib/sock_state.h).
 */
EG_SUBPROG int eg_hello_inspect(struct eg_sk_hello *hello, int status, struct eg_hello_info *info)
{
	if (!hello || !info)
		return 0;
	__builtin_memset(info, 0, sizeof(*info));
	hello->sni_len = 0;
	if (status == EG_HELLO_COMPLETE && hello_u8(hello, 0) == 0x16) {
		eg_hello_parse(hello, info);
	} else if (status == EG_HELLO_COMPLETE) {
		struct eg_http_head head = {};

		eg_http_scan(hello, &head);
		info->http = 1;
		info->valid = head.end && !head.bad;
		info->has_sni = head.hosts == 1;
		info->sni_off = head.host_off;
		info->sni_len = head.host_len;
	}
	if (info->valid && info->has_sni)
		info->name_ok = eg_hello_name(hello, info);
	return 0;
}

/* The enum eg_evidence bits of an inspected first flight. */
static __always_inline __u8 hello_evidence(int status, const struct eg_hello_info *info)
{
	if (status != EG_HELLO_COMPLETE || !info->valid)
		return EG_EVIDENCE_OTHER;
	return (info->http ? EG_EVIDENCE_HTTP : EG_EVIDENCE_HELLO) | (info->ech ? EG_EVIDENCE_ECH : 0);
}

/*
 * The index of the first candidate (in rule order) an inspected first flight satisfies (info; key: its name's
 * lookup key), or -1. A global function: the verifier checks it once, not once per path of its callers.
 */
EG_SUBPROG int eg_first_candidate(const struct eg_candidate_list *list, struct eg_domain_key *key,
				  const struct eg_hello_info *info)
{
	if (!list || !key || !info)
		return -1;
#pragma clang loop unroll(disable)
	for (int index = 0; index < EG_TLS_MAX_CANDIDATES; index++) {
		if (index >= list->count)
			break;
		if (candidate_matches(&list->items[index], key, info))
			return index;
	}
	return -1;
}

/* Inspects the first flight (eg_hello_inspect) and returns the first candidate it satisfies, or -1. */
EG_SUBPROG int eg_hello_first_match(struct eg_sk_hello *hello, int status, const struct eg_candidate_list *list,
				    struct eg_hello_info *info)
{
	if (!hello || !list || !info)
		return -1;
	eg_hello_inspect(hello, status, info);
	return eg_first_candidate(list, &hello->key, info);
}

#endif

// SPDX-License-Identifier: GPL-2.0
/* eg_hello_probe: the production ClientHello parser and candidate match (bpf/lib/tls_hello.h: eg_hello_inspect,
 * eg_first_candidate; not the overflow walk or the ECH baseline of name_verdict) without a socket, for
 * test/unit/clienthello-fuzz.test.ts and bench/packet-cost.ts. Its own object: nothing here ships
 * in bpf/egressguard.bpf.o. Loaded with the production object's pin root, it shares eg_domains. */
#include "lib/tls_hello.h"

char LICENSE[] SEC("license") = "GPL";

/* Scratch for eg_hello_probe (test runs and benchmarks only): the probe has no socket. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_sk_hello);
} eg_probe_hello SEC(".maps");

/* Never called or loaded: keeps the probe's input header and result bits in this object's BTF,
 * where test/unit/abi.test.ts checks them against src/datapath/abi.ts. */
__attribute__((noinline, used)) int eg_abi_probe(struct eg_probe_header *header, enum eg_probe_result *result)
{
	return header != 0 && result != 0;
}

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
	eg_hello_inspect(hello, status, &info);
	if (eg_first_candidate(&list, &hello->key, &info) == 0)
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

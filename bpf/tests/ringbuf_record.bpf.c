// SPDX-License-Identifier: GPL-2.0
/* eg_malformed_record: submits a record to eg_events that is not a struct eg_event, so a test can
 * show the agent counts it as malformed, never as lost. Loaded with the datapath's pin root, it
 * shares the pinned eg_events. Never attached: run through BPF_PROG_TEST_RUN. */
#include "lib/report.h"

char LICENSE[] SEC("license") = "GPL";

#define EG_MALFORMED_RECORD_BYTES 10

SEC("tc")
int eg_malformed_record(struct __sk_buff *skb)
{
	__u8 *record = bpf_ringbuf_reserve(&eg_events, EG_MALFORMED_RECORD_BYTES, 0);

	if (!record)
		return 0;
	__builtin_memset(record, 0xee, EG_MALFORMED_RECORD_BYTES);
	bpf_ringbuf_submit(record, 0);
	return 1;
}

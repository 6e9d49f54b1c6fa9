/* Maps every concern reads (the node-wide configuration), and the pinned state's ABI version. */
#ifndef EG_LIB_MAPS_H
#define EG_LIB_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_config SEC(".maps");

/* Read and written by userspace only (src/datapath/datapath.ts): never referenced by a program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_abi_version SEC(".maps");

static __always_inline struct eg_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&eg_config, &zero);
}

#endif

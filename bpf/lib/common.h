/* Every header's base: kernel and libbpf headers, the ABI, the subprogram convention and the
 * address forms (IPv4 is carried IPv4-mapped, see egressguard.h). */
#ifndef EG_LIB_COMMON_H
#define EG_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "egressguard.h"

#define SOCK_STREAM_TYPE 1
#define SOCK_DGRAM_TYPE 2
#define SOCK_RAW_TYPE 3
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define TCP_FLAG_URG 0x20
/* A global function: verified once on its own instead of once per calling path. Pointer
 * arguments may be null to the verifier, so each one checks them. */
#define EG_SUBPROG __attribute__((noinline))

static __always_inline void mapped_v4(__u8 addr[16], __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4_be, 4);
}

static __always_inline int is_mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff);
}

#endif

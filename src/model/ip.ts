// Address helpers shared by the DNS proxy, the workload registry and the agent. A leaf module: it imports nothing.

const MAPPED_PREFIX = '::ffff:';
const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address in its dotted form (`::ffff:198.18.0.1` → `198.18.0.1`),
 * otherwise the address unchanged. Dual-stack sockets report IPv4 peers this way; policy and registry key on IPv4.
 */
export function unmapIpv4(address: string): string {
  if (!address.toLowerCase().startsWith(MAPPED_PREFIX)) return address;
  const inner = address.slice(MAPPED_PREFIX.length);
  return DOTTED_QUAD.test(inner) ? inner : address;
}

/** True for an IPv6 address that is not an IPv4-mapped one (which is IPv4 traffic on a dual-stack socket). */
export function isIpv6Address(address: string): boolean {
  return unmapIpv4(address).includes(':');
}

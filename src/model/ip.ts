// IP address helpers shared by policy, datapath, DNS proxy, workload registry and agent. A leaf module: it imports
// nothing from src.
import { isIPv4, isIPv6 } from 'node:net';

const MAPPED_PREFIX = '::ffff:';

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address in its dotted form (`::ffff:198.18.0.1` → `198.18.0.1`),
 * otherwise the address unchanged. Dual-stack sockets report IPv4 peers this way; policy and registry key on IPv4.
 */
export function unmapIpv4(address: string): string {
  if (!address.toLowerCase().startsWith(MAPPED_PREFIX)) return address;
  const inner = address.slice(MAPPED_PREFIX.length);
  return isIPv4(inner) ? inner : address;
}

/** True for an IPv6 address that is not an IPv4-mapped one (which is IPv4 traffic on a dual-stack socket). */
export function isIpv6Address(address: string): boolean {
  return unmapIpv4(address).includes(':');
}

/** The 4 bytes of a dotted quad (not validated: callers check with isIPv4 first). */
export function ipv4ToBytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** Expands an IPv6 address (including `::` and an embedded IPv4 tail) to 16 bytes. */
export function ipv6ToBytes(address: string): number[] {
  let text = address;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail.push(...ipv4ToBytes(text.slice(lastColon + 1)));
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const missing = 8 - headGroups.length - restGroups.length;
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : missing).fill('0'), ...restGroups];
  const bytes: number[] = [];
  for (const group of groups) {
    const value = parseInt(group, 16);
    bytes.push(value >> 8, value & 0xff);
  }
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** RFC 5952 text of 16 bytes. */
export function bytesToIpv6(bytes: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Network-order bytes of an IP address: 4 for IPv4, 16 for IPv6 (embedded dotted quad included). Throws otherwise. */
export function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(ipv4ToBytes(address));
  if (!isIPv6(address) || address.includes('%')) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  return Buffer.from(ipv6ToBytes(address));
}

/** Text of 4 bytes (dotted quad) or 16 bytes (RFC 5952). */
export function formatIp(bytes: Uint8Array): string {
  return bytes.length === 4 ? Array.from(bytes).join('.') : bytesToIpv6(Array.from(bytes));
}

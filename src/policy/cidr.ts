// CIDR parsing and normalisation (network address with host bits cleared), IPv4 and IPv6.
import { isIPv4, isIPv6 } from 'node:net';
import type { Cidr } from './types.js';

function ipv4ToBytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** Expands an IPv6 address (including `::` and an embedded IPv4 tail) to 16 bytes. */
function ipv6ToBytes(address: string): number[] {
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

function bytesToIpv6(bytes: number[]): string {
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

function clearHostBits(bytes: number[], prefix: number): number[] {
  return bytes.map((byte, i) => {
    const keep = Math.min(8, Math.max(0, prefix - i * 8));
    return byte & ((0xff << (8 - keep)) & 0xff);
  });
}

/** Parses `a.b.c.d/n`, `x::y/n`, or a bare address (host route: /32 or /128); returns the reason as a string when invalid. */
export function parseCidr(text: string): Cidr | string {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const address = slash === -1 ? trimmed : trimmed.slice(0, slash);
  const prefixText = slash === -1 ? undefined : trimmed.slice(slash + 1);
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes('%') ? 6 : 0;
  if (family === 0) return `"${address}" is not an IPv4 or IPv6 address`;
  const maxPrefix = family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (prefixText !== undefined) {
    if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return `prefix length "/${prefixText}" must be a whole number from 0 to ${maxPrefix}`;
    }
    prefix = Number(prefixText);
  }
  const bytes = clearHostBits(family === 4 ? ipv4ToBytes(address) : ipv6ToBytes(address), prefix);
  const network = family === 4 ? bytes.join('.') : bytesToIpv6(bytes);
  return { family, address: network, prefix };
}

/** True when `address` (text, same family as the CIDR) lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const inside = parseCidr(`${address}/${cidr.prefix}`);
  return typeof inside !== 'string' && inside.family === cidr.family && inside.address === cidr.address;
}

export function formatCidr(cidr: Cidr): string {
  return `${cidr.address}/${cidr.prefix}`;
}

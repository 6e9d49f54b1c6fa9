// CIDR parsing and normalisation (network address with host bits cleared), IPv4 and IPv6.
import { isIPv4, isIPv6 } from 'node:net';
import { bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from '../model/ip.js';
import type { Cidr } from './types.js';

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

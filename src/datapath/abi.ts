// TypeScript mirror of bpf/egressguard.h: struct layouts, constants, encoders and decoders.
// test/unit/abi.test.ts checks every layout here against the compiled object's BTF.
// Multi-byte fields are host order (little-endian on every supported architecture) unless noted.
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';

import { formatIp, ipBytes } from '../model/ip.js';
import type { Cidr, DomainPattern, RuleAction, RuleProtocol } from '../policy/types.js';
import type { FirstFlightSeen, Layer, PacketReason, Tier, Verdict } from '../model/decision.js';
import type { KernelEvent } from './types.js';

if (endianness() !== 'LE') throw new Error('egressguard supports little-endian hosts only');

/** enum eg_abi: the pinned state's layout version (see bpf/egressguard.h; bumped by hand, checked by abi.test.ts). */
export const EG_ABI_VERSION = 9;

export const EG_MAX_RULES = 64;
/** Capacities (max_entries) of the workload and learned-address maps, for occupancy metrics. */
export const EG_MAX_WORKLOADS = 4096;
export const EG_MAX_LEARNED = 131072;
export const EG_RULE_CIDR_FIXED_BITS = 64;

export const ACTION = { deny: 0, permit: 1 } as const satisfies Record<RuleAction, number>;
export const VERDICTS: readonly Verdict[] = ['denied', 'permitted', 'would-deny', 'would-permit'];
export const LAYERS: Readonly<Record<number, Layer>> = { 1: 'connect', 2: 'dns', 3: 'tls', 4: 'packet', 5: 'http' };
export const TIER = { denyList: 0, baseline: 1, policy: 2, default: 3 } as const satisfies Record<string, Tier>;
/** enum eg_reason: why the packet layer dropped a packet before any rule (index = value; 0: a tier decided). */
export const REASONS: readonly (PacketReason | null)[] = [
  null,
  'forged-source',
  'source-routed',
  'malformed',
  'orphan-fragment',
  'not-as-judged',
  'withdrawn-no-sock-destroy',
  'not-as-sent',
];
/** enum eg_hook: which program decided an event. */
export const HOOK = {
  connect4: 1,
  connect6: 2,
  sendmsg4: 3,
  sendmsg6: 4,
  skbEgress: 5,
  tcIngress: 6,
  socketIter: 7,
  sockRelease: 8,
} as const;
/** enum eg_event_kind: a decision, or evidence of a flow a decision already permitted. */
export const EVENT_KIND = { decision: 0, evidence: 1 } as const;
/** enum eg_evidence: what the datapath read of a flow's first flight. */
export const EVIDENCE = { hello: 1 << 0, http: 1 << 1, other: 1 << 2, noHello: 1 << 3, ech: 1 << 4 } as const;
export const PROTOCOL = { any: 0, icmp: 1, tcp: 6, udp: 17 } as const satisfies Record<RuleProtocol, number>;

export const RULE_FLAG = {
  hasCidr: 1 << 0,
  anyDestination: 1 << 1,
  web: 1 << 2,
  anyName: 1 << 3,
  watch: 1 << 4,
  log: 1 << 5,
  tlsRequired: 1 << 6,
} as const;

export const CONFIG_FLAG = { proxyV4: 1 << 0, proxyV6: 1 << 1, tls: 1 << 2, backstop: 1 << 3, denyEch: 1 << 4 } as const;

export const WORKLOAD_FLAG = { hasAddresses: 1 << 0 } as const;

export const EG_DOMAIN_NAME_BYTES = 252;
/** Longest name the domain trie holds (one byte goes to the terminator). */
export const EG_DOMAIN_NAME_MAX = EG_DOMAIN_NAME_BYTES - 1;
export const EG_NAME_END = 0;
export const EG_SNI_MAX = 256;
export const EG_HELLO_MAX = 4096;

/** enum eg_probe_result: what eg_hello_probe returns. */
export const PROBE = { match: 1 << 0, incomplete: 1 << 1, valid: 1 << 2, sni: 1 << 3, ech: 1 << 4 } as const;

export const STAT = {
  eventsLost: 0,
  permitted: 1,
  denied: 2,
  dnsSteered: 3,
  eventsSuppressed: 4,
  flowsEnded: 5,
  flowsRefused: 6,
  candidateOverflows: 7,
  evidenceRead: 8,
  flightsRefused: 9,
} as const;
export const STAT_COUNT = 10;
/** eg_approved: node capacity, and the share one workload may hold (bpf/egressguard.h). */
export const EG_MAX_FLOWS = 262144;
export const EG_MAX_FLOWS_PER_WORKLOAD = 4096;
/** enum eg_approval_kind: all of a flow, its handshake only (pending its ClientHello), or permitted with its first
 * flight still compared until the server acknowledges it. */
export const APPROVAL_KIND = { flow: 1, handshake: 2, judged: 3 } as const;
/** enum eg_closing: FINs tc saw on an approved TCP flow. */
export const CLOSING = { workload: 1 << 0, peer: 1 << 1 } as const;
/** The kernel's event rate limit per workload and CPU (bpf/lib/report.h). */
export const EG_EVENT_RATE_PER_SEC = 200;
export const EG_EVENT_BURST = 400;

export interface Member {
  offset: number;
  size: number;
}

export interface StructLayout {
  size: number;
  members: Record<string, Member>;
}

function layout<M extends Record<string, [offset: number, size: number]>>(
  size: number,
  members: M,
): { size: number; members: { [K in keyof M]: Member } } {
  const result = {} as { [K in keyof M]: Member };
  for (const key of Object.keys(members) as Array<keyof M>) {
    const [offset, memberSize] = members[key]!;
    result[key] = { offset, size: memberSize };
  }
  return { size, members: result };
}

export const LAYOUTS = {
  eg_config: layout(40, {
    default_action: [0, 1],
    flags: [1, 1],
    proxy_port: [2, 2],
    _pad: [4, 4],
    proxy_v4: [8, 16],
    proxy_v6: [24, 16],
  }),
  eg_workload: layout(8, { workload_id: [0, 4], rule_count: [4, 2], slot: [6, 1], flags: [7, 1] }),
  eg_rule_key: layout(8, { workload_id: [0, 4], rule_ref: [4, 4] }),
  eg_rule: layout(12, {
    rule_id: [0, 4],
    port_lo: [4, 2],
    port_hi: [6, 2],
    action: [8, 1],
    protocol: [9, 1],
    flags: [10, 2],
  }),
  eg_cidr_key: layout(20, { prefixlen: [0, 4], addr: [4, 16] }),
  eg_cidr_value: layout(12, {
    rule_id: [0, 4],
    port_lo: [4, 2],
    port_hi: [6, 2],
    protocol: [8, 1],
    flags: [9, 1],
    _pad: [10, 2],
  }),
  eg_rule_cidr_key: layout(28, { prefixlen: [0, 4], workload_id: [4, 4], rule_ref: [8, 4], addr: [12, 16] }),
  eg_learned_key: layout(24, { workload_id: [0, 4], rule_id: [4, 4], addr: [8, 16] }),
  eg_learned_value: layout(8, { expires_ns: [0, 8] }),
  eg_sk_origin: layout(24, { addr: [0, 16], port: [16, 2], family: [18, 1], _pad: [19, 5] }),
  eg_event: layout(352, {
    timestamp_ns: [0, 8],
    cgroup_id: [8, 8],
    workload_id: [16, 4],
    rule_id: [20, 4],
    addr: [24, 16],
    port: [40, 2],
    protocol: [42, 1],
    family: [43, 1],
    verdict: [44, 1],
    tier: [45, 1],
    layer: [46, 1],
    hook: [47, 1],
    pid: [48, 4],
    comm: [52, 16],
    sni_len: [68, 2],
    reason: [70, 1],
    kind: [71, 1],
    sni: [72, 256],
    src: [328, 16],
    suppressed: [344, 2],
    evidence: [346, 1],
    _pad2: [347, 5],
  }),
  eg_event_budget: layout(24, { credit_ns: [0, 8], updated_ns: [8, 8], suppressed: [16, 4], _pad: [20, 4] }),
  eg_domain_key: layout(260, { prefixlen: [0, 4], rule_id: [4, 4], name: [8, 252] }),
  eg_addr_key: layout(20, { workload_id: [0, 4], addr: [4, 16] }),
  eg_flow_key: layout(44, {
    src: [0, 16],
    dst: [16, 16],
    sport: [32, 2],
    dport: [34, 2],
    protocol: [36, 1],
    _pad: [37, 3],
    workload_id: [40, 4],
  }),
  eg_approval: layout(24, {
    kind: [0, 1],
    closing: [1, 1],
    _pad: [2, 2],
    seq_start: [4, 4],
    _pad2: [8, 8],
    seen_ns: [16, 8],
  }),
  eg_flow_count: layout(16, { held: [0, 4], flights: [4, 4], refused: [8, 8] }),
  eg_probe_header: layout(8, { rule_id: [0, 4], flags: [4, 2], _pad: [6, 2] }),
} satisfies Record<string, StructLayout>;

// ---- addresses ----

/** 16-byte network-order address; IPv4 becomes IPv4-mapped IPv6. Throws on anything else. */
export function addressToBytes(ip: string): Buffer {
  const raw = ipBytes(ip);
  if (raw.length === 16) return raw;
  const mapped = Buffer.alloc(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  raw.copy(mapped, 12);
  return mapped;
}

export function isMappedV4(bytes: Buffer): boolean {
  return bytes.subarray(0, 10).every((byte) => byte === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Inverse of addressToBytes: IPv4-mapped addresses come back as dotted quads. */
export function bytesToAddress(bytes: Buffer): string {
  if (bytes.length !== 16) throw new Error(`address must be 16 bytes, got ${bytes.length}`);
  return formatIp(isMappedV4(bytes) ? bytes.subarray(12) : bytes);
}

/** The CIDR's address with host bits cleared, and its prefix length over the 128-bit (mapped) address. */
export function cidrToKeyParts(cidr: Cidr): { addr: Buffer; prefixBits: number } {
  const maxPrefix = cidr.family === 4 ? 32 : 128;
  if (!Number.isInteger(cidr.prefix) || cidr.prefix < 0 || cidr.prefix > maxPrefix) {
    throw new Error(`invalid prefix length /${cidr.prefix} for IPv${cidr.family} CIDR ${cidr.address}`);
  }
  if ((cidr.family === 4 && !isIPv4(cidr.address)) || (cidr.family === 6 && !isIPv6(cidr.address))) {
    throw new Error(`CIDR address ${cidr.address} is not IPv${cidr.family}`);
  }
  const addr = addressToBytes(cidr.address);
  const prefixBits = (cidr.family === 4 ? 96 : 0) + cidr.prefix;
  for (let bit = prefixBits; bit < 128; bit++) addr[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { addr, prefixBits };
}

// ---- encoders (key/value buffers exactly as the kernel reads them) ----

const CONFIG = LAYOUTS.eg_config.members;
export function encodeConfig(config: {
  defaultAction: RuleAction;
  proxyV4: string | null;
  proxyV6: string | null;
  proxyPort: number;
  tls?: boolean;
  backstop?: boolean;
  denyEch?: boolean;
}): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_config.size);
  buffer.writeUInt8(ACTION[config.defaultAction], CONFIG.default_action.offset);
  let flags = 0;
  if (config.tls === true) flags |= CONFIG_FLAG.tls;
  if (config.backstop === true) flags |= CONFIG_FLAG.backstop;
  if (config.denyEch === true) flags |= CONFIG_FLAG.denyEch;
  if (config.proxyV4 !== null) {
    if (!isIPv4(config.proxyV4)) throw new Error(`DNS proxy IPv4 address ${config.proxyV4} is not IPv4`);
    addressToBytes(config.proxyV4).copy(buffer, CONFIG.proxy_v4.offset);
    flags |= CONFIG_FLAG.proxyV4;
  }
  if (config.proxyV6 !== null) {
    if (!isIPv6(config.proxyV6)) throw new Error(`DNS proxy IPv6 address ${config.proxyV6} is not IPv6`);
    addressToBytes(config.proxyV6).copy(buffer, CONFIG.proxy_v6.offset);
    flags |= CONFIG_FLAG.proxyV6;
  }
  buffer.writeUInt8(flags, CONFIG.flags.offset);
  buffer.writeUInt16LE(config.proxyPort, CONFIG.proxy_port.offset);
  return buffer;
}

export interface WorkloadEntry {
  workloadId: number;
  ruleCount: number;
  slot: 0 | 1;
  /** enum eg_workload_flag */
  flags: number;
}

const WORKLOAD = LAYOUTS.eg_workload.members;
export function encodeWorkload(entry: WorkloadEntry): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_workload.size);
  buffer.writeUInt32LE(entry.workloadId, WORKLOAD.workload_id.offset);
  buffer.writeUInt16LE(entry.ruleCount, WORKLOAD.rule_count.offset);
  buffer.writeUInt8(entry.slot, WORKLOAD.slot.offset);
  buffer.writeUInt8(entry.flags, WORKLOAD.flags.offset);
  return buffer;
}

export function decodeWorkload(buffer: Buffer): WorkloadEntry {
  return {
    workloadId: buffer.readUInt32LE(WORKLOAD.workload_id.offset),
    ruleCount: buffer.readUInt16LE(WORKLOAD.rule_count.offset),
    slot: buffer.readUInt8(WORKLOAD.slot.offset) === 1 ? 1 : 0,
    flags: buffer.readUInt8(WORKLOAD.flags.offset),
  };
}

export function encodeCgroupId(cgroupId: bigint): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(cgroupId);
  return buffer;
}

const RULE_KEY = LAYOUTS.eg_rule_key.members;
export function encodeRuleKey(workloadId: number, ruleRef: number): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_rule_key.size);
  buffer.writeUInt32LE(workloadId, RULE_KEY.workload_id.offset);
  buffer.writeUInt32LE(ruleRef, RULE_KEY.rule_ref.offset);
  return buffer;
}

export function decodeRuleKey(buffer: Buffer): { workloadId: number; ruleRef: number } {
  return {
    workloadId: buffer.readUInt32LE(RULE_KEY.workload_id.offset),
    ruleRef: buffer.readUInt32LE(RULE_KEY.rule_ref.offset),
  };
}

export interface RuleValue {
  ruleId: number;
  portLow: number;
  portHigh: number;
  action: RuleAction;
  protocol: RuleProtocol;
  flags: number;
}

const RULE = LAYOUTS.eg_rule.members;
export function encodeRule(rule: RuleValue): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_rule.size);
  buffer.writeUInt32LE(rule.ruleId, RULE.rule_id.offset);
  buffer.writeUInt16LE(rule.portLow, RULE.port_lo.offset);
  buffer.writeUInt16LE(rule.portHigh, RULE.port_hi.offset);
  buffer.writeUInt8(ACTION[rule.action], RULE.action.offset);
  buffer.writeUInt8(PROTOCOL[rule.protocol], RULE.protocol.offset);
  buffer.writeUInt16LE(rule.flags, RULE.flags.offset);
  return buffer;
}

const CIDR_KEY = LAYOUTS.eg_cidr_key.members;
export function encodeCidrKey(cidr: Cidr): Buffer {
  const { addr, prefixBits } = cidrToKeyParts(cidr);
  const buffer = Buffer.alloc(LAYOUTS.eg_cidr_key.size);
  buffer.writeUInt32LE(prefixBits, CIDR_KEY.prefixlen.offset);
  addr.copy(buffer, CIDR_KEY.addr.offset);
  return buffer;
}

const CIDR_VALUE = LAYOUTS.eg_cidr_value.members;
export function encodeCidrValue(value: {
  ruleId: number;
  portLow: number;
  portHigh: number;
  protocol: RuleProtocol;
  log: boolean;
}): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_cidr_value.size);
  buffer.writeUInt32LE(value.ruleId, CIDR_VALUE.rule_id.offset);
  buffer.writeUInt16LE(value.portLow, CIDR_VALUE.port_lo.offset);
  buffer.writeUInt16LE(value.portHigh, CIDR_VALUE.port_hi.offset);
  buffer.writeUInt8(PROTOCOL[value.protocol], CIDR_VALUE.protocol.offset);
  buffer.writeUInt8(value.log ? RULE_FLAG.log : 0, CIDR_VALUE.flags.offset);
  return buffer;
}

const RULE_CIDR_KEY = LAYOUTS.eg_rule_cidr_key.members;
export function encodeRuleCidrKey(workloadId: number, ruleRef: number, cidr: Cidr): Buffer {
  const { addr, prefixBits } = cidrToKeyParts(cidr);
  const buffer = Buffer.alloc(LAYOUTS.eg_rule_cidr_key.size);
  buffer.writeUInt32LE(EG_RULE_CIDR_FIXED_BITS + prefixBits, RULE_CIDR_KEY.prefixlen.offset);
  buffer.writeUInt32LE(workloadId, RULE_CIDR_KEY.workload_id.offset);
  buffer.writeUInt32LE(ruleRef, RULE_CIDR_KEY.rule_ref.offset);
  addr.copy(buffer, RULE_CIDR_KEY.addr.offset);
  return buffer;
}

export function decodeRuleCidrKey(buffer: Buffer): { workloadId: number; ruleRef: number } {
  return {
    workloadId: buffer.readUInt32LE(RULE_CIDR_KEY.workload_id.offset),
    ruleRef: buffer.readUInt32LE(RULE_CIDR_KEY.rule_ref.offset),
  };
}

const LEARNED_KEY = LAYOUTS.eg_learned_key.members;
export function encodeLearnedKey(workloadId: number, ruleId: number, ip: string): Buffer {
  return encodeLearnedKeyBytes(workloadId, ruleId, addressToBytes(ip));
}

/** encodeLearnedKey with the address already as its 16 key bytes (addressToBytes). */
export function encodeLearnedKeyBytes(workloadId: number, ruleId: number, address: Buffer): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_learned_key.size);
  buffer.writeUInt32LE(workloadId, LEARNED_KEY.workload_id.offset);
  buffer.writeUInt32LE(ruleId, LEARNED_KEY.rule_id.offset);
  address.copy(buffer, LEARNED_KEY.addr.offset);
  return buffer;
}

/** The 16 address bytes of an eg_learned key. */
export function learnedKeyAddress(buffer: Buffer): Buffer {
  return buffer.subarray(LEARNED_KEY.addr.offset, LEARNED_KEY.addr.offset + LEARNED_KEY.addr.size);
}

export function decodeLearnedKey(buffer: Buffer): { workloadId: number; ruleId: number; ip: string } {
  const { offset, size } = LEARNED_KEY.addr;
  return {
    workloadId: buffer.readUInt32LE(LEARNED_KEY.workload_id.offset),
    ruleId: buffer.readUInt32LE(LEARNED_KEY.rule_id.offset),
    ip: bytesToAddress(buffer.subarray(offset, offset + size)),
  };
}

export function encodeLearnedValue(expiresAtNs: bigint): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_learned_value.size);
  buffer.writeBigUInt64LE(expiresAtNs, LAYOUTS.eg_learned_value.members.expires_ns.offset);
  return buffer;
}

export function decodeLearnedValue(buffer: Buffer): bigint {
  return buffer.readBigUInt64LE(LAYOUTS.eg_learned_value.members.expires_ns.offset);
}

// ---- webGroup domains (eg_domains) ----

const DOMAIN_KEY = LAYOUTS.eg_domain_key.members;
const NAME_BYTE = /^[a-z0-9_-]$/;

/**
 * The trie form of a host name: lower-cased, one trailing dot removed, labels checked, reversed.
 * The same rules as the kernel applies to an SNI (bpf/egressguard.bpf.c eg_hello_name); throws
 * with the reason for a name the trie cannot hold.
 */
export function reversedName(name: string): string {
  let text = name.toLowerCase();
  if (text.endsWith('.')) text = text.slice(0, -1);
  if (text.length === 0) throw new Error(`domain ${JSON.stringify(name)} is empty`);
  if (text.length > EG_DOMAIN_NAME_MAX) {
    throw new Error(`domain ${JSON.stringify(name)} has ${text.length} characters; the kernel matches at most ${EG_DOMAIN_NAME_MAX}`);
  }
  for (const label of text.split('.')) {
    if (label === '') throw new Error(`domain ${JSON.stringify(name)} has an empty label`);
    for (const char of label) {
      if (!NAME_BYTE.test(char)) {
        throw new Error(
          `domain ${JSON.stringify(name)} contains ${JSON.stringify(char)}: only a-z, 0-9, '-', '_' and '.' (IDNA names in their xn-- form)`,
        );
      }
    }
  }
  return [...text].reverse().join('');
}

function domainKey(ruleId: number, bytes: Buffer): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_domain_key.size);
  buffer.writeUInt32LE(32 + 8 * bytes.length, DOMAIN_KEY.prefixlen.offset);
  buffer.writeUInt32LE(ruleId, DOMAIN_KEY.rule_id.offset);
  bytes.copy(buffer, DOMAIN_KEY.name.offset);
  return buffer;
}

/**
 * The eg_domains key of one webGroup pattern: an exact name is its reversal plus the terminator
 * (it matches only itself); `*.example.com` is the reversal of `.example.com` without one (it
 * matches one or more labels before the apex, never the apex). `*` has no key: the rule's
 * anyName flag covers it.
 */
export function encodeDomainKey(ruleId: number, pattern: DomainPattern): Buffer | null {
  switch (pattern.kind) {
    case 'any':
      return null;
    case 'exact':
      return domainKey(ruleId, Buffer.concat([Buffer.from(reversedName(pattern.name), 'latin1'), Buffer.from([EG_NAME_END])]));
    case 'wildcard': {
      const reversed = `${reversedName(pattern.suffix)}.`;
      if (reversed.length + 1 > EG_DOMAIN_NAME_MAX) {
        throw new Error(`wildcard *.${pattern.suffix} leaves no room for a label under the kernel's ${EG_DOMAIN_NAME_MAX}-character limit`);
      }
      return domainKey(ruleId, Buffer.from(reversed, 'latin1'));
    }
  }
}

/** The lookup key the kernel builds for an SNI (reversed name + terminator), or null when it builds none. */
export function encodeSniLookupKey(ruleId: number, sni: string): Buffer | null {
  try {
    return encodeDomainKey(ruleId, { kind: 'exact', name: sni });
  } catch {
    return null;
  }
}

export function decodeDomainKeyRuleId(buffer: Buffer): number {
  return buffer.readUInt32LE(DOMAIN_KEY.rule_id.offset);
}

const ADDR_KEY = LAYOUTS.eg_addr_key.members;
export function encodeAddrKey(workloadId: number, ip: string): Buffer {
  const buffer = Buffer.alloc(LAYOUTS.eg_addr_key.size);
  buffer.writeUInt32LE(workloadId, ADDR_KEY.workload_id.offset);
  addressToBytes(ip).copy(buffer, ADDR_KEY.addr.offset);
  return buffer;
}

export function decodeAddrKeyWorkload(buffer: Buffer): number {
  return buffer.readUInt32LE(ADDR_KEY.workload_id.offset);
}

const PROBE_HEADER = LAYOUTS.eg_probe_header.members;
/** eg_hello_probe input: 14 bytes standing for the Ethernet header, the probe header, then the payload. */
export function encodeProbeInput(ruleId: number, flags: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(14 + LAYOUTS.eg_probe_header.size);
  header.writeUInt32LE(ruleId, 14 + PROBE_HEADER.rule_id.offset);
  header.writeUInt16LE(flags, 14 + PROBE_HEADER.flags.offset);
  return Buffer.concat([header, payload]);
}

export function encodeU32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

/** Sum of a per-CPU u64 value across CPUs (slots are 8 bytes each). */
/** An eg_approved entry, as the agent's sweep reads it. */
export interface Approval {
  workloadId: number;
  protocol: number;
  kind: number;
  closing: number;
  seenNs: bigint;
}

export function decodeApproval(key: Buffer, value: Buffer): Approval {
  const k = LAYOUTS.eg_flow_key.members;
  const v = LAYOUTS.eg_approval.members;
  return {
    workloadId: key.readUInt32LE(k.workload_id.offset),
    protocol: key.readUInt8(k.protocol.offset),
    kind: value.readUInt8(v.kind.offset),
    closing: value.readUInt8(v.closing.offset),
    seenNs: value.readBigUInt64LE(v.seen_ns.offset),
  };
}

export function decodeFlowCount(value: Buffer): { held: number; flights: number; refused: bigint } {
  const m = LAYOUTS.eg_flow_count.members;
  return {
    // Signed and clamped: a sweep's write-back racing the kernel's atomic steps can leave a count one below zero.
    held: Math.max(0, value.readInt32LE(m.held.offset)),
    flights: Math.max(0, value.readInt32LE(m.flights.offset)),
    refused: value.readBigUInt64LE(m.refused.offset),
  };
}

export function encodeFlowCount(held: number, flights: number, refused: bigint): Buffer {
  const m = LAYOUTS.eg_flow_count.members;
  const buffer = Buffer.alloc(LAYOUTS.eg_flow_count.size);
  buffer.writeUInt32LE(held, m.held.offset);
  buffer.writeUInt32LE(flights, m.flights.offset);
  buffer.writeBigUInt64LE(refused, m.refused.offset);
  return buffer;
}

export function sumPerCpuU64(buffer: Buffer): bigint {
  let total = 0n;
  for (let offset = 0; offset + 8 <= buffer.length; offset += 8) total += buffer.readBigUInt64LE(offset);
  return total;
}

// ---- events ----

/** A KernelEvent plus the hook that decided it (enum eg_hook: 1 connect4 … 4 sendmsg6, 5 cgroup_skb egress, 6 tc ingress). */
export interface DecodedEvent extends KernelEvent {
  hook: number;
}

const EVENT = LAYOUTS.eg_event.members;
/** Decodes one ring-buffer record; throws on a record that is not an eg_event. */
export function decodeEvent(buffer: Buffer): DecodedEvent {
  if (buffer.length !== LAYOUTS.eg_event.size) {
    throw new Error(`kernel event has ${buffer.length} bytes, expected ${LAYOUTS.eg_event.size}`);
  }
  const verdict = VERDICTS[buffer.readUInt8(EVENT.verdict.offset)];
  const tier = buffer.readUInt8(EVENT.tier.offset);
  const layer = LAYERS[buffer.readUInt8(EVENT.layer.offset)];
  const reason = REASONS[buffer.readUInt8(EVENT.reason.offset)];
  if (verdict === undefined || layer === undefined || tier > TIER.default || reason === undefined) {
    throw new Error(`kernel event has an unknown verdict, tier, layer or reason: ${buffer.toString('hex')}`);
  }
  const source = buffer.subarray(EVENT.src.offset, EVENT.src.offset + EVENT.src.size);
  const comm = buffer.subarray(EVENT.comm.offset, EVENT.comm.offset + EVENT.comm.size);
  const nul = comm.indexOf(0);
  const sniLength = Math.min(buffer.readUInt16LE(EVENT.sni_len.offset), EVENT.sni.size);
  const kind = buffer.readUInt8(EVENT.kind.offset);
  if (kind !== EVENT_KIND.decision && kind !== EVENT_KIND.evidence)
    throw new Error(`kernel event has an unknown kind ${kind}: ${buffer.toString('hex')}`);
  const evidence = buffer.readUInt8(EVENT.evidence.offset);
  const firstFlight = firstFlightOf(evidence);
  return {
    timestampNs: buffer.readBigUInt64LE(EVENT.timestamp_ns.offset),
    cgroupId: buffer.readBigUInt64LE(EVENT.cgroup_id.offset),
    workloadId: buffer.readUInt32LE(EVENT.workload_id.offset),
    ruleId: buffer.readUInt32LE(EVENT.rule_id.offset),
    ip: bytesToAddress(buffer.subarray(EVENT.addr.offset, EVENT.addr.offset + EVENT.addr.size)),
    family: buffer.readUInt8(EVENT.family.offset) === 6 ? 6 : 4,
    port: buffer.readUInt16LE(EVENT.port.offset),
    protocol: buffer.readUInt8(EVENT.protocol.offset),
    verdict,
    tier: tier as Tier,
    layer,
    hook: buffer.readUInt8(EVENT.hook.offset),
    pid: buffer.readUInt32LE(EVENT.pid.offset),
    comm: comm.subarray(0, nul < 0 ? comm.length : nul).toString('utf8'),
    // latin1: one character per byte as sent, so odd bytes stay visible instead of becoming U+FFFD.
    sni: sniLength === 0 ? null : buffer.subarray(EVENT.sni.offset, EVENT.sni.offset + sniLength).toString('latin1'),
    ...(layer === 'packet' && source.some((byte) => byte !== 0) ? { source: bytesToAddress(source) } : {}),
    ...(reason !== null ? { reason } : {}),
    suppressed: buffer.readUInt16LE(EVENT.suppressed.offset),
    evidence: kind === EVENT_KIND.evidence,
    ...(firstFlight !== null ? { firstFlight } : {}),
    ...(evidence & EVIDENCE.ech ? { ech: true } : {}),
  };
}

/** enum eg_evidence bits as the first flight they describe; null when the datapath read none. */
function firstFlightOf(bits: number): FirstFlightSeen | null {
  if (bits & EVIDENCE.hello) return 'client-hello';
  if (bits & EVIDENCE.http) return 'http-request';
  if (bits & EVIDENCE.noHello) return 'none';
  if (bits & EVIDENCE.other) return 'other';
  return null;
}

// The Datapath over the kernel: loads bpf/egressguard.bpf.o, attaches (or adopts) its cgroup
// programs through pinned bpf_links, and keeps the pinned maps in step with the agent's state.
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { release } from 'node:os';
import { join, resolve } from 'node:path';

import {
  EG_ABI_VERSION,
  EG_MAX_RULES,
  RULE_FLAG,
  STAT,
  WORKLOAD_FLAG,
  addressToBytes,
  cidrToKeyParts,
  decodeAddrKeyWorkload,
  decodeApproval,
  decodeFlowCount,
  LAYOUTS,
  encodeFlowCount,
  CLOSING,
  decodeDomainKeyRuleId,
  encodeAddrKey,
  encodeDomainKey,
  decodeEvent,
  bytesToAddress,
  decodeRuleCidrKey,
  decodeWorkload,
  encodeCgroupId,
  encodeCidrKey,
  encodeCidrValue,
  encodeConfig,
  encodeRule,
  encodeRuleCidrKey,
  encodeRuleKey,
  encodeU32,
  encodeWorkload,
  sumPerCpuU64,
  type WorkloadEntry,
} from './abi.js';
import { checkKernelFeatures, optionalFeatures, type DatapathFeatures, type OptionalFeatures } from './features.js';
import { LearnedTable } from './learned-table.js';
import { ensureBpffs, findCgroup2Mount, isAtOrBelow } from './mounts.js';
import { isNativeError, loadNative, type NativeAddon, type NativeMap, type NativeObject, type NativeRingBuffer } from './native.js';
import type { Cidr } from '../policy/types.js';
import type {
  ApprovedFlows,
  CapacityMap,
  CidrEntry,
  Datapath,
  DatapathOptions,
  DatapathSettings,
  DatapathStats,
  FlowsEnded,
  KernelEvent,
  KernelRule,
  LearnedEntry,
  WorkloadNetwork,
} from './types.js';

/** Socket identity first (every socket created from then on has its owner), then the restoring programs: a
 * socket steered by connect/sendmsg must always be restored. */
export const PROGRAM_NAMES = [
  'eg_sock_create',
  'eg_sock_release',
  'eg_recvmsg4',
  'eg_recvmsg6',
  'eg_getpeername4',
  'eg_getpeername6',
  'eg_connect4',
  'eg_connect6',
  'eg_sendmsg4',
  'eg_sendmsg6',
  'eg_skb_egress',
] as const;

const TC_PROGRAM = 'eg_tc_ingress';
/** On the same interfaces, what the node delivers into the workload: the inbound connections it may answer. */
const TC_EGRESS_PROGRAM = 'eg_tc_egress';
/** Socket iterators that end live sockets the rules in force no longer permit (bpf/lib/reap.h). */
const REAP_PROGRAMS = ['eg_reap_tcp', 'eg_reap_udp'] as const;
/** Unpinned: the listeners one reap pass has seen; emptied before each pass. */
const REAP_LISTENERS_MAP = 'eg_reap_listeners';
const EOPNOTSUPP = 95;
/** tc filter identity on a host-side interface: fixed, so a restarted agent replaces its own filter in place. */
export const TC_HANDLE = 0xe9;
export const TC_PRIORITY = 0xe9;

const MAP_NAMES = [
  'eg_config',
  'eg_workloads',
  'eg_rules',
  'eg_rule_cidrs',
  'eg_deny_cidrs',
  'eg_base_cidrs',
  'eg_learned',
  'eg_domains',
  'eg_workload_ids',
  'eg_workload_addrs',
  'eg_interfaces',
  'eg_events',
  'eg_stats',
  'eg_approved',
  'eg_flow_counts',
  'eg_first_flights',
] as const;
type MapName = (typeof MAP_NAMES)[number];

const MAX_WORKLOAD_ID = 0xffffffff;
const IPPROTO_TCP = 6;
const SECOND_NS = 1_000_000_000n;
/**
 * How long an approval may go unused before the sweep removes it (tc refreshes seen_ns at most once a second):
 * a TCP flow that saw a FIN or a reset (its last segments are long gone; the kernel removes it itself on the
 * normal close) or that holds a first-flight copy still compared (a handshake that stalled there holds one of
 * its workload's EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD), a flow of any other protocol (a datagram socket's earlier destinations), and an open TCP
 * connection, after conntrack's own established timeout (nf_conntrack_tcp_timeout_established, 5 days).
 */
export const APPROVAL_IDLE = {
  closingNs: 120n * SECOND_NS,
  datagramNs: 300n * SECOND_NS,
  tcpNs: 5n * 86_400n * SECOND_NS,
} as const;
/** The workload an eg_flow_key (eg_approved, eg_first_flights) belongs to. */
const flowKeyWorkload = (key: Buffer): number => key.readUInt32LE(LAYOUTS.eg_flow_key.members.workload_id.offset);
/** Pinned, never referenced by a program: the ABI version of every other pin (layout frozen: u32 -> u32). */
const ABI_VERSION_MAP = 'eg_abi_version';
/** Pins from before the version map were written by ABI v1. */
const UNVERSIONED_ABI = 1;
const ALL_FEATURES: DatapathFeatures = { tls: true, packet: true };

/** Pin layout under DatapathOptions.pinDir. */
export function pinPaths(pinDir: string): { maps: string; links: string; link(program: string): string } {
  return {
    maps: join(pinDir, 'maps'),
    links: join(pinDir, 'links'),
    link: (program) => join(pinDir, 'links', program),
  };
}

function cgroupIdOf(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${what} ${port} is not a port (0-65535)`);
}

function checkPortRange(low: number, high: number, what: string): void {
  checkPort(low, `${what}: portLow`);
  checkPort(high, `${what}: portHigh`);
  if (low > high) throw new Error(`${what}: portLow ${low} is above portHigh ${high}`);
}

function checkRuleId(ruleId: number, what: string): void {
  if (!Number.isInteger(ruleId) || ruleId < 1 || ruleId > 0xffffffff) {
    throw new Error(`${what}: ruleId ${ruleId} must be an integer in 1..2^32-1`);
  }
}

/** eg_domains keys of a rule (hex), validating every pattern; empty for non-webGroup rules. */
function domainKeys(rule: KernelRule, what: string): Set<string> {
  const keys = new Set<string>();
  for (const pattern of rule.domains ?? []) {
    let key: Buffer | null;
    try {
      key = encodeDomainKey(rule.ruleId, pattern);
    } catch (error) {
      throw new Error(`${what}: ${(error as Error).message}`);
    }
    if (key !== null) keys.add(key.toString('hex'));
  }
  return keys;
}

const IPV4_ANY: Cidr = { family: 4, address: '0.0.0.0', prefix: 0 };

/** True when an IPv6 CIDR covers ::ffff:0:0/96, where the kernel keys IPv4. */
function coversIpv4Mapped(cidr: Cidr): boolean {
  if (cidr.family !== 6 || cidr.prefix > 96) return false;
  const { addr } = cidrToKeyParts(cidr);
  const mapped = cidrToKeyParts({ family: 6, address: '::ffff:0:0', prefix: cidr.prefix }).addr;
  return addr.equals(mapped);
}

/**
 * A rule's eg_rule_cidrs entries, CIDR -> value (1: match). IPv4 is keyed as ::ffff:a.b.c.d, so an IPv6 prefix
 * covering ::ffff:0:0/96 (::/0, ::/1, ...) would match IPv4 too: the rule gets an exclusion (0) at ::ffff:0:0/96,
 * which its own IPv4 prefixes, all longer, still override. A CIDR matches its own family only.
 */
export function ruleCidrEntries(rule: Pick<KernelRule, 'cidrs'>): Map<Cidr, number> {
  const entries = new Map<Cidr, number>(rule.cidrs.map((cidr) => [cidr, 1]));
  const coversIpv4 = rule.cidrs.some(coversIpv4Mapped);
  const hasIpv4Any = rule.cidrs.some((c) => c.family === 4 && c.prefix === 0);
  if (coversIpv4 && !hasIpv4Any) entries.set(IPV4_ANY, 0);
  return entries;
}

function ruleFlags(rule: KernelRule): number {
  let flags = 0;
  if (rule.cidrs.length > 0) flags |= RULE_FLAG.hasCidr;
  if (rule.anyDestination) flags |= RULE_FLAG.anyDestination;
  if (rule.web) flags |= RULE_FLAG.web;
  if (rule.anyName) flags |= RULE_FLAG.anyName;
  if (rule.watch) flags |= RULE_FLAG.watch;
  if (rule.log) flags |= RULE_FLAG.log;
  if (rule.tlsRequired) flags |= RULE_FLAG.tlsRequired;
  return flags;
}

/** Makes `map` hold exactly `desired` (hex key -> value), touching only entries that differ. */
function syncMap(map: NativeMap, desired: Map<string, Buffer>): void {
  for (const key of map.keys()) {
    const hex = key.toString('hex');
    const want = desired.get(hex);
    if (want === undefined) {
      map.delete(key);
      continue;
    }
    const have = map.lookup(key);
    if (have !== null && have.equals(want)) desired.delete(hex);
  }
  for (const [hex, value] of desired) map.update(Buffer.from(hex, 'hex'), value);
}

/** The value of a set-like map's entries (eg_domains, eg_workload_addrs). */
const PRESENT = Buffer.from([1]);

/**
 * Deletes then writes entries (hex keys) with one batch call each (BPF_MAP_DELETE_BATCH / UPDATE_BATCH) instead of
 * a syscall per entry, telling `recorded` (a mirror) of each entry the kernel took (value null: deleted). A batch
 * that fails (no batch ops for the map's type, a full map, a key not there to delete) is done again one entry at a
 * time: the mirror learns exactly which entries went in, and a real error is the one the failing entry gets.
 */
function writeEntries(
  map: NativeMap,
  deletes: readonly string[],
  updates: ReadonlyMap<string, Buffer>,
  recorded: (hex: string, value: Buffer | null) => void,
): void {
  const keysOf = (hexes: Iterable<string>) => Buffer.from([...hexes].join(''), 'hex');
  if (deletes.length > 0) {
    batchOr(
      () => map.deleteBatch(keysOf(deletes)),
      (hex) => void map.delete(Buffer.from(hex, 'hex')),
      deletes.map((hex) => [hex, null]),
      recorded,
    );
  }
  if (updates.size > 0) {
    batchOr(
      () => map.updateBatch(keysOf(updates.keys()), Buffer.concat([...updates.values()])),
      (hex, value) => map.update(Buffer.from(hex, 'hex'), value!),
      [...updates],
      recorded,
    );
  }
}

function batchOr(
  batch: () => void,
  one: (hex: string, value: Buffer | null) => void,
  entries: ReadonlyArray<readonly [string, Buffer | null]>,
  recorded: (hex: string, value: Buffer | null) => void,
): void {
  try {
    batch();
  } catch (error) {
    if (!isNativeError(error)) throw error;
    for (const [hex, value] of entries) {
      one(hex, value);
      recorded(hex, value);
    }
    return;
  }
  for (const [hex, value] of entries) recorded(hex, value);
}

/** What this datapath wrote to one slot of a workload's eg_rules: the encoded rule (hex) at each index. */
type RuleSlot = string[];

class KernelDatapath implements Datapath {
  readonly adopted: boolean;
  private readonly maps: Record<MapName, NativeMap>;
  private readonly attachCgroup: string;
  private readonly listeners: Array<(event: KernelEvent) => void> = [];
  private ringBuffer: NativeRingBuffer | null = null;
  /** Records the ring buffer delivered that were not eg_events (dropped, counted apart from kernel losses). */
  private malformedEvents = 0n;
  /** Enrolled workloads by cgroup id (mirrors eg_workloads). */
  private readonly enrolled = new Map<bigint, WorkloadEntry>();
  /** Mirror of eg_learned: unchanged entries are not written again, and one workload must not fill the node's map. */
  private readonly learnedTable: LearnedTable;
  /** 0 until configure(): nothing is learned before the cap is known. */
  private maxLearnedPerWorkload = 0;
  /** Cgroup id each path was enrolled under: a deleted cgroup (its pod is gone) can still be removed. */
  private readonly cgroupIdsByPath = new Map<string, bigint>();
  /** Entries of eg_rule_cidrs per workload id, hex-encoded key -> value (1 match, 0 exclusion): a mirror, so swaps diff without a scan. */
  private readonly ruleCidrs = new Map<number, Map<string, number>>();
  /**
   * eg_rules as this datapath wrote it, per workload id and slot (undefined: not known, e.g. adopted): a rule set
   * is written as its difference from what the slot being filled already holds.
   */
  private readonly ruleSlots = new Map<number, [RuleSlot | undefined, RuleSlot | undefined]>();
  /** eg_workload_addrs keys (hex) per workload id, a mirror. */
  private readonly addressKeys = new Map<number, Set<string>>();
  /** Interfaces this datapath attached its tc programs to (a re-write of the workload leaves them be). */
  private readonly tcAttached = new Set<number>();
  /** Which workloads use each webGroup rule id (its eg_domains keys go when the last one does). */
  private readonly domainUsers = new Map<number, Set<number>>();
  private readonly writtenDomainRules = new Set<number>();
  /** eg_domains keys (hex) by rule id, a mirror: a workload's write touches its rules' keys, not the whole trie. */
  private readonly domainKeys = new Map<number, Set<string>>();
  /** Host-side interfaces (ifindex) per workload id, mirroring eg_interfaces. */
  private readonly interfaces = new Map<number, Set<number>>();
  private features: DatapathFeatures = { ...ALL_FEATURES };
  private closed = false;
  /** Sockets a reap pass could not end (see FlowsEnded). */
  private flowsNotEnded = 0n;
  private reapScheduled = false;

  constructor(
    private readonly native: NativeAddon,
    private readonly options: DatapathOptions,
    private readonly object: NativeObject,
    maps: Record<MapName, NativeMap>,
    attachCgroup: string,
    adopted: boolean,
    /** The layers whose programs openDatapath loaded. */
    private readonly loaded: DatapathFeatures,
    readonly kernelFeatures: OptionalFeatures,
  ) {
    this.features = { ...loaded };
    this.maps = maps;
    this.attachCgroup = attachCgroup;
    this.adopted = adopted;
    for (const key of maps.eg_workloads.keys()) {
      const value = maps.eg_workloads.lookup(key);
      if (value !== null) this.enrolled.set(key.readBigUInt64LE(0), decodeWorkload(value));
    }
    for (const key of maps.eg_rule_cidrs.keys()) {
      const value = maps.eg_rule_cidrs.lookup(key)?.readUInt32LE(0) ?? 1;
      this.workloadRuleCidrs(decodeRuleCidrKey(key).workloadId).set(key.toString('hex'), value);
    }
    for (const key of maps.eg_workload_addrs.keys()) this.workloadAddressKeys(decodeAddrKeyWorkload(key)).add(key.toString('hex'));
    for (const key of maps.eg_domains.keys()) this.recordDomainKey(decodeDomainKeyRuleId(key), key.toString('hex'));
    this.learnedTable = new LearnedTable(maps.eg_learned);
    for (const key of maps.eg_interfaces.keys()) {
      const value = maps.eg_interfaces.lookup(key);
      if (value === null) continue;
      const workloadId = value.readUInt32LE(0);
      const set = this.interfaces.get(workloadId) ?? new Set<number>();
      set.add(key.readUInt32LE(0));
      this.interfaces.set(workloadId, set);
    }
  }

  configure(settings: DatapathSettings): void {
    this.assertOpen();
    checkPort(settings.dnsProxy.port, 'dnsProxy.port');
    const hasProxy = settings.dnsProxy.ipv4 !== null || settings.dnsProxy.ipv6 !== null;
    if (hasProxy && settings.dnsProxy.port === 0) throw new Error('dnsProxy.port must be set when a proxy address is');
    const features = settings.features;
    if (features.packet && !this.loaded.packet) {
      throw new Error(
        'features.packet: the tc backstop was not loaded (openDatapath had features.packet false); reopen the datapath with it',
      );
    }
    this.maxLearnedPerWorkload = settings.maxLearnedPerWorkload;
    // The skb program stays attached whatever the features: it judges raw and ping sockets and records the flows
    // the backstop must pass. `tls: false` only clears the flag that makes connect hooks defer to the SNI check.
    if (!features.packet) this.detachAllTc();
    this.features = { ...features };
    const config = encodeConfig({
      defaultAction: settings.defaultAction,
      proxyV4: settings.dnsProxy.ipv4,
      proxyV6: settings.dnsProxy.ipv6,
      proxyPort: settings.dnsProxy.port,
      tls: features.tls,
      backstop: features.packet,
      denyEch: settings.denyEch,
    });
    this.maps.eg_config.update(encodeU32(0), config);
    if (features.packet) {
      for (const ifindexes of this.interfaces.values()) for (const ifindex of ifindexes) this.attachTc(ifindex);
    }
    this.endStaleFlows(); // e.g. discovery (default permit) -> enforce
  }

  private attachTc(ifindex: number): void {
    this.tcAttached.delete(ifindex);
    // Egress first: an inbound connection is approved before the workload's answer can be judged without it.
    this.native.tcAttachEgress(this.object.program(TC_EGRESS_PROGRAM), ifindex, TC_HANDLE, TC_PRIORITY, this.options.hostNetns);
    this.native.tcAttachIngress(this.object.program(TC_PROGRAM), ifindex, TC_HANDLE, TC_PRIORITY, this.options.hostNetns);
    this.tcAttached.add(ifindex);
  }

  private detachTc(ifindex: number): void {
    this.tcAttached.delete(ifindex);
    detachTc(this.native, ifindex, this.options.hostNetns);
  }

  private detachAllTc(): void {
    for (const ifindexes of this.interfaces.values()) for (const ifindex of ifindexes) this.detachTc(ifindex);
  }

  setDenyList(entries: CidrEntry[]): void {
    this.setCidrTier(this.maps.eg_deny_cidrs, entries, 'deny list');
  }

  setBaseline(entries: CidrEntry[]): void {
    this.setCidrTier(this.maps.eg_base_cidrs, entries, 'baseline');
  }

  private setCidrTier(map: NativeMap, entries: CidrEntry[], tier: string): void {
    this.assertOpen();
    const desired = new Map<string, Buffer>();
    const owner = new Map<string, number>();
    for (const entry of entries) {
      const what = `${tier} entry ${entry.cidr.address}/${entry.cidr.prefix}`;
      checkRuleId(entry.ruleId, what);
      checkPortRange(entry.portLow, entry.portHigh, what);
      const key = encodeCidrKey(entry.cidr).toString('hex');
      const previous = owner.get(key);
      if (previous !== undefined) {
        throw new Error(`${what} (rule ${entry.ruleId}) duplicates the prefix of rule ${previous}: one entry per prefix`);
      }
      owner.set(key, entry.ruleId);
      desired.set(key, encodeCidrValue(entry));
    }
    syncMap(map, desired);
    this.endStaleFlows();
  }

  setWorkload(cgroupPath: string, rules: KernelRule[], network?: WorkloadNetwork): number {
    this.assertOpen();
    const cgroupId = this.resolveWorkloadCgroup(cgroupPath);
    if (rules.length > EG_MAX_RULES) {
      throw new Error(`workload ${cgroupPath} has ${rules.length} rules; the kernel evaluates at most ${EG_MAX_RULES}`);
    }
    const domainsByRule = new Map<number, Set<string>>();
    rules.forEach((rule, index) => {
      const what = `workload ${cgroupPath} rule #${index} (id ${rule.ruleId})`;
      checkRuleId(rule.ruleId, what);
      checkPortRange(rule.portLow, rule.portHigh, what);
      if (rule.domains !== null) {
        if (!rule.web) throw new Error(`${what}: has domains but is not a webGroup rule (web: false)`);
        domainsByRule.set(rule.ruleId, domainKeys(rule, what));
      }
    });
    const ifindexes = this.resolveNetwork(cgroupPath, network);

    const current = this.enrolled.get(cgroupId);
    const workloadId = current?.workloadId ?? this.allocateWorkloadId();
    if (current === undefined) this.releaseApprovals(workloadId);
    const slot: 0 | 1 = current === undefined ? 0 : current.slot === 0 ? 1 : 0;
    const base = slot * EG_MAX_RULES;

    // Domains and addresses first: the new rules may need them the moment the slot flips.
    const newDomainKeys = new Map<string, Buffer>();
    for (const [ruleId, keys] of domainsByRule) {
      const held = this.domainKeys.get(ruleId);
      for (const hex of keys) if (held?.has(hex) !== true) newDomainKeys.set(hex, PRESENT);
    }
    const ruleOfKey = new Map([...domainsByRule].flatMap(([ruleId, keys]) => [...keys].map((hex) => [hex, ruleId] as const)));
    writeEntries(this.maps.eg_domains, [], newDomainKeys, (hex) => this.recordDomainKey(ruleOfKey.get(hex)!, hex));
    const addresses = network?.addresses ?? [];
    this.syncAddresses(workloadId, addresses);

    // Fill the inactive slot completely before the one update that makes it live (a half-written slot is never
    // enforced); only what differs from what that slot already holds is written.
    const wantedCidrs = new Map<string, number>();
    const wantedRules = rules.map((rule, index) => {
      for (const [cidr, value] of ruleCidrEntries(rule))
        wantedCidrs.set(encodeRuleCidrKey(workloadId, base + index, cidr).toString('hex'), value);
      return encodeRule({ ...rule, flags: ruleFlags(rule) }).toString('hex');
    });
    this.writeRuleSlot(workloadId, slot, wantedRules);
    this.syncRuleCidrs(workloadId, (ruleRef) => ruleRef >= base && ruleRef < base + EG_MAX_RULES, wantedCidrs);

    const entry: WorkloadEntry = {
      workloadId,
      ruleCount: rules.length,
      slot,
      flags: addresses.length > 0 ? WORKLOAD_FLAG.hasAddresses : 0,
    };
    this.maps.eg_workloads.update(encodeCgroupId(cgroupId), encodeWorkload(entry));
    this.maps.eg_workload_ids.update(encodeU32(workloadId), encodeWorkload(entry));
    this.enrolled.set(cgroupId, entry);
    this.cgroupIdsByPath.set(cgroupPath, cgroupId);
    this.syncDomains(workloadId, domainsByRule);
    if (network !== undefined) this.syncInterfaces(workloadId, ifindexes);
    // Addresses learned for rules that are gone must not wait for their TTL to stop counting.
    const webRuleIds = new Set(rules.filter((rule) => rule.web).map((rule) => rule.ruleId));
    this.learnedTable.delete((entry) => !webRuleIds.has(entry.ruleId), workloadId);
    // Sockets connected before enrolment or under rules just withdrawn are judged again now: only
    // this workload's rules changed, so only the namespaces its processes live in are walked (and the
    // node's own for a host-network workload, whose sockets stay there whichever namespace their owner moves to).
    this.endStaleFlowsIn([cgroupPath], !this.interfaces.has(workloadId));
    return workloadId;
  }

  /** Makes one slot of the workload's eg_rules hold `wanted` (encoded rules, hex, by index) and nothing after it. */
  private writeRuleSlot(workloadId: number, slot: 0 | 1, wanted: RuleSlot): void {
    const slots = this.ruleSlots.get(workloadId) ?? [undefined, undefined];
    this.ruleSlots.set(workloadId, slots);
    const held = slots[slot];
    slots[slot] = undefined; // not known while it is being written: a failed write leaves it unknown
    const base = slot * EG_MAX_RULES;
    const keyHex = (index: number) => encodeRuleKey(workloadId, base + index).toString('hex');
    const updates = new Map<string, Buffer>();
    wanted.forEach((hex, index) => {
      if (held?.[index] !== hex) updates.set(keyHex(index), Buffer.from(hex, 'hex'));
    });
    if (held === undefined) {
      // What is past the new rules is not known: delete every index one by one (a missing one is no error).
      for (let index = wanted.length; index < EG_MAX_RULES; index++) this.maps.eg_rules.delete(encodeRuleKey(workloadId, base + index));
    }
    const stale = (held ?? []).slice(wanted.length).map((_, offset) => keyHex(wanted.length + offset));
    writeEntries(this.maps.eg_rules, stale, updates, () => {});
    slots[slot] = [...wanted];
  }

  endStaleFlows(): FlowsEnded {
    this.assertOpen();
    // Adopted workloads have no cgroup path yet: any workload without interfaces keeps the node's namespace walked.
    const hostNetwork = [...this.enrolled.values()].some((entry) => !this.interfaces.has(entry.workloadId));
    return this.endStaleFlowsIn([...this.cgroupIdsByPath.keys()], hostNetwork);
  }

  private endStaleFlowsIn(cgroupPaths: readonly string[], walkOwn: boolean): FlowsEnded {
    const result: FlowsEnded = { ended: 0, unsupported: 0, failed: 0 };
    const namespaces = this.enrolled.size === 0 ? [] : this.workloadNetns(cgroupPaths, walkOwn);
    if (namespaces.length === 0) return result;
    const listeners = this.object.map(REAP_LISTENERS_MAP);
    try {
      for (const key of listeners.keys()) listeners.delete(key);
    } finally {
      listeners.close();
    }
    for (const netns of namespaces) {
      for (const name of REAP_PROGRAMS) {
        let output: string;
        try {
          output = this.object.program(name).iterate(netns);
        } catch (error) {
          if (netns !== undefined && !existsSync(netns)) continue; // the process left meanwhile
          throw error;
        }
        // One line per socket ended: "<workload id> <0 or -errno>".
        for (const line of output.split('\n')) {
          if (line === '') continue;
          const code = Number(line.split(' ')[1]);
          if (code === 0) result.ended++;
          else if (code === -EOPNOTSUPP) result.unsupported++;
          else result.failed++;
        }
      }
    }
    this.flowsNotEnded += BigInt(result.unsupported + result.failed);
    return result;
  }

  /**
   * Socket iterators walk one network namespace each, and a walk costs the same whatever it finds (the kernel's
   * socket tables are shared by every namespace): only the namespaces a process of the given workload cgroups lives
   * in are walked (/proc/<pid>/ns/net, one per namespace; undefined: the agent's own), and the agent's own whenever
   * `walkOwn` (host-network workloads).
   */
  private workloadNetns(cgroupPaths: readonly string[], walkOwn: boolean): Array<string | undefined> {
    const own = statSync('/proc/self/ns/net', { bigint: true }).ino;
    const seen = new Set<bigint>(walkOwn ? [own] : []);
    const found: Array<string | undefined> = walkOwn ? [undefined] : [];
    const visit = (dir: string): void => {
      let procs: string;
      try {
        procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
      } catch {
        return; // the cgroup went away
      }
      for (const pid of procs.split('\n')) {
        if (pid === '') continue;
        const path = `/proc/${pid}/ns/net`;
        try {
          const inode = statSync(path, { bigint: true }).ino;
          if (seen.has(inode)) continue;
          seen.add(inode);
          found.push(inode === own ? undefined : path);
        } catch {
          // the process exited
        }
      }
      for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) visit(join(dir, entry.name));
    };
    for (const path of cgroupPaths) visit(path);
    return found;
  }

  /** After a TLS (or HTTP Host) deny: the skb program marked the socket denied; end it now rather than let it stall. */
  private scheduleEndStaleFlows(): void {
    if (this.reapScheduled) return;
    this.reapScheduled = true;
    setImmediate(() => {
      this.reapScheduled = false;
      if (!this.closed) this.endStaleFlows();
    });
  }

  /** Interface indexes of a workload's network, validating it (an interface needs addresses to judge sources). */
  private resolveNetwork(cgroupPath: string, network: WorkloadNetwork | undefined): Set<number> {
    const ifindexes = new Set<number>();
    if (network === undefined) return ifindexes;
    for (const address of network.addresses) {
      try {
        addressToBytes(address);
      } catch {
        throw new Error(`workload ${cgroupPath}: address ${JSON.stringify(address)} is not an IP address`);
      }
    }
    if (network.interfaces.length > 0 && network.addresses.length === 0) {
      throw new Error(
        `workload ${cgroupPath}: interfaces ${network.interfaces.join(', ')} need the workload's addresses (its only allowed sources)`,
      );
    }
    for (const name of network.interfaces) {
      try {
        ifindexes.add(this.native.ifNameToIndex(name, this.options.hostNetns));
      } catch (error) {
        const where = this.options.hostNetns === undefined ? "the agent's network namespace" : this.options.hostNetns;
        throw new Error(`workload ${cgroupPath}: interface ${name} not found in ${where} (${(error as Error).message})`);
      }
    }
    return ifindexes;
  }

  private syncAddresses(workloadId: number, addresses: string[]): void {
    const wanted = new Set(addresses.map((address) => encodeAddrKey(workloadId, address).toString('hex')));
    const held = this.workloadAddressKeys(workloadId);
    const stale = [...held].filter((hex) => !wanted.has(hex));
    const added = new Map([...wanted].filter((hex) => !held.has(hex)).map((hex) => [hex, PRESENT] as const));
    try {
      writeEntries(this.maps.eg_workload_addrs, stale, added, (hex, value) => (value === null ? held.delete(hex) : held.add(hex)));
    } finally {
      if (held.size === 0) this.addressKeys.delete(workloadId);
    }
  }

  private workloadAddressKeys(workloadId: number): Set<string> {
    const held = this.addressKeys.get(workloadId) ?? new Set<string>();
    this.addressKeys.set(workloadId, held);
    return held;
  }

  private workloadRuleCidrs(workloadId: number): Map<string, number> {
    const held = this.ruleCidrs.get(workloadId) ?? new Map<string, number>();
    this.ruleCidrs.set(workloadId, held);
    return held;
  }

  /**
   * Records which webGroup rules this workload uses, then drops domain keys no rule needs any more.
   * Keys of rule ids this agent never wrote (found after adoption) stay until a workload sets them.
   */
  private syncDomains(workloadId: number, domainsByRule: Map<number, Set<string>>): void {
    for (const [ruleId, users] of this.domainUsers) {
      if (!domainsByRule.has(ruleId)) users.delete(workloadId);
      if (users.size === 0) this.domainUsers.delete(ruleId);
    }
    for (const ruleId of domainsByRule.keys()) {
      this.domainUsers.set(ruleId, (this.domainUsers.get(ruleId) ?? new Set<number>()).add(workloadId));
      this.writtenDomainRules.add(ruleId);
    }
    const retired = new Set([...this.writtenDomainRules].filter((ruleId) => !this.domainUsers.has(ruleId)));
    // A rule id is one policy rule: its current domains replace older ones for every workload.
    for (const [ruleId, wanted] of domainsByRule) this.deleteDomainKeys(ruleId, wanted);
    for (const ruleId of retired) {
      this.deleteDomainKeys(ruleId, new Set());
      this.writtenDomainRules.delete(ruleId);
    }
  }

  private recordDomainKey(ruleId: number, hex: string): void {
    const keys = this.domainKeys.get(ruleId) ?? new Set<string>();
    this.domainKeys.set(ruleId, keys.add(hex));
  }

  /** Deletes the rule's eg_domains keys that are not in keep. */
  private deleteDomainKeys(ruleId: number, keep: Set<string>): void {
    const keys = this.domainKeys.get(ruleId);
    if (keys === undefined) return;
    const doomed = [...keys].filter((hex) => !keep.has(hex));
    try {
      writeEntries(this.maps.eg_domains, doomed, new Map(), (hex) => keys.delete(hex));
    } finally {
      if (keys.size === 0) this.domainKeys.delete(ruleId);
    }
  }

  private syncInterfaces(workloadId: number, wanted: Set<number>): void {
    const current = this.interfaces.get(workloadId) ?? new Set<number>();
    for (const ifindex of current) {
      if (wanted.has(ifindex)) continue;
      this.detachTc(ifindex);
      this.maps.eg_interfaces.delete(encodeU32(ifindex));
    }
    for (const ifindex of wanted) {
      // Already this workload's, filters in place: nothing to do (configure() re-attaches when the features change).
      if (current.has(ifindex) && (this.tcAttached.has(ifindex) || !this.features.packet)) continue;
      const owner = this.maps.eg_interfaces.lookup(encodeU32(ifindex));
      if (owner !== null && owner.readUInt32LE(0) !== workloadId) {
        throw new Error(`interface index ${ifindex} already belongs to workload ${owner.readUInt32LE(0)}`);
      }
      this.maps.eg_interfaces.update(encodeU32(ifindex), encodeU32(workloadId));
      if (this.features.packet) this.attachTc(ifindex);
    }
    if (wanted.size > 0) this.interfaces.set(workloadId, new Set(wanted));
    else this.interfaces.delete(workloadId);
  }

  private syncRuleCidrs(workloadId: number, inScope: (ruleRef: number) => boolean, wanted: Map<string, number>): void {
    const held = this.workloadRuleCidrs(workloadId);
    const stale = [...held.keys()].filter((hex) => !wanted.has(hex) && inScope(decodeRuleCidrKey(Buffer.from(hex, 'hex')).ruleRef));
    const changed = new Map(
      [...wanted].filter(([hex, value]) => held.get(hex) !== value).map(([hex, value]) => [hex, encodeU32(value)] as const),
    );
    try {
      writeEntries(this.maps.eg_rule_cidrs, stale, changed, (hex, value) =>
        value === null ? held.delete(hex) : held.set(hex, value.readUInt32LE(0)),
      );
    } finally {
      if (held.size === 0) this.ruleCidrs.delete(workloadId);
    }
  }

  removeWorkload(cgroup: string | bigint): void {
    this.assertOpen();
    const cgroupId =
      typeof cgroup === 'bigint' ? cgroup : existsSync(cgroup) ? this.resolveWorkloadCgroup(cgroup) : this.cgroupIdsByPath.get(cgroup);
    const entry = cgroupId === undefined ? undefined : this.enrolled.get(cgroupId);
    if (cgroupId === undefined || entry === undefined) return;
    this.maps.eg_workloads.delete(encodeCgroupId(cgroupId));
    this.enrolled.delete(cgroupId);
    for (const [path, id] of this.cgroupIdsByPath) if (id === cgroupId) this.cgroupIdsByPath.delete(path);
    for (const slot of [0, 1] as const) this.writeRuleSlot(entry.workloadId, slot, []);
    this.ruleSlots.delete(entry.workloadId);
    this.maps.eg_workload_ids.delete(encodeU32(entry.workloadId));
    this.syncRuleCidrs(entry.workloadId, () => true, new Map());
    this.learnedTable.delete(() => true, entry.workloadId);
    this.syncInterfaces(entry.workloadId, new Set());
    this.syncAddresses(entry.workloadId, []);
    this.syncDomains(entry.workloadId, new Map());
    this.releaseApprovals(entry.workloadId);
  }

  /** A workload id leaves (or arrives) with no approvals, no first flights and a zero count: a reused id starts clean. */
  private releaseApprovals(workloadId: number): void {
    for (const key of this.maps.eg_approved.keys()) {
      const value = this.maps.eg_approved.lookup(key);
      if (value !== null && decodeApproval(key, value).workloadId === workloadId) this.maps.eg_approved.delete(key);
    }
    for (const key of this.maps.eg_first_flights.keys()) if (flowKeyWorkload(key) === workloadId) this.maps.eg_first_flights.delete(key);
    this.maps.eg_flow_counts.update(encodeU32(workloadId), encodeFlowCount(0, 0, 0n));
  }

  workloads(): Map<bigint, number> {
    return new Map([...this.enrolled].map(([cgroupId, entry]) => [cgroupId, entry.workloadId]));
  }

  learn(entries: LearnedEntry[]): void {
    this.assertOpen();
    for (const entry of entries) {
      checkRuleId(entry.ruleId, `learned ${entry.ip}`);
      if (entry.expiresAtNs < 0n) throw new Error(`learned ${entry.ip}: expiresAtNs must not be negative`);
    }
    const refused = this.learnedTable.learn(entries, this.maxLearnedPerWorkload);
    for (const [workloadId, count] of refused) {
      throw new Error(
        `workload id ${workloadId}: ${count} address(es) not learned: it holds its cap of ${this.maxLearnedPerWorkload} learned addresses`,
      );
    }
  }

  /** From the mirror of eg_learned (its one writer is this datapath): status asks per workload, a walk of the kernel map each time took seconds when it was full. */
  learned(workloadId?: number): LearnedEntry[] {
    this.assertOpen();
    return this.learnedTable.entries(workloadId).map((entry) => ({
      workloadId: entry.workloadId,
      ruleId: entry.ruleId,
      ip: bytesToAddress(Buffer.from(entry.address, 'hex')),
      expiresAtNs: entry.expiresAtNs,
    }));
  }

  expireLearned(nowNs: bigint): number {
    this.assertOpen();
    return this.learnedTable.delete((entry) => entry.expiresAtNs <= nowNs);
  }

  approvedFlows(): Map<number, ApprovedFlows> {
    this.assertOpen();
    const found = new Map<number, ApprovedFlows>();
    for (const { workloadId } of this.enrolled.values()) {
      const value = this.maps.eg_flow_counts.lookup(encodeU32(workloadId));
      found.set(workloadId, value === null ? { held: 0, flights: 0, refused: 0n } : decodeFlowCount(value));
    }
    return found;
  }

  mapEntries(): Record<CapacityMap, number> {
    this.assertOpen();
    const count = (name: CapacityMap) => this.maps[name].keys().length;
    return {
      eg_rule_cidrs: count('eg_rule_cidrs'),
      eg_domains: count('eg_domains'),
      eg_learned: count('eg_learned'),
      eg_workloads: count('eg_workloads'),
      eg_workload_addrs: count('eg_workload_addrs'),
      eg_interfaces: count('eg_interfaces'),
    };
  }

  sweepApprovals(nowNs: bigint): number {
    this.assertOpen();
    const enrolledIds = new Set([...this.enrolled.values()].map((entry) => entry.workloadId));
    const remaining = new Map<number, number>();
    const withFlight = new Set(this.maps.eg_first_flights.keys().map((key) => key.toString('hex')));
    let removed = 0;
    for (const key of this.maps.eg_approved.keys()) {
      const value = this.maps.eg_approved.lookup(key);
      if (value === null) continue;
      const approval = decodeApproval(key, value);
      const idleNs = nowNs - approval.seenNs;
      const limit =
        approval.protocol !== IPPROTO_TCP
          ? APPROVAL_IDLE.datagramNs
          : withFlight.has(key.toString('hex')) || approval.closing & (CLOSING.workload | CLOSING.peer)
            ? APPROVAL_IDLE.closingNs
            : APPROVAL_IDLE.tcpNs;
      if (!enrolledIds.has(approval.workloadId) || idleNs >= limit) {
        if (this.maps.eg_approved.delete(key)) removed++;
        continue;
      }
      remaining.set(approval.workloadId, (remaining.get(approval.workloadId) ?? 0) + 1);
    }
    // A first flight lives only as long as its approval (the kernel removes both together; this sweep removed approvals).
    const flights = new Map<number, number>();
    for (const key of this.maps.eg_first_flights.keys()) {
      const workloadId = flowKeyWorkload(key);
      if (this.maps.eg_approved.lookup(key) === null) this.maps.eg_first_flights.delete(key);
      else flights.set(workloadId, (flights.get(workloadId) ?? 0) + 1);
    }
    // Recount from what is there: the kernel counts with atomics this process cannot join, so the count is
    // written back rather than decremented (a race with an approval in flight is corrected by the next sweep).
    for (const workloadId of enrolledIds) {
      const value = this.maps.eg_flow_counts.lookup(encodeU32(workloadId));
      const refused = value === null ? 0n : decodeFlowCount(value).refused;
      this.maps.eg_flow_counts.update(
        encodeU32(workloadId),
        encodeFlowCount(remaining.get(workloadId) ?? 0, flights.get(workloadId) ?? 0, refused),
      );
    }
    return removed;
  }

  onEvent(listener: (event: KernelEvent) => void): void {
    this.assertOpen();
    this.listeners.push(listener);
    // Read the ring buffer only once someone listens: unread events wait in the kernel.
    this.ringBuffer ??= new this.native.RingBuffer(this.maps.eg_events, (records, error) => {
      // Batches the reader queued before close() are still delivered after it: nobody listens any more (the agent's
      // event pipeline, closed next, threw from inside the native callback: Node's DEP0168 warning at SIGTERM).
      if (this.closed) return;
      if (error !== undefined || records === null) throw error ?? new Error('ring buffer reader stopped');
      for (const record of records) {
        let event: KernelEvent;
        try {
          event = decodeEvent(record);
        } catch {
          this.malformedEvents++;
          continue;
        }
        if ((event.layer === 'tls' || event.layer === 'http') && event.verdict === 'denied') this.scheduleEndStaleFlows();
        for (const each of this.listeners) each(event);
      }
    });
  }

  stats(): DatapathStats {
    this.assertOpen();
    const read = (index: number): bigint => {
      const value = this.maps.eg_stats.lookup(encodeU32(index));
      return value === null ? 0n : sumPerCpuU64(value);
    };
    return {
      eventsLost: read(STAT.eventsLost),
      eventsMalformed: this.malformedEvents,
      eventsSuppressed: read(STAT.eventsSuppressed),
      eventsDroppedByReader: BigInt(this.ringBuffer?.dropped() ?? 0),
      decisionsPermitted: read(STAT.permitted),
      decisionsDenied: read(STAT.denied),
      dnsSteered: read(STAT.dnsSteered),
      flowsRefused: read(STAT.flowsRefused),
      candidateOverflows: read(STAT.candidateOverflows),
      evidenceRead: read(STAT.evidenceRead),
      firstFlightsRefused: read(STAT.flightsRefused),
      flowsEnded: read(STAT.flowsEnded),
      flowsNotEnded: this.flowsNotEnded,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ringBuffer?.close();
    this.ringBuffer = null;
    for (const map of Object.values(this.maps)) map.close();
    this.object.close();
  }

  destroy(): void {
    this.close();
    destroyPinned(this.native, this.options.pinDir, this.options.hostNetns);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('datapath is closed');
  }

  /** The cgroup id of a workload directory, which must exist at or below the attach cgroup. */
  private resolveWorkloadCgroup(cgroupPath: string): bigint {
    let real: string;
    try {
      real = realpathSync(cgroupPath);
    } catch {
      throw new Error(`workload cgroup ${cgroupPath} does not exist`);
    }
    if (!statSync(real).isDirectory()) throw new Error(`workload cgroup ${cgroupPath} is not a directory`);
    if (!isAtOrBelow(real, this.attachCgroup)) {
      throw new Error(
        `workload cgroup ${cgroupPath} is not under the attach cgroup ${this.attachCgroup}: its processes would never reach egressguard's programs`,
      );
    }
    return cgroupIdOf(real);
  }

  private allocateWorkloadId(): number {
    const used = new Set([...this.enrolled.values()].map((entry) => entry.workloadId));
    for (let id = 1; id <= MAX_WORKLOAD_ID; id++) if (!used.has(id)) return id;
    throw new Error('no free workload id');
  }
}

function validateOptions(options: DatapathOptions): { attachCgroup: string; pinDir: string } {
  if (!existsSync(options.objectPath)) {
    throw new Error(`BPF object ${options.objectPath} does not exist: build it with \`make bpf\``);
  }
  const cgroup2 = findCgroup2Mount();
  if (cgroup2 === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts): egressguard needs cgroup v2');
  let attachCgroup: string;
  try {
    attachCgroup = realpathSync(options.attachCgroup);
  } catch {
    throw new Error(`attach cgroup ${options.attachCgroup} does not exist`);
  }
  if (!isAtOrBelow(attachCgroup, cgroup2)) {
    throw new Error(`attach cgroup ${options.attachCgroup} is not on the cgroup2 mount ${cgroup2}`);
  }
  if (options.hostNetns !== undefined && !existsSync(options.hostNetns)) {
    throw new Error(`hostNetns ${options.hostNetns} does not exist (expected a network namespace path such as /run/netns/NAME)`);
  }
  return { attachCgroup, pinDir: resolvePinDir(options.pinDir) };
}

/** pinDir, absolute; it must be a directory below a bpffs mount (never the mount itself). */
function resolvePinDir(path: string): string {
  const bpffs = ensureBpffs();
  const pinDir = resolve(path);
  if (!isAtOrBelow(pinDir, bpffs) || pinDir === bpffs) {
    throw new Error(`pinDir ${path} must be a directory below the bpffs mount ${bpffs}`);
  }
  return pinDir;
}

/**
 * The ABI version of the pins under pinDir, or null when nothing is pinned yet. Read before any pin
 * is reused: eg_abi_version's own layout never changes.
 */
function pinnedAbiVersion(native: NativeAddon, mapsDir: string): number | null {
  if (!existsSync(mapsDir) || readdirSync(mapsDir).length === 0) return null;
  const versionPin = join(mapsDir, ABI_VERSION_MAP);
  if (!existsSync(versionPin)) return UNVERSIONED_ABI;
  const map = native.BpfMap.openPinned(versionPin);
  try {
    return map.lookup(encodeU32(0))?.readUInt32LE(0) ?? 0;
  } finally {
    map.close();
  }
}

/** Refuses pinned state another ABI version wrote, before anything touches it: its enforcement goes on. */
function checkPinnedAbi(native: NativeAddon, pinDir: string): void {
  const pinned = pinnedAbiVersion(native, pinPaths(pinDir).maps);
  if (pinned === null || pinned === EG_ABI_VERSION) return;
  throw new Error(
    `pinned state at ${pinDir} was written by ABI v${pinned}, this agent speaks v${EG_ABI_VERSION}: ` +
      `run \`egressguard teardown\` with this agent (enforcement pauses until it starts again) or roll back to an agent of ABI v${pinned}`,
  );
}

/**
 * Opens the datapath: checks the kernel's features and the pinned state's ABI version, loads the
 * object reusing pinned maps, then for each program either swaps it into the pinned link (adoption:
 * enforcement never pauses) or attaches and pins a new link.
 */
export function openDatapath(options: DatapathOptions): Datapath {
  const { attachCgroup, pinDir } = validateOptions(options);
  const features = options.features ?? ALL_FEATURES;
  const native = loadNative();
  const probed = native.probeFeatures();
  checkKernelFeatures(probed, features, release());
  checkPinnedAbi(native, pinDir);
  const paths = pinPaths(pinDir);
  mkdirSync(paths.maps, { recursive: true });
  mkdirSync(paths.links, { recursive: true });

  const object = new native.BpfObject(options.objectPath, paths.maps);
  let adopted = false;
  try {
    if (!features.packet) {
      object.setAutoload(TC_PROGRAM, false);
      object.setAutoload(TC_EGRESS_PROGRAM, false);
    }
    object.load();
    const version = object.map(ABI_VERSION_MAP);
    try {
      version.update(encodeU32(0), encodeU32(EG_ABI_VERSION));
    } finally {
      version.close();
    }
    const attachCgroupId = cgroupIdOf(attachCgroup);
    for (const name of PROGRAM_NAMES) {
      const program = object.program(name);
      const linkPath = paths.link(name);
      if (existsSync(linkPath)) {
        const link = native.BpfLink.openPinned(linkPath);
        try {
          const { cgroupId } = link.info();
          if (cgroupId !== attachCgroupId) {
            throw new Error(
              `pinned link ${linkPath} is attached to cgroup id ${cgroupId}, not to ${attachCgroup} (id ${attachCgroupId}): use another pinDir or destroy the old state`,
            );
          }
          link.update(program);
        } finally {
          link.close();
        }
        adopted = true;
      } else {
        const link = program.attachCgroup(attachCgroup);
        try {
          link.pin(linkPath);
        } finally {
          link.close();
        }
      }
    }
    const maps = Object.fromEntries(MAP_NAMES.map((name) => [name, object.map(name)])) as Record<MapName, NativeMap>;
    // The object stays open: configure() and setWorkload() attach its cgroup_skb and tc programs.
    return new KernelDatapath(native, { ...options, pinDir }, object, maps, attachCgroup, adopted, features, optionalFeatures(probed));
  } catch (error) {
    object.close();
    throw error;
  }
}

/**
 * Ends enforcement on purpose (`egressguard teardown`): removes the datapath pinned at pinDir without
 * loading anything, so it works whatever ABI version or kernel features the pins came with.
 */
export function destroyDatapath(options: Pick<DatapathOptions, 'pinDir' | 'hostNetns'>): DestroyedState {
  return destroyPinned(loadNative(), resolvePinDir(options.pinDir), options.hostNetns);
}

/** What destroyPinned removed: pinned links detached, tc filters detached, map pins removed. */
export interface DestroyedState {
  links: number;
  tcFilters: number;
  maps: number;
}

/** Detaches both tc programs of one interface; returns how many filters were there. */
function detachTc(native: NativeAddon, ifindex: number, hostNetns: string | undefined): number {
  const ingress = native.tcDetachIngress(ifindex, TC_HANDLE, TC_PRIORITY, hostNetns);
  const egress = native.tcDetachEgress(ifindex, TC_HANDLE, TC_PRIORITY, hostNetns);
  return Number(ingress) + Number(egress);
}

/**
 * Detaches every pinned link and tc filter and removes every pin under pinDir (no open Datapath
 * needed). hostNetns: where the workloads' host-side interfaces are (DatapathOptions.hostNetns).
 */
export function destroyPinned(native: NativeAddon, pinDir: string, hostNetns?: string): DestroyedState {
  const paths = pinPaths(pinDir);
  const destroyed: DestroyedState = { links: 0, tcFilters: 0, maps: 0 };
  const interfacesPin = join(paths.maps, 'eg_interfaces');
  if (existsSync(interfacesPin)) {
    const interfaces = native.BpfMap.openPinned(interfacesPin);
    try {
      for (const key of interfaces.keys()) destroyed.tcFilters += detachTc(native, key.readUInt32LE(0), hostNetns);
    } finally {
      interfaces.close();
    }
  }
  if (existsSync(paths.links)) {
    for (const name of readdirSync(paths.links)) {
      const link = native.BpfLink.openPinned(join(paths.links, name));
      try {
        link.detach();
      } finally {
        link.close();
      }
      unlinkSync(join(paths.links, name));
      destroyed.links += 1;
    }
    rmdirSync(paths.links);
  }
  if (existsSync(paths.maps)) {
    for (const name of readdirSync(paths.maps)) {
      unlinkSync(join(paths.maps, name));
      destroyed.maps += 1;
    }
    rmdirSync(paths.maps);
  }
  if (existsSync(pinDir)) rmdirSync(pinDir);
  return destroyed;
}

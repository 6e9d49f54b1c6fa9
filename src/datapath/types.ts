// The datapath's contract with the rest of the agent. Everything here is in plain TypeScript terms;
// the byte layouts live in bpf/egressguard.h and src/datapath/abi.ts.

import type { Cidr, RuleAction, RuleProtocol } from '../policy/types.js';
import type { Layer, Tier, Verdict } from '../events/types.js';

export type DefaultAction = 'permit' | 'deny';

export interface DatapathOptions {
  /** Compiled BPF object (bpf/egressguard.bpf.o). */
  objectPath: string;
  /** Directory under a bpffs mount where maps, programs and links are pinned, e.g. /sys/fs/bpf/egressguard/default. */
  pinDir: string;
  /** cgroup v2 directory the programs attach to; every workload cgroup must be it or below it. */
  attachCgroup: string;
}

export interface DatapathSettings {
  defaultAction: DefaultAction;
  /** The agent's DNS proxy; enrolled workloads' port-53 traffic is steered here. */
  dnsProxy: { ipv4: string | null; ipv6: string | null; port: number };
}

/** A tier-0 (deny list) or tier-1 (baseline permit) entry. */
export interface CidrEntry {
  /** Stable id for events (see ruleIdFor in src/datapath/ids.ts). */
  ruleId: number;
  cidr: Cidr;
  protocol: RuleProtocol;
  portLow: number;
  portHigh: number;
  /** Emit an event for permits that match this entry (deny-list matches always emit). */
  log: boolean;
}

/** One tier-2 rule as the kernel evaluates it. Order in the array is evaluation order. */
export interface KernelRule {
  ruleId: number;
  action: RuleAction;
  protocol: RuleProtocol;
  portLow: number;
  portHigh: number;
  cidrs: Cidr[];
  anyDestination: boolean;
  /** Destination must have been learned for this rule (webGroup rule). */
  web: boolean;
  /** webGroup `*`: any destination satisfies the learned-IP condition. */
  anyName: boolean;
  watch: boolean;
  log: boolean;
  tlsRequired: boolean;
}

export interface LearnedEntry {
  workloadId: number;
  ruleId: number;
  ip: string;
  /** CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint() clock). */
  expiresAtNs: bigint;
}

/** A decision reported by the kernel, decoded but not yet enriched. */
export interface KernelEvent {
  timestampNs: bigint;
  cgroupId: bigint;
  workloadId: number;
  ruleId: number;
  ip: string;
  family: 4 | 6;
  port: number;
  protocol: number;
  verdict: Verdict;
  tier: Tier;
  layer: Layer;
  pid: number;
  comm: string;
}

export interface DatapathStats {
  eventsLost: bigint;
  decisionsPermitted: bigint;
  decisionsDenied: bigint;
  dnsSteered: bigint;
}

export interface Datapath {
  /** True when this instance found pinned state from an earlier agent and took it over. */
  readonly adopted: boolean;
  configure(settings: DatapathSettings): void;
  setDenyList(entries: CidrEntry[]): void;
  setBaseline(entries: CidrEntry[]): void;
  /** Enrol (or update) a workload cgroup and atomically replace its tier-2 rules. Returns the workload id. */
  setWorkload(cgroupPath: string, rules: KernelRule[]): number;
  removeWorkload(cgroupPath: string): void;
  /** Workloads found in the kernel (after adoption): cgroup id -> workload id. */
  workloads(): Map<bigint, number>;
  learn(entries: LearnedEntry[]): void;
  learned(workloadId?: number): LearnedEntry[];
  /** Delete learned entries that expired before nowNs; returns how many were removed. */
  expireLearned(nowNs: bigint): number;
  onEvent(listener: (event: KernelEvent) => void): void;
  stats(): DatapathStats;
  /** Stop reading events and close file descriptors; pinned state keeps enforcing. */
  close(): void;
  /** Detach every program and remove every pin: enforcement ends. */
  destroy(): void;
}

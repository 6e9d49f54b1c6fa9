// The datapath's contract with the rest of the agent. Everything here is in plain TypeScript terms;
// the byte layouts live in bpf/egressguard.h and src/datapath/abi.ts.

import type { Cidr, CompiledRule, RuleProtocol } from '../policy/types.js';
import type { KernelEvent } from '../model/decision.js';
import type { DatapathFeatures, OptionalFeatures } from './features.js';

export type { KernelEvent };

export type DefaultAction = 'permit' | 'deny';

export interface DatapathOptions {
  /** Compiled BPF object (bpf/egressguard.bpf.o). */
  objectPath: string;
  /** Directory under a bpffs mount where maps, programs and links are pinned, e.g. /sys/fs/bpf/egressguard/default. */
  pinDir: string;
  /** cgroup v2 directory the programs attach to; every workload cgroup must be it or below it. */
  attachCgroup: string;
  /**
   * Network namespace (a path such as /run/netns/node) holding the workloads' host-side
   * interfaces; default: the agent's own. For host-mode labs whose "node" is a namespace.
   */
  hostNetns?: string;
  /**
   * The enforcement layers the configuration wants (default both): the kernel features they need
   * are probed before loading, and without packet the tc program is not loaded at all.
   */
  features?: DatapathFeatures;
}

export interface DatapathSettings {
  /** Learned addresses one workload may hold: a wildcard zone must not fill the node's map. */
  maxLearnedPerWorkload: number;
  defaultAction: DefaultAction;
  /** The agent's DNS proxy; enrolled workloads' port-53 traffic is steered here. */
  dnsProxy: { ipv4: string | null; ipv6: string | null; port: number };
  /** Deny TLS flows whose ClientHello carries encrypted_client_hello (their real name is hidden). */
  denyEch: boolean;
  /**
   * Which programs beyond the socket hooks are attached (false exists for
   * benchmarks and for kernels lacking them). tls: the cgroup_skb program (SNI, raw and ping
   * sockets); without it webGroup rules match on learned IPs alone. packet: the tc backstop.
   */
  features: DatapathFeatures;
}

/** Where a workload's traffic enters the node outside its sockets (the tc backstop). */
export interface WorkloadNetwork {
  /** Host-side interface names (in DatapathOptions.hostNetns or the agent's namespace). */
  interfaces: string[];
  /** The workload's own addresses: the only sources it may send from. */
  addresses: string[];
}

/** A tier-0 (deny list) or tier-1 (baseline permit) entry. */
export interface CidrEntry {
  /** Stable id for events (see ruleIdFor in src/policy/rule-ids.ts). */
  ruleId: number;
  cidr: Cidr;
  protocol: RuleProtocol;
  portLow: number;
  portHigh: number;
  /** Emit an event for permits that match this entry (deny-list matches always emit). */
  log: boolean;
}

/** One tier-2 rule as the kernel evaluates it. Order in the array is evaluation order. */
export interface KernelRule extends Pick<
  CompiledRule,
  'ruleId' | 'action' | 'protocol' | 'portLow' | 'portHigh' | 'cidrs' | 'anyDestination' | 'watch' | 'tlsRequired' | 'domains'
> {
  /** Destination must have been learned for this rule (webGroup rule). */
  web: boolean;
  /** webGroup `*`: any destination satisfies the learned-IP condition. */
  anyName: boolean;
  log: boolean;
}

export interface LearnedEntry {
  workloadId: number;
  ruleId: number;
  ip: string;
  /** CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint() clock). */
  expiresAtNs: bigint;
}

export interface DatapathStats {
  /** Events the kernel could not queue (ring buffer full). */
  eventsLost: bigint;
  /** Ring-buffer records that were not an eg_event (wrong size, unknown verdict, tier or layer): dropped. */
  eventsMalformed: bigint;
  /** Events the per-workload rate limit suppressed (counted, reported by the workload's next event). */
  eventsSuppressed: bigint;
  /** Events the ring-buffer reader dropped because JavaScript fell behind its bounded queue. */
  eventsDroppedByReader: bigint;
  decisionsPermitted: bigint;
  decisionsDenied: bigint;
  dnsSteered: bigint;
  /** Approved flows refused: the workload held its share of the table (or the table was full). */
  flowsRefused: bigint;
  /** TLS connects with more webGroup/tlsRequired candidates than the kernel's list holds (decided by a rule walk). */
  candidateOverflows: bigint;
  /** First flights of permitted TCP flows the kernel read for evidence events. */
  evidenceRead: bigint;
  /** Pending TLS first flights the backstop could not be given a copy of (the workload's share of the table, or the
   * table, full): decided at once without their ClientHello. */
  firstFlightsRefused: bigint;
  /** Live sockets ended because the rules in force (or their ClientHello) no longer permit them. */
  flowsEnded: bigint;
  /** Sockets that should have ended but could not (kernel before 6.5: no bpf_sock_destroy): their tc approval is purged and
   * their socket marked withdrawn, so the cgroup_skb program drops what they send. */
  flowsNotEnded: bigint;
}

/** One workload's share of the approved-flow table (eg_flow_counts). */
export interface ApprovedFlows {
  /** Approvals it holds now. */
  held: number;
  /** Pending TLS first flights it holds now (eg_first_flights). */
  flights: number;
  /** Approvals refused since it was enrolled (its flows were then judged packet by packet). */
  refused: bigint;
}

/** One re-judgment pass over the live sockets of enrolled workloads. */
/** The node-wide maps a kernel capacity (src/model/capacity.ts) counts, by their entries. */
export type CapacityMap = 'eg_rule_cidrs' | 'eg_domains' | 'eg_learned' | 'eg_workloads' | 'eg_workload_addrs' | 'eg_interfaces';

export interface FlowsEnded {
  ended: number;
  /** Kernel lacks bpf_sock_destroy (Linux < 6.5): the sockets live on, marked withdrawn: the cgroup_skb program drops what they send. */
  unsupported: number;
  /** bpf_sock_destroy failed for another reason (the socket was closing). */
  failed: number;
}

export interface Datapath {
  /** True when this instance found pinned state from an earlier agent and took it over. */
  readonly adopted: boolean;
  /** Each optional kernel feature (src/datapath/features.ts): available or not, as probed when the datapath opened. */
  readonly kernelFeatures: OptionalFeatures;
  configure(settings: DatapathSettings): void;
  setDenyList(entries: CidrEntry[]): void;
  setBaseline(entries: CidrEntry[]): void;
  /**
   * Enrol (or update) a workload cgroup and atomically replace its tier-2 rules. With network,
   * the tc backstop is attached to its interfaces and its sources are restricted to its
   * addresses (also for raw sockets). Returns the workload id.
   */
  setWorkload(cgroupPath: string, rules: KernelRule[], network?: WorkloadNetwork): number;
  /** Withdraw a workload, by cgroup path or by cgroup id (a workload enrolled by an earlier agent). */
  removeWorkload(cgroup: string | bigint): void;
  /** Workloads found in the kernel (after adoption): cgroup id -> workload id. */
  workloads(): Map<bigint, number>;
  /**
   * Write learned addresses. An entry never gets shorter: one the kernel already holds at least as long is left as it
   * is (and costs no map write). Throws, naming the workload, when entries would exceed its cap (the rest are written).
   */
  learn(entries: LearnedEntry[]): void;
  learned(workloadId?: number): LearnedEntry[];
  /** Delete learned entries that expired before nowNs; returns how many were removed. */
  expireLearned(nowNs: bigint): number;
  /** Each enrolled workload's approved flows (workload id -> share), against EG_MAX_FLOWS_PER_WORKLOAD. */
  approvedFlows(): Map<number, ApprovedFlows>;
  /** The entries each capacity map holds now, whoever wrote them (a walk of its keys: for status, not per packet). */
  mapEntries(): Record<CapacityMap, number>;
  /**
   * Remove approvals nothing will use again (see APPROVAL_IDLE in datapath.ts: closed TCP flows, idle datagram
   * flows, flows of withdrawn workloads) and recount each workload's share; returns how many were removed.
   */
  sweepApprovals(nowNs: bigint): number;
  /**
   * Re-judge every live TCP/UDP socket of every enrolled workload against the rules in force and end
   * the ones no longer permitted (and those denied on their ClientHello). The writes above
   * (configure, setDenyList, setBaseline, setWorkload) run it themselves; a TLS deny event schedules it.
   */
  endStaleFlows(): FlowsEnded;
  onEvent(listener: (event: KernelEvent) => void): void;
  stats(): DatapathStats;
  /** Stop reading events and close file descriptors; pinned state keeps enforcing. */
  close(): void;
  /** Detach every program and remove every pin: enforcement ends. */
  destroy(): void;
}

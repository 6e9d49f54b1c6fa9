// A Datapath that keeps its state in memory: the control plane (reconciler, DNS decisions, enrichment, status) runs
// against it without root. It records every call, can be told to fail, and can emit kernel events.
import type {
  ApprovedFlows,
  CapacityMap,
  CidrEntry,
  Datapath,
  DatapathSettings,
  DatapathStats,
  FlowsEnded,
  KernelEvent,
  KernelRule,
  LearnedEntry,
  WorkloadNetwork,
} from '../../src/datapath/types.js';
import { EG_MAX_RULES, encodeDomainKey } from '../../src/datapath/abi.js';
import type { OptionalFeatures } from '../../src/datapath/features.js';

export interface FakeWorkload {
  cgroupPath: string;
  cgroupId: bigint;
  workloadId: number;
  rules: KernelRule[];
  network: WorkloadNetwork | undefined;
}

export class FakeDatapath implements Datapath {
  adopted = false;
  kernelFeatures: OptionalFeatures = { socketDestroy: true };
  settings: DatapathSettings | null = null;
  denyList: CidrEntry[] = [];
  baseline: CidrEntry[] = [];
  /** Enrolled workloads by cgroup id. */
  readonly enrolled = new Map<bigint, FakeWorkload>();
  learnedEntries: LearnedEntry[] = [];
  /** Every setWorkload call, in order, by cgroup path (failed calls included). */
  readonly setWorkloadCalls: string[] = [];
  readonly removeWorkloadCalls: Array<string | bigint> = [];
  /** setWorkload throws this for the cgroup paths in it. */
  readonly failSetWorkload = new Map<string, Error>();
  /** setWorkload throws this for the cgroup paths in it when called with a network (the backstop cannot attach). */
  readonly failNetwork = new Map<string, Error>();
  counters: DatapathStats = {
    eventsLost: 0n,
    eventsMalformed: 0n,
    decisionsPermitted: 0n,
    decisionsDenied: 0n,
    dnsSteered: 0n,
    flowsRefused: 0n,
    candidateOverflows: 0n,
    evidenceRead: 0n,
    firstFlightsRefused: 0n,
    eventsSuppressed: 0n,
    eventsDroppedByReader: 0n,
    flowsEnded: 0n,
    flowsNotEnded: 0n,
  };
  private readonly listeners: Array<(event: KernelEvent) => void> = [];
  private nextWorkloadId = 1;
  closed = false;

  /**
   * @param cgroupIds cgroup path → id, as the cgroup filesystem would answer (the reconciler's WorkloadHost reads
   *   the same table); paths missing from it are enrolled under a made-up id.
   */
  constructor(readonly cgroupIds = new Map<string, bigint>()) {}

  /** Pretend an earlier agent left this workload in the pinned maps. */
  adopt(cgroupId: bigint, workloadId: number): void {
    this.adopted = true;
    this.enrolled.set(cgroupId, { cgroupPath: '', cgroupId, workloadId, rules: [], network: undefined });
    this.nextWorkloadId = Math.max(this.nextWorkloadId, workloadId + 1);
  }

  configure(settings: DatapathSettings): void {
    this.settings = settings;
  }

  setDenyList(entries: CidrEntry[]): void {
    this.denyList = entries;
  }

  setBaseline(entries: CidrEntry[]): void {
    this.baseline = entries;
  }

  setWorkload(cgroupPath: string, rules: KernelRule[], network?: WorkloadNetwork): number {
    this.setWorkloadCalls.push(cgroupPath);
    const failure = this.failSetWorkload.get(cgroupPath);
    if (failure) throw failure;
    // The kernel's own limits, checked as the real datapath checks them (before anything is written).
    if (rules.length > EG_MAX_RULES)
      throw new Error(`workload ${cgroupPath} has ${rules.length} rules; the kernel evaluates at most ${EG_MAX_RULES}`);
    for (const rule of rules) for (const pattern of rule.domains ?? []) encodeDomainKey(rule.ruleId, pattern);
    const networkFailure = network && this.failNetwork.get(cgroupPath);
    if (networkFailure) throw networkFailure;
    const cgroupId = this.cgroupIds.get(cgroupPath) ?? BigInt(10_000 + this.enrolled.size);
    const current = this.enrolled.get(cgroupId);
    const workloadId = current?.workloadId ?? this.nextWorkloadId++;
    this.enrolled.set(cgroupId, { cgroupPath, cgroupId, workloadId, rules, network });
    return workloadId;
  }

  removeWorkload(cgroup: string | bigint): void {
    this.removeWorkloadCalls.push(cgroup);
    const cgroupId = typeof cgroup === 'bigint' ? cgroup : [...this.enrolled.values()].find((w) => w.cgroupPath === cgroup)?.cgroupId;
    if (cgroupId !== undefined) this.enrolled.delete(cgroupId);
  }

  workloads(): Map<bigint, number> {
    return new Map([...this.enrolled].map(([cgroupId, w]) => [cgroupId, w.workloadId]));
  }

  /** The rules in force for a cgroup path, as rule ids; undefined when it is not enrolled. */
  ruleIdsOf(cgroupPath: string): number[] | undefined {
    return [...this.enrolled.values()].find((w) => w.cgroupPath === cgroupPath)?.rules.map((r) => r.ruleId);
  }

  learn(entries: LearnedEntry[]): void {
    this.learnedEntries.push(...entries);
  }

  learned(workloadId?: number): LearnedEntry[] {
    return this.learnedEntries.filter((e) => workloadId === undefined || e.workloadId === workloadId);
  }

  expireLearned(nowNs: bigint): number {
    const before = this.learnedEntries.length;
    this.learnedEntries = this.learnedEntries.filter((e) => e.expiresAtNs >= nowNs);
    return before - this.learnedEntries.length;
  }

  approvedFlows(): Map<number, ApprovedFlows> {
    return new Map([...this.enrolled.values()].map((w) => [w.workloadId, { held: 0, flights: 0, refused: 0n }]));
  }

  /** What the kernel would hold for what was written here (one rule slot: the fake keeps no previous one). */
  mapEntries(): Record<CapacityMap, number> {
    const workloads = [...this.enrolled.values()];
    const rules = workloads.flatMap((w) => w.rules);
    return {
      eg_rule_cidrs: rules.reduce((n, r) => n + r.cidrs.length, 0),
      eg_domains: new Set(rules.flatMap((r) => (r.domains ?? []).map((d) => `${r.ruleId} ${JSON.stringify(d)}`))).size,
      eg_learned: this.learnedEntries.length,
      eg_workloads: workloads.length,
      eg_workload_addrs: workloads.reduce((n, w) => n + (w.network?.addresses.length ?? 0), 0),
      eg_interfaces: workloads.reduce((n, w) => n + (w.network?.interfaces.length ?? 0), 0),
    };
  }

  sweepApprovals(): number {
    return 0;
  }

  onEvent(listener: (event: KernelEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Deliver a kernel event to the listeners, as the ring buffer reader would. */
  emit(event: KernelEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  endStaleFlows(): FlowsEnded {
    return { ended: 0, unsupported: 0, failed: 0 };
  }

  stats(): DatapathStats {
    return { ...this.counters };
  }

  close(): void {
    this.closed = true;
  }

  destroy(): void {
    this.enrolled.clear();
    this.closed = true;
  }
}

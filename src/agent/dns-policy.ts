// What the DNS proxy needs of the agent's policy, as plain data: the proxy runs in a worker thread, which sees no
// object of the agent's, so the main thread sends a fresh snapshot whenever workloads, policies or the baseline change.
import { unmapIpv4 } from '../model/ip.js';
import { decideName, type DnsBaseline } from '../policy/dns-decision.js';
import type { CompiledRule } from '../policy/types.js';
import type { DnsPolicyOracle, DnsWorkload } from '../dns/types.js';

export interface SnapshotWorkload extends DnsWorkload {
  addresses: string[];
  /** Its rules in force, in evaluation order. */
  rules: CompiledRule[];
}

export interface DnsPolicySnapshot {
  /** False until the agent's first workload report: the proxy then leaves unknown sources unanswered (see DnsPolicyOracle). */
  workloadsKnown: boolean;
  workloads: SnapshotWorkload[];
  baseline: DnsBaseline;
}

/** Answers the proxy's questions from one snapshot, exactly as the agent's registry and decideName would. */
export function snapshotOracle(snapshot: DnsPolicySnapshot): DnsPolicyOracle {
  const byAddress = new Map<string, SnapshotWorkload>();
  const byKey = new Map<string, SnapshotWorkload>();
  for (const workload of snapshot.workloads) {
    byKey.set(workload.key, workload);
    for (const address of workload.addresses) byAddress.set(unmapIpv4(address), workload);
  }
  return {
    workloadFor: (ip) => {
      const workload = byAddress.get(unmapIpv4(ip));
      return workload === undefined ? null : { key: workload.key, workloadId: workload.workloadId };
    },
    decide: (workload, qname) => decideName(byKey.get(workload.key)?.rules ?? [], qname, snapshot.baseline),
    workloadsKnown: () => snapshot.workloadsKnown,
  };
}

/** workloadId → the rule ids in force for it: a learn the worker decided under an older snapshot is checked against these. */
export function rulesInForce(snapshot: DnsPolicySnapshot): Map<number, Set<number>> {
  return new Map(snapshot.workloads.map((workload) => [workload.workloadId, new Set(workload.rules.map((rule) => rule.ruleId))]));
}

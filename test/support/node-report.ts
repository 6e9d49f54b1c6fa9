// The node report recomputed from scratch (every accepted policy's status, as the agent did before its change
// journal): the reference the journal-driven NodeReportBuilder must equal, for the unit tests and bench/k8s-policies.
import type { Reconciler } from '../../src/agent/reconciler.js';
import type { NodeReport } from '../../src/k8s/status.js';

export function fullNodeReport(
  node: string,
  reconciler: Pick<Reconciler, 'policyStatus'>,
  acceptedGeneration: (namespace: string, name: string) => number | undefined,
): NodeReport {
  const report: NodeReport = { node, policies: {} };
  for (const policy of reconciler.policyStatus()) {
    const generation = acceptedGeneration(policy.namespace, policy.name);
    if (generation === undefined || policy.ruleset === '' || policy.workloads.length === 0) continue;
    const pods = policy.workloads.map((key) => key.slice(policy.namespace.length + 1)).sort();
    report.policies[`${policy.namespace}/${policy.name}`] = { generation, pods };
  }
  return report;
}

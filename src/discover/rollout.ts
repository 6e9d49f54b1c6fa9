// Per-rule rollout evidence the agent keeps for `status`: per workload, how many decisions the default action
// permitted (in discovery mode: what flipping the default to deny would deny now) and what each watch rule reported.
// Counted from the decisions the agent receives since it started; the kernel's per-workload event rate limit can
// hold some back (status counts them as kernelEventsSuppressed), so these are lower bounds.
import type { FlowEvent } from '../events/types.js';

export interface WorkloadRollout {
  /** Connections (connect, TLS or HTTP layer) the tier-3 default permitted. */
  flowsDeniedIfDefaultFlipped: number;
  /** DNS queries the tier-3 default answered. */
  queriesDeniedIfDefaultFlipped: number;
  /** Per watch rule (`namespace/policy:rule`). */
  watch: { rule: string; wouldPermit: number; wouldDeny: number }[];
}

/** Workloads remembered: pods come and go (Kubernetes mode), so the longest-unseen are forgotten past this. */
const DEFAULT_WORKLOADS_REMEMBERED = 16_384;

export class RolloutCounter {
  private readonly byWorkload = new Map<
    string,
    { flows: number; queries: number; watch: Map<string, { wouldPermit: number; wouldDeny: number }> }
  >();

  constructor(private readonly workloadsRemembered = DEFAULT_WORKLOADS_REMEMBERED) {}

  observe(event: FlowEvent): void {
    if (event.workload.namespace === '' || event.evidence) return; // evidence describes a flow already counted
    const key = `${event.workload.namespace}/${event.workload.name}`;
    let entry = this.byWorkload.get(key);
    if (entry) this.byWorkload.delete(key);
    else entry = { flows: 0, queries: 0, watch: new Map() };
    this.byWorkload.set(key, entry);
    if (this.byWorkload.size > this.workloadsRemembered) this.byWorkload.delete(this.byWorkload.keys().next().value!);
    if (event.tier === 3 && event.verdict === 'permitted') {
      if (event.layer === 'dns') entry.queries += event.count;
      else if (event.layer === 'connect' || event.layer === 'tls' || event.layer === 'http') entry.flows += event.count;
    } else if (event.verdict === 'would-deny' || event.verdict === 'would-permit') {
      const rule = event.policy ? `${event.policy.namespace}/${event.policy.name}:${event.rule}` : event.rule;
      const counts = entry.watch.get(rule) ?? { wouldPermit: 0, wouldDeny: 0 };
      if (event.verdict === 'would-deny') counts.wouldDeny += event.count;
      else counts.wouldPermit += event.count;
      entry.watch.set(rule, counts);
    }
  }

  of(key: string): WorkloadRollout {
    const entry = this.byWorkload.get(key);
    return {
      flowsDeniedIfDefaultFlipped: entry?.flows ?? 0,
      queriesDeniedIfDefaultFlipped: entry?.queries ?? 0,
      watch: [...(entry?.watch ?? [])].map(([rule, counts]) => ({ rule, ...counts })),
    };
  }
}

// Per-workload compilation: the tier-2 rules that select a workload, in evaluation order (first match wins).
import type { CompiledRule } from './types.js';
import type { ValidatedPolicy, WorkloadSelector } from './validate.js';

export interface WorkloadIdentity {
  namespace: string;
  labels: Record<string, string>;
}

/** matchLabels ⊆ labels; an empty matchLabels selects every pod. Service selectors cannot be resolved in host mode. */
export function selectorMatches(selector: WorkloadSelector, labels: Record<string, string>): boolean {
  if (!('matchLabels' in selector)) return false;
  return Object.entries(selector.matchLabels).every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value);
}

function byNamespaceThenName(a: ValidatedPolicy, b: ValidatedPolicy): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return 0;
}

/** The rules of `policies` in the workload's namespace that select it: policies in (namespace, name) order, rules in array order. */
export function compileForWorkload(policies: readonly ValidatedPolicy[], workload: WorkloadIdentity): CompiledRule[] {
  const compiled: CompiledRule[] = [];
  const applicable = policies.filter((policy) => policy.namespace === workload.namespace).sort(byNamespaceThenName);
  for (const policy of applicable) {
    const ref = { namespace: policy.namespace, name: policy.name, generation: policy.generation };
    for (const rule of policy.rules) {
      if (selectorMatches(rule.selector, workload.labels)) compiled.push({ ...rule.compiled, policy: ref });
    }
  }
  return compiled;
}

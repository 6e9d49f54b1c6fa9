// `policy diff OLD NEW`: what changes for which workload, from the rules each set compiles to for it (the list the
// kernel would get), not from the YAML text: a renamed smartGroup that means the same is no change; a reordered rule is.
import { compileForWorkload } from '../policy/compile.js';
import { formatCidr } from '../policy/cidr.js';
import type { CompiledRule } from '../policy/types.js';
import type { ValidatedPolicy } from '../policy/validate.js';
import type { SelectableWorkload } from '../model/workload.js';
import { describeDomains } from './evaluate.js';

export interface DiffWorkload extends SelectableWorkload {
  /** How the report names it: `namespace/name`, or the labels a policy selects when no workload list is given. */
  key: string;
}

export interface WorkloadDiff {
  key: string;
  added: string[];
  removed: string[];
  changed: string[];
  /** True when the same rules remain but in another order (first match wins, so it can change verdicts). */
  reordered: boolean;
  namesAllowed: string[];
  namesNoLongerAllowed: string[];
}

const ruleKey = (r: CompiledRule) => `${r.policy.namespace}/${r.policy.name}:${r.name}`;

/** The rule as it behaves: everything that decides a verdict, nothing that only names it. */
function ruleMeaning(r: CompiledRule): Record<string, string> {
  return {
    action: r.action,
    protocol: r.protocol,
    ports: r.portLow === 0 && r.portHigh === 65535 ? 'any' : r.portLow === r.portHigh ? String(r.portLow) : `${r.portLow}-${r.portHigh}`,
    destinations: r.anyDestination ? 'any' : r.cidrs.map(formatCidr).sort().join(',') || '(none)',
    names: r.domains === null ? '(no webGroups)' : describeDomains(r),
    watch: String(r.watch),
    logging: String(r.logging),
    tlsRequired: String(r.tlsRequired),
    active: String(r.active),
  };
}

function describe(r: CompiledRule): string {
  const m = ruleMeaning(r);
  return `${ruleKey(r)}  ${m.action} ${m.protocol}/${m.ports} to ${m.destinations}${r.domains ? ` names ${m.names}` : ''}${r.watch ? ' (watch)' : ''}${
    r.active ? '' : ' (inactive)'
  }`;
}

function allowedNames(rules: readonly CompiledRule[]): Set<string> {
  return new Set(
    rules.filter((r) => r.active && r.action === 'permit' && !r.watch && r.domains !== null).flatMap((r) => describeDomains(r).split(', ')),
  );
}

/** Workloads named by the rules' own selectors: one per distinct (namespace, matchLabels). */
export function workloadsSelectedBy(...sets: (readonly ValidatedPolicy[])[]): DiffWorkload[] {
  const seen = new Map<string, DiffWorkload>();
  for (const policy of sets.flat())
    for (const rule of policy.rules) {
      if (!('matchLabels' in rule.selector)) continue;
      const labels = rule.selector.matchLabels;
      const text = Object.entries(labels)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      const key = `${policy.namespace} pods with ${text || '(any labels)'}`;
      if (!seen.has(key)) seen.set(key, { key, namespace: policy.namespace, labels });
    }
  return [...seen.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
}

export function diffPolicies(
  before: readonly ValidatedPolicy[],
  after: readonly ValidatedPolicy[],
  workloads: readonly DiffWorkload[],
): WorkloadDiff[] {
  return workloads.map((workload) => {
    const old = compileForWorkload(before, workload);
    const next = compileForWorkload(after, workload);
    const oldByKey = new Map(old.map((r) => [ruleKey(r), r]));
    const nextByKey = new Map(next.map((r) => [ruleKey(r), r]));
    const changed: string[] = [];
    for (const [key, rule] of nextByKey) {
      const was = oldByKey.get(key);
      if (!was) continue;
      const [a, b] = [ruleMeaning(was), ruleMeaning(rule)];
      const fields = Object.keys(a).filter((f) => a[f] !== b[f]);
      if (fields.length > 0) changed.push(`${key}: ${fields.map((f) => `${f} ${a[f]} -> ${b[f]}`).join('; ')}`);
    }
    const common = (list: CompiledRule[], other: Map<string, CompiledRule>) => list.map(ruleKey).filter((k) => other.has(k));
    const [oldNames, nextNames] = [allowedNames(old), allowedNames(next)];
    return {
      key: workload.key,
      added: next.filter((r) => !oldByKey.has(ruleKey(r))).map(describe),
      removed: old.filter((r) => !nextByKey.has(ruleKey(r))).map(describe),
      changed,
      reordered: common(old, nextByKey).join('\n') !== common(next, oldByKey).join('\n'),
      namesAllowed: [...nextNames].filter((n) => !oldNames.has(n)).sort(),
      namesNoLongerAllowed: [...oldNames].filter((n) => !nextNames.has(n)).sort(),
    };
  });
}

export function formatDiff(diffs: readonly WorkloadDiff[]): string {
  const lines: string[] = [];
  for (const d of diffs) {
    const same = d.added.length + d.removed.length + d.changed.length === 0 && !d.reordered;
    lines.push(`workload ${d.key}: ${same ? 'unchanged' : 'changes'}`);
    for (const r of d.removed) lines.push(`  - ${r}`);
    for (const r of d.added) lines.push(`  + ${r}`);
    for (const r of d.changed) lines.push(`  ~ ${r}`);
    if (d.reordered) lines.push('  ~ rule order changed (first match wins)');
    if (d.namesAllowed.length > 0) lines.push(`  names newly allowed: ${d.namesAllowed.join(', ')}`);
    if (d.namesNoLongerAllowed.length > 0) lines.push(`  names no longer allowed: ${d.namesNoLongerAllowed.join(', ')}`);
  }
  return lines.join('\n');
}

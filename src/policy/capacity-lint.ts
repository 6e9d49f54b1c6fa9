// What `policy lint` knows of the kernel's capacities (docs/capacity.md): limits a policy set alone can exceed, found
// before the agent has to enrol a workload deny-all because of them.
import { KERNEL_CAPACITY } from '../model/capacity.js';
import type { DomainPattern, PolicyDiagnostic } from './types.js';
import type { ValidatedPolicy } from './validate.js';

function patternLength(pattern: DomainPattern): number {
  // A wildcard's key is its suffix with the leading dot, and needs room for at least one label character.
  return pattern.kind === 'exact' ? pattern.name.length : pattern.kind === 'wildcard' ? pattern.suffix.length + 2 : 0;
}

function patternText(pattern: DomainPattern): string {
  return pattern.kind === 'exact' ? pattern.name : pattern.kind === 'wildcard' ? `*.${pattern.suffix}` : '*';
}

/** Capacity findings over the whole policy set (policies are evaluated together per workload). */
export function capacityDiagnostics(policies: readonly ValidatedPolicy[]): PolicyDiagnostic[] {
  const diagnostics: PolicyDiagnostic[] = [];
  const nameMax = KERNEL_CAPACITY.domainNameChars.max;
  const rulesMax = KERNEL_CAPACITY.rulesPerWorkload.max;
  const candidatesMax = KERNEL_CAPACITY.sniCandidatesPerConnection.max;
  /** Rules per (namespace, matchLabels): a pod with exactly these labels gets all of them. */
  const bySelector = new Map<string, { count: number; web: number; where: ValidatedPolicy }>();
  let patterns = 0;
  for (const policy of policies) {
    const location = { file: policy.source.file, document: policy.source.document, namespace: policy.namespace, name: policy.name };
    policy.rules.forEach((rule, index) => {
      for (const ref of rule.webGroups ?? []) {
        if (!('domains' in ref)) continue;
        for (const pattern of ref.domains) {
          patterns++;
          if (patternLength(pattern) <= nameMax) continue;
          diagnostics.push({
            severity: 'error',
            location: { ...location, field: `spec.rules[${index}].webGroups` },
            message: `domain ${patternText(pattern)} (webGroup ${ref.group}) is longer than the ${nameMax} characters the kernel matches: it could never be enforced`,
            fix: 'use a shorter name or a wildcard of a shorter suffix',
          });
        }
      }
      if (!('matchLabels' in rule.selector)) return;
      const key = `${policy.namespace}\n${JSON.stringify(Object.entries(rule.selector.matchLabels).sort())}`;
      const entry = bySelector.get(key) ?? { count: 0, web: 0, where: policy };
      entry.count++;
      if (rule.webGroups !== null || rule.tlsRequired) entry.web++;
      bySelector.set(key, entry);
    });
  }
  for (const [key, { count, web, where }] of bySelector) {
    const labels = key.slice(key.indexOf('\n') + 1);
    const location = { file: where.source.file, namespace: where.namespace, name: where.name, field: 'spec.rules' };
    if (count > rulesMax)
      diagnostics.push({
        severity: 'error',
        location,
        message: `pods of namespace ${where.namespace} with labels ${labels} are selected by ${count} rules; the kernel holds ${rulesMax} per workload (such a workload is enforced deny-all)`,
        fix: 'merge rules (one rule may list several smartGroups and webGroups) or split the workloads by label',
      });
    if (web > candidatesMax)
      diagnostics.push({
        severity: 'warning',
        location,
        message: `pods of namespace ${where.namespace} with labels ${labels} are selected by ${web} webGroup/tlsRequired rules; a TLS connection to an address learned for more than ${candidatesMax} of them is judged by walking all of the workload's rules at its ClientHello instead of the kernel's ${candidatesMax}-entry candidate list (same verdict, more lookups; counted in egressguard_tls_candidate_overflows_total)`,
        fix: 'merge webGroup rules with the same action, port and destination',
      });
  }
  if (patterns > KERNEL_CAPACITY.domainPatterns.max)
    diagnostics.push({
      severity: 'error',
      location: {},
      message: `the policies hold ${patterns} domain patterns; the kernel holds ${KERNEL_CAPACITY.domainPatterns.max} on a node`,
      fix: 'merge webGroups shared by several rules into fewer rules',
    });
  return diagnostics;
}

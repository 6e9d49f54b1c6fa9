// The answer to "may this workload resolve this name?": baseline DNS names first, then the workload's FirewallPolicy
// rules (first match wins), then the default action of the mode. Also says which rules the answer is learned for.
import type { DnsDecision } from '../dns/types.js';
import { dnsDecision, normalizeDomain } from './domains.js';
import type { CompiledRule } from './types.js';

export interface DnsBaseline {
  /** Suffixes always answered (cluster-internal names); their flows still need a tier-1 or tier-2 permit. */
  dnsNames: readonly string[];
  mode: 'enforce' | 'discovery';
}

/** Decide `qname` for a workload whose rules (in evaluation order) are `rules`. */
export function decideName(rules: readonly CompiledRule[], qname: string, baseline: DnsBaseline): DnsDecision {
  const name = normalizeDomain(qname);
  const decision = dnsDecision(rules, name);
  // A `*` rule accepts any address in the kernel: learning for it would only fill the map.
  const learnFor = decision.learnFor.filter((r) => !r.domains?.some((d) => d.kind === 'any')).map((r) => r.ruleId);
  const baselineSuffix = baseline.dnsNames.find((s) => name === s || name.endsWith(`.${s}`));
  if (baselineSuffix !== undefined)
    return { verdict: 'permitted', tier: 1, ruleName: `baseline-dns:${baselineSuffix}`, policy: null, learnFor };
  if (decision.action !== 'default' && decision.rule)
    return {
      verdict: decision.action === 'permit' ? 'permitted' : 'denied',
      tier: 2,
      ruleName: decision.rule.name,
      policy: decision.rule.policy,
      learnFor,
    };
  const enforce = baseline.mode === 'enforce';
  return { verdict: enforce ? 'denied' : 'permitted', tier: 3, ruleName: 'default-action', policy: null, learnFor };
}

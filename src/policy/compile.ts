// The compiler: validated FirewallPolicies → CompiledRule[] for a workload, in evaluation order (first match wins).
// Validation (validate.ts) has already checked and normalised the spec; here its selectors are resolved through a
// DestinationResolver (the deployment mode) and the rule's meaning is fixed: what it matches, what is not enforced,
// and whether it can match at all. Unresolvable parts narrow a permit and widen a deny, never the reverse.
import type { SelectableWorkload } from '../model/workload.js';
import { formatCidr } from './cidr.js';
import { hostModeResolver, type DestinationResolver } from './destination-resolver.js';
import { ruleIdFor } from './rule-ids.js';
import type { Cidr, CompiledRule, DomainPattern, PolicyDiagnostic, PolicyLocation } from './types.js';
import type { ValidatedPolicy, ValidatedRule } from './validate.js';

/** One policy compiled whatever it selects: for status, lint and the agent log. */
export interface PolicyCompilation {
  /** Every rule of the policy, in array order. */
  rules: CompiledRule[];
  /** Findings of this resolver: rule parts accepted but not enforced (warnings naming field and line). */
  diagnostics: PolicyDiagnostic[];
}

interface RuleCompilation {
  rule: CompiledRule;
  /** The pod labels the rule selects; null when its selector cannot be resolved (it selects no workload). */
  matchLabels: Record<string, string> | null;
  diagnostics: PolicyDiagnostic[];
}

function dedupeCidrs(cidrs: readonly Cidr[]): Cidr[] {
  const unique = new Map<string, Cidr>();
  for (const cidr of cidrs) unique.set(formatCidr(cidr), cidr);
  return [...unique.values()];
}

/** matchLabels ⊆ labels; an empty matchLabels selects every pod of the namespace. */
function labelsMatch(matchLabels: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(matchLabels).every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value);
}

function compileRule(policy: ValidatedPolicy, rule: ValidatedRule, resolver: DestinationResolver): RuleCompilation {
  const diagnostics: PolicyDiagnostic[] = [];
  const warn = (location: PolicyLocation, message: string, fix: string): void => {
    diagnostics.push({ severity: 'warning', location, message, fix });
  };
  const notEnforced: string[] = [];
  const unenforced = (location: PolicyLocation, reason: string, fix: string): void => {
    notEnforced.push(reason);
    warn(location, `${reason}: not enforced`, fix);
  };
  const deny = rule.action === 'deny';

  let matchLabels: Record<string, string> | null = null;
  const selected = selectorLabels(rule, policy.namespace, resolver);
  if ('unsupported' in selected && 'service' in rule.selector)
    unenforced(
      rule.locations.selector,
      `service selector "${rule.selector.service}" ${selected.unsupported}, so the rule selects no workload`,
      'select pods with matchLabels',
    );
  else if ('matchLabels' in selected) matchLabels = selected.matchLabels;
  notEnforced.push(...rule.notEnforced);

  // Destinations: what cannot be resolved is dropped from a permit and makes a deny apply to every destination.
  const cidrs: Cidr[] = [];
  let unresolvedDestination = false;
  const destinationConsequence = deny ? 'this deny rule applies to every destination' : 'dropped from this permit rule';
  for (const ref of rule.destinations) {
    if ('uuid' in ref) {
      unresolvedDestination = true;
      unenforced(
        ref.location,
        `smartGroup uuid ${ref.uuid} cannot be resolved (${destinationConsequence})`,
        'reference a smartGroup of this policy by name',
      );
      continue;
    }
    const unsupported: string[] = [];
    for (const selector of ref.selectors) {
      const resolved = resolver.resolve(selector, policy.namespace);
      if ('cidrs' in resolved) cidrs.push(...resolved.cidrs);
      else unsupported.push(resolved.unsupported);
    }
    for (const reason of unsupported) {
      unresolvedDestination = true;
      unenforced(ref.location, `smartGroup "${ref.group}" ${reason} (${destinationConsequence})`, 'use a cidr smartGroup as destination');
    }
  }
  if (cidrs.length === 0 && !unresolvedDestination) {
    warn(
      rule.locations.destinations,
      'hold no cidr selector, so this rule matches no destination',
      'add a cidr selector (e.g. 0.0.0.0/0) to a destination smartGroup',
    );
  }

  // webGroups: an unresolvable group makes a permit narrower (dropped) and a deny broader (all names).
  let domains: DomainPattern[] | null = null;
  let webGroupsUnresolvable = false;
  if (rule.webGroups !== null) {
    const resolved: DomainPattern[] = [];
    let unresolved = false;
    for (const ref of rule.webGroups) {
      if ('uuid' in ref) {
        unresolved = true;
        const consequence = deny ? 'this deny rule applies to every name' : 'dropped from this permit rule';
        unenforced(
          ref.location,
          `webGroup uuid ${ref.uuid} cannot be resolved (${consequence})`,
          'reference a webGroup of this policy by name',
        );
      } else resolved.push(...ref.domains);
    }
    if (!(deny && unresolved)) {
      domains = resolved;
      webGroupsUnresolvable = unresolved && resolved.length === 0;
    }
  }

  // What a default route means depends on the action (docs/policy-semantics.md). In a webGroup rule the learned-address
  // condition names the destination, so the translator's `any-destination` (0.0.0.0/0) means "wherever the names
  // resolve", AAAA answers included. In a deny rule 0.0.0.0/0 or ::/0 means every destination of both families: a deny
  // is never narrower than meant (`deny-all-external` must cover IPv6). In a plain permit a CIDR keeps its own family.
  const defaultRoute = cidrs.some((cidr) => cidr.prefix === 0);
  const webAnywhere = domains !== null && defaultRoute;
  return {
    rule: {
      ruleId: ruleIdFor(policy.namespace, policy.name, rule.name),
      policy: { namespace: policy.namespace, name: policy.name, generation: policy.generation },
      name: rule.name,
      action: rule.action,
      protocol: rule.protocol,
      portLow: rule.portLow,
      portHigh: rule.portHigh,
      cidrs: dedupeCidrs(cidrs),
      anyDestination: (deny && (unresolvedDestination || defaultRoute)) || webAnywhere,
      domains,
      watch: rule.watch,
      logging: rule.logging,
      tlsRequired: rule.tlsRequired,
      notEnforced,
      active: deny ? true : cidrs.length > 0 && !webGroupsUnresolvable,
    },
    matchLabels,
    diagnostics,
  };
}

/** The labels a rule's selector stands for: its matchLabels, or a service's selector as the resolver knows it. */
function selectorLabels(
  rule: ValidatedRule,
  namespace: string,
  resolver: DestinationResolver,
): { matchLabels: Record<string, string> } | { unsupported: string } {
  return 'service' in rule.selector ? resolver.resolveService(rule.selector.service, namespace) : rule.selector;
}

/** True when some rule of `policy` selects `workload`: what an incremental reconciler asks before compiling. */
export function policySelects(
  policy: ValidatedPolicy,
  workload: SelectableWorkload,
  resolver: DestinationResolver = hostModeResolver,
): boolean {
  if (policy.namespace !== workload.namespace) return false;
  return policy.rules.some((rule) => {
    const selected = selectorLabels(rule, policy.namespace, resolver);
    return 'matchLabels' in selected && labelsMatch(selected.matchLabels, workload.labels);
  });
}

/** Every rule of one policy and the resolver's findings about it, whatever workloads it selects. */
export function compilePolicy(policy: ValidatedPolicy, resolver: DestinationResolver = hostModeResolver): PolicyCompilation {
  const compiled = policy.rules.map((rule) => compileRule(policy, rule, resolver));
  return { rules: compiled.map((c) => c.rule), diagnostics: compiled.flatMap((c) => c.diagnostics) };
}

/**
 * The rules of ONE policy that select `workload`, in array order; [] when the policy is in another namespace.
 * For incremental reconcilers: when one policy changes, recompile it for the workloads of its namespace and splice
 * the result into each workload's list at the policy's (namespace, name) position — the concatenation over policies
 * in that order equals compileForWorkload.
 */
export function compilePolicyForWorkload(
  policy: ValidatedPolicy,
  workload: SelectableWorkload,
  resolver: DestinationResolver = hostModeResolver,
): CompiledRule[] {
  if (policy.namespace !== workload.namespace) return [];
  const selected: CompiledRule[] = [];
  for (const rule of policy.rules) {
    // The cheap label test first: most rules of most policies do not select a given workload.
    if ('matchLabels' in rule.selector && !labelsMatch(rule.selector.matchLabels, workload.labels)) continue;
    const { rule: compiled, matchLabels } = compileRule(policy, rule, resolver);
    if (matchLabels !== null && labelsMatch(matchLabels, workload.labels)) selected.push(compiled);
  }
  return selected;
}

/** (namespace, name) order: the order in which several policies selecting one workload are evaluated. */
export function comparePolicies(a: Pick<ValidatedPolicy, 'namespace' | 'name'>, b: Pick<ValidatedPolicy, 'namespace' | 'name'>): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return 0;
}

/** The tier-2 rules that select `workload`: policies of its namespace in (namespace, name) order, rules in array order. */
export function compileForWorkload(
  policies: readonly ValidatedPolicy[],
  workload: SelectableWorkload,
  resolver: DestinationResolver = hostModeResolver,
): CompiledRule[] {
  return policies
    .filter((policy) => policy.namespace === workload.namespace)
    .sort(comparePolicies)
    .flatMap((policy) => compilePolicyForWorkload(policy, workload, resolver));
}

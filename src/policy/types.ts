// The compiled form of FirewallPolicy objects: what the agent, the DNS proxy and the datapath consume.
// Parsing and validation produce `FirewallPolicy`; compilation per workload produces `CompiledRule[]`.

export type RuleProtocol = 'tcp' | 'udp' | 'icmp' | 'any';
export type RuleAction = 'permit' | 'deny';

/** A normalised CIDR: the network address (host bits cleared) and its prefix length. */
export interface Cidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/**
 * One allowed-domain pattern, already normalised (lower case, IDNA A-labels, no trailing dot).
 * exact: the name itself. wildcard: one or more labels before `suffix`, never the apex. any: `*`.
 */
export type DomainPattern = { kind: 'exact'; name: string } | { kind: 'wildcard'; suffix: string } | { kind: 'any' };

export interface PolicyRef {
  namespace: string;
  name: string;
  generation: number;
}

/** A tier-2 rule, compiled for one workload, in evaluation order (first match wins). */
export interface CompiledRule {
  /** Stable 32-bit id derived from (namespace, policy name, rule name): survives recompiles and agent restarts. */
  ruleId: number;
  policy: PolicyRef;
  name: string;
  action: RuleAction;
  protocol: RuleProtocol;
  /** Inclusive port range; 0..65535 when the rule names no port. */
  portLow: number;
  portHigh: number;
  /** Destination CIDRs from `cidr` smartGroups. */
  cidrs: Cidr[];
  /**
   * The CIDR condition passes for every address of both families: a deny rule whose destination cannot be evaluated
   * or includes a default route (0.0.0.0/0 or ::/0: a deny never narrower than meant), or a webGroup rule whose
   * destination includes a default route (the learned-address condition then names the destination).
   */
  anyDestination: boolean;
  /** Domain patterns from the rule's webGroups; null when the rule has no webGroups. */
  domains: DomainPattern[] | null;
  /** `watch: true`: evaluated and logged as would-permit/would-deny, verdict unchanged. */
  watch: boolean;
  /** `logging`: false suppresses permit events of this rule (never deny events). */
  logging: boolean;
  /** `flowAppRequirement: tlsRequired`. */
  tlsRequired: boolean;
  /** Human-readable reasons this rule is not (fully) enforced; empty when fully enforced. */
  notEnforced: string[];
  /** False when the rule can never match (e.g. a permit rule whose only destinations are unsupported). */
  active: boolean;
}

/** Where a validation message points. */
export interface PolicyLocation {
  file?: string;
  /** 1-based line in the file of the offending node, when known. */
  line?: number;
  /** 1-based index of the YAML document in a multi-document file. */
  document?: number;
  namespace?: string;
  name?: string;
  /** JSON-path-like field, e.g. `spec.rules[1].webGroups[0].name`. */
  field?: string;
}

export interface PolicyDiagnostic {
  severity: 'error' | 'warning';
  location: PolicyLocation;
  message: string;
  /** What the user should change. */
  fix?: string;
}

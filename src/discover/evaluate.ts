// The one userspace evaluation of a flow against a workload's compiled rules, for `policy replay` and `policy explain`.
// It reads the compiler's output (CompiledRule[], the list the reconciler hands the datapath) and follows the kernel's
// eg_evaluate (bpf/lib/evaluate.h) and the ClientHello decision (bpf/lib/sock_state.h, tls_hello.h) step for step:
// tier 0 deny list, tier 1 baseline permits (longest prefix, then its protocol and ports), tier 2 rules in order
// (webGroup and tlsRequired rules become TLS candidates), tier 3 default. test/integration/discover-explain.test.ts
// holds it against the kernel's verdicts on a table of cases; a change to the kernel's evaluation changes both.
import { cidrContains, formatCidr } from '../policy/cidr.js';
import { domainIndexFor, normalizeDomain } from '../policy/domains.js';
import type { Cidr, CompiledRule, RuleProtocol } from '../policy/types.js';
import type { Tier } from '../model/decision.js';
import { unmapIpv4 } from '../model/ip.js';

/** A tier-0 or tier-1 entry, as the agent's configuration has it (baseline.denyList / baseline.permits). */
export interface BaselineEntry {
  name: string;
  cidr: Cidr;
  protocol: RuleProtocol;
  portLow: number;
  portHigh: number;
}

/** Everything outside the workload's own rules that the kernel consults. */
export interface EvaluationContext {
  mode: 'enforce' | 'discovery';
  denyList: readonly BaselineEntry[];
  permits: readonly BaselineEntry[];
  /** enforcement.tls: the ClientHello decides webGroup rules; without it the learned address alone does. */
  tls: boolean;
}

/** The first payload of a TCP flow as the kernel reads it: a ClientHello (with or without SNI), an HTTP/1.x request
 * head (`http`: sni is its Host), or anything else. */
export type FirstFlight = { clientHello: true; sni: string | null; http?: true } | { clientHello: false };

export interface FlowQuery {
  /** The destination address; null when only a name is known (then only default routes and names can match). */
  ip: string | null;
  port: number;
  /** tcp, udp, icmp, icmpv6 or another protocol name as events write it. */
  protocol: string;
  /** What the flow sent first (TCP). */
  firstFlight: FirstFlight;
  /** Ids of the rules the destination address is learned for, for this workload (DNS answers, the agent's own lookups). */
  learnedFor: ReadonlySet<number>;
}

/** One rule's part in the evaluation, in rule order: what a reader of `explain` needs to see. */
export interface RuleStep {
  rule: CompiledRule;
  outcome: 'no-match' | 'watch' | 'candidate' | 'decides' | 'not-reached';
  why: string;
}

export interface Evaluation {
  verdict: 'permitted' | 'denied';
  tier: Tier;
  /** Where the kernel decides: at connect (or sendmsg), or at the ClientHello of a TLS-pending socket. */
  layer: 'connect' | 'tls';
  /** The deciding tier-2 rule; null for tiers 0, 1 and 3. */
  rule: CompiledRule | null;
  /** The deciding tier-0/1 entry's name, `default-action` for tier 3, the rule name for tier 2. */
  ruleName: string;
  /** would-permit / would-deny reported by watch rules met on the way. */
  watched: { rule: CompiledRule; verdict: 'would-permit' | 'would-deny' }[];
  steps: RuleStep[];
  /** One sentence: why this verdict. */
  reason: string;
}

function protocolPortMatch(want: RuleProtocol, low: number, high: number, protocol: string, port: number): boolean {
  if (want !== 'any' && want !== protocol && !(want === 'icmp' && protocol === 'icmpv6')) return false;
  return port >= low && port <= high;
}

/** The eg_base_cidrs / eg_deny_cidrs lookup: the longest prefix holding the address decides, or nothing. */
function longestPrefix(entries: readonly BaselineEntry[], ip: string): BaselineEntry | null {
  let best: BaselineEntry | null = null;
  for (const entry of entries) {
    if (cidrContains(entry.cidr, ip) && (best === null || entry.cidr.prefix > best.cidr.prefix)) best = entry;
  }
  return best;
}

/** A rule's destination condition (rule_destination_match); `bySni`: a deny webGroup rule the SNI will decide. */
function destinationMatch(rule: CompiledRule, query: FlowQuery, bySni: boolean): { ok: boolean; why: string } {
  const web = rule.domains !== null;
  if (!rule.anyDestination) {
    if (rule.cidrs.length > 0) {
      const hit = query.ip === null ? undefined : rule.cidrs.find((cidr) => cidrContains(cidr, query.ip!));
      if (hit === undefined)
        return {
          ok: false,
          why: query.ip === null ? 'the address is not given, so its CIDRs cannot match' : `${query.ip} is in none of its CIDRs`,
        };
    } else if (!web) return { ok: false, why: 'it has no destination' };
  }
  const anyName = rule.domains?.some((d) => d.kind === 'any') ?? false;
  if (web && !anyName && !(bySni && rule.action === 'deny') && !query.learnedFor.has(rule.ruleId))
    return { ok: false, why: `the address is not learned for its names (${describeDomains(rule)})` };
  return { ok: true, why: '' };
}

export function describeDomains(rule: CompiledRule): string {
  return (rule.domains ?? []).map((d) => (d.kind === 'exact' ? d.name : d.kind === 'wildcard' ? `*.${d.suffix}` : '*')).join(', ');
}

/** Does a first flight satisfy a TLS candidate (candidate_matches)? */
function candidateMatches(rule: CompiledRule, flight: FirstFlight): boolean {
  if (!flight.clientHello) return false;
  if (flight.http && (rule.domains === null || rule.tlsRequired)) return false; // a Host header stands for a name, never for TLS
  if (rule.domains === null) return true; // tlsRequired alone: any ClientHello
  if (flight.sni === null || flight.sni === '') return false;
  return domainIndexFor(rule.domains).matches(normalizeDomain(flight.sni));
}

function ruleLabel(rule: CompiledRule): string {
  return `${rule.policy.namespace}/${rule.policy.name}:${rule.name}`;
}

/** Evaluate one flow of a workload whose tier-2 rules (in evaluation order) are `rules`. */
export function evaluateFlow(rules: readonly CompiledRule[], query: FlowQuery, context: EvaluationContext): Evaluation {
  const ip = query.ip === null ? null : unmapIpv4(query.ip);
  const flow = { ...query, ip };
  const watched: Evaluation['watched'] = [];
  const steps: RuleStep[] = [];
  const final = (
    verdict: Evaluation['verdict'],
    tier: Tier,
    rule: CompiledRule | null,
    ruleName: string,
    reason: string,
    layer: Evaluation['layer'] = 'connect',
  ): Evaluation => ({ verdict, tier, layer, rule, ruleName, watched, steps, reason });

  if (ip !== null) {
    const denied = longestPrefix(context.denyList, ip);
    if (denied && protocolPortMatch(denied.protocol, denied.portLow, denied.portHigh, flow.protocol, flow.port))
      return final('denied', 0, null, denied.name, `deny-list entry ${denied.name} (${formatCidr(denied.cidr)}) holds ${ip}`);
    const permit = longestPrefix(context.permits, ip);
    if (permit && protocolPortMatch(permit.protocol, permit.portLow, permit.portHigh, flow.protocol, flow.port))
      return final('permitted', 1, null, permit.name, `baseline permit ${permit.name} (${formatCidr(permit.cidr)}) holds ${ip}`);
  }

  const tcp = flow.protocol === 'tcp';
  const candidates: CompiledRule[] = [];
  let decided: CompiledRule | null = null;
  for (const rule of rules) {
    if (decided !== null) {
      steps.push({ rule, outcome: 'not-reached', why: 'an earlier rule decided' });
      continue;
    }
    if (!rule.active) {
      steps.push({ rule, outcome: 'no-match', why: `inactive, not in the kernel (${rule.notEnforced.join('; ') || 'matches nothing'})` });
      continue;
    }
    const skip = (why: string) => steps.push({ rule, outcome: 'no-match', why });
    if (!protocolPortMatch(rule.protocol, rule.portLow, rule.portHigh, flow.protocol, flow.port)) {
      const ports = rule.portLow === 0 && rule.portHigh === 65535 ? 'any port' : `ports ${rule.portLow}-${rule.portHigh}`;
      skip(`it covers ${rule.protocol} ${ports}, not ${flow.protocol}/${flow.port}`);
      continue;
    }
    const web = rule.domains !== null;
    if (web && !tcp && !(flow.protocol === 'udp' && rule.protocol === 'udp')) {
      skip('a webGroup rule matches TCP (or UDP when it names udp) only');
      continue;
    }
    if (rule.tlsRequired && !tcp) {
      skip('tlsRequired matches TCP only');
      continue;
    }
    const tls = tcp && (web || rule.tlsRequired);
    const destination = destinationMatch(rule, flow, tls && context.tls);
    if (!destination.ok) {
      skip(destination.why);
      continue;
    }
    const permit = rule.action === 'permit';
    if (rule.watch) {
      watched.push({ rule, verdict: permit ? 'would-permit' : 'would-deny' });
      steps.push({ rule, outcome: 'watch', why: `watch: reported as ${permit ? 'would-permit' : 'would-deny'}, verdict unchanged` });
      continue;
    }
    if (tls && context.tls) {
      candidates.push(rule);
      steps.push({
        rule,
        outcome: 'candidate',
        why: `TLS candidate: the ClientHello decides (${web ? describeDomains(rule) : 'any ClientHello'})`,
      });
      continue;
    }
    decided = rule;
    steps.push({
      rule,
      outcome: 'decides',
      why: web ? `the address is learned for ${describeDomains(rule)}` : 'protocol, port and destination match',
    });
  }

  const fallback: Evaluation =
    decided !== null
      ? final(decided.action === 'permit' ? 'permitted' : 'denied', 2, decided, decided.name, `rule ${ruleLabel(decided)} matches first`)
      : final(
          context.mode === 'enforce' ? 'denied' : 'permitted',
          3,
          null,
          'default-action',
          `no rule decides: the default action of ${context.mode} mode ${context.mode === 'enforce' ? 'denies' : 'permits'}`,
        );
  if (candidates.length === 0) return fallback;
  // judge_socket: the connect is pending only when some outcome could permit; otherwise the fallback decides now.
  if (fallback.verdict === 'denied' && candidates.every((c) => c.action === 'deny')) return fallback;
  const match = candidates.find((c) => candidateMatches(c, flow.firstFlight));
  const sent = flow.firstFlight.clientHello
    ? flow.firstFlight.sni
      ? `the ClientHello names ${flow.firstFlight.sni}`
      : 'the ClientHello carries no SNI'
    : 'the first payload is not a ClientHello';
  if (match === undefined) return { ...fallback, layer: 'tls', reason: `${sent}, which no TLS candidate accepts; ${fallback.reason}` };
  return final(
    match.action === 'permit' ? 'permitted' : 'denied',
    2,
    match,
    match.name,
    `${sent}: rule ${ruleLabel(match)} decides`,
    'tls',
  );
}

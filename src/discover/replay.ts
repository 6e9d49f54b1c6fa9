// `policy replay`: what proposed policies would have decided over recorded traffic, flow for flow. Each recorded
// decision is evaluated again: DNS queries through decideName (the DNS proxy's own decision), connections through
// evaluateFlow (the kernel's evaluation in userspace) over the proposed rules compiled for the recorded workload.
// Addresses count as learned for a rule the way the agent learns them: from answers to names the proposed rules let
// the workload resolve, and from the agent's own lookups of exact names (any workload's answers stand for those).
import type { FlowEvent, Verdict } from '../events/types.js';
import { decideName } from '../policy/dns-decision.js';
import { compileForWorkload } from '../policy/compile.js';
import type { CompiledRule } from '../policy/types.js';
import type { ValidatedPolicy } from '../policy/validate.js';
import { unmapIpv4 } from '../model/ip.js';
import { evaluateFlow, type EvaluationContext, type FirstFlight } from './evaluate.js';
import { joinEvidence, learnedNameOf, sentName } from './evidence.js';

export interface ReplayContext extends EvaluationContext {
  /** baseline.dnsNames: suffixes always answered. */
  dnsNames: readonly string[];
}

export interface ReplayedFlow {
  event: FlowEvent;
  replayed: 'permitted' | 'denied';
  tier: number;
  /** `namespace/policy:rule` for tier 2, the entry name for tiers 0 and 1, `default-action` for tier 3. */
  rule: string;
  layer: 'connect' | 'tls' | 'dns';
  /** The recorded flow shows no ClientHello (decided at connect), yet the proposed rules need one: the name the
   * workload resolved is assumed to be its SNI. Evidence to check, not a certainty. */
  assumedSni: string | null;
  watched: { rule: string; verdict: 'would-permit' | 'would-deny' }[];
}

export interface WorkloadReplay {
  key: string;
  flows: ReplayedFlow[];
}

export interface ReplayResult {
  workloads: WorkloadReplay[];
  /** Records not replayed, with the reason, and how many. */
  skipped: { reason: string; count: number }[];
}

const ruleText = (rule: CompiledRule) => `${rule.policy.namespace}/${rule.policy.name}:${rule.name}`;

/** What an event shows the flow sent first; `assumed` when the recording cannot tell (a connect decision with no
 * evidence joined to it: its learned name stands in for the SNI). */
function firstFlightOf(event: FlowEvent): { flight: FirstFlight; assumed: boolean } {
  const sent = sentName(event);
  if (event.firstFlight !== undefined) {
    if (event.firstFlight === 'client-hello') return { flight: { clientHello: true, sni: sent }, assumed: false };
    if (event.firstFlight === 'http-request') return { flight: { clientHello: true, sni: sent, http: true }, assumed: false };
    return { flight: { clientHello: false }, assumed: false };
  }
  if (event.layer === 'tls' || event.layer === 'http')
    return sent !== null
      ? { flight: { clientHello: true, sni: sent, ...(event.layer === 'http' ? { http: true as const } : {}) }, assumed: false }
      : { flight: { clientHello: false }, assumed: false };
  return event.fqdn !== null
    ? { flight: { clientHello: true, sni: event.fqdn }, assumed: true }
    : { flight: { clientHello: false }, assumed: true };
}

class LearnedState {
  /** Per workload and address: the rule ids its answers were learned for. */
  private readonly byWorkload = new Map<string, Map<string, Set<number>>>();
  /** Every name any workload saw for an address: the agent resolves exact names itself, for every workload. */
  private readonly namesByIp = new Map<string, Set<string>>();

  learn(key: string, ip: string, ruleIds: readonly number[]): void {
    let map = this.byWorkload.get(key);
    if (!map) this.byWorkload.set(key, (map = new Map()));
    const set = map.get(ip) ?? new Set<number>();
    for (const id of ruleIds) set.add(id);
    map.set(ip, set);
  }

  sawName(ip: string, name: string): void {
    const set = this.namesByIp.get(ip) ?? new Set<string>();
    set.add(name);
    this.namesByIp.set(ip, set);
  }

  learnedFor(key: string, ip: string, rules: readonly CompiledRule[], context: ReplayContext): Set<number> {
    const ids = new Set(this.byWorkload.get(key)?.get(ip) ?? []);
    for (const name of this.namesByIp.get(ip) ?? []) {
      const { learnFor } = decideName(rules, name, { dnsNames: context.dnsNames, mode: context.mode });
      for (const id of learnFor) {
        const rule = rules.find((r) => r.ruleId === id);
        if (rule?.domains?.some((d) => d.kind === 'exact' && d.name === name)) ids.add(id);
      }
    }
    return ids;
  }
}

/** Replay `events` (in recorded order) against `policies`; evidence takes the place of the decisions it describes, so
 * webGroup rules are judged on the name each flow really sent. */
export function replay(events: readonly FlowEvent[], policies: readonly ValidatedPolicy[], context: ReplayContext): ReplayResult {
  const rulesByWorkload = new Map<string, CompiledRule[]>();
  const results = new Map<string, WorkloadReplay>();
  const skipped = new Map<string, number>();
  const skip = (reason: string, count: number) => skipped.set(reason, (skipped.get(reason) ?? 0) + count);
  const learned = new LearnedState();
  const baseline = { dnsNames: context.dnsNames, mode: context.mode };

  for (const event of joinEvidence(events)) {
    if (event.workload.namespace === '') {
      skip('the workload was not enrolled when it was recorded', event.count);
      continue;
    }
    if (event.verdict === 'would-deny' || event.verdict === 'would-permit') {
      skip('watch-rule reports (would-permit/would-deny) of the recorded rules', event.count);
      continue;
    }
    if (event.layer === 'packet') {
      skip('packet-layer backstop drops (forged or unapproved packets, not a policy question)', event.count);
      continue;
    }
    const key = `${event.workload.namespace}/${event.workload.name}`;
    let rules = rulesByWorkload.get(key);
    if (!rules) rulesByWorkload.set(key, (rules = compileForWorkload(policies, event.workload)));
    let result = results.get(key);
    if (!result) results.set(key, (result = { key, flows: [] }));

    if (event.layer === 'dns') {
      const query = event.dns?.query ?? event.fqdn ?? '';
      const decision = decideName(rules, query, baseline);
      if (decision.verdict === 'permitted')
        for (const ip of event.dns?.answers ?? []) {
          learned.learn(key, unmapIpv4(ip), decision.learnFor);
          learned.sawName(unmapIpv4(ip), query);
        }
      result.flows.push({
        event,
        replayed: decision.verdict === 'permitted' ? 'permitted' : 'denied',
        tier: decision.tier,
        rule: decision.policy ? `${decision.policy.namespace}/${decision.policy.name}:${decision.ruleName}` : decision.ruleName,
        layer: 'dns',
        assumedSni: null,
        watched: [],
      });
      continue;
    }

    const ip = unmapIpv4(event.destination.ip);
    // The name the agent's enricher gave the address came from a DNS answer: stand in for it when the file lacks it.
    const learnedName = learnedNameOf(event);
    if (learnedName !== null) {
      const decision = decideName(rules, learnedName, baseline);
      if (decision.verdict === 'permitted') learned.learn(key, ip, decision.learnFor);
      learned.sawName(ip, learnedName);
    }
    const { flight, assumed } = firstFlightOf(event);
    const evaluation = evaluateFlow(
      rules,
      {
        ip,
        port: event.destination.port,
        protocol: event.destination.protocol,
        firstFlight: flight,
        learnedFor: learned.learnedFor(key, ip, rules, context),
      },
      context,
    );
    result.flows.push({
      event,
      replayed: evaluation.verdict,
      tier: evaluation.tier,
      rule: evaluation.rule ? ruleText(evaluation.rule) : evaluation.ruleName,
      layer: evaluation.layer,
      assumedSni: assumed && evaluation.layer === 'tls' && flight.clientHello ? flight.sni : null,
      watched: evaluation.watched.map((w) => ({ rule: ruleText(w.rule), verdict: w.verdict })),
    });
  }
  return {
    workloads: [...results.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    skipped: [...skipped].map(([reason, count]) => ({ reason, count })),
  };
}

function destinationOf(event: FlowEvent): string {
  const { ip, port, protocol, family } = event.destination;
  if (event.layer === 'dns') return `DNS ${event.dns?.query ?? event.fqdn ?? '?'}`;
  return `${event.fqdn ? `${event.fqdn} ` : ''}${family === 6 ? `[${ip}]` : ip}:${port}/${protocol}`;
}

const EXAMPLES = 3;

/** The text report: per workload, counts per deciding rule with examples, then every change from the recording. */
export function formatReplay(result: ReplayResult): string {
  const lines: string[] = [];
  for (const workload of result.workloads) {
    const total = (filter: (f: ReplayedFlow) => boolean) => workload.flows.filter(filter).reduce((n, f) => n + f.event.count, 0);
    const changed = workload.flows.filter((f) => f.replayed !== (f.event.verdict as Verdict));
    lines.push(
      `workload ${workload.key}: ${total(() => true)} decisions replayed: ${total((f) => f.replayed === 'permitted')} permitted, ` +
        `${total((f) => f.replayed === 'denied')} denied; ${changed.reduce((n, f) => n + f.event.count, 0)} differ from the recording`,
    );
    const buckets = new Map<string, ReplayedFlow[]>();
    for (const flow of workload.flows) {
      const bucket = `${flow.replayed.padEnd(9)} tier ${flow.tier} ${flow.rule} (${flow.layer})`;
      buckets.set(bucket, [...(buckets.get(bucket) ?? []), flow]);
    }
    for (const [bucket, flows] of buckets) {
      const examples = [...new Set(flows.map((f) => destinationOf(f.event)))].slice(0, EXAMPLES).join('; ');
      lines.push(`  ${bucket}: ${flows.reduce((n, f) => n + f.event.count, 0)}  e.g. ${examples}`);
    }
    for (const flow of changed)
      lines.push(
        `  CHANGED ${flow.event.time} ${destinationOf(flow.event)}: recorded ${flow.event.verdict} (tier ${flow.event.tier} ${flow.event.rule}), ` +
          `replayed ${flow.replayed} (tier ${flow.tier} ${flow.rule})${flow.event.count > 1 ? ` x${flow.event.count}` : ''}`,
      );
    const assumed = workload.flows.filter((f) => f.assumedSni !== null);
    if (assumed.length > 0)
      lines.push(
        `  note: ${assumed.length} flow(s) were decided at connect when recorded, so their ClientHello is unknown; ` +
          `their resolved name was taken as the SNI (e.g. ${assumed[0]!.assumedSni})`,
      );
    const watched = workload.flows.flatMap((f) => f.watched.map((w) => `${w.verdict} ${w.rule}`));
    for (const [text, count] of countOf(watched)) lines.push(`  watch: ${text}: ${count}`);
  }
  for (const s of result.skipped) lines.push(`not replayed: ${s.count} ${s.reason}`);
  return lines.join('\n');
}

function countOf(items: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}

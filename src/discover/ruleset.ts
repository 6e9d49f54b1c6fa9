// The rules in force, as one JSON-safe snapshot: per workload the compiled rules (exactly the list the reconciler gave
// the datapath) and its learned addresses, plus the baseline and the mode. A running agent answers the control
// command `ruleset` with it; `policy explain` builds the same snapshot from a configuration and policy files.
import { isIP } from 'node:net';
import { compileForWorkload } from '../policy/compile.js';
import { decideName } from '../policy/dns-decision.js';
import type { CompiledRule } from '../policy/types.js';
import type { ValidatedPolicy } from '../policy/validate.js';
import { unmapIpv4 } from '../model/ip.js';
import { evaluateFlow, type BaselineEntry, type Evaluation, type FirstFlight } from './evaluate.js';

export interface RulesetWorkload {
  key: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  rules: CompiledRule[];
  /** The kernel's learned addresses of this workload (live agent only). */
  learned: { ip: string; ruleId: number }[];
}

export interface RulesetSnapshot {
  /** Where it came from: `agent <socket>` or the configuration file. */
  source: string;
  mode: 'enforce' | 'discovery';
  tls: boolean;
  denyList: BaselineEntry[];
  permits: BaselineEntry[];
  dnsNames: string[];
  workloads: RulesetWorkload[];
}

/** The parts of an agent configuration a snapshot needs (AgentConfig satisfies it). */
export interface RulesetConfig {
  file: string;
  baseline: { mode: 'enforce' | 'discovery'; denyList: BaselineEntry[]; permits: BaselineEntry[]; dnsNames: string[] };
  enforcement: { tls: boolean };
  workloads: { namespace: string; name: string; labels: Record<string, string> }[];
}

/** A snapshot from files: the configuration's workloads and baseline, `policies` compiled as the agent would. */
export function snapshotFromFiles(config: RulesetConfig, policies: readonly ValidatedPolicy[]): RulesetSnapshot {
  return {
    source: config.file,
    mode: config.baseline.mode,
    tls: config.enforcement.tls,
    denyList: config.baseline.denyList,
    permits: config.baseline.permits,
    dnsNames: config.baseline.dnsNames,
    workloads: config.workloads.map((w) => ({
      key: `${w.namespace}/${w.name}`,
      namespace: w.namespace,
      name: w.name,
      labels: w.labels,
      rules: compileForWorkload(policies, w),
      learned: [],
    })),
  };
}

export interface ExplainRequest {
  /** `namespace/name`, or a name unique among the workloads. */
  workload: string;
  /** A name or an address. */
  destination: string;
  /** The address, when `destination` is a name. */
  address?: string;
  port: number;
  protocol: string;
  /** The ClientHello's SNI; undefined: the destination name (an honest client); null: a ClientHello without SNI. */
  sni?: string | null;
  /** The flow sends no ClientHello (plain TCP). */
  noClientHello?: boolean;
}

export interface Explanation {
  workload: RulesetWorkload;
  mode: RulesetSnapshot['mode'];
  tls: boolean;
  name: string | null;
  ip: string | null;
  port: number;
  protocol: string;
  firstFlight: FirstFlight;
  /** Resolving the name: what the DNS proxy answers this workload. */
  dns: { verdict: string; tier: number; rule: string; learnedFor: string[] } | null;
  learnedFor: string[];
  evaluation: Evaluation;
}

export function findWorkload(snapshot: RulesetSnapshot, wanted: string): RulesetWorkload {
  const matches = snapshot.workloads.filter((w) => w.key === wanted || (!wanted.includes('/') && w.name === wanted));
  if (matches.length === 1) return matches[0]!;
  const known = snapshot.workloads.map((w) => w.key).join(', ') || '(none)';
  if (matches.length === 0) throw new Error(`workload "${wanted}" is not in ${snapshot.source}; known: ${known}`);
  throw new Error(
    `workload "${wanted}" is ambiguous in ${snapshot.source}: write namespace/name (${matches.map((w) => w.key).join(', ')})`,
  );
}

const label = (rule: CompiledRule) => `${rule.policy.namespace}/${rule.policy.name}:${rule.name}`;

export function explainFlow(snapshot: RulesetSnapshot, request: ExplainRequest): Explanation {
  const workload = findWorkload(snapshot, request.workload);
  const destinationIsIp = isIP(request.destination) !== 0;
  if (request.address !== undefined && isIP(request.address) === 0) throw new Error(`--address "${request.address}" is not an IP address`);
  if (destinationIsIp && request.address !== undefined) throw new Error('give --address only when the destination is a name');
  const name = destinationIsIp ? null : request.destination.toLowerCase().replace(/\.$/, '');
  const ip = destinationIsIp ? unmapIpv4(request.destination) : request.address !== undefined ? unmapIpv4(request.address) : null;
  const rules = workload.rules;
  const byId = new Map(rules.map((r) => [r.ruleId, r]));
  const learned = new Set<number>();
  let dns: Explanation['dns'] = null;
  if (name !== null) {
    const decision = decideName(rules, name, { dnsNames: snapshot.dnsNames, mode: snapshot.mode });
    // Answers are learned when the name is answered; the agent's own lookups of exact names learn them regardless.
    for (const id of decision.learnFor) {
      const exact = byId.get(id)?.domains?.some((d) => d.kind === 'exact' && d.name === name) ?? false;
      if (decision.verdict === 'permitted' || exact) learned.add(id);
    }
    dns = {
      verdict: decision.verdict,
      tier: decision.tier,
      rule: decision.policy ? `${decision.policy.namespace}/${decision.policy.name}:${decision.ruleName}` : decision.ruleName,
      learnedFor: [...learned].map((id) => (byId.get(id) ? label(byId.get(id)!) : `rule#${id}`)),
    };
  }
  if (ip !== null) for (const entry of workload.learned) if (unmapIpv4(entry.ip) === ip) learned.add(entry.ruleId);
  const sni = request.sni === undefined ? name : request.sni;
  const firstFlight: FirstFlight = request.noClientHello ? { clientHello: false } : { clientHello: true, sni };
  const evaluation = evaluateFlow(
    rules,
    { ip, port: request.port, protocol: request.protocol, firstFlight, learnedFor: learned },
    { mode: snapshot.mode, tls: snapshot.tls, denyList: snapshot.denyList, permits: snapshot.permits },
  );
  return {
    workload,
    mode: snapshot.mode,
    tls: snapshot.tls,
    name,
    ip,
    port: request.port,
    protocol: request.protocol,
    firstFlight,
    dns,
    learnedFor: [...learned].map((id) => (byId.get(id) ? label(byId.get(id)!) : `rule#${id}`)),
    evaluation,
  };
}

export function formatExplanation(e: Explanation): string {
  const flight =
    e.protocol !== 'tcp' ? '' : e.firstFlight.clientHello ? `, ClientHello SNI ${e.firstFlight.sni ?? '(none)'}` : ', no ClientHello';
  const where = e.ip ?? '(address not given: only default routes and names can match; give --address to check CIDRs and the baseline)';
  const lines = [
    `workload ${e.workload.key}  mode ${e.mode}  TLS checks ${e.tls ? 'on' : 'off'}`,
    `destination ${e.name ? `${e.name} ` : ''}${where} ${e.protocol}/${e.port}${flight}`,
  ];
  if (e.dns)
    lines.push(
      `DNS: ${e.name} is ${e.dns.verdict} (tier ${e.dns.tier} ${e.dns.rule}); its addresses are learned for: ${e.dns.learnedFor.join(', ') || '(no rule)'}`,
    );
  if (e.ip !== null && e.learnedFor.length > 0) lines.push(`address learned for: ${e.learnedFor.join(', ')}`);
  lines.push('rules, in evaluation order:');
  if (e.evaluation.steps.length === 0) lines.push(`  (none: no rule ${e.evaluation.tier < 2 ? 'was consulted' : 'selects this workload'})`);
  e.evaluation.steps.forEach((step, i) =>
    lines.push(`  ${i + 1}. ${label(step.rule)} (${step.rule.action}): ${step.outcome} - ${step.why}`),
  );
  const v = e.evaluation;
  lines.push(`verdict: ${v.verdict.toUpperCase()} at ${v.layer}, tier ${v.tier}, ${v.rule ? label(v.rule) : v.ruleName}`);
  for (const w of v.watched) lines.push(`  also reported: ${w.verdict} by watch rule ${label(w.rule)}`);
  lines.push(`why: ${v.reason}`);
  return lines.join('\n');
}

/** What the agent holds for one enrolled workload. */
export interface EnrolledRules {
  workload: { namespace: string; name: string; labels: Record<string, string>; workloadId: number };
  rules: CompiledRule[];
}

/** A running agent's snapshot: its enrolled workloads' rules as given to the datapath, and the kernel's learned table. */
export function liveSnapshot(
  source: string,
  config: Omit<RulesetConfig, 'file' | 'workloads'>,
  enrolled: readonly EnrolledRules[],
  learned: (workloadId: number) => { ip: string; ruleId: number }[],
): RulesetSnapshot {
  return {
    source,
    mode: config.baseline.mode,
    tls: config.enforcement.tls,
    denyList: config.baseline.denyList,
    permits: config.baseline.permits,
    dnsNames: config.baseline.dnsNames,
    workloads: enrolled.map(({ workload: w, rules }) => ({
      key: `${w.namespace}/${w.name}`,
      namespace: w.namespace,
      name: w.name,
      labels: w.labels,
      rules,
      learned: learned(w.workloadId).map((l) => ({ ip: l.ip, ruleId: l.ruleId })),
    })),
  };
}

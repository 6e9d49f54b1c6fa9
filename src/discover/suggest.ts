// `egressguard suggest`: one FirewallPolicy per MCP server (per `app` label, replicas merged) from what it did, in the
// shape Obot's Aviatrix translator writes (policy-contract.md §1): the allowlist form when some names qualify, the
// deny-all form otherwise. The allowlist form permits names on TCP 443 only, so everything else the workload did is
// listed as left out, with the reason, for a human to decide; so are names seen only once (unless asked) and names the
// translator's grammar rejects. Names are grouped under `*.suffix` only when enough distinct names, each seen more
// than once, share that suffix, and the policy says so in a comment.
import type { FlowEvent } from '../events/types.js';
import { isFronted, joinEvidence, learnedNameOf, sentName } from './evidence.js';
import { parseDomainPattern } from '../policy/domains.js';
import { parseManifests } from '../policy/parse.js';
import { POLICY_API_VERSION, FIREWALL_POLICY_KIND } from '../policy/manifest.js';

export interface SuggestOptions {
  /** Keep names seen in a single flow. */
  includeRare: boolean;
  /** Distinct names (each seen more than once) under one suffix before they are grouped as `*.suffix`; 0: never. */
  wildcardMin: number;
  /** DNS suffixes answered by the baseline (cluster-internal): never part of a policy. */
  dnsNames: readonly string[];
}

export const DEFAULT_SUGGEST_OPTIONS: SuggestOptions = { includeRare: false, wildcardMin: 3, dnsNames: ['cluster.local'] };

export interface LeftOut {
  what: string;
  flows: number;
  reason: string;
}

export interface Suggestion {
  namespace: string;
  /** The translator's object name: obot-<app>-fw. */
  name: string;
  /** The server id (the `app` label) or, without one, the workload name. */
  id: string;
  workloads: string[];
  form: 'allowlist' | 'deny-all';
  /** Patterns in the webGroup, sorted (the translator sorts them). */
  domains: string[];
  /** Why each wildcard was written. */
  wildcards: { pattern: string; names: string[]; flows: number }[];
  leftOut: LeftOut[];
  flows: number;
  first: string;
  last: string;
  /** The manifest, with comments. */
  yaml: string;
}

/** The only destination the translator's allowlist form can express. */
const ALLOWLIST_PORT = 443;

interface Group {
  namespace: string;
  id: string;
  selector: Record<string, string>;
  workloads: Set<string>;
  events: FlowEvent[];
}

function groupOf(event: FlowEvent): { namespace: string; id: string; selector: Record<string, string> } | null {
  const { namespace, name, labels } = event.workload;
  if (namespace === '') return null;
  const app = labels.app;
  if (app !== undefined) return { namespace, id: app, selector: { app } };
  if (Object.keys(labels).length === 0) return null;
  return { namespace, id: name, selector: labels };
}

function destinationText(event: FlowEvent): string {
  const { ip, port, protocol, family } = event.destination;
  return `${event.fqdn ? `${event.fqdn} ` : ''}${family === 6 ? `[${ip}]` : ip}:${port}/${protocol}`;
}

/** The name a flow went to, as the datapath saw it: the name it sent when the kernel read one, else the learned name. */
function nameOf(event: FlowEvent): string | null {
  return sentName(event) ?? learnedNameOf(event) ?? (event.fqdn === null ? null : event.fqdn.toLowerCase().replace(/\.$/, ''));
}

/** The reason the translator's grammar (or the baseline) keeps a name out of a webGroup, or null. */
function grammarProblem(name: string, dnsNames: readonly string[]): string | null {
  if (dnsNames.some((suffix) => name === suffix || name.endsWith(`.${suffix}`)))
    return 'a cluster-internal name (baseline dnsNames): tier 1 decides it, not a policy';
  if (name === 'localhost' || name.endsWith('.localhost')) return 'localhost is not an egress destination';
  if (name.endsWith('.in-addr.arpa') || name.endsWith('.ip6.arpa')) return 'a reverse-lookup name';
  if (!name.includes('.')) return 'a single-label name: Obot accepts only names with a dot';
  const parsed = parseDomainPattern(name);
  return parsed.ok ? null : parsed.problem.reason;
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function renderYaml(s: Omit<Suggestion, 'yaml'>, selector: Record<string, string>): string {
  const labels = Object.entries(selector)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${quote(k)}: ${quote(v)}`);
  const pods = `obot-${s.id}-pods`;
  const webGroup = `obot-${s.id}-approved-domains`;
  const lines = [
    `# Suggested by egressguard from ${s.flows} recorded flow(s) of ${s.workloads.join(', ')}, ${s.first} .. ${s.last}.`,
    `# Form: ${s.form === 'allowlist' ? 'allowlist (names on TCP 443, everything else denied)' : 'deny all (no name qualified)'}. Review, then replay it (egressguard policy replay).`,
  ];
  for (const w of s.wildcards)
    lines.push(
      `# ${w.pattern}: ${w.names.length} distinct names under it, each seen more than once (${w.names.join(', ')}; ${w.flows} flows)`,
    );
  for (const l of s.leftOut) lines.push(`# left out: ${l.what} (${l.flows} flow(s)): ${l.reason}`);
  lines.push(
    `apiVersion: ${POLICY_API_VERSION}`,
    `kind: ${FIREWALL_POLICY_KIND}`,
    'metadata:',
    `  name: ${quote(s.name)}`,
    `  namespace: ${quote(s.namespace)}`,
    'spec:',
    '  smartGroups:',
    `    - name: ${quote(pods)}`,
    '      selectors:',
    '        - type: k8s',
    `          k8sNamespace: ${quote(s.namespace)}`,
    '          tags:',
    ...labels.map((l) => `            ${l}`),
    '    - name: any-destination',
    '      selectors:',
    '        - cidr: 0.0.0.0/0',
  );
  if (s.form === 'allowlist') {
    lines.push('  webGroups:', `    - name: ${quote(webGroup)}`, '      domains:', ...s.domains.map((d) => `        - ${quote(d)}`));
  }
  lines.push('  rules:');
  const rule = (name: string, action: string, extra: string[]) => [
    `    - name: ${name}`,
    `      action: ${action}`,
    '      selector:',
    '        matchLabels:',
    ...labels.map((l) => `          ${l}`),
    '      destinationSmartGroups:',
    '        - name: any-destination',
    ...extra,
    '      logging: true',
  ];
  if (s.form === 'allowlist')
    lines.push(
      ...rule('allow-approved-egress', 'permit', [
        '      webGroups:',
        `        - name: ${quote(webGroup)}`,
        '      protocol: tcp',
        `      port: ${ALLOWLIST_PORT}`,
      ]),
    );
  lines.push(...rule('deny-all-external', 'deny', ['      protocol: any']));
  return `${lines.join('\n')}\n`;
}

/** Group names under `*.suffix` where the evidence supports it; returns the patterns and what each replaced. */
function groupWildcards(
  counts: Map<string, number>,
  min: number,
): { patterns: Set<string>; wildcards: Suggestion['wildcards']; grouped: Set<string> } {
  const patterns = new Set<string>();
  const wildcards: Suggestion['wildcards'] = [];
  const grouped = new Set<string>();
  if (min > 0) {
    const byParent = new Map<string, string[]>();
    for (const name of counts.keys()) {
      const parent = name.slice(name.indexOf('.') + 1);
      // The translator's grammar: `*.` followed by at least two labels.
      if (!parent.includes('.')) continue;
      byParent.set(parent, [...(byParent.get(parent) ?? []), name]);
    }
    for (const [parent, names] of [...byParent].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (names.length < min) continue;
      const pattern = `*.${parent}`;
      patterns.add(pattern);
      names.sort().forEach((n) => grouped.add(n));
      wildcards.push({ pattern, names, flows: names.reduce((n, name) => n + counts.get(name)!, 0) });
    }
  }
  return { patterns, wildcards, grouped };
}

export function suggestPolicies(events: readonly FlowEvent[], options: SuggestOptions = DEFAULT_SUGGEST_OPTIONS): Suggestion[] {
  const groups = new Map<string, Group>();
  for (const event of joinEvidence(events)) {
    if (event.layer !== 'connect' && event.layer !== 'tls' && event.layer !== 'http') continue;
    if (event.verdict === 'would-deny' || event.verdict === 'would-permit') continue;
    const group = groupOf(event);
    if (group === null) continue; // unenrolled, or no label to select it by
    const key = `${group.namespace}/${group.id}`;
    let entry = groups.get(key);
    if (!entry) groups.set(key, (entry = { ...group, workloads: new Set(), events: [] }));
    entry.workloads.add(`${event.workload.namespace}/${event.workload.name}`);
    entry.events.push(event);
  }
  return [...groups.values()]
    .sort((a, b) => (`${a.namespace}/${a.id}` < `${b.namespace}/${b.id}` ? -1 : 1))
    .map((group) => suggestFor(group, options));
}

function suggestFor(group: Group, options: SuggestOptions): Suggestion {
  const leftOut = new Map<string, LeftOut>();
  const leave = (what: string, flows: number, reason: string) => {
    const have = leftOut.get(what);
    if (have) have.flows += flows;
    else leftOut.set(what, { what, flows, reason });
  };
  const nameCounts = new Map<string, number>();
  const sniOnly = new Map<string, number>();
  for (const event of group.events) {
    const name = nameOf(event);
    const { port, protocol } = event.destination;
    if (name === null) {
      leave(destinationText(event), event.count, 'no name was seen for this address: the allowlist form names destinations by name');
      continue;
    }
    if (protocol !== 'tcp' || port !== ALLOWLIST_PORT) {
      leave(
        `${name} ${protocol}/${port}`,
        event.count,
        `the translator's allowlist form permits TCP ${ALLOWLIST_PORT} only; add a rule by hand if this is needed`,
      );
      continue;
    }
    if (event.firstFlight === 'none' || event.firstFlight === 'other') {
      leave(
        `${name} at ${destinationText(event)}`,
        event.count,
        event.firstFlight === 'none'
          ? 'the connection closed before it sent a ClientHello: nothing shows the name it was for'
          : 'its first bytes were neither a ClientHello nor an HTTP request: a webGroup rule, which reads the SNI, would deny it',
      );
      continue;
    }
    if (isFronted(event)) {
      const learned = learnedNameOf(event)!;
      leave(
        `${name} at ${destinationText({ ...event, fqdn: learned })}`,
        event.count,
        `the flow's SNI differs from the name its address was learned for (${learned}): possible domain fronting`,
      );
      continue;
    }
    const problem = grammarProblem(name, options.dnsNames);
    if (problem !== null) {
      leave(name, event.count, problem);
      continue;
    }
    if (learnedNameOf(event) === null) {
      sniOnly.set(name, (sniOnly.get(name) ?? 0) + event.count);
      continue;
    }
    nameCounts.set(name, (nameCounts.get(name) ?? 0) + event.count);
  }
  // A name only ever sent as an SNI, to addresses no lookup of it returned (hard-coded ones, say), counts only when
  // honest flows show the name learned from DNS too: a webGroup permits the addresses learned for its names.
  for (const [name, count] of sniOnly) {
    if (nameCounts.has(name)) nameCounts.set(name, nameCounts.get(name)! + count);
    else leave(name, count, 'only ever seen as an SNI, never learned from DNS for its address (sniOnly): a webGroup would not permit it');
  }
  for (const [name, count] of nameCounts) {
    if (count === 1 && !options.includeRare) {
      leave(name, 1, 'seen in a single flow (use --include-rare to keep it)');
      nameCounts.delete(name);
    }
  }
  const { patterns, wildcards, grouped } = groupWildcards(nameCounts, options.wildcardMin);
  const domains = [...patterns, ...[...nameCounts.keys()].filter((n) => !grouped.has(n))].sort();
  const times = group.events.map((e) => e.time).sort();
  const base: Omit<Suggestion, 'yaml'> = {
    namespace: group.namespace,
    name: `obot-${group.id}-fw`,
    id: group.id,
    workloads: [...group.workloads].sort(),
    form: domains.length > 0 ? 'allowlist' : 'deny-all',
    domains,
    wildcards,
    leftOut: [...leftOut.values()],
    flows: group.events.reduce((n, e) => n + e.count, 0),
    first: times[0] ?? '',
    last: times[times.length - 1] ?? '',
  };
  const yaml = renderYaml(base, group.selector);
  const check = parseManifests(yaml, `${base.name}.yaml`);
  if (!check.ok)
    throw new Error(
      `the suggestion for ${base.namespace}/${base.name} would not validate (workload labels ${JSON.stringify(group.selector)}): ${check.diagnostics.map((d) => d.message).join('; ')}`,
    );
  return { ...base, yaml };
}

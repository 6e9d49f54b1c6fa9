// What `egressguard status` shows: the agent's state as one JSON object (the control socket's answer) and as text.
import type { AgentConfig } from './config.js';
import type { Reconciler, WorkloadFailure } from './reconciler.js';
import { degradedFeatures, type OptionalFeatures } from '../datapath/features.js';
import type { Datapath } from '../datapath/types.js';
import type { DnsProxyStats } from '../dns/types.js';
import type { EventPipelineStats } from '../events/pipeline.js';
import type { PodSourceStatus } from '../k8s/pod-source.js';
import type { PolicyPlaneStatus } from '../k8s/policy-plane.js';
import { workloadKey } from '../identity/registry.js';
import { capacityUse, type CapacityName, type CapacityUse } from '../model/capacity.js';
import type { DomainPattern } from '../policy/types.js';
import type { WorkloadRollout } from '../discover/rollout.js';

export interface PolicyStatus {
  namespace: string;
  name: string;
  file: string;
  generation: number;
  /** Non-empty once the policy's rules are in the kernel (mirrors the FirewallPolicy status field the lab waits on). */
  ruleset: string;
  lastReconciledGeneration: number;
  workloads: string[];
  notEnforced: string[];
}

export interface WorkloadStatus {
  key: string;
  labels: Record<string, string>;
  addresses: string[];
  cgroup: string;
  workloadId: number;
  /** Names the workload may reach through permit rules (exact, `*.suffix` or `*`), in rule order. */
  allowedNames: string[];
  rules: {
    policy: string;
    name: string;
    action: string;
    protocol: string;
    ports: string;
    destinations: string[];
    domains: string[] | null;
    watch: boolean;
    notEnforced: string[];
  }[];
  learned: { ip: string; rule: string; expiresInSeconds: number }[];
  /** Since the agent started: what the default action permitted (denied once it flips) and what watch rules reported. */
  rollout: WorkloadRollout;
}

/** Kubernetes mode: where the agent reads the cluster, and how the node's pods map to workloads. */
export interface KubernetesStatus {
  server: string;
  credentials: string;
  pods: PodSourceStatus;
  /** The EgressBaseline, the policy objects, this node's report and the status writer. */
  policies?: PolicyPlaneStatus;
}

export interface AgentStatus {
  node: string;
  /** SHA-256 of the configuration file text in force (compare with `sha256sum` of the file). */
  configDigest: string;
  mode: AgentConfig['baseline']['mode'];
  enforcement: AgentConfig['enforcement'];
  adopted: boolean;
  /** Each optional kernel feature: available or not. */
  features: OptionalFeatures;
  /** What is weaker on this kernel, in words (empty when nothing is). */
  degraded: string[];
  policies: PolicyStatus[];
  rejected: { file: string; messages: string[] }[];
  workloads: WorkloadStatus[];
  /** Workloads whose own rules are not in force: enrolled deny-all, or not enrolled at all. */
  failures: WorkloadFailure[];
  /** Each kernel capacity (docs/capacity.md): in use against its limit. */
  capacity: Record<CapacityName, CapacityUse>;
  stats: Record<string, number | string>;
  /** Kubernetes mode's sources; null in host mode. */
  kubernetes: KubernetesStatus | null;
}

/** Everything the status is made of, gathered by the composition root. */
export interface StatusInputs {
  config: Pick<AgentConfig, 'node' | 'baseline' | 'enforcement'>;
  configDigest: string;
  /** os.release(): named in what `degraded` says. */
  kernelRelease: string;
  datapath: Pick<Datapath, 'adopted' | 'kernelFeatures' | 'learned' | 'stats' | 'approvedFlows' | 'mapEntries'>;
  reconciler: Pick<Reconciler, 'policyStatus' | 'enrolled' | 'ruleLabel' | 'failures'>;
  rejected: { file: string; messages: string[] }[];
  pipeline: EventPipelineStats;
  /** Delivery counters per sink (sinkStats). */
  sinks: Record<string, number>;
  /** The DNS proxy's counters; null when it does not run. */
  dns: DnsProxyStats | null;
  /** Per-workload rollout counters (src/discover/rollout.ts); none counted when absent. */
  rollout?: (key: string) => WorkloadRollout;
  kubernetes?: KubernetesStatus | null;
}

function patternText(pattern: DomainPattern): string {
  return pattern.kind === 'exact' ? pattern.name : pattern.kind === 'wildcard' ? `*.${pattern.suffix}` : '*';
}

export function agentStatus(inputs: StatusInputs): AgentStatus {
  const { datapath, reconciler } = inputs;
  const nowNs = process.hrtime.bigint();
  const ruleName = (ruleId: number) => {
    const label = reconciler.ruleLabel(ruleId);
    return label ? (label.policy ? `${label.policy.namespace}/${label.policy.name}:${label.name}` : label.name) : `rule#${ruleId}`;
  };
  const workloads = reconciler.enrolled().map(({ workload: w, rules }): WorkloadStatus => ({
    key: workloadKey(w),
    labels: w.labels,
    addresses: w.addresses,
    cgroup: w.cgroupPath,
    workloadId: w.workloadId,
    allowedNames: [
      ...new Set(rules.filter((r) => r.active && r.action === 'permit' && !r.watch).flatMap((r) => (r.domains ?? []).map(patternText))),
    ],
    rules: rules.map((r) => ({
      policy: `${r.policy.namespace}/${r.policy.name}`,
      name: r.name,
      action: r.action,
      protocol: r.protocol,
      ports: r.portLow === 0 && r.portHigh === 65535 ? 'any' : r.portLow === r.portHigh ? String(r.portLow) : `${r.portLow}-${r.portHigh}`,
      destinations: r.anyDestination ? ['any'] : r.cidrs.map((c) => `${c.address}/${c.prefix}`),
      domains: r.domains?.map(patternText) ?? null,
      watch: r.watch,
      notEnforced: r.active ? r.notEnforced : ['inactive: ' + r.notEnforced.join('; ')],
    })),
    learned: datapath.learned(w.workloadId).map((l) => ({
      ip: l.ip,
      rule: ruleName(l.ruleId),
      expiresInSeconds: Math.max(0, Math.round(Number(l.expiresAtNs - nowNs) / 1e9)),
    })),
    rollout: inputs.rollout?.(workloadKey(w)) ?? {
      flowsDeniedIfDefaultFlipped: 0,
      queriesDeniedIfDefaultFlipped: 0,
      frontedFlows: 0,
      watch: [],
    },
  }));
  const kernel = datapath.stats();
  const flows = [...datapath.approvedFlows().values()];
  const enrolled = reconciler.enrolled();
  const activeRules = enrolled.map(({ rules }) => rules.filter((r) => r.active));
  // What the kernel maps hold, whoever wrote them: a workload's previous rule slot, entries an adopted map kept.
  const entries = datapath.mapEntries();
  const capacity: Record<CapacityName, CapacityUse> = {
    rulesPerWorkload: capacityUse('rulesPerWorkload', Math.max(0, ...activeRules.map((rules) => rules.length))),
    workloads: capacityUse('workloads', entries.eg_workloads),
    ruleDestinations: capacityUse('ruleDestinations', entries.eg_rule_cidrs),
    domainPatterns: capacityUse('domainPatterns', entries.eg_domains),
    domainNameChars: capacityUse(
      'domainNameChars',
      Math.max(0, ...activeRules.flat().flatMap((r) => (r.domains ?? []).map((d) => patternText(d).length))),
    ),
    learnedAddresses: capacityUse('learnedAddresses', entries.eg_learned),
    sniCandidatesPerConnection: capacityUse(
      'sniCandidatesPerConnection',
      Math.max(0, ...activeRules.map((rules) => rules.filter((r) => r.domains !== null || r.tlsRequired).length)),
    ),
    approvedFlows: capacityUse(
      'approvedFlows',
      flows.reduce((n, f) => n + f.held, 0),
    ),
    approvedFlowsPerWorkload: capacityUse('approvedFlowsPerWorkload', Math.max(0, ...flows.map((f) => f.held))),
    firstFlights: capacityUse(
      'firstFlights',
      flows.reduce((n, f) => n + f.flights, 0),
    ),
    firstFlightsPerWorkload: capacityUse('firstFlightsPerWorkload', Math.max(0, ...flows.map((f) => f.flights))),
    workloadAddresses: capacityUse('workloadAddresses', entries.eg_workload_addrs),
    interfaces: capacityUse('interfaces', entries.eg_interfaces),
  };
  return {
    node: inputs.config.node,
    configDigest: inputs.configDigest,
    mode: inputs.config.baseline.mode,
    enforcement: inputs.config.enforcement,
    adopted: datapath.adopted,
    features: { ...datapath.kernelFeatures },
    degraded: degradedFeatures(datapath.kernelFeatures, inputs.config.enforcement, inputs.kernelRelease),
    policies: reconciler.policyStatus(),
    rejected: inputs.rejected,
    workloads,
    failures: reconciler.failures(),
    capacity,
    stats: {
      ...inputs.pipeline,
      ...inputs.sinks,
      kernelEventsLost: kernel.eventsLost.toString(),
      kernelEventsSuppressed: kernel.eventsSuppressed.toString(),
      eventsDroppedByReader: kernel.eventsDroppedByReader.toString(),
      decisionsPermitted: kernel.decisionsPermitted.toString(),
      decisionsDenied: kernel.decisionsDenied.toString(),
      dnsSteered: kernel.dnsSteered.toString(),
      approvedFlowsRefused: kernel.flowsRefused.toString(),
      candidateOverflows: kernel.candidateOverflows.toString(),
      kernelEvidenceRead: kernel.evidenceRead.toString(),
      firstFlightsRefused: kernel.firstFlightsRefused.toString(),
      flowsEnded: kernel.flowsEnded.toString(),
      flowsNotEnded: kernel.flowsNotEnded.toString(),
      ...(inputs.dns ? Object.fromEntries(Object.entries(inputs.dns).map(([k, v]) => [`dns.${k}`, v])) : {}),
    },
    kubernetes: inputs.kubernetes ?? null,
  };
}

function formatKubernetes(k: KubernetesStatus): string[] {
  const { api, pods } = k.pods;
  const lines = [
    `kubernetes ${k.server} (${k.credentials})  node ${k.pods.node}  namespaces ${k.pods.namespaces.join(', ') || '(none: nothing enforced)'}`,
    `  pods: ${api.state} since ${api.since}${api.synced ? `, listed ${api.lastListAt}` : ', NOT LISTED YET (the kernel keeps its last state)'}` +
      (k.pods.lastKnown ? `; reporting ${k.pods.lastKnown.pods} last known pods (kept ${k.pods.lastKnown.writtenAt})` : '') +
      (api.lastError ? `; last error: ${api.lastError}` : ''),
    `  pod cgroups: ${k.pods.cgroupRoot ? `${k.pods.cgroupRoot} (${k.pods.cgroupDriver})` : 'NO ROOT FOUND (kubepods.slice or kubepods)'}` +
      `  reported ${pods.reported}, waiting for cgroup ${pods.waitingForCgroup.length}`,
  ];
  for (const key of pods.cgroupMissing) lines.push(`  pod ${key}: CGROUP MISSING, not enforced`);
  for (const key of pods.enrolledLate) lines.push(`  pod ${key}: a container started before its enrolment`);
  if (k.policies) lines.push(...formatPolicyPlane(k.policies));
  return lines;
}

function formatPolicyPlane(p: PolicyPlaneStatus): string[] {
  const { baseline, policies, report, statusWriter: writer } = p;
  const lines = [
    `  EgressBaseline ${baseline.name}: ${baseline.inForce === 'object' ? 'in force' : `NOT IN FORCE (${baseline.inForce} baseline applies)`}` +
      `  enforced namespaces ${p.namespaces.join(', ') || '(none)'}`,
    ...[...baseline.problems, ...baseline.warnings].map((m) => `    ${m}`),
    `  policies: ${
      policies.synced
        ? 'listed'
        : policies.kept
          ? `NOT LISTED YET (the ${policies.kept.policies} policies kept at ${policies.kept.writtenAt} are enforced)`
          : 'NOT LISTED YET (the kernel keeps its last state)'
    }, ${policies.rejected} rejected` +
      `  node report ${report.current ? 'current' : `NOT WRITTEN${report.lastError ? ` (${report.lastError})` : ''}`}` +
      `  status writer ${writer.leader ? `elected (${writer.written} written, ${writer.conflicts} conflicts, ${writer.events} events)` : 'standby'}`,
    ...policies.problems.map((m) => `    ${m}`),
  ];
  return lines;
}

/** The text form `egressguard status` prints. */
export function formatStatus(status: AgentStatus): string {
  const lines = [
    `node ${status.node}  mode ${status.mode}${status.adopted ? '  (adopted pinned datapath)' : ''}`,
    `config sha256 ${status.configDigest}`,
    'kernel features: ' +
      Object.entries(status.features)
        .map(([name, available]) => `${name} ${available ? 'available' : 'MISSING'}`)
        .join(', '),
    ...status.degraded.map((what) => `DEGRADED: ${what}`),
    ...(status.kubernetes ? formatKubernetes(status.kubernetes) : []),
    '',
  ];
  lines.push('policies:');
  for (const p of status.policies) {
    lines.push(
      `  ${p.namespace}/${p.name}  generation ${p.generation}  ruleset ${p.ruleset || '(pending)'}  workloads: ${p.workloads.join(', ') || '(none on this node)'}`,
    );
    for (const n of p.notEnforced) lines.push(`    not enforced: ${n}`);
  }
  for (const r of status.rejected) {
    lines.push(`  REJECTED ${r.file} (last good version stays in force):`);
    for (const m of r.messages) lines.push(`    ${m}`);
  }
  for (const f of status.failures) {
    const what = f.enforced === 'deny-all' ? 'ENROLLED DENY-ALL' : 'NOT ENFORCED';
    lines.push('', `workload ${f.key}  ${what} (cgroup ${f.cgroup}): ${f.error}`);
  }
  for (const w of status.workloads) {
    lines.push(
      '',
      `workload ${w.key}  labels ${
        Object.entries(w.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || '-'
      }  addresses ${w.addresses.join(', ') || '-'}`,
    );
    lines.push(`  cgroup ${w.cgroup} (workload id ${w.workloadId})`);
    lines.push(`  allowed names: ${w.allowedNames.join(', ') || '(none)'}`);
    if (w.rules.length === 0) lines.push('  no FirewallPolicy rules select it: tier 3 default applies');
    w.rules.forEach((r, i) => {
      const dest = r.domains ? `domains ${r.domains.join(', ')}` : `to ${r.destinations.join(', ') || '(none)'}`;
      lines.push(
        `  ${i + 1}. ${r.action.padEnd(6)} ${r.protocol}/${r.ports}  ${dest}  [${r.policy}:${r.name}]${r.watch ? ' (watch)' : ''}`,
      );
      for (const n of r.notEnforced) lines.push(`     not enforced: ${n}`);
    });
    const rollout = w.rollout;
    if (status.mode === 'discovery')
      lines.push(
        `  if the default flipped to deny now: ${rollout.flowsDeniedIfDefaultFlipped} connection(s) and ${rollout.queriesDeniedIfDefaultFlipped} DNS ` +
          'quer(ies) seen since the agent started would have been denied',
      );
    if (rollout.frontedFlows > 0)
      lines.push(
        `  possible fronting: ${rollout.frontedFlows} flow(s) sent a name other than the one their address was learned for (events with "evidence":true)`,
      );
    for (const r of rollout.watch) lines.push(`  watch ${r.rule}: ${r.wouldPermit} would-permit, ${r.wouldDeny} would-deny`);
    if (w.learned.length > 0) {
      lines.push('  learned addresses:');
      for (const l of w.learned) lines.push(`    ${l.ip.padEnd(24)} ${l.rule}  expires in ${l.expiresInSeconds}s`);
    }
  }
  lines.push(
    '',
    'capacity (in use / kernel limit, docs/capacity.md): ' +
      Object.entries(status.capacity)
        .map(([name, c]) => `${name}=${c.used ?? '?'}/${c.max}${c.nearlyFull ? ' NEARLY FULL' : ''}`)
        .join(' '),
  );
  lines.push(
    '',
    'counters: ' +
      Object.entries(status.stats)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
  );
  return lines.join('\n');
}

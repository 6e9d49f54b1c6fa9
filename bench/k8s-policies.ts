// Kubernetes mode at 10,000 FirewallPolicies in one namespace: the cost of one policy change as the API server
// announces it (the policy source's batch: manifest, store validation, compile, the reconciler's pass and the status
// verdicts) against the initial list of all of them, in the same run, and against a status-only update (the writer's
// own, which must cost next to nothing); and the node report after that change (the policies the change touched,
// encoded for the node's Lease) against the same report recomputed from every policy's status. No root and no API
// server: API objects enter the policy source's core (PolicyObjects) as the informers hand them over; the reconciler
// drives the fake datapath of the unit tests.
//   node dist/bench/k8s-policies.js        (BENCH_POLICIES=10000 BENCH_WORKLOADS=250 BENCH_ROUNDS=30)
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { Reconciler } from '../src/agent/reconciler.js';
import type { WorkloadSpec } from '../src/identity/source.js';
import { PolicyObjects, type PolicyObject } from '../src/k8s/policy-source.js';
import { encodeNodeReport } from '../src/k8s/status.js';
import { NodeReportBuilder } from '../src/k8s/status-writer.js';
import { PolicyStore } from '../src/policy/store.js';
import { FakeDatapath } from '../test/support/fake-datapath.js';
import { fullNodeReport } from '../test/support/node-report.js';
import { median } from './common.js';

const POLICIES = Number(process.env.BENCH_POLICIES ?? 10_000);
const WORKLOADS = Number(process.env.BENCH_WORKLOADS ?? 250);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const NAMESPACE = 'obot-mcp';
const log = pino({ level: 'silent' });

// One policy per MCP server, as Obot's translator writes them; the first WORKLOADS servers run a pod on this node.
const workloads: WorkloadSpec[] = Array.from({ length: WORKLOADS }, (_, i) => ({
  namespace: NAMESPACE,
  name: `ms${i}-0`,
  labels: { app: `ms${i}` },
  addresses: [`198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`],
  cgroupPath: `/sys/fs/cgroup/bench/ms${i}`,
  interfaces: [],
  netns: null,
}));

function policyObject(i: number, generation: number, domain: string): PolicyObject {
  const id = `ms${i}`;
  return parseYaml(`apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: obot-${id}-fw, namespace: ${NAMESPACE}, generation: ${generation}, uid: u${i}, resourceVersion: "${generation}" }
spec:
  smartGroups:
    - { name: obot-${id}-pods, selectors: [{ type: k8s, k8sNamespace: ${NAMESPACE}, tags: { app: ${id} } }] }
    - { name: any-destination, selectors: [{ cidr: 0.0.0.0/0 }] }
  webGroups:
    - { name: obot-${id}-approved-domains, domains: [${domain}] }
  rules:
    - name: allow-approved-egress
      action: permit
      protocol: tcp
      port: 443
      logging: true
      selector: { matchLabels: { app: ${id} } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: obot-${id}-approved-domains }]
    - name: deny-all-external
      action: deny
      protocol: any
      logging: true
      selector: { matchLabels: { app: ${id} } }
      destinationSmartGroups: [{ name: any-destination }]
`) as PolicyObject;
}

const datapath = new FakeDatapath();
const store = new PolicyStore();
const cgroupIds = new Map(workloads.map((w, i) => [w.cgroupPath, BigInt(1000 + i)]));
const reconciler = new Reconciler({
  datapath,
  policies: store,
  host: { cgroupIdOf: (path) => cgroupIds.get(path)!, interfacesOf: () => [] },
  log,
  packet: false,
});
reconciler.setWorkloads(workloads);
const objects = new PolicyObjects(() => null, log);
objects.connect({ apply: (changes) => store.applyFiles(changes), commit: () => reconciler.syncPolicies() });
// The node report as PolicyPlane keeps it: the policies of each reconciler pass and of each source batch.
const acceptedGeneration = (namespace: string, name: string) => objects.acceptedGeneration(namespace, name);
const nodeReport = new NodeReportBuilder('bench-node', (key) => reconciler.enforcement(key), acceptedGeneration);
let touched = new Set<string>();
const touch = (policies: ReadonlySet<string>) => policies.forEach((key) => touched.add(key));
reconciler.onApplied(touch);
objects.onChange(touch);

const all = Array.from({ length: POLICIES }, (_, i) => policyObject(i, 1, `api${i}.example.com`));
const rssBefore = process.memoryUsage().rss;
const initialStart = performance.now();
for (const object of all) objects.changed('FirewallPolicy', object, object);
objects.flush();
const initialMs = performance.now() - initialStart;
const accepted = objects.verdicts().filter((v) => v.accepted !== null).length;
if (accepted !== POLICIES) throw new Error(`${accepted} of ${POLICIES} policies accepted`);
nodeReport.refresh(touched);

/** The report after a change, from what it touched (as the agent does), then from every policy (the baseline). */
function reportAfterChange(): { journalMs: number; fullMs: number } {
  const start = performance.now();
  nodeReport.refresh(touched);
  const journal = nodeReport.report();
  encodeNodeReport(journal);
  const journalMs = performance.now() - start;
  touched = new Set();
  const fullStart = performance.now();
  const full = fullNodeReport('bench-node', reconciler, acceptedGeneration);
  encodeNodeReport(full);
  const fullMs = performance.now() - fullStart;
  if (!isDeepStrictEqual(journal, full)) throw new Error('the journal-driven node report differs from the full recomputation');
  return { journalMs, fullMs };
}

/** Policy i (a server with a pod here for even rounds, one without for odd ones) gets a new generation. */
function oneChange(round: number): number {
  const i = round % 2 === 0 ? (round * 7) % WORKLOADS : WORKLOADS + ((round * 7919) % (POLICIES - WORKLOADS));
  const object = policyObject(i, 2 + round, `api${i}-r${round}.example.com`);
  all[i] = object;
  const start = performance.now();
  objects.changed('FirewallPolicy', object, object);
  objects.flush();
  objects.verdicts();
  return performance.now() - start;
}

/** The status writer's own update: same spec and generation, a new resourceVersion and a status. */
function statusOnly(round: number): number {
  const i = (round * 13) % POLICIES;
  const object = { ...all[i]!, status: { ruleset: 'x' }, metadata: { ...all[i]!.metadata, resourceVersion: `s${round}` } };
  const start = performance.now();
  objects.changed('FirewallPolicy', object, object);
  objects.flush();
  return performance.now() - start;
}

const changes: number[] = [];
const statusUpdates: number[] = [];
const reports: number[] = [];
const fullReports: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  changes.push(oneChange(round));
  const { journalMs, fullMs } = reportAfterChange();
  reports.push(journalMs);
  fullReports.push(fullMs);
  statusUpdates.push(statusOnly(round));
}
const report = {
  date: new Date().toISOString(),
  policies: POLICIES,
  workloads: WORKLOADS,
  rounds: ROUNDS,
  initialListMs: initialMs,
  rssGrowthMiB: (process.memoryUsage().rss - rssBefore) / 2 ** 20,
  onePolicyChange: { medianMs: median(changes), maxMs: Math.max(...changes) },
  statusOnlyUpdate: { medianMs: median(statusUpdates) },
  initialOverOneChange: initialMs / median(changes),
  nodeReport: { medianMs: median(reports), maxMs: Math.max(...reports) },
  fullNodeReport: { medianMs: median(fullReports), maxMs: Math.max(...fullReports) },
  fullReportOverReport: median(fullReports) / median(reports),
};
console.log(JSON.stringify(report, null, 2));
console.log(
  `k8s policy source at ${POLICIES} FirewallPolicies in one namespace, ${WORKLOADS} pods (fake datapath): initial list ${initialMs.toFixed(0)} ms, ` +
    `one policy change ${report.onePolicyChange.medianMs.toFixed(2)} ms median (ratio ${report.initialOverOneChange.toFixed(0)}), ` +
    `status-only update ${report.statusOnlyUpdate.medianMs.toFixed(3)} ms, RSS +${report.rssGrowthMiB.toFixed(0)} MiB; ` +
    `node report ${report.nodeReport.medianMs.toFixed(2)} ms median (from every policy: ${report.fullNodeReport.medianMs.toFixed(1)} ms, ` +
    `ratio ${report.fullReportOverReport.toFixed(0)})`,
);

// Control-plane cost of one policy change against a full reconcile of the same state, at 250 workloads and 1,000
// policies, measured in the same run with the two alternating. It runs without root: the reconciler drives the fake
// datapath of the unit tests, so the figures are compile, index and status work only (no map writes, which the
// kernel benches measure).
//   node dist/bench/reconcile.js        (BENCH_WORKLOADS=250 BENCH_POLICIES=1000 BENCH_NAMESPACES=25 BENCH_ROUNDS=30)
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { Reconciler, policyCompiler, type ReconcileCompiler } from '../src/agent/reconciler.js';
import type { WorkloadSpec } from '../src/identity/source.js';
import { PolicyStore } from '../src/policy/store.js';
import { FakeDatapath } from '../test/support/fake-datapath.js';
import { median } from './common.js';

const WORKLOADS = Number(process.env.BENCH_WORKLOADS ?? 250);
const POLICIES = Number(process.env.BENCH_POLICIES ?? 1000);
const NAMESPACES = Number(process.env.BENCH_NAMESPACES ?? 25);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const log = pino({ level: 'silent' });

// Workload i lives in namespace i mod NAMESPACES with its own app label; policy j selects workload j mod WORKLOADS
// (same namespace), so each workload is selected by POLICIES / WORKLOADS policies.
const workloads: WorkloadSpec[] = Array.from({ length: WORKLOADS }, (_, i) => ({
  namespace: `ns${i % NAMESPACES}`,
  name: `w${i}`,
  labels: { app: `app${i}`, tier: 'backend' },
  addresses: [`198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`],
  cgroupPath: `/sys/fs/cgroup/bench/w${i}`,
  interfaces: [],
  netns: null,
}));

/** The translator's shape: a webGroup permit on `port`, then deny-all, for one app. */
function policy(j: number, port: number): string {
  const w = workloads[j % WORKLOADS]!;
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: p${j}, namespace: ${w.namespace} }
spec:
  smartGroups:
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
  webGroups:
    - name: approved
      domains: [api${j}.example.com, "*.cdn${j}.example"]
  rules:
    - name: allow
      action: permit
      protocol: tcp
      port: ${port}
      selector: { matchLabels: { app: ${w.labels.app} } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
    - name: deny-all
      action: deny
      selector: { matchLabels: { app: ${w.labels.app} } }
      destinationSmartGroups: [{ name: any-destination }]
`;
}

const store = new PolicyStore();
for (let j = 0; j < POLICIES; j++) store.applyFile(`p${j}.yaml`, policy(j, 443));

let compiles = 0;
const compiler: ReconcileCompiler = {
  selects: policyCompiler.selects,
  compile: (p, w) => (compiles++, policyCompiler.compile(p, w)),
};

function reconciler(datapath: FakeDatapath): Reconciler {
  const cgroupIds = new Map(workloads.map((w, i) => [w.cgroupPath, BigInt(1000 + i)]));
  const host = { cgroupIdOf: (path: string) => cgroupIds.get(path)!, interfacesOf: () => [] };
  return new Reconciler({ datapath, policies: store, host, log, packet: false, compiler });
}

interface Sample {
  ms: number;
  compiles: number;
  enrolments: number;
}

function timed(run: (datapath: FakeDatapath) => void, datapath: FakeDatapath): Sample {
  const [compilesBefore, enrolmentsBefore] = [compiles, datapath.setWorkloadCalls.length];
  const start = performance.now();
  run(datapath);
  return {
    ms: performance.now() - start,
    compiles: compiles - compilesBefore,
    enrolments: datapath.setWorkloadCalls.length - enrolmentsBefore,
  };
}

/** Everything from scratch: every workload compiled against every policy of its namespace and enrolled. */
function full(): Sample {
  return timed((datapath) => {
    const r = reconciler(datapath);
    r.syncPolicies();
    r.setWorkloads(workloads);
  }, new FakeDatapath());
}

const liveDatapath = new FakeDatapath();
const live = reconciler(liveDatapath);
live.syncPolicies();
live.setWorkloads(workloads);

/** One policy edited (its port flips), then the reconciler's pass; the store's parse is not counted. */
function onePolicy(round: number): Sample {
  const j = (round * 7919) % POLICIES;
  store.applyFile(`p${j}.yaml`, policy(j, round % 2 === 0 ? 8443 : 443));
  return timed(() => live.syncPolicies(), liveDatapath);
}

const fullSamples: Sample[] = [];
const oneSamples: Sample[] = [];
for (let round = 0; round < ROUNDS; round++) {
  // Alternate which side goes first, so that neither always runs on a warmer heap.
  if (round % 2 === 0) {
    fullSamples.push(full());
    oneSamples.push(onePolicy(round));
  } else {
    oneSamples.push(onePolicy(round));
    fullSamples.push(full());
  }
}

const summary = (samples: Sample[]) => ({
  medianMs: median(samples.map((s) => s.ms)),
  compiles: median(samples.map((s) => s.compiles)),
  enrolments: median(samples.map((s) => s.enrolments)),
});
const report = {
  date: new Date().toISOString(),
  workloads: WORKLOADS,
  policies: POLICIES,
  namespaces: NAMESPACES,
  rounds: ROUNDS,
  full: summary(fullSamples),
  onePolicyChange: summary(oneSamples),
  ratio: median(fullSamples.map((s) => s.ms)) / median(oneSamples.map((s) => s.ms)),
};
console.log(JSON.stringify(report, null, 2));
console.log(
  `reconcile at ${WORKLOADS} workloads x ${POLICIES} policies (${NAMESPACES} namespaces, fake datapath): ` +
    `full ${report.full.medianMs.toFixed(2)} ms (${report.full.compiles} compiles, ${report.full.enrolments} enrolments), ` +
    `one policy change ${report.onePolicyChange.medianMs.toFixed(2)} ms (${report.onePolicyChange.compiles} compiles, ` +
    `${report.onePolicyChange.enrolments} enrolments): ` +
    `ratio ${report.ratio.toFixed(1)}`,
);

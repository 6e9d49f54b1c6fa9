// Kubernetes mode's policy propagation against a real kube-apiserver and etcd (test/support/kube, the e2e build) and
// the real kernel: the agent's Kubernetes-mode policy side (PolicyPlane: informers, policy store, reconciler, node
// report, Lease election and status writer) runs in this process with the chart's ServiceAccount token and RBAC, over
// the real datapath (programs loaded, maps pinned, in a netns lab of its own). Pods are cgroups of the lab, handed to
// the reconciler as the pod source hands them over. Each edit gives one FirewallPolicy a new domain (its pod's rules
// change); measured per edit: the write sent to the API server → the reconciler's map write for that pod returned
// (setWorkload: the kernel enforces the new rules), and the watch event (the policy source's batch, one event-loop turn
// after it) → that map write: the agent's own share; and their parts: the write's round trip (API server and etcd),
// the store's validation, the map write itself. Root.
//   node dist/bench/k8s-propagation.js   (BENCH_POLICIES=1000 BENCH_PODS=100 BENCH_EDITS=60)
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Reconciler } from '../src/agent/reconciler.js';
import { openDatapath } from '../src/datapath/datapath.js';
import type { Datapath } from '../src/datapath/types.js';
import { hostWorkloadHost } from '../src/identity/host.js';
import type { WorkloadSpec } from '../src/identity/source.js';
import { PolicyPlane } from '../src/k8s/policy-plane.js';
import { PolicyStore } from '../src/policy/store.js';
import type { PolicyObject } from '../src/k8s/policy-source.js';
import { AGENT_NAMESPACE, NAMESPACE } from '../test/support/k8s-pods.js';
import { FIREWALL_POLICIES, KubeNode, translatorPolicyObject } from '../test/support/kube/node.js';
import { median, percentile, saveResult } from './common.js';

const POLICIES = Number(process.env.BENCH_POLICIES ?? 1000);
const PODS = Number(process.env.BENCH_PODS ?? 100);
const EDITS = Number(process.env.BENCH_EDITS ?? 60);
const NODE = 'bench-node';
const FIREWALL = { ...FIREWALL_POLICIES, namespace: NAMESPACE };
const objectPath = fileURLToPath(new URL('../../bpf/egressguard.bpf.o', import.meta.url));
const log = pino({ level: 'silent' });
if (PODS > POLICIES) throw new Error('BENCH_PODS must not exceed BENCH_POLICIES (one policy per pod)');

async function until(what: string, ready: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The datapath, noting when each workload's rules were last written to the kernel, and how long the write took. */
function timedDatapath(datapath: Datapath, written: Map<string, { at: number; ms: number }>): Datapath {
  return new Proxy(datapath, {
    get(target, property, receiver) {
      if (property === 'setWorkload') {
        return (...args: Parameters<Datapath['setWorkload']>) => {
          const start = performance.now();
          const id = target.setWorkload(...args);
          const at = performance.now();
          written.set(args[0], { at, ms: at - start });
          return id;
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const podNames = Array.from({ length: PODS }, (_, i) => `ms${i}-0`);
const node = await KubeNode.start({
  prefix: `egkb${randomBytes(2).toString('hex')}`,
  stalePattern: /^egkb/,
  lab: { pods: [], services: false, extraCgroups: podNames },
});
const { lab, plane, custom } = node;
let agentPlane: PolicyPlane | null = null;
let datapath: Datapath | null = null;
try {
  // The policies exist before the agent starts (a node joining a cluster that has them).
  await node.createTranslatorPolicies(POLICIES);

  const written = new Map<string, { at: number; ms: number }>();
  datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup, features: { tls: true, packet: false } });
  const store = new PolicyStore();
  const reconciler = new Reconciler({
    datapath: timedDatapath(datapath, written),
    policies: store,
    log,
    packet: false,
    host: hostWorkloadHost,
  });
  const workloads: WorkloadSpec[] = podNames.map((name, i) => ({
    namespace: NAMESPACE,
    name,
    labels: { app: `ms${i}` },
    addresses: [`198.18.${20 + Math.floor(i / 250)}.${(i % 250) + 1}`],
    cgroupPath: `${lab.attachCgroup}/${name}`,
    interfaces: [],
    netns: null,
  }));
  const token = await plane.serviceAccountToken(AGENT_NAMESPACE, 'egressguard');
  agentPlane = new PolicyPlane({
    client: plane.agentClient({ token }),
    node: NODE,
    agentNamespace: AGENT_NAMESPACE,
    fallbackNamespaces: [NAMESPACE],
    log,
    keptFile: null,
    onBaseline: ({ result }) => reconciler.setBaseline(result.baseline.denyList, result.baseline.permits),
  });
  agentPlane.reportFrom((key) => reconciler.enforcement(key));
  reconciler.onApplied((policies) => agentPlane!.enforcementChanged(policies));
  /** When the policy source last handed a batch (the watch event one event-loop turn later) to the store. */
  let batchAt = 0;
  /** When the store had validated that batch (the rest, to the map write, is the reconciler's). */
  let appliedAt = 0;
  const startedAt = performance.now();
  await agentPlane.start({
    apply: (changes) => {
      batchAt = performance.now();
      const results = store.applyFiles(changes);
      appliedAt = performance.now();
      return results;
    },
    commit: () => reconciler.syncPolicies(),
  });
  reconciler.setWorkloads(workloads);
  const accepted = () => agentPlane!.policies.verdicts().filter((v) => v.accepted !== null).length;
  await until(`${POLICIES} policies listed and accepted`, () => accepted() === POLICIES);
  await until(`${PODS} pods enforced`, () => workloads.every((w) => reconciler.rulesFor(`${NAMESPACE}/${w.name}`).length === 2));
  const initialMs = performance.now() - startedAt;

  const sentToWritten: number[] = [];
  const batchToWritten: number[] = [];
  const storeMs: number[] = [];
  const mapWriteMs: number[] = [];
  const roundTripMs: number[] = [];
  for (let edit = 0; edit < EDITS; edit++) {
    const i = (edit * 7) % PODS;
    const cgroupPath = workloads[i]!.cgroupPath;
    const name = translatorPolicyObject(i, 'unused.example.com').metadata!.name!;
    let sentAt = 0;
    let acknowledgedAt = 0;
    // The elected status writer updates the object too: read the latest version, and on a 409 Conflict read again.
    for (let written = false; !written;) {
      const current = (await custom.getNamespacedCustomObject({ ...FIREWALL, name })) as PolicyObject;
      const body = { ...current, spec: translatorPolicyObject(i, `api${i}-e${edit}.example.com`).spec };
      sentAt = performance.now();
      try {
        await custom.replaceNamespacedCustomObject({ ...FIREWALL, name, body });
        acknowledgedAt = performance.now();
        written = true;
      } catch (error) {
        if ((error as { code?: number }).code !== 409) throw error;
      }
    }
    await until(`edit ${edit} enforced`, () => (written.get(cgroupPath)?.at ?? 0) > sentAt, 30_000);
    const { at: writtenAt, ms: writeMs } = written.get(cgroupPath)!;
    mapWriteMs.push(writeMs);
    roundTripMs.push(acknowledgedAt - sentAt);
    sentToWritten.push(writtenAt - sentAt);
    batchToWritten.push(writtenAt - batchAt);
    storeMs.push(appliedAt - batchAt);
    // The rule now names the new domain: the edit, not some other pass, was enforced.
    const domains = reconciler.rulesFor(`${NAMESPACE}/${workloads[i]!.name}`).flatMap((r) => r.domains ?? []);
    if (!domains.some((d) => d.kind === 'exact' && d.name === `api${i}-e${edit}.example.com`))
      throw new Error(`edit ${edit}: the enforced rules do not carry the new domain`);
  }

  const distribution = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50Ms: median(values), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1)! };
  };
  const report = {
    date: new Date().toISOString(),
    datapath: 'real (BPF programs loaded and attached, maps pinned, netns lab)',
    policies: POLICIES,
    pods: PODS,
    edits: EDITS,
    initialListAndEnforceMs: initialMs,
    writeSentToEnforced: distribution(sentToWritten),
    /** The API server's answer to the write (etcd committed it): the cluster's share, not the agent's. */
    writeRoundTrip: distribution(roundTripMs),
    watchEventToEnforced: distribution(batchToWritten),
    /** The part of it the store took (validation of the changed object); the rest is the reconciler's pass. */
    storeValidation: distribution(storeMs),
    /** The part the map write took (setWorkload: rules, domains, and re-judging the workload's live sockets). */
    mapWrite: distribution(mapWriteMs),
    goalP99Ms: 50,
  };
  saveResult('k8s-propagation', report);
  console.log(JSON.stringify(report, null, 2));
  const { writeSentToEnforced: sent, watchEventToEnforced: watch } = report;
  console.log(
    `k8s policy propagation, ${POLICIES} FirewallPolicies, ${PODS} pods, ${EDITS} edits (real kube-apiserver, real datapath): ` +
      `write sent → enforced p50 ${sent.p50Ms.toFixed(1)} ms, p99 ${sent.p99Ms.toFixed(1)} ms; ` +
      `watch event → enforced p50 ${watch.p50Ms.toFixed(1)} ms, p99 ${watch.p99Ms.toFixed(1)} ms (goal p99 ≤ 50 ms)`,
  );
} finally {
  await agentPlane?.stop().catch(() => undefined);
  datapath?.destroy();
  await node.destroy();
}

// Kubernetes mode on one node at the size issue 8 names: 1,000 FirewallPolicies and 250 pods. The real agent process
// (`egressguard run` in Kubernetes mode, the chart's ServiceAccount token and RBAC) against a real kube-apiserver and
// etcd (test/support/kube) and the real kernel, pods laid out as kubelet does (test/support/kube/pods.ts, systemd
// driver). Measured, in one run: the agent's RSS (VmRSS; VmHWM, the peak; anonymous and file-backed parts; the V8 heap
// used and reserved, from the agent's metrics) and CPU (utime + stime) idle with no policy
// and no pod (the baseline), while the policies are listed and the pods enrolled, and idle at that size; and the pod
// registration gap from the agent's own timeline (status: kubernetes.pods.registration): the pod cgroup created →
// enrolled, and enrolled → the first container's cgroup created (kubelet's next step; enrolled before it is the goal).
// A lab gives at most 90 pods a network of their own: BENCH_RUNNING pods (default 80) are started through to their
// container (netns, veth, addresses, sandbox, container); the others stop once kubelet made their pod cgroup (enrolled
// at the cgroup, as every pod is, with no addresses yet), as pods whose sandbox is still being set up. Root.
//   node dist/bench/k8s-node.js   (BENCH_POLICIES=1000 BENCH_PODS=250 BENCH_RUNNING=80 BENCH_IDLE_SECONDS=30)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { Lab } from '../lab/lab.js';
import { cgroupCreatedMs } from '../src/k8s/cgroup-watch.js';
import { NAMESPACE } from '../test/support/k8s-pods.js';
import { KubeNode } from '../test/support/kube/node.js';
import type { KubePod } from '../test/support/kube/pods.js';
import { cpuSeconds, median, percentile, saveResult } from './common.js';

const POLICIES = Number(process.env.BENCH_POLICIES ?? 1000);
const PODS = Number(process.env.BENCH_PODS ?? 250);
const RUNNING = Math.min(PODS, Number(process.env.BENCH_RUNNING ?? 80));
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const GOAL_RSS_MIB = 150;
const CHART_VALUES = fileURLToPath(new URL('../../charts/egressguard/values.yaml', import.meta.url));
/** The agent runs as the chart runs it: its heap bounds (values agent.heap, rendered into NODE_OPTIONS) and two malloc
 * arenas; BENCH_NODE_ARGS replaces both (`""`: node's defaults, the figure before the bounds). */
const chartHeap = (
  parseYaml(readFileSync(CHART_VALUES, 'utf8')) as { agent: { heap: { maxOldSpaceMiB: number; maxSemiSpaceMiB: number } } }
).agent.heap;
const AS_CHART = process.env.BENCH_NODE_ARGS === undefined;
const NODE_ARGS = AS_CHART
  ? [`--max-old-space-size=${chartHeap.maxOldSpaceMiB}`, `--max-semi-space-size=${chartHeap.maxSemiSpaceMiB}`]
  : process.env.BENCH_NODE_ARGS!.split(' ').filter((a) => a !== '');
const AGENT_ENV: Record<string, string> = AS_CHART ? { MALLOC_ARENA_MAX: '2' } : {};

/** RSS and its peak, and what it is made of: anonymous (the V8 heap, native allocations), file-backed, shared. */
function memoryMiB(pid: number): { rssMiB: number; peakRssMiB: number; anonMiB: number; fileMiB: number; shmemMiB: number } {
  const lines = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n');
  const mib = (field: string) => Number(lines.find((l) => l.startsWith(`${field}:`))!.split(/\s+/)[1]) / 1024;
  return { rssMiB: mib('VmRSS'), peakRssMiB: mib('VmHWM'), anonMiB: mib('RssAnon'), fileMiB: mib('RssFile'), shmemMiB: mib('RssShmem') };
}

/** The V8 heap (used, reserved) and memory outside it held by JS objects, from the agent's metrics (prom-client's). */
async function heapMiB(lab: Lab): Promise<{ heapUsedMiB: number; heapTotalMiB: number; externalMiB: number }> {
  const scraped = await lab.runInNode(['curl', '-sf', 'http://127.0.0.1:9469/metrics']);
  const mib = (name: string) => {
    const value = new RegExp(`^egressguard_${name} (\\S+)$`, 'm').exec(scraped.stdout)?.[1];
    if (value === undefined) throw new Error(`the agent's metrics lack ${name} (curl exit ${scraped.code}: ${scraped.stderr})`);
    return Number(value) / 2 ** 20;
  };
  return {
    heapUsedMiB: mib('nodejs_heap_size_used_bytes'),
    heapTotalMiB: mib('nodejs_heap_size_total_bytes'),
    externalMiB: mib('nodejs_external_memory_bytes'),
  };
}

/** The agent's CPU (cores) over `seconds` of idling, and its memory at the end. */
async function idle(
  lab: Lab,
  pid: number,
  seconds: number,
): Promise<{ cores: number } & ReturnType<typeof memoryMiB> & Awaited<ReturnType<typeof heapMiB>>> {
  const [cpuStart, wallStart] = [cpuSeconds(pid), performance.now()];
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const cores = (cpuSeconds(pid) - cpuStart) / ((performance.now() - wallStart) / 1000);
  return { cores, ...memoryMiB(pid), ...(await heapMiB(lab)) };
}

const distribution = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: values.length, p50Ms: median(values), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1)! };
};

const node = await KubeNode.start({
  prefix: `egkn${randomBytes(2).toString('hex')}`,
  stalePattern: /^egkn/,
  kubelet: { nodeName: 'bench-node', driver: 'systemd' },
});
const lab = node.lab;
try {
  const agent = await node.agent({ nodeArgs: NODE_ARGS, env: AGENT_ENV, podCgroupTimeoutSeconds: 30 });
  await agent.start(60_000);
  await agent.waitFor('the first pod list', (s) => s.kubernetes?.pods.api.synced === true, 60_000);
  const pid = agent.pid!;
  const empty = await idle(lab, pid, IDLE_SECONDS);

  // The size: one policy per MCP server (translator shape), created 8 at a time; then the pods, one after the other.
  const loadCpuStart = cpuSeconds(pid);
  const loadStart = performance.now();
  await node.createTranslatorPolicies(POLICIES);
  const pods: KubePod[] = [];
  for (let i = 0; i < PODS; i++) {
    pods.push(
      await node.kubelet.runPod({
        namespace: NAMESPACE,
        name: `ms${i}-0`,
        labels: { app: `ms${i}` },
        until: i < RUNNING ? 'running' : 'pod-cgroup',
      }),
    );
  }
  const loaded = await agent.waitFor(
    `${POLICIES} policies and ${PODS} pods enforced`,
    (s) =>
      s.policies.length === POLICIES &&
      s.workloads.length === PODS &&
      s.workloads.every((w) => w.rules.length === 2) &&
      s.workloads.filter((w) => w.addresses.length === 2).length === RUNNING,
    600_000,
  );
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const loadCpu = cpuSeconds(pid) - loadCpuStart;
  const atSize = await idle(lab, pid, IDLE_SECONDS);

  const timeline = loaded.kubernetes!.pods.registration.filter((t) => pods.some((p) => p.uid === t.uid));
  const enrolled = timeline.flatMap((t) => (t.enrolledMs === null ? [] : [t.enrolledMs - t.cgroupCreatedMs]));
  // Its two parts: until the agent's event loop ran the cgroup watch's callback, and the enrolment itself.
  const seen = timeline.map((t) => t.cgroupSeenMs - t.cgroupCreatedMs);
  const seenToEnrolled = timeline.flatMap((t) => (t.enrolledMs === null ? [] : [t.enrolledMs - t.cgroupSeenMs]));
  // The sandbox's cgroup comes first and holds only the pause process; the application runs in the container's.
  const beforeApp = timeline.flatMap((t) => {
    const pod = pods.find((p) => p.uid === t.uid);
    const appCreated = pod?.step === 'running' ? cgroupCreatedMs(pod.containerCgroup) : null;
    return t.enrolledMs === null || appCreated === null ? [] : [appCreated - t.enrolledMs];
  });
  const beforeContainer = timeline.flatMap((t) =>
    t.enrolledMs === null || t.firstContainerMs === null ? [] : [t.firstContainerMs - t.enrolledMs],
  );
  const report = {
    date: new Date().toISOString(),
    policies: POLICIES,
    pods: PODS,
    runningPods: RUNNING,
    idleSeconds: IDLE_SECONDS,
    agentNodeArgs: NODE_ARGS,
    agentEnv: AGENT_ENV,
    empty,
    load: { seconds: loadSeconds, cpuSeconds: loadCpu },
    atSize,
    rssOverEmpty: atSize.rssMiB / empty.rssMiB,
    goalRssMiB: GOAL_RSS_MIB,
    registration: {
      cgroupCreatedToEnrolled: distribution(enrolled),
      cgroupCreatedToSeen: distribution(seen),
      seenToEnrolled: distribution(seenToEnrolled),
      enrolledBeforeFirstContainer: distribution(beforeContainer),
      enrolledAfterFirstContainer: beforeContainer.filter((ms) => ms <= 0).length,
      enrolledBeforeAppContainer: distribution(beforeApp),
      enrolledAfterAppContainer: beforeApp.filter((ms) => ms <= 0).length,
    },
  };
  saveResult('k8s-node', report);
  console.log(JSON.stringify(report, null, 2));
  const { cgroupCreatedToEnrolled: gap, enrolledBeforeFirstContainer: margin } = report.registration;
  console.log(
    `k8s node, ${POLICIES} FirewallPolicies and ${PODS} pods (${RUNNING} running): agent RSS ${atSize.rssMiB.toFixed(0)} MiB ` +
      `(peak ${atSize.peakRssMiB.toFixed(0)}, empty ${empty.rssMiB.toFixed(0)}; goal ≤ ${GOAL_RSS_MIB}), idle CPU ${atSize.cores.toFixed(3)} cores ` +
      `(empty ${empty.cores.toFixed(3)}), ${loadCpu.toFixed(1)} CPU-s to list and enrol; cgroup → enrolled p50 ${gap.p50Ms.toFixed(1)} ms, ` +
      `p99 ${gap.p99Ms.toFixed(1)} ms; enrolled before the first container by p50 ${margin.p50Ms.toFixed(0)} ms ` +
      `(${report.registration.enrolledAfterFirstContainer} of ${margin.count} after it; ` +
      `${report.registration.enrolledAfterAppContainer} of ${beforeApp.length} after the application's container)`,
  );
} finally {
  await node.destroy();
}

// Kubernetes mode, the DNS path across an agent restart (issue 8, item 3: lookups resume within 200 ms of the new agent
// being ready): the real agent process against a real kube-apiserver and etcd (test/support/kube), pods laid out as
// kubelet does, one looking a permitted name up at BENCH_QPS (500) through the steered proxy, retried like glibc's
// resolver (5 s, 2 attempts), one rogue pod looping connects to a denied address. BENCH_ROUNDS times each: the agent
// killed with -9 and started again (a container restart: its kept pod and policy files survive) and replaced (SIGTERM,
// a new process without them, as a DaemonSet rollout's new pod). Per run: lookups sent, lost (no answer after both
// attempts), answered by code; the outage (last answer before → first answer after); when the new agent logged that
// it runs (ready: its proxy, control socket and pods are up), and the first answer after the outage relative to that;
// the rogue pod's connects (zero is the requirement). Root.
//   node dist/bench/k8s-dns-restart.js   (BENCH_QPS=500 BENCH_SECONDS=40 BENCH_ROUNDS=3)
import { randomBytes } from 'node:crypto';
import { bothEnforced, restartScene, restartUnderLoad, type RestartKind, type RestartRun } from '../test/support/kube/dns-restart.js';
import { KubeNode } from '../test/support/kube/node.js';
import { median, saveResult } from './common.js';

const QPS = Number(process.env.BENCH_QPS ?? 500);
// Long enough that the lookups resume within the run on a loaded machine (the restart took 5–27 s on 2 shared cores).
const SECONDS = Number(process.env.BENCH_SECONDS ?? 40);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const GOAL_MS = 200;

const node = await KubeNode.start({
  prefix: `egkr${randomBytes(2).toString('hex')}`,
  stalePattern: /^egkr/,
  kubelet: { nodeName: 'bench-node', driver: 'systemd' },
});
try {
  const { lab } = node;
  const { agent, benign, rogue } = await restartScene(node);
  await agent.start(60_000);
  await bothEnforced(agent);
  const runs: (RestartRun & { summary: Record<string, number | null> })[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of ['kill', 'replace'] as RestartKind[]) {
      const run = await restartUnderLoad({ lab, agent, kind, benign, rogue, qps: QPS, seconds: SECONDS });
      const summary = {
        lost: run.lookups.failed,
        notNoerror: run.lookups.sent - run.lookups.failed - (run.lookups.rcodes.NOERROR ?? 0),
        /** null: the lookups did not resume before the client stopped. */
        outageMs: run.outage === null ? null : run.outage.toMs - run.outage.fromMs,
        stoppedToReadyMs: run.readyMs - run.stoppedMs,
        /** First answer after the outage, from the new agent's ready (negative: it answered before it logged ready). */
        readyToResumedMs: run.outage === null ? null : run.outage.toMs - run.readyMs,
        rogueConnected: run.rogue.connected,
      };
      runs.push({ ...run, summary });
      console.log(`${kind}: ${JSON.stringify(summary)}`);
    }
  }
  const of = (kind: RestartKind, field: string) =>
    runs
      .filter((r) => r.kind === kind)
      .map((r) => r.summary[field])
      .filter((v): v is number => v !== null);
  const figures = Object.fromEntries(
    (['kill', 'replace'] as RestartKind[]).map((kind) => [
      kind,
      {
        lostTotal: of(kind, 'lost').reduce((a, b) => a + b, 0),
        notNoerrorTotal: of(kind, 'notNoerror').reduce((a, b) => a + b, 0),
        notResumed: runs.filter((r) => r.kind === kind && r.outage === null).length,
        outageMedianMs: median(of(kind, 'outageMs')),
        stoppedToReadyMedianMs: median(of(kind, 'stoppedToReadyMs')),
        readyToResumedMaxMs: Math.max(...of(kind, 'readyToResumedMs')),
        rogueConnectedTotal: of(kind, 'rogueConnected').reduce((a, b) => a + b, 0),
      },
    ]),
  );
  const report = { date: new Date().toISOString(), qps: QPS, seconds: SECONDS, rounds: ROUNDS, goalMs: GOAL_MS, figures, runs };
  saveResult('k8s-dns-restart', report);
  console.log(JSON.stringify(figures, null, 2));
  for (const [kind, f] of Object.entries(figures))
    console.log(
      `k8s DNS across an agent ${kind} (${ROUNDS} runs, ${QPS} q/s): lookups resumed at most ${f.readyToResumedMaxMs.toFixed(0)} ms after ` +
        `the new agent ran (goal ≤ ${GOAL_MS}); outage median ${f.outageMedianMs.toFixed(0)} ms (stop → ready ${f.stoppedToReadyMedianMs.toFixed(0)} ms); ` +
        `${f.lostTotal} lookups lost, ${f.notNoerrorTotal} answered other than NOERROR, ${f.notResumed} runs not resumed within ${SECONDS} s; ` +
        `rogue connects ${f.rogueConnectedTotal}`,
    );
} finally {
  await node.destroy();
}

// Kubernetes mode, the agent restarted while a pod looks names up at 500 queries per second through the steered proxy
// and a rogue pod loops connecting (issue 8, DNS path item 3), against a real kube-apiserver and etcd, the real kernel
// and the real agent. Killed with -9 and started again (a container restart: the kept pod and policy files survive),
// and replaced (SIGTERM, a new process without those files: a DaemonSet rollout's new pod). Enforcement continues: the
// rogue pod connects nowhere, judged at the lab server after a calibration in which it does. Lookups resume: every
// answer is NOERROR, the client gets answers again once the new agent is ready, and only lookups asked while no agent ran
// can be lost. The time they take to resume is a figure: bench/k8s-dns-restart.ts.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import type { Lab } from '../../lab/lab.js';
import type { LabAgent } from '../../lab/lab-agent.js';
import { DENIED_PORT, HTTPBIN } from '../support/k8s-pods.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { BUILD_TIMEOUT_MS } from '../support/kube/control-plane.js';
import { bothEnforced, connectLoopFrom, restartScene, restartUnderLoad, type RestartKind } from '../support/kube/dns-restart.js';
import { KubeNode } from '../support/kube/node.js';
import type { KubePod } from '../support/kube/pods.js';

const QPS = 500;
const SECONDS = 14;

describe('Kubernetes mode: DNS and enforcement across an agent restart', { skip: privilegedSkip() }, () => {
  let node: KubeNode;
  let lab: Lab;
  let agent: LabAgent;
  let benign: KubePod;
  let rogue: KubePod;
  const fromRogue = (r: { remote: string }) => r.remote === rogue.network?.ipv4;

  beforeAll(async () => {
    node = await KubeNode.start({ prefix: uniquePrefix('kd'), stalePattern: /^egkd/, kubelet: { nodeName: 'node-d', driver: 'systemd' } });
    lab = node.lab;
    ({ agent, benign, rogue } = await restartScene(node));
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await node?.destroy();
  });

  test('calibration: with no agent the rogue pod connects and reaches the server', async () => {
    const loop = await connectLoopFrom(lab, rogue, HTTPBIN.ipv4, DENIED_PORT, 1);
    assert.ok(loop.connected > 0, JSON.stringify(loop));
    await lab.waitForServerRecords('the rogue pod at the server', fromRogue);
    await agent.start(60_000);
    await bothEnforced(agent);
  }, 120_000);

  for (const kind of ['kill', 'replace'] as RestartKind[]) {
    test(`${kind}: the rogue pod connects nowhere and lookups resume once the new agent is ready`, async () => {
      const before = (await lab.serverLog()).length;
      const run = await restartUnderLoad({ lab, agent, kind, benign, rogue, qps: QPS, seconds: SECONDS });
      console.info(
        `k8s-dns-restart ${kind}: ${JSON.stringify({ ...run, lookups: { ...run.lookups, silences: run.lookups.silences.length } })}`,
      );
      // Enforcement never paused: not one connect succeeded, and nothing from the rogue pod reached the server.
      assert.equal(run.rogue.connected, 0, JSON.stringify(run.rogue));
      assert.ok(run.rogue.attempts > SECONDS * 10, `the rogue pod kept trying (${run.rogue.attempts} attempts)`);
      assert.deepEqual((await lab.serverLog()).slice(before).filter(fromRogue), []);
      // Lookups: the client kept its rate, every answer says NOERROR (no half-ready agent refused a permitted name),
      // answers came after the new agent was ready, and only lookups asked while no agent ran may have gone unanswered.
      const { sent, failed, rcodes, silences } = run.lookups;
      assert.ok(sent >= QPS * (SECONDS - 1), `the client sent ${sent} lookups`);
      assert.deepEqual(Object.keys(rcodes), ['NOERROR'], JSON.stringify({ rcodes, spans: run.lookups.rcodeSpans, readyMs: run.readyMs }));
      assert.equal(rcodes.NOERROR, sent - failed);
      assert.ok(run.outage !== null, 'no agent answered for a while');
      assert.ok(run.lookups.lastAnswerMs > run.readyMs, 'the new agent answers');
      const after = silences.filter((s) => s.fromMs >= run.outage!.toMs && s.fromMs < run.sendingEndsMs);
      assert.ok(
        after.every((s) => s.toMs - s.fromMs < 1000),
        `once answers resumed they kept coming: ${JSON.stringify(after)}`,
      );
      const askedWhileDown = Math.ceil((QPS * (run.readyMs - run.stoppedMs)) / 1000);
      assert.ok(failed <= askedWhileDown, `${failed} lookups lost, ${askedWhileDown} asked while no agent ran`);
    }, 120_000);
  }
});

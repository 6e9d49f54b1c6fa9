// Kubernetes mode's pod identity against a real kube-apiserver and etcd, the real kernel and the real agent: pods laid
// out as kubelet does (test/support/kube/pods.ts), the agent reading them with its own ServiceAccount token and a
// ClusterRole that grants only what it uses. Every verdict is judged at the receiving side (the lab server's log), and
// kernel state is read from the pinned maps.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, type CoreV1Event } from '@kubernetes/client-node';
import { LAB_ADDRESSES, type Lab } from '../../lab/lab.js';
import type { DnsProbeResult } from '../../lab/probe-result.js';
import { keptPoliciesPath, readKeptPolicies } from '../../src/k8s/kept-policies.js';
import type { LabAgent } from '../../lab/lab-agent.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import {
  ALLOWED_PORT,
  DENIED_PORT,
  DNS_POLICY,
  HTTPBIN,
  NAMESPACE,
  OPENAI,
  POLICY,
  cgroupIdOf,
  enforcementProbes,
  kernelEntriesOf,
} from '../support/k8s-pods.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { createFirewallPolicy } from '../support/kube/crds.js';
import { KubeNode } from '../support/kube/node.js';
import { BUILD_TIMEOUT_MS, type ControlPlane } from '../support/kube/control-plane.js';
import type { Kubelet, KubePod } from '../support/kube/pods.js';
import { waitUntil } from '../support/wait.js';

const OTHER_NAMESPACE = 'other';
const NODE = 'node-a';
describe('Kubernetes mode: pods as workloads, against a real API server', { skip: privilegedSkip() }, () => {
  let node: KubeNode;
  let lab: Lab;
  let plane: ControlPlane;
  let kubelet: Kubelet;
  let agent: LabAgent;
  let core: CoreV1Api;

  beforeAll(async () => {
    // Without the watch cache a compaction turns the agent's resourceVersion into 410 Gone at once.
    node = await KubeNode.start({
      prefix: uniquePrefix('kq'),
      stalePattern: /^egkq/,
      namespaces: [OTHER_NAMESPACE],
      watchCache: false,
      kubelet: { nodeName: NODE, driver: 'systemd' },
    });
    ({ lab, plane, kubelet, core } = node);
    agent = await node.agent({ podCgroupTimeoutSeconds: 3, aggregateWindowMs: 100 });
    await createFirewallPolicy(plane, POLICY);
    await agent.start(60_000);
    await agent.waitFor('the first pod list', (s) => s.kubernetes?.pods.api.synced === true);
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await node?.destroy();
  });

  const key = (pod: KubePod) => `${pod.namespace}/${pod.name}`;
  /** The agent keeps its copy of the policies beside the pod state file. */
  const keptFile = () => keptPoliciesPath(join(lab.workDir, 'agent-pods.json'));
  const dnsFrom = async (pod: KubePod, name: string): Promise<DnsProbeResult> => {
    const r = await lab.probe(pod.network!, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv4]);
    assert.equal(r.kind, 'dns', JSON.stringify(r));
    return r as DnsProbeResult;
  };
  const workload = (s: AgentStatus, pod: KubePod) => s.workloads.find((w) => w.key === key(pod));
  const { fromPod, tcp, assertEnforced } = enforcementProbes(() => lab);
  const setLabels = async (pod: KubePod, labels: Record<string, string>) => {
    const current = await core.readNamespacedPod({ namespace: pod.namespace, name: pod.name });
    current.metadata = { ...current.metadata, labels };
    await core.replaceNamespacedPod({ namespace: pod.namespace, name: pod.name, body: current });
  };

  test('pods outside the enforced namespaces and hostNetwork pods are left alone (calibration: unenrolled, they reach the server)', async () => {
    const outsider = await kubelet.runPod({ namespace: OTHER_NAMESPACE, name: 'outsider', labels: { app: 'benign' } });
    const hostNetwork = await kubelet.runPod({ namespace: NAMESPACE, name: 'hostnet', labels: { app: 'benign' }, hostNetwork: true });
    const status = await agent.waitFor(
      'both counted as excluded',
      (s) => s.kubernetes!.pods.pods.excluded['namespace-not-enforced'] >= 1 && s.kubernetes!.pods.pods.excluded['host-network'] >= 1,
    );
    assert.equal(workload(status, outsider), undefined);
    assert.equal(workload(status, hostNetwork), undefined);
    assert.deepEqual(kernelEntriesOf(agent.pinDir, cgroupIdOf(outsider.podCgroup), -1), []);
    assert.deepEqual(kernelEntriesOf(agent.pinDir, cgroupIdOf(hostNetwork.podCgroup), -1), []);
    // The very connection the enforced pods are denied below gets through from a pod the agent leaves alone.
    assert.equal((await tcp(outsider, DENIED_PORT)).ok, true);
    await lab.waitForServerRecords('the outsider reaching the server', fromPod(outsider, DENIED_PORT));
    await kubelet.deletePod(outsider);
    await kubelet.deletePod(hostNetwork);
  });

  test('a new pod is enrolled when its cgroup appears, before its sandbox or container exists; then enforced with its addresses', async () => {
    const pod = await kubelet.runPod({ namespace: NAMESPACE, name: 'benign', labels: { app: 'benign' }, until: 'pod-cgroup' });
    const status = await agent.waitFor('benign enrolled', (s) => workload(s, pod) !== undefined);
    assert.equal(existsSync(pod.sandboxCgroup), false, 'enrolled before the runtime made the sandbox');
    const enrolled = workload(status, pod)!;
    assert.equal(enrolled.cgroup, pod.podCgroup);
    assert.deepEqual(
      enrolled.rules.map((r) => r.name),
      ['allow-httpbin'],
    );
    assert.ok(kernelEntriesOf(agent.pinDir, cgroupIdOf(pod.podCgroup), enrolled.workloadId).includes('eg_workloads'));

    await kubelet.advance(pod, 'running');
    const withAddresses = await agent.waitFor('benign with its addresses', (s) => workload(s, pod)?.addresses.length === 2);
    assert.deepEqual(workload(withAddresses, pod)!.addresses, [pod.network!.ipv4, pod.network!.ipv6]);
    assert.deepEqual(withAddresses.failures, []);
    await assertEnforced(pod, true);
    // IPv6 as well: the policy's v6 destination is permitted, nothing else.
    assert.equal((await tcp(pod, ALLOWED_PORT, HTTPBIN.ipv6)).ok, true);
    assert.equal((await tcp(pod, DENIED_PORT, HTTPBIN.ipv6)).ok, false);

    // The registration timeline: cgroup created, then enrolled, then the first container (kubelet's order).
    const timeline = (await agent.status()).kubernetes!.pods.registration.find((t) => t.uid === pod.uid)!;
    assert.ok(timeline.enrolledMs !== null && timeline.firstContainerMs !== null, JSON.stringify(timeline));
    assert.ok(timeline.cgroupCreatedMs <= timeline.enrolledMs!, JSON.stringify(timeline));
    assert.ok(timeline.enrolledMs! < timeline.firstContainerMs!, JSON.stringify(timeline));
    assert.deepEqual((await agent.status()).kubernetes!.pods.pods.enrolledLate, []);
  });

  test('a label change on a running pod re-selects its policies', async () => {
    const pod = kubelet.pod(NAMESPACE, 'benign');
    await setLabels(pod, { app: 'rogue' });
    await agent.waitFor('rogue has no rule', (s) => workload(s, pod)?.labels.app === 'rogue' && workload(s, pod)!.rules.length === 0);
    await assertEnforced(pod, false);
    await setLabels(pod, { app: 'benign' });
    await agent.waitFor('benign again', (s) => workload(s, pod)?.rules.length === 1);
    await assertEnforced(pod, true);
  });

  test('a pod whose cgroup never appears is reported (status, Event) as not enforced; enrolled once the cgroup comes', async () => {
    const ghost = await kubelet.runPod({ namespace: NAMESPACE, name: 'ghost', labels: { app: 'benign' }, until: 'bound' });
    const waiting = await agent.waitFor('ghost waits for its cgroup', (s) => s.kubernetes!.pods.pods.waitingForCgroup.includes(key(ghost)));
    assert.equal(
      waiting.failures.find((f) => f.key === key(ghost)),
      undefined,
    );
    const status = await agent.waitFor('ghost reported', (s) => s.failures.some((f) => f.key === key(ghost)));
    const failure = status.failures.find((f) => f.key === key(ghost))!;
    assert.equal(failure.enforced, 'none');
    assert.equal(failure.cgroup, ghost.podCgroup);
    assert.match(failure.error, /cannot be enrolled/);
    assert.ok(status.kubernetes!.pods.pods.cgroupMissing.includes(key(ghost)));
    // The Event is written after the reconciler reported the failure (which the status shows), not before.
    const found: { event?: CoreV1Event; reasons?: string[] } = {};
    await waitUntil('an EgressNotEnforced Event on the pod', async () => {
      const events = await core.listNamespacedEvent({ namespace: NAMESPACE, fieldSelector: `involvedObject.name=${ghost.name}` });
      found.reasons = events.items.map((e) => e.reason ?? '');
      found.event = events.items.find((e) => e.reason === 'EgressNotEnforced');
      return found.event !== undefined;
    }).catch((error: Error) => assert.fail(`${error.message}: Events on the pod: ${JSON.stringify(found.reasons)}`));
    const event = found.event!;
    assert.equal(event.involvedObject.uid, ghost.uid);
    assert.equal(event.type, 'Warning');

    await kubelet.advance(ghost, 'running');
    await agent.waitFor('ghost enrolled after all', (s) => s.failures.length === 0 && workload(s, ghost)?.addresses.length === 2);
    await assertEnforced(ghost, true);
    await kubelet.deletePod(ghost);
  });

  test('a deleted pod leaves nothing in the pinned maps', async () => {
    const pod = kubelet.pod(NAMESPACE, 'benign');
    const enrolled = workload(await agent.status(), pod)!;
    const cgroupId = cgroupIdOf(pod.podCgroup);
    // Its entry, id, rules, rule destinations, addresses and backstop interface are all in the kernel first.
    assert.deepEqual(kernelEntriesOf(agent.pinDir, cgroupId, enrolled.workloadId).sort(), [
      'eg_interfaces',
      'eg_rule_cidrs',
      'eg_rules',
      'eg_workload_addrs',
      'eg_workload_ids',
      'eg_workloads',
    ]);
    await kubelet.deletePod(pod);
    await agent.waitFor('benign withdrawn', (s) => workload(s, pod) === undefined);
    assert.deepEqual(kernelEntriesOf(agent.pinDir, cgroupId, enrolled.workloadId), []);
  });

  test('API server down mid-run: enforcement stays as last known, status says so, the watch comes back with backoff', async () => {
    const benign = await kubelet.runPod({ namespace: NAMESPACE, name: 'benign-2', labels: { app: 'benign' } });
    const rogue = await kubelet.runPod({ namespace: NAMESPACE, name: 'rogue-2', labels: { app: 'rogue' } });
    await agent.waitFor('both enrolled with addresses', (s) => [benign, rogue].every((p) => workload(s, p)?.addresses.length === 2));
    const restartsBefore = (await agent.status()).kubernetes!.pods.api.restarts;
    await plane.stopApiServer();
    const down = await agent.waitFor(
      'the pod watch to notice',
      (s) => s.kubernetes!.pods.api.state !== 'watching' && s.kubernetes!.pods.api.restarts > restartsBefore,
      60_000,
    );
    assert.ok(down.kubernetes!.pods.api.lastError, 'the last error is shown');
    assert.ok(workload(down, benign) && workload(down, rogue), 'the last known pods stay enrolled');
    await assertEnforced(benign, true);
    await assertEnforced(rogue, false);
    await plane.startApiServer();
    await agent.waitFor('the pod watch back', (s) => s.kubernetes!.pods.api.state === 'watching', 60_000);
    const late = await kubelet.runPod({ namespace: NAMESPACE, name: 'after-outage', labels: { app: 'benign' } });
    await agent.waitFor('a pod created after the outage', (s) => workload(s, late)?.addresses.length === 2);
    await assertEnforced(late, true);
    await kubelet.deletePod(late);
  });

  test('API server down at the agent start: the kept policies and baseline enforce the pods at once, DNS included', async () => {
    const benign = kubelet.pod(NAMESPACE, 'benign-2');
    const rogue = kubelet.pod(NAMESPACE, 'rogue-2');
    await createFirewallPolicy(plane, DNS_POLICY);
    await agent.waitFor('the DNS policy enforced', (s) => workload(s, benign)?.rules.length === 2);
    // The copy follows what the API server listed (written on the next turn after the change).
    await waitUntil(
      'the copy to hold the DNS policy',
      () => existsSync(keptFile()) && readFileSync(keptFile(), 'utf8').includes('benign-dns'),
    );
    const assertDns = async () => {
      const allowed = await dnsFrom(benign, 'api.openai.com');
      assert.equal(allowed.rcode, 'NOERROR', JSON.stringify(allowed));
      assert.ok(
        allowed.answers.some((a) => a.data === OPENAI.ipv4),
        JSON.stringify(allowed),
      );
      for (const [pod, name] of [
        [benign, 'attacker.example'],
        [rogue, 'api.openai.com'],
      ] as const) {
        const refused = await dnsFrom(pod, name);
        assert.equal(refused.rcode, 'NXDOMAIN', `${pod.name} asking ${name}: ${JSON.stringify(refused)}`);
      }
    };
    await assertDns();

    await agent.stop();
    await plane.stopApiServer();
    await agent.start(60_000);
    // Enrolled by the new agent, with their real policies, while nothing can be listed.
    const restored = await agent.waitFor(
      'the pods enforced from the kept copy',
      (s) => s.kubernetes!.policies?.policies.kept !== null && [benign, rogue].every((p) => workload(s, p)?.addresses.length === 2),
      60_000,
    );
    assert.equal(restored.kubernetes!.pods.api.synced, false);
    assert.equal(restored.kubernetes!.policies!.policies.synced, false);
    assert.equal(restored.kubernetes!.policies!.policies.kept!.policies, 2);
    assert.deepEqual(
      workload(restored, benign)!
        .rules.map((r) => r.name)
        .sort(),
      ['allow-httpbin', 'allow-openai'],
    );
    assert.deepEqual(workload(restored, rogue)!.rules, []);
    assert.match(agent.log(), /enforcing the policies kept by the previous agent/);
    await assertDns();
    await assertEnforced(benign, true);
    await assertEnforced(rogue, false);

    await plane.startApiServer();
    const listed = await agent.waitFor(
      'listed after all',
      (s) => s.kubernetes!.policies!.policies.synced && s.kubernetes!.pods.api.state === 'watching',
      60_000,
    );
    assert.equal(listed.kubernetes!.policies!.policies.kept, null);
    assert.equal(workload(listed, benign)!.rules.length, 2);
    await assertDns();
  });

  test('API server down at the agent start with a corrupt copy: rejected (named in the log); the pinned state enforces until listed', async () => {
    const benign = kubelet.pod(NAMESPACE, 'benign-2');
    const rogue = kubelet.pod(NAMESPACE, 'rogue-2');
    await agent.stop();
    await plane.stopApiServer();
    // One byte of the payload changed: the digest no longer matches.
    writeFileSync(keptFile(), readFileSync(keptFile(), 'utf8').replace('allow-openai', 'allow-openaj'));
    await agent.start(60_000);
    const unlisted = await agent.waitFor('the first list to fail', (s) => s.kubernetes!.pods.api.lastError !== null, 60_000);
    assert.ok(
      agent
        .log()
        .split('\n')
        .some((line) => line.includes(keptFile()) && line.includes('SHA-256 mismatch')),
      'the log names the rejected copy and why',
    );
    assert.equal(unlisted.kubernetes!.pods.api.synced, false);
    assert.equal(unlisted.kubernetes!.policies!.policies.kept, null);
    // Nothing was withdrawn: the previous agent's rules still judge both pods. The new agent holds the pods it kept
    // (lastKnown) until the cluster's policies are listed too: enrolled now, they would compile with no policy and be
    // denied everything while the API server is down.
    for (const pod of [benign, rogue]) assert.ok(kernelEntriesOf(agent.pinDir, cgroupIdOf(pod.podCgroup), -1).includes('eg_workloads'));
    assert.equal(unlisted.kubernetes!.pods.lastKnown?.pods, 2);
    assert.deepEqual(
      unlisted.workloads.map((w) => w.key),
      [],
      'held until the policies are listed',
    );
    await assertEnforced(benign, true);
    await assertEnforced(rogue, false);
    await plane.startApiServer();
    const listed = await agent.waitFor(
      'listed after all',
      (s) => s.kubernetes!.pods.api.state === 'watching' && [benign, rogue].every((p) => workload(s, p)?.addresses.length === 2),
      60_000,
    );
    assert.equal(listed.kubernetes!.pods.api.synced, true);
    assert.equal(listed.kubernetes!.pods.lastKnown, null);
    await assertEnforced(benign, true);
    await assertEnforced(rogue, false);
    // Listed again, the copy is rewritten whole: once the baseline's lists are back too, which may come later than the
    // pods' (each informer backs off on its own, up to 30 s).
    await waitUntil('a valid copy again', () => readKeptPolicies(keptFile())?.ok === true, 60_000);
  });

  test('410 Gone after a burst of pod changes while the agent was cut off: the re-list reports exactly the current pods', async () => {
    const before = await agent.status();
    const listedBefore = before.kubernetes!.pods.api.lastListAt;
    // Cut the agent off: its watch ends and every reconnection is refused.
    await plane.fault('refuse');
    await plane.fault('drop');
    await agent.waitFor('the watch to notice', (s) => s.kubernetes!.pods.api.state !== 'watching', 60_000);
    const relabelled = kubelet.pod(NAMESPACE, 'benign-2');
    await setLabels(relabelled, { app: 'rogue' });
    await kubelet.deletePod(kubelet.pod(NAMESPACE, 'rogue-2'));
    const burst: KubePod[] = [];
    for (const name of ['burst-1', 'burst-2', 'burst-3'])
      burst.push(await kubelet.runPod({ namespace: NAMESPACE, name, labels: { app: 'benign' } }));
    await kubelet.deletePod(burst.pop()!);
    // Every resourceVersion the agent holds is now history the API server no longer has.
    await plane.compact();
    await plane.fault('pass');
    const expected = [relabelled, ...burst].map(key).sort();
    const after = await agent.waitFor(
      'the re-listed set',
      (s) =>
        s.kubernetes!.pods.api.state === 'watching' &&
        JSON.stringify(s.workloads.map((w) => w.key).sort()) === JSON.stringify(expected) &&
        s.workloads.every((w) => w.addresses.length === 2),
      60_000,
    );
    assert.notEqual(after.kubernetes!.pods.api.lastListAt, listedBefore, 'a new list, not a resumed watch');
    assert.equal(workload(after, relabelled)!.labels.app, 'rogue');
    await assertEnforced(relabelled, false);
    for (const pod of burst) await assertEnforced(pod, true);
  });
});

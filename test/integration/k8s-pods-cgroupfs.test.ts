// Kubernetes mode on a node whose kubelet uses the cgroupfs driver and CRI-O, the agent reading the API server through a
// kubeconfig file (the other credentials path): every QoS class is enrolled at its pod cgroup the moment the kubelet
// makes it, and enforced once running. The systemd driver and the in-cluster credentials are k8s-pods.test.ts.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import { AGENT_NAMESPACE, NAMESPACE, POLICY, enforcementProbes } from '../support/k8s-pods.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { createFirewallPolicy } from '../support/kube/crds.js';
import { KubeNode } from '../support/kube/node.js';
import { BUILD_TIMEOUT_MS } from '../support/kube/control-plane.js';
import type { Kubelet, KubePod } from '../support/kube/pods.js';

const NODE = 'node-b';

describe('Kubernetes mode: cgroupfs driver, CRI-O, kubeconfig credentials', { skip: privilegedSkip() }, () => {
  let node: KubeNode;
  let lab: Lab;
  let kubelet: Kubelet;
  let agent: LabAgent;

  beforeAll(async () => {
    node = await KubeNode.start({
      prefix: uniquePrefix('kf'),
      stalePattern: /^egkf/,
      kubelet: { nodeName: NODE, driver: 'cgroupfs', runtime: 'cri-o' },
    });
    ({ lab, kubelet } = node);
    const kubeconfig = await node.plane.writeKubeconfig('agent.kubeconfig', {
      token: await node.plane.serviceAccountToken(AGENT_NAMESPACE, 'egressguard'),
    });
    agent = new LabAgent(lab, {
      workloads: [],
      mode: 'enforce',
      // A kubeconfig names no namespace: the agent's own (its Leases) comes as the downward API gives it.
      env: { POD_NAMESPACE: AGENT_NAMESPACE },
      // Driver auto: the root's name (kubepods, not *.slice) says cgroupfs.
      kubernetes: { nodeName: NODE, namespaces: [NAMESPACE], kubeconfig, cgroupRoot: kubelet.kubepodsCgroup, stateFile: null },
    });
    await createFirewallPolicy(node.plane, POLICY);
    await agent.start(60_000);
    await agent.waitFor('the first pod list', (s) => s.kubernetes?.pods.api.synced === true);
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    try {
      await agent?.teardown();
    } finally {
      await node?.destroy();
    }
  });

  const { assertEnforced } = enforcementProbes(() => lab);

  test('every QoS class is enrolled at its pod cgroup before the sandbox exists, then enforced', async () => {
    const status = await agent.status();
    assert.equal(status.kubernetes!.pods.cgroupDriver, 'cgroupfs');
    assert.match(status.kubernetes!.credentials, /^kubeconfig /);
    const pods: KubePod[] = [];
    for (const qos of ['Guaranteed', 'Burstable', 'BestEffort'] as const)
      pods.push(
        await kubelet.runPod({
          namespace: NAMESPACE,
          name: `benign-${qos.toLowerCase()}`,
          labels: { app: 'benign' },
          qos,
          until: 'pod-cgroup',
        }),
      );
    const enrolled = await agent.waitFor('all three enrolled', (s) =>
      pods.every((p) => s.workloads.some((w) => w.key === `${NAMESPACE}/${p.name}`)),
    );
    for (const pod of pods) {
      assert.equal(enrolled.workloads.find((w) => w.key === `${NAMESPACE}/${pod.name}`)!.cgroup, pod.podCgroup, pod.qos);
      assert.equal(existsSync(pod.sandboxCgroup), false, `${pod.qos}: enrolled before the sandbox`);
    }
    for (const pod of pods) await kubelet.advance(pod, 'running');
    await agent.waitFor('addresses', (s) =>
      pods.every((p) => s.workloads.find((w) => w.key === `${NAMESPACE}/${p.name}`)?.addresses.length === 2),
    );
    for (const pod of pods) await assertEnforced(pod, true);
    const timelines = (await agent.status()).kubernetes!.pods.registration.filter((t) => pods.some((p) => p.uid === t.uid));
    assert.equal(timelines.length, 3);
    for (const t of timelines)
      assert.ok(t.enrolledMs !== null && t.firstContainerMs !== null && t.enrolledMs < t.firstContainerMs, JSON.stringify(t));
  });
});

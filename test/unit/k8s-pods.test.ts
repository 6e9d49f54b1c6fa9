// Pods → workload specs: which pods are enforced, and what each spec holds.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { podAddresses, podExclusion, podQosClass, podSnapshot, podSpecOf, type Pod, type PodRecord } from '../../src/k8s/pod-source.js';

function pod(
  overrides: {
    uid?: string;
    name?: string;
    namespace?: string;
    hostNetwork?: boolean;
    phase?: string;
    podIPs?: string[];
    podIP?: string;
    qosClass?: string;
  } = {},
): Pod {
  return {
    metadata: {
      namespace: overrides.namespace ?? 'obot-mcp',
      name: overrides.name ?? 'ms1abc-7d9',
      uid: overrides.uid ?? '0b9e2a41-6d3c-4f1e-9a77-2c5d8e1f3a90',
      labels: { app: 'ms1abc' },
    },
    spec: { nodeName: 'node-1', hostNetwork: overrides.hostNetwork, containers: [] },
    status: {
      phase: overrides.phase ?? 'Running',
      podIPs: overrides.podIPs?.map((ip) => ({ ip })),
      podIP: overrides.podIP,
      qosClass: overrides.qosClass,
    },
  };
}

const enforced = new Set(['obot-mcp']);

describe('pods to workloads', () => {
  test('only running or pending pods of the enforced namespaces, never hostNetwork pods', () => {
    assert.equal(podExclusion(pod(), enforced), null);
    assert.equal(podExclusion(pod({ phase: 'Pending' }), enforced), null);
    assert.equal(podExclusion(pod({ phase: 'Unknown' }), enforced), null);
    assert.equal(podExclusion(pod({ namespace: 'kube-system' }), enforced), 'namespace-not-enforced');
    assert.equal(podExclusion(pod(), new Set()), 'namespace-not-enforced');
    assert.equal(podExclusion(pod({ hostNetwork: true }), enforced), 'host-network');
    assert.equal(podExclusion(pod({ phase: 'Succeeded' }), enforced), 'finished');
    assert.equal(podExclusion(pod({ phase: 'Failed' }), enforced), 'finished');
  });

  test('addresses: every family of status.podIPs, else status.podIP; nothing invalid, nothing twice', () => {
    assert.deepEqual(podAddresses(pod({ podIPs: ['198.18.1.2', 'fd00:eb:1::2'] })), ['198.18.1.2', 'fd00:eb:1::2']);
    assert.deepEqual(podAddresses(pod({ podIP: '198.18.1.2' })), ['198.18.1.2']);
    assert.deepEqual(podAddresses(pod({ podIPs: ['198.18.1.2', 'garbage', '198.18.1.2', ''] })), ['198.18.1.2']);
    assert.deepEqual(podAddresses(pod()), []);
  });

  test('QoS class as the API server recorded it', () => {
    assert.equal(podQosClass(pod({ qosClass: 'Burstable' })), 'Burstable');
    assert.equal(podQosClass(pod({ qosClass: 'Platinum' })), null);
    assert.equal(podQosClass(pod()), null);
  });

  test('spec: namespace, name, a copy of the labels, addresses, the cgroup; interfaces found by the node later', () => {
    const p = pod({ podIPs: ['198.18.1.2'] });
    const spec = podSpecOf(p, '/sys/fs/cgroup/kubepods.slice/x.slice');
    assert.deepEqual(spec, {
      namespace: 'obot-mcp',
      name: 'ms1abc-7d9',
      labels: { app: 'ms1abc' },
      addresses: ['198.18.1.2'],
      cgroupPath: '/sys/fs/cgroup/kubepods.slice/x.slice',
      interfaces: [],
      netns: null,
    });
    spec.labels.app = 'changed';
    assert.equal(p.metadata?.labels?.app, 'ms1abc');
  });
});

describe('the set a pod source reports', () => {
  const timeoutMs = 30_000;
  const snapshot = (pods: Pod[], cgroups: Record<string, string>, records: Map<string, PodRecord>, now: number) =>
    podSnapshot({
      pods,
      namespaces: enforced,
      cgroupOf: (uid) => (cgroups[uid] ? { path: cgroups[uid] } : null),
      records,
      now,
      cgroupTimeoutMs: timeoutMs,
      expectedCgroup: (p) => `/expected/${p.metadata?.uid}`,
    });

  test('an announced pod waits for its cgroup, is reported the moment it appears, and not after it is gone', () => {
    const records = new Map<string, PodRecord>();
    const p = pod({ uid: 'u1', podIPs: ['198.18.1.2'] });
    let s = snapshot([p], {}, records, 1000);
    assert.deepEqual(s.specs, []);
    assert.deepEqual(s.status.waitingForCgroup, ['obot-mcp/ms1abc-7d9']);
    assert.equal(s.nextExpiryMs, 1000 + timeoutMs);
    s = snapshot([p], { u1: '/cg/u1' }, records, 1500);
    assert.deepEqual(
      s.specs.map((w) => w.cgroupPath),
      ['/cg/u1'],
    );
    assert.deepEqual(s.fresh, ['u1']);
    assert.equal(records.get('u1')?.cgroupSeenMs, 1500);
    assert.equal(s.nextExpiryMs, null);
    // The kubelet tore the cgroup down (the pod is terminating): nothing is left to enforce, and it is not "missing".
    s = snapshot([p], {}, records, 100_000);
    assert.deepEqual(s.specs, []);
    assert.deepEqual([s.status.waitingForCgroup, s.status.cgroupMissing], [[], []]);
  });

  test('a pod whose cgroup never appears is reported with the cgroup it should have (so it fails closed in status), once as new', () => {
    const records = new Map<string, PodRecord>();
    const p = pod({ uid: 'u2' });
    snapshot([p], {}, records, 0);
    let s = snapshot([p], {}, records, timeoutMs - 1);
    assert.deepEqual(s.status.cgroupMissing, []);
    s = snapshot([p], {}, records, timeoutMs);
    assert.deepEqual(
      s.specs.map((w) => w.cgroupPath),
      ['/expected/u2'],
    );
    assert.deepEqual(s.status.cgroupMissing, ['obot-mcp/ms1abc-7d9']);
    assert.deepEqual(s.newlyMissing, [{ key: 'obot-mcp/ms1abc-7d9', uid: 'u2', expected: '/expected/u2' }]);
    s = snapshot([p], {}, records, timeoutMs + 5000);
    assert.deepEqual(s.newlyMissing, []);
    assert.equal(s.specs.length, 1);
  });

  test('excluded pods are counted, never reported; deleted pods are forgotten', () => {
    const records = new Map<string, PodRecord>();
    const pods = [
      pod({ uid: 'a', name: 'a', namespace: 'kube-system' }),
      pod({ uid: 'b', name: 'b', hostNetwork: true }),
      pod({ uid: 'c', name: 'c', phase: 'Succeeded' }),
      pod({ uid: 'd', name: 'd' }),
    ];
    const cgroups = { a: '/cg/a', b: '/cg/b', c: '/cg/c', d: '/cg/d' };
    let s = snapshot(pods, cgroups, records, 0);
    assert.deepEqual(
      s.specs.map((w) => w.name),
      ['d'],
    );
    assert.deepEqual(s.status.excluded, { 'namespace-not-enforced': 1, 'host-network': 1, finished: 1 });
    assert.deepEqual([...records.keys()], ['d']);
    s = snapshot([], cgroups, records, 1);
    assert.deepEqual([s.specs, [...records.keys()]], [[], []]);
  });
});

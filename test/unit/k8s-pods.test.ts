// Pods → workload specs: which pods are enforced, and what each spec holds.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { podAddresses, podExclusion, podQosClass, podSpecOf } from '../../src/k8s/pod-source.js';

function pod(
  overrides: { namespace?: string; hostNetwork?: boolean; phase?: string; podIPs?: string[]; podIP?: string; qosClass?: string } = {},
): V1Pod {
  return {
    metadata: {
      namespace: overrides.namespace ?? 'obot-mcp',
      name: 'ms1abc-7d9',
      uid: '0b9e2a41-6d3c-4f1e-9a77-2c5d8e1f3a90',
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

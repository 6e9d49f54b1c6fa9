// The EgressBaseline → the agent's baseline (src/k8s/baseline.ts): detection from cluster objects, overrides, the
// validation of the object, the fail-closed baseline, and the status the elected agent writes.
import { strict as assert } from 'node:assert';
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { Wire } from '../../src/k8s/api.js';
import { describe, test } from 'vitest';
import {
  baselineFromSpec,
  desiredBaselineStatus,
  detectInfrastructure,
  failClosedBaseline,
  type ClusterObjects,
  type DetectedInfrastructure,
} from '../../src/k8s/baseline.js';

function node(name: string, podCIDRs: string[], internal: string[]): Wire<V1Node> {
  return {
    metadata: { name },
    spec: { podCIDRs },
    status: { addresses: [...internal.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: name }] },
  };
}

function service(clusterIPs: string[]): Wire<V1Service> {
  return { spec: { clusterIP: clusterIPs[0], clusterIPs } };
}

const SLICE: Wire<V1EndpointSlice> = { addressType: 'IPv4', endpoints: [{ addresses: ['198.18.0.10'] }] };

const CLUSTER: ClusterObjects = {
  nodes: [
    node('n1', ['10.244.0.0/24', 'fd00:eb:244::/64'], ['198.18.0.10', 'fd00:eb::10']),
    node('n2', ['10.244.1.0/24'], ['198.18.0.11']),
  ],
  kubernetesService: service(['10.96.0.1']),
  kubeDnsService: service(['10.96.0.10', 'fd00:eb:96::a']),
  apiEndpointSlices: [SLICE],
  serviceCIDRs: [{ spec: { cidrs: ['10.96.0.0/16', 'fd00:eb:96::/112'] } }],
};

describe('detectInfrastructure', () => {
  test('reads pod CIDRs, node InternalIPs, ServiceCIDRs, cluster DNS and the API server from the objects, both families', () => {
    const detected = detectInfrastructure(CLUSTER);
    assert.deepEqual(detected.values, {
      podCIDRs: ['10.244.0.0/24', 'fd00:eb:244::/64', '10.244.1.0/24'],
      nodeAddresses: ['198.18.0.10', 'fd00:eb::10', '198.18.0.11'],
      serviceCIDRs: ['10.96.0.0/16', 'fd00:eb:96::/112'],
      clusterDNS: ['10.96.0.10', 'fd00:eb:96::a'],
      apiServer: ['10.96.0.1', '198.18.0.10'],
    });
    assert.deepEqual(detected.missing, []);
  });

  test('without ServiceCIDR objects the ClusterIPs stand in, and what is missing is named', () => {
    const detected = detectInfrastructure({
      ...CLUSTER,
      serviceCIDRs: null,
      nodes: [node('n1', [], ['198.18.0.10'])],
      kubeDnsService: undefined,
    });
    assert.deepEqual(detected.values.serviceCIDRs, ['10.96.0.1']);
    assert.deepEqual(detected.values.podCIDRs, []);
    assert.equal(detected.missing.length, 3);
    assert.match(detected.missing.join('\n'), /^podCIDRs: .*give infrastructure.podCIDRs$/m);
    assert.match(detected.missing.join('\n'), /^serviceCIDRs: the API server serves no ServiceCIDR objects/m);
    assert.match(detected.missing.join('\n'), /^clusterDNS: the Service kube-system\/kube-dns does not exist/m);
  });
});

describe('baselineFromSpec', () => {
  const detected = detectInfrastructure(CLUSTER);

  test('detected infrastructure becomes tier-1 permits (all protocols), a CIDR named twice once, named permits after', () => {
    const result = baselineFromSpec(
      {
        mode: 'enforce',
        enforcedNamespaces: ['obot-mcp'],
        permits: [{ name: 'registry', cidr: '203.0.113.0/24', protocol: 'tcp', port: 443 }],
        denyList: [{ name: 'feed-1', cidr: '192.0.2.66' }],
      },
      detected,
    );
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(
      result.effective.permits.map((p) => `${p.name} ${p.cidr} ${p.protocol}/${p.ports} ${p.source}`),
      [
        'api-server:10.96.0.1 10.96.0.1/32 any/any detected',
        'api-server:198.18.0.10 198.18.0.10/32 any/any detected',
        'cluster-dns:10.96.0.10 10.96.0.10/32 any/any detected',
        'cluster-dns:fd00:eb:96::a fd00:eb:96::a/128 any/any detected',
        'node:fd00:eb::10 fd00:eb::10/128 any/any detected',
        'node:198.18.0.11 198.18.0.11/32 any/any detected',
        'cluster-services:10.96.0.0/16 10.96.0.0/16 any/any detected',
        'cluster-services:fd00:eb:96::/112 fd00:eb:96::/112 any/any detected',
        'cluster-pods:10.244.0.0/24 10.244.0.0/24 any/any detected',
        'cluster-pods:fd00:eb:244::/64 fd00:eb:244::/64 any/any detected',
        'cluster-pods:10.244.1.0/24 10.244.1.0/24 any/any detected',
        'registry 203.0.113.0/24 tcp/443 permits',
      ],
    );
    assert.deepEqual(
      result.effective.denyList.map((d) => d.cidr),
      ['192.0.2.66/32'],
    );
    assert.equal(result.effective.defaultAction, 'deny');
    assert.deepEqual(result.baseline.dnsNames, ['cluster.local']);
    assert.deepEqual(result.namespaces, ['obot-mcp']);
  });

  test('a list given overrides detection for that item only; detect: false keeps only what is given', () => {
    const override = baselineFromSpec(
      { mode: 'discovery', enforcedNamespaces: ['a', 'b'], infrastructure: { podCIDRs: ['10.32.0.0/12'], apiServer: [] } },
      detected,
    );
    assert.ok(override.ok);
    const names = override.effective.permits.map((p) => `${p.name} ${p.source}`);
    assert.ok(names.includes('cluster-pods:10.32.0.0/12 spec'));
    assert.ok(!names.some((n) => n.startsWith('cluster-pods:10.244')));
    assert.ok(names.includes('node:198.18.0.10 detected'), 'the node address is no longer taken by the api-server entry');
    assert.equal(override.effective.defaultAction, 'permit');
    const only = baselineFromSpec(
      { mode: 'enforce', enforcedNamespaces: ['a'], infrastructure: { detect: false, clusterDNS: ['10.96.0.10'] } },
      detected,
    );
    assert.ok(only.ok);
    assert.deepEqual(
      only.effective.permits.map((p) => p.name),
      ['cluster-dns:10.96.0.10'],
    );
  });

  test('invalid content is rejected naming each field', () => {
    const result = baselineFromSpec(
      {
        mode: 'block' as 'enforce',
        enforcedNamespaces: [],
        infrastructure: { podCIDRs: ['10.0.0.0/33'] },
        permits: [
          { name: 'x', cidr: '10.1.0.0/16', protocol: 'tcp', port: 443 },
          { name: 'x', cidr: '10.2.0.0/16' },
        ],
      },
      detected,
    );
    assert.ok(!result.ok);
    assert.match(result.problems.join('\n'), /^spec.mode: must be "enforce" or "discovery", not "block"$/m);
    assert.match(result.problems.join('\n'), /^spec.enforcedNamespaces: name at least one namespace$/m);
    assert.match(result.problems.join('\n'), /cidr: prefix length "\/33"/);
    assert.match(result.problems.join('\n'), /"x" is used twice/);
  });

  test('a named permit inside detected infrastructure with other ports is refused (it would hide part of it)', () => {
    const result = baselineFromSpec(
      { mode: 'enforce', enforcedNamespaces: ['a'], permits: [{ name: 'dns-only', cidr: '10.96.0.0/24', protocol: 'udp', port: 53 }] },
      detected,
    );
    assert.ok(!result.ok);
    assert.match(result.problems.join('\n'), /"dns-only" \(10.96.0.0\/24\) lies inside "cluster-services:10.96.0.0\/16"/);
  });
});

describe('without a valid baseline', () => {
  const detected: DetectedInfrastructure = detectInfrastructure(CLUSTER);

  test('the fail-closed baseline enforces, permits only the detected infrastructure, over the configured namespaces', () => {
    const result = failClosedBaseline(detected, ['obot-mcp']);
    assert.equal(result.baseline.mode, 'enforce');
    assert.deepEqual(result.baseline.denyList, []);
    assert.ok(result.effective.permits.every((p) => p.source === 'detected'));
    assert.deepEqual(result.namespaces, ['obot-mcp']);
  });

  test('status: Valid False says what is in force and why', () => {
    const status = desiredBaselineStatus(
      {
        result: failClosedBaseline(detected, ['obot-mcp']),
        source: 'fail-closed',
        problems: ['spec.mode: must be "enforce" or "discovery", not "x"'],
        generation: 4,
      },
      undefined,
      new Date('2026-12-01T06:00:00Z'),
    );
    const valid = status.conditions[0]!;
    assert.deepEqual([valid.type, valid.status, valid.reason, valid.observedGeneration], ['Valid', 'False', 'Invalid', 4]);
    assert.match(String(valid.message), /^the fail-closed baseline is in force .*; spec.mode: must be/);
    assert.equal(status.effective.defaultAction, 'deny');
  });

  test('status: a valid baseline with undetected items says which', () => {
    const partly = detectInfrastructure({ ...CLUSTER, kubeDnsService: undefined });
    const result = baselineFromSpec({ mode: 'enforce', enforcedNamespaces: ['a'] }, partly);
    assert.ok(result.ok);
    const status = desiredBaselineStatus({ result, source: 'object', problems: [], generation: 1 }, undefined, new Date());
    assert.deepEqual([status.conditions[0]!.status, status.conditions[0]!.reason], ['True', 'ValidPartlyDetected']);
    assert.match(String(status.conditions[0]!.message), /^clusterDNS: /);
  });
});

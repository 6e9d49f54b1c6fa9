import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import type { KernelEvent } from '../../src/datapath/types.js';
import type { DnsDecisionEvent } from '../../src/dns/types.js';
import { Enricher, type EnricherOptions } from '../../src/events/enrich.js';
import { WorkloadRegistry, type Workload } from '../../src/identity/registry.js';
import type { BaselineEntryConfig } from '../../src/agent/config.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { controlPlane, firewallPolicy, workload } from './control-plane-helpers.js';

const ONE: Workload = {
  namespace: 'team',
  name: 'one',
  labels: { app: 'one' },
  addresses: ['198.18.1.2', 'fd00:eb::2'],
  cgroupPath: '/sys/fs/cgroup/one',
  cgroupId: 77n,
  workloadId: 3,
};

function kernelEvent(overrides: Partial<KernelEvent>): KernelEvent {
  return {
    timestampNs: 1n,
    cgroupId: 77n,
    workloadId: 3,
    ruleId: 0,
    ip: '203.0.113.10',
    family: 4,
    port: 443,
    protocol: 6,
    verdict: 'denied',
    tier: 3,
    layer: 'connect',
    pid: 100,
    comm: 'curl',
    sni: null,
    suppressed: 0,
    evidence: false,
    ...overrides,
  };
}

function dnsEvent(overrides: Partial<DnsDecisionEvent>): DnsDecisionEvent {
  return {
    time: '2026-01-01T00:00:00.000Z',
    workloadKey: 'team/one',
    workloadId: 3,
    sourceIp: '198.18.1.2',
    sourcePort: 40000,
    transport: 'udp',
    query: 'api.example.com',
    qtype: 'A',
    verdict: 'permitted',
    tier: 2,
    ruleName: 'allow',
    policy: { namespace: 'team', name: 'p', generation: 1 },
    rcode: 'NOERROR',
    answers: ['203.0.113.10'],
    learnedTtlSeconds: 60,
    upstream: '198.18.0.53:53',
    upstreamLatencyMs: 1,
    reason: null,
    ...overrides,
  };
}

function enricher(options: Partial<EnricherOptions> = {}): Enricher {
  const registry = new WorkloadRegistry();
  registry.replace([ONE]);
  return new Enricher({
    node: () => 'node-a',
    workloads: registry,
    ruleLabel: () => undefined,
    dnsListen: ['198.18.0.2', 'fd00:eb::53'],
    ...options,
  });
}

describe('Enricher: rule labels', () => {
  const entry = (name: string): BaselineEntryConfig => ({
    name,
    cidr: { family: 4, address: '203.0.113.0', prefix: 24 },
    protocol: 'any',
    portLow: 0,
    portHigh: 65535,
    log: true,
  });
  const cp = controlPlane();
  cp.reconciler.setBaseline([entry('threat-feed')], [entry('corp-proxy')]);
  cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
  cp.reconciler.setWorkloads([workload('one', { app: 'one' })]);
  const e = enricher({ ruleLabel: (id) => cp.reconciler.ruleLabel(id) });

  test('tier 0 and tier 1 events carry the baseline entry name and no policy', () => {
    const denied = e.fromKernel(kernelEvent({ tier: 0, ruleId: cp.datapath.denyList[0]!.ruleId }));
    assert.deepEqual([denied.tier, denied.rule, denied.policy], [0, 'threat-feed', null]);
    const permitted = e.fromKernel(kernelEvent({ tier: 1, verdict: 'permitted', ruleId: cp.datapath.baseline[0]!.ruleId }));
    assert.deepEqual([permitted.tier, permitted.rule, permitted.policy], [1, 'corp-proxy', null]);
  });

  test('tier 2 events carry the rule and its policy with generation; tier 3 is the default action', () => {
    const ruled = e.fromKernel(kernelEvent({ tier: 2, ruleId: ruleIdFor('team', 'p', 'deny-all') }));
    assert.deepEqual([ruled.rule, ruled.policy], ['deny-all', { namespace: 'team', name: 'p', generation: 1 }]);
    const fallback = e.fromKernel(kernelEvent({ tier: 3, ruleId: ruleIdFor('team', 'p', 'deny-all') }));
    assert.deepEqual([fallback.rule, fallback.policy], ['default-action', null]);
  });

  test('an unknown rule id is named by its number', () => {
    assert.equal(e.fromKernel(kernelEvent({ tier: 2, ruleId: 12345 })).rule, 'rule#12345');
  });
});

describe('Enricher: identity and names', () => {
  test('kernel events carry the workload, the process and the protocol by name; unknown ids are marked unenrolled', () => {
    const event = enricher().fromKernel(kernelEvent({ protocol: 17 }));
    assert.deepEqual(event.workload, { namespace: 'team', name: 'one', labels: { app: 'one' }, podIps: ONE.addresses, cgroupId: '77' });
    assert.deepEqual([event.node, event.process, event.destination.protocol], ['node-a', { pid: 100, comm: 'curl' }, 'udp']);
    const stranger = enricher().fromKernel(kernelEvent({ workloadId: 99, cgroupId: 5n }));
    assert.deepEqual([stranger.workload.name, stranger.workload.cgroupId], ['(unenrolled)', '5']);
  });

  test('a name learned from a DNS answer names later kernel events to that address; SNI wins over it', () => {
    const e = enricher();
    assert.deepEqual([e.fromKernel(kernelEvent({})).fqdn, e.fromKernel(kernelEvent({})).fqdnSource], [null, 'none']);
    const dns = e.fromDns(dnsEvent({}));
    assert.deepEqual(
      [dns.layer, dns.fqdn, dns.destination.ip, dns.destination.port, dns.rule],
      ['dns', 'api.example.com', '198.18.0.2', 53, 'allow'],
    );
    const named = e.fromKernel(kernelEvent({}));
    assert.deepEqual([named.fqdn, named.fqdnSource], ['api.example.com', 'dns']);
    const tls = e.fromKernel(kernelEvent({ layer: 'tls', sni: 'front.example' }));
    assert.deepEqual([tls.fqdn, tls.fqdnSource], ['front.example', 'sni']);
  });

  test("a workload's own lookup wins over another's for the same address", () => {
    const e = enricher();
    e.fromDns(dnsEvent({ query: 'mine.example' }));
    e.fromDns(dnsEvent({ query: 'theirs.example', workloadKey: null, workloadId: null, sourceIp: '198.18.9.9' }));
    assert.equal(e.fromKernel(kernelEvent({})).fqdn, 'mine.example');
    assert.equal(e.fromKernel(kernelEvent({ workloadId: 99 })).fqdn, 'theirs.example');
  });

  test('DNS events from unknown sources and over IPv6 name the proxy address of their family', () => {
    const e = enricher();
    const unknown = e.fromDns(dnsEvent({ workloadKey: null, workloadId: null, sourceIp: 'fd00:eb::99', reason: 'unknown-source' }));
    assert.deepEqual(
      [unknown.workload.name, unknown.workload.podIps, unknown.destination.ip, unknown.destination.family],
      ['(unknown source)', ['fd00:eb::99'], 'fd00:eb::53', 6],
    );
    assert.equal(unknown.reason, 'unknown-source');
    assert.equal(e.fromDns(dnsEvent({ sourceIp: '::ffff:198.18.1.2' })).destination.ip, '198.18.0.2');
  });

  test('names remembered are bounded: the oldest are forgotten first, a refreshed one is kept', () => {
    const e = enricher({ namesRemembered: 4 });
    e.fromDns(dnsEvent({ query: 'a.example', answers: ['203.0.113.1'] }));
    e.fromDns(dnsEvent({ query: 'b.example', answers: ['203.0.113.2'] }));
    e.fromDns(dnsEvent({ query: 'a.example', answers: ['203.0.113.1'] }));
    e.fromDns(dnsEvent({ query: 'c.example', answers: ['203.0.113.3'] }));
    assert.equal(e.nameOf(3, '203.0.113.2'), null, 'b went first');
    assert.equal(e.nameOf(3, '203.0.113.1'), 'a.example');
    assert.equal(e.nameOf(3, '203.0.113.3'), 'c.example');
    for (let i = 0; i < 100; i++) e.fromDns(dnsEvent({ query: `n${i}.example`, answers: [`203.0.113.${100 + i}`] }));
    assert.equal(e.nameOf(3, '203.0.113.1'), null);
    assert.equal(e.nameOf(3, '203.0.113.199'), 'n99.example');
    assert.equal(e.nameOf(3, '203.0.113.197'), null, 'two entries per answer (workload and node-wide): 4 hold two addresses');
  });
});

describe('Enricher: packet-layer drops no rule decided', () => {
  test('a forged-source drop names the workload, the forged source and the reason, never another workload’s name', () => {
    const e = enricher();
    // Another workload resolved the destination; the forging workload never did.
    e.fromDns(dnsEvent({ query: 'theirs.example', workloadKey: null, workloadId: null, sourceIp: '198.18.9.9' }));
    const event = e.fromKernel(
      kernelEvent({ layer: 'packet', tier: 0, ruleId: 0, pid: 0, comm: '', source: '198.18.9.9', reason: 'forged-source' }),
    );
    assert.deepEqual(
      [event.workload.name, event.source, event.reason, event.rule, event.tier, event.policy, event.fqdn],
      ['one', { ip: '198.18.9.9' }, 'forged-source', 'packet-integrity', 0, null, null],
    );
    // A packet-layer event a rule decided keeps the rule's label and the source it carried.
    const judged = e.fromKernel(kernelEvent({ layer: 'packet', tier: 3, source: '198.18.1.2' }));
    assert.deepEqual([judged.rule, judged.reason, judged.source], ['default-action', undefined, { ip: '198.18.1.2' }]);
  });
});

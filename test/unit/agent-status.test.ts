import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { agentStatus, formatStatus } from '../../src/agent/status.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { controlPlane, firewallPolicy, workload } from './control-plane-helpers.js';

const ONE = workload('one', { app: 'one' });
const TWO = workload('two', { app: 'two' });

function statusOf(kernelFeatures = { socketDestroy: true }) {
  const cp = controlPlane();
  cp.datapath.kernelFeatures = kernelFeatures;
  cp.apply('/etc/p.yaml', firewallPolicy({ name: 'p', app: 'one', domains: ['api.example.com', '*.cdn.example'] }));
  cp.reconciler.setWorkloads([ONE, TWO]);
  const workloadId = cp.reconciler.registry.byKey('team/one')!.workloadId;
  const expiresAtNs = process.hrtime.bigint() + 30_000_000_000n;
  cp.datapath.learn([{ workloadId, ruleId: ruleIdFor('team', 'p', 'allow'), ip: '203.0.113.10', expiresAtNs }]);
  cp.datapath.learn([{ workloadId, ruleId: 4242, ip: '203.0.113.11', expiresAtNs: 0n }]);
  cp.datapath.counters.decisionsDenied = 7n;
  return agentStatus({
    config: {
      node: 'node-a',
      baseline: { mode: 'enforce', permits: [], denyList: [], dnsNames: [], denyEch: false },
      enforcement: { tls: true, packet: false },
    },
    configDigest: 'c0ffee',
    kernelRelease: '6.1.0',
    datapath: cp.datapath,
    reconciler: cp.reconciler,
    rejected: [{ file: '/etc/bad.yaml', messages: ['error: spec.rules[0].action must be permit or deny'] }],
    pipeline: {
      received: 1,
      emitted: 1,
      aggregated: 0,
      droppedByLimit: 0,
      kernelEventsLost: 0,
      kernelEventsMalformed: 0,
      suppressedByRateLimit: 0,
      openAggregates: 0,
    },
    sinks: {},
    dns: null,
  });
}

describe('agent status', () => {
  const status = statusOf();

  test('policies: file, generation, ruleset, the workloads they select', () => {
    assert.equal(status.policies.length, 1);
    const [p] = status.policies;
    assert.deepEqual(
      [p!.name, p!.file, p!.generation, p!.lastReconciledGeneration, p!.workloads],
      ['p', '/etc/p.yaml', 1, 1, ['team/one']],
    );
    assert.match(p!.ruleset, /^[0-9a-f]{16}$/);
  });

  test('workloads: allowed names, rules in evaluation order, learned addresses with expiry and rule name', () => {
    const one = status.workloads.find((w) => w.key === 'team/one')!;
    assert.deepEqual(one.allowedNames, ['api.example.com', '*.cdn.example']);
    assert.deepEqual(
      one.rules.map((r) => [r.name, r.action, r.protocol, r.ports, r.domains, r.destinations]),
      [
        ['allow', 'permit', 'tcp', '443', ['api.example.com', '*.cdn.example'], ['any']],
        ['deny-all', 'deny', 'any', 'any', null, ['any']], // a deny's default route covers both families,
      ],
    );
    assert.deepEqual(
      one.learned.map((l) => [l.ip, l.rule]),
      [
        ['203.0.113.10', 'team/p:allow'],
        ['203.0.113.11', 'rule#4242'],
      ],
    );
    assert.ok(one.learned[0]!.expiresInSeconds >= 29 && one.learned[0]!.expiresInSeconds <= 30);
    assert.equal(one.learned[1]!.expiresInSeconds, 0, 'expired entries show 0, never a negative time');
    assert.deepEqual(status.workloads.find((w) => w.key === 'team/two')?.rules, []);
  });

  test('counters: pipeline and kernel counters, kernel ones as decimal strings', () => {
    assert.equal(status.stats.received, 1);
    assert.equal(status.stats.decisionsDenied, '7');
    assert.equal(
      Object.keys(status.stats).some((k) => k.startsWith('dns.')),
      false,
      'no DNS counters without the proxy',
    );
  });

  test('kernel features: each optional one available or not, and what is weaker without it', () => {
    assert.deepEqual([status.features, status.degraded], [{ socketDestroy: true }, []]);
    const older = statusOf({ socketDestroy: false });
    assert.deepEqual(older.features, { socketDestroy: false });
    assert.equal(older.degraded.length, 1);
    assert.match(older.degraded[0]!, /^this kernel \(6\.1\.0\) lacks bpf_sock_destroy .*every packet they send is dropped instead/);
    const text = formatStatus(older);
    assert.match(text, /^kernel features: socketDestroy MISSING$/m);
    assert.match(text, /^DEGRADED: this kernel \(6\.1\.0\) lacks bpf_sock_destroy/m);
    assert.match(formatStatus(status), /^kernel features: socketDestroy available$/m);
  });

  test('the text form names the policy, the rejected file, each workload and its rules', () => {
    const text = formatStatus(status);
    assert.match(text, /^node node-a {2}mode enforce$/m);
    assert.match(text, /team\/p {2}generation 1 {2}ruleset [0-9a-f]{16} {2}workloads: team\/one/);
    assert.match(text, /REJECTED \/etc\/bad\.yaml \(last good version stays in force\):\n {4}error: spec\.rules\[0\]\.action/);
    assert.match(text, /workload team\/one {2}labels app=one/);
    assert.match(text, / {2}1\. permit tcp\/443 {2}domains api\.example\.com, \*\.cdn\.example {2}\[team\/p:allow\]/);
    assert.match(text, /workload team\/two[^\n]*\n[^\n]*\n[^\n]*\n {2}no FirewallPolicy rules select it: tier 3 default applies/);
    assert.match(text, /counters: .*decisionsDenied=7/);
  });
});

import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { compileForWorkload } from '../../src/policy/compile.js';
import { decideName } from '../../src/policy/dns-decision.js';
import { rulesInForce, snapshotOracle } from '../../src/agent/dns-policy.js';
import { firewallPolicy } from './control-plane-helpers.js';
import { acceptPolicies } from './policy-helpers.js';

const APP = { namespace: 'team', labels: { app: 'one' } };
const enforce = { dnsNames: ['cluster.local'], mode: 'enforce' as const };
const discovery = { dnsNames: ['cluster.local'], mode: 'discovery' as const };

function rulesOf(text: string) {
  return compileForWorkload(acceptPolicies(text), APP);
}

const allowApi = rulesOf(firewallPolicy({ name: 'p', app: 'one', domains: ['api.example.com', '*.cdn.example'] }));

describe('decideName', () => {
  test('baseline DNS names are answered whatever the rules say (tier 1), the suffix is named', () => {
    const decision = decideName(allowApi, 'Kube-DNS.kube-system.svc.cluster.local.', enforce);
    assert.deepEqual(decision, { verdict: 'permitted', tier: 1, ruleName: 'baseline-dns:cluster.local', policy: null, learnFor: [] });
    assert.equal(decideName([], 'cluster.local', enforce).tier, 1);
    assert.equal(decideName([], 'notcluster.local', enforce).tier, 3);
  });

  test('a permit rule allows its names and learns for that rule; other names fall to the deny-all rule', () => {
    const allowed = decideName(allowApi, 'api.example.com', enforce);
    assert.deepEqual(allowed, {
      verdict: 'permitted',
      tier: 2,
      ruleName: 'allow',
      policy: { namespace: 'team', name: 'p', generation: 1 },
      learnFor: [ruleIdFor('team', 'p', 'allow')],
    });
    assert.equal(decideName(allowApi, 'x.cdn.example', enforce).verdict, 'permitted');
    const denied = decideName(allowApi, 'evil.example', discovery);
    assert.deepEqual([denied.verdict, denied.tier, denied.ruleName, denied.learnFor], ['denied', 2, 'deny-all', []]);
  });

  test('without a deciding rule the mode decides (tier 3): enforce denies, discovery permits', () => {
    assert.deepEqual(decideName([], 'anything.example', enforce), {
      verdict: 'denied',
      tier: 3,
      ruleName: 'default-action',
      policy: null,
      learnFor: [],
    });
    assert.equal(decideName([], 'anything.example', discovery).verdict, 'permitted');
  });

  test('learnFor leaves out `*` rules (the kernel accepts any address for them) but keeps named ones', () => {
    const extraRule = `    - name: anything
      action: permit
      protocol: tcp
      port: 8443
      selector: { matchLabels: { app: one } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: everything }]
`;
    const text = firewallPolicy({ name: 'p', app: 'one', domains: ['api.example.com'], extraRule }).replace(
      '  rules:\n',
      '    - name: everything\n      domains: ["*"]\n  rules:\n',
    );
    const rules = rulesOf(text);
    assert.ok(
      rules.some((r) => r.domains?.some((d) => d.kind === 'any')),
      'the policy has a `*` rule',
    );
    assert.deepEqual(decideName(rules, 'api.example.com', enforce).learnFor, [ruleIdFor('team', 'p', 'allow')]);
    const other = decideName(rules, 'other.example', enforce);
    assert.deepEqual([other.verdict, other.ruleName, other.learnFor], ['permitted', 'anything', []]);
  });
});

describe('the policy snapshot the DNS proxy worker decides from', () => {
  test('after crossing to another thread (structured clone), it decides every name as decideName does', () => {
    const snapshot = structuredClone({
      workloadsKnown: false,
      workloads: [{ key: 'team/one', workloadId: 4, addresses: ['198.18.1.4', 'fd00:eb::4'], rules: allowApi }],
      baseline: enforce,
    });
    const oracle = snapshotOracle(snapshot);
    assert.deepEqual(oracle.workloadFor('::ffff:198.18.1.4'), { key: 'team/one', workloadId: 4 });
    assert.deepEqual(oracle.workloadFor('fd00:eb::4'), { key: 'team/one', workloadId: 4 });
    assert.equal(oracle.workloadFor('198.18.1.5'), null);
    const workload = { key: 'team/one', workloadId: 4 };
    for (const name of ['api.example.com', 'x.cdn.example', 'evil.example', 'kube-dns.kube-system.svc.cluster.local', 'API.Example.com.']) {
      assert.deepEqual(oracle.decide(workload, name), decideName(allowApi, name, enforce), name);
    }
    assert.deepEqual(oracle.decide({ key: 'team/gone', workloadId: 9 }, 'api.example.com'), decideName([], 'api.example.com', enforce));
    assert.deepEqual(rulesInForce(snapshot), new Map([[4, new Set(allowApi.map((rule) => rule.ruleId))]]));
    assert.equal(oracle.workloadsKnown?.(), false, 'a new agent before its first workload report leaves unknown sources unanswered');
    assert.equal(snapshotOracle({ ...snapshot, workloadsKnown: true }).workloadsKnown?.(), true);
  });
});

// What a FirewallPolicy means (docs/policy-semantics.md): default routes per action, families, deny webGroups
// shadowing later permits, collision-free rule ids.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { ruleCidrEntries } from '../../src/datapath/datapath.js';
import { formatCidr } from '../../src/policy/cidr.js';
import { compileForWorkload } from '../../src/policy/compile.js';
import { dnsDecision } from '../../src/policy/domains.js';
import { controlPlane, firewallPolicy, workload } from './control-plane-helpers.js';
import { FAIL_CLOSED_RULE_ID } from '../../src/agent/reconciler.js';
import { FIRST_ALLOCATED_RULE_ID, RuleIdAllocator, ruleIdFor } from '../../src/policy/rule-ids.js';
import { acceptPolicies, policyWith, translatorPolicy } from './policy-helpers.js';
import { collidingRules } from '../support/rule-ids.js';

const pod = (app: string) => ({ namespace: 'obot-mcp', labels: { app } });
const entries = (rule: Parameters<typeof ruleCidrEntries>[0]) =>
  [...ruleCidrEntries(rule)].map(([cidr, value]) => `${formatCidr(cidr)}=${value}`);

describe('default routes per action', () => {
  test("the translator's deny-all-external (0.0.0.0/0 only) denies every destination of both families", () => {
    const [deny] = compileForWorkload(acceptPolicies(translatorPolicy('ms1deny', {})), pod('ms1deny'));
    assert.equal(deny?.name, 'deny-all-external');
    assert.equal(deny?.anyDestination, true);
  });

  test('a deny with ::/0 alone also covers IPv4; a deny with a narrower prefix keeps its family', () => {
    const rules = (cidr: string) =>
      compileForWorkload(
        acceptPolicies(
          policyWith({
            smartGroups: `    - name: dest\n      selectors:\n        - cidr: ${cidr}`,
            rules: `    - name: deny\n      action: deny\n      selector: {matchLabels: {app: a1}}\n      destinationSmartGroups: [{name: dest}]`,
          }),
        ),
        pod('a1'),
      );
    assert.equal(rules('::/0')[0]?.anyDestination, true);
    assert.equal(rules('10.0.0.0/8')[0]?.anyDestination, false);
    assert.equal(rules('::/1')[0]?.anyDestination, false);
  });

  test('a plain permit keeps its family: 0.0.0.0/0 is IPv4 only, ::/0 IPv6 only (never IPv4-mapped addresses)', () => {
    const permit = (cidrs: string[]) =>
      compileForWorkload(
        acceptPolicies(
          policyWith({
            smartGroups: `    - name: dest\n      selectors:\n${cidrs.map((c) => `        - cidr: ${c}`).join('\n')}`,
            rules: `    - name: allow\n      action: permit\n      selector: {matchLabels: {app: a1}}\n      destinationSmartGroups: [{name: dest}]`,
          }),
        ),
        pod('a1'),
      )[0]!;
    assert.equal(permit(['0.0.0.0/0']).anyDestination, false);
    assert.deepEqual(entries(permit(['0.0.0.0/0'])), ['0.0.0.0/0=1']);
    assert.equal(permit(['::/0']).anyDestination, false);
    assert.deepEqual(entries(permit(['::/0'])), ['::/0=1', '0.0.0.0/0=0'], 'an exclusion keeps IPv4 out of ::/0');
    assert.deepEqual(
      entries(permit(['::/0', '10.0.0.0/8'])),
      ['::/0=1', '10.0.0.0/8=1', '0.0.0.0/0=0'],
      'its own IPv4 prefixes still match',
    );
    assert.deepEqual(entries(permit(['::/0', '0.0.0.0/0'])), ['::/0=1', '0.0.0.0/0=1']);
    assert.deepEqual(entries(permit(['fd00::/8'])), ['fd00::/8=1'], 'a prefix outside ::ffff:0:0/96 needs no exclusion');
  });
});

describe('a deny webGroup rule holds for its names whatever a later rule permits', () => {
  const policy = (denyPort: string) =>
    policyWith({
      webGroups: `    - name: x-any\n      domains: ["*.x.com"]\n    - name: x-api\n      domains: ["api.x.com", "docs.y.com"]`,
      rules: `    - name: deny-x
      action: deny
      protocol: tcp
${denyPort}      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
      webGroups: [{name: x-any}]
    - name: allow-api
      action: permit
      protocol: tcp
      port: 443
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
      webGroups: [{name: x-api}]`,
    });

  test('DNS: denied, and its answers are learned for the deny only; other names of the permit still work', () => {
    const rules = compileForWorkload(acceptPolicies(policy('')), pod('a1'));
    const api = dnsDecision(rules, 'api.x.com');
    assert.deepEqual([api.action, api.rule?.name, api.learnFor.map((r) => r.name)], ['deny', 'deny-x', ['deny-x']]);
    const docs = dnsDecision(rules, 'docs.y.com');
    assert.deepEqual([docs.action, docs.learnFor.map((r) => r.name)], ['permit', ['allow-api']]);
  });

  test("the agent's own resolution skips shadowed names; a deny on other ports shadows nothing", () => {
    const names = (denyPort: string) => {
      const cp = controlPlane();
      cp.apply('p.yaml', policy(denyPort).replaceAll('obot-mcp', 'team'));
      cp.reconciler.setWorkloads([workload('one', { app: 'a1' })]);
      return cp.reconciler.exactNames().map((n) => n.name);
    };
    assert.deepEqual(names(''), ['docs.y.com']);
    assert.deepEqual(names('      port: 8443\n'), ['api.x.com', 'docs.y.com']);
  });
});

describe('rule ids are collision-free', () => {
  test("a rule name colliding with another policy's rule gets its own id; neither takes the other's domains", () => {
    const [ruleA, ruleB] = collidingRules('team', 'pa', 'pb');
    assert.equal(ruleIdFor('team', 'pa', ruleA), ruleIdFor('team', 'pb', ruleB), 'the hashes do collide');
    const web = (policy: string, rule: string, app: string, domain: string) =>
      firewallPolicy({ name: policy, app, domains: [domain] }).replace('- name: allow\n', `- name: ${rule}\n`);
    const cp = controlPlane();
    cp.reconciler.setWorkloads([workload('one', { app: 'one' }), workload('two', { app: 'two' })]);
    cp.apply('a.yaml', web('pa', ruleA, 'one', 'allowed.example.com'));
    cp.apply('b.yaml', web('pb', ruleB, 'two', 'forbidden.example.com'));
    const [one] = cp.reconciler.rulesFor('team/one');
    const [two] = cp.reconciler.rulesFor('team/two');
    assert.notEqual(one!.ruleId, two!.ruleId);
    const kernel = (path: string) => [...cp.datapath.enrolled.values()].find((w) => w.cgroupPath === path)!.rules[0]!;
    assert.deepEqual(
      [kernel(workload('one', {}).cgroupPath).ruleId, kernel(workload('two', {}).cgroupPath).ruleId],
      [one!.ruleId, two!.ruleId],
    );
    assert.equal(cp.reconciler.ruleLabel(two!.ruleId)?.policy?.name, 'pb');
    assert.equal(cp.reconciler.ruleLabel(one!.ruleId)?.policy?.name, 'pa');
    // Ids stay put while their rules exist, and a freed id is not handed out while its rule is still in the kernel.
    cp.remove('a.yaml');
    cp.apply('a.yaml', web('pa', ruleA, 'one', 'allowed.example.com'));
    assert.notEqual(cp.reconciler.rulesFor('team/one')[0]!.ruleId, two!.ruleId);
    assert.equal(cp.reconciler.rulesFor('team/two')[0]!.ruleId, two!.ruleId);
  });

  test('ids never take the reserved values (0: none, 1: fail-closed)', () => {
    const ids = new RuleIdAllocator();
    for (let i = 0; i < 1000; i++) assert.ok(ids.idFor('team', 'p', `r${i}`) >= FIRST_ALLOCATED_RULE_ID);
    assert.equal(FAIL_CLOSED_RULE_ID < FIRST_ALLOCATED_RULE_ID, true);
  });
});

import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { FAIL_CLOSED_RULE_ID } from '../../src/agent/reconciler.js';
import { decideName } from '../../src/policy/dns-decision.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { controlPlane, firewallPolicy, workload } from './control-plane-helpers.js';

const ONE = workload('one', { app: 'one' });
const TWO = workload('two', { app: 'two' });
const THREE = workload('three', { app: 'three' });
const ids = (name: string, ...rules: string[]) => rules.map((rule) => ruleIdFor('team', name, rule));

describe('Reconciler: enrolment and updates', () => {
  test('each workload gets the rules of the policies that select it, in policy-name order; the others none', () => {
    const cp = controlPlane();
    cp.apply('b.yaml', firewallPolicy({ name: 'b-one', app: 'one' }));
    cp.apply('a.yaml', firewallPolicy({ name: 'a-one', app: 'one', domains: ['api.example.com'] }));
    cp.reconciler.setWorkloads([ONE, TWO]);
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), [...ids('a-one', 'allow', 'deny-all'), ...ids('b-one', 'allow', 'deny-all')]);
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), []);
    assert.deepEqual(
      cp.reconciler.rulesFor('team/one').map((r) => `${r.policy.name}/${r.name}`),
      ['a-one/allow', 'a-one/deny-all', 'b-one/allow', 'b-one/deny-all'],
    );
    const web = [...cp.datapath.enrolled.values()].find((w) => w.cgroupPath === ONE.cgroupPath)!.rules[0]!;
    assert.equal(web.web, true);
    assert.deepEqual(web.domains, [{ kind: 'exact', name: 'api.example.com' }]);
    assert.deepEqual(
      cp.reconciler.registry.all().map((w) => w.name),
      ['one', 'two'],
    );
  });

  test('a policy edit replaces the rules; policy status follows the generation and lists the workloads', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([ONE, TWO]);
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
    const before = cp.reconciler.policyStatus()[0]!;
    assert.deepEqual([before.generation, before.workloads], [1, ['team/one']]);
    assert.notEqual(before.ruleset, '');
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'two' }));
    const after = cp.reconciler.policyStatus()[0]!;
    assert.deepEqual([after.generation, after.lastReconciledGeneration, after.workloads], [2, 2, ['team/two']]);
    assert.notEqual(after.ruleset, before.ruleset);
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), []);
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), ids('p', 'allow', 'deny-all'));
  });

  test('a workload whose labels change is recompiled', () => {
    const cp = controlPlane();
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
    cp.reconciler.setWorkloads([TWO]);
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), []);
    cp.reconciler.setWorkloads([{ ...TWO, labels: { app: 'one' } }]);
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), ids('p', 'allow', 'deny-all'));
    assert.deepEqual(cp.reconciler.registry.byKey('team/two')?.labels, { app: 'one' });
  });

  test('policies of another namespace never apply', () => {
    const cp = controlPlane();
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one', namespace: 'other' }));
    cp.reconciler.setWorkloads([ONE]);
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), []);
    assert.deepEqual(cp.reconciler.policyStatus()[0]?.workloads, []);
  });
});

describe('Reconciler: withdrawal', () => {
  test('removing a policy withdraws its rules and its status; rule labels go with it', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([ONE]);
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
    const [allow] = ids('p', 'allow');
    assert.equal(cp.reconciler.ruleLabel(allow!)?.name, 'allow');
    cp.remove('p.yaml');
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), []);
    assert.deepEqual(cp.reconciler.policyStatus(), []);
    assert.equal(cp.reconciler.ruleLabel(allow!), undefined);
    assert.deepEqual(cp.reconciler.rulesFor('team/one'), []);
  });

  test('workloads no longer reported are withdrawn from the kernel, including ones an earlier agent enrolled', () => {
    const cp = controlPlane();
    cp.datapath.adopt(9_999n, 42);
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'two' }));
    cp.reconciler.setWorkloads([ONE, TWO]);
    assert.deepEqual(cp.datapath.removeWorkloadCalls, [9_999n], 'adopted state the configuration does not name');
    const twoId = cp.datapath.cgroupIds.get(TWO.cgroupPath)!;
    cp.reconciler.setWorkloads([ONE]);
    assert.deepEqual(cp.datapath.removeWorkloadCalls, [9_999n, twoId]);
    assert.deepEqual(
      [...cp.datapath.enrolled.values()].map((w) => w.cgroupPath),
      [ONE.cgroupPath],
    );
    assert.equal(cp.reconciler.registry.byKey('team/two'), null);
    assert.deepEqual(cp.reconciler.policyStatus()[0]?.workloads, []);
  });

  test('a workload whose cgroup is gone is withdrawn from the kernel', () => {
    const missing = new Set<string>();
    const cp = controlPlane({ missingCgroups: missing });
    cp.reconciler.setWorkloads([ONE, TWO]);
    const twoId = cp.datapath.cgroupIds.get(TWO.cgroupPath)!;
    missing.add(TWO.cgroupPath);
    cp.reconciler.setWorkloads([ONE, TWO]);
    assert.deepEqual(cp.datapath.removeWorkloadCalls, [twoId]);
  });
});

describe('Reconciler: failures', () => {
  const denyAll = [FAIL_CLOSED_RULE_ID];
  const manyRules = (count: number) =>
    Array.from(
      { length: count },
      (_, i) => `    - name: extra-${i}
      action: permit
      protocol: tcp
      port: ${1000 + i}
      selector: { matchLabels: { app: two } }
      destinationSmartGroups: [{ name: any-destination }]
`,
    ).join('');

  test('a workload whose rules the kernel cannot hold is enrolled deny-all, reported, and gets its rules once they fit', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([ONE, TWO, THREE]);
    cp.apply(
      'p.yaml',
      [firewallPolicy({ name: 'p', app: 'one' }), firewallPolicy({ name: 'q', app: 'two', extraRule: manyRules(70) })].join('---\n'),
    );
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), ids('p', 'allow', 'deny-all'), 'the others get their rules');
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), denyAll, 'fail closed: deny-all');
    const [failure, ...others] = cp.reconciler.failures();
    assert.equal(others.length, 0);
    assert.equal(failure!.key, 'team/two');
    assert.equal(failure!.enforced, 'deny-all');
    assert.match(failure!.error, /its rules cannot be enforced: .*72 rules; the kernel evaluates at most 64/);
    assert.deepEqual(
      cp.reconciler.rulesFor('team/two').map((r) => r.ruleId),
      denyAll,
      'DNS decisions follow what the kernel enforces',
    );
    assert.equal(cp.reconciler.ruleLabel(FAIL_CLOSED_RULE_ID)?.name.startsWith('fail-closed'), true, 'its denials are attributed to it');
    assert.equal(cp.reconciler.registry.byKey('team/two')?.name, 'two', 'the DNS proxy still answers it (and denies)');
    cp.apply(
      'p.yaml',
      [firewallPolicy({ name: 'p', app: 'one' }), firewallPolicy({ name: 'q', app: 'two', extraRule: manyRules(2) })].join('---\n'),
    );
    assert.equal(cp.datapath.ruleIdsOf(TWO.cgroupPath)?.length, 4);
    assert.deepEqual(cp.reconciler.failures(), []);
  });

  test('a fail-closed workload is denied every name by the DNS proxy, also in discovery mode', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([TWO]);
    cp.apply('p.yaml', firewallPolicy({ name: 'q', app: 'two', domains: ['api.example.com'], extraRule: manyRules(70) }));
    const decision = decideName(cp.reconciler.rulesFor('team/two'), 'api.example.com', { dnsNames: [], mode: 'discovery' });
    assert.equal(decision.verdict, 'denied');
    assert.deepEqual(decision.learnFor, []);
  });

  test('a 252-character domain (valid DNS, too long for the kernel) fails the workload closed', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([TWO]);
    const label = 'a'.repeat(63);
    cp.apply('p.yaml', firewallPolicy({ name: 'q', app: 'two', domains: [`${label}.${label}.${label}.${'b'.repeat(56)}.com`] }));
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), denyAll);
    assert.match(cp.reconciler.failures()[0]!.error, /has 252 characters; the kernel matches at most 251/);
  });

  test('when even deny-all cannot be written the workload is reported NOT enforced, and retried', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([ONE, TWO, THREE]);
    cp.datapath.failSetWorkload.set(TWO.cgroupPath, new Error('map full'));
    cp.apply('p.yaml', [firewallPolicy({ name: 'p', app: 'one' }), firewallPolicy({ name: 'q', app: 'two' })].join('---\n'));
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), ids('p', 'allow', 'deny-all'));
    assert.deepEqual(cp.reconciler.rulesFor('team/two'), []);
    assert.deepEqual(
      cp.reconciler.failures().map((f) => [f.key, f.enforced]),
      [['team/two', 'none']],
    );
    assert.deepEqual(cp.reconciler.policyStatus().find((p) => p.name === 'q')?.workloads, []);
    cp.datapath.failSetWorkload.clear();
    cp.apply('r.yaml', firewallPolicy({ name: 'r', app: 'three' }));
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), ids('q', 'allow', 'deny-all'), 'retried on the next pass');
    assert.deepEqual(cp.datapath.ruleIdsOf(THREE.cgroupPath), ids('r', 'allow', 'deny-all'));
    assert.deepEqual(cp.reconciler.failures(), []);
  });

  test('a workload whose cgroup does not exist is not enrolled and is reported; the others are enrolled', () => {
    const cp = controlPlane({ missingCgroups: new Set([ONE.cgroupPath]) });
    cp.reconciler.setWorkloads([ONE, TWO]);
    assert.deepEqual(cp.datapath.setWorkloadCalls, [TWO.cgroupPath]);
    assert.deepEqual(
      cp.reconciler.registry.all().map((w) => w.name),
      ['two'],
    );
    const [failure] = cp.reconciler.failures();
    assert.equal(failure?.enforced, 'none');
    assert.match(failure!.error, /cgroup \/sys\/fs\/cgroup\/test\/team\/one cannot be enrolled: ENOENT/);
  });

  test('backstop interfaces that cannot be found: deny-all until they are, then its rules with the backstop', () => {
    const found: string[][] = [];
    let interfaces: string[] | null = null;
    const cp = controlPlane({
      packet: true,
      interfacesOf: () => {
        if (interfaces === null) throw new Error('no veth peer');
        found.push(interfaces);
        return interfaces;
      },
    });
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
    cp.reconciler.setWorkloads([ONE]);
    const enrolled = () => [...cp.datapath.enrolled.values()][0]!;
    assert.deepEqual([enrolled().network, enrolled().rules.map((r) => r.ruleId)], [undefined, denyAll]);
    assert.match(cp.reconciler.failures()[0]!.error, /packet-layer backstop cannot be attached: no veth peer/);
    interfaces = ['veth-one'];
    cp.reconciler.setWorkloads([ONE]);
    assert.deepEqual(
      [enrolled().network, enrolled().rules.map((r) => r.ruleId)],
      [{ interfaces: ['veth-one'], addresses: ONE.addresses }, ids('p', 'allow', 'deny-all')],
    );
    cp.reconciler.setWorkloads([ONE]);
    assert.equal(found.length, 1, 'once found, an unchanged workload is not enrolled again');
  });

  test('an interface the datapath cannot attach (missing, or no addresses): deny-all at the socket layer', () => {
    const cp = controlPlane({ packet: true });
    cp.datapath.failNetwork.set(ONE.cgroupPath, new Error('interface veth-gone not found'));
    cp.apply('p.yaml', firewallPolicy({ name: 'p', app: 'one' }));
    cp.reconciler.setWorkloads([{ ...ONE, interfaces: ['veth-gone'] }]);
    const w = [...cp.datapath.enrolled.values()][0]!;
    assert.deepEqual([w.network, w.rules.map((r) => r.ruleId)], [undefined, denyAll]);
    assert.match(
      cp.reconciler.failures()[0]!.error,
      /its rules cannot be enforced: interface veth-gone not found; deny-all with backstop failed too/,
    );
  });
});

describe('Reconciler: incremental', () => {
  const many = Array.from({ length: 20 }, (_, i) => workload(`w${i}`, { app: `app${i % 5}` }));

  function populated() {
    const cp = controlPlane();
    cp.apply('all.yaml', Array.from({ length: 5 }, (_, i) => firewallPolicy({ name: `p${i}`, app: `app${i}` })).join('---\n'));
    cp.reconciler.setWorkloads(many);
    cp.compiler.reset();
    cp.datapath.setWorkloadCalls.splice(0);
    return cp;
  }

  test('a change to one policy recompiles and re-enrols only the workloads it selects', () => {
    const cp = populated();
    cp.apply('extra.yaml', firewallPolicy({ name: 'extra', app: 'app2' }));
    const selected = many.filter((w) => w.labels.app === 'app2');
    assert.deepEqual(
      cp.datapath.setWorkloadCalls,
      selected.map((w) => w.cgroupPath),
    );
    assert.deepEqual(
      cp.compiler.compiled,
      selected.map((w) => `${w.name}<-extra`),
    );
  });

  test('a policy that stops selecting a workload re-enrols it without compiling it', () => {
    const cp = populated();
    cp.apply(
      'all.yaml',
      Array.from({ length: 5 }, (_, i) => firewallPolicy({ name: `p${i}`, app: i === 1 ? 'nobody' : `app${i}` })).join('---\n'),
    );
    const previously = many.filter((w) => w.labels.app === 'app1');
    assert.deepEqual(
      cp.datapath.setWorkloadCalls,
      previously.map((w) => w.cgroupPath),
    );
    assert.deepEqual(cp.compiler.compiled, []);
    for (const w of previously) assert.deepEqual(cp.datapath.ruleIdsOf(w.cgroupPath), []);
  });

  test('a change to one workload recompiles that workload only; an unchanged set touches nothing', () => {
    const cp = populated();
    cp.reconciler.setWorkloads(many);
    assert.deepEqual([cp.datapath.setWorkloadCalls, cp.compiler.compiled], [[], []]);
    const changed = many.map((w) => (w.name === 'w7' ? { ...w, labels: { app: 'app0' } } : w));
    cp.reconciler.setWorkloads(changed);
    assert.deepEqual(cp.datapath.setWorkloadCalls, [many[7]!.cgroupPath]);
    assert.deepEqual(cp.compiler.compiled, ['w7<-p0']);
    assert.deepEqual(cp.datapath.ruleIdsOf(many[7]!.cgroupPath), ids('p0', 'allow', 'deny-all'));
  });

  test('re-applying an unchanged file recompiles nothing', () => {
    const cp = populated();
    cp.apply('all.yaml', Array.from({ length: 5 }, (_, i) => firewallPolicy({ name: `p${i}`, app: `app${i}` })).join('---\n'));
    assert.deepEqual([cp.datapath.setWorkloadCalls, cp.compiler.compiled], [[], []]);
  });

  test('incremental passes end where a full reconcile of the same state does', () => {
    const cp = populated();
    cp.apply('extra.yaml', firewallPolicy({ name: 'extra', app: 'app3', domains: ['a.example'] }));
    cp.remove('all.yaml');
    cp.apply('all.yaml', firewallPolicy({ name: 'p4', app: 'app1' }));
    cp.reconciler.setWorkloads(many.slice(3));
    const fresh = controlPlane({ store: cp.store });
    fresh.reconciler.syncPolicies();
    fresh.reconciler.setWorkloads(many.slice(3));
    for (const w of many.slice(3))
      assert.deepEqual(cp.reconciler.rulesFor(`team/${w.name}`), fresh.reconciler.rulesFor(`team/${w.name}`), w.name);
    assert.deepEqual(cp.reconciler.policyStatus(), fresh.reconciler.policyStatus());
  });
});

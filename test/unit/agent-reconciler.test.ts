import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
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
  test('a workload whose setWorkload throws keeps its previous rules; the others get theirs; it is retried', () => {
    const cp = controlPlane();
    cp.reconciler.setWorkloads([ONE, TWO, THREE]);
    cp.datapath.failSetWorkload.set(TWO.cgroupPath, new Error('map full'));
    cp.apply('p.yaml', [firewallPolicy({ name: 'p', app: 'one' }), firewallPolicy({ name: 'q', app: 'two' })].join('---\n'));
    assert.deepEqual(cp.datapath.ruleIdsOf(ONE.cgroupPath), ids('p', 'allow', 'deny-all'));
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), [], 'its previous (empty) rules stay in force');
    assert.deepEqual(cp.reconciler.rulesFor('team/two'), [], 'DNS decisions follow what the kernel enforces');
    assert.deepEqual(cp.reconciler.policyStatus().find((p) => p.name === 'q')?.workloads, []);
    cp.datapath.failSetWorkload.clear();
    cp.apply('r.yaml', firewallPolicy({ name: 'r', app: 'three' }));
    assert.deepEqual(cp.datapath.ruleIdsOf(TWO.cgroupPath), ids('q', 'allow', 'deny-all'), 'retried on the next pass');
    assert.deepEqual(cp.datapath.ruleIdsOf(THREE.cgroupPath), ids('r', 'allow', 'deny-all'));
  });

  test('a workload whose cgroup does not exist is not enrolled; the others are', () => {
    const cp = controlPlane({ missingCgroups: new Set([ONE.cgroupPath]) });
    cp.reconciler.setWorkloads([ONE, TWO]);
    assert.deepEqual(cp.datapath.setWorkloadCalls, [TWO.cgroupPath]);
    assert.deepEqual(
      cp.reconciler.registry.all().map((w) => w.name),
      ['two'],
    );
  });

  test('backstop interfaces that cannot be found: enrolled without them, retried later', () => {
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
    cp.reconciler.setWorkloads([ONE]);
    const enrolled = () => [...cp.datapath.enrolled.values()][0]!.network;
    assert.deepEqual(enrolled(), { interfaces: [], addresses: ONE.addresses });
    interfaces = ['veth-one'];
    cp.reconciler.setWorkloads([ONE]);
    assert.deepEqual(enrolled(), { interfaces: ['veth-one'], addresses: ONE.addresses });
    cp.reconciler.setWorkloads([ONE]);
    assert.equal(found.length, 1, 'once found, an unchanged workload is not enrolled again');
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

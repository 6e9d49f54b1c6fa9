// The change journal end to end (PolicyStore.changesSince, Reconciler.syncPolicies, NodeReportBuilder): after any
// sequence of policy and pod changes, the node report kept from what each change touched equals the report
// recomputed from every policy, and the journal-driven reconciler enforces what a fresh one reading the whole store
// would.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { WorkloadSpec } from '../../src/identity/source.js';
import { PolicyObjects, type PolicyObject } from '../../src/k8s/policy-source.js';
import { NodeReportBuilder } from '../../src/k8s/status-writer.js';
import { PolicyStore } from '../../src/policy/store.js';
import { fullNodeReport } from '../support/node-report.js';
import { controlPlane, firewallPolicy, silentLog, workload, type ControlPlane } from './control-plane-helpers.js';

const NAMESPACES = ['obot-mcp', 'tools'];
const APPS = ['a0', 'a1', 'a2', 'a3'];
const INVALID_RULE = `    - name: broken
      action: maybe
      selector: { matchLabels: { app: a0 } }
      destinationSmartGroups: [{ name: any-destination }]
`;

/** Deterministic pseudo-random numbers (mulberry32), so a failing seed can be replayed. */
function random(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** What a reconciler enforces, without the ids and digests of its own allocation: comparable across reconcilers. */
function enforcedState(cp: ControlPlane) {
  return {
    workloads: cp.reconciler.enrolled().map(({ workload, rules }) => ({
      key: `${workload.namespace}/${workload.name}`,
      rules: rules.map(({ ruleId: _id, ...rule }) => rule),
    })),
    policies: cp.reconciler.policyStatus().map(({ ruleset, ...status }) => ({ ...status, compiled: ruleset !== '' })),
  };
}

function run(seed: number, steps: number): void {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[next(items.length)]!;
  const missingCgroups = new Set<string>();
  const cp = controlPlane({ missingCgroups, store: new PolicyStore() });
  const objects = new PolicyObjects(() => null, silentLog);
  objects.connect({ apply: (changes) => cp.store.applyFiles(changes), commit: () => cp.reconciler.syncPolicies() });
  const acceptedGeneration = (namespace: string, name: string) => objects.acceptedGeneration(namespace, name);
  // Wired as PolicyPlane wires it: the policies of every reconciler pass and of every policy source batch.
  const report = new NodeReportBuilder('n1', (key) => cp.reconciler.enforcement(key), acceptedGeneration);
  cp.reconciler.onApplied((policies) => report.refresh(policies));
  objects.onChange((policies) => report.refresh(policies));

  const pods = new Map<string, WorkloadSpec>();
  const generations = new Map<string, number>();
  const specs = new Map<string, string>();
  const send = (namespace: string, name: string, text: string, generation: number) => {
    const object = parseYaml(text) as PolicyObject;
    object.metadata = { ...object.metadata, generation, resourceVersion: String(generation) };
    objects.changed('FirewallPolicy', object, object);
    generations.set(`${namespace}/${name}`, generation);
    specs.set(`${namespace}/${name}`, text);
  };
  const done: string[] = [];
  for (let step = 0; step < steps; step++) {
    const namespace = pick(NAMESPACES);
    const policy = `p${next(6)}`;
    const key = `${namespace}/${policy}`;
    const generation = (generations.get(key) ?? 0) + 1;
    const pod = `pod${next(8)}`;
    const op = next(8);
    if (op <= 1) {
      const domains = next(2) === 0 ? [] : [`api${next(3)}.example.com`];
      send(namespace, policy, firewallPolicy({ name: policy, namespace, app: pick(APPS), domains }), generation);
      done.push(`set ${key}`);
    } else if (op === 2 && specs.has(key)) {
      send(namespace, policy, specs.get(key)!, generation);
      done.push(`same spec, new generation ${key}`);
    } else if (op === 3) {
      send(namespace, policy, firewallPolicy({ name: policy, namespace, app: pick(APPS), extraRule: INVALID_RULE }), generation);
      done.push(`invalid ${key}`);
    } else if (op === 4 && specs.has(key)) {
      const [ns, name] = key.split('/');
      objects.changed('FirewallPolicy', null, { metadata: { namespace: ns, name } });
      specs.delete(key);
      done.push(`delete ${key}`);
    } else if (op === 5) {
      pods.set(`${namespace}/${pod}`, workload(pod, { app: pick(APPS) }, namespace));
      done.push(`pod ${namespace}/${pod}`);
    } else if (op === 6) {
      pods.delete(`${namespace}/${pod}`);
      done.push(`pod gone ${namespace}/${pod}`);
    } else {
      const path = workload(pod, {}, namespace).cgroupPath;
      if (!missingCgroups.delete(path)) missingCgroups.add(path);
      done.push(`cgroup toggled ${namespace}/${pod}`);
    }
    objects.flush();
    cp.reconciler.setWorkloads([...pods.values()]);

    const context = `seed ${seed}, after: ${done.slice(-5).join('; ')}`;
    assert.deepEqual(report.report(), fullNodeReport('n1', cp.reconciler, acceptedGeneration), context);
    const fresh = controlPlane({ missingCgroups, store: cp.store });
    fresh.reconciler.setWorkloads([...pods.values()]);
    fresh.reconciler.syncPolicies();
    assert.deepEqual(enforcedState(cp), enforcedState(fresh), context);
  }
  assert.ok(Object.keys(report.report().policies).length > 0, 'the sequence reached reports with policies in them');
}

describe('change journal and node report', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    test(`random policy and pod changes, seed ${seed}: journal-driven report = full recomputation`, () => run(seed, 150));
  }
});

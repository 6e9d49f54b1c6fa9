// The Kubernetes policy source's core (PolicyObjects) into the real store and reconciler: API objects become enforced
// rules; an invalid generation keeps the last good one; a wrong group/version never reaches the compiler; a Service
// change re-selects; status-only updates cost nothing.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { PolicyObjects, type PolicyObject } from '../../src/k8s/policy-source.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { controlPlane, silentLog, workload } from './control-plane-helpers.js';
import { translatorPolicy } from './policy-helpers.js';

const BENIGN = workload('ms1a-0', { app: 'ms1a' }, 'obot-mcp');
const ROGUE = workload('ms1b-0', { app: 'ms1b' }, 'obot-mcp');

function apiObject(yamlText: string, generation: number): PolicyObject {
  const object = parseYaml(yamlText) as PolicyObject;
  object.metadata = { ...object.metadata, generation, uid: `uid-${object.metadata?.name}`, resourceVersion: String(100 + generation) };
  return object;
}

function setup() {
  const cp = controlPlane();
  cp.reconciler.setWorkloads([BENIGN, ROGUE]);
  const services = new Map<string, Record<string, string>>();
  const objects = new PolicyObjects((namespace, name) => services.get(`${namespace}/${name}`) ?? null, silentLog);
  const commits: number[] = [];
  objects.connect({
    apply: (changes) => cp.store.applyFiles(changes),
    commit: () => {
      commits.push(cp.store.revision);
      cp.reconciler.syncPolicies();
    },
  });
  const enforced = (w = BENIGN) => cp.datapath.ruleIdsOf(w.cgroupPath) ?? [];
  return { cp, objects, services, commits, enforced };
}

describe('PolicyObjects', () => {
  test('the three translator shapes are enforced; the verdict carries the object generation and the group names', () => {
    const { objects, enforced } = setup();
    const benignPolicy = apiObject(translatorPolicy('ms1a', { domains: ['api.openai.com'] }), 4);
    objects.changed('FirewallPolicy', benignPolicy, benignPolicy);
    // Deny all (no domains) and allow all (domains ["*"]) for the second server: the later one replaces the first.
    const rogue = apiObject(translatorPolicy('ms1b', {}), 1);
    objects.changed('FirewallPolicy', rogue, rogue);
    objects.flush();
    assert.deepEqual(enforced(), [
      ruleIdFor('obot-mcp', 'obot-ms1a-fw', 'allow-approved-egress'),
      ruleIdFor('obot-mcp', 'obot-ms1a-fw', 'deny-all-external'),
    ]);
    assert.deepEqual(enforced(ROGUE), [ruleIdFor('obot-mcp', 'obot-ms1b-fw', 'deny-all-external')]);
    const allowAll = apiObject(translatorPolicy('ms1b', { domains: ['*'] }), 2);
    objects.changed('FirewallPolicy', allowAll, allowAll);
    objects.flush();
    assert.equal(enforced(ROGUE).length, 2);
    const benign = objects.verdicts().find((v) => v.name === 'obot-ms1a-fw')!;
    assert.equal(benign.generation, 4);
    assert.equal(benign.accepted?.generation, 4);
    assert.deepEqual(benign.accepted?.webGroups, ['obot-ms1a-approved-domains']);
    assert.deepEqual(benign.accepted?.smartGroups, ['obot-ms1a-pods', 'any-destination']);
    assert.match(benign.accepted!.ruleset, /^[0-9a-f]{16}$/);
    assert.deepEqual(benign.selectors, [{ app: 'ms1a' }, { app: 'ms1a' }]);
    assert.equal(objects.acceptedGeneration('obot-mcp', 'obot-ms1b-fw'), 2);
  });

  test('an invalid generation is rejected naming the field; the last good generation stays enforced', () => {
    const { objects, enforced } = setup();
    const good = apiObject(translatorPolicy('ms1a', { domains: ['api.openai.com'] }), 1);
    objects.changed('FirewallPolicy', good, good);
    objects.flush();
    const bad = apiObject(translatorPolicy('ms1a', { domains: ['api.*.com'] }), 2);
    objects.changed('FirewallPolicy', bad, bad);
    objects.flush();
    assert.equal(enforced().length, 2);
    const verdict = objects.verdicts()[0]!;
    assert.equal(verdict.accepted?.generation, 1);
    assert.equal(verdict.rejected?.generation, 2);
    assert.match(verdict.rejected!.messages.join('\n'), /^spec\.webGroups\[0\]\.domains\[0\] .*api\.\*\.com/m);
    assert.equal(objects.acceptedGeneration('obot-mcp', 'obot-ms1a-fw'), 1);
    // Repaired: accepted, the rejection cleared.
    const fixed = apiObject(translatorPolicy('ms1a', { domains: ['api.example.com'] }), 3);
    objects.changed('FirewallPolicy', fixed, fixed);
    objects.flush();
    assert.deepEqual([objects.verdicts()[0]!.accepted?.generation, objects.verdicts()[0]!.rejected], [3, null]);
  });

  test('an object of another group or version never reaches the store', () => {
    const { cp, objects, commits } = setup();
    const foreign = apiObject(translatorPolicy('ms1a', {}), 1);
    foreign.apiVersion = 'networking.aviatrix.com/v1beta1';
    objects.changed('FirewallPolicy', foreign, foreign);
    const otherGroup = apiObject(translatorPolicy('ms1b', {}), 1);
    otherGroup.apiVersion = 'networking.example.com/v1alpha1';
    objects.changed('FirewallPolicy', otherGroup, otherGroup);
    objects.flush();
    assert.deepEqual(cp.store.objects(), []);
    assert.deepEqual(objects.verdicts(), []);
    assert.deepEqual(commits, []);
  });

  test('a burst is one transaction; a status-only update (the writer’s own) is not applied again', () => {
    const { cp, objects, commits } = setup();
    for (const id of ['ms1a', 'ms1b', 'ms1c']) {
      const object = apiObject(translatorPolicy(id, { domains: ['api.example.com'] }), 1);
      objects.changed('FirewallPolicy', object, object);
    }
    objects.flush();
    assert.equal(commits.length, 1);
    assert.equal(cp.store.policies().length, 3);
    const revision = cp.store.revision;
    const withStatus = apiObject(translatorPolicy('ms1a', { domains: ['api.example.com'] }), 1);
    withStatus.status = { ruleset: 'abc', lastReconciledGeneration: 1 };
    withStatus.metadata!.resourceVersion = '999';
    objects.changed('FirewallPolicy', withStatus, withStatus);
    objects.flush();
    assert.equal(commits.length, 1, 'nothing new to commit');
    assert.equal(cp.store.revision, revision);
  });

  test('selector.service follows the Service: created, re-labelled and deleted', () => {
    const { objects, services, enforced } = setup();
    const byService = apiObject(
      `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: by-service, namespace: obot-mcp }
spec:
  smartGroups: [{ name: anywhere, selectors: [{ cidr: 0.0.0.0/0 }] }]
  rules:
    - { name: deny-all, action: deny, selector: { service: mcp }, destinationSmartGroups: [{ name: anywhere }] }
`,
      1,
    );
    objects.changed('FirewallPolicy', byService, byService);
    objects.flush();
    const denyAll = ruleIdFor('obot-mcp', 'by-service', 'deny-all');
    assert.deepEqual([enforced(BENIGN), enforced(ROGUE)], [[], []], 'no Service: the rule selects no pod');
    assert.match(objects.verdicts()[0]!.accepted!.notEnforced.join('\n'), /service selector "mcp" .* selects no workload/);

    services.set('obot-mcp/mcp', { app: 'ms1a' });
    objects.serviceChanged('obot-mcp', 'mcp');
    objects.flush();
    assert.deepEqual([enforced(BENIGN), enforced(ROGUE)], [[denyAll], []]);

    services.set('obot-mcp/mcp', { app: 'ms1b' });
    objects.serviceChanged('obot-mcp', 'mcp');
    objects.flush();
    assert.deepEqual([enforced(BENIGN), enforced(ROGUE)], [[], [denyAll]]);

    services.delete('obot-mcp/mcp');
    objects.serviceChanged('obot-mcp', 'mcp');
    objects.flush();
    assert.deepEqual([enforced(BENIGN), enforced(ROGUE)], [[], []]);
    assert.equal(objects.verdicts()[0]!.generation, 1, 'the object generation is the API server’s, not the store’s');
  });

  test('a deleted object, or a namespace no longer enforced, withdraws its rules', () => {
    const { objects, enforced } = setup();
    const a = apiObject(translatorPolicy('ms1a', { domains: ['api.example.com'] }), 1);
    const b = apiObject(translatorPolicy('ms1b', {}), 1);
    objects.changed('FirewallPolicy', a, a);
    objects.changed('FirewallPolicy', b, b);
    objects.flush();
    objects.changed('FirewallPolicy', null, a);
    objects.flush();
    assert.deepEqual(enforced(), []);
    assert.deepEqual(
      objects.verdicts().map((v) => v.name),
      ['obot-ms1b-fw'],
    );
    objects.forgetNamespace('obot-mcp');
    objects.flush();
    assert.deepEqual(enforced(ROGUE), []);
    assert.deepEqual(objects.verdicts(), []);
  });

  test('the kept copy restores the accepted objects at once; the first full list replaces it and withdraws those gone', () => {
    const before = setup();
    const a = apiObject(translatorPolicy('ms1a', { domains: ['api.example.com'] }), 3);
    const b = apiObject(translatorPolicy('ms1b', {}), 1);
    before.objects.changed('FirewallPolicy', a, a);
    before.objects.changed('FirewallPolicy', b, b);
    before.objects.flush();
    // A rejected newer generation is not kept: the copy holds what was enforced.
    const bad = apiObject(translatorPolicy('ms1a', { domains: ['api.*.com'] }), 4);
    before.objects.changed('FirewallPolicy', bad, bad);
    before.objects.flush();
    const kept = JSON.parse(JSON.stringify(before.objects.keptPolicies())) as ReturnType<PolicyObjects['keptPolicies']>;
    assert.deepEqual(
      kept.map((k) => [k.manifest.metadata, k.generation]),
      [
        [{ name: 'obot-ms1a-fw', namespace: 'obot-mcp' }, 3],
        [{ name: 'obot-ms1b-fw', namespace: 'obot-mcp' }, 1],
      ],
    );

    // A restarted agent: the same rules at once, with the same verdicts (generation, ruleset).
    const after = setup();
    after.objects.restore(kept);
    assert.deepEqual(after.enforced(), before.enforced());
    assert.deepEqual(after.enforced(ROGUE), before.enforced(ROGUE));
    assert.deepEqual(
      after.objects.verdicts().map((v) => [v.name, v.accepted?.generation, v.accepted?.ruleset]),
      before.objects.verdicts().map((v) => [v.name, v.accepted?.generation, v.accepted?.ruleset]),
    );
    // Listed: ms1a unchanged costs no transaction; ms1b was deleted meanwhile and is withdrawn.
    const commits = after.commits.length;
    after.objects.changed('FirewallPolicy', a, a);
    after.objects.flush();
    assert.equal(after.commits.length, commits, 'an object identical to its kept version is not applied again');
    after.objects.dropUnlisted();
    after.objects.flush();
    assert.deepEqual(after.enforced(ROGUE), []);
    assert.deepEqual(
      after.objects.verdicts().map((v) => v.name),
      ['obot-ms1a-fw'],
    );
  });
});

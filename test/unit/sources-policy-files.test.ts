import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { PolicyFileSource } from '../../src/sources/policy-files.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { controlPlane, firewallPolicy, silentLog, workload } from './control-plane-helpers.js';

const ONE = workload('one', { app: 'one' });

describe('PolicyFileSource into the store and the reconciler', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-policy-files-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cp = controlPlane();
  cp.reconciler.setWorkloads([ONE]);
  const commits: number[] = [];
  const source = new PolicyFileSource([dir], silentLog);
  const started = source.start({
    apply: (changes) => cp.store.applyFiles(changes),
    commit: () => {
      commits.push(cp.store.revision);
      cp.reconciler.syncPolicies();
    },
  });
  afterAll(() => source.stop());
  const file = join(dir, 'one.yaml');
  const enforced = () => cp.datapath.ruleIdsOf(ONE.cgroupPath);

  test('a valid file is applied and enforced; other files (not YAML) are ignored', async () => {
    await started;
    writeFileSync(file, firewallPolicy({ name: 'p', app: 'one' }));
    writeFileSync(join(dir, 'notes.txt'), 'not a policy');
    source.scan();
    assert.deepEqual(enforced(), [ruleIdFor('team', 'p', 'allow'), ruleIdFor('team', 'p', 'deny-all')]);
    assert.deepEqual(source.rejected(), []);
    assert.equal(commits.at(-1), cp.store.revision, 'the scan committed after applying');
  });

  test('an unchanged file is not applied again', () => {
    const revision = cp.store.revision;
    source.scan();
    assert.equal(cp.store.revision, revision);
  });

  test('an invalid edit keeps the last good objects in force and is listed as rejected, with its errors', () => {
    writeFileSync(file, firewallPolicy({ name: 'p', app: 'one' }).replace('action: deny', 'action: drop'));
    source.scan();
    assert.deepEqual(enforced(), [ruleIdFor('team', 'p', 'allow'), ruleIdFor('team', 'p', 'deny-all')]);
    const rejected = source.rejected();
    assert.deepEqual(
      rejected.map((r) => r.file),
      [file],
    );
    assert.match(rejected[0]!.messages.join('\n'), /action/);
  });

  test('a repaired file replaces the objects and leaves the rejected list', () => {
    writeFileSync(file, firewallPolicy({ name: 'p', app: 'one', domains: ['api.example.com'] }));
    source.scan();
    assert.equal(cp.reconciler.rulesFor('team/one')[0]?.domains?.length, 1);
    assert.deepEqual(source.rejected(), []);
  });

  test('a file emptied by a write in progress keeps its objects in force; its content, when it arrives, is applied', () => {
    const before = enforced();
    for (const halfWritten of ['', '# edit 2\n', '---\n\n']) {
      writeFileSync(file, halfWritten);
      source.scan();
      assert.deepEqual(enforced(), before, JSON.stringify(halfWritten));
      assert.match(source.rejected()[0]?.messages.join('\n') ?? '', /holds no policy document .* delete the file to withdraw/);
    }
    writeFileSync(file, firewallPolicy({ name: 'p', app: 'one', domains: ['api.example.com', 'cdn.example.com'] }));
    source.scan();
    assert.equal(cp.reconciler.rulesFor('team/one')[0]?.domains?.length, 2);
    assert.deepEqual(source.rejected(), []);
  });

  test('a removed file withdraws its objects', () => {
    unlinkSync(file);
    source.scan();
    assert.deepEqual(enforced(), []);
    assert.deepEqual(cp.reconciler.policyStatus(), []);
  });

  test('a folder change is one transaction: an object moving to a new file (rename, git checkout) is accepted at once', () => {
    writeFileSync(join(dir, 'old-a.yaml'), firewallPolicy({ name: 'p', app: 'one' }));
    writeFileSync(join(dir, 'old-b.yaml'), firewallPolicy({ name: 'q', app: 'two' }));
    source.scan();
    const generation = cp.reconciler.policyStatus().find((p) => p.name === 'p')!.generation;
    unlinkSync(join(dir, 'old-a.yaml'));
    unlinkSync(join(dir, 'old-b.yaml'));
    writeFileSync(join(dir, 'new-a.yaml'), firewallPolicy({ name: 'p', app: 'one' }));
    writeFileSync(join(dir, 'new-b.yaml'), firewallPolicy({ name: 'q', app: 'two', domains: ['api.example.com'] }));
    source.scan();
    assert.deepEqual(source.rejected(), []);
    assert.deepEqual(enforced(), [ruleIdFor('team', 'p', 'allow'), ruleIdFor('team', 'p', 'deny-all')]);
    const p = cp.reconciler.policyStatus().find((s) => s.name === 'p')!;
    assert.deepEqual([p.file, p.generation], [join(dir, 'new-a.yaml'), generation], 'an unchanged object keeps its generation');
    assert.equal(cp.reconciler.policyStatus().find((s) => s.name === 'q')?.file, join(dir, 'new-b.yaml'));
  });

  test('an object defined twice in the resulting set: the changed file is rejected, and accepted once the clash is gone', () => {
    writeFileSync(join(dir, 'copy.yaml'), firewallPolicy({ name: 'p', app: 'one', domains: ['other.example.com'] }));
    source.scan();
    assert.deepEqual(
      source.rejected().map((r) => r.file),
      [join(dir, 'copy.yaml')],
    );
    assert.match(source.rejected()[0]!.messages[0]!, /FirewallPolicy team\/p is already defined in .*new-a\.yaml/);
    assert.equal(cp.reconciler.rulesFor('team/one')[0]?.domains, null, 'the file in force keeps its objects');
    unlinkSync(join(dir, 'new-a.yaml'));
    source.scan();
    assert.deepEqual(source.rejected(), [], 'no stale rejection: the clash is judged again on the new set');
    assert.equal(cp.reconciler.rulesFor('team/one')[0]?.domains?.length, 1);
  });

  test('two new files defining one object: the later path is rejected, the earlier enforced', () => {
    for (const f of ['new-b.yaml', 'copy.yaml']) unlinkSync(join(dir, f));
    writeFileSync(join(dir, 'x1.yaml'), firewallPolicy({ name: 'r', app: 'one' }));
    writeFileSync(join(dir, 'x2.yaml'), firewallPolicy({ name: 'r', app: 'one', domains: ['b.example.com'] }));
    source.scan();
    assert.deepEqual(
      source.rejected().map((r) => r.file),
      [join(dir, 'x2.yaml')],
    );
    assert.deepEqual(enforced(), [ruleIdFor('team', 'r', 'allow'), ruleIdFor('team', 'r', 'deny-all')]);
  });
});

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
    apply: (file, text) => cp.store.applyFile(file, text),
    remove: (file) => void cp.store.removeFile(file),
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

  test('a removed file withdraws its objects', () => {
    unlinkSync(file);
    source.scan();
    assert.deepEqual(enforced(), []);
    assert.deepEqual(cp.reconciler.policyStatus(), []);
  });
});

import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { manifestFilesIn } from '../../src/policy/manifest-files.js';

describe('manifestFilesIn: the one walker of policy lint and the agent', () => {
  const root = mkdtempSync(join(tmpdir(), 'egressguard-manifests-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const write = (path: string): void => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), 'kind: FirewallPolicy\n');
  };
  const found = (path: string): string[] => manifestFilesIn(join(root, path)).map((file) => relative(root, file));

  test('recurses into folders, sorted, *.yaml and *.yml only, hidden entries skipped', () => {
    for (const file of ['tree/b.yaml', 'tree/a.yml', 'tree/notes.txt', 'tree/.hidden.yaml', 'tree/sub/c.yaml', 'tree/.git/d.yaml'])
      write(file);
    assert.deepEqual(found('tree'), ['tree/a.yml', 'tree/b.yaml', 'tree/sub/c.yaml']);
  });

  test('a file is returned as given, whatever its name', () => {
    write('single/policy.txt');
    assert.deepEqual(found('single/policy.txt'), ['single/policy.txt']);
  });

  test('a ConfigMap volume is read once: through its visible links, not through ..data and the timestamped folder', () => {
    write('configmap/..2026_12_01_02_50_00.123/fw.yaml');
    symlinkSync('..2026_12_01_02_50_00.123', join(root, 'configmap/..data'));
    symlinkSync('..data/fw.yaml', join(root, 'configmap/fw.yaml'));
    assert.deepEqual(found('configmap'), ['configmap/fw.yaml']);
  });

  test('a link loop is walked once and a dangling link is skipped', () => {
    write('loop/x.yaml');
    symlinkSync('.', join(root, 'loop/again'));
    symlinkSync('missing.yaml', join(root, 'loop/dangling.yaml'));
    assert.deepEqual(found('loop'), ['loop/x.yaml']);
  });

  test('an unreadable path throws (lint reports it; the agent checks existence first)', () => {
    assert.throws(() => manifestFilesIn(join(root, 'nope')), /ENOENT/);
  });
});

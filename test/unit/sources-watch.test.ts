// Watching the configuration by path: every way operators and Kubernetes replace a file keeps being noticed,
// however many times it happens.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'vitest';
import { PathWatch, contentDigest } from '../../src/sources/watch.js';
import { silentLog } from './control-plane-helpers.js';

/** Resolves when `seen` reaches `count` calls; rejects after a generous bound (a missed change never arrives). */
function changes(): { seen: string[]; onChange: () => void; until(count: number): Promise<void> } {
  const seen: string[] = [];
  let wake: (() => void) | null = null;
  return {
    seen,
    onChange: () => {
      seen.push('change');
      wake?.();
    },
    async until(count) {
      const deadline = Date.now() + 10_000;
      while (seen.length < count) {
        if (Date.now() > deadline) throw new Error(`saw ${seen.length} changes, expected ${count}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

describe('PathWatch: the configuration is watched by path', () => {
  let dir = '';
  let watch: PathWatch | null = null;
  afterEach(() => {
    watch?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });
  // A poll far beyond the test: only watch events can deliver these changes.
  const noPoll = 3_600_000;

  test('rename-replace (sed -i, editors), three times in a row, and in-place rewrites', async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-watch-'));
    const file = join(dir, 'egressguard.yaml');
    writeFileSync(file, 'mode: discovery\n');
    const seen = changes();
    watch = new PathWatch(file, seen.onChange, silentLog, noPoll);
    for (let round = 1; round <= 3; round++) {
      writeFileSync(join(dir, `.tmp${round}`), `mode: enforce # ${round}\n`);
      renameSync(join(dir, `.tmp${round}`), file);
      await seen.until(round);
    }
    writeFileSync(file, 'mode: discovery # in place\n');
    await seen.until(4);
    writeFileSync(file, 'mode: enforce # in place again\n');
    await seen.until(5);
  });

  test('a ConfigMap volume: the ..data symlink swapped to a new timestamped folder, twice', async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-watch-cm-'));
    const publish = (version: string, text: string) => {
      mkdirSync(join(dir, version));
      writeFileSync(join(dir, version, 'egressguard.yaml'), text);
      symlinkSync(version, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    publish('..2026_12_01_00_00_00.1', 'mode: discovery\n');
    const file = join(dir, 'egressguard.yaml');
    symlinkSync('..data/egressguard.yaml', file);
    const seen = changes();
    watch = new PathWatch(file, seen.onChange, silentLog, noPoll);
    publish('..2026_12_01_00_00_00.2', 'mode: enforce\n');
    await seen.until(1);
    rmSync(join(dir, '..2026_12_01_00_00_00.1'), { recursive: true });
    publish('..2026_12_01_00_00_00.3', 'mode: discovery\n');
    await seen.until(2);
    assert.equal(contentDigest(file), contentDigest(join(dir, '..2026_12_01_00_00_00.3', 'egressguard.yaml')));
  });

  test('an unchanged rewrite is no change; with a short poll a change is seen whichever comes first', async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-watch-poll-'));
    const file = join(dir, 'egressguard.yaml');
    writeFileSync(file, 'mode: discovery\n');
    const seen = changes();
    watch = new PathWatch(file, seen.onChange, silentLog, noPoll);
    writeFileSync(file, 'mode: discovery\n');
    watch.check();
    assert.equal(seen.seen.length, 0);
    watch.close();
    writeFileSync(file, 'mode: enforce\n');
    watch = new PathWatch(file, seen.onChange, silentLog, 50);
    writeFileSync(file, 'mode: discovery\n');
    await seen.until(1);
  });
});

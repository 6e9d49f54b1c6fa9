// The pod source before its first list: it reports the set an earlier agent kept (pods whose cgroup still exists), and
// says so in status, while its list is retried against an API server that does not answer.
import { describe, test, beforeAll, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { WorkloadSpec } from '../../src/identity/source.js';
import { KubeClient } from '../../src/k8s/api.js';
import { PodSource } from '../../src/k8s/pod-source.js';

function spec(name: string, cgroupPath: string): WorkloadSpec {
  return { namespace: 'obot-mcp', name, labels: { app: name }, addresses: ['198.18.1.2'], cgroupPath, interfaces: [], netns: null };
}

describe('pod source: the last known set', () => {
  let dir: string;
  /** A source whose API server refuses at once: loopback port 1, nothing leaves the host. */
  const unansweredSource = (namespaces: string[], stateFile: string) => {
    return new PodSource({
      client: new KubeClient({ server: 'https://[::1]:1', rejectUnauthorized: false, token: () => 't' }),
      nodeName: 'node-1',
      namespaces,
      cgroup2Mount: dir,
      cgroupDriver: null,
      cgroupRoot: null,
      cgroupTimeoutMs: 1000,
      isEnrolled: () => true,
      stateFile,
      log: pino({ level: 'silent' }),
    });
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'egk8s-source-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('reported at start, only pods whose cgroup still exists, until the first list; the list failure is shown', async () => {
    const alive = join(dir, 'kubepods.slice', 'alive.slice');
    mkdirSync(alive, { recursive: true });
    const stateFile = join(dir, 'pods.json');
    writeFileSync(
      stateFile,
      JSON.stringify({ writtenAt: '2026-12-01T06:00:00.000Z', specs: [spec('alive', alive), spec('gone', join(dir, 'gone'))] }),
    );
    const source = unansweredSource(['obot-mcp'], stateFile);
    const reported: WorkloadSpec[][] = [];
    await source.start((specs) => reported.push(specs));
    try {
      assert.deepEqual(reported, [[spec('alive', alive)]]);
      for (let i = 0; i < 100 && source.status().api.lastError === null; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      const status = source.status();
      assert.deepEqual(status.lastKnown, { pods: 1, writtenAt: '2026-12-01T06:00:00.000Z' });
      assert.equal(status.api.synced, false);
      assert.match(status.api.lastError ?? '', /ECONNREFUSED|fetch failed/);
      assert.equal(status.cgroupRoot, join(dir, 'kubepods.slice'));
      assert.equal(reported.length, 1, 'nothing else is reported before a list');
    } finally {
      await source.stop();
    }
  });

  test('an unreadable kept set is ignored (the kernel keeps its state meanwhile)', async () => {
    const stateFile = join(dir, 'broken.json');
    writeFileSync(stateFile, '{"specs": 5');
    const source = unansweredSource([], stateFile);
    const reported: WorkloadSpec[][] = [];
    await source.start((specs) => reported.push(specs));
    await source.stop();
    assert.deepEqual(reported, []);
    assert.equal(source.status().lastKnown, null);
  });
});

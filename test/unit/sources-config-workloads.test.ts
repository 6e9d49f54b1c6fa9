import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'vitest';
import { parseConfig } from '../../src/agent/config.js';
import type { WorkloadSpec } from '../../src/identity/source.js';
import { ConfigWorkloadSource, missingWorkloadCgroups } from '../../src/sources/config-workloads.js';

const config = (cgroup: string) =>
  parseConfig(
    '/etc/egressguard/egressguard.yaml',
    `workloads:
  - { namespace: team, name: one, cgroup: ${cgroup}, labels: { app: one }, addresses: [198.18.1.2], interfaces: [veth1] }
  - { name: two, cgroup: two.scope, netns: /run/netns/two }
dns: { listen: [198.18.0.2], upstreams: [198.18.0.53] }
`,
    '/sys/fs/cgroup',
  );

describe('ConfigWorkloadSource', () => {
  test('reports the configured workloads at start and again on every update', async () => {
    const reports: WorkloadSpec[][] = [];
    const source = new ConfigWorkloadSource(config('one.scope').workloads);
    await source.start((workloads) => reports.push(workloads));
    assert.deepEqual(reports[0], [
      {
        namespace: 'team',
        name: 'one',
        labels: { app: 'one' },
        addresses: ['198.18.1.2'],
        cgroupPath: '/sys/fs/cgroup/one.scope',
        interfaces: ['veth1'],
        netns: null,
      },
      {
        namespace: 'default',
        name: 'two',
        labels: {},
        addresses: [],
        cgroupPath: '/sys/fs/cgroup/two.scope',
        interfaces: [],
        netns: '/run/netns/two',
      },
    ]);
    source.update(config('other.scope').workloads);
    assert.equal(reports[1]?.[0]?.cgroupPath, '/sys/fs/cgroup/other.scope');
    await source.stop();
    source.update(config('one.scope').workloads);
    assert.equal(reports.length, 2, 'nothing is reported once stopped');
  });

  test('at start, a missing cgroup is named with the field to fix', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-cgroups-'));
    try {
      const missing = missingWorkloadCgroups(config(join(dir, 'missing')));
      assert.match(
        missing[0]!,
        /workload team\/one: cgroup path .*missing does not exist; create it or fix workloads\[\]\.cgroup in \/etc\/egressguard\/egressguard\.yaml/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

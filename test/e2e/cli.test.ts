// The command line as an operator meets it: exit codes and messages.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBpffs, findCgroup2Mount } from '../../src/datapath/mounts.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const examples = fileURLToPath(new URL('../../../examples/policies', import.meta.url));

function egressguard(args: string[], options: { asUser?: string /* numeric uid, also used as gid */ } = {}) {
  const argv = options.asUser
    ? ['setpriv', `--reuid=${options.asUser}`, `--regid=${options.asUser}`, '--clear-groups', process.execPath, cli, ...args]
    : [process.execPath, cli, ...args];
  const result = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('egressguard CLI', () => {
  test('policy lint accepts the example policies', () => {
    const result = egressguard(['policy', 'lint', examples]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /0 error\(s\)/);
  });

  test('policy lint rejects a bad manifest with the file, the field and exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-lint-'));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(
        file,
        `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: bad, namespace: obot-mcp }
spec:
  smartGroups: [{ name: any, selectors: [{ cidr: 0.0.0.0/0 }] }]
  webGroups: [{ name: w, domains: ["**.evil.com"] }]
  rules:
    - { name: r, action: permit, selector: { matchLabels: { app: a } }, destinationSmartGroups: [{ name: any }], webGroups: [{ name: w }] }
`,
      );
      const result = egressguard(['policy', 'lint', file]);
      assert.equal(result.code, 1);
      assert.match(result.stdout, /bad\.yaml/);
      assert.match(result.stdout, /spec\.webGroups\[0\]\.domains\[0\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('unknown commands and missing arguments fail with usage', () => {
    assert.equal(egressguard(['frobnicate']).code, 2);
    const run = egressguard(['run']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /needs --config FILE/);
  });

  test('status without a running agent says so', () => {
    const result = egressguard(['status', '--socket', join(tmpdir(), 'eg-no-such-agent.sock')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no agent is running/);
  });

  test('run refuses to start without root, naming why', { skip: privilegedSkip() }, () => {
    const result = egressguard(['run', '--config', '/nonexistent.yaml'], { asUser: '65534' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /must run as root/);
  });

  test('run names a workload cgroup that does not exist and leaves nothing behind after a fatal error', { skip: privilegedSkip() }, () => {
    // The agent starts without a vanished workload cgroup (it reports it); this one then fails on its DNS listen
    // address. Everything it creates lives under the test's own attach cgroup and pin directory, and is torn down.
    const dir = mkdtempSync(join(tmpdir(), 'eg-cli-'));
    const prefix = uniquePrefix('cl');
    const attachCgroup = join(findCgroup2Mount()!, prefix);
    const pinDir = join(ensureBpffs(), prefix);
    mkdirSync(attachCgroup);
    const config = join(dir, 'egressguard.yaml');
    try {
      writeFileSync(
        config,
        `attachCgroup: ${attachCgroup}
pinDir: ${pinDir}
workloads:
  - { name: ghost, cgroup: ${attachCgroup}/no-such-cgroup/ghost, addresses: [198.18.10.2] }
dns: { listen: [198.18.0.53], upstreams: [198.18.100.53] }
controlSocket: ${join(dir, 'agent.sock')}
`,
      );
      const result = egressguard(['run', '--config', config]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /workload default\/ghost: cgroup path .*no-such-cgroup\/ghost does not exist/);
    } finally {
      egressguard(['teardown', '--config', config]);
      rmSync(pinDir, { recursive: true, force: true });
      rmSync(attachCgroup, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(existsSync(pinDir), false, 'the pins are removed');
  });
});

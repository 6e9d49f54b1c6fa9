// The chart's uninstall path on one node: an agent stops (enforcement continues from the pins, as in a rolling
// update), then `egressguard teardown` (what the agent runs when its DaemonSet is gone) leaves the node clean: no
// program attached to the cgroup, no tc filter on the workload's interface, no pin, no program left in the kernel,
// and the workload's traffic reaches the internet again.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { CLI_SCRIPT, LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { TcpProbeResult } from '../../lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const POD = { pod: 'one', namespace: 'team', name: 'one', labels: { app: 'one' } };

interface AttachedProgram {
  id: number;
  attach_type: string;
}

/** Program ids attached to a cgroup (bpftool prints nothing, not [], for a cgroup without programs). */
function cgroupPrograms(cgroup: string): AttachedProgram[] {
  const text = execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' }).trim();
  return text === '' ? [] : (JSON.parse(text) as AttachedProgram[]);
}

function programExists(id: number): boolean {
  try {
    execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('node cleanup (chart uninstall path)', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('nc'), pods: [POD.pod] });
    agent = new LabAgent(lab, { workloads: [POD], mode: 'enforce' });
    await agent.start();
  });

  afterAll(() => teardownAgentLab(agent, lab));

  const connect = async () => (await lab.probe(POD.pod, ['tcp', HTTPBIN.ipv4, '8443'])) as TcpProbeResult;
  /** The tc filters on the workload's host-side interface, both directions (the backstop and the inbound approver). */
  const tcFilters = async () => {
    const { nodeInterface } = lab.pod(POD.pod);
    const filters: unknown[] = [];
    for (const direction of ['ingress', 'egress']) {
      const result = await lab.runInNode(['tc', '-j', 'filter', 'show', 'dev', nodeInterface, direction]);
      assert.equal(result.code, 0, result.stderr);
      filters.push(...(JSON.parse(result.stdout.trim() || '[]') as unknown[]));
    }
    return filters;
  };
  const teardown = () => lab.runInNode([process.execPath, CLI_SCRIPT, 'teardown', '--pin-dir', agent.pinDir], { timeoutMs: 20_000 });

  test('an agent that stops (a restart or rolling update) leaves enforcement in force', async () => {
    assert.equal((await connect()).error, 'EPERM');
    await agent.stop();
    assert.equal((await connect()).error, 'EPERM', 'the pinned programs keep denying while no agent runs');
    assert.ok(cgroupPrograms(lab.attachCgroup).length > 0);
    assert.ok((await tcFilters()).length > 0, 'the tc backstop stays on the workload interface');
  });

  test('teardown detaches every program and tc filter, removes the pins, and says so', async () => {
    const attached = cgroupPrograms(lab.attachCgroup).map((p) => p.id);
    // `tc -j filter show` lists a bpf filter as two entries (the chain head and the program).
    const filtersBefore = (await tcFilters()).filter((f) => (f as { options?: unknown }).options !== undefined).length;
    assert.equal(filtersBefore, 2, 'one filter in each direction before the teardown');
    const serverRecordsBefore = (await lab.serverLog()).length;

    const result = await teardown();
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^detached ${attached.length} program link\\(s\\) and ${filtersBefore} tc filter\\(s\\), removed \\d+ map pin\\(s\\) and ${agent.pinDir}: ` +
          'enforcement has ended and this node carries no egressguard state$',
        'm',
      ),
    );

    assert.deepEqual(cgroupPrograms(lab.attachCgroup), [], 'no program attached to the cgroup');
    assert.deepEqual(await tcFilters(), [], 'no tc filter on the workload interface');
    assert.equal(existsSync(agent.pinDir), false, 'no pins');
    const survivors = attached.filter(programExists);
    assert.deepEqual(survivors, [], 'no egressguard program is left in the kernel');

    // Judged on the receiving side: the workload's connection reaches the lab server again.
    assert.equal((await connect()).ok, true);
    await lab.waitForServerRecords('connection after teardown', (r) => r.proto === 'tcp' && r.remote === lab.pod(POD.pod).ipv4);
    assert.ok((await lab.serverLog()).length > serverRecordsBefore);
  });

  test('teardown on a clean node is a no-op that says the node is clean', async () => {
    const result = await teardown();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `nothing is pinned under ${agent.pinDir}: no egressguard state on this node`);
  });

  test('teardown refuses --config together with --pin-dir', async () => {
    const result = await lab.runInNode([process.execPath, CLI_SCRIPT, 'teardown', '--config', agent.configPath, '--pin-dir', agent.pinDir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /takes --config FILE .* or --pin-dir DIR, not both/);
  });
});

// The agent's life on a host: discovery to enforcement, live configuration edits (good and bad), workloads leaving
// the configuration, and teardown leaving nothing behind.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { TcpProbeResult } from '../../lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';

const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const ONE = { pod: 'one', namespace: 'team', name: 'one', labels: { app: 'one' } };
const TWO = { pod: 'two', namespace: 'team', name: 'two', labels: { app: 'two' } };

describe('agent lifecycle', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('lc'), pods: [ONE.pod, TWO.pod] });
    agent = new LabAgent(lab, { workloads: [ONE, TWO], mode: 'discovery', aggregateWindowMs: 100 });
    await agent.start();
  });

  afterAll(() => teardownAgentLab(agent, lab));

  const connect = async (pod: string) => (await lab.probe(pod, ['tcp', HTTPBIN.ipv4, '8443'])) as TcpProbeResult;

  test('discovery permits and logs under the default action', async () => {
    assert.equal((await connect(ONE.pod)).ok, true);
    const permitted = () =>
      agent.events().find((e) => e.layer === 'connect' && e.destination.ip === HTTPBIN.ipv4 && e.workload.name === 'one');
    await waitUntil('the connect event', () => permitted() !== undefined);
    const event = permitted();
    assert.ok(event, 'a permitted connect event');
    assert.equal(event.verdict, 'permitted');
    assert.equal(event.tier, 3);
    assert.equal(event.rule, 'default-action');
    assert.deepEqual(event.workload.labels, { app: 'one' });
    assert.equal(event.workload.podIps[0], lab.pod(ONE.pod).ipv4);
    assert.ok(event.process && event.process.pid > 0 && event.process.comm.length > 0);
  });

  test('flipping the mode to enforce denies at once', async () => {
    await agent.setMode('enforce');
    assert.equal((await connect(ONE.pod)).error, 'EPERM');
    assert.equal((await connect(TWO.pod)).error, 'EPERM');
  });

  test('a broken configuration edit is rejected and the last good one stays in force', async () => {
    agent.writeRawConfig('workloads: [\n');
    await waitUntil('the rejection in the log', () =>
      /configuration rejected; the last good configuration stays in force/.test(agent.log()),
    );
    assert.equal((await agent.status()).mode, 'enforce');
    assert.equal((await connect(ONE.pod)).error, 'EPERM');
  });

  test('a workload removed from the configuration is no longer enforced; the others still are', async () => {
    agent.editConfig((config) => {
      config.workloads = (config.workloads as { name: string }[]).filter((w) => w.name !== 'two');
    });
    await agent.waitFor('workload two to leave', (s) => s.workloads.every((w) => w.key !== 'team/two'));
    assert.equal((await connect(TWO.pod)).ok, true);
    assert.equal((await connect(ONE.pod)).error, 'EPERM');
  });

  test('teardown detaches everything and removes the pins', async () => {
    await agent.teardown();
    assert.equal(existsSync(agent.pinDir), false, `pins left: ${existsSync(agent.pinDir) ? readdirSync(agent.pinDir).join(', ') : ''}`);
    assert.equal((await connect(ONE.pod)).ok, true);
  });
});

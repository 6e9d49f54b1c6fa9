// Flood control through the whole product: one workload hammers denied destinations while another does DNS lookups
// and allowed connects. The kernel's per-workload event rate limit suppresses most of the flood's events and the
// stream says so ("events-suppressed" notices naming the flooding workload, counted); every event of the other
// workload arrives, with its exact count; enforcement holds for every attempt.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Lab } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { DnsProbeResult, TcpProbeResult } from '../../lab/probe-result.js';
import type { PipelineNotice } from '../../src/events/sink.js';
import { ATTACKER, HTTPBIN, POLICY_NAME, POLICY_NAMESPACE, decisionPolicy } from '../support/decision-lab.js';
import { FLOOD_SCRIPT, type FloodResult } from '../support/flood.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';

const FLOOD = { pod: 'flood', namespace: POLICY_NAMESPACE, name: 'flood', labels: { app: 'obs' } };
const CALM = { pod: 'calm', namespace: POLICY_NAMESPACE, name: 'calm', labels: { app: 'obs' } };
const FLOOD_SECONDS = 6;
const CALM_CONNECTS = 8;
const CALM_LOOKUPS = 4;

describe('flood control', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('fl'), pods: [FLOOD.pod, CALM.pod] });
    agent = new LabAgent(lab, { workloads: [FLOOD, CALM], mode: 'enforce', aggregateWindowMs: 200 });
    agent.writePolicy('obs.yaml', decisionPolicy);
    await agent.start();
    await agent.waitForPolicies([POLICY_NAME]);
  }, 60_000);

  afterAll(() => teardownAgentLab(agent, lab));

  test("a flooding workload's events are suppressed with counted notices; the other workload's all arrive", async () => {
    const before = (await agent.status()).stats;
    const flood = lab.runInPod(FLOOD.pod, ['python3', '-c', FLOOD_SCRIPT, String(FLOOD_SECONDS), ATTACKER.ipv4], { timeoutMs: 60_000 });
    // The calm workload works while the flood is being suppressed.
    const suppressed = async () => BigInt((await agent.status()).stats.kernelEventsSuppressed!);
    const suppressedBefore = BigInt(before.kernelEventsSuppressed!);
    await waitUntil('the kernel to suppress flood events', async () => (await suppressed()) > suppressedBefore);
    const names = Array.from({ length: CALM_LOOKUPS }, (_, i) => `calm${i}.attacker.example`);
    for (let i = 0; i < CALM_CONNECTS; i++)
      assert.equal(((await lab.probe(CALM.pod, ['tcp', HTTPBIN.ipv4, '8443'])) as TcpProbeResult).ok, true);
    for (const name of names) {
      const answer = (await lab.probe(CALM.pod, ['dns', name, '--server', lab.addresses.dnsProxy.ipv4])) as DnsProbeResult;
      assert.equal(answer.rcode, 'NXDOMAIN');
    }
    const floodRun = await flood;
    const result = JSON.parse(floodRun.stdout) as FloodResult;
    assert.equal(result.notDenied, 0, `every flood attempt was denied: ${floodRun.stdout}`);
    assert.ok(result.attempts > 10_000, `the flood made ${result.attempts} attempts`);
    const calmEvents = () => agent.events().filter((e) => e.workload.name === CALM.name);
    const calmConnects = () =>
      calmEvents()
        .filter((e) => e.layer === 'connect' && e.destination.ip === HTTPBIN.ipv4 && e.verdict === 'permitted')
        .reduce((sum, e) => sum + e.count, 0);
    // Events reach the file once their aggregation window closes: wait for the calm workload's, then count.
    const calmLookups = () => calmEvents().filter((e) => e.layer === 'dns');
    await waitUntil(
      "the calm workload's events to reach the stream",
      () => calmConnects() >= CALM_CONNECTS && calmLookups().length >= names.length,
    );
    const after = (await agent.status()).stats;

    // The kernel took every decision and suppressed most of the flood's events.
    assert.ok(BigInt(after.decisionsDenied!) - BigInt(before.decisionsDenied!) >= BigInt(result.attempts));
    const suppressedInKernel = Number(BigInt(after.kernelEventsSuppressed!) - BigInt(before.kernelEventsSuppressed!));
    assert.ok(suppressedInKernel > 0 && suppressedInKernel < result.attempts, `kernel suppressed ${suppressedInKernel}`);

    const lines = readFileSync(agent.eventsPath, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const notices = lines.filter((l) => l.kind === 'events-suppressed') as unknown as Extract<
      PipelineNotice,
      { kind: 'events-suppressed' }
    >[];
    assert.ok(notices.length > 0, 'suppressed-N notices are in the stream');
    assert.ok(
      notices.every((n) => n.workload.name === FLOOD.name && n.reason === 'rate-limit'),
      'only the flooding workload is named',
    );
    const reported = notices.reduce((sum, n) => sum + n.count, 0);
    assert.ok(reported > 0 && reported <= suppressedInKernel, `reported ${reported} of ${suppressedInKernel} suppressed`);
    const floodEvents = agent.events().filter((e) => e.workload.name === FLOOD.name);
    const floodCounted = floodEvents.reduce((sum, e) => sum + e.count, 0);
    assert.ok(floodCounted + reported <= result.attempts, 'nothing counted twice');

    assert.equal(after.kernelEventsLost, '0', `the ring buffer never overflowed: ${JSON.stringify(after)}`);
    assert.equal(after.eventsDroppedByReader, '0');
    assert.equal(after.droppedByLimit, 0);
    // The well-behaved workload: every connect and every lookup is on record, with exact counts.
    assert.equal(calmConnects(), CALM_CONNECTS);
    assert.deepEqual(
      calmLookups()
        .map((e) => e.fqdn)
        .sort(),
      [...names].sort(),
    );
  });
});

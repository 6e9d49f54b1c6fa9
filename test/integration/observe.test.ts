// `egressguard observe` against the CLI agent in the lab: a live follower filtered to denied flows sees the denied
// connect and not the permitted one, `--last N` returns history, and both work while a configured sink is down.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Lab } from '../../lab/lab.js';
import { CLI_SCRIPT, LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { TcpProbeResult } from '../../lab/probe-result.js';
import type { FlowEvent } from '../../src/events/types.js';
import { ATTACKER, HTTPBIN, POLICY_NAME, POLICY_NAMESPACE, decisionPolicy } from '../support/decision-lab.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const APP = { pod: 'app', namespace: POLICY_NAMESPACE, name: 'app', labels: { app: 'obs' } };
/** A sink that can never deliver: its directory would be /dev/null, a device. */
const DEAD_SINK = { type: 'jsonl', path: '/dev/null/events.jsonl' };

type Line = Record<string, unknown>;

/** `egressguard observe ...` as its own process; its JSON lines collected as they arrive. */
function startObserver(args: string[]): { child: ChildProcess; lines: Line[]; stderr: () => string } {
  const child = spawn(process.execPath, [CLI_SCRIPT, 'observe', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let buffered = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const complete = buffered.split('\n');
    buffered = complete.pop()!;
    for (const line of complete) lines.push(JSON.parse(line) as Line);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, lines, stderr: () => stderr };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('egressguard observe', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('ob'), pods: [APP.pod] });
    agent = new LabAgent(lab, { workloads: [APP], mode: 'enforce', aggregateWindowMs: 100 });
    agent.editConfig((config) => (config.events as { sinks: unknown[] }).sinks.push(DEAD_SINK));
    agent.writePolicy('obs.yaml', decisionPolicy);
    await agent.start();
    await agent.waitForPolicies([POLICY_NAME]);
  }, 60_000);

  afterAll(() => teardownAgentLab(agent, lab));

  const connect = async (ip: string) => (await lab.probe(APP.pod, ['tcp', ip, '8443'])) as TcpProbeResult;
  const isFlowTo = (ip: string) => (line: Line) => line.kind === 'flow' && (line as unknown as FlowEvent).destination.ip === ip;

  test('--verdict denied --output json follows the denied connect, not the permitted one, while a sink is down', async () => {
    const observer = startObserver(['--socket', agent.socketPath, '--verdict', 'denied', '--output', 'json']);
    try {
      // Subscribed once the agent has answered: a (denied) flow it sees proves that, so wait for one first.
      await until('the observer to see a denied flow', async () => {
        await connect(ATTACKER.ipv4);
        return observer.lines.some(isFlowTo(ATTACKER.ipv4));
      });
      observer.lines.length = 0;
      assert.equal((await connect(HTTPBIN.ipv4)).ok, true);
      assert.equal((await connect(ATTACKER.ipv4)).error, 'EPERM');
      await until('the denied flow in observe', () => observer.lines.some(isFlowTo(ATTACKER.ipv4)));
      // The permitted flow was emitted too (the working sink has it) and the observer did not get it.
      await until('the permitted flow in the events file', () => agent.events().some((e) => e.destination.ip === HTTPBIN.ipv4));
      const denied = observer.lines.find(isFlowTo(ATTACKER.ipv4)) as unknown as FlowEvent;
      assert.deepEqual(
        {
          verdict: denied.verdict,
          workload: `${denied.workload.namespace}/${denied.workload.name}`,
          rule: denied.rule,
          layer: denied.layer,
        },
        { verdict: 'denied', workload: `${APP.namespace}/${APP.name}`, rule: 'deny-all', layer: 'connect' },
      );
      assert.equal(observer.lines.filter(isFlowTo(HTTPBIN.ipv4)).length, 0, 'the permitted flow is filtered out');
      assert.ok(observer.lines.every((line) => line.kind !== 'flow' || line.verdict === 'denied'));
      const stats = (await agent.status()).stats;
      assert.ok(Number(stats['events.sinks[1].failures']) > 0, `the dead sink failed: ${JSON.stringify(stats)}`);
      assert.equal(Number(stats['events.sinks[1].delivered']), 0);
    } finally {
      const exited = once(observer.child, 'exit');
      observer.child.kill('SIGINT');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, observer.stderr());
    }
  });

  test('--last N prints the N most recent records and exits; filters apply to history', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await connect(ATTACKER.ipv4)).error, 'EPERM');
    assert.equal((await connect(HTTPBIN.ipv4)).ok, true);
    await until(
      'the last permitted flow in the events file',
      () => agent.events().filter((e) => e.destination.ip === HTTPBIN.ipv4).length >= 2,
    );
    const run = async (args: string[]) => {
      const observer = startObserver(['--socket', agent.socketPath, '--output', 'json', ...args]);
      const [code] = (await once(observer.child, 'exit')) as [number | null];
      assert.equal(code, 0, observer.stderr());
      return observer.lines;
    };
    const lastTwo = await run(['--last', '2']);
    assert.equal(lastTwo.length, 2);
    assert.ok(isFlowTo(HTTPBIN.ipv4)(lastTwo[1]!), `the newest record is the permitted connect: ${JSON.stringify(lastTwo)}`);
    const denied = await run(['--last', '100', '--verdict', 'denied', '--workload', `${APP.namespace}/${APP.name}`]);
    assert.ok(denied.length >= 2);
    assert.ok(
      denied.every((line) => line.verdict === 'denied' && isFlowTo(ATTACKER.ipv4)(line)),
      JSON.stringify(denied),
    );
    assert.equal((await run(['--last', '5', '--namespace', 'nobody'])).length, 0);
  });

  test('a bad filter is refused with the reason', async () => {
    const observer = startObserver(['--socket', agent.socketPath, '--verdict', 'dropped']);
    const [code] = (await once(observer.child, 'exit')) as [number | null];
    assert.equal(code, 1);
    assert.match(observer.stderr(), /--verdict "dropped": use one of permitted, denied, would-deny, would-permit/);
  });
});

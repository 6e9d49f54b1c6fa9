// Evidence in every mode, in the netns lab with the real agent and kernel: in discovery mode (where the default action
// permits at connect and nothing waits for a ClientHello) each TLS flow's first flight is still read and reported as an
// evidence event with the SNI (or HTTP Host) it really sent beside the name its address was learned for, IPv4 and IPv6.
// From that recording `suggest` leaves the fronted flow out, and `policy replay` judges the webGroup rule on the real
// SNI and agrees with what the live agent then decides in enforce mode on the same traffic. A connect a webGroup rule let
// through that never sends a ClientHello is reported at its close, naming that rule.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAB_UNLISTED_TLS_NAME } from '../../lab/certs.js';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { CLI_SCRIPT, LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import { parseReplayJson } from '../../src/cli/policy-replay.js';
import type { FlowEvent } from '../../src/events/types.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const APP = { pod: 'app', namespace: 'obot-mcp', name: 'ms1evid-0', labels: { app: 'ms1evid' } };
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const POLICY = 'obot-mcp/obot-ms1evid-fw';
const FAMILIES = [4, 6] as const;

/** One TLS flow of the table: honest (the name it resolved) or fronted (that name's address, another SNI). */
interface Flow {
  what: string;
  family: 4 | 6;
  ip: string;
  sni: string;
  probe: string[];
}

function tlsFlows(caPath: string): Flow[] {
  return FAMILIES.flatMap((family) => {
    const ip = family === 4 ? OPENAI.ipv4 : OPENAI.ipv6;
    const tls = (target: string, ...extra: string[]) => ['tls', target, '443', '--ca', caPath, '--timeout-ms', '2000', ...extra];
    return [
      { what: `honest IPv${family}`, family, ip, sni: 'api.openai.com', probe: tls('api.openai.com', '--family', String(family)) },
      { what: `fronted IPv${family}`, family, ip, sni: LAB_UNLISTED_TLS_NAME, probe: tls(ip, '--sni', LAB_UNLISTED_TLS_NAME) },
    ];
  });
}

const ruleOf = (e: Pick<FlowEvent, 'policy' | 'rule'>) => (e.policy ? `${e.policy.namespace}/${e.policy.name}:${e.rule}` : e.rule);

describe('evidence: what every flow sent, in every mode', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;
  let flows: Flow[];
  let discoveryFile: string;
  let suggestedDir: string;
  let enforceStart: string;

  const cli = (args: string[]) => lab.runInNode([process.execPath, CLI_SCRIPT, ...args], { timeoutMs: 30_000 });

  const evidenceOf = (f: Flow) => (e: FlowEvent) =>
    e.evidence === true && e.destination.ip === f.ip && e.destination.port === 443 && e.sni === f.sni;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('ev'), pods: [APP.pod] });
    agent = new LabAgent(lab, { workloads: [APP], mode: 'discovery', aggregateWindowMs: 200 });
    await agent.start(60_000);
    flows = tlsFlows(lab.caPath);
    suggestedDir = join(lab.workDir, 'suggested');
    mkdirSync(suggestedDir);
  });

  afterAll(() => teardownAgentLab(agent, lab));

  test('discovery mode: honest and fronted TLS flows both get through, and each has an evidence event with its real SNI', async () => {
    // Twice each, so the honest name is not left out as seen only once.
    for (let round = 0; round < 2; round++)
      for (const f of flows) {
        const reached = await lab.probe(APP.pod, f.probe);
        assert.ok(reached.kind === 'tls' && reached.handshake, `calibration: discovery lets ${f.what} through: ${JSON.stringify(reached)}`);
      }
    const events = await agent.eventsUntil('evidence of every flow', (all) =>
      flows.every((f) => all.filter(evidenceOf(f)).reduce((n, e) => n + e.count, 0) >= 2),
    );
    for (const f of flows) {
      const [evidence] = events.filter(evidenceOf(f));
      assert.deepEqual(
        [evidence!.layer, evidence!.firstFlight, evidence!.learnedName, evidence!.learnedFrom, evidence!.verdict, evidence!.tier],
        ['tls', 'client-hello', 'api.openai.com', 'workload-dns', 'permitted', 3],
        f.what,
      );
      assert.equal(evidence!.destination.family, f.family);
    }
    // A plain HTTP request head is read the same way: its Host is the evidence.
    for (const family of FAMILIES) {
      const ip = family === 4 ? OPENAI.ipv4 : OPENAI.ipv6;
      const sent = await lab.probe(APP.pod, ['hello', ip, '443', '--plain-http', '--sni', 'api.openai.com']);
      assert.ok(sent.kind === 'hello' && sent.connected, JSON.stringify(sent));
    }
    const http = await agent.eventsUntil('the HTTP evidence', (all) =>
      FAMILIES.every((family) => all.some((e) => e.evidence && e.httpHost === 'api.openai.com' && e.destination.family === family)),
    );
    for (const family of FAMILIES) {
      const [evidence] = http.filter((e) => e.evidence && e.httpHost === 'api.openai.com' && e.destination.family === family);
      assert.deepEqual(
        [evidence!.layer, evidence!.firstFlight, evidence!.fqdnSource, evidence!.sni, evidence!.learnedName],
        ['http', 'http-request', 'http-host', undefined, 'api.openai.com'],
        `HTTP IPv${family}`,
      );
    }
    // The connect decisions name only the learned name: without the evidence the fronted flow looks honest.
    assert.ok(events.some((e) => e.layer === 'connect' && e.destination.ip === OPENAI.ipv4 && e.fqdn === 'api.openai.com' && !e.sni));
    const status = JSON.parse((await cli(['status', '--socket', agent.socketPath, '--json'])).stdout) as {
      stats: Record<string, string>;
      workloads: { key: string; rollout: { frontedFlows: number } }[];
    };
    assert.ok(Number(status.stats.kernelEvidenceRead) >= 10, `the kernel counted its reads: ${JSON.stringify(status.stats)}`);
    const rollout = status.workloads.find((w) => w.key === `${APP.namespace}/${APP.name}`)!.rollout;
    assert.equal(rollout.frontedFlows, 4, 'status counts the fronted flows (2 rounds, IPv4 and IPv6), before any flip');
    assert.match(
      (await cli(['status', '--socket', agent.socketPath])).stdout,
      /possible fronting: 4 flow\(s\) sent a name other than the one their address was learned for/,
    );
    discoveryFile = join(lab.workDir, 'discovery.jsonl');
    writeFileSync(discoveryFile, readFileSync(agent.eventsPath, 'utf8'));
  });

  test('suggest keeps the honest name and leaves the fronted flows out, saying why', async () => {
    const suggested = await cli(['suggest', '--events', discoveryFile, '--output-dir', suggestedDir]);
    assert.equal(suggested.code, 0, suggested.stderr);
    assert.deepEqual(readdirSync(suggestedDir), ['obot-ms1evid-fw.yaml']);
    const yaml = readFileSync(join(suggestedDir, 'obot-ms1evid-fw.yaml'), 'utf8');
    assert.match(yaml, /domains:\n\s+- "api\.openai\.com"\n/);
    assert.doesNotMatch(yaml, /^\s+- "unlisted\.example"/m);
    assert.match(
      suggested.stderr + yaml,
      /left out: unlisted\.example at api\.openai\.com .*possible domain fronting/,
      'the fronted flow is listed as left out, with the reason',
    );
  });

  test('replay judges the webGroup rule on the real SNI and agrees with the live agent in enforce mode', async () => {
    agent.writePolicy('obot-ms1evid-fw.yaml', readFileSync(join(suggestedDir, 'obot-ms1evid-fw.yaml'), 'utf8'));
    await agent.waitForPolicies(['obot-ms1evid-fw']);
    await agent.setMode('enforce');
    enforceStart = new Date().toISOString();
    for (const f of flows) await lab.probe(APP.pod, f.probe);
    const live = await agent.eventsUntil('the enforce-mode decisions', (all) =>
      flows.every((f) =>
        all.some((e) => e.time >= enforceStart && !e.evidence && e.layer === 'tls' && e.destination.ip === f.ip && e.sni === f.sni),
      ),
    );
    const liveVerdict = (f: Flow) => {
      const decided = live.filter(
        (e) => e.time >= enforceStart && !e.evidence && e.layer === 'tls' && e.destination.ip === f.ip && e.sni === f.sni,
      );
      return [...new Set(decided.map((e) => `${e.verdict} ${ruleOf(e)}`))];
    };
    for (const f of flows)
      assert.deepEqual(
        liveVerdict(f),
        [f.sni === 'api.openai.com' ? `permitted ${POLICY}:allow-approved-egress` : `denied ${POLICY}:deny-all-external`],
        `live: ${f.what}`,
      );

    const replayed = await cli([
      'policy',
      'replay',
      suggestedDir,
      '--events',
      discoveryFile,
      '--config',
      agent.configPath,
      '--output',
      'json',
    ]);
    assert.equal(replayed.code, 0, replayed.stderr);
    const results = parseReplayJson(replayed.stdout);
    for (const f of flows) {
      const mine = results.filter((r) => r.layer === 'tls' && r.destination.ip === f.ip && r.fqdn === f.sni);
      assert.ok(mine.length > 0, `replayed ${f.what}: ${replayed.stdout}`);
      for (const r of mine) {
        assert.equal(r.assumedSni, undefined, 'judged on the SNI the evidence shows, not an assumed one');
        assert.deepEqual([`${r.replayed.verdict} ${r.replayed.rule}`], liveVerdict(f), `replay agrees with the agent: ${f.what}`);
      }
    }
    assert.ok(
      results.every((r) => r.layer !== 'connect' || r.destination.port !== 443),
      'every discovery connect to 443 was replaced by its evidence',
    );
  });

  test('a connect the webGroup rule let through that never sends a ClientHello is reported, naming the rule', async () => {
    const since = new Date().toISOString();
    for (const family of FAMILIES) {
      const silent = await lab.probe(APP.pod, ['tcp', 'api.openai.com', '443', '--family', String(family), '--timeout-ms', '500']);
      assert.ok(silent.kind === 'tcp' && silent.address !== null, `the connect went ahead: ${JSON.stringify(silent)}`);
    }
    const ip = (family: 4 | 6) => (family === 4 ? OPENAI.ipv4 : OPENAI.ipv6);
    const events = await agent.eventsUntil('the silent connects', (all) =>
      FAMILIES.every((family) =>
        all.some((e) => e.time >= since && e.evidence && e.firstFlight === 'none' && e.destination.ip === ip(family)),
      ),
    );
    for (const family of FAMILIES) {
      const [silent] = events.filter((e) => e.time >= since && e.evidence && e.firstFlight === 'none' && e.destination.ip === ip(family));
      assert.deepEqual(
        [silent!.verdict, silent!.tier, ruleOf(silent!), silent!.learnedName, silent!.sni],
        ['permitted', 2, `${POLICY}:allow-approved-egress`, 'api.openai.com', undefined],
        `IPv${family}`,
      );
    }
  });
});

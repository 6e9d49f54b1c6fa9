// From discovery to default-deny in the netns lab, through the real CLI and the real agent: the demo's two MCP servers
// run in discovery mode, `egressguard suggest` turns their recorded traffic into policies that mean what the demo's
// known-good policies mean; those policies are enforced and a table of flows (IPv4 and IPv6, TLS honest and fronted,
// direct addresses, UDP, a baseline permit, names denied at DNS) runs against the kernel; then `policy replay` over the
// recording must agree with the agent flow for flow, and `policy explain` (live and from files) with every verdict.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAB_UNLISTED_TLS_NAME } from '../../lab/certs.js';
import { DEFAULT_LAB_HOSTS, LAB_ADDRESSES, Lab } from '../../lab/lab.js';
import { CLI_SCRIPT, LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import { parseReplayJson } from '../../src/cli/policy-replay.js';
import type { ProbeResult } from '../../lab/probe-result.js';
import type { FlowEvent } from '../../src/events/types.js';
import { compileForWorkload } from '../../src/policy/compile.js';
import { loadPolicySet } from '../../src/discover/policy-set.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const BENIGN = { pod: 'benign', namespace: 'obot-mcp', name: 'ms1kbsng-xyz', labels: { app: 'ms1kbsng', 'mcp-user-id': 'u1' } };
const ROGUE = { pod: 'rogue', namespace: 'obot-mcp', name: 'pt5rfqaz-abc', labels: { app: 'pt5rfqaz', 'mcp-user-id': 'u2' } };
const host = (name: string) => DEFAULT_LAB_HOSTS.find((h) => h.name === name)!;
const OPENAI = host('api.openai.com');
const HTTPBIN = host('httpbin.org');
const WEBHOOK = host('webhook.site');
const examplePolicies = fileURLToPath(new URL('../../../examples/policies/', import.meta.url));
/** A tier-1 entry, logged, so the table has a baseline decision too. */
const BASELINE_PERMIT = { name: 'lab-webhook-8443', cidr: `${WEBHOOK.ipv4}/32`, protocol: 'tcp', port: 8443, log: true };

/** One flow of the enforcement table: the probe, and how explain names the same flow. */
interface Case {
  what: string;
  workload: typeof BENIGN;
  probe: string[];
  /** Destination as the kernel sees it. */
  ip: string;
  port: number;
  protocol: 'tcp' | 'udp';
  /** The name the workload resolved (explain from files needs it to know the address is learned). */
  name?: string;
  /** The ClientHello's SNI, when it differs from the name; null: a flow that sends none. */
  sni?: string;
  expect: { verdict: 'permitted' | 'denied'; rule: string };
}

const BENIGN_RULE = 'obot-mcp/obot-ms1kbsng-fw';
const ROGUE_RULE = 'obot-mcp/obot-pt5rfqaz-fw';

function ruleLabel(e: Pick<FlowEvent, 'policy' | 'rule'>): string {
  return e.policy ? `${e.policy.namespace}/${e.policy.name}:${e.rule}` : e.rule;
}

/** The kernel's event for a case: its workload and destination and, when it has one, the name the flow carried. */
function decides(c: Case, e: FlowEvent): boolean {
  const name = c.sni ?? c.name;
  return (
    e.workload.name === c.workload.name &&
    e.destination.ip === c.ip &&
    e.destination.port === c.port &&
    e.layer !== 'dns' &&
    (name === undefined || e.fqdn === name)
  );
}

describe('discovery to default-deny: suggest, replay, explain', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;
  let suggestedDir: string;
  let enforceStart: string;
  let cases: Case[];

  const cli = (args: string[]) => lab.runInNode([process.execPath, CLI_SCRIPT, ...args], { timeoutMs: 30_000 });

  async function probe(workload: typeof BENIGN, args: string[]): Promise<ProbeResult> {
    return lab.probe(workload.pod, args);
  }

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('dc'), pods: [BENIGN.pod, ROGUE.pod] });
    agent = new LabAgent(lab, {
      workloads: [BENIGN, ROGUE],
      mode: 'discovery',
      aggregateWindowMs: 200,
      baselinePermits: [BASELINE_PERMIT],
    });
    await agent.start(60_000);
    suggestedDir = join(lab.workDir, 'suggested');
    mkdirSync(suggestedDir);
  });

  afterAll(() => teardownAgentLab(agent, lab));

  test('discovery (the calibration: every flow gets through), then suggest reproduces the demo known-good policies', async () => {
    const tls = (workload: typeof BENIGN, name: string) => probe(workload, ['tls', name, '443', '--ca', lab.caPath]);
    for (let i = 0; i < 3; i++) {
      const reached = await tls(BENIGN, 'api.openai.com');
      assert.ok(reached.kind === 'tls' && reached.handshake, JSON.stringify(reached));
    }
    for (const name of ['httpbin.org', 'webhook.site']) {
      const reached = await tls(ROGUE, name);
      assert.ok(reached.kind === 'tls' && reached.handshake, `discovery lets the rogue server reach ${name}: ${JSON.stringify(reached)}`);
    }
    const recorded = await agent.eventsUntil('the discovery traffic', (events) => {
      const tlsFlows = events.filter((e) => e.layer === 'connect' && e.destination.port === 443);
      return (
        tlsFlows.filter((e) => e.workload.name === BENIGN.name).reduce((n, e) => n + e.count, 0) >= 3 &&
        tlsFlows.some((e) => e.workload.name === ROGUE.name && e.fqdn === 'webhook.site')
      );
    });
    assert.ok(
      recorded.every((e) => e.tier === 3 && e.verdict === 'permitted'),
      'discovery decides by the default action alone',
    );

    const suggested = await cli(['suggest', '--events', agent.eventsPath, '--output-dir', suggestedDir]);
    assert.equal(suggested.code, 0, suggested.stderr);
    assert.deepEqual(readdirSync(suggestedDir).sort(), ['obot-ms1kbsng-fw.yaml', 'obot-pt5rfqaz-fw.yaml']);
    assert.match(suggested.stderr, /obot-mcp\/obot-pt5rfqaz-fw: deny-all/);
    assert.match(suggested.stderr, /left out: httpbin\.org \(1 flow\(s\)\): seen in a single flow/);
    const lint = await cli(['policy', 'lint', suggestedDir]);
    assert.equal(lint.code, 0, lint.stdout);
    assert.match(lint.stdout, /0 error\(s\), 0 warning\(s\)/);

    // The same rules for each server as the demo's hand-written policies: names differ, meaning must not.
    const meaning = (dir: string, workload: typeof BENIGN) =>
      compileForWorkload(loadPolicySet([dir]).policies, workload).map((r) => ({
        action: r.action,
        protocol: r.protocol,
        ports: [r.portLow, r.portHigh],
        cidrs: r.cidrs,
        anyDestination: r.anyDestination,
        domains: r.domains,
        watch: r.watch,
        logging: r.logging,
        tlsRequired: r.tlsRequired,
        active: r.active,
      }));
    for (const workload of [BENIGN, ROGUE])
      assert.deepEqual(meaning(suggestedDir, workload), meaning(examplePolicies, workload), workload.name);
  });

  test('status counts what flipping the default would deny', async () => {
    const status = await cli(['status', '--socket', agent.socketPath, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { workloads: { key: string; rollout: { flowsDeniedIfDefaultFlipped: number } }[] };
    const rollout = (w: typeof BENIGN) => parsed.workloads.find((x) => x.key === `${w.namespace}/${w.name}`)!.rollout;
    assert.ok(rollout(BENIGN).flowsDeniedIfDefaultFlipped >= 3, JSON.stringify(rollout(BENIGN)));
    assert.ok(rollout(ROGUE).flowsDeniedIfDefaultFlipped >= 2, JSON.stringify(rollout(ROGUE)));
    const text = await cli(['status', '--socket', agent.socketPath]);
    assert.match(text.stdout, /if the default flipped to deny now: \d+ connection\(s\)/);
  });

  test('the suggested policies enforced: the kernel decides a table of flows', async () => {
    for (const file of readdirSync(suggestedDir)) agent.writePolicy(file, readFileSync(join(suggestedDir, file), 'utf8'));
    await agent.waitForPolicies(['obot-ms1kbsng-fw', 'obot-pt5rfqaz-fw']);
    await agent.setMode('enforce');
    enforceStart = new Date().toISOString();
    const allow = { verdict: 'permitted' as const, rule: `${BENIGN_RULE}:allow-approved-egress` };
    const benignDeny = { verdict: 'denied' as const, rule: `${BENIGN_RULE}:deny-all-external` };
    const rogueDeny = { verdict: 'denied' as const, rule: `${ROGUE_RULE}:deny-all-external` };
    const tlsArgs = (target: string, ...extra: string[]) => ['tls', target, '443', '--ca', lab.caPath, '--timeout-ms', '2000', ...extra];
    cases = [
      {
        what: 'benign https://api.openai.com (IPv4)',
        workload: BENIGN,
        probe: tlsArgs('api.openai.com', '--family', '4'),
        ip: OPENAI.ipv4,
        port: 443,
        protocol: 'tcp',
        name: 'api.openai.com',
        expect: allow,
      },
      {
        what: 'benign https://api.openai.com (IPv6)',
        workload: BENIGN,
        probe: tlsArgs('api.openai.com', '--family', '6'),
        ip: OPENAI.ipv6,
        port: 443,
        protocol: 'tcp',
        name: 'api.openai.com',
        expect: allow,
      },
      {
        what: `benign fronting: api.openai.com's address, SNI ${LAB_UNLISTED_TLS_NAME}`,
        workload: BENIGN,
        probe: tlsArgs(OPENAI.ipv4, '--sni', LAB_UNLISTED_TLS_NAME),
        ip: OPENAI.ipv4,
        port: 443,
        protocol: 'tcp',
        name: 'api.openai.com',
        sni: LAB_UNLISTED_TLS_NAME,
        expect: benignDeny,
      },
      {
        what: 'benign httpbin.org by address, port 80',
        workload: BENIGN,
        probe: ['tcp', HTTPBIN.ipv4, '80'],
        ip: HTTPBIN.ipv4,
        port: 80,
        protocol: 'tcp',
        expect: benignDeny,
      },
      {
        what: 'rogue direct IPv4 httpbin.org:443',
        workload: ROGUE,
        probe: ['tcp', HTTPBIN.ipv4, '443'],
        ip: HTTPBIN.ipv4,
        port: 443,
        protocol: 'tcp',
        expect: rogueDeny,
      },
      {
        what: 'rogue direct IPv6 webhook.site:443',
        workload: ROGUE,
        probe: ['tcp', WEBHOOK.ipv6, '443'],
        ip: WEBHOOK.ipv6,
        port: 443,
        protocol: 'tcp',
        expect: rogueDeny,
      },
      {
        what: 'rogue UDP httpbin.org:9999',
        workload: ROGUE,
        probe: ['udp', HTTPBIN.ipv4, '9999'],
        ip: HTTPBIN.ipv4,
        port: 9999,
        protocol: 'udp',
        expect: rogueDeny,
      },
      {
        what: 'rogue webhook.site:8443 (baseline permit)',
        workload: ROGUE,
        probe: ['tcp', WEBHOOK.ipv4, '8443'],
        ip: WEBHOOK.ipv4,
        port: 8443,
        protocol: 'tcp',
        expect: { verdict: 'permitted', rule: BASELINE_PERMIT.name },
      },
    ];
    for (const c of cases) await probe(c.workload, c.probe);
    // Names the policies deny never reach a connect: the DNS proxy answers NXDOMAIN and the resolver never sees them.
    const before = (await lab.resolverQueries()).filter((n) => n === 'httpbin.org').length;
    const denied = await probe(ROGUE, ['dns', 'httpbin.org', '--server', LAB_ADDRESSES.resolver.ipv4]);
    assert.ok(denied.kind === 'dns' && denied.rcode === 'NXDOMAIN', JSON.stringify(denied));
    assert.equal(
      (await lab.resolverQueries()).filter((n) => n === 'httpbin.org').length,
      before,
      'the denied name never reached the resolver',
    );

    const events = await agent.eventsUntil('every case', (all) => {
      const phase = all.filter((e) => e.time >= enforceStart);
      return cases.every((c) => phase.some((e) => decides(c, e)));
    });
    for (const c of cases) {
      const decided = events.filter((e) => e.time >= enforceStart && decides(c, e));
      assert.deepEqual(
        decided.map((e) => [e.verdict, ruleLabel(e)]),
        [[c.expect.verdict, c.expect.rule]],
        c.what,
      );
    }
  });

  test('replay over the recording agrees with the agent, flow for flow', async () => {
    const replayed = await cli([
      'policy',
      'replay',
      suggestedDir,
      '--events',
      agent.eventsPath,
      '--since',
      enforceStart,
      '--config',
      agent.configPath,
      '--output',
      'json',
    ]);
    assert.equal(replayed.code, 0, replayed.stderr);
    const flows = parseReplayJson(replayed.stdout);
    const recorded = agent.events().filter((e) => e.time >= enforceStart && e.layer !== 'packet');
    assert.equal(flows.length, recorded.length, 'every recorded decision is replayed');
    assert.ok(
      flows.some((f) => f.layer === 'dns' && f.recorded.verdict === 'denied'),
      'the denied DNS query is among them',
    );
    const byId = new Map(recorded.map((e) => [e.eventId, e]));
    for (const flow of flows) {
      const event = byId.get(flow.eventId);
      assert.ok(event, `replayed ${flow.eventId} is a recorded event`);
      const where = `${flow.workload} ${flow.layer} ${flow.fqdn ?? ''} ${flow.destination.ip}:${flow.destination.port}/${flow.destination.protocol}`;
      assert.deepEqual(
        [flow.replayed.verdict, flow.replayed.tier, flow.replayed.rule],
        [event.verdict, event.tier, ruleLabel(event)],
        where,
      );
    }
  });

  test('replayed over the discovery recording, the suggested policies decide as the kernel later did', async () => {
    const discoveryOnly = join(lab.workDir, 'discovery.jsonl');
    const lines = readFileSync(agent.eventsPath, 'utf8').split('\n').filter(Boolean);
    writeFileSync(discoveryOnly, lines.filter((line) => (JSON.parse(line) as { time: string }).time < enforceStart).join('\n') + '\n');
    const replayed = await cli([
      'policy',
      'replay',
      suggestedDir,
      '--events',
      discoveryOnly,
      '--config',
      agent.configPath,
      '--output',
      'json',
    ]);
    assert.equal(replayed.code, 0, replayed.stderr);
    const flows = parseReplayJson(replayed.stdout);
    const connects = (w: typeof BENIGN) => flows.filter((f) => f.workload === `${w.namespace}/${w.name}` && f.layer !== 'dns');
    // The kernel permitted benign's api.openai.com at the ClientHello and denied every rogue flow (cases above). The
    // discovery recording has each flow's evidence (the SNI it sent), so nothing is assumed.
    assert.ok(connects(BENIGN).length > 0);
    for (const f of connects(BENIGN)) {
      assert.deepEqual(
        [f.fqdn, f.layer, f.replayed.verdict, f.replayed.rule, f.assumedSni],
        ['api.openai.com', 'tls', 'permitted', `${BENIGN_RULE}:allow-approved-egress`, undefined],
      );
    }
    assert.deepEqual([...new Set(connects(ROGUE).map((f) => `${f.fqdn} ${f.replayed.verdict} ${f.replayed.rule}`))].sort(), [
      `httpbin.org denied ${ROGUE_RULE}:deny-all-external`,
      `webhook.site denied ${ROGUE_RULE}:deny-all-external`,
    ]);
    const rogueNames = flows.filter((f) => f.workload === `${ROGUE.namespace}/${ROGUE.name}` && f.layer === 'dns');
    assert.ok(
      rogueNames.length > 0 && rogueNames.every((f) => f.replayed.verdict === 'denied'),
      'the rogue names are denied at DNS, as the agent did',
    );
  });

  test('explain agrees with the kernel for every case, from the live agent and from files', async () => {
    for (const c of cases) {
      const workload = `${c.workload.namespace}/${c.workload.name}`;
      const flight = c.sni !== undefined ? ['--sni', c.sni] : c.name === undefined ? ['--no-client-hello'] : [];
      const live = await cli([
        'policy',
        'explain',
        workload,
        c.ip,
        '--socket',
        agent.socketPath,
        '--port',
        String(c.port),
        '--protocol',
        c.protocol,
        '--json',
        ...(c.name ? ['--sni', c.sni ?? c.name] : flight),
      ]);
      assert.equal(live.code, 0, live.stderr);
      const fromLive = JSON.parse(live.stdout) as { verdict: string; rule: string };
      assert.deepEqual([fromLive.verdict, fromLive.rule], [c.expect.verdict, c.expect.rule], `live: ${c.what}`);
      const destination = c.name === undefined ? [c.ip] : [c.name, '--address', c.ip];
      const files = await cli([
        'policy',
        'explain',
        workload,
        ...destination,
        '--config',
        agent.configPath,
        '--port',
        String(c.port),
        '--protocol',
        c.protocol,
        '--json',
        ...flight,
      ]);
      assert.equal(files.code, 0, files.stderr);
      const fromFiles = JSON.parse(files.stdout) as { verdict: string; rule: string };
      assert.deepEqual([fromFiles.verdict, fromFiles.rule], [c.expect.verdict, c.expect.rule], `files: ${c.what}`);
    }
    const text = await cli(['policy', 'explain', `${ROGUE.namespace}/${ROGUE.name}`, 'httpbin.org', '--socket', agent.socketPath]);
    assert.match(text.stdout, /DNS: httpbin\.org is denied \(tier 2 obot-mcp\/obot-pt5rfqaz-fw:deny-all-external\)/);
  });

  test('a truncated or invalid event file is refused, naming the file and the line', async () => {
    const lines = readFileSync(agent.eventsPath, 'utf8').split('\n').filter(Boolean);
    const truncated = join(lab.workDir, 'truncated.jsonl');
    writeFileSync(truncated, `${lines.slice(0, 4).join('\n')}\n${lines[4]!.slice(0, 40)}`);
    const cut = await cli(['suggest', '--events', truncated]);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, new RegExp(`${truncated}:5: truncated`));
    const invalid = join(lab.workDir, 'invalid.jsonl');
    writeFileSync(invalid, `${lines[0]}\n${lines[1]!.replace('"verdict":"', '"verdict":"x')}\n`);
    const bad = await cli(['policy', 'replay', suggestedDir, '--events', invalid]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`${invalid}:2: flow record field "verdict" is "x`));
  });
});

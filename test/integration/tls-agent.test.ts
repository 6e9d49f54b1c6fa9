// TLS SNI enforcement through the whole product: the CLI agent, a FirewallPolicy file, the DNS proxy learning
// addresses, the kernel programs, the events file and `egressguard status`, in a network-namespace lab with real TLS
// servers (certificates by SNI, signed by the lab CA). Every case runs over IPv4 and IPv6.
// What reached the far end is read from the lab server's log, matched by the probe's source port.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { LAB_UNLISTED_TLS_NAME } from '../../lab/certs.js';
import { DEFAULT_LAB_HOSTS, Lab, type LabHost } from '../../lab/lab.js';
import { CLI_SCRIPT, LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import type { ProbeResult, ProbeResultOfKind } from '../../lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const WEB = { pod: 'web', namespace: 'obot-mcp', name: 'web-7f9c', labels: { app: 'web' } };
const WORKLOAD_KEY = `${WEB.namespace}/${WEB.name}`;
const SHORT_HOST: LabHost = { name: 'short.example', ipv4: '198.18.100.40', ipv6: 'fd00:eb:100::40', ttl: 60 };
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const FAMILIES = [4, 6] as const;

const addressOf = (host: LabHost, family: 4 | 6): string => (family === 4 ? host.ipv4 : host.ipv6);

/** The web policy; `extraRules` go between allow-approved and deny-all (first match wins). */
function webPolicy(extraRules = ''): string {
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: web-fw
  namespace: obot-mcp
spec:
  smartGroups:
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
  webGroups:
    - name: approved
      domains: [api.openai.com, "*.short.example"]
  rules:
    - name: allow-approved
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: web } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
      logging: true
${extraRules}    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: web } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;
}

/** A webGroup rule for approved names on port 443 with the given protocol. */
function web443Rule(name: string, protocol: 'any' | 'udp'): string {
  return `    - name: ${name}
      action: permit
      protocol: ${protocol}
      port: 443
      selector: { matchLabels: { app: web } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
`;
}

function as<K extends ProbeResult['kind']>(kind: K, result: ProbeResult): ProbeResultOfKind<K> {
  assert.equal(result.kind, kind, JSON.stringify(result));
  return result as ProbeResultOfKind<K>;
}

describe('TLS SNI enforcement through the agent', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('tl'),
      pods: [WEB.pod],
      hosts: [...DEFAULT_LAB_HOSTS, SHORT_HOST],
      wildcardDomains: ['attacker.example', 'short.example'],
    });
    agent = new LabAgent(lab, { workloads: [WEB], mode: 'enforce', aggregateWindowMs: 200 });
    agent.writePolicy('web.yaml', webPolicy());
    await agent.start();
    await agent.waitForPolicies(['web-fw']);
    // The agent resolves the policy's exact names itself: api.openai.com is learned before the pod asks.
    await agent.waitFor('api.openai.com learned for both families', (s) =>
      [OPENAI.ipv4, OPENAI.ipv6].every((ip) => learnedIps(s).includes(ip)),
    );
  });

  afterAll(() => teardownAgentLab(agent, lab));

  function learnedIps(status: AgentStatus): string[] {
    return status.workloads.find((w) => w.key === WORKLOAD_KEY)?.learned.map((l) => l.ip) ?? [];
  }

  async function hello(args: string[]): Promise<ProbeResultOfKind<'hello'>> {
    return as('hello', await lab.probe(WEB.pod, ['hello', ...args]));
  }

  /** The server's record of the probe's connection (written when the server closes it, idle ones after 5 s). */
  async function recordOf(probe: { sourcePort?: number }): Promise<ServerRecord> {
    assert.ok(probe.sourcePort !== undefined, `the probe connected: ${JSON.stringify(probe)}`);
    const [record] = await lab.waitForServerRecords(
      `connection from port ${probe.sourcePort}`,
      (r) => r.port === 443 && r.proto === 'tls' && r.remotePort === probe.sourcePort,
    );
    return record!;
  }

  /** A hello that must have been stopped: no answer, and not one byte of a one-segment payload reached the server. */
  async function assertDroppedWhole(args: string[]): Promise<ServerRecord> {
    const r = await hello(args);
    assert.equal(r.connected, true, JSON.stringify(r));
    assert.equal(r.serverResponded, false, `the server must not answer: ${JSON.stringify(r)}`);
    const record = await recordOf(r);
    assert.equal(record.bytesReceived, 0, `nothing may reach the server: ${JSON.stringify(record)}`);
    return record;
  }

  /** Rewrite the policy and wait until the workload's compiled rules are exactly `ruleNames`. */
  async function applyPolicy(yaml: string, ruleNames: string[]): Promise<void> {
    agent.writePolicy('web.yaml', yaml);
    await agent.waitFor(`rules ${ruleNames.join(', ')}`, (s) => {
      const rules = s.workloads.find((w) => w.key === WORKLOAD_KEY)?.rules.map((r) => r.name) ?? [];
      return JSON.stringify(rules) === JSON.stringify(ruleNames);
    });
  }

  for (const family of FAMILIES) {
    const openai = addressOf(OPENAI, family);

    test(`IPv${family}: an allowed TLS handshake completes, verified against the lab CA; the event carries the SNI`, async () => {
      const r = as('tls', await lab.probe(WEB.pod, ['tls', 'api.openai.com', '443', '--family', String(family), '--ca', lab.caPath]));
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.verified, true);
      assert.equal(r.address, openai);
      assert.equal(r.firstLine, 'tls hello from api.openai.com sni=api.openai.com');
      const event = await agent.eventMatching('the permitted TLS flow', (e) => e.layer === 'tls' && e.destination.ip === openai);
      assert.deepEqual(
        {
          fqdn: event.fqdn,
          source: event.fqdnSource,
          verdict: event.verdict,
          rule: event.rule,
          tier: event.tier,
          port: event.destination.port,
        },
        { fqdn: 'api.openai.com', source: 'sni', verdict: 'permitted', rule: 'allow-approved', tier: 2, port: 443 },
      );
      assert.equal(event.workload.name, WEB.name);
    });

    test(`IPv${family}: SNI spoofing (allowed SNI to an address never learned) fails at connect with EPERM`, async () => {
      const httpbin = addressOf(HTTPBIN, family);
      const r = as('tls', await lab.probe(WEB.pod, ['tls', httpbin, '443', '--sni', 'api.openai.com', '--ca', lab.caPath]));
      assert.equal(r.error, 'EPERM', JSON.stringify(r));
      const hr = await hello([httpbin, '443', '--sni', 'api.openai.com']);
      assert.equal(hr.error, 'EPERM', JSON.stringify(hr));
      assert.equal(hr.connected, false);
      // Connects that fail in the kernel never leave the pod: httpbin's server has no record at all.
      assert.deepEqual(
        (await lab.serverLog()).filter((rec) => rec.local === httpbin),
        [],
      );
    });

    test(`IPv${family}: domain fronting (learned IP, SNI of a non-allowed name) is dropped; the event shows the SNI`, async () => {
      // A real handshake with the fronted name: the certificate exists, so only the datapath can stop it.
      const real = as('tls', await lab.probe(WEB.pod, ['tls', openai, '443', '--sni', LAB_UNLISTED_TLS_NAME, '--ca', lab.caPath]));
      assert.equal(real.ok, false, JSON.stringify(real));
      assert.equal(real.handshake, false);
      const record = await assertDroppedWhole([openai, '443', '--sni', LAB_UNLISTED_TLS_NAME]);
      assert.equal(record.clientHello, false);
      const event = await agent.eventMatching(
        'the fronting attempt',
        (e) => e.layer === 'tls' && e.verdict === 'denied' && e.fqdn === LAB_UNLISTED_TLS_NAME && e.destination.ip === openai,
      );
      assert.deepEqual(
        { source: event.fqdnSource, rule: event.rule, tier: event.tier, policy: event.policy?.name },
        { source: 'sni', rule: 'deny-all', tier: 2, policy: 'web-fw' },
      );
      // No ClientHello naming the fronted host ever got through, from any connection.
      assert.deepEqual(
        (await lab.serverLog()).filter((rec) => rec.sni === LAB_UNLISTED_TLS_NAME),
        [],
      );
    });

    test(`IPv${family}: TLS without SNI and plain HTTP on 443 to the allowed IP are dropped`, async () => {
      const noSni = await assertDroppedWhole([openai, '443']);
      assert.equal(noSni.clientHello, false);
      await assertDroppedWhole([openai, '443', '--plain-http']);
      // Node's own TLS stack without a server name: no handshake either.
      const real = as('tls', await lab.probe(WEB.pod, ['tls', openai, '443', '--no-sni', '--ca', lab.caPath]));
      assert.equal(real.handshake, false, JSON.stringify(real));
    });

    for (const parts of [2, 3]) {
      test(`IPv${family}: a ClientHello split across ${parts} segments is judged on its SNI`, async () => {
        const allowed = await hello([openai, '443', '--sni', 'api.openai.com', '--split', String(parts)]);
        assert.equal(allowed.segments, parts);
        assert.equal(allowed.serverHello, true, JSON.stringify(allowed));
        const allowedRecord = await recordOf(allowed);
        assert.equal(allowedRecord.sni, 'api.openai.com');

        const denied = await hello([openai, '443', '--sni', LAB_UNLISTED_TLS_NAME, '--split', String(parts)]);
        assert.equal(denied.connected, true, JSON.stringify(denied));
        assert.equal(denied.serverResponded, false, JSON.stringify(denied));
        // The segments before the one that completes the ClientHello may pass; the completing one never does.
        const deniedRecord = await recordOf(denied);
        assert.equal(deniedRecord.clientHello, false, JSON.stringify(deniedRecord));
        assert.ok(deniedRecord.bytesReceived < denied.bytesSent, JSON.stringify({ deniedRecord, denied }));
      });
    }

    test(`IPv${family}: wildcard names: a subdomain of *.short.example is allowed, the apex is not`, async () => {
      const short = addressOf(SHORT_HOST, family);
      const name = `a${randomBytes(3).toString('hex')}.short.example`;
      const sub = as('tls', await lab.probe(WEB.pod, ['tls', name, '443', '--family', String(family), '--ca', lab.caPath]));
      assert.equal(sub.ok, true, JSON.stringify(sub));
      assert.equal(sub.address, short);
      assert.equal(sub.firstLine, `tls hello from short.example sni=${name}`);
      // The apex does not resolve through the proxy...
      const apex = as('tls', await lab.probe(WEB.pod, ['tls', 'short.example', '443', '--family', String(family), '--ca', lab.caPath]));
      assert.equal(apex.error, 'ENOTFOUND', JSON.stringify(apex));
      // ...and at the address learned for the subdomain, the apex as SNI is dropped.
      await assertDroppedWhole([short, '443', '--sni', 'short.example']);
    });

    test(`IPv${family}: UDP 443 (QUIC) to an allowed name is denied unless a rule says udp`, async () => {
      const quic = async (): Promise<ProbeResultOfKind<'udp'>> => as('udp', await lab.probe(WEB.pod, ['udp', openai, '443']));
      const reachedServer = async (): Promise<number> =>
        (await lab.serverLog()).filter((r) => r.proto === 'udp' && r.port === 443 && r.local === openai).length;
      const before = await reachedServer();
      assert.equal((await quic()).error, 'EPERM', 'the tcp web rule does not cover UDP');
      try {
        await applyPolicy(webPolicy(web443Rule('allow-approved-any', 'any')), ['allow-approved', 'allow-approved-any', 'deny-all']);
        assert.equal((await quic()).error, 'EPERM', 'a webGroup rule with protocol any matches TCP only');
        assert.equal(await reachedServer(), before);
        await applyPolicy(webPolicy(web443Rule('allow-approved-quic', 'udp')), ['allow-approved', 'allow-approved-quic', 'deny-all']);
        // The new rule's addresses are learned when the agent (or a lookup) resolves its names.
        await agent.waitFor('api.openai.com learned for the udp rule', (s) =>
          (s.workloads.find((w) => w.key === WORKLOAD_KEY)?.learned ?? []).some(
            (l) => l.ip === openai && l.rule.endsWith(':allow-approved-quic'),
          ),
        );
        const permitted = await quic();
        assert.equal(permitted.ok, true, JSON.stringify(permitted));
        assert.equal(await reachedServer(), before + 1);
      } finally {
        await applyPolicy(webPolicy(), ['allow-approved', 'deny-all']);
      }
      assert.equal((await quic()).error, 'EPERM');
    });
  }

  test('ECH: decided on the outer SNI by default; denied for every name once the baseline sets denyEch', async () => {
    const echHello = (family: 4 | 6): Promise<ProbeResultOfKind<'hello'>> =>
      hello([addressOf(OPENAI, family), '443', '--ech', '--sni', 'api.openai.com']);
    for (const family of FAMILIES) {
      const permitted = await echHello(family);
      assert.equal(permitted.serverResponded, true, JSON.stringify(permitted));
      const record = await recordOf(permitted);
      assert.deepEqual([record.ech, record.sni], [true, 'api.openai.com']);
      // The outer SNI decides: a non-allowed outer name is dropped even with ECH.
      await assertDroppedWhole([addressOf(OPENAI, family), '443', '--ech', '--sni', LAB_UNLISTED_TLS_NAME]);
    }
    agent.editConfig((config) => ((config.baseline as Record<string, unknown>).denyEch = true));
    try {
      // The agent applies config edits live; the first dropped ECH hello shows denyEch reached the kernel.
      let applied = false;
      for (let attempt = 0; attempt < 10 && !applied; attempt++) applied = !(await echHello(4)).serverResponded;
      assert.ok(applied, `denyEch never took effect; agent log:\n${agent.log()}`);
      for (const family of FAMILIES) {
        const record = await assertDroppedWhole([addressOf(OPENAI, family), '443', '--ech', '--sni', 'api.openai.com']);
        assert.equal(record.clientHello, false);
        // Without ECH the same name still works.
        const plain = await hello([addressOf(OPENAI, family), '443', '--sni', 'api.openai.com']);
        assert.equal(plain.serverHello, true, JSON.stringify(plain));
      }
      const event = await agent.eventMatching('the ECH denial', (e) => e.layer === 'tls' && e.verdict === 'denied' && e.tier === 1);
      assert.equal(event.fqdn, 'api.openai.com');
    } finally {
      agent.editConfig((config) => ((config.baseline as Record<string, unknown>).denyEch = false));
    }
    let restored = false;
    for (let attempt = 0; attempt < 20 && !restored; attempt++) restored = (await echHello(6)).serverResponded;
    assert.ok(restored, 'ECH is permitted again after denyEch is removed');
  });

  test('`egressguard status` shows the allowed names and the learned addresses with a positive expiry', async () => {
    // Learn the wildcard host's addresses too (both families), so status lists names the agent did not resolve itself.
    const name = `s${randomBytes(3).toString('hex')}.short.example`;
    for (const family of FAMILIES) {
      const r = as('tls', await lab.probe(WEB.pod, ['tls', name, '443', '--family', String(family), '--ca', lab.caPath]));
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    const cli = (args: string[]) => lab.runInNode([process.execPath, CLI_SCRIPT, 'status', '--socket', agent.socketPath, ...args]);
    const json = await cli(['--json']);
    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout) as AgentStatus;
    const workload = status.workloads.find((w) => w.key === WORKLOAD_KEY);
    assert.ok(workload, `status lists the workload: ${json.stdout}`);
    const allowRule = workload.rules.find((r) => r.name === 'allow-approved');
    assert.deepEqual(allowRule?.domains, ['api.openai.com', '*.short.example']);
    const learned = workload.learned;
    for (const ip of [OPENAI.ipv4, OPENAI.ipv6, SHORT_HOST.ipv4, SHORT_HOST.ipv6]) {
      const entry = learned.find((l) => l.ip === ip && l.rule === 'obot-mcp/web-fw:allow-approved');
      assert.ok(entry, `${ip} is listed as learned for allow-approved: ${JSON.stringify(learned)}`);
      assert.ok(entry.expiresInSeconds > 0, `${ip} has a positive expiry: ${JSON.stringify(entry)}`);
    }
    const text = await cli([]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /domains api\.openai\.com, \*\.short\.example/);
    assert.match(
      text.stdout,
      new RegExp(`${OPENAI.ipv4.replaceAll('.', '\\.')}\\s+obot-mcp/web-fw:allow-approved\\s+expires in [1-9]\\d*s`),
    );
  });
});

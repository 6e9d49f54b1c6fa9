// Policy semantics (issue 7, item 10), through the whole product: the CLI agent, a FirewallPolicy file, the DNS
// proxy and the agent's own resolution learning addresses from the lab's real resolver, the kernel programs, the
// events file, `egressguard status` and /metrics. Judged on the receiving side: the lab server's log of every
// connection (bytes received, the ClientHello's SNI, whether the TLS handshake completed). IPv4 and IPv6.
//
// More than 8 SNI candidates at one address: twelve webGroup rules whose names all resolve to one CDN-like address
// (the lab's wildcard host attacker.example) make every TLS connect there carry more candidates than the kernel's
// list holds (EG_TLS_MAX_CANDIDATES). The allowed name sits in the last rule, past the 8th candidate; a deny rule
// before it covers one of its names. The connection must still be judged by its SNI, first match wins.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { LAB_UNLISTED_TLS_NAME } from '../../lab/certs.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import { DEFAULT_LAB_HOSTS, LAB_TLS_SINK_PORT, Lab } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { ProbeResult, ProbeResultOfKind } from '../../lab/probe-result.js';
import type { AgentStatus } from '../../src/agent/agent.js';
import { CONFIG_DEFAULTS } from '../../src/agent/config.js';
import type { FlowEvent } from '../../src/events/types.js';
import { KERNEL_CAPACITY } from '../../src/model/capacity.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const CDN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'attacker.example')!;
const POD = { pod: 'cdn', namespace: 'shop', name: 'cdn-client', labels: { app: 'cdn' } };
const WORKLOAD_KEY = `${POD.namespace}/${POD.name}`;
const POLICY = 'cdn-fw';
const FAMILIES = [4, 6] as const;

/** Ten permitted sites before the deny and the allowed rule: the deny is the 11th candidate, the allowed rule the 12th. */
const SITES = Array.from({ length: 10 }, (_, i) => `site${i + 1}.${CDN.name}`);
const BLOCKED = `blocked.${CDN.name}`;
const ALLOWED = `allowed.${CDN.name}`;
const PERMIT_RULES = [...SITES.map((_, i) => `permit-site${i + 1}`), 'permit-allowed'];
/** Candidates the kernel remembers per connection; the policy below has 12 webGroup rules for one address. */
const REMEMBERED = KERNEL_CAPACITY.sniCandidatesPerConnection.max;

/**
 * Twelve webGroup rules (TCP 443 and the lab's TLS sink port) on one address, then deny-all. `sites` is the action of
 * the first ten; `extraRule` goes before deny-all.
 */
function cdnPolicy(sites: 'permit' | 'deny' = 'permit', extraRule = ''): string {
  const webGroups = [
    ...SITES.map((name, i) => `    - name: site${i + 1}\n      domains: [${name}]\n`),
    `    - name: blocked\n      domains: [${BLOCKED}]\n`,
    // The allowed rule also names the blocked host: the deny rule before it must win for that name.
    `    - name: allowed\n      domains: [${ALLOWED}, ${BLOCKED}]\n`,
  ].join('');
  const webRule = (name: string, action: 'permit' | 'deny', group: string) => `    - name: ${name}
      action: ${action}
      protocol: tcp
      port: 443
      endPort: ${LAB_TLS_SINK_PORT}
      selector: { matchLabels: { app: cdn } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: ${group} }]
      logging: true
`;
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: ${POLICY}
  namespace: ${POD.namespace}
spec:
  smartGroups:
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
  webGroups:
${webGroups}  rules:
${SITES.map((_, i) => webRule(`${sites}-site${i + 1}`, sites, `site${i + 1}`)).join('')}${webRule('deny-blocked', 'deny', 'blocked')}${webRule('permit-allowed', 'permit', 'allowed')}${extraRule}    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: cdn } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;
}

function as<K extends ProbeResult['kind']>(kind: K, result: ProbeResult): ProbeResultOfKind<K> {
  assert.equal(result.kind, kind, JSON.stringify(result));
  return result as ProbeResultOfKind<K>;
}

const addressOf = (family: 4 | 6): string => (family === 4 ? CDN.ipv4 : CDN.ipv6);

/** A TLS connection to the lab's sink held open: 100 bytes once secure, 100 more and the end on any stdin input. */
const HELD_TLS_CLIENT = `
const tls = require('tls');
const a = JSON.parse(process.env.EG_ARGS);
const s = tls.connect({ host: a.host, port: a.port, servername: a.servername, ca: a.ca });
let reply = '';
s.on('secureConnect', () => s.write('x'.repeat(100), () => console.log('secure')));
s.on('data', (c) => (reply += c));
s.on('end', () => console.log('reply ' + reply.trim()));
s.on('error', (e) => console.log('error ' + e.code));
process.stdin.once('data', () => { s.write('y'.repeat(100)); s.end(); });`;

describe('more than 8 SNI candidates at one address (real kernel, agent)', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent | null = null;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('cr'), pods: [POD.pod] });
  });

  afterAll(() => teardownAgentLab(agent, lab));

  /** The server's record of a probe's connection (written when it closes; idle ones after 5 s). */
  async function recordOf(probe: { sourcePort?: number }): Promise<ServerRecord> {
    assert.ok(probe.sourcePort !== undefined, `the probe connected: ${JSON.stringify(probe)}`);
    const [record] = await lab.waitForServerRecords(
      `connection from port ${probe.sourcePort}`,
      (r) => r.port === 443 && r.proto === 'tls' && r.remotePort === probe.sourcePort,
    );
    return record!;
  }

  const hello = async (family: 4 | 6, sni: string): Promise<ProbeResultOfKind<'hello'>> =>
    as('hello', await lab.probe(POD.pod, ['hello', addressOf(family), '443', '--sni', sni]));

  test('calibration: without enforcement every SNI reaches the CDN server and gets its ServerHello', async () => {
    assert.ok(SITES.length + 2 > REMEMBERED, 'the policy has more candidates than the kernel remembers');
    for (const family of FAMILIES) {
      for (const sni of [ALLOWED, BLOCKED, LAB_UNLISTED_TLS_NAME]) {
        const probe = await hello(family, sni);
        assert.equal(probe.serverHello, true, JSON.stringify(probe));
        const record = await recordOf(probe);
        assert.deepEqual([record.sni, record.bytesReceived], [sni, probe.bytesSent], JSON.stringify(record));
      }
    }
  });

  describe('enforced', () => {
    beforeAll(async () => {
      agent = new LabAgent(lab, { workloads: [POD], mode: 'enforce', aggregateWindowMs: 100 });
      agent.writePolicy('cdn.yaml', cdnPolicy());
      await agent.start();
      await agent.waitForPolicies([POLICY]);
      // The agent resolves the exact names itself (the lab's dnsmasq answers every *.attacker.example with one
      // address): once each permit rule has the address learned, every TLS connect there has 12 candidates.
      await agent.waitFor('the CDN address learned for every permit rule, both families', (s) =>
        PERMIT_RULES.every((rule) =>
          [CDN.ipv4, CDN.ipv6].every((ip) => learned(s).some((l) => l.ip === ip && l.rule === `${POD.namespace}/${POLICY}:${rule}`)),
        ),
      );
    }, 60_000);

    function learned(status: AgentStatus): { ip: string; rule: string }[] {
      return status.workloads.find((w) => w.key === WORKLOAD_KEY)?.learned ?? [];
    }

    async function overflows(): Promise<number> {
      return Number((await agent!.status()).stats.candidateOverflows);
    }

    async function eventMatching(what: string, predicate: (e: FlowEvent) => boolean): Promise<FlowEvent> {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = agent!.events().find(predicate);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no event for ${what}; events: ${JSON.stringify(agent!.events().slice(-10))}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }

    /** A hello that must have been stopped whole: the connect went ahead, not one byte reached the server. */
    async function assertDroppedWhole(family: 4 | 6, sni: string): Promise<void> {
      const probe = await hello(family, sni);
      assert.equal(probe.connected, true, `connect is not refused for more than ${REMEMBERED} candidates: ${JSON.stringify(probe)}`);
      assert.equal(probe.serverResponded, false, JSON.stringify(probe));
      const record = await recordOf(probe);
      assert.equal(record.bytesReceived, 0, `nothing may reach the server: ${JSON.stringify(record)}`);
    }

    for (const family of FAMILIES) {
      test(`IPv${family}: the allowed name past the 8th candidate completes its handshake; a denied and an unlisted name deliver nothing`, async () => {
        const before = await overflows();
        // A real handshake through the DNS proxy, verified against the lab CA; the server logs the SNI.
        const allowed = as('tls', await lab.probe(POD.pod, ['tls', ALLOWED, '443', '--family', String(family), '--ca', lab.caPath]));
        assert.equal(allowed.ok, true, JSON.stringify(allowed));
        assert.equal(allowed.address, addressOf(family));
        assert.equal(allowed.firstLine, `tls hello from ${CDN.name} sni=${ALLOWED}`);
        const allowedRecord = await recordOf(allowed);
        assert.deepEqual([allowedRecord.handshake, allowedRecord.sni], [true, ALLOWED]);
        const permitted = await eventMatching(
          'the allowed name',
          (e) => e.layer === 'tls' && e.fqdn === ALLOWED && e.destination.ip === addressOf(family),
        );
        assert.deepEqual([permitted.verdict, permitted.tier, permitted.rule], ['permitted', 2, 'permit-allowed']);

        // A name within the first 8 candidates is still decided from the remembered list.
        const site = as('hello', await lab.probe(POD.pod, ['hello', addressOf(family), '443', '--sni', SITES[0]!]));
        assert.equal(site.serverHello, true, JSON.stringify(site));

        // The deny rule (11th candidate) wins over the later permit that also names the host.
        await assertDroppedWhole(family, BLOCKED);
        const denied = await eventMatching(
          'the blocked name',
          (e) => e.layer === 'tls' && e.fqdn === BLOCKED && e.destination.ip === addressOf(family),
        );
        assert.deepEqual([denied.verdict, denied.tier, denied.rule], ['denied', 2, 'deny-blocked']);

        // A name no rule lists falls through every candidate to the fallback.
        await assertDroppedWhole(family, LAB_UNLISTED_TLS_NAME);
        const unlisted = await eventMatching(
          'the unlisted name',
          (e) => e.layer === 'tls' && e.fqdn === LAB_UNLISTED_TLS_NAME && e.destination.ip === addressOf(family),
        );
        assert.deepEqual([unlisted.verdict, unlisted.rule], ['denied', 'deny-all']);

        // Neither name reached the server in a ClientHello since calibration (one record each, from it).
        const log = await lab.serverLog();
        for (const name of [BLOCKED, LAB_UNLISTED_TLS_NAME])
          assert.equal(log.filter((r) => r.local === addressOf(family) && r.sni === name).length, 1, `${name}: only the calibration's`);
        // Four TLS connects to the shared address, each with 12 candidates.
        assert.equal((await overflows()) - before, 4);
      });
    }

    test('the overflow count is exported as egressguard_tls_candidate_overflows_total', async () => {
      const counted = await overflows();
      assert.ok(counted >= 8, `both families' connects were counted: ${counted}`);
      const url = `http://${CONFIG_DEFAULTS.metrics.listen}/metrics`;
      const scrape = await lab.runInNode([
        process.execPath,
        '-e',
        `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`,
      ]);
      assert.equal(scrape.code, 0, scrape.stderr);
      const line = scrape.stdout.split('\n').find((l) => l.startsWith('egressguard_tls_candidate_overflows_total '));
      assert.equal(line, `egressguard_tls_candidate_overflows_total ${counted}`);
    });

    test('only rules past the 8th candidate permit: the connect goes ahead, and its live flow survives a policy rewrite', async () => {
      const rulesOf = (s: AgentStatus) => s.workloads.find((w) => w.key === WORKLOAD_KEY)?.rules.map((r) => r.name) ?? [];
      // The first ten candidates (and the fallback) deny: only permit-allowed, the 12th, can permit the connect.
      agent!.writePolicy('cdn.yaml', cdnPolicy('deny'));
      await agent!.waitFor('the deny-first rules', (s) => rulesOf(s)[0] === 'deny-site1');
      await agent!.waitFor('the CDN address learned for permit-allowed', (s) =>
        [CDN.ipv4, CDN.ipv6].every((ip) => learned(s).some((l) => l.ip === ip && l.rule === `${POD.namespace}/${POLICY}:permit-allowed`)),
      );
      const ca = await readFile(lab.caPath, 'utf8');
      for (const family of FAMILIES) {
        const before = await overflows();
        const child = lab.spawnInPod(POD.pod, [process.execPath, '-e', HELD_TLS_CLIENT], {
          env: { ...process.env, EG_ARGS: JSON.stringify({ host: addressOf(family), port: LAB_TLS_SINK_PORT, servername: ALLOWED, ca }) },
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        const client = new Lines(child);
        await client.waitFor('secure');
        assert.equal((await overflows()) - before, 1);
        // A rule change makes the agent re-judge every live socket of the workload (the socket iterators): the
        // overflowed permit must count there too, or the flow is ended.
        const extra = `unrelated${family}`;
        agent!.writePolicy(
          'cdn.yaml',
          cdnPolicy(
            'deny',
            `    - name: ${extra}\n      action: permit\n      protocol: udp\n      port: 9\n      selector: { matchLabels: { app: cdn } }\n      destinationSmartGroups: [{ name: any-destination }]\n`,
          ),
        );
        await agent!.waitFor(`rule ${extra} enforced`, (s) => rulesOf(s).includes(extra));
        child.stdin!.write('finish\n');
        // The sink counts the plaintext it received and answers when the client ends: all 200 bytes arrived.
        await client.waitFor('reply received 200');
        assert.deepEqual(
          client.lines.filter((line) => line.startsWith('error')),
          [],
        );
      }
    });
  });
});

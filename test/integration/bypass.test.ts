// Bypass attempts against the real agent, the real kernel programs and a real resolver, in a network-namespace lab.
// Every attempt from the rogue workload must fail; the benign workload's allowed traffic must keep working throughout.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DEFAULT_LAB_HOSTS, LAB_ADDRESSES, Lab, PROBE_SCRIPT } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type {
  DnsProbeResult,
  LoopTcpProbeResult,
  ProbeResult,
  TcpProbeResult,
  TlsProbeResult,
  UdpProbeResult,
} from '../../lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const BENIGN = { pod: 'benign', namespace: 'obot-mcp', name: 'ms1kbsng-xyz', labels: { app: 'ms1kbsng' } };
const ROGUE = { pod: 'rogue', namespace: 'obot-mcp', name: 'pt5rfqaz-abc', labels: { app: 'pt5rfqaz' } };
const SHORT_HOST = { name: 'short.example', ipv4: '198.18.100.40', ipv6: 'fd00:eb:100::40', ttl: 1 };
const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;

const anyDestination = `
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0`;

const benignPolicy = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: benign-fw
  namespace: obot-mcp
spec:
  smartGroups:${anyDestination}
  webGroups:
    - name: approved
      domains: [api.openai.com, "*.short.example"]
  rules:
    - name: allow-approved
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: ms1kbsng } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
      logging: true
    - name: allow-approved-udp
      action: permit
      protocol: udp
      port: 9999
      selector: { matchLabels: { app: ms1kbsng } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: ms1kbsng } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;

const roguePolicy = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: rogue-fw
  namespace: obot-mcp
spec:
  smartGroups:${anyDestination}
  rules:
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: pt5rfqaz } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;

function tcp(r: ProbeResult): TcpProbeResult {
  assert.equal(r.kind, 'tcp', JSON.stringify(r));
  return r as TcpProbeResult;
}
function tls(r: ProbeResult): TlsProbeResult {
  assert.equal(r.kind, 'tls', JSON.stringify(r));
  return r as TlsProbeResult;
}
function udp(r: ProbeResult): UdpProbeResult {
  assert.equal(r.kind, 'udp', JSON.stringify(r));
  return r as UdpProbeResult;
}
function dns(r: ProbeResult): DnsProbeResult {
  assert.equal(r.kind, 'dns', JSON.stringify(r));
  return r as DnsProbeResult;
}

describe('bypass attempts against an enforcing agent', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('by'),
      pods: [BENIGN.pod, ROGUE.pod],
      hosts: [...DEFAULT_LAB_HOSTS, SHORT_HOST],
      wildcardDomains: ['attacker.example', 'short.example'],
    });
    agent = new LabAgent(lab, {
      workloads: [BENIGN, ROGUE],
      mode: 'enforce',
      dns: { minTtlSeconds: 0, graceSeconds: 1 },
      aggregateWindowMs: 200,
    });
    agent.writePolicy('benign.yaml', benignPolicy);
    agent.writePolicy('rogue.yaml', roguePolicy);
    await agent.start();
    await agent.waitForPolicies(['benign-fw', 'rogue-fw']);
  });

  afterAll(() => teardownAgentLab(agent, lab));

  async function assertBenignStillWorks(): Promise<void> {
    const r = tls(await lab.probe(BENIGN.pod, ['tls', 'api.openai.com', '443', '--ca', lab.caPath]));
    assert.equal(r.ok, true, `benign allowed traffic broke: ${JSON.stringify(r)}`);
    assert.equal(r.firstLine, 'tls hello from api.openai.com sni=api.openai.com');
  }

  test('allowed name over IPv4 and IPv6, TCP and UDP, works from the first connect', async () => {
    await assertBenignStillWorks();
    const v6 = tls(await lab.probe(BENIGN.pod, ['tls', 'api.openai.com', '443', '--family', '6', '--ca', lab.caPath]));
    assert.equal(v6.ok, true, JSON.stringify(v6));
    assert.equal(v6.address, OPENAI.ipv6);
    const u = udp(await lab.probe(BENIGN.pod, ['udp', OPENAI.ipv4, '9999']));
    assert.equal(u.ok, true, JSON.stringify(u));
  });

  test('direct connect to a non-allowed IP fails at once with EPERM (IPv4, IPv6, UDP)', async () => {
    for (const target of [HTTPBIN.ipv4, HTTPBIN.ipv6]) {
      const r = tcp(await lab.probe(ROGUE.pod, ['tcp', target, '443']));
      assert.equal(r.error, 'EPERM', JSON.stringify(r));
    }
    const viaUdp = udp(await lab.probe(ROGUE.pod, ['udp', HTTPBIN.ipv4, '9999']));
    assert.equal(viaUdp.error, 'EPERM', JSON.stringify(viaUdp));
    const viaUdp6 = udp(await lab.probe(ROGUE.pod, ['udp', HTTPBIN.ipv6, '9999']));
    assert.equal(viaUdp6.error, 'EPERM', JSON.stringify(viaUdp6));
    // The benign workload may not reach httpbin either: its allowlist names only api.openai.com.
    const benign = tcp(await lab.probe(BENIGN.pod, ['tcp', HTTPBIN.ipv4, '443']));
    assert.equal(benign.error, 'EPERM', JSON.stringify(benign));
    const benignUdp = udp(await lab.probe(BENIGN.pod, ['udp', HTTPBIN.ipv4, '9999']));
    assert.equal(benignUdp.error, 'EPERM', JSON.stringify(benignUdp));
    await assertBenignStillWorks();
  });

  test('a non-allowed name via the system resolver does not resolve, and is logged with its rule', async () => {
    const r = tcp(await lab.probe(ROGUE.pod, ['tcp', 'httpbin.org', '443']));
    assert.equal(r.ok, false);
    assert.equal(r.error, 'ENOTFOUND', JSON.stringify(r));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const denied = agent.events().find((e) => e.layer === 'dns' && e.fqdn === 'httpbin.org' && e.workload.name === ROGUE.name);
    assert.ok(denied, 'a DNS deny event for httpbin.org');
    assert.equal(denied.verdict, 'denied');
    assert.equal(denied.rule, 'deny-all');
    assert.equal(denied.tier, 2);
    assert.deepEqual(denied.policy && { namespace: denied.policy.namespace, name: denied.policy.name }, {
      namespace: 'obot-mcp',
      name: 'rogue-fw',
    });
    await assertBenignStillWorks();
  });

  test('DNS sent straight to another resolver is steered to the proxy; the app still sees the resolver it asked', async () => {
    const before = (await lab.resolverQueries('alternate')).length;
    for (const server of [LAB_ADDRESSES.alternateResolver.ipv4, LAB_ADDRESSES.alternateResolver.ipv6]) {
      const denied = dns(await lab.probe(ROGUE.pod, ['dns', 'httpbin.org', '--server', server]));
      assert.equal(denied.rcode, 'NXDOMAIN', JSON.stringify(denied));
      assert.equal(denied.replyFrom, server);
      const allowed = dns(await lab.probe(BENIGN.pod, ['dns', 'api.openai.com', '--server', server]));
      assert.equal(allowed.rcode, 'NOERROR', JSON.stringify(allowed));
      assert.equal(allowed.replyFrom, server);
    }
    assert.equal((await lab.resolverQueries('alternate')).length, before, 'no query may reach the alternate resolver');
  });

  test('DNS over TCP is steered and judged the same way', async () => {
    const denied = dns(await lab.probe(ROGUE.pod, ['dns', 'webhook.site', '--server', LAB_ADDRESSES.alternateResolver.ipv4, '--tcp']));
    assert.equal(denied.rcode, 'NXDOMAIN', JSON.stringify(denied));
    const allowed = dns(await lab.probe(BENIGN.pod, ['dns', 'api.openai.com', '--server', LAB_ADDRESSES.resolver.ipv4, '--tcp']));
    assert.equal(allowed.rcode, 'NOERROR', JSON.stringify(allowed));
    assert.ok(allowed.answers.some((a) => a.data === OPENAI.ipv4));
  });

  test('a burst of unique subdomains of a non-allowed domain never reaches the upstream resolver', async () => {
    const marker = randomBytes(4).toString('hex');
    for (let i = 0; i < 40; i++) {
      const name = `${marker}${i}${randomBytes(8).toString('hex')}.attacker.example`;
      const r = dns(await lab.probe(ROGUE.pod, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv4, '--type', i % 2 ? 'TXT' : 'A']));
      assert.equal(r.rcode, 'NXDOMAIN', JSON.stringify(r));
    }
    // A query the proxy does forward, so the resolver's log is known to be current when we read it.
    assert.equal(dns(await lab.probe(BENIGN.pod, ['dns', 'api.openai.com', '--server', LAB_ADDRESSES.resolver.ipv4])).rcode, 'NOERROR');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const reached = (await lab.resolverQueries()).filter((name) => name.includes(marker));
    assert.deepEqual(reached, []);
  });

  test('a learned IP stops working after its TTL and grace expire', async () => {
    const name = `a${randomBytes(3).toString('hex')}.short.example`;
    const first = tls(await lab.probe(BENIGN.pod, ['tls', name, '443', '--family', '4', '--ca', lab.caPath]));
    assert.equal(first.ok, true, JSON.stringify(first));
    assert.equal(first.address, SHORT_HOST.ipv4);
    const status = await agent.status();
    const learned = status.workloads.find((w) => w.key === `obot-mcp/${BENIGN.name}`)?.learned ?? [];
    assert.ok(
      learned.some((l) => l.ip === SHORT_HOST.ipv4),
      `learned: ${JSON.stringify(learned)}`,
    );
    // TTL 1 s + grace 1 s: after 3.5 s the kernel itself must refuse the address.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const later = tcp(await lab.probe(BENIGN.pod, ['tcp', SHORT_HOST.ipv4, '443']));
    assert.equal(later.error, 'EPERM', JSON.stringify(later));
    await assertBenignStillWorks();
  });

  test('bad policy edits are rejected with precise messages while the previous policy keeps enforcing', async () => {
    const cases: { what: string; yaml: string; message: RegExp }[] = [
      {
        what: 'malformed YAML',
        yaml: 'apiVersion: networking.aviatrix.com/v1alpha1\nkind: FirewallPolicy\nmetadata: [unclosed\n',
        message: /line|YAML/i,
      },
      { what: 'unknown field', yaml: roguePolicy.replace('  rules:', '  rulez: []\n  rules:'), message: /rulez/ },
      { what: 'invalid domain', yaml: benignPolicy.replace('"*.short.example"', '"api*.evil.com"'), message: /api\*\.evil\.com/ },
      { what: 'duplicate rule names', yaml: roguePolicy + roguePolicy.split('  rules:\n')[1]!.replace(/^/, ''), message: /deny-all/ },
      {
        what: 'uuid reference',
        yaml: roguePolicy.replace(
          'destinationSmartGroups: [{ name: any-destination }]',
          'destinationSmartGroups: [{ name: any-destination, uuid: 1234 }]',
        ),
        message: /uuid/,
      },
      {
        what: 'oversized domain list',
        yaml: benignPolicy.replace(
          '[api.openai.com, "*.short.example"]',
          `[${Array.from({ length: 5000 }, (_, i) => `h${i}.example.com`).join(', ')}]`,
        ),
        message: /domains/,
      },
    ];
    for (const c of cases) {
      const file = c.what.includes('domain') ? 'benign.yaml' : 'rogue.yaml';
      agent.writePolicy(file, c.yaml);
      const status = await agent.waitFor(`${c.what} to be rejected`, (s) => s.rejected.some((r) => r.file.endsWith(file)));
      const messages = status.rejected.find((r) => r.file.endsWith(file))!.messages.join('\n');
      assert.match(messages, c.message, `${c.what}: ${messages}`);
      const r = tcp(await lab.probe(ROGUE.pod, ['tcp', HTTPBIN.ipv4, '443']));
      assert.equal(r.error, 'EPERM', `${c.what}: rogue must stay denied`);
      await assertBenignStillWorks();
      agent.writePolicy(file, file === 'benign.yaml' ? benignPolicy : roguePolicy);
      await agent.waitFor(`${c.what} to be repaired`, (s) => !s.rejected.some((x) => x.file.endsWith(file)));
    }
  });

  test('kill -9 of the agent: zero rogue successes during and after, allowed traffic continues, the restart adopts', async () => {
    const loop = lab.spawnInPod(
      ROGUE.pod,
      [process.execPath, PROBE_SCRIPT, 'loop-tcp', HTTPBIN.ipv4, '443', '--count', '60', '--interval-ms', '50'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let output = '';
    loop.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const finished = new Promise((resolve) => loop.once('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await agent.stop('SIGKILL');
    // With no agent at all, the pinned programs keep enforcing: a learned allowed address still works.
    const whileDown = tls(await lab.probe(BENIGN.pod, ['tls', OPENAI.ipv4, '443', '--sni', 'api.openai.com', '--ca', lab.caPath]));
    assert.equal(whileDown.ok, true, JSON.stringify(whileDown));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await agent.start();
    const status = await agent.status();
    assert.equal(status.adopted, true);
    await finished;
    const summary = JSON.parse(output.trim().split('\n').pop()!) as LoopTcpProbeResult;
    assert.equal(summary.attempts, 60);
    assert.equal(summary.successes, 0, JSON.stringify(summary));
    assert.equal(summary.failures.EPERM, 60, JSON.stringify(summary));
    const after = tcp(await lab.probe(ROGUE.pod, ['tcp', HTTPBIN.ipv4, '443']));
    assert.equal(after.error, 'EPERM');
    await assertBenignStillWorks();
  });
});

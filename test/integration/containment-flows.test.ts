// Flows that outlive their permission (issue 7, item 7), against the real kernel: sockets connected before the
// programs were attached, before enrolment, under a rule since withdrawn, or in discovery mode are ended when the
// rules in force stop permitting them, and a flow denied on its SNI ends at once. Judged on the receiving side: the
// server's log of every line it received. Allowed flows keep working. IPv4 and IPv6. Also (item 13): webGroup rules
// on plain HTTP match the Host header.
// On a kernel without bpf_sock_destroy (Linux < 6.5; forced here with the object built without the kfunc) the
// withdrawn flow is not ended, and the packet backstop drops its packets instead.
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { openDatapath } from '../../src/datapath/datapath.js';
import type { Datapath, DatapathSettings, KernelEvent, KernelRule } from '../../src/datapath/types.js';
import { Lab } from '../../lab/lab.js';
import { eventMatching, rule } from '../support/datapath-helpers.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { buildClientHello } from '../unit/clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
/** The same source built with bpf_sock_destroy renamed to a kfunc no kernel has: the object as Linux < 6.5 loads it (Makefile). */
const withoutSockDestroyPath = fileURLToPath(new URL('../../../bpf/tests/egressguard-without-sock-destroy.bpf.o', import.meta.url));
const skip = privilegedSkip();

const POD = 'workload';
const KEPT = 2; // always permitted
const REVOKED = 3; // permitted (or unenrolled) first, then not
const LINE_PORT = 9000;
const TLS_PORT = 9443;
const HTTP_PORT = 8080;
const ALLOW_KEPT = 21;
const ALLOW_REVOKED = 22;
const WEB_RULE = 23;
const HTTP_RULE = 24;

/**
 * Logs "recv <line>" for every line on 9000; on 9443 acks each chunk's running byte total (a ClientHello sink) and
 * logs "tls <name>" for every <label>.evil.example the chunk carries (a forbidden SNI that arrived).
 */
const SERVER_SCRIPT = `
const net = require('net');
let pending = 3;
const ready = () => { if (--pending === 0) console.log('ready'); };
net.createServer((s) => {
  let buffered = '';
  s.on('error', () => {});
  s.on('data', (c) => { buffered += c; let i; while ((i = buffered.indexOf('\\n')) >= 0) { console.log('recv ' + buffered.slice(0, i)); buffered = buffered.slice(i + 1); } });
}).listen({ port: ${LINE_PORT}, host: '::' }, ready);
net.createServer((s) => {
  let total = 0;
  s.on('error', () => {});
  s.on('data', (c) => {
    total += c.length;
    for (const name of c.toString('latin1').match(/[a-z0-9]+\\.evil\\.example/g) ?? []) console.log('tls ' + name);
    s.write(total + '\\n');
  });
}).listen({ port: ${TLS_PORT}, host: '::' }, ready);
require('http').createServer((q, r) => { console.log('http ' + q.headers.host + ' ' + q.url); r.end('ok'); })
  .listen({ port: ${HTTP_PORT}, host: '::' }, ready);`;

/** Long-lived client: opens the connections in EG_ARGS, then obeys "send <tag> <word>" on stdin; reports on stdout. */
const CLIENT_SCRIPT = `
const net = require('net');
const sockets = new Map();
for (const c of JSON.parse(process.env.EG_ARGS)) {
  const s = net.connect({ host: c.host, port: c.port, noDelay: true });
  sockets.set(c.tag, s);
  s.on('connect', () => console.log('connected ' + c.tag));
  s.on('error', (e) => console.log('error ' + c.tag + ' ' + e.code));
  s.on('close', () => console.log('closed ' + c.tag));
}
let input = '';
process.stdin.on('data', (d) => {
  input += d;
  let i;
  while ((i = input.indexOf('\\n')) >= 0) {
    const [, tag, word] = input.slice(0, i).split(' ');
    input = input.slice(i + 1);
    sockets.get(tag).write(word + '\\n', () => console.log('sent ' + tag + ' ' + word));
  }
});`;

/** One ClientHello on a fresh connection; the timer only bounds a connection that stalls. */
const HELLO_SCRIPT = `
const net = require('net');
const a = JSON.parse(process.env.EG_ARGS);
const done = (r) => { process.stdout.write(JSON.stringify({ pid: process.pid, ...r })); process.exit(0); };
setTimeout(() => done({ code: 'STALLED' }), 5000);
const s = net.connect({ host: a.host, port: a.port });
s.on('connect', () => s.write(Buffer.from(a.hello, 'hex')));
s.on('data', () => done({ code: 'ANSWERED' }));
s.on('error', (e) => done({ code: e.code }));`;

const settings = (defaultAction: 'permit' | 'deny'): DatapathSettings => ({
  defaultAction,
  dnsProxy: { ipv4: null, ipv6: null, port: 0 },
  denyEch: false,
  maxLearnedPerWorkload: 4096,
  features: { tls: true, packet: true },
});

const allow = (lab: Lab, ruleId: number, host: number): KernelRule =>
  rule({
    ruleId,
    action: 'permit',
    protocol: 'tcp',
    portLow: LINE_PORT,
    portHigh: LINE_PORT,
    cidrs: ([4, 6] as const).map((family) => ({ family, address: lab.inet(host, family), prefix: family === 4 ? 32 : 128 })),
  });

/** A client in the pod holding one connection to KEPT and one to REVOKED, each proved to deliver (calibration). */
async function connectBoth(lab: Lab, server: Lines, clients: ChildProcess[], family: 4 | 6, label: string): Promise<Lines> {
  const child = lab.spawnInPod(POD, [process.execPath, '-e', CLIENT_SCRIPT], {
    env: {
      ...process.env,
      EG_ARGS: JSON.stringify([
        { tag: 'kept', host: lab.inet(KEPT, family), port: LINE_PORT },
        { tag: 'revoked', host: lab.inet(REVOKED, family), port: LINE_PORT },
      ]),
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  clients.push(child);
  const client = new Lines(child);
  await client.waitFor('connected kept');
  await client.waitFor('connected revoked');
  for (const tag of ['kept', 'revoked']) {
    child.stdin!.write(`send ${tag} ${label}-${tag}-before\n`);
    await server.waitFor(`recv ${label}-${tag}-before`);
  }
  return client;
}

/** After the change: the revoked connection errors at once and delivers nothing more; the kept one still delivers. */
async function assertEnded(server: Lines, client: Lines, label: string): Promise<void> {
  await client.waitFor('error revoked ECONNABORTED');
  client.child.stdin!.write(`send revoked ${label}-revoked-after\n`);
  client.child.stdin!.write(`send kept ${label}-kept-after\n`);
  await server.waitFor(`recv ${label}-kept-after`);
  assert.equal(server.lines.includes(`recv ${label}-revoked-after`), false, 'no byte of the revoked flow arrives');
}

describe('flows that outlive their permission (real kernel)', { skip }, () => {
  let lab: Lab;
  let datapath: Datapath | null = null;
  let server: Lines;
  const events: KernelEvent[] = [];
  const clients: ChildProcess[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('cf'), pods: [POD], hosts: [], unnamedHosts: [KEPT, REVOKED], services: false });
    server = new Lines(await lab.serve(SERVER_SCRIPT));
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup });
    datapath.onEvent((event) => events.push(event));
    datapath.configure(settings('deny'));
  }, 60_000);

  afterAll(async () => {
    try {
      for (const child of clients) child.kill();
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  test('the kernel probe finds bpf_sock_destroy on this kernel (the tests below prove it ends sockets)', () => {
    assert.deepEqual(datapath!.kernelFeatures, { socketDestroy: true });
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a socket connected before enrolment ends when the workload is enrolled without it`, async () => {
      datapath!.removeWorkload(lab.pod(POD).cgroupPath);
      const client = await connectBoth(lab, server, clients, family, `enrol${family}`);
      const before = datapath!.stats().flowsEnded;
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [allow(lab, ALLOW_KEPT, KEPT)]);
      await assertEnded(server, client, `enrol${family}`);
      assert.ok(datapath!.stats().flowsEnded > before, 'counted');
      const event = await eventMatching(events, (e) => e.ip === lab.inet(REVOKED, family) && e.verdict === 'denied');
      assert.deepEqual([event.layer, event.tier, event.port], ['connect', 3, LINE_PORT]);
    });

    test(`IPv${family}: withdrawing the rule that permitted a live flow ends it`, async () => {
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [allow(lab, ALLOW_KEPT, KEPT), allow(lab, ALLOW_REVOKED, REVOKED)]);
      const client = await connectBoth(lab, server, clients, family, `withdraw${family}`);
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [allow(lab, ALLOW_KEPT, KEPT)]);
      await assertEnded(server, client, `withdraw${family}`);
    });

    test(`IPv${family}: a flow opened in discovery mode ends on the switch to enforce`, async () => {
      datapath!.configure(settings('permit'));
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [allow(lab, ALLOW_KEPT, KEPT)]);
      const client = await connectBoth(lab, server, clients, family, `discovery${family}`);
      datapath!.configure(settings('deny'));
      await assertEnded(server, client, `discovery${family}`);
    });

    test(`IPv${family}: a flow denied on its SNI ends at once instead of stalling; its ClientHello never arrives`, async () => {
      const webRule = rule({
        ruleId: WEB_RULE,
        action: 'permit',
        protocol: 'tcp',
        portLow: TLS_PORT,
        portHigh: TLS_PORT,
        web: true,
        log: true,
        domains: [{ kind: 'exact', name: 'allowed.example' }],
      });
      const hello = (sni: string) => ({ host: lab.inet(KEPT, family), port: TLS_PORT, hello: buildClientHello({ sni }).toString('hex') });
      const send = (sni: string) => lab.runScriptInPod<{ pid: number; code: string }>(POD, HELLO_SCRIPT, hello(sni));
      // Calibration: unenrolled, a forbidden name's ClientHello reaches the server.
      datapath!.removeWorkload(lab.pod(POD).cgroupPath);
      assert.equal((await send(`calibration${family}.evil.example`)).code, 'ANSWERED');
      await server.waitFor(`tls calibration${family}.evil.example`);
      const workloadId = datapath!.setWorkload(lab.pod(POD).cgroupPath, [webRule]);
      const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
      datapath!.learn([{ workloadId, ruleId: WEB_RULE, ip: lab.inet(KEPT, family), expiresAtNs }]);
      // The permitted name reaches the server (its ack comes back).
      assert.equal((await send('allowed.example')).code, 'ANSWERED');
      const denied = await send(`enforced${family}.evil.example`);
      assert.equal(denied.code, 'ECONNABORTED', 'the application sees the end, not a stall');
      const event = await eventMatching(events, (e) => e.pid === denied.pid && e.layer === 'tls');
      assert.deepEqual([event.verdict, event.sni], ['denied', `enforced${family}.evil.example`]);
      // Judged where it would land: an allowed ClientHello after it arrives, the denied one never did.
      assert.equal((await send('allowed.example')).code, 'ANSWERED');
      assert.equal(server.lines.includes(`tls enforced${family}.evil.example`), false, 'the denied ClientHello never arrives');
    });

    test(`IPv${family}: a webGroup rule matches plain HTTP on its Host header`, async () => {
      const request = (host: string, target: string) => ({
        host: lab.inet(KEPT, family),
        port: HTTP_PORT,
        hello: Buffer.from(`GET ${target} HTTP/1.1\r\nUser-Agent: t\r\nHost: ${host}\r\n\r\n`).toString('hex'),
      });
      const send = (host: string, target: string) =>
        lab.runScriptInPod<{ pid: number; code: string }>(POD, HELLO_SCRIPT, request(host, target));
      // Calibration: unenrolled, a request naming a foreign host reaches the server.
      datapath!.removeWorkload(lab.pod(POD).cgroupPath);
      assert.equal((await send('evil.example', `/calibration${family}`)).code, 'ANSWERED');
      await server.waitFor(`http evil.example /calibration${family}`);
      const workloadId = datapath!.setWorkload(lab.pod(POD).cgroupPath, [
        rule({
          ruleId: HTTP_RULE,
          action: 'permit',
          protocol: 'tcp',
          portLow: HTTP_PORT,
          portHigh: HTTP_PORT,
          web: true,
          log: true,
          domains: [{ kind: 'exact', name: 'allowed.example' }],
        }),
      ]);
      const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
      datapath!.learn([{ workloadId, ruleId: HTTP_RULE, ip: lab.inet(KEPT, family), expiresAtNs }]);
      const allowed = await send('allowed.example:8080', `/allowed${family}`);
      assert.equal(allowed.code, 'ANSWERED');
      await server.waitFor(`http allowed.example:8080 /allowed${family}`);
      const permitted = await eventMatching(events, (e) => e.pid === allowed.pid && e.layer === 'http');
      assert.deepEqual([permitted.verdict, permitted.sni, permitted.ruleId], ['permitted', 'allowed.example', HTTP_RULE]);
      const denied = await send('evil.example', `/enforced${family}`);
      assert.equal(denied.code, 'ECONNABORTED');
      const event = await eventMatching(events, (e) => e.pid === denied.pid && e.layer === 'http');
      assert.deepEqual([event.verdict, event.sni, event.tier], ['denied', 'evil.example', 3]);
      // An absolute-form target names its own host: the allowed Host beside it does not count.
      const fronted = await send('allowed.example', `http://evil.example/fronted${family}`);
      assert.equal(fronted.code, 'ECONNABORTED');
      // Judged where it lands: the allowed request's neighbour arrived, the denied ones never did.
      assert.equal((await send('allowed.example', `/after${family}`)).code, 'ANSWERED');
      await server.waitFor(`http allowed.example /after${family}`);
      const arrived = server.lines.filter((line) => line.includes(`/enforced${family}`) || line.includes(`/fronted${family}`));
      assert.deepEqual(arrived, []);
    });
  }
});

describe('without bpf_sock_destroy (Linux < 6.5, forced): the packet backstop drops what is not ended (real kernel)', { skip }, () => {
  let lab: Lab;
  let datapath: Datapath | null = null;
  let server: Lines;
  const events: KernelEvent[] = [];
  const clients: ChildProcess[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('cg'), pods: [POD], hosts: [], unnamedHosts: [KEPT, REVOKED], services: false });
    server = new Lines(await lab.serve(SERVER_SCRIPT));
    datapath = openDatapath({
      objectPath: withoutSockDestroyPath,
      pinDir: lab.pinDir,
      attachCgroup: lab.attachCgroup,
      hostNetns: `/run/netns/${lab.nodeNetns}`,
    });
    datapath.onEvent((event) => events.push(event));
    datapath.configure(settings('deny'));
  }, 60_000);

  afterAll(async () => {
    try {
      for (const child of clients) child.kill();
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a withdrawn flow is not ended, and not one byte of it passes the backstop; the kept flow works`, async () => {
      const pod = lab.pod(POD);
      const network = { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] };
      datapath!.setWorkload(pod.cgroupPath, [allow(lab, ALLOW_KEPT, KEPT), allow(lab, ALLOW_REVOKED, REVOKED)], network);
      // Calibration: both flows deliver while permitted, through the backstop.
      const client = await connectBoth(lab, server, clients, family, `fallback${family}`);
      const before = datapath!.stats();
      datapath!.setWorkload(pod.cgroupPath, [allow(lab, ALLOW_KEPT, KEPT)], network);
      const after = datapath!.stats();
      assert.deepEqual([after.flowsEnded, after.flowsNotEnded], [before.flowsEnded, before.flowsNotEnded + 1n], 'one socket not ended');
      client.child.stdin!.write(`send revoked fallback${family}-revoked-after\n`);
      client.child.stdin!.write(`send kept fallback${family}-kept-after\n`);
      await client.waitFor(`sent revoked fallback${family}-revoked-after`);
      await server.waitFor(`recv fallback${family}-kept-after`);
      // The segment reached tc and was judged there (it has no approval any more): dropped, and reported.
      const dropped = await eventMatching(
        events,
        (e) => e.layer === 'packet' && e.verdict === 'denied' && e.ip === lab.inet(REVOKED, family) && e.port === LINE_PORT,
      );
      assert.equal(dropped.tier, 3);
      assert.equal(server.lines.includes(`recv fallback${family}-revoked-after`), false, 'no byte of the revoked flow arrives');
      assert.equal(
        client.lines.some((line) => line.startsWith('error revoked') || line === 'closed revoked'),
        false,
        'the socket was not ended: the backstop, not bpf_sock_destroy, contained it',
      );
      // Each later pass would count it again: the next family's count starts without it.
      const exited = new Promise((resolve) => client.child.once('exit', resolve));
      client.child.kill();
      await exited;
    });
  }
});

describe('sockets connected before the programs were attached (real kernel)', { skip }, () => {
  let lab: Lab;
  let datapath: Datapath | null = null;
  let server: Lines;
  const clients: ChildProcess[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('ca'), pods: [POD], hosts: [], unnamedHosts: [KEPT, REVOKED], services: false });
    server = new Lines(await lab.serve(SERVER_SCRIPT));
  }, 60_000);

  afterAll(async () => {
    try {
      for (const child of clients) child.kill();
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  test('IPv4 and IPv6: a flow opened before the agent attached ends when its workload is enrolled without it', async () => {
    // Calibration: with nothing attached, every connection delivers.
    const connected = {
      4: await connectBoth(lab, server, clients, 4, 'attach4'),
      6: await connectBoth(lab, server, clients, 6, 'attach6'),
    };
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup });
    datapath.configure(settings('deny'));
    datapath.setWorkload(lab.pod(POD).cgroupPath, [allow(lab, ALLOW_KEPT, KEPT)]);
    for (const family of [4, 6] as const) await assertEnded(server, connected[family], `attach${family}`);
  });
});

// Flows that outlive their permission (issue 7, item 7), against the real kernel: sockets connected before the
// programs were attached, before enrolment, under a rule since withdrawn, or in discovery mode are ended when the
// rules in force stop permitting them, and a flow denied on its SNI ends at once. Judged on the receiving side: the
// server's log of every line it received. Allowed flows keep working. IPv4 and IPv6. Also (item 13): webGroup rules
// on plain HTTP match the Host header.
// On a kernel without bpf_sock_destroy (Linux < 6.5; forced here with the object built without the kfunc) the
// withdrawn flow is not ended: its socket is marked withdrawn and the cgroup_skb program drops what it sends, with or
// without the tc backstop.
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
const POD_LISTEN_PORT = 7000; // the pod's own server, and the port its outbound SO_REUSEPORT socket binds
const ALLOW_KEPT = 21;
const ALLOW_REVOKED = 22;
const WEB_RULE = 23;
const HTTP_RULE = 24;
const ALLOW_KEPT_UDP = 25;
const ALLOW_REVOKED_UDP = 26;
const NAME_WITHDRAWN_RULE = 27;
const NAME_KEPT_RULE = 28;
const NAME_KEPT_AGAIN_RULE = 29;
const EDITED_RULE = 30;
const OTHER_NAME_RULE = 31;

/**
 * Logs "recv <line>" for every line on 9000; on 9443 acks each chunk's running byte total (a ClientHello sink) and
 * logs "tls <name>" for every <label>.evil.example the chunk carries (a forbidden SNI that arrived).
 */
const SERVER_SCRIPT = `
const net = require('net');
let pending = 4;
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
  .listen({ port: ${HTTP_PORT}, host: '::' }, ready);
const udp = require('dgram').createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (m) => console.log('udp ' + m));
udp.bind(${LINE_PORT}, '::', ready);`;

/**
 * Long-lived client: opens the connections in EG_ARGS (sending a connection's `hello`, hex, first), then obeys
 * "send <tag> <word>" (the word and a newline) and "hex <tag> <bytes>" on stdin; reports on stdout.
 */
const CLIENT_SCRIPT = `
const net = require('net');
const sockets = new Map();
for (const c of JSON.parse(process.env.EG_ARGS)) {
  const s = net.connect({ host: c.host, port: c.port, noDelay: true });
  sockets.set(c.tag, s);
  s.on('connect', () => { if (c.hello) s.write(Buffer.from(c.hello, 'hex')); console.log('connected ' + c.tag); });
  s.on('error', (e) => console.log('error ' + c.tag + ' ' + e.code));
  s.on('close', () => console.log('closed ' + c.tag));
  let received = '';
  s.on('data', (d) => { received += d; let i; while ((i = received.indexOf('\\n')) >= 0) { console.log('got ' + c.tag + ' ' + received.slice(0, i)); received = received.slice(i + 1); } });
}
let input = '';
process.stdin.on('data', (d) => {
  input += d;
  let i;
  while ((i = input.indexOf('\\n')) >= 0) {
    const [command, tag, word] = input.slice(0, i).split(' ');
    input = input.slice(i + 1);
    const bytes = command === 'hex' ? Buffer.from(word, 'hex') : word + '\\n';
    sockets.get(tag).write(bytes, () => console.log('sent ' + tag + ' ' + word));
  }
});`;

/**
 * One UDP socket connected to EG_ARGS.peer; obeys "send <word>" (to its peer) and "sendto <word>" (to EG_ARGS.other)
 * on stdin and reports "sent <word>" or "error <word> <errno>".
 */
const UDP_CLIENT_SCRIPT = `
import json, os, socket, sys
a = json.loads(os.environ['EG_ARGS'])
s = socket.socket(socket.AF_INET6 if ':' in a['peer'] else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((a['peer'], a['port']))
print('connected', flush=True)
for line in sys.stdin:
    command, word = line.split()
    try:
        if command == 'send':
            s.send(word.encode())
        else:
            s.sendto(word.encode(), (a['other'], a['port']))
        print('sent ' + word, flush=True)
    except OSError as e:
        print('error ' + word + ' ' + str(e.errno), flush=True)`;

/**
 * The pod's own server on EG_ARGS.listen (SO_REUSEPORT), echoing every line it receives as "echo <line>", and one
 * outbound socket bound to that same port (SO_REUSEPORT) connected to EG_ARGS.peer; obeys "send <word>" on stdin
 * (to its peer) and reports "sent <word>" or "error <word> <errno>", and "ended <errno name>" when the kernel ends it.
 */
const REUSEPORT_CLIENT_SCRIPT = `
import errno, json, os, socket, sys, threading
a = json.loads(os.environ['EG_ARGS'])
family = socket.AF_INET6 if ':' in a['peer'] else socket.AF_INET
def bound():
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', a['listen']))
    return s
listener = bound()
listener.listen()
def echo(c):
    for line in c.makefile('rb'):
        c.sendall(b'echo ' + line)
def serve():
    while True:
        threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
out = bound()
out.connect((a['peer'], a['port']))
print('connected', flush=True)
def watch():
    try:
        out.recv(1)
        print('ended EOF', flush=True)
    except OSError as e:
        print('ended ' + errno.errorcode[e.errno], flush=True)
threading.Thread(target=watch, daemon=True).start()
for line in sys.stdin:
    word = line.split()[1]
    try:
        out.send((word + '\\n').encode())
        print('sent ' + word, flush=True)
    except OSError as e:
        print('error ' + word + ' ' + str(e.errno), flush=True)`;

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

/** A logged webGroup rule permitting TCP to one exact name on `port`. */
const webRule = (ruleId: number, name: string, port = TLS_PORT): KernelRule =>
  rule({
    ruleId,
    action: 'permit',
    protocol: 'tcp',
    portLow: port,
    portHigh: port,
    web: true,
    log: true,
    domains: [{ kind: 'exact', name }],
  });

const allow = (lab: Lab, ruleId: number, host: number, protocol: 'tcp' | 'udp' = 'tcp'): KernelRule =>
  rule({
    ruleId,
    action: 'permit',
    protocol,
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

/** What each block below works with: its lab, the server's lines, its datapath, the kernel events, its clients. */
interface FlowLab {
  lab: Lab;
  server: Lines;
  datapath: Datapath | null;
  readonly events: KernelEvent[];
  readonly clients: ChildProcess[];
}

/**
 * A lab with the line server for the calling describe block (its beforeAll and afterAll): `open` attaches a datapath
 * (null: the block's test attaches one itself), which reports into `events`; everything is removed afterwards.
 */
function useFlowLab(tag: string, open: ((lab: Lab) => Datapath) | null): FlowLab {
  const flow: FlowLab = { lab: undefined!, server: undefined!, datapath: null, events: [], clients: [] };
  beforeAll(async () => {
    flow.lab = await Lab.create({ prefix: uniquePrefix(tag), pods: [POD], hosts: [], unnamedHosts: [KEPT, REVOKED], services: false });
    flow.server = new Lines(await flow.lab.serve(SERVER_SCRIPT));
    flow.datapath = open?.(flow.lab) ?? null;
    flow.datapath?.onEvent((event) => flow.events.push(event));
  }, 60_000);
  afterAll(async () => {
    try {
      for (const child of flow.clients) child.kill();
      flow.datapath?.close();
    } finally {
      await flow.lab?.destroy();
    }
  });
  return flow;
}

/**
 * An outbound socket bound with SO_REUSEPORT to the pod's own listening port, connected to REVOKED while permitted
 * (calibration: its line arrives), is re-judged like any other when `setRules` withdraws that permission: ended at
 * once (`ended`: kernel >= 6.5) or left withdrawn, and not one byte more of it reaches the server. A connection the
 * pod's server accepted on that port before the withdrawal keeps answering.
 */
async function assertReusePortWithdrawn(
  flow: FlowLab,
  family: 4 | 6,
  label: string,
  setRules: (rules: KernelRule[]) => void,
  ended: boolean,
): Promise<void> {
  setRules([allow(flow.lab, ALLOW_KEPT, KEPT), allow(flow.lab, ALLOW_REVOKED, REVOKED)]);
  const podChild = flow.lab.spawnInPod(POD, ['python3', '-c', REUSEPORT_CLIENT_SCRIPT], {
    env: {
      ...process.env,
      EG_ARGS: JSON.stringify({ peer: flow.lab.inet(REVOKED, family), port: LINE_PORT, listen: POD_LISTEN_PORT }),
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  flow.clients.push(podChild);
  const pod = new Lines(podChild);
  await pod.waitFor('connected');
  const podAddress = family === 4 ? flow.lab.pod(POD).ipv4 : flow.lab.pod(POD).ipv6;
  const inboundChild = flow.lab.spawnInNode([process.execPath, '-e', CLIENT_SCRIPT], {
    env: { ...process.env, EG_ARGS: JSON.stringify([{ tag: 'inbound', host: podAddress, port: POD_LISTEN_PORT }]) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  flow.clients.push(inboundChild);
  const inbound = new Lines(inboundChild);
  await inbound.waitFor('connected inbound');
  // Calibration: the outbound socket delivers, the accepted inbound connection answers.
  podChild.stdin!.write(`send ${label}-before\n`);
  await flow.server.waitFor(`recv ${label}-before`);
  inboundChild.stdin!.write(`send inbound ${label}-inbound-before\n`);
  await inbound.waitFor(`got inbound echo ${label}-inbound-before`);
  setRules([allow(flow.lab, ALLOW_KEPT, KEPT)]);
  if (ended) await pod.waitFor('ended ECONNABORTED');
  podChild.stdin!.write(`send ${label}-after\n`);
  await pod.waitFor((line) => line === `sent ${label}-after` || line.startsWith(`error ${label}-after `));
  // The accepted connection on the same port still answers; a kept flow's line after it arrives, the withdrawn
  // socket's never does.
  inboundChild.stdin!.write(`send inbound ${label}-inbound-after\n`);
  await inbound.waitFor(`got inbound echo ${label}-inbound-after`);
  const keptChild = flow.lab.spawnInPod(POD, [process.execPath, '-e', CLIENT_SCRIPT], {
    env: { ...process.env, EG_ARGS: JSON.stringify([{ tag: 'kept', host: flow.lab.inet(KEPT, family), port: LINE_PORT }]) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  flow.clients.push(keptChild);
  await new Lines(keptChild).waitFor('connected kept');
  keptChild.stdin!.write(`send kept ${label}-kept-after\n`);
  await flow.server.waitFor(`recv ${label}-kept-after`);
  assert.equal(flow.server.lines.includes(`recv ${label}-after`), false, 'no byte of the withdrawn socket arrives');
  // A socket left alive would be re-judged (and a withdrawn one counted) again by each later test's rule changes.
  for (const child of [podChild, inboundChild, keptChild]) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
  }
}

describe('flows that outlive their permission (real kernel)', { skip }, () => {
  const flow = useFlowLab('cf', (lab) => {
    const datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup });
    datapath.configure(settings('deny'));
    return datapath;
  });
  const { events, clients } = flow;

  test('the kernel probe finds bpf_sock_destroy on this kernel (the tests below prove it ends sockets)', () => {
    assert.deepEqual(flow.datapath!.kernelFeatures, { socketDestroy: true });
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a socket connected before enrolment ends when the workload is enrolled without it`, async () => {
      flow.datapath!.removeWorkload(flow.lab.pod(POD).cgroupPath);
      const client = await connectBoth(flow.lab, flow.server, clients, family, `enrol${family}`);
      const before = flow.datapath!.stats().flowsEnded;
      flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [allow(flow.lab, ALLOW_KEPT, KEPT)]);
      await assertEnded(flow.server, client, `enrol${family}`);
      assert.ok(flow.datapath!.stats().flowsEnded > before, 'counted');
      const event = await eventMatching(events, (e) => e.ip === flow.lab.inet(REVOKED, family) && e.verdict === 'denied');
      assert.deepEqual([event.layer, event.tier, event.port], ['connect', 3, LINE_PORT]);
    });

    test(`IPv${family}: withdrawing the rule that permitted a live flow ends it`, async () => {
      flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [
        allow(flow.lab, ALLOW_KEPT, KEPT),
        allow(flow.lab, ALLOW_REVOKED, REVOKED),
      ]);
      const client = await connectBoth(flow.lab, flow.server, clients, family, `withdraw${family}`);
      flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [allow(flow.lab, ALLOW_KEPT, KEPT)]);
      await assertEnded(flow.server, client, `withdraw${family}`);
    });

    test(`IPv${family}: an outbound socket bound with SO_REUSEPORT to the pod's listening port is ended when its rule is withdrawn; inbound connections on the port are kept`, () =>
      assertReusePortWithdrawn(
        flow,
        family,
        `reuseport${family}`,
        (rules) => flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, rules),
        true,
      ));

    test(`IPv${family}: a flow opened in discovery mode ends on the switch to enforce`, async () => {
      flow.datapath!.configure(settings('permit'));
      flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [allow(flow.lab, ALLOW_KEPT, KEPT)]);
      const client = await connectBoth(flow.lab, flow.server, clients, family, `discovery${family}`);
      flow.datapath!.configure(settings('deny'));
      await assertEnded(flow.server, client, `discovery${family}`);
    });

    test(`IPv${family}: a flow denied on its SNI ends at once instead of stalling; its ClientHello never arrives`, async () => {
      const hello = (sni: string) => ({
        host: flow.lab.inet(KEPT, family),
        port: TLS_PORT,
        hello: buildClientHello({ sni }).toString('hex'),
      });
      const send = (sni: string) => flow.lab.runScriptInPod<{ pid: number; code: string }>(POD, HELLO_SCRIPT, hello(sni));
      // Calibration: unenrolled, a forbidden name's ClientHello reaches the server.
      flow.datapath!.removeWorkload(flow.lab.pod(POD).cgroupPath);
      assert.equal((await send(`calibration${family}.evil.example`)).code, 'ANSWERED');
      await flow.server.waitFor(`tls calibration${family}.evil.example`);
      const workloadId = flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [webRule(WEB_RULE, 'allowed.example')]);
      const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
      flow.datapath!.learn([{ workloadId, ruleId: WEB_RULE, ip: flow.lab.inet(KEPT, family), expiresAtNs }]);
      // The permitted name reaches the server (its ack comes back).
      assert.equal((await send('allowed.example')).code, 'ANSWERED');
      const denied = await send(`enforced${family}.evil.example`);
      assert.equal(denied.code, 'ECONNABORTED', 'the application sees the end, not a stall');
      const event = await eventMatching(events, (e) => e.pid === denied.pid && e.layer === 'tls');
      assert.deepEqual([event.verdict, event.sni], ['denied', `enforced${family}.evil.example`]);
      // Judged where it would land: an allowed ClientHello after it arrives, the denied one never did.
      assert.equal((await send('allowed.example')).code, 'ANSWERED');
      assert.equal(flow.server.lines.includes(`tls enforced${family}.evil.example`), false, 'the denied ClientHello never arrives');
    });

    for (const kind of ['tls', 'http'] as const) {
      /** The first flight naming `name`: a ClientHello's SNI, or a request head's Host. */
      const firstFlight = (name: string) =>
        (kind === 'tls' ? buildClientHello({ sni: name }) : Buffer.from(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`)).toString('hex');
      test(`IPv${family}: a flow permitted on its ${kind === 'tls' ? 'SNI' : 'HTTP Host'} ends when no rule permits that name any more, though another name's rule covers its address`, async () => {
        const withdrawnRule = webRule(NAME_WITHDRAWN_RULE, 'withdrawn.example');
        const keptRule = webRule(NAME_KEPT_RULE, 'kept.example');
        const keptAgainRule = webRule(NAME_KEPT_AGAIN_RULE, 'kept.example');
        const cgroup = flow.lab.pod(POD).cgroupPath;
        const address = flow.lab.inet(KEPT, family);
        // Three rules, two names, one (CDN-shared) address learned for all of them.
        const workloadId = flow.datapath!.setWorkload(cgroup, [withdrawnRule, keptRule, keptAgainRule]);
        const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
        flow.datapath!.learn(
          [NAME_WITHDRAWN_RULE, NAME_KEPT_RULE, NAME_KEPT_AGAIN_RULE].map((ruleId) => ({ workloadId, ruleId, ip: address, expiresAtNs })),
        );
        const connection = (tag: string, name: string) => ({ tag, host: address, port: TLS_PORT, hello: firstFlight(name) });
        const child = flow.lab.spawnInPod(POD, [process.execPath, '-e', CLIENT_SCRIPT], {
          env: {
            ...process.env,
            EG_ARGS: JSON.stringify([connection('withdrawn', 'withdrawn.example'), connection('kept', 'kept.example')]),
          },
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        clients.push(child);
        const client = new Lines(child);
        const send = (tag: string, word: string) => child.stdin!.write(`send ${tag} ${word}${kind}${family}.evil.example\n`);
        // Calibration: both names' connections deliver past their first flights (the sink acks any bytes).
        for (const tag of ['withdrawn', 'kept']) {
          await client.waitFor(`connected ${tag}`);
          send(tag, `${tag}before`);
          await flow.server.waitFor(`tls ${tag}before${kind}${family}.evil.example`);
        }
        // withdrawn.example's rule goes; kept.example's rule, learned at the same address, stays.
        const mark = events.length;
        flow.datapath!.setWorkload(cgroup, [keptRule, keptAgainRule]);
        await client.waitFor('error withdrawn ECONNABORTED');
        const ended = await eventMatching(
          events,
          (e) => events.indexOf(e) >= mark && e.ip === address && e.port === TLS_PORT && e.verdict === 'denied',
        );
        assert.equal(ended.tier, 3, 'nothing permits the name: the default denies it');
        // kept.example's rule is replaced by another that permits the same name: its connection is kept.
        flow.datapath!.setWorkload(cgroup, [keptAgainRule]);
        send('withdrawn', 'withdrawnafter');
        send('kept', 'keptafter');
        await flow.server.waitFor(`tls keptafter${kind}${family}.evil.example`);
        assert.equal(client.lines.includes('error kept ECONNABORTED'), false, 'the flow whose name is still permitted lives');
        assert.equal(
          flow.server.lines.includes(`tls withdrawnafter${kind}${family}.evil.example`),
          false,
          'no byte of the ended flow arrives',
        );
        // New connections are judged on their names as before.
        const open = (name: string) =>
          flow.lab.runScriptInPod<{ pid: number; code: string }>(POD, HELLO_SCRIPT, {
            host: address,
            port: TLS_PORT,
            hello: firstFlight(name),
          });
        assert.equal((await open('kept.example')).code, 'ANSWERED');
        assert.equal((await open('withdrawn.example')).code, 'ECONNABORTED');
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill();
        await exited;
      });
    }

    test(`IPv${family}: a socket waiting for its ClientHello is decided on the rules in force when it sends it (a rule edited in place)`, async () => {
      const sni = `edited${family}.evil.example`;
      const cgroup = flow.lab.pod(POD).cgroupPath;
      const address = flow.lab.inet(KEPT, family);
      const nameRule = (action: 'permit' | 'deny') => ({ ...webRule(EDITED_RULE, sni), action });
      const learnBoth = (workloadId: number) => {
        const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
        flow.datapath!.learn([EDITED_RULE, OTHER_NAME_RULE].map((ruleId) => ({ workloadId, ruleId, ip: address, expiresAtNs })));
      };
      /** A connection left waiting (connected, nothing sent) while `meanwhile` runs, then its ClientHello naming sni. */
      const helloAfter = async (tag: string, meanwhile: () => void): Promise<Lines> => {
        const child = flow.lab.spawnInPod(POD, [process.execPath, '-e', CLIENT_SCRIPT], {
          env: { ...process.env, EG_ARGS: JSON.stringify([{ tag, host: address, port: TLS_PORT }]) },
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        clients.push(child);
        const client = new Lines(child);
        await client.waitFor(`connected ${tag}`);
        meanwhile();
        child.stdin!.write(`hex ${tag} ${buildClientHello({ sni }).toString('hex')}\n`);
        return client;
      };
      // Calibration: unenrolled, the waiting connection's ClientHello reaches the server.
      flow.datapath!.removeWorkload(cgroup);
      await helloAfter('calibration', () => {});
      await flow.server.waitFor(`tls ${sni}`);
      // Enforced: permitted by name when it connects; the rule is edited in place (same id) to deny the name, while
      // another name's rule keeps the address permitted, so the re-judgment keeps the waiting socket.
      learnBoth(flow.datapath!.setWorkload(cgroup, [nameRule('permit'), webRule(OTHER_NAME_RULE, 'other.example')]));
      const before = flow.server.lines.length;
      const mark = events.length;
      const client = await helloAfter('edited', () =>
        learnBoth(flow.datapath!.setWorkload(cgroup, [nameRule('deny'), webRule(OTHER_NAME_RULE, 'other.example')])),
      );
      await client.waitFor('error edited ECONNABORTED');
      const denied = await eventMatching(events, (e) => events.indexOf(e) >= mark && e.layer === 'tls' && e.sni === sni);
      assert.deepEqual([denied.verdict, denied.ruleId], ['denied', EDITED_RULE]);
      assert.equal(flow.server.lines.slice(before).includes(`tls ${sni}`), false, 'the ClientHello never arrives');
    });

    test(`IPv${family}: a webGroup rule matches plain HTTP on its Host header`, async () => {
      const request = (host: string, target: string) => ({
        host: flow.lab.inet(KEPT, family),
        port: HTTP_PORT,
        hello: Buffer.from(`GET ${target} HTTP/1.1\r\nUser-Agent: t\r\nHost: ${host}\r\n\r\n`).toString('hex'),
      });
      const send = (host: string, target: string) =>
        flow.lab.runScriptInPod<{ pid: number; code: string }>(POD, HELLO_SCRIPT, request(host, target));
      // Calibration: unenrolled, a request naming a foreign host reaches the server.
      flow.datapath!.removeWorkload(flow.lab.pod(POD).cgroupPath);
      assert.equal((await send('evil.example', `/calibration${family}`)).code, 'ANSWERED');
      await flow.server.waitFor(`http evil.example /calibration${family}`);
      const workloadId = flow.datapath!.setWorkload(flow.lab.pod(POD).cgroupPath, [webRule(HTTP_RULE, 'allowed.example', HTTP_PORT)]);
      const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
      flow.datapath!.learn([{ workloadId, ruleId: HTTP_RULE, ip: flow.lab.inet(KEPT, family), expiresAtNs }]);
      const allowed = await send('allowed.example:8080', `/allowed${family}`);
      assert.equal(allowed.code, 'ANSWERED');
      await flow.server.waitFor(`http allowed.example:8080 /allowed${family}`);
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
      await flow.server.waitFor(`http allowed.example /after${family}`);
      const arrived = flow.server.lines.filter((line) => line.includes(`/enforced${family}`) || line.includes(`/fronted${family}`));
      assert.deepEqual(arrived, []);
    });
  }
});

/**
 * Without bpf_sock_destroy a withdrawn socket lives on; the re-judgment marks it withdrawn and the cgroup_skb
 * program drops what it sends, with the tc backstop (packet: true) and without one (packet: false: host network, or
 * enforcement.packet off), where that drop is all that contains it.
 */
for (const packet of [true, false]) {
  const backstop = packet ? 'with the tc backstop' : 'without a tc backstop (packet: false)';
  describe(
    `without bpf_sock_destroy (Linux < 6.5, forced), ${backstop}: a withdrawn socket sends nothing more (real kernel)`,
    { skip },
    () => {
      const flow = useFlowLab(packet ? 'cg' : 'ch', (lab) => {
        const datapath = openDatapath({
          objectPath: withoutSockDestroyPath,
          pinDir: lab.pinDir,
          attachCgroup: lab.attachCgroup,
          hostNetns: `/run/netns/${lab.nodeNetns}`,
        });
        datapath.configure({ ...settings('deny'), features: { tls: true, packet } });
        return datapath;
      });
      const { events, clients } = flow;

      for (const family of [4, 6] as const) {
        test(`IPv${family}: a withdrawn flow is not ended, and not one byte of it reaches the server; the kept flow works`, async () => {
          const pod = flow.lab.pod(POD);
          const network = packet ? { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] } : undefined;
          const workloadId = flow.datapath!.setWorkload(
            pod.cgroupPath,
            [allow(flow.lab, ALLOW_KEPT, KEPT), allow(flow.lab, ALLOW_REVOKED, REVOKED)],
            network,
          );
          // Calibration: both flows deliver while permitted.
          const label = `fallback${packet ? 'tc' : 'notc'}${family}`;
          const client = await connectBoth(flow.lab, flow.server, clients, family, label);
          const before = flow.datapath!.stats();
          flow.datapath!.setWorkload(pod.cgroupPath, [allow(flow.lab, ALLOW_KEPT, KEPT)], network);
          const after = flow.datapath!.stats();
          assert.deepEqual([after.flowsEnded, after.flowsNotEnded], [before.flowsEnded, before.flowsNotEnded + 1n], 'one socket not ended');
          client.child.stdin!.write(`send revoked ${label}-revoked-after\n`);
          client.child.stdin!.write(`send kept ${label}-kept-after\n`);
          await flow.server.waitFor(`recv ${label}-kept-after`);
          // Dropped where the socket sends (cgroup_skb), reported with the rule that denies it now (the default).
          const dropped = await eventMatching(
            events,
            (e) => e.reason === 'withdrawn-no-sock-destroy' && e.ip === flow.lab.inet(REVOKED, family) && e.port === LINE_PORT,
          );
          assert.deepEqual([dropped.verdict, dropped.layer, dropped.tier, dropped.workloadId], ['denied', 'packet', 3, workloadId]);
          assert.ok(flow.datapath!.stats().decisionsDenied > before.decisionsDenied, 'counted as denied');
          assert.equal(flow.server.lines.includes(`recv ${label}-revoked-after`), false, 'no byte of the revoked flow arrives');
          assert.equal(
            client.lines.some((line) => line.startsWith('error revoked') || line === 'closed revoked'),
            false,
            'the socket was not ended: the datapath, not bpf_sock_destroy, contained it',
          );
          // Each later pass would count it again: the next family's count starts without it.
          const exited = new Promise((resolve) => client.child.once('exit', resolve));
          client.child.kill();
          await exited;
        });

        test(`IPv${family}: an outbound socket bound with SO_REUSEPORT to the pod's listening port is withdrawn like any other; inbound connections on the port are kept`, () => {
          const pod = flow.lab.pod(POD);
          const network = packet ? { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] } : undefined;
          const label = `reuseport${packet ? 'tc' : 'notc'}${family}`;
          return assertReusePortWithdrawn(
            flow,
            family,
            label,
            (rules) => flow.datapath!.setWorkload(pod.cgroupPath, rules, network),
            false,
          );
        });

        test(`IPv${family}: a withdrawn connected UDP socket still reaches a permitted address by sendto(); its peer gets not one datagram`, async () => {
          const pod = flow.lab.pod(POD);
          const network = packet ? { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] } : undefined;
          const keptOnly = [allow(flow.lab, ALLOW_KEPT_UDP, KEPT, 'udp')];
          flow.datapath!.setWorkload(pod.cgroupPath, [...keptOnly, allow(flow.lab, ALLOW_REVOKED_UDP, REVOKED, 'udp')], network);
          const child = flow.lab.spawnInPod(POD, ['python3', '-c', UDP_CLIENT_SCRIPT], {
            env: {
              ...process.env,
              EG_ARGS: JSON.stringify({ peer: flow.lab.inet(REVOKED, family), other: flow.lab.inet(KEPT, family), port: LINE_PORT }),
            },
            stdio: ['pipe', 'pipe', 'inherit'],
          });
          clients.push(child);
          const client = new Lines(child);
          await client.waitFor('connected');
          const label = `udp${packet ? 'tc' : 'notc'}${family}`;
          const send = async (command: 'send' | 'sendto', word: string) => {
            child.stdin!.write(`${command} ${word}\n`);
            await client.waitFor((line) => line === `sent ${word}` || line.startsWith(`error ${word} `));
          };
          // Calibration: while both are permitted, the peer and the other address each receive.
          await send('send', `${label}-peer-before`);
          await send('sendto', `${label}-other-before`);
          await flow.server.waitFor(`udp ${label}-peer-before`);
          await flow.server.waitFor(`udp ${label}-other-before`);

          flow.datapath!.setWorkload(pod.cgroupPath, keptOnly, network);
          // The peer is withdrawn; a permitted sendto() in between must not bring it back.
          await send('send', `${label}-peer-after`);
          await send('sendto', `${label}-other-after`);
          await send('send', `${label}-peer-again`);
          await send('sendto', `${label}-other-last`);
          await flow.server.waitFor(`udp ${label}-other-after`);
          await flow.server.waitFor(`udp ${label}-other-last`);
          for (const word of ['peer-after', 'peer-again']) {
            assert.equal(flow.server.lines.includes(`udp ${label}-${word}`), false, `no datagram to the withdrawn peer arrives (${word})`);
          }
          const dropped = await eventMatching(
            events,
            (e) => e.reason === 'withdrawn-no-sock-destroy' && e.ip === flow.lab.inet(REVOKED, family) && e.protocol === 17,
          );
          assert.deepEqual([dropped.verdict, dropped.port], ['denied', LINE_PORT]);
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill();
          await exited;
        });
      }
    },
  );
}

describe('sockets connected before the programs were attached (real kernel)', { skip }, () => {
  const flow = useFlowLab('ca', null);
  const { clients } = flow;

  test('IPv4 and IPv6: a flow opened before the agent attached ends when its workload is enrolled without it', async () => {
    // Calibration: with nothing attached, every connection delivers.
    const connected = {
      4: await connectBoth(flow.lab, flow.server, clients, 4, 'attach4'),
      6: await connectBoth(flow.lab, flow.server, clients, 6, 'attach6'),
    };
    flow.datapath = openDatapath({ objectPath, pinDir: flow.lab.pinDir, attachCgroup: flow.lab.attachCgroup });
    flow.datapath.configure(settings('deny'));
    flow.datapath.setWorkload(flow.lab.pod(POD).cgroupPath, [allow(flow.lab, ALLOW_KEPT, KEPT)]);
    for (const family of [4, 6] as const) await assertEnded(flow.server, connected[family], `attach${family}`);
  });
});

// The packet layer against the real kernel: the tc backstop on the pod's host-side interface
// (AF_PACKET frames, forged sources, fragments) and cgroup_skb judging raw and ping sockets.
// "Dropped" is asserted on the receiver: a later allowed marker arrives, the dropped packet never does.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { openDatapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import type { DecodedEvent } from '../../src/datapath/abi.js';
import type { Datapath, KernelRule } from '../../src/datapath/types.js';
import { mustRunSync } from '../../lab/exec.js';
import { Lab, type LabPod } from '../../lab/lab.js';
import { DENY_BY_DEFAULT, eventMatching, monotonicPast, rule } from '../support/datapath-helpers.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { buildClientHello } from '../unit/clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
const skip = privilegedSkip();

const UDP_OK = 2; // inet host: UDP 9999 permitted
const ICMP_OK = 3; // inet host: ICMP permitted
const DENIED = 4; // inet host: nothing permitted (except the learned web rule below)
const PORT = 9999;
const SINK_PORT = 8443;
const WEB_RULE = 31;

/** Prints "got:<payload>" for every UDP datagram (reassembled) on 9999, and runs a TCP ack sink. */
const RECEIVER_SCRIPT = `
const dgram = require('dgram'), net = require('net');
const u = dgram.createSocket({ type: 'udp6' });
u.on('message', (m) => console.log('got:' + m));
let pending = 2;
const ready = () => { if (--pending === 0) console.log('ready'); };
u.bind(${PORT}, '::', ready);
net.createServer((s) => { let total = 0; s.on('error', () => {}); s.on('data', (c) => { total += c.length; s.write(total + '\\n'); }); })
  .listen({ port: ${SINK_PORT}, host: '::' }, ready);`;

/** Sends one crafted UDP datagram: mode packet (AF_PACKET frame on eth0) or raw (IPv4 IP_HDRINCL). */
const SENDER_SCRIPT = String.raw`
import json, os, socket, struct
a = json.loads(os.environ['EG_ARGS'])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
v6 = ':' in a['dst']
fam = socket.AF_INET6 if v6 else socket.AF_INET
src, dst = socket.inet_pton(fam, a['src']), socket.inet_pton(fam, a['dst'])
payload = a['payload'].encode()
ulen = 8 + len(payload)
pseudo = src + dst + (struct.pack('!I', ulen) + b'\0\0\0\x11' if v6 else struct.pack('!BBH', 0, 17, ulen))
udp = struct.pack('!HHHH', 40000, a['dport'], ulen, 0) + payload
udp = udp[:6] + struct.pack('!H', csum(pseudo + udp) or 0xffff) + udp[8:]
pieces = [(0, udp)]
if a['fragments'] > 1:
    size = (len(udp) // a['fragments'] + 7) // 8 * 8
    pieces = [(o, udp[o:o + size]) for o in range(0, len(udp), size)]
if a.get('onlyLater'): pieces = pieces[1:]
packets = []
for i, (off, piece) in enumerate(pieces):
    more = 1 if off + len(piece) < len(udp) else 0
    fragmented = len(pieces) > 1 or a.get('onlyLater')
    if v6:
        body = (struct.pack('!BBHI', 17, 0, off | more, a.get('id', 0x4567)) + piece) if fragmented else piece
        packets.append(struct.pack('!IHBB', 0x60000000, len(body), 44 if fragmented else 17, 64) + src + dst + body)
    else:
        flags = ((off // 8) | (0x2000 if more else 0)) if fragmented else 0
        h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(piece), a.get('id', 0x4567), flags, 64, 17, 0, src, dst)
        packets.append(h[:10] + struct.pack('!H', csum(h)) + h[12:] + piece)
if a['mode'] == 'packet':
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(('eth0', 0))
    eth = bytes.fromhex(a['dstMac'].replace(':', '')) + s.getsockname()[4] + (b'\x86\xdd' if v6 else b'\x08\x00')
    for p in packets: s.send(eth + p)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for p in packets:
        try: s.sendto(p, (a['dst'], 0))
        except PermissionError: pass
print(json.dumps({'sent': len(packets)}))`;

/** ICMP echo over a raw socket (kind raw, needs CAP_NET_RAW) or a ping socket (kind dgram); prints whether a reply came. */
const PING_SCRIPT = String.raw`
import json, os, socket, struct
a = json.loads(os.environ['EG_ARGS'])
v6 = ':' in a['dst']
kind = socket.SOCK_RAW if a['kind'] == 'raw' else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.settimeout(1.5)
def csum(b):
    if len(b) % 2: b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return (~t) & 0xffff
body = b'\0\x01\0\x01egressguard'
echo = (b'\x80\0' if v6 else b'\x08\0') + b'\0\0' + body
if not v6: echo = echo[:2] + struct.pack('!H', csum(echo)) + echo[4:]
try:
    s.sendto(echo, (a['dst'], 0))
    s.recv(1500)
    print(json.dumps({'reply': True}))
except (socket.timeout, PermissionError) as e:
    print(json.dumps({'reply': False, 'error': type(e).__name__}))`;

describe('packet-layer datapath (real kernel)', { skip }, () => {
  let lab: Lab;
  let pod: LabPod;
  let datapath: Datapath | null = null;
  let receiver: ChildProcess;
  let workloadId = 0;
  let hostMac = '';
  const received: string[] = [];
  const events: DecodedEvent[] = [];
  let marker = 0;

  /** Runs a command in the pod netns and the workload cgroup; returns its exit status and stdout. */
  function inPod(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string } {
    const result = spawnSync(
      'nsenter',
      [`--net=${pod.netnsPath}`, '--', 'sh', '-c', `echo $$ > ${join(pod.cgroupPath, 'cgroup.procs')} && exec "$@"`, 'sh', ...args],
      { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10_000 },
    );
    return { status: result.status, stdout: result.stdout };
  }

  function send(options: {
    mode: 'packet' | 'raw';
    src: string;
    dst: string;
    payload: string;
    fragments?: number;
    onlyLater?: boolean;
    id?: number;
  }): void {
    const out = inPod(['python3', '-c', SENDER_SCRIPT], {
      EG_ARGS: JSON.stringify({ dport: PORT, fragments: 1, dstMac: hostMac, ...options }),
    });
    assert.equal(out.status, 0, `sender failed: ${out.stdout}`);
  }

  /** Sends an allowed marker datagram by the same path and waits for it: what was sent before has been delivered if it ever will. */
  async function flush(family: 4 | 6): Promise<void> {
    const tag = `marker-${++marker}`;
    send({ mode: 'packet', src: family === 4 ? pod.ipv4 : pod.ipv6, dst: lab.inet(UDP_OK, family), payload: tag });
    const deadline = Date.now() + 5000;
    while (!received.includes(tag)) {
      if (Date.now() > deadline) throw new Error(`marker ${tag} never arrived; received ${JSON.stringify(received)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const rules = (): KernelRule[] => [
    rule({
      ruleId: 41,
      action: 'permit',
      protocol: 'udp',
      portLow: PORT,
      portHigh: PORT,
      cidrs: [
        { family: 4, address: lab.inet(UDP_OK, 4), prefix: 32 },
        { family: 6, address: lab.inet(UDP_OK, 6), prefix: 128 },
      ],
    }),
    rule({
      ruleId: 42,
      action: 'permit',
      protocol: 'icmp',
      cidrs: [
        { family: 4, address: lab.inet(ICMP_OK, 4), prefix: 32 },
        { family: 6, address: lab.inet(ICMP_OK, 6), prefix: 128 },
      ],
    }),
    rule({
      ruleId: WEB_RULE,
      action: 'permit',
      protocol: 'tcp',
      portLow: SINK_PORT,
      portHigh: SINK_PORT,
      web: true,
      domains: [{ kind: 'exact', name: 'allowed.example' }],
    }),
  ];

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('bs'),
      pods: ['workload'],
      hosts: [],
      unnamedHosts: [UDP_OK, ICMP_OK, DENIED],
      services: false,
    });
    pod = lab.pod('workload');
    receiver = await lab.serve(RECEIVER_SCRIPT);
    new Lines(receiver, (line) => line.startsWith('got:') && received.push(line.slice(4)));
    hostMac = (
      JSON.parse(mustRunSync(['ip', '-n', lab.nodeNetns, '-j', 'link', 'show', pod.nodeInterface])) as Array<{ address: string }>
    )[0]!.address;
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup, hostNetns: `/run/netns/${lab.nodeNetns}` });
    datapath.onEvent((event) => events.push(event as DecodedEvent)); // the datapath delivers decoded records
    datapath.configure(DENY_BY_DEFAULT);
    workloadId = datapath.setWorkload(pod.cgroupPath, rules(), { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] });
    // Neighbour entries first, so the tests' frames are not the ones that resolve them.
    for (const family of [4, 6] as const) await flush(family);
  }, 60_000);

  afterAll(async () => {
    try {
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  test('the tc filter sits on the host-side interface with the fixed handle', () => {
    const native = loadNative();
    const ifindex = native.ifNameToIndex(pod.nodeInterface, `/run/netns/${lab.nodeNetns}`);
    assert.equal(typeof native.tcQueryIngress(ifindex, 0xe9, 0xe9, `/run/netns/${lab.nodeNetns}`), 'number');
    assert.throws(
      () => datapath!.setWorkload(pod.cgroupPath, rules(), { interfaces: ['eg-no-such-if'], addresses: [pod.ipv4] }),
      /interface eg-no-such-if not found/,
    );
    assert.throws(
      () => datapath!.setWorkload(pod.cgroupPath, rules(), { interfaces: [pod.nodeInterface], addresses: [] }),
      /need the workload's addresses/,
    );
  });

  for (const family of [4, 6] as const) {
    const own = (): string => (family === 4 ? pod.ipv4 : pod.ipv6);
    const forged = (): string => (family === 4 ? pod.ipv4.replace(/\.2$/, '.99') : pod.ipv6.replace(/::2$/, '::99'));

    test(`IPv${family}: AF_PACKET frames are judged at tc: allowed passes, others and forged sources drop`, async () => {
      send({ mode: 'packet', src: own(), dst: lab.inet(DENIED, family), payload: `pkt-denied-${family}` });
      send({ mode: 'packet', src: forged(), dst: lab.inet(UDP_OK, family), payload: `pkt-forged-${family}` });
      send({ mode: 'packet', src: own(), dst: lab.inet(UDP_OK, family), payload: `pkt-allowed-${family}` });
      await flush(family);
      assert.ok(received.includes(`pkt-allowed-${family}`));
      assert.ok(!received.includes(`pkt-denied-${family}`), 'denied destination');
      assert.ok(!received.includes(`pkt-forged-${family}`), 'forged source');
      const event = await eventMatching(events, (e) => e.layer === 'packet' && e.hook === 6 && e.ip === lab.inet(DENIED, family));
      assert.deepEqual([event.verdict, event.tier, event.port, event.protocol, event.workloadId], ['denied', 3, PORT, 17, workloadId]);
    });

    test(`IPv${family}: fragments follow their first fragment's verdict`, async () => {
      send({
        mode: 'packet',
        src: own(),
        dst: lab.inet(UDP_OK, family),
        payload: `frag-allowed-${family}-${'x'.repeat(64)}`,
        fragments: 3,
      });
      send({ mode: 'packet', src: own(), dst: lab.inet(DENIED, family), payload: `frag-denied-${family}-${'x'.repeat(64)}`, fragments: 3 });
      await flush(family);
      assert.ok(
        received.some((m) => m.startsWith(`frag-allowed-${family}-`)),
        'reassembled at the receiver',
      );
      assert.ok(!received.some((m) => m.startsWith(`frag-denied-${family}-`)));
      const events0 = events.length;
      send({
        mode: 'packet',
        src: own(),
        dst: lab.inet(UDP_OK, family),
        payload: `frag-orphan-${family}-${'y'.repeat(64)}`,
        fragments: 3,
        onlyLater: true,
        id: 0x1234,
      });
      await eventMatching(
        events,
        (e) => events.indexOf(e) >= events0 && e.hook === 6 && e.verdict === 'denied' && e.ip === lab.inet(UDP_OK, family) && e.port === 0,
      );
    });
  }

  /* iputils ping first connects a UDP socket to port 1025 to pick its source, which the connect hook
   * judges like any UDP connect; the echo itself is sent here from python raw and ping sockets. */
  for (const kind of ['raw', 'dgram'] as const) {
    test(`ICMP echo from ${kind === 'raw' ? 'a raw socket (CAP_NET_RAW)' : 'a ping socket (ping_group_range)'} is judged per packet at cgroup_skb`, async () => {
      for (const family of [4, 6] as const) {
        const ping = (host: number): { reply: boolean } =>
          JSON.parse(inPod(['python3', '-c', PING_SCRIPT], { EG_ARGS: JSON.stringify({ kind, dst: lab.inet(host, family) }) }).stdout) as {
            reply: boolean;
          };
        assert.equal(ping(ICMP_OK).reply, true, `IPv${family} permitted`);
        const before = events.length;
        assert.equal(ping(DENIED).reply, false, `IPv${family} denied`);
        const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.hook === 5 && e.ip === lab.inet(DENIED, family));
        assert.deepEqual([event.layer, event.verdict, event.protocol], ['packet', 'denied', family === 4 ? 1 : 58]);
      }
    });
  }

  test('a raw socket with a forged source is dropped at cgroup_skb; with its own source it is judged by destination', async () => {
    send({ mode: 'raw', src: pod.ipv4.replace(/\.2$/, '.77'), dst: lab.inet(UDP_OK, 4), payload: 'raw-forged' });
    send({ mode: 'raw', src: pod.ipv4, dst: lab.inet(DENIED, 4), payload: 'raw-denied' });
    send({ mode: 'raw', src: pod.ipv4, dst: lab.inet(UDP_OK, 4), payload: 'raw-allowed' });
    send({ mode: 'raw', src: pod.ipv4, dst: lab.inet(UDP_OK, 4), payload: `raw-fragments-${'z'.repeat(64)}`, fragments: 2, id: 0x2345 });
    await flush(4);
    assert.ok(
      received.includes('raw-allowed'),
      JSON.stringify({ received, events: events.filter((e) => e.hook === 5).map((e) => [e.ip, e.port, e.verdict, e.tier]) }),
    );
    assert.ok(
      received.some((m) => m.startsWith('raw-fragments-')),
      'fragments of a raw socket',
    );
    assert.ok(!received.includes('raw-forged') && !received.includes('raw-denied'));
    const forged = await eventMatching(events, (e) => e.hook === 5 && e.tier === 0 && e.ip === lab.inet(UDP_OK, 4));
    assert.equal(forged.verdict, 'denied');
  });

  test('a live TCP connection outlives its learned entry (approved flow); a new connect is denied', async () => {
    const host = lab.inet(DENIED, 4);
    // Long enough for the client to start and connect; it expires while the connection lives (learning never shortens it).
    const expiresAtNs = process.hrtime.bigint() + 4_000_000_000n;
    datapath!.learn([{ workloadId, ruleId: WEB_RULE, ip: host, expiresAtNs }]);
    const hello = buildClientHello({ sni: 'allowed.example' });
    const script = `
      const net = require('net'); const rl = require('readline').createInterface({ input: process.stdin });
      let acked = 0; const total = ${hello.length} + 5;
      const s = net.connect({ host: '${host}', port: ${SINK_PORT}, noDelay: true });
      s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
      s.on('data', (c) => { for (const l of String(c).split('\\n')) if (l) acked = Number(l);
        if (acked === ${hello.length}) console.log('stage1');
        if (acked === total) { console.log(JSON.stringify({ ok: true })); process.exit(0); } });
      s.on('connect', () => s.write(Buffer.from('${hello.toString('hex')}', 'hex')));
      rl.on('line', () => s.write('later'));
      setTimeout(() => { console.log(JSON.stringify({ ok: false, acked })); process.exit(0); }, 5000);`;
    const child = spawn(
      'nsenter',
      [
        `--net=${pod.netnsPath}`,
        '--',
        'sh',
        '-c',
        `echo $$ > ${join(pod.cgroupPath, 'cgroup.procs')} && exec "$0" -e "$EG_SCRIPT"`,
        process.execPath,
      ],
      { env: { ...process.env, EG_SCRIPT: script }, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    let out = '';
    const finished = new Promise<void>((resolve) => child.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('stage1')) resolve();
      });
      child.on('close', () => reject(new Error(`client ended early: ${out}`)));
    });
    await monotonicPast(expiresAtNs);
    const fresh = spawnSync(
      'nsenter',
      [
        `--net=${pod.netnsPath}`,
        '--',
        'sh',
        '-c',
        `echo $$ > ${join(pod.cgroupPath, 'cgroup.procs')} && exec "$0" -e "$1"`,
        process.execPath,
        `require('net').connect(${SINK_PORT}, '${host}').on('error', (e) => { console.log(e.code); process.exit(0); }).on('connect', () => { console.log('connected'); process.exit(0); })`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(fresh.stdout.trim(), 'EPERM', 'a new connect needs a live learned entry');
    child.stdin!.write('go\n');
    await finished;
    assert.match(out, /\{"ok":true\}/, `the live connection keeps working: ${out}`);
  });
});

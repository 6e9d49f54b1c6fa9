// Containment at the packet layer (issue 7, items 3-6, 12 and 14's encapsulation), against the real kernel: a workload with a root shell
// (CAP_NET_RAW and CAP_NET_ADMIN in its own netns) tries to get bytes past its policy below or beside the socket hooks.
// Every attack first runs with the workload not enrolled (calibration: the capture in the internet namespace sees its
// marker), then enrolled: a later allowed marker arrives, the attack's never does. Judged on the receiving side only.
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { openDatapath } from '../../src/datapath/datapath.js';
import type { DecodedEvent } from '../../src/datapath/abi.js';
import type { Datapath, KernelRule } from '../../src/datapath/types.js';
import { LAB_ADDRESSES, Lab, type LabPod } from '../../lab/lab.js';
import { eventMatching, rule } from '../support/datapath-helpers.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));

const ALLOWED = 2; // inet host: UDP 9999 and ICMP permitted
const ATTACKER = 3; // inet host: nothing permitted
const PORT = 9999;
const FAMILIES = [4, 6] as const;
const IPPROTO_UDPLITE = 136;
/** The source port the encapsulation test's policy routing sends into the pod's tunnel (other traffic stays off it). */
const TUNNELLED_SPORT = 40000;
const VXLAN_PORT = 4789;
/** Protocols this kernel has no sockets for (SCTP, DCCP and L2TP/IP are not built in), with their first bytes' ports. */
const RAW_PROTOCOLS = [
  { name: 'SCTP', protocol: 132, ports: true },
  { name: 'DCCP', protocol: 33, ports: true },
  { name: 'L2TP/IP', protocol: 115, ports: false },
] as const;

/** Prints "seen <marker>" for every frame on any interface of the internet namespace that carries a marker. */
const CAPTURE_SCRIPT = String.raw`
import re, socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
print('ready', flush=True)
pattern = re.compile(rb'egm[0-9a-f]{12}')
while True:
    for marker in set(pattern.findall(s.recv(65535))):
        print('seen ' + marker.decode(), flush=True)`;

/** The workload's side: one JSON object in EG_ARGS names the attack (mode) and its parameters; prints a JSON result. */
const POD_SCRIPT = String.raw`
import json, os, select, socket, struct
a = json.loads(os.environ['EG_ARGS'])
mode, out = a['mode'], {}
def csum(data):
    data += b'\0' * (len(data) % 2)
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total > 0xffff:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
def family(address):
    return socket.AF_INET6 if ':' in address else socket.AF_INET
def icmp6(src, dst, body):
    pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack('!I', len(body)) + b'\0\0\0\x3a'
    return body[:2] + struct.pack('!H', csum(pseudo + body)) + body[4:]
def ipv6(src, dst, nexthdr, hop_limit, body):
    return struct.pack('!IHBB', 0x60000000, len(body), nexthdr, hop_limit) + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + body
def frame(packet, ethertype):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(('eth0', 0))
    s.send(bytes.fromhex(a['dstMac'].replace(':', '')) + s.getsockname()[4] + struct.pack('!H', ethertype) + packet)
try:
    if mode == 'udp':
        s = socket.socket(family(a['dst']), socket.SOCK_DGRAM, a.get('protocol', 0))
        if 'sport' in a:
            s.bind(('::' if ':' in a['dst'] else '0.0.0.0', a['sport']))
        if 'segments' in a:
            # IPv6 segment routing header (type 4): the kernel puts the socket's destination in segment 0 and sends
            # the packet to segments[segments_left] first.
            segments = [b'\0' * 16] + [socket.inet_pton(socket.AF_INET6, x) for x in a['segments']]
            last = len(segments) - 1
            s.setsockopt(socket.IPPROTO_IPV6, 57, struct.pack('!BBBBBBH', 0, 2 * len(segments), 4, last, last, 0, 0) + b''.join(segments))
        if 'looseRoute' in a:
            # IPv4 loose source route: the first address becomes the first hop, the destination the last.
            hops = [socket.inet_aton(x) for x in a['looseRoute']] + [socket.inet_aton(a['dst'])]
            option = struct.pack('!BBB', 131, 3 + 4 * len(hops), 4) + b''.join(hops)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, option + b'\0' * (-len(option) % 4))
        out['sent'] = s.sendto(a['payload'].encode(), (a['dst'], a['port']))
    elif mode == 'raw':
        # A raw IP socket sending a protocol this kernel has no socket for: ports first (SCTP, DCCP), or none (L2TP/IP).
        s = socket.socket(family(a['dst']), socket.SOCK_RAW, a['protocol'])
        ports = struct.pack('!HH', 40000, a['port']) if a['port'] else b''
        out['sent'] = s.sendto(ports + b'\0' * 8 + a['payload'].encode(), (a['dst'], 0))
    elif mode == 'ping-elsewhere':
        # A ping socket connected to a permitted address, then sendto() another.
        v6 = ':' in a['dst']
        s = socket.socket(family(a['dst']), socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
        s.connect((a['connect'], 0))
        body = struct.pack('!BBHHH', 128 if v6 else 8, 0, 0, 0, 1) + a['payload'].encode()
        out['sent'] = s.sendto(body, (a['dst'], 0))
    elif mode == 'ping':
        v6 = ':' in a['dst']
        s = socket.socket(family(a['dst']), socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
        s.sendto(struct.pack('!BBHHH', 128 if v6 else 8, 0, 0, 0, 7) + b'egressguard', (a['dst'], 0))
        out['reply'] = bool(select.select([s], [], [], 2)[0]) and s.recv(1500)[0] == (129 if v6 else 0)
    elif mode == 'neighbour-solicitation':
        # NS (135, or another ICMPv6 type given as icmpType) with hop limit 255 (or hopLimit) and any payload after the
        # target, as an Ethernet frame; optionally waits for the node's advertisement (136) on a raw ICMPv6 socket.
        listener = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        target = socket.inet_pton(socket.AF_INET6, a['target'])
        body = icmp6(a['src'], a['dst'], struct.pack('!BBHI', a.get('icmpType', 135), 0, 0, 0) + target + a['payload'].encode())
        frame(ipv6(a['src'], a['dst'], 58, a.get('hopLimit', 255), body), 0x86DD)
        out['advertised'] = False
        while a.get('awaitAdvert') and select.select([listener], [], [], 2)[0]:
            data = listener.recv(1500)
            if data[0] == 136 and data[8:24] == target:
                out['advertised'] = True
                break
    elif mode == 'arp':
        # ARP request from sender (spa) for target (tpa).
        mac = bytes.fromhex(a['srcMac'].replace(':', ''))
        arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(a['sender']) + b'\0' * 6 + socket.inet_aton(a['target'])
        frame(arp, 0x0806)
    elif mode == 'udp-frame':
        # UDP (or UDP-Lite, its length field then 0: checksum covers everything) as an Ethernet frame, any source.
        v6 = ':' in a['dst']
        f = family(a['dst'])
        protocol = a.get('protocol', 17)
        src, dst = socket.inet_pton(f, a['src']), socket.inet_pton(f, a['dst'])
        payload = a['payload'].encode()
        udp = struct.pack('!HHHH', 40000, a['port'], 8 + len(payload) if protocol == 17 else 0, 0) + payload
        pseudo = src + dst + (struct.pack('!IBBBB', len(udp), 0, 0, 0, protocol) if v6 else struct.pack('!BBH', 0, protocol, len(udp)))
        udp = udp[:6] + struct.pack('!H', csum(pseudo + udp) or 0xffff) + udp[8:]
        if v6 and 'segments' in a:
            # A type 0 routing header (RFC 5095 deprecated it; no socket option sends one): next hops after dst.
            hops = b''.join(socket.inet_pton(socket.AF_INET6, x) for x in a['segments'])
            routing = struct.pack('!BBBBI', protocol, 2 * len(a['segments']), 0, len(a['segments']), 0) + hops
            frame(ipv6(a['src'], a['dst'], 43, 64, routing + udp), 0x86DD)
        elif v6:
            frame(ipv6(a['src'], a['dst'], protocol, 64, udp), 0x86DD)
        else:
            header = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0x4000, 64, protocol, 0, src, dst)
            frame(header[:10] + struct.pack('!H', csum(header)) + header[12:] + udp, 0x0800)
except OSError as error:
    out['error'] = type(error).__name__ + ': ' + str(error)
print(json.dumps(out))`;

interface PodResult {
  sent?: number;
  reply?: boolean;
  advertised?: boolean;
  error?: string;
}

describe('packet-layer containment (real kernel)', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let rogue: LabPod;
  let other: LabPod;
  let datapath: Datapath | null = null;
  let capture: ChildProcess;
  const seen = new Set<string>();
  const events: DecodedEvent[] = [];
  let rogueId = 0;
  const mac = { gateway: '', pod: '' };

  const rules = (): KernelRule[] => [
    rule({
      ruleId: 51,
      action: 'permit',
      protocol: 'udp',
      portLow: PORT,
      portHigh: PORT,
      cidrs: FAMILIES.map((family) => ({ family, address: lab.inet(ALLOWED, family), prefix: family === 4 ? 32 : 128 })),
    }),
    rule({
      ruleId: 53, // any protocol, but only this port: UDP-Lite elsewhere is not permitted
      action: 'permit',
      portLow: PORT,
      portHigh: PORT,
      cidrs: FAMILIES.map((family) => ({ family, address: lab.inet(ALLOWED, family), prefix: family === 4 ? 32 : 128 })),
    }),
    rule({
      ruleId: 52,
      action: 'permit',
      protocol: 'icmp',
      cidrs: FAMILIES.map((family) => ({ family, address: lab.inet(ALLOWED, family), prefix: family === 4 ? 32 : 128 })),
    }),
  ];

  function enrol(pod: LabPod): number {
    return datapath!.setWorkload(pod.cgroupPath, rules(), { interfaces: [pod.nodeInterface], addresses: [pod.ipv4, pod.ipv6] });
  }

  async function inRogue(args: Record<string, unknown>): Promise<PodResult> {
    const result = await lab.runInPod(rogue, ['python3', '-c', POD_SCRIPT], {
      env: { ...process.env, EG_ARGS: JSON.stringify({ dstMac: mac.gateway, ...args }) },
    });
    assert.equal(result.code, 0, `pod script failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as PodResult;
  }

  const newMarker = (): string => `egm${randomBytes(6).toString('hex')}`;

  async function waitSeen(marker: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!seen.has(marker)) {
      if (Date.now() > deadline) throw new Error(`${marker} never reached the internet namespace`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** An allowed datagram from the workload's own socket: once it arrives, what was sent before it has arrived or never will. */
  async function allowedArrives(family: 4 | 6): Promise<void> {
    const marker = newMarker();
    const result = await inRogue({ mode: 'udp', dst: lab.inet(ALLOWED, family), port: PORT, payload: marker });
    assert.equal(result.error, undefined, JSON.stringify(result));
    await waitSeen(marker);
  }

  /**
   * The attack (given a marker to carry) reaches the internet namespace while the workload is not enrolled, and not one
   * frame carrying its marker arrives once it is; allowed traffic of the same family still does.
   */
  async function contained(family: 4 | 6, attack: (marker: string) => Promise<PodResult>): Promise<void> {
    datapath!.removeWorkload(rogue.cgroupPath);
    const calibration = newMarker();
    const unenforced = await attack(calibration);
    await waitSeen(calibration).catch((error: Error) => {
      throw new Error(`calibration: ${error.message} (${JSON.stringify(unenforced)})`);
    });
    rogueId = enrol(rogue);
    const marker = newMarker();
    await attack(marker);
    await allowedArrives(family);
    assert.equal(seen.has(marker), false, `the enforced attack ${marker} reached the internet namespace`);
  }

  async function nodeNeighbours(device: string): Promise<string> {
    return (await lab.runInNode(['ip', 'neigh', 'show', 'dev', device])).stdout;
  }

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('cp'),
      pods: ['rogue', 'other'],
      hosts: [],
      unnamedHosts: [ALLOWED, ATTACKER],
      services: false,
    });
    rogue = lab.pod('rogue');
    other = lab.pod('other');
    capture = lab.spawnInInternet(['python3', '-c', CAPTURE_SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      capture.once('exit', (code) => reject(new Error(`capture exited (${code})`)));
      capture.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) {
          if (line === 'ready') resolve();
          else if (line.startsWith('seen ')) seen.add(line.slice(5));
        }
      });
    });
    const linkMac = async (netns: string, device: string): Promise<string> =>
      (JSON.parse((await lab.runInNode(['ip', '-n', netns, '-j', 'link', 'show', device])).stdout) as { address: string }[])[0]!.address;
    mac.gateway = await linkMac(lab.nodeNetns, rogue.nodeInterface);
    mac.pod = await linkMac(rogue.netns, 'eth0');
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup, hostNetns: `/run/netns/${lab.nodeNetns}` });
    datapath.onEvent((event) => events.push(event as DecodedEvent));
    datapath.configure({
      defaultAction: 'deny',
      dnsProxy: { ipv4: LAB_ADDRESSES.dnsProxy.ipv4, ipv6: LAB_ADDRESSES.dnsProxy.ipv6, port: 53 },
      denyEch: false,
      maxLearnedPerWorkload: 4096,
      features: { tls: true, packet: true },
    });
    enrol(other);
    rogueId = enrol(rogue);
  }, 60_000);

  afterAll(async () => {
    try {
      datapath?.close();
    } finally {
      await lab?.destroy();
    }
  });

  test('item 3: neighbour discovery (133-137) and listener messages to a global address carry nothing out; link-scoped discovery works', async () => {
    for (const icmpType of [135, 133, 134, 136, 137]) {
      await contained(6, (marker) =>
        inRogue({
          mode: 'neighbour-solicitation',
          icmpType,
          src: rogue.ipv6,
          dst: lab.inet(ATTACKER, 6),
          target: lab.inet(ATTACKER, 6),
          payload: marker,
        }),
      );
    }
    // A link-local source does not make it link control either. The node never forwards a packet with a link-local
    // source, so nothing can arrive even unenforced (no receiving side can tell): the backstop's record shows that it
    // judged the frame instead of passing it as link control.
    const before = events.length;
    await inRogue({ mode: 'neighbour-solicitation', src: 'fe80::1', dst: lab.inet(ATTACKER, 6), target: rogue.gatewayIpv6, payload: '' });
    const judged = await eventMatching(events, (e) => events.indexOf(e) >= before && e.hook === 6 && e.source === 'fe80::1');
    assert.deepEqual(
      [judged.verdict, judged.reason, judged.ip, judged.workloadId],
      ['denied', 'forged-source', lab.inet(ATTACKER, 6), rogueId],
    );
    // Multicast listener messages (130-132, 143) are link control only with hop limit 1 to a link-scoped destination.
    // With hop limit 1 the node cannot forward one either, so again the backstop's record shows it was judged.
    for (const icmpType of [130, 131, 132, 143]) {
      const sent = events.length;
      await inRogue({
        mode: 'neighbour-solicitation',
        icmpType,
        hopLimit: 1,
        src: rogue.ipv6,
        dst: lab.inet(ATTACKER, 6),
        target: '::',
        payload: '',
      });
      const listener = await eventMatching(events, (e) => events.indexOf(e) >= sent && e.hook === 6 && e.ip === lab.inet(ATTACKER, 6));
      assert.deepEqual(
        [listener.verdict, listener.protocol, listener.tier, listener.workloadId],
        ['denied', 58, 3, rogueId],
        `type ${icmpType}`,
      );
    }
    // Neighbour unreachability detection: a unicast NS to the gateway's own (global) address is answered.
    const nud = await inRogue({
      mode: 'neighbour-solicitation',
      src: rogue.ipv6,
      dst: rogue.gatewayIpv6,
      target: rogue.gatewayIpv6,
      payload: '',
      awaitAdvert: true,
    });
    assert.equal(nud.advertised, true, JSON.stringify(nud));
    // Address resolution from scratch (multicast NS, then NA) and ARP for the workload's own address keep working.
    await lab.runInNode(['ip', '-n', rogue.netns, 'neigh', 'del', rogue.gatewayIpv6, 'dev', 'eth0']);
    await lab.runInNode(['ip', '-n', rogue.netns, 'neigh', 'del', rogue.gatewayIpv4, 'dev', 'eth0']);
    for (const family of FAMILIES) await allowedArrives(family);
    assert.equal((await inRogue({ mode: 'ping', dst: lab.inet(ALLOWED, 6) })).reply, true);
  });

  test("item 3: ARP only for the workload's own addresses", async () => {
    const forged = rogue.ipv4.replace(/\.2$/, '.77');
    const arp = (sender: string): Promise<PodResult> =>
      inRogue({ mode: 'arp', srcMac: mac.pod, sender, target: rogue.gatewayIpv4, dstMac: 'ff:ff:ff:ff:ff:ff' });
    // Calibration: unenrolled, the node learns the forged sender from the request.
    datapath!.removeWorkload(rogue.cgroupPath);
    await arp(forged);
    assert.equal(
      (await nodeNeighbours(rogue.nodeInterface)).includes(`${forged} `),
      true,
      'calibration: the node learned the forged sender',
    );
    await lab.runInNode(['ip', 'neigh', 'del', forged, 'dev', rogue.nodeInterface]);
    rogueId = enrol(rogue);
    const before = events.length;
    await arp(forged);
    await arp(other.ipv4);
    const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.hook === 6 && e.source === forged);
    assert.deepEqual([event.verdict, event.reason, event.workloadId, event.ip], ['denied', 'forged-source', rogueId, rogue.gatewayIpv4]);
    await allowedArrives(4);
    const learned = await nodeNeighbours(rogue.nodeInterface);
    for (const sender of [forged, other.ipv4]) assert.equal(learned.includes(`${sender} `), false, learned);
    // The workload's own address (and an RFC 5227 probe from 0.0.0.0) still resolve the gateway.
    await lab.runInNode(['ip', 'neigh', 'del', rogue.ipv4, 'dev', rogue.nodeInterface]);
    await arp(rogue.ipv4);
    assert.match(await nodeNeighbours(rogue.nodeInterface), new RegExp(`^${rogue.ipv4.replaceAll('.', '\\.')} lladdr`, 'm'));
  });

  for (const family of FAMILIES) {
    test(`item 4 (IPv${family}): UDP-Lite is judged per packet with its ports, never approved for other ports`, async () => {
      const own = family === 4 ? rogue.ipv4 : rogue.ipv6;
      const allowed = lab.inet(ALLOWED, family);
      // A permitted UDP-Lite socket's datagram arrives (before the fix it also approved every UDP-Lite port to that address)...
      await contained(family, async (marker) => {
        const permitted = newMarker();
        const sent = await inRogue({ mode: 'udp', protocol: IPPROTO_UDPLITE, dst: allowed, port: PORT, payload: permitted });
        await waitSeen(permitted).catch((error: Error) => {
          throw new Error(`permitted UDP-Lite: ${error.message} (${JSON.stringify(sent)})`);
        });
        // ...then a frame on the same addresses to a port no rule permits.
        return inRogue({ mode: 'udp-frame', protocol: IPPROTO_UDPLITE, src: own, dst: allowed, port: PORT + 1, payload: marker });
      });
      const event = await eventMatching(events, (e) => e.protocol === IPPROTO_UDPLITE && e.port === PORT + 1 && e.ip === allowed);
      assert.deepEqual([event.verdict, event.hook, event.workloadId, event.tier], ['denied', 6, rogueId, 3]);
      const direct = await inRogue({ mode: 'udp', protocol: IPPROTO_UDPLITE, dst: lab.inet(ATTACKER, family), port: PORT, payload: 'x' });
      assert.match(direct.error ?? '', /PermissionError/, 'the sendmsg hook judges UDP-Lite sockets');
    });

    test(`item 4 (IPv${family}): SCTP, DCCP and L2TP/IP packets (raw sockets) are judged per packet by protocol and port`, async () => {
      const allowed = lab.inet(ALLOWED, family);
      for (const { name, protocol, ports } of RAW_PROTOCOLS) {
        // To the permitted address, on a port no rule permits (L2TP/IP has none: the any-protocol rule's port never matches it).
        const before = events.length;
        await contained(family, (marker) => inRogue({ mode: 'raw', protocol, dst: allowed, port: ports ? PORT + 1 : 0, payload: marker }));
        const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.protocol === protocol && e.ip === allowed);
        assert.deepEqual(
          [event.verdict, event.hook, event.workloadId, event.tier, event.port],
          ['denied', 5, rogueId, 3, ports ? PORT + 1 : 0],
          name,
        );
        if (!ports) continue;
        // The same protocol on the port the any-protocol rule names passes, judged by the same code path.
        const permitted = newMarker();
        const sent = await inRogue({ mode: 'raw', protocol, dst: allowed, port: PORT, payload: permitted });
        await waitSeen(permitted).catch((error: Error) => {
          throw new Error(`permitted ${name}: ${error.message} (${JSON.stringify(sent)})`);
        });
      }
    });

    test(`item 5 (IPv${family}): a ping socket connected to a permitted address cannot sendto() another`, async () => {
      await contained(family, (marker) =>
        inRogue({ mode: 'ping-elsewhere', connect: lab.inet(ALLOWED, family), dst: lab.inet(ATTACKER, family), payload: marker }),
      );
      const event = await eventMatching(events, (e) => e.hook === 5 && e.ip === lab.inet(ATTACKER, family) && e.workloadId === rogueId);
      assert.deepEqual([event.verdict, event.layer], ['denied', 'packet']);
      assert.equal((await inRogue({ mode: 'ping', dst: lab.inet(ALLOWED, family) })).reply, true, 'permitted ICMP still works');
    });
  }

  for (const family of FAMILIES) {
    test(`item 14 (IPv${family}): a tunnel set up inside the pod (VXLAN) cannot carry a judged flow to an attacker`, async () => {
      // The pod's own CAP_NET_ADMIN: a VXLAN device whose far end is the attacker, and a policy route sending the
      // permitted flow (from one source port) into it. The socket hook judges the permitted destination; the packet
      // leaves the pod as UDP to the attacker's VXLAN port with the permitted datagram inside.
      const ip = (...args: string[]) => lab.runInNode(['ip', `-${family}`, '-n', rogue.netns, ...args]);
      const must = async (...args: string[]) => {
        const result = await ip(...args);
        assert.equal(result.code, 0, `ip ${args.join(' ')}: ${result.stderr}`);
      };
      const device = `egvx${family}`;
      const allowed = lab.inet(ALLOWED, family);
      await must(
        'link',
        'add',
        device,
        'type',
        'vxlan',
        'id',
        String(40 + family),
        'remote',
        lab.inet(ATTACKER, family),
        'dstport',
        String(VXLAN_PORT),
      );
      try {
        await must('link', 'set', device, 'up');
        const own = family === 4 ? rogue.ipv4 : rogue.ipv6;
        await must('route', 'add', allowed, 'dev', device, 'src', own, 'table', '100');
        await must('neigh', 'add', allowed, 'lladdr', '02:00:00:00:00:01', 'dev', device, 'nud', 'permanent');
        await must('rule', 'add', 'ipproto', 'udp', 'sport', String(TUNNELLED_SPORT), 'lookup', '100');
        // The flow really takes the tunnel (so the calibration's marker arrived through it, to the attacker).
        const route = await ip('route', 'get', allowed, 'ipproto', 'udp', 'sport', String(TUNNELLED_SPORT));
        assert.match(route.stdout, new RegExp(`dev ${device} `), route.stdout + route.stderr);
        const before = events.length;
        await contained(family, (marker) => inRogue({ mode: 'udp', dst: allowed, port: PORT, sport: TUNNELLED_SPORT, payload: marker }));
        // Judged where it really goes: the tunnel's far end, not the permitted destination inside it.
        const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.ip === lab.inet(ATTACKER, family));
        assert.deepEqual([event.verdict, event.hook, event.workloadId, event.port, event.protocol], ['denied', 6, rogueId, VXLAN_PORT, 17]);
      } finally {
        await ip('rule', 'del', 'ipproto', 'udp', 'sport', String(TUNNELLED_SPORT), 'lookup', '100');
        await ip('link', 'del', device);
      }
    });
  }

  test('item 6: an IPv6 routing header cannot make an attacker the first hop of a judged flow (UDP and steered DNS)', async () => {
    await contained(6, (marker) =>
      inRogue({ mode: 'udp', dst: lab.inet(ALLOWED, 6), port: PORT, segments: [lab.inet(ATTACKER, 6)], payload: marker }),
    );
    const event = await eventMatching(events, (e) => e.reason === 'source-routed' && e.ip === lab.inet(ATTACKER, 6));
    assert.deepEqual([event.verdict, event.hook, event.workloadId, event.source], ['denied', 5, rogueId, rogue.ipv6]);
    await contained(6, (marker) =>
      inRogue({ mode: 'udp', dst: LAB_ADDRESSES.resolver.ipv6, port: 53, segments: [lab.inet(ATTACKER, 6)], payload: marker }),
    );
  });

  test('item 6: at tc, a crafted frame to a permitted address with a type 0 routing header is dropped', async () => {
    const before = events.length;
    await contained(6, (marker) =>
      inRogue({
        mode: 'udp-frame',
        src: rogue.ipv6,
        dst: lab.inet(ALLOWED, 6),
        port: PORT,
        segments: [lab.inet(ATTACKER, 6)],
        payload: marker,
      }),
    );
    const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.reason === 'source-routed' && e.hook === 6);
    assert.deepEqual([event.verdict, event.workloadId, event.ip, event.source], ['denied', rogueId, lab.inet(ALLOWED, 6), rogue.ipv6]);
  });

  test('item 6: an IPv4 loose source route cannot either', async () => {
    // The node's default refuses to forward source-routed IPv4; a node that accepts it must still see nothing.
    await lab.runInNode([
      'sysctl',
      '-qw',
      'net.ipv4.conf.all.accept_source_route=1',
      `net.ipv4.conf.${rogue.nodeInterface}.accept_source_route=1`,
    ]);
    await contained(4, (marker) =>
      inRogue({ mode: 'udp', dst: lab.inet(ALLOWED, 4), port: PORT, looseRoute: [lab.inet(ATTACKER, 4)], payload: marker }),
    );
    const event = await eventMatching(events, (e) => e.reason === 'source-routed' && e.ip === lab.inet(ATTACKER, 4));
    assert.deepEqual([event.verdict, event.workloadId], ['denied', rogueId]);
  });

  for (const family of FAMILIES) {
    test(`item 12 (IPv${family}): a forged-source drop names the interface's workload, the forged source and the reason`, async () => {
      const forged = family === 4 ? other.ipv4 : other.ipv6;
      const before = events.length;
      await contained(family, (marker) =>
        inRogue({ mode: 'udp-frame', src: forged, dst: lab.inet(ALLOWED, family), port: PORT, payload: marker }),
      );
      const event = await eventMatching(events, (e) => events.indexOf(e) >= before && e.hook === 6 && e.source === forged);
      assert.deepEqual(
        [event.verdict, event.reason, event.workloadId, event.ip, event.tier, event.ruleId],
        ['denied', 'forged-source', rogueId, lab.inet(ALLOWED, family), 0, 0],
      );
    });
  }
});

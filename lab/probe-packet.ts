// Probe sub-commands that send below the socket layer. Node has no raw or packet sockets, so the bytes are built here
// (lab/packet.ts) and handed to a few lines of python3 that only open the socket and send (or, for ping, echo).
//   packet <dst-ip> <udp-port> [--src IP]      one UDP datagram as an Ethernet frame on an AF_PACKET socket
//   raw-udp <dst-ip> <udp-port> [--src IP]     the same datagram on a raw IP socket with a hand-written header
//   fragments <dst-ip> <udp-port> [--src IP] [--first-only | --rest-only]   the datagram as IP fragments (raw socket)
//   ping <ip> [--count N] [--ping-socket] [--timeout-ms N]   ICMP/ICMPv6 echo over a raw or an ICMP datagram socket
import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { buildUdpFragments, buildUdpPacket, type UdpPacketSpec } from './packet.js';
import { UsageError, errorCode, intFlag, ipArg, portArg, stringFlag, type ParsedArgs } from './probe-common.js';
import type { PingProbeResult, RawSendProbeResult } from './probe-result.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
// Fragmentable bytes per fragment: the 72-byte UDP datagram below becomes three fragments.
const FRAGMENT_BYTES = 32;
const PAYLOAD_BYTES = 64;

// Prints one JSON object: {"sent": n, "received": n?, "error": "ERRNO"?}. Arguments after the mode are hex packets.
const SENDER = String.raw`
import errno, json, os, select, socket, struct, sys, time
mode, out = sys.argv[1], {"sent": 0}
def csum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xffff:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
try:
    if mode == "packet":
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((sys.argv[2], 0))
        src_mac = s.getsockname()[4]
        for packet in map(bytes.fromhex, sys.argv[4:]):
            ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
            s.send(bytes.fromhex(sys.argv[3]) + src_mac + struct.pack("!H", ethertype) + packet)
            out["sent"] += 1
    elif mode == "raw":
        dst = sys.argv[2]
        s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for packet in map(bytes.fromhex, sys.argv[3:]):
            s.sendto(packet, (dst, 0))
            out["sent"] += 1
    elif mode == "ping":
        dst, count, timeout, dgram = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "ping-socket"
        v6 = ":" in dst
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM if dgram else socket.SOCK_RAW,
                          socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
        request, reply, ident = (128, 129, os.getpid() & 0xFFFF) if v6 else (8, 0, os.getpid() & 0xFFFF)
        out["received"] = 0
        for seq in range(count):
            body = struct.pack("!BBHHH", request, 0, 0, ident, seq) + b"egressguard-lab-ping"
            if not v6:
                body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
            s.sendto(body, (dst, 0))
            out["sent"] += 1
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0 and select.select([s], [], [], left)[0]:
                data = s.recv(4096)
                if not v6 and not dgram:
                    data = data[(data[0] & 15) * 4:]
                # Datagram sockets rewrite the identifier: match the sequence there, both elsewhere.
                if len(data) >= 8 and data[0] == reply and struct.unpack("!H", data[6:8])[0] == seq and (
                        dgram or struct.unpack("!H", data[4:6])[0] == ident):
                    out["received"] += 1
                    break
except OSError as error:
    out["error"] = errno.errorcode.get(error.errno, str(error))
print(json.dumps(out))
`;

interface SenderOutput {
  sent: number;
  received?: number;
  error?: string;
}

function runCommand(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args[0] === '-c' ? 'sender' : args.join(' ')} failed: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

async function runSender(args: string[], timeoutMs = 10_000): Promise<SenderOutput> {
  const stdout = await runCommand(PYTHON, ['-c', SENDER, ...args], timeoutMs);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '') as SenderOutput;
}

interface RouteToTarget {
  device: string;
  /** The address the kernel would pick as source. */
  source: string;
  /** Next hop: the gateway, or the target itself when it is on-link. */
  nextHop: string;
}

async function routeTo(target: string): Promise<RouteToTarget> {
  const [route] = JSON.parse(await runCommand('ip', ['-j', 'route', 'get', target], 5000)) as {
    dev?: string;
    prefsrc?: string;
    gateway?: string;
  }[];
  if (route?.dev === undefined || route.prefsrc === undefined)
    throw Object.assign(new Error(`no route to ${target}`), { code: 'ENETUNREACH' });
  return { device: route.dev, source: route.prefsrc, nextHop: route.gateway ?? target };
}

/** MAC of the next hop from the neighbour table (the lab pins the gateway's entry, so no resolution is needed). */
async function neighbourMac(device: string, address: string): Promise<string> {
  const entries = JSON.parse(await runCommand('ip', ['-j', 'neigh', 'show', 'dev', device, 'to', address], 5000)) as { lladdr?: string }[];
  const mac = entries.find((entry) => entry.lladdr !== undefined)?.lladdr;
  if (mac === undefined) throw Object.assign(new Error(`no neighbour entry for ${address} on ${device}`), { code: 'EHOSTUNREACH' });
  return mac;
}

export async function probeRawSend(kind: RawSendProbeResult['kind'], args: ParsedArgs): Promise<RawSendProbeResult> {
  const target = ipArg(args.positional[1], `${kind} target`);
  const port = portArg(args.positional[2]);
  const forged = stringFlag(args, '--src');
  if (forged !== undefined && isIP(forged) !== isIP(target))
    throw new UsageError(`--src ${forged} must be the same IP family as ${target}`);
  const firstOnly = args.flags.has('--first-only');
  const restOnly = args.flags.has('--rest-only');
  if (kind !== 'fragments' && (firstOnly || restOnly)) throw new UsageError('--first-only and --rest-only apply to fragments only');
  if (firstOnly && restOnly) throw new UsageError('--first-only and --rest-only exclude each other');
  const route = await routeTo(target);
  const spec: UdpPacketSpec = {
    source: forged ?? route.source,
    destination: target,
    sourcePort: randomInt(20_000, 60_000),
    destinationPort: port,
    payload: Buffer.from(`egressguard-lab-${randomBytes(PAYLOAD_BYTES).toString('hex')}`.slice(0, PAYLOAD_BYTES)),
  };
  const result: RawSendProbeResult = {
    kind,
    target,
    port,
    source: spec.source,
    sourcePort: spec.sourcePort,
    payloadBytes: spec.payload.length,
    sent: 0,
    ok: false,
  };
  let packets: Buffer[];
  if (kind === 'fragments') {
    const fragments = buildUdpFragments(spec, FRAGMENT_BYTES, randomInt(1, 0xffff));
    packets = firstOnly ? fragments.slice(0, 1) : restOnly ? fragments.slice(1) : fragments;
  } else packets = [buildUdpPacket(spec)];
  const hex = packets.map((packet) => packet.toString('hex'));
  try {
    const output =
      kind === 'packet'
        ? await runSender(['packet', route.device, (await neighbourMac(route.device, route.nextHop)).replaceAll(':', ''), ...hex])
        : await runSender(['raw', target, ...hex]);
    result.sent = output.sent;
    if (output.error !== undefined) result.error = output.error;
    result.ok = output.error === undefined && output.sent === packets.length;
  } catch (error) {
    result.error = errorCode(error);
  }
  return result;
}

export async function probePing(args: ParsedArgs): Promise<PingProbeResult> {
  const target = ipArg(args.positional[1], 'ping target');
  const count = intFlag(args, '--count', 1, 1, 100);
  const timeoutMs = intFlag(args, '--timeout-ms', 1000, 1, 60_000);
  const method = args.flags.has('--ping-socket') ? 'ping-socket' : 'raw';
  const result: PingProbeResult = { kind: 'ping', target, method, sent: 0, received: 0, ok: false };
  try {
    const output = await runSender(['ping', target, String(count), String(timeoutMs / 1000), method], count * timeoutMs + 10_000);
    result.sent = output.sent;
    result.received = output.received ?? 0;
    if (output.error !== undefined) result.error = output.error;
    result.ok = result.received === count;
  } catch (error) {
    result.error = errorCode(error);
  }
  return result;
}

// Probe CLI run inside lab pods: performs one network action and prints one JSON line (see probe-result.ts).
//   probe tcp <host-or-ip> <port> [--resolver IP] [--family 4|6] [--timeout-ms N]
//   probe udp <ip> <port> [--timeout-ms N]
//   probe dns <name> --server IP [--tcp] [--type A|AAAA|TXT] [--timeout-ms N]
//   probe loop-tcp <ip> <port> --count N --interval-ms M [--timeout-ms N]
//   probe tls | hello ...                      (lab/probe-tls.ts)
//   probe packet | raw-udp | fragments | ping  (lab/probe-packet.ts)
// Exit 0 when the probe ran (whatever its outcome), 2 on a usage error.
import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import {
  UsageError,
  chooseAddress,
  errorCode,
  familyFlag,
  intFlag,
  ipArg,
  parseArgs,
  portArg,
  stringFlag,
  readFirstLine,
  timeoutError,
  type ParsedArgs,
} from './probe-common.js';
import { probePing, probeRawSend } from './probe-packet.js';
import { probeHello, probeTls } from './probe-tls.js';
import type { DnsAnswer, DnsProbeResult, LoopTcpProbeResult, ProbeResult, TcpProbeResult, UdpProbeResult } from './probe-result.js';

async function probeTcp(args: ParsedArgs): Promise<TcpProbeResult> {
  const target = args.positional[1];
  if (target === undefined) throw new UsageError('tcp needs <host-or-ip> <port>');
  const port = portArg(args.positional[2]);
  const family = familyFlag(args);
  const resolverIp = stringFlag(args, '--resolver');
  if (resolverIp !== undefined) ipArg(resolverIp, '--resolver');
  const timeoutMs = intFlag(args, '--timeout-ms', 3000, 1, 120_000);
  const started = performance.now();
  const result: TcpProbeResult = { kind: 'tcp', target, port, resolved: [], address: null, ok: false, elapsedMs: 0 };
  try {
    const chosen = await chooseAddress(target, family, resolverIp);
    result.resolved = chosen.resolved;
    result.address = chosen.address;
    result.firstLine = await readFirstLine(connect({ host: result.address, port }), timeoutMs);
    result.ok = true;
  } catch (error) {
    result.error = errorCode(error);
  }
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

async function probeUdp(args: ParsedArgs): Promise<UdpProbeResult> {
  const target = ipArg(args.positional[1], 'udp target');
  const port = portArg(args.positional[2]);
  const timeoutMs = intFlag(args, '--timeout-ms', 1000, 1, 120_000);
  const payload = `probe-${randomBytes(6).toString('hex')}`;
  const started = performance.now();
  const result: UdpProbeResult = { kind: 'udp', target, port, ok: false, elapsedMs: 0 };
  const socket = createSocket(isIPv6(target) ? 'udp6' : 'udp4');
  try {
    result.reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(timeoutError()), timeoutMs);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.on('message', (message) => {
        clearTimeout(timer);
        resolve(message.toString('utf8'));
      });
      socket.send(payload, port, target, (error) => {
        if (error) {
          clearTimeout(timer);
          reject(error);
        }
      });
    });
    result.ok = result.reply === payload;
    if (!result.ok) result.error = 'EBADREPLY';
  } catch (error) {
    result.error = errorCode(error);
  } finally {
    socket.close();
  }
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

type QueryType = 'A' | 'AAAA' | 'TXT';

function describeAnswer(answer: dnsPacket.Answer): DnsAnswer {
  if (answer.type === 'OPT') return { name: answer.name, type: answer.type, ttl: 0, data: '' };
  let data: string;
  if (answer.type === 'TXT') {
    const chunks = Array.isArray(answer.data) ? answer.data : [answer.data];
    data = chunks.map((chunk) => (typeof chunk === 'string' ? chunk : chunk.toString('utf8'))).join('');
  } else data = typeof answer.data === 'string' ? answer.data : JSON.stringify(answer.data);
  return { name: answer.name, type: answer.type, ttl: answer.ttl ?? 0, data };
}

function dnsOverUdp(query: Buffer, server: string, timeoutMs: number): Promise<{ reply: Buffer; from: string }> {
  const socket = createSocket(isIPv6(server) ? 'udp6' : 'udp4');
  return new Promise<{ reply: Buffer; from: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(timeoutError()), timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('message', (reply, rinfo) => {
      clearTimeout(timer);
      resolve({ reply, from: rinfo.address });
    });
    socket.send(query, 53, server, (error) => {
      if (error) {
        clearTimeout(timer);
        reject(error);
      }
    });
  }).finally(() => socket.close());
}

function dnsOverTcp(query: Buffer, server: string, timeoutMs: number): Promise<{ reply: Buffer; from: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server, port: 53 });
    let buffered = Buffer.alloc(0);
    const finish = (error: Error | null, reply?: Buffer): void => {
      clearTimeout(timer);
      const from = socket.remoteAddress ?? server;
      socket.destroy();
      if (error) reject(error);
      else resolve({ reply: reply as Buffer, from });
    };
    const timer = setTimeout(() => finish(timeoutError()), timeoutMs);
    socket.once('error', finish);
    socket.once('connect', () => {
      const framed = Buffer.alloc(2 + query.length);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      socket.write(framed);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        finish(null, buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
      }
    });
    socket.once('end', () => finish(Object.assign(new Error('connection closed before a reply'), { code: 'ECONNRESET' })));
  });
}

async function probeDns(args: ParsedArgs): Promise<DnsProbeResult> {
  const name = args.positional[1];
  if (name === undefined) throw new UsageError('dns needs <name> --server IP');
  const server = ipArg(stringFlag(args, '--server'), '--server');
  const type = (stringFlag(args, '--type') ?? 'A').toUpperCase();
  if (type !== 'A' && type !== 'AAAA' && type !== 'TXT') throw new UsageError(`--type must be A, AAAA or TXT, got "${type}"`);
  const transport = args.flags.has('--tcp') ? 'tcp' : 'udp';
  const timeoutMs = intFlag(args, '--timeout-ms', 2000, 1, 120_000);
  const started = performance.now();
  const result: DnsProbeResult = { kind: 'dns', name, type, server, transport, ok: false, answers: [], elapsedMs: 0 };
  const query = dnsPacket.encode({
    type: 'query',
    id: randomInt(0, 65536),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as QueryType, name }],
  });
  try {
    const { reply, from } = await (transport === 'tcp' ? dnsOverTcp : dnsOverUdp)(query, server, timeoutMs);
    const decoded = dnsPacket.decode(reply);
    result.replyFrom = from;
    // dns-packet decodes the rcode but its typings omit it.
    result.rcode = (decoded as { rcode?: string }).rcode ?? 'NOERROR';
    result.answers = (decoded.answers ?? []).map(describeAnswer);
    result.ok = true;
  } catch (error) {
    result.error = errorCode(error);
  }
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

async function probeLoopTcp(args: ParsedArgs): Promise<LoopTcpProbeResult> {
  const target = ipArg(args.positional[1], 'loop-tcp target');
  const port = portArg(args.positional[2]);
  const count = intFlag(args, '--count', 0, 1, 1_000_000);
  if (count === 0) throw new UsageError('loop-tcp needs --count N');
  const intervalMs = intFlag(args, '--interval-ms', 0, 0, 60_000);
  const timeoutMs = intFlag(args, '--timeout-ms', 1000, 1, 120_000);
  const result: LoopTcpProbeResult = { kind: 'loop-tcp', target, port, attempts: 0, successes: 0, failures: {} };
  for (let i = 0; i < count; i++) {
    result.attempts++;
    try {
      await readFirstLine(connect({ host: target, port }), timeoutMs, { untilConnect: true });
      result.successes++;
    } catch (error) {
      const code = errorCode(error);
      result.failures[code] = (result.failures[code] ?? 0) + 1;
    }
    if (intervalMs > 0 && i + 1 < count) await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return result;
}

async function main(argv: string[]): Promise<ProbeResult> {
  const args = parseArgs(argv);
  switch (args.positional[0]) {
    case 'tcp':
      return probeTcp(args);
    case 'udp':
      return probeUdp(args);
    case 'dns':
      return probeDns(args);
    case 'loop-tcp':
      return probeLoopTcp(args);
    case 'tls':
      return probeTls(args);
    case 'hello':
      return probeHello(args);
    case 'packet':
    case 'raw-udp':
    case 'fragments':
      return probeRawSend(args.positional[0], args);
    case 'ping':
      return probePing(args);
    default:
      throw new UsageError(
        `unknown probe "${args.positional[0] ?? ''}": use tcp, udp, dns, loop-tcp, tls, hello, packet, raw-udp, fragments or ping`,
      );
  }
}

main(process.argv.slice(2)).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (error: unknown) => {
    process.stderr.write(`probe: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);

// Probe CLI run inside lab pods: performs one network action and prints one JSON line (see probe-result.ts).
//   probe tcp <host-or-ip> <port> [--resolver IP] [--family 4|6] [--timeout-ms N]
//   probe udp <ip> <port> [--timeout-ms N]
//   probe dns <name> --server IP [--tcp] [--type A|AAAA|TXT] [--timeout-ms N]
//   probe loop-tcp <ip> <port> --count N --interval-ms M [--timeout-ms N]
// Exit 0 when the probe ran (whatever its outcome), 2 on a usage error.
import { createSocket } from 'node:dgram';
import { Resolver, lookup } from 'node:dns/promises';
import { connect, isIP, isIPv6 } from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import type { DnsAnswer, DnsProbeResult, LoopTcpProbeResult, ProbeResult, TcpProbeResult, UdpProbeResult } from './probe-result.js';

class UsageError extends Error {}

interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

const VALUE_FLAGS = new Set(['--resolver', '--family', '--timeout-ms', '--server', '--type', '--count', '--interval-ms']);
const BOOLEAN_FLAGS = new Set(['--tcp']);

function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (VALUE_FLAGS.has(arg)) {
      const value = argv[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      flags.set(arg, value);
    } else if (BOOLEAN_FLAGS.has(arg)) flags.set(arg, true);
    else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  return { positional, flags };
}

function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const value = args.flags.get(name);
  return typeof value === 'string' ? value : undefined;
}

function intFlag(args: ParsedArgs, name: string, fallback: number, min: number, max: number): number {
  const raw = stringFlag(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UsageError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  return value;
}

function portArg(raw: string | undefined): number {
  const port = Number(raw);
  if (raw === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`port must be 1..65535, got "${raw}"`);
  return port;
}

function ipArg(raw: string | undefined, what: string): string {
  if (raw === undefined || isIP(raw) === 0) throw new UsageError(`${what} must be an IP address, got "${raw}"`);
  return raw;
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}

function timeoutError(): NodeJS.ErrnoException {
  return Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' });
}

/** Connect and read the first line (or just connect when readLine is false). Resolves the line, rejects with an errno error. */
function tcpExchange(address: string, port: number, timeoutMs: number, readLine: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    let received = '';
    const finish = (error: Error | null): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(received.split('\n')[0] ?? '');
    };
    const timer = setTimeout(() => finish(timeoutError()), timeoutMs);
    socket.once('error', finish);
    socket.once('connect', () => {
      if (!readLine) finish(null);
    });
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      received += chunk;
      if (received.includes('\n')) finish(null);
    });
    socket.once('end', () => finish(null));
  });
}

async function resolveTarget(target: string, family: 4 | 6 | undefined, resolverIp: string | undefined): Promise<string[]> {
  if (resolverIp !== undefined) {
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([isIPv6(resolverIp) ? `[${resolverIp}]:53` : resolverIp]);
    if (family === 6) return resolver.resolve6(target);
    if (family === 4) return resolver.resolve4(target);
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(target), resolver.resolve6(target)]);
    const found = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (found.length === 0 && v4.status === 'rejected') throw v4.reason;
    return found;
  }
  const results = await lookup(target, { all: true, family: family ?? 0 });
  return results.map((result) => result.address);
}

async function probeTcp(args: ParsedArgs): Promise<TcpProbeResult> {
  const target = args.positional[1];
  if (target === undefined) throw new UsageError('tcp needs <host-or-ip> <port>');
  const port = portArg(args.positional[2]);
  const familyFlag = stringFlag(args, '--family');
  if (familyFlag !== undefined && familyFlag !== '4' && familyFlag !== '6') throw new UsageError('--family must be 4 or 6');
  const family = familyFlag === undefined ? undefined : (Number(familyFlag) as 4 | 6);
  const resolverIp = stringFlag(args, '--resolver');
  if (resolverIp !== undefined) ipArg(resolverIp, '--resolver');
  const timeoutMs = intFlag(args, '--timeout-ms', 3000, 1, 120_000);
  const started = performance.now();
  const result: TcpProbeResult = { kind: 'tcp', target, port, resolved: [], address: null, ok: false, elapsedMs: 0 };
  try {
    if (isIP(target) !== 0) result.address = target;
    else {
      result.resolved = await resolveTarget(target, family, resolverIp);
      result.address = result.resolved.find((address) => family === undefined || isIP(address) === family) ?? null;
      if (result.address === null) throw Object.assign(new Error('no address of the requested family'), { code: 'ENODATA' });
    }
    result.firstLine = await tcpExchange(result.address, port, timeoutMs, true);
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
      await tcpExchange(target, port, timeoutMs, false);
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
    default:
      throw new UsageError(`unknown probe "${args.positional[0] ?? ''}": use tcp, udp, dns or loop-tcp`);
  }
}

main(process.argv.slice(2)).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (error: unknown) => {
    process.stderr.write(`probe: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);

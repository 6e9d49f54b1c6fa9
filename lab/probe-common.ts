// Helpers shared by the probe sub-commands (lab/probe.ts and its probe-*.ts modules): arguments, errors, targets.
import { Resolver, lookup } from 'node:dns/promises';
import { isIP, isIPv6, type Socket } from 'node:net';

/** A usage error: the probe exits 2 with this message instead of printing a result. */
export class UsageError extends Error {}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

const VALUE_FLAGS = new Set([
  '--resolver',
  '--family',
  '--timeout-ms',
  '--server',
  '--type',
  '--count',
  '--interval-ms',
  '--sni',
  '--ca',
  '--split',
  '--split-at',
  '--tls-version',
  '--pad',
  '--src',
]);
const BOOLEAN_FLAGS = new Set(['--tcp', '--no-sni', '--ech', '--grease', '--plain-http', '--ping-socket', '--first-only', '--rest-only']);

export function parseArgs(argv: string[]): ParsedArgs {
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

export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const value = args.flags.get(name);
  return typeof value === 'string' ? value : undefined;
}

export function intFlag(args: ParsedArgs, name: string, fallback: number, min: number, max: number): number {
  const raw = stringFlag(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UsageError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  return value;
}

/** --family 4|6, or undefined when absent. */
export function familyFlag(args: ParsedArgs): 4 | 6 | undefined {
  const raw = stringFlag(args, '--family');
  if (raw === undefined) return undefined;
  if (raw !== '4' && raw !== '6') throw new UsageError('--family must be 4 or 6');
  return Number(raw) as 4 | 6;
}

export function portArg(raw: string | undefined): number {
  const port = Number(raw);
  if (raw === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`port must be 1..65535, got "${raw}"`);
  return port;
}

export function ipArg(raw: string | undefined, what: string): string {
  if (raw === undefined || isIP(raw) === 0) throw new UsageError(`${what} must be an IP address, got "${raw}"`);
  return raw;
}

export function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}

export function timeoutError(): NodeJS.ErrnoException {
  return Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' });
}

/**
 * The first line the peer sends, or '' as soon as the socket connects when `untilConnect` is set. Rejects with an
 * errno-style error on a socket error or timeout, or with `endError()` when the stream ends before a line and that
 * returns one. The socket is destroyed either way.
 */
export function readFirstLine(
  socket: Socket,
  timeoutMs: number,
  options: { untilConnect?: boolean; endError?: () => Error | null } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const finish = (error: Error | null): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(received.split('\n')[0] ?? '');
    };
    const timer = setTimeout(() => finish(timeoutError()), timeoutMs);
    socket.once('error', finish);
    if (options.untilConnect) socket.once('connect', () => finish(null));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      received += chunk;
      if (received.includes('\n')) finish(null);
    });
    socket.once('end', () => finish(options.endError?.() ?? null));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

/** The address to connect to: the target itself when it is an IP, else the first resolved address of the family. */
export async function chooseAddress(
  target: string,
  family: 4 | 6 | undefined,
  resolverIp?: string,
): Promise<{ resolved: string[]; address: string }> {
  if (isIP(target) !== 0) return { resolved: [], address: target };
  const resolved = await resolveTarget(target, family, resolverIp);
  const address = resolved.find((candidate) => family === undefined || isIP(candidate) === family);
  if (address === undefined) throw Object.assign(new Error('no address of the requested family'), { code: 'ENODATA' });
  return { resolved, address };
}

// TLS probe sub-commands:
//   tls <host-or-ip> <port> [--sni NAME | --no-sni] [--ca PATH] [--family 4|6] [--timeout-ms N]
//     A real handshake with Node's TLS stack. Default SNI: the target when it is a name, none when it is an IP.
//   hello <ip> <port> [--sni NAME] [--split K | --split-at A,B,..] [--ech] [--grease] [--tls-version V] [--pad N]
//         [--plain-http] [--timeout-ms N]
//     A hand-built ClientHello (lab/clienthello.ts) written in separate TCP segments; reports what came back.
import { readFileSync } from 'node:fs';
import { connect as connectTcp, isIP } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { HANDSHAKE_SERVER_HELLO, TLS_CONTENT_ALERT, TLS_CONTENT_HANDSHAKE, buildClientHello, type TlsVersion } from './clienthello.js';
import {
  UsageError,
  chooseAddress,
  errorCode,
  familyFlag,
  intFlag,
  ipArg,
  portArg,
  sleep,
  stringFlag,
  readFirstLine,
  timeoutError,
  type ParsedArgs,
} from './probe-common.js';
import type { HelloProbeResult, TlsProbeResult } from './probe-result.js';

// Gap between the writes of a split payload: long enough that each write leaves as its own segment (TCP_NODELAY).
const SEGMENT_GAP_MS = 20;
const TLS_VERSIONS: readonly TlsVersion[] = ['1.0', '1.1', '1.2', '1.3'];

function serverNameFlag(args: ParsedArgs, defaultName: string | null): string | null {
  const sni = stringFlag(args, '--sni');
  if (sni !== undefined && args.flags.has('--no-sni')) throw new UsageError('--sni and --no-sni exclude each other');
  if (args.flags.has('--no-sni')) return null;
  if (sni === undefined) return defaultName;
  if (sni === '' || isIP(sni) !== 0) throw new UsageError(`--sni must be a host name, got "${sni}" (use --no-sni for none)`);
  return sni;
}

export async function probeTls(args: ParsedArgs): Promise<TlsProbeResult> {
  const target = args.positional[1];
  if (target === undefined) throw new UsageError('tls needs <host-or-ip> <port>');
  const port = portArg(args.positional[2]);
  const family = familyFlag(args);
  const servername = serverNameFlag(args, isIP(target) === 0 ? target : null);
  const caPath = stringFlag(args, '--ca');
  let ca: Buffer | undefined;
  try {
    ca = caPath === undefined ? undefined : readFileSync(caPath);
  } catch (error) {
    throw new UsageError(`--ca ${caPath}: ${errorCode(error)}`);
  }
  const timeoutMs = intFlag(args, '--timeout-ms', 3000, 1, 120_000);
  const started = performance.now();
  const result: TlsProbeResult = {
    kind: 'tls',
    target,
    port,
    resolved: [],
    address: null,
    servername,
    verified: ca !== undefined,
    handshake: false,
    ok: false,
    elapsedMs: 0,
  };
  try {
    const chosen = await chooseAddress(target, family);
    result.resolved = chosen.resolved;
    result.address = chosen.address;
    // servername '' makes Node send no server_name; the certificate is then checked against the address.
    const socket = connectTls({ host: chosen.address, port, servername: servername ?? '', ca, rejectUnauthorized: ca !== undefined });
    socket.once('connect', () => (result.sourcePort = socket.localPort));
    socket.once('secureConnect', () => {
      result.handshake = true;
      result.authorized = socket.authorized;
      if (!socket.authorized) result.authorizationError = String(socket.authorizationError);
    });
    result.firstLine = await readFirstLine(socket, timeoutMs, {
      endError: () => (result.handshake ? null : Object.assign(new Error('closed'), { code: 'ECONNRESET' })),
    });
    result.ok = result.handshake && result.firstLine !== '';
  } catch (error) {
    result.error = errorCode(error);
  }
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

/** Cut points of the payload: --split-at offsets, or K nearly equal parts. */
function splitOffsets(args: ParsedArgs, length: number): number[] {
  const explicit = stringFlag(args, '--split-at');
  if (explicit !== undefined) {
    if (args.flags.has('--split')) throw new UsageError('--split and --split-at exclude each other');
    const offsets = explicit.split(',').map(Number);
    const valid = offsets.every((o, i) => Number.isInteger(o) && o > 0 && o < length && (i === 0 || o > (offsets[i - 1] as number)));
    if (!valid) throw new UsageError(`--split-at needs increasing offsets inside the ${length}-byte payload, got "${explicit}"`);
    return offsets;
  }
  const parts = intFlag(args, '--split', 1, 1, 4);
  return Array.from({ length: parts - 1 }, (_, i) => Math.round(((i + 1) * length) / parts));
}

export async function probeHello(args: ParsedArgs): Promise<HelloProbeResult> {
  const target = ipArg(args.positional[1], 'hello target');
  const port = portArg(args.positional[2]);
  const sni = serverNameFlag(args, null);
  const plainHttp = args.flags.has('--plain-http');
  const versionFlag = stringFlag(args, '--tls-version') ?? '1.3';
  if (!TLS_VERSIONS.includes(versionFlag as TlsVersion)) throw new UsageError(`--tls-version must be one of ${TLS_VERSIONS.join(', ')}`);
  const paddingBytes = args.flags.has('--pad') ? intFlag(args, '--pad', 0, 0, 16_000) : undefined;
  const payload = plainHttp
    ? Buffer.from(`GET / HTTP/1.1\r\nHost: ${sni ?? (isIP(target) === 6 ? `[${target}]` : target)}\r\nConnection: close\r\n\r\n`)
    : buildClientHello({
        serverName: sni,
        tlsVersion: versionFlag as TlsVersion,
        grease: args.flags.has('--grease'),
        ech: args.flags.has('--ech'),
        paddingBytes,
      });
  const offsets = splitOffsets(args, payload.length);
  const segments = [0, ...offsets].map((start, i) => payload.subarray(start, offsets[i] ?? payload.length));
  const timeoutMs = intFlag(args, '--timeout-ms', 2000, 1, 120_000);
  const started = performance.now();
  const result: HelloProbeResult = {
    kind: 'hello',
    target,
    port,
    payload: plainHttp ? 'plain-http' : 'client-hello',
    sni,
    segments: segments.length,
    bytesSent: 0,
    connected: false,
    serverResponded: false,
    serverHello: false,
    alert: false,
    bytesReceived: 0,
    elapsedMs: 0,
  };
  let reply = Buffer.alloc(0);
  const socket = connectTcp({ host: target, port, noDelay: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(timeoutError()), timeoutMs);
      const finish = (error: Error | null): void => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      socket.once('error', finish);
      socket.once('end', () => finish(null));
      socket.on('data', (chunk: Buffer) => {
        reply = Buffer.concat([reply, chunk]);
        // A record header plus the handshake type is enough to classify the answer.
        if (reply.length >= 6) finish(null);
      });
      socket.once('connect', () => {
        result.connected = true;
        result.sourcePort = socket.localPort;
        void (async () => {
          for (const [i, segment] of segments.entries()) {
            if (i > 0) await sleep(SEGMENT_GAP_MS);
            if (socket.destroyed) return;
            socket.write(segment);
            result.bytesSent += segment.length;
          }
        })();
      });
    });
  } catch (error) {
    result.error = errorCode(error);
  } finally {
    socket.destroy();
  }
  result.bytesReceived = reply.length;
  result.serverResponded = reply.length > 0;
  result.serverHello = reply[0] === TLS_CONTENT_HANDSHAKE && reply[5] === HANDSHAKE_SERVER_HELLO;
  result.alert = reply[0] === TLS_CONTENT_ALERT;
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

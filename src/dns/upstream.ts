// Exchanges with the trusted resolvers. Each UDP query uses its own socket connected to the resolver, so the
// kernel drops datagrams from any other address or port and the source port is fresh per query; the id is
// random and the echoed question must match. Anything else that arrives is counted and ignored.

import { randomInt } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type dnsPacket from 'dns-packet';
import type { DnsTransport, ResolverAddress } from './types.js';
import { answersQuery, decodeOrNull, encodeUpstreamQuery, FrameReader, frame, type DnsQuery } from './wire.js';

export type UpstreamQuery = Omit<DnsQuery, 'id'>;

export interface UpstreamAnswer {
  /** The resolver's response as received (its id is ours, not the client's). */
  message: Buffer;
  packet: dnsPacket.DecodedPacket;
  upstream: ResolverAddress;
  transport: DnsTransport;
  latencyMs: number;
}

export interface ExchangeOptions {
  upstreams: readonly ResolverAddress[];
  /** Transport of the first attempt; UDP falls back to TCP when the answer is truncated. */
  transport: DnsTransport;
  /** Per resolver attempt. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called for every message from the resolver's address that does not answer the outstanding query. */
  onIgnoredResponse?: () => void;
}

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
}

/** Ask the resolvers in order until one answers; throws UpstreamError when none does. */
export async function exchange(query: UpstreamQuery, options: ExchangeOptions): Promise<UpstreamAnswer> {
  if (options.upstreams.length === 0) throw new UpstreamError('no upstream resolver is configured');
  const failures: string[] = [];
  for (const upstream of options.upstreams) {
    const started = performance.now();
    try {
      let reply = await attempt(query, upstream, options.transport, options);
      if (options.transport === 'udp' && reply.packet.flag_tc) reply = await attempt(query, upstream, 'tcp', options);
      return { ...reply, upstream, latencyMs: performance.now() - started };
    } catch (error) {
      if (options.signal?.aborted) throw new UpstreamError('query cancelled');
      failures.push(`${formatResolver(upstream)}: ${(error as Error).message}`);
    }
  }
  throw new UpstreamError(`no upstream answered (${failures.join('; ')})`);
}

export function formatResolver(resolver: ResolverAddress): string {
  return net.isIPv6(resolver.ip) ? `[${resolver.ip}]:${resolver.port}` : `${resolver.ip}:${resolver.port}`;
}

/** One spelling per address, so `::1` and `0:0::1` compare equal. */
function canonicalIp(address: string): string {
  if (!net.isIPv6(address)) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

type AttemptResult = Pick<UpstreamAnswer, 'message' | 'packet' | 'transport'>;

function attempt(
  query: UpstreamQuery,
  upstream: ResolverAddress,
  transport: DnsTransport,
  options: ExchangeOptions,
): Promise<AttemptResult> {
  const id = randomInt(0, 0x10000);
  const wire = encodeUpstreamQuery(query, id);
  const accept = (message: Buffer): dnsPacket.DecodedPacket | null => {
    const packet = decodeOrNull(message);
    if (packet !== null && answersQuery(packet, id, query.question)) return packet;
    options.onIgnoredResponse?.();
    return null;
  };
  return transport === 'udp' ? udpAttempt(wire, upstream, accept, options) : tcpAttempt(wire, upstream, accept, options);
}

type Acceptor = (message: Buffer) => dnsPacket.DecodedPacket | null;

/** Runs `body` with a settle-once promise, a timeout and abort handling; `cleanup` always runs. */
function withDeadline<T>(
  options: ExchangeOptions,
  body: (resolve: (value: T) => void, reject: (error: Error) => void) => () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let cleanup = (): void => {};
    const timer = setTimeout(() => finish(new UpstreamError(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    const onAbort = (): void => finish(new UpstreamError('query cancelled'));
    let settled = false;
    function finish(error: Error | null, value?: T): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      cleanup();
      if (error === null) resolve(value as T);
      else reject(error);
    }
    if (options.signal?.aborted) return finish(new UpstreamError('query cancelled'));
    options.signal?.addEventListener('abort', onAbort);
    cleanup = body(
      (value) => finish(null, value),
      (error) => finish(error),
    );
  });
}

function udpAttempt(wire: Buffer, upstream: ResolverAddress, accept: Acceptor, options: ExchangeOptions): Promise<AttemptResult> {
  return withDeadline(options, (resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(upstream.ip) ? 'udp6' : 'udp4');
    socket.on('error', (error) => reject(error));
    socket.on('message', (message, remote) => {
      // A connected socket only receives from its peer; checked again so that never silently changes.
      if (canonicalIp(remote.address) !== canonicalIp(upstream.ip) || remote.port !== upstream.port) {
        return options.onIgnoredResponse?.();
      }
      const packet = accept(message);
      if (packet !== null) resolve({ message, packet, transport: 'udp' });
    });
    socket.connect(upstream.port, upstream.ip, () => socket.send(wire));
    return () => {
      try {
        socket.close();
      } catch {
        // Already closed after an error: nothing left to release.
      }
    };
  });
}

function tcpAttempt(wire: Buffer, upstream: ResolverAddress, accept: Acceptor, options: ExchangeOptions): Promise<AttemptResult> {
  return withDeadline(options, (resolve, reject) => {
    const reader = new FrameReader();
    const socket = net.connect({ host: upstream.ip, port: upstream.port }, () => socket.write(frame(wire)));
    socket.on('error', (error) => reject(error));
    socket.on('close', () => reject(new UpstreamError('connection closed before an answer')));
    socket.on('data', (chunk) => {
      for (const message of reader.push(chunk)) {
        const packet = accept(message);
        if (packet !== null) return resolve({ message, packet, transport: 'tcp' });
      }
    });
    return () => socket.destroy();
  });
}

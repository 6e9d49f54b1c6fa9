// Exchanges with the trusted resolvers. UDP queries go through a small pool of sockets per resolver, each connected
// to it (the kernel drops datagrams from any other address or port) and bound to a port the kernel picks at random;
// a socket is retired after a bounded number of queries, so source ports keep changing while a busy proxy does not
// pay for a socket per query. Every query carries a random id unused on its socket, and only a message echoing that id
// and the question answers it; anything else that arrives is counted and ignored (the query keeps waiting).

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
  /** The UDP sockets to ask through. */
  sockets: UpstreamSockets;
  /** Transport of the first attempt; UDP falls back to TCP when the answer is truncated. */
  transport: DnsTransport;
  /** Per resolver attempt. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called for every TCP message from the resolver that does not answer the query (UDP: see UpstreamSockets). */
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
  if (transport === 'udp') return options.sockets.ask(upstream, query, options);
  const id = randomInt(0, 0x10000);
  const wire = encodeUpstreamQuery(query, id);
  const accept = (message: Buffer): dnsPacket.DecodedPacket | null => {
    const packet = decodeOrNull(message);
    if (packet !== null && answersQuery(packet, id, query.question)) return packet;
    options.onIgnoredResponse?.();
    return null;
  };
  return tcpAttempt(wire, upstream, accept, options);
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

export interface UpstreamSocketOptions {
  /** Sockets per resolver a query picks from at random. Default 8. */
  socketsPerResolver?: number;
  /** Queries one socket (one source port) carries before it is retired. Default 500. */
  queriesPerSocket?: number;
}

interface Outstanding {
  question: UpstreamQuery['question'];
  deliver: (result: AttemptResult) => void;
  fail: (error: Error) => void;
}

/** One connected UDP socket and the queries waiting for its answers, by id. */
class PooledSocket {
  readonly outstanding = new Map<number, Outstanding>();
  readonly ready: Promise<void>;
  queries = 0;
  retired = false;
  private readonly socket: dgram.Socket;

  constructor(
    private readonly upstream: ResolverAddress,
    private readonly onIgnoredResponse: (() => void) | undefined,
  ) {
    this.socket = dgram.createSocket(net.isIPv6(upstream.ip) ? 'udp6' : 'udp4');
    this.socket.on('message', (message, remote) => this.onMessage(message, remote));
    // ICMP unreachable or a local failure: every query on this socket fails now (the next resolver is tried).
    this.socket.on('error', (error) => this.fail(error));
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.connect(upstream.port, upstream.ip, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    this.ready.catch(() => undefined);
  }

  /** A random id no outstanding query on this socket uses. */
  freeId(): number {
    for (;;) {
      const id = randomInt(0, 0x10000);
      if (!this.outstanding.has(id)) return id;
    }
  }

  send(wire: Buffer): void {
    this.socket.send(wire);
  }

  /** Close once the last outstanding query is settled. */
  closeIfIdle(): void {
    if (this.retired && this.outstanding.size === 0) {
      try {
        this.socket.close();
      } catch {
        // Already closed after an error.
      }
    }
  }

  private onMessage(message: Buffer, remote: dgram.RemoteInfo): void {
    const waiting = message.length >= 2 ? this.outstanding.get(message.readUInt16BE(0)) : undefined;
    // A connected socket only receives from its peer; checked again so that never silently changes.
    const fromPeer = canonicalIp(remote.address) === canonicalIp(this.upstream.ip) && remote.port === this.upstream.port;
    if (waiting === undefined || !fromPeer) return this.onIgnoredResponse?.();
    const packet = decodeOrNull(message);
    if (packet === null || !answersQuery(packet, message.readUInt16BE(0), waiting.question)) return this.onIgnoredResponse?.();
    waiting.deliver({ message, packet, transport: 'udp' });
  }

  private fail(error: Error): void {
    this.retired = true;
    for (const waiting of [...this.outstanding.values()]) waiting.fail(error);
  }
}

/** The UDP side of upstream exchanges: a few sockets per resolver, reused across queries and renewed as they age. */
export class UpstreamSockets {
  private readonly pools = new Map<string, PooledSocket[]>();
  private readonly socketsPerResolver: number;
  private readonly queriesPerSocket: number;
  private closed = false;

  constructor(
    options: UpstreamSocketOptions = {},
    /** Called for every datagram that answers no outstanding query (late, stray or spoofed): it is dropped. */
    private readonly onIgnoredResponse?: () => void,
  ) {
    this.socketsPerResolver = options.socketsPerResolver ?? 8;
    this.queriesPerSocket = options.queriesPerSocket ?? 500;
  }

  ask(upstream: ResolverAddress, query: UpstreamQuery, options: ExchangeOptions): Promise<AttemptResult> {
    if (this.closed) return Promise.reject(new UpstreamError('upstream sockets are closed'));
    const socket = this.pick(upstream);
    const id = socket.freeId();
    const wire = encodeUpstreamQuery(query, id);
    return withDeadline(options, (resolve, reject) => {
      socket.outstanding.set(id, { question: query.question, deliver: resolve, fail: reject });
      socket.ready.then(
        () => socket.send(wire),
        (error: Error) => reject(error),
      );
      return () => {
        socket.outstanding.delete(id);
        socket.closeIfIdle();
      };
    });
  }

  close(): void {
    this.closed = true;
    for (const sockets of this.pools.values()) {
      // Slots are filled on first use: a pool may have holes.
      for (const socket of sockets.filter((entry) => entry !== undefined)) {
        socket.retired = true;
        socket.closeIfIdle();
      }
    }
    this.pools.clear();
  }

  /** A random socket of the resolver's pool; one that carried its share of queries is replaced by a fresh one. */
  private pick(upstream: ResolverAddress): PooledSocket {
    const key = formatResolver(upstream);
    let sockets = this.pools.get(key);
    if (sockets === undefined) {
      sockets = [];
      this.pools.set(key, sockets);
    }
    const slot = randomInt(0, this.socketsPerResolver);
    let socket = sockets[slot];
    if (socket === undefined || socket.retired || socket.queries >= this.queriesPerSocket) {
      if (socket !== undefined) {
        socket.retired = true;
        socket.closeIfIdle();
      }
      socket = new PooledSocket(upstream, this.onIgnoredResponse);
      sockets[slot] = socket;
    }
    socket.queries += 1;
    return socket;
  }
}

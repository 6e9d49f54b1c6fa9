// The DNS proxy enrolled workloads' port-53 traffic is steered to. It answers only names the workload's
// policy permits: denied names are answered locally and never reach the upstream (a burst of unique
// subdomains cannot tunnel data through the resolver). Permitted queries go to the trusted resolvers,
// and the answer's addresses are installed in the datapath before the client sees the answer, so the
// client's first connect after the lookup always finds them. Positive answers are cached and shared across
// workloads (AnswerCache); a cached answer is learned for the asking workload before it is released, like a fresh one.

import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { once, setMaxListeners } from 'node:events';
import type { Tier } from '../model/decision.js';
import { unmapIpv4 } from '../model/ip.js';
import type { InheritedSocket } from './activation.js';
import { AnswerCache } from './answer-cache.js';
import { extractAddresses, type ExtractedAddresses } from './answers.js';
import { learnedTtlSeconds, type LearnedLifetimeBounds } from './lifetime.js';
import { quotaBuffer, quotaOwner, SharedQuota } from './shared-quota.js';
import type {
  AnswerLearnSink,
  DeniedRcode,
  DnsDecision,
  DnsDecisionEvent,
  DnsEventListener,
  DnsPolicyOracle,
  DnsProxyStats,
  DnsTransport,
  DnsWorkload,
  LearnOutcome,
  ResolverAddress,
} from './types.js';
import { exchange, formatResolver, UpstreamError, UpstreamSockets } from './upstream.js';
import {
  ageTtls,
  capAnswerTtlsInPlace,
  clientUdpLimit,
  encodeErrorResponse,
  encodeTruncatedResponse,
  frame,
  FrameReader,
  parseQuery,
  rcodeOf,
  type DnsQuery,
  type RcodeName,
} from './wire.js';

export interface DnsProxyOptions {
  /** Addresses to listen on (IPv4 and/or IPv6); UDP and TCP on each. */
  listen: string[];
  /** One port for every address; 0 picks a free port (the first address's) for all. */
  port: number;
  /** Trusted resolvers, asked in order. Answers are learned from these only. */
  upstreams: ResolverAddress[];
  oracle: DnsPolicyOracle;
  sink: AnswerLearnSink;
  onEvent?: DnsEventListener;
  /** Response code for denied names. NXDOMAIN lets musl continue its search list; REFUSED stops it. */
  deniedRcode: DeniedRcode;
  /** How long learned addresses are trusted; answers that teach addresses are released with TTLs no longer. */
  lifetime: LearnedLifetimeBounds;
  /** Per resolver attempt. Default 2000. */
  upstreamTimeoutMs?: number;
  /** learn() must finish within this, or the client gets SERVFAIL. Default 2000. */
  learnTimeoutMs?: number;
  /** Idle TCP connections are closed after this. Default 10000. */
  tcpIdleTimeoutMs?: number;
  /** Concurrent TCP connections over every listen address; more are closed at accept (config dns.maxTcpConnections). */
  maxTcpConnections: number;
  /**
   * Concurrent TCP connections of one workload (unknown sources: of one address), at most maxTcpConnections; more
   * are closed at accept, so one workload cannot take the node's slots from the others (config
   * dns.maxTcpConnectionsPerWorkload).
   */
  maxTcpConnectionsPerWorkload: number;
  /** Queries being served at once over all transports; more are dropped (clients retry) (config dns.maxInflightQueries). */
  maxInflightQueries: number;
  /**
   * Queries of one workload (unknown sources: of one address) being served at once, at most maxInflightQueries; more
   * are dropped, so names that resolve slowly cannot hold every slot (config dns.maxInflightQueriesPerWorkload).
   */
  maxInflightQueriesPerWorkload: number;
  /** Positive answers kept for all workloads (0: no cache). Default 10000. */
  answerCacheEntries?: number;
  /** Sockets a holder passed in (see activation.ts), used instead of binding for the listen addresses they are bound to. */
  inherited?: InheritedSocket[];
  /** The in-flight and TCP quotas every worker of one host draws on (SharedQuota), and this proxy's worker index. Absent: its own. */
  quotas?: ProxyQuotas;
}

export interface ProxyQuotas {
  inflight: SharedArrayBuffer;
  tcp: SharedArrayBuffer;
  worker: number;
}

/** Quotas for `workers` proxies; worker i passes { ...quotas, worker: i }. */
export function proxyQuotas(workers: number): Omit<ProxyQuotas, 'worker'> {
  return { inflight: quotaBuffer(workers), tcp: quotaBuffer(workers) };
}

export interface ListeningAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

interface Client {
  ip: string;
  port: number;
  transport: DnsTransport;
}

/** An answer to release: fresh from a resolver or from the cache, with what it teaches. */
interface Resolved {
  message: Buffer;
  /** `message` is this query's own copy (an aged cache hit), patched in place for release; else the cache's too. */
  owned: boolean;
  extracted: ExtractedAddresses;
  upstream: ResolverAddress;
  /** null when answered from the cache. */
  latencyMs: number | null;
}

/** What learning an answer's addresses came to: `ttlSeconds` null when nothing was learned. */
interface Learning {
  failed: boolean;
  ttlSeconds: number | null;
  reason: string | null;
}
const NOTHING_LEARNED: Learning = Object.freeze({ failed: false, ttlSeconds: null, reason: null });

/** What the proxy decided, before it became a response and an event. */
interface Outcome {
  response: Buffer | null;
  event: Omit<DnsDecisionEvent, 'time' | 'sourceIp' | 'sourcePort' | 'transport'> | null;
}

const MAX_QUERIES_PER_TCP_CONNECTION = 64;

export class DnsProxy {
  private readonly options: Required<Omit<DnsProxyOptions, 'onEvent' | 'inherited' | 'quotas'>> &
    Pick<DnsProxyOptions, 'onEvent' | 'inherited'>;
  private readonly inflight: SharedQuota;
  private readonly tcpQuota: SharedQuota;
  private readonly cache: AnswerCache;
  /** Each resolver's name in events, formatted once. */
  private readonly resolverNames: Map<ResolverAddress, string>;
  private readonly upstreamSockets: UpstreamSockets;
  private readonly counters = zeroStats();
  private readonly udpSockets: dgram.Socket[] = [];
  private readonly tcpServers: net.Server[] = [];
  private readonly tcpConnections = new Set<net.Socket>();
  private readonly cancel = new AbortController();
  private listening: ListeningAddress[] = [];

  constructor(options: DnsProxyOptions) {
    if (options.listen.length === 0) throw new Error('DNS proxy: listen is empty; give at least one IPv4 or IPv6 address');
    for (const address of options.listen) {
      if (net.isIP(address) === 0) throw new Error(`DNS proxy: listen address "${address}" is not an IP address`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new Error(`DNS proxy: port ${options.port} is out of range 0-65535`);
    }
    if (options.upstreams.length === 0) throw new Error('DNS proxy: no upstream resolver is configured');
    checkShare('maxTcpConnections', options.maxTcpConnections, 'maxTcpConnectionsPerWorkload', options.maxTcpConnectionsPerWorkload);
    checkShare('maxInflightQueries', options.maxInflightQueries, 'maxInflightQueriesPerWorkload', options.maxInflightQueriesPerWorkload);
    this.options = {
      upstreamTimeoutMs: 2000,
      learnTimeoutMs: 2000,
      tcpIdleTimeoutMs: 10_000,
      answerCacheEntries: 10_000,
      ...options,
    };
    const quotas = options.quotas ?? { ...proxyQuotas(1), worker: 0 };
    this.inflight = new SharedQuota(quotas.inflight, quotas.worker, options.maxInflightQueries, options.maxInflightQueriesPerWorkload);
    this.tcpQuota = new SharedQuota(quotas.tcp, quotas.worker, options.maxTcpConnections, options.maxTcpConnectionsPerWorkload);
    this.resolverNames = new Map(options.upstreams.map((resolver) => [resolver, formatResolver(resolver)]));
    this.cache = new AnswerCache(this.options.answerCacheEntries, this.options.lifetime.maxTtlSeconds);
    this.upstreamSockets = new UpstreamSockets({}, () => (this.counters.upstreamResponsesIgnored += 1));
    // Every query in flight listens for the proxy's cancellation.
    setMaxListeners(this.options.maxInflightQueries + 16, this.cancel.signal);
  }

  async start(): Promise<void> {
    const inherited = await adoptInherited(this.options.inherited ?? []);
    let port = this.options.port;
    for (const address of this.options.listen) {
      const family = net.isIPv6(address) ? 6 : 4;
      const heldUdp = takeInherited(inherited.udp, address, port);
      const udp = heldUdp ?? dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
      udp.on('message', (message, remote) => this.onDatagram(udp, message, remote));
      // Socket errors after bind (e.g. ICMP unreachable for a client) must not take the proxy down.
      udp.on('error', () => {});
      this.udpSockets.push(udp);
      if (heldUdp === null) await bindUdp(udp, address, port);
      port = udp.address().port;
      const heldTcp = takeInherited(inherited.tcp, address, port);
      const server = heldTcp ?? net.createServer();
      server.on('connection', (socket) => this.onConnection(socket));
      this.tcpServers.push(server);
      if (heldTcp === null) {
        server.listen({ host: address, port, ipv6Only: family === 6 });
        await once(server, 'listening');
      }
      this.listening.push({ address, port, family });
    }
    const unused = [...inherited.udp, ...inherited.tcp].map(describeListener);
    if (unused.length > 0) {
      await this.stop();
      throw new Error(`DNS proxy: inherited socket(s) ${unused.join(', ')} match no dns.listen address and port`);
    }
  }

  async stop(): Promise<void> {
    this.cancel.abort();
    this.upstreamSockets.close();
    for (const socket of this.tcpConnections) socket.destroy();
    await Promise.all([
      ...this.udpSockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
      ...this.tcpServers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    ]);
    this.udpSockets.length = 0;
    this.tcpServers.length = 0;
    this.listening = [];
  }

  addresses(): ListeningAddress[] {
    return this.listening.map((entry) => ({ ...entry }));
  }

  stats(): DnsProxyStats {
    return { ...this.counters, tcpConnectionsOpen: this.tcpConnections.size };
  }

  private onDatagram(socket: dgram.Socket, message: Buffer, remote: dgram.RemoteInfo): void {
    const client: Client = { ip: unmapIpv4(remote.address), port: remote.port, transport: 'udp' };
    void this.serve(message, client).then((response) => {
      if (response !== null && !this.cancel.signal.aborted) socket.send(response, remote.port, remote.address);
    });
  }

  private onConnection(socket: net.Socket): void {
    const client: Client = { ip: unmapIpv4(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0, transport: 'tcp' };
    const owner = quotaOwner(this.options.oracle.workloadFor(client.ip)?.workloadId ?? null, client.ip);
    // Counted here, not with each server's maxConnections: the cap is the node's, over both families' listeners and every worker.
    const taken = this.tcpQuota.take(owner);
    if (taken !== 'taken') {
      if (taken === 'node-full') this.counters.tcpConnectionsRejected += 1;
      else this.counters.tcpConnectionsRejectedPerWorkload += 1;
      socket.destroy();
      return;
    }
    this.tcpConnections.add(socket);
    const reader = new FrameReader();
    let pending = 0;
    socket.setTimeout(this.options.tcpIdleTimeoutMs, () => {
      if (pending === 0) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.tcpConnections.delete(socket);
      this.tcpQuota.give(owner);
    });
    socket.on('data', (chunk) => {
      for (const message of reader.push(chunk)) {
        pending += 1;
        // Back-pressure: a client pipelining many queries waits for answers before we read more.
        if (pending >= MAX_QUERIES_PER_TCP_CONNECTION) socket.pause();
        void this.serve(message, client).then((response) => {
          pending -= 1;
          if (response !== null && !socket.destroyed) socket.write(frame(response));
          if (pending < MAX_QUERIES_PER_TCP_CONNECTION && socket.isPaused()) socket.resume();
        });
      }
    });
  }

  /** Serve one query; resolves to the response to send (null: send nothing). Never rejects. */
  private async serve(message: Buffer, client: Client): Promise<Buffer | null> {
    const receivedAt = isoNow();
    const workload = this.options.oracle.workloadFor(client.ip);
    const owner = quotaOwner(workload?.workloadId ?? null, client.ip);
    const taken = this.inflight.take(owner);
    if (taken !== 'taken') {
      if (taken === 'node-full') this.counters.droppedOverload += 1;
      else this.counters.droppedOverloadPerWorkload += 1;
      return null;
    }
    this.counters.queries += 1;
    try {
      const outcome = await this.decideAndAnswer(message, client, workload).catch((error: unknown): Outcome => {
        // A bug in the proxy drops the query (the client retries) instead of crashing the agent.
        process.emitWarning(`DNS proxy: query failed unexpectedly: ${(error as Error)?.stack ?? String(error)}`);
        return { response: null, event: null };
      });
      if (outcome.event !== null) {
        this.emit(decisionEvent(receivedAt, client, outcome.event));
      }
      return outcome.response;
    } finally {
      this.inflight.give(owner);
    }
  }

  private async decideAndAnswer(message: Buffer, client: Client, workload: DnsWorkload | null): Promise<Outcome> {
    const parsed = parseQuery(message);
    if (parsed.kind === 'drop') {
      this.counters.malformed += 1;
      return { response: null, event: null };
    }
    if (parsed.kind === 'reject') {
      this.counters.malformed += 1;
      return {
        response: encodeErrorResponse(parsed.header, parsed.question, parsed.rcode),
        event: {
          ...preDecisionEvent(workload, 'malformed-query', parsed.rcode, parsed.reason),
          query: parsed.question?.normalizedName ?? '',
          qtype: parsed.question?.type ?? '',
        },
      };
    }
    const query = parsed.query;
    const named = { query: query.question.normalizedName, qtype: query.question.type };
    if (workload === null) {
      this.counters.unknownSource += 1;
      // A pod of this node the restarted agent has not listed yet: a refusal would fail its lookup, silence retries it.
      if (this.options.oracle.workloadsKnown?.() === false) return { response: null, event: null };
      return {
        response: errorFor(query, 'REFUSED'),
        event: { ...preDecisionEvent(null, 'unknown-source', 'REFUSED', `no workload owns source address ${client.ip}`), ...named },
      };
    }
    let decision: DnsDecision;
    try {
      decision = this.options.oracle.decide(workload, query.question.normalizedName);
    } catch (error) {
      return {
        response: errorFor(query, 'SERVFAIL'),
        event: {
          ...preDecisionEvent(workload, 'policy-error', 'SERVFAIL', `policy evaluation failed: ${(error as Error).message}`),
          ...named,
        },
      };
    }
    const decided = {
      query: named.query,
      qtype: named.qtype,
      workloadKey: workload.key,
      workloadId: workload.workloadId,
      verdict: decision.verdict,
      tier: decision.tier,
      ruleName: decision.ruleName,
      policy: decision.policy,
    };
    if (decision.verdict !== 'permitted') {
      this.counters.denied += 1;
      const rcode = this.options.deniedRcode;
      return { response: errorFor(query, rcode), event: { ...decided, ...notForwarded(rcode, null) } };
    }
    this.counters.permitted += 1;
    let answer: Resolved;
    try {
      // A cached answer comes back synchronously: no promise or microtask for it.
      const resolving = this.resolve(query, client.transport);
      answer = resolving instanceof Promise ? await resolving : resolving;
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      this.counters.upstreamErrors += 1;
      return { response: errorFor(query, 'SERVFAIL'), event: { ...decided, ...notForwarded('SERVFAIL', error.message) } };
    }
    const upstreamFields = {
      upstream: this.resolverNames.get(answer.upstream) ?? formatResolver(answer.upstream),
      upstreamLatencyMs: answer.latencyMs === null ? null : Math.round(answer.latencyMs * 1000) / 1000,
    };
    const rcode = rcodeOf(answer.message);
    const { addresses, ttlSeconds } = answer.extracted;
    const learningOrPending = this.learn(workload, query, decision.learnFor, addresses, ttlSeconds);
    const learning = learningOrPending instanceof Promise ? await learningOrPending : learningOrPending;
    if (learning.failed) {
      return {
        response: errorFor(query, 'SERVFAIL'),
        event: { ...decided, ...upstreamFields, rcode: 'SERVFAIL', answers: addresses, learnedTtlSeconds: null, reason: learning.reason },
      };
    }
    // One copy per answer, patched in place: the workload must not cache an address longer than the kernel keeps it.
    let response = answer.owned ? answer.message : Buffer.from(answer.message);
    if (learning.ttlSeconds !== null && !capAnswerTtlsInPlace(response, learning.ttlSeconds)) {
      return {
        response: errorFor(query, 'SERVFAIL'),
        event: {
          ...decided,
          ...upstreamFields,
          rcode: 'SERVFAIL',
          answers: addresses,
          learnedTtlSeconds: null,
          reason: 'cannot cap the answer TTLs',
        },
      };
    }
    response.writeUInt16BE(query.id, 0);
    if (client.transport === 'udp' && response.length > clientUdpLimit(query)) response = encodeTruncatedResponse(query);
    return {
      response,
      // Spelled out, not spread: one object shape for every answered query keeps V8 on its fast path.
      event: {
        query: decided.query,
        qtype: decided.qtype,
        workloadKey: decided.workloadKey,
        workloadId: decided.workloadId,
        verdict: decided.verdict,
        tier: decided.tier,
        ruleName: decided.ruleName,
        policy: decided.policy,
        upstream: upstreamFields.upstream,
        upstreamLatencyMs: upstreamFields.upstreamLatencyMs,
        rcode,
        answers: addresses,
        learnedTtlSeconds: learning.ttlSeconds,
        reason: learning.reason,
      },
    };
  }

  /** The cached answer when there is one (synchronously), else the resolvers' (cached when it may be). */
  private resolve(query: DnsQuery, transport: DnsTransport): Resolved | Promise<Resolved> {
    const hit = this.cache.get(query, Date.now());
    const aged = hit === null ? null : ageTtls(hit.answer.message, hit.ageSeconds);
    if (hit !== null && aged !== null) {
      const { addresses, ttlSeconds } = hit.answer.extracted;
      const remaining = ttlSeconds === null ? null : Math.max(0, ttlSeconds - hit.ageSeconds);
      return {
        message: aged,
        owned: true,
        extracted: { addresses, ttlSeconds: remaining },
        upstream: hit.answer.upstream,
        latencyMs: null,
      };
    }
    return this.forward(query, transport);
  }

  private async forward(query: DnsQuery, transport: DnsTransport): Promise<Resolved> {
    const answer = await exchange(query, {
      upstreams: this.options.upstreams,
      sockets: this.upstreamSockets,
      transport,
      timeoutMs: this.options.upstreamTimeoutMs,
      signal: this.cancel.signal,
      onIgnoredResponse: () => (this.counters.upstreamResponsesIgnored += 1),
    });
    const extracted =
      rcodeOf(answer.message) === 'NOERROR' ? extractAddresses(answer.packet, query.question.name) : { addresses: [], ttlSeconds: null };
    if (answer.transport === 'udp') this.cache.put(query, { ...answer, extracted }, Date.now());
    return { message: answer.message, owned: false, extracted, upstream: answer.upstream, latencyMs: answer.latencyMs };
  }

  /**
   * Install the answer's addresses for the decision's rules (the sink applies the per-name cap), within the learn
   * timeout. A synchronous sink's outcome (the worker's, when the kernel already holds the addresses) comes back
   * synchronously; only a pending one races the timeout (a timer per query costs).
   */
  private learn(
    workload: DnsWorkload,
    query: DnsQuery,
    ruleIds: number[],
    addresses: string[],
    answerTtlSeconds: number | null,
  ): Learning | Promise<Learning> {
    if (ruleIds.length === 0 || addresses.length === 0 || answerTtlSeconds === null) return NOTHING_LEARNED;
    const ttlSeconds = learnedTtlSeconds(answerTtlSeconds, this.options.lifetime);
    const name = query.question.normalizedName;
    let outcome: LearnOutcome | Promise<LearnOutcome>;
    try {
      outcome = this.options.sink.learn(workload.workloadId, ruleIds, addresses, ttlSeconds, name);
    } catch (error) {
      return this.learnFailed(error);
    }
    if (!(outcome instanceof Promise)) return this.learned(name, addresses, ttlSeconds, outcome.overCap);
    const { learnTimeoutMs } = this.options;
    return withTimeout(outcome, learnTimeoutMs, `learning addresses took longer than ${learnTimeoutMs} ms`).then(
      (done) => this.learned(name, addresses, ttlSeconds, done.overCap),
      (error: unknown) => this.learnFailed(error),
    );
  }

  private learned(name: string, addresses: string[], ttlSeconds: number, overCap: string[]): Learning {
    this.counters.addressesOverCap += overCap.length;
    this.counters.learnedAddresses += addresses.length - overCap.length;
    const capReason =
      overCap.length === 0
        ? null
        : `${overCap.length} address(es) not learned: ${name} already has dns.maxIpsPerName live addresses for this workload (${overCap.join(', ')})`;
    return { failed: false, ttlSeconds: overCap.length === addresses.length ? null : ttlSeconds, reason: capReason };
  }

  private learnFailed(error: unknown): Learning {
    this.counters.learnFailures += 1;
    return { failed: true, ttlSeconds: null, reason: `could not install learned addresses: ${(error as Error).message}` };
  }

  private emit(event: DnsDecisionEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // A failing listener must not turn an answered query into a dropped one.
    }
  }
}

/** Counters of a proxy that has served nothing. */
export function zeroStats(): DnsProxyStats {
  return {
    queries: 0,
    permitted: 0,
    denied: 0,
    unknownSource: 0,
    malformed: 0,
    upstreamErrors: 0,
    upstreamResponsesIgnored: 0,
    learnFailures: 0,
    learnedAddresses: 0,
    addressesOverCap: 0,
    droppedOverload: 0,
    droppedOverloadPerWorkload: 0,
    tcpConnectionsRejected: 0,
    tcpConnectionsRejectedPerWorkload: 0,
    tcpConnectionsOpen: 0,
  };
}

/** The event of one query: every field in one literal (one object shape, whatever path produced `event`). */
function decisionEvent(time: string, client: Client, event: NonNullable<Outcome['event']>): DnsDecisionEvent {
  return {
    time,
    workloadKey: event.workloadKey,
    workloadId: event.workloadId,
    sourceIp: client.ip,
    sourcePort: client.port,
    transport: client.transport,
    query: event.query,
    qtype: event.qtype,
    verdict: event.verdict,
    tier: event.tier,
    ruleName: event.ruleName,
    policy: event.policy,
    rcode: event.rcode,
    answers: event.answers,
    learnedTtlSeconds: event.learnedTtlSeconds,
    upstream: event.upstream,
    upstreamLatencyMs: event.upstreamLatencyMs,
    reason: event.reason,
  };
}

let isoMs = 0;
let isoText = '';
/** The current time as ISO-8601, formatted once per millisecond (a busy proxy receives several queries in one). */
/** A node-wide cap must be a positive integer and one workload's share of it a positive integer no larger. */
function checkShare(nodeName: string, node: number, shareName: string, share: number): void {
  if (!Number.isInteger(node) || node < 1) throw new Error(`DNS proxy: ${nodeName} ${node} is not a positive integer`);
  if (!Number.isInteger(share) || share < 1 || share > node)
    throw new Error(`DNS proxy: ${shareName} ${share} must be a positive integer no larger than ${nodeName} (${node})`);
}

function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) [isoMs, isoText] = [ms, new Date(ms).toISOString()];
  return isoText;
}

function errorFor(query: DnsQuery, rcode: RcodeName): Buffer {
  return encodeErrorResponse(query, query.question, rcode);
}

function notForwarded(rcode: string, reason: string | null) {
  return { rcode, answers: [], learnedTtlSeconds: null, upstream: null, upstreamLatencyMs: null, reason };
}

/** Event fields for answers given before (or instead of) a policy decision. */
function preDecisionEvent(workload: DnsWorkload | null, ruleName: string, rcode: string, reason: string) {
  return {
    workloadKey: workload?.key ?? null,
    workloadId: workload?.workloadId ?? null,
    verdict: 'denied' as const,
    tier: 0 as Tier,
    ruleName,
    policy: null,
    ...notForwarded(rcode, reason),
  };
}

interface AdoptedSockets {
  udp: dgram.Socket[];
  tcp: net.Server[];
}

/** Open the inherited descriptors as sockets (still bound and listening: nothing queued in them is lost). */
async function adoptInherited(sockets: InheritedSocket[]): Promise<AdoptedSockets> {
  const adopted: AdoptedSockets = { udp: [], tcp: [] };
  for (const { fd, kind } of sockets) {
    if (kind === 'udp4' || kind === 'udp6') {
      const udp = dgram.createSocket({ type: kind });
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ fd }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      adopted.udp.push(udp);
    } else {
      const server = net.createServer();
      server.listen({ fd });
      await once(server, 'listening');
      adopted.tcp.push(server);
    }
  }
  return adopted;
}

/** Remove and return the adopted socket bound to address:port (any port when `port` is 0). */
function takeInherited<T extends dgram.Socket | net.Server>(sockets: T[], address: string, port: number): T | null {
  const index = sockets.findIndex((socket) => {
    const bound = socket.address() as net.AddressInfo;
    return unmapIpv4(bound.address) === address && (port === 0 || bound.port === port);
  });
  return index < 0 ? null : (sockets.splice(index, 1)[0] as T);
}

function describeListener(socket: dgram.Socket | net.Server): string {
  const bound = socket.address() as net.AddressInfo;
  return `${socket instanceof dgram.Socket ? 'udp' : 'tcp'} ${bound.address} port ${bound.port}`;
}

function bindUdp(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

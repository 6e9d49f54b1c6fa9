// Positive answers from the trusted resolvers, shared by every workload: a popular name is asked upstream once per
// TTL instead of once per query. What stays per workload is the policy decision (made before the cache is consulted)
// and the learning: the proxy installs a cached answer's addresses for the asking workload before releasing it,
// exactly as for a fresh answer. Only NOERROR answers with records that arrived complete over UDP are kept, for the
// shortest TTL among the answer records (capped), with their TTLs lowered by their age when served.
import type dnsPacket from 'dns-packet';
import type { ExtractedAddresses } from './answers.js';
import type { ResolverAddress } from './types.js';
import { rcodeOf, type DnsQuery } from './wire.js';

const FLAG_RD = 0x0100;
const FLAG_CD = 0x0010;

export interface CachedAnswer {
  /** The resolver's response as received (its id is the upstream query's). */
  message: Buffer;
  packet: dnsPacket.DecodedPacket;
  extracted: ExtractedAddresses;
  upstream: ResolverAddress;
  storedAtMs: number;
  expiresAtMs: number;
}

export interface CacheHit {
  answer: CachedAnswer;
  /** Whole seconds since the answer arrived: what its TTLs are lowered by. */
  ageSeconds: number;
}

export class AnswerCache {
  private readonly entries = new Map<string, CachedAnswer>();

  constructor(
    private readonly maxEntries: number,
    /** No answer is kept longer than this, whatever its TTL (a zone an attacker controls may say years). */
    private readonly maxTtlSeconds: number,
  ) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new Error(`answer cache size must be an integer >= 0, got ${maxEntries}`);
  }

  get(query: Omit<DnsQuery, 'id'>, nowMs: number): CacheHit | null {
    const key = cacheKey(query);
    const answer = this.entries.get(key);
    if (answer === undefined) return null;
    if (answer.expiresAtMs <= nowMs) {
      this.entries.delete(key);
      return null;
    }
    return { answer, ageSeconds: Math.floor((nowMs - answer.storedAtMs) / 1000) };
  }

  /** Keep a fresh UDP answer when it is positive and may be cached at all. */
  put(query: Omit<DnsQuery, 'id'>, answer: Omit<CachedAnswer, 'storedAtMs' | 'expiresAtMs'>, nowMs: number): void {
    if (this.maxEntries === 0) return;
    const { packet } = answer;
    if (rcodeOf(answer.message) !== 'NOERROR' || packet.flag_tc || (packet.answers?.length ?? 0) === 0) return;
    const ttlSeconds = Math.min(this.maxTtlSeconds, ...(packet.answers ?? []).map((record) => ('ttl' in record ? (record.ttl ?? 0) : 0)));
    if (ttlSeconds <= 0) return;
    const key = cacheKey(query);
    this.entries.delete(key);
    // Oldest first out: Map keeps insertion order.
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { ...answer, storedAtMs: nowMs, expiresAtMs: nowMs + ttlSeconds * 1000 });
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * Everything the response depends on: the name as spelled (clients that randomise case check the echo), type, class,
 * the RD and CD bits, and whether the query had EDNS and the DO bit (the response must not carry OPT otherwise).
 */
function cacheKey(query: Omit<DnsQuery, 'id'>): string {
  const { name, type, class: klass } = query.question;
  const edns = query.edns === null ? '-' : query.edns.dnssecOk ? 'do' : 'e';
  return `${name}|${type}|${klass}|${query.flags & (FLAG_RD | FLAG_CD)}|${edns}`;
}

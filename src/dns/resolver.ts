// The agent's own resolution of allowed exact names: their addresses are installed before any workload
// asks, and re-resolved before they expire, against the same trusted resolvers the proxy uses (never the
// system resolver, whose configuration the host, not the policy, controls).

import dnsPacket from 'dns-packet';
import { extractAddresses } from './answers.js';
import { learnedTtlSeconds, type LearnedLifetimeBounds } from './lifetime.js';
import type { LearnedIpSink, ResolverAddress } from './types.js';
import { exchange, UpstreamSockets } from './upstream.js';

export interface RefreshTarget {
  workloadId: number;
  ruleIds: number[];
  /** An exact name (no wildcard), as normalised by the policy compiler. */
  name: string;
}

export interface NameRefresherOptions {
  upstreams: ResolverAddress[];
  sink: LearnedIpSink;
  /** How long learned addresses are trusted; its minimum is also the shortest refresh interval. */
  lifetime: LearnedLifetimeBounds;
  /** Upper bound for the refresh interval. Default 300. */
  maxRefreshSeconds?: number;
  /** Delay before retrying a name that failed to resolve or to install. Default 10. */
  retrySeconds?: number;
  /** Per resolver attempt. Default 2000. */
  timeoutMs?: number;
  /** Addresses learned per name at most (the rest are dropped and reported). */
  maxIpsPerName: number;
  /** Told about every refresh, for logs and status. */
  onRefresh?: (report: RefreshReport) => void;
}

export interface RefreshReport {
  name: string;
  addresses: string[];
  /** TTL the addresses were learned with; null when nothing was learned. */
  learnedTtlSeconds: number | null;
  nextRefreshSeconds: number;
  /** Why this refresh was incomplete; null when it succeeded. */
  error: string | null;
}

export interface RefreshPlan {
  learnTtlSeconds: number;
  refreshAfterSeconds: number;
}

/**
 * Refresh at ~80% of the TTL, within [max(minTtl, 1 s), maxRefresh]; learn for at least 125% of the refresh
 * interval (within the lifetime bounds) so an entry never expires before the refresh that renews it. When the
 * maximum TTL is the shorter, the refresh comes at 80% of it instead.
 */
export function refreshPlan(answerTtlSeconds: number, lifetime: LearnedLifetimeBounds, maxRefreshSeconds: number): RefreshPlan {
  const floor = Math.max(lifetime.minTtlSeconds, 1);
  const wanted = Math.min(Math.max(answerTtlSeconds * 0.8, floor), Math.max(maxRefreshSeconds, floor));
  const learnTtlSeconds = learnedTtlSeconds(Math.max(answerTtlSeconds, Math.ceil(wanted * 1.25)), lifetime);
  return { refreshAfterSeconds: Math.min(wanted, learnTtlSeconds * 0.8), learnTtlSeconds };
}

interface NameEntry {
  name: string;
  /** workloadId → rule ids to learn for. */
  targets: Map<number, number[]>;
  signature: string;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  /** The targets changed while a refresh was running: run again when it ends. */
  rerun: boolean;
}

export class NameRefresher {
  private readonly options: Required<Omit<NameRefresherOptions, 'onRefresh'>> & Pick<NameRefresherOptions, 'onRefresh'>;
  private readonly entries = new Map<string, NameEntry>();
  private readonly cancel = new AbortController();
  private readonly sockets = new UpstreamSockets();

  constructor(options: NameRefresherOptions) {
    if (options.upstreams.length === 0) throw new Error('name refresher: no upstream resolver is configured');
    this.options = { maxRefreshSeconds: 300, retrySeconds: 10, timeoutMs: 2000, ...options };
  }

  /** Replace the whole set: new names and names whose targets changed are resolved now; dropped names stop refreshing. */
  setNames(targets: RefreshTarget[]): void {
    if (this.cancel.signal.aborted) throw new Error('name refresher is stopped');
    const wanted = new Map<string, Map<number, Set<number>>>();
    for (const target of targets) {
      const name = target.name.toLowerCase().replace(/\.$/, '');
      if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name)) {
        throw new Error(`name refresher: "${target.name}" is not an exact DNS name (letters, digits, "-", "_" and dots; no wildcards)`);
      }
      const byWorkload = wanted.get(name) ?? new Map<number, Set<number>>();
      wanted.set(name, byWorkload);
      const ruleIds = byWorkload.get(target.workloadId) ?? new Set<number>();
      byWorkload.set(target.workloadId, ruleIds);
      for (const ruleId of target.ruleIds) ruleIds.add(ruleId);
    }
    for (const [name, entry] of this.entries) {
      if (wanted.has(name)) continue;
      if (entry.timer !== null) clearTimeout(entry.timer);
      this.entries.delete(name);
    }
    for (const [name, byWorkload] of wanted) {
      const targetsOfName = new Map([...byWorkload].sort(([a], [b]) => a - b).map(([id, rules]) => [id, [...rules].sort((a, b) => a - b)]));
      const signature = JSON.stringify([...targetsOfName]);
      const existing = this.entries.get(name);
      if (existing?.signature === signature) continue;
      const entry = existing ?? { name, targets: targetsOfName, signature, timer: null, running: null, rerun: false };
      entry.targets = targetsOfName;
      entry.signature = signature;
      this.entries.set(name, entry);
      this.run(entry);
    }
  }

  /** Names currently refreshed. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  async stop(): Promise<void> {
    this.cancel.abort();
    const running = [...this.entries.values()].map((entry) => entry.running);
    for (const entry of this.entries.values()) if (entry.timer !== null) clearTimeout(entry.timer);
    this.entries.clear();
    await Promise.all(running);
    this.sockets.close();
  }

  private run(entry: NameEntry): void {
    if (entry.running !== null) {
      entry.rerun = true;
      return;
    }
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
    entry.running = this.refresh(entry)
      // Only a throwing onRefresh callback can get here; the refresh itself reports its failures.
      .catch((error: unknown) => process.emitWarning(`name refresher: ${(error as Error)?.message ?? String(error)}`))
      .finally(() => {
        entry.running = null;
        if (entry.rerun && this.entries.get(entry.name) === entry) {
          entry.rerun = false;
          this.run(entry);
        }
      });
  }

  private async refresh(entry: NameEntry): Promise<void> {
    const problems: string[] = [];
    const addresses: string[] = [];
    let minTtl = Infinity;
    const lookups = await Promise.allSettled(
      (['A', 'AAAA'] as const).map((type) =>
        exchange(
          {
            flags: dnsPacket.RECURSION_DESIRED,
            question: { name: entry.name, normalizedName: entry.name, type, class: 'IN' },
            edns: { udpPayloadSize: 1232, dnssecOk: false },
          },
          {
            upstreams: this.options.upstreams,
            sockets: this.sockets,
            transport: 'udp',
            timeoutMs: this.options.timeoutMs,
            signal: this.cancel.signal,
          },
        ),
      ),
    );
    for (const lookup of lookups) {
      if (lookup.status === 'rejected') {
        problems.push((lookup.reason as Error).message);
        continue;
      }
      const extracted = extractAddresses(lookup.value.packet, entry.name);
      for (const address of extracted.addresses) if (!addresses.includes(address)) addresses.push(address);
      if (extracted.ttlSeconds !== null) minTtl = Math.min(minTtl, extracted.ttlSeconds);
    }
    // Removed or stopped while resolving: its rules no longer want these addresses.
    if (this.entries.get(entry.name) !== entry) return;
    if (addresses.length > this.options.maxIpsPerName) {
      problems.push(
        `${addresses.length - this.options.maxIpsPerName} address(es) over the cap of ${this.options.maxIpsPerName} not learned`,
      );
      addresses.length = this.options.maxIpsPerName;
    }
    if (addresses.length === 0 && problems.length === 0) problems.push('no A or AAAA addresses');
    const plan = addresses.length > 0 ? refreshPlan(minTtl, this.options.lifetime, this.options.maxRefreshSeconds) : null;
    if (plan !== null) {
      for (const [workloadId, ruleIds] of entry.targets) {
        try {
          await this.options.sink.learn(workloadId, ruleIds, addresses, plan.learnTtlSeconds, entry.name);
        } catch (error) {
          problems.push(`learn for workload ${workloadId} failed: ${(error as Error).message}`);
        }
      }
    }
    if (this.entries.get(entry.name) !== entry) return;
    const succeeded = problems.length === 0 && plan !== null;
    const nextRefreshSeconds = Math.min(plan?.refreshAfterSeconds ?? Infinity, succeeded ? Infinity : this.options.retrySeconds);
    entry.timer = setTimeout(() => this.run(entry), nextRefreshSeconds * 1000);
    this.options.onRefresh?.({
      name: entry.name,
      addresses,
      learnedTtlSeconds: plan?.learnTtlSeconds ?? null,
      nextRefreshSeconds,
      error: problems.length === 0 ? null : problems.join('; '),
    });
  }
}

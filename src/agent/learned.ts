// Learned addresses: what a DNS answer teaches the kernel, and for how long.
import type { AgentConfig } from './config.js';
import type { Datapath } from '../datapath/types.js';
import { kernelLifetimeSeconds } from '../dns/lifetime.js';
import type { LearnedIpSink } from '../dns/types.js';

const NS_PER_SECOND = 1_000_000_000n;

/**
 * Expiries end on a whole second of the monotonic clock (up to a second later, never earlier): the same answer learned
 * again within that second, or from the shared cache with its TTLs aged, finds the kernel's entry unchanged and costs
 * no map write (the datapath never shortens an entry).
 */
function wholeSecondsUp(ns: bigint): bigint {
  return ((ns + NS_PER_SECOND - 1n) / NS_PER_SECOND) * NS_PER_SECOND;
}

export class LearnedAddresses implements LearnedIpSink {
  constructor(
    private readonly datapath: Datapath,
    private readonly lifetime: Pick<AgentConfig['dns'], 'minTtlSeconds' | 'maxTtlSeconds' | 'graceSeconds'>,
  ) {}

  learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number): void {
    this.learnUntil(workloadId, ruleIds, ips, ttlSeconds);
  }

  /** learn(), returning the expiry (process.hrtime.bigint() clock) the kernel holds the addresses until at least. */
  learnUntil(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number): bigint {
    const expiresAtNs = wholeSecondsUp(process.hrtime.bigint() + BigInt(kernelLifetimeSeconds(ttlSeconds, this.lifetime)) * NS_PER_SECOND);
    if (ruleIds.length === 0 || ips.length === 0) return expiresAtNs;
    this.datapath.learn(ruleIds.flatMap((ruleId) => ips.map((ip) => ({ workloadId, ruleId, ip, expiresAtNs }))));
    return expiresAtNs;
  }

  /** Delete expired entries; returns how many were removed. */
  expire(): number {
    return this.datapath.expireLearned(process.hrtime.bigint());
  }
}

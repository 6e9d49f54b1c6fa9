// Learned addresses: what a DNS answer teaches the kernel, and for how long.
import type { AgentConfig } from './config.js';
import type { Datapath } from '../datapath/types.js';
import { kernelLifetimeSeconds } from '../dns/lifetime.js';
import type { LearnedIpSink } from '../dns/types.js';

export class LearnedAddresses implements LearnedIpSink {
  constructor(
    private readonly datapath: Datapath,
    private readonly lifetime: Pick<AgentConfig['dns'], 'minTtlSeconds' | 'maxTtlSeconds' | 'graceSeconds'>,
  ) {}

  learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number): void {
    if (ruleIds.length === 0 || ips.length === 0) return;
    const expiresAtNs = process.hrtime.bigint() + BigInt(kernelLifetimeSeconds(ttlSeconds, this.lifetime)) * 1_000_000_000n;
    this.datapath.learn(ruleIds.flatMap((ruleId) => ips.map((ip) => ({ workloadId, ruleId, ip, expiresAtNs }))));
  }

  /** Delete expired entries; returns how many were removed. */
  expire(): number {
    return this.datapath.expireLearned(process.hrtime.bigint());
  }
}

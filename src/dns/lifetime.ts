// How long a learned address is trusted: one rule for the DNS proxy, the name refresher, the kernel entry the
// agent installs, and the TTL released to the workload. The bounds come from the agent configuration (dns.*).
//
//   learned TTL  = answer TTL clamped to [minTtlSeconds, maxTtlSeconds]   (reported in events)
//   kernel entry = learned TTL + graceSeconds                              (connects just as a cache expires)
//   released TTL = min(record TTL, learned TTL) per answer record          (the workload's cache never outlives
//                                                                           the kernel entry)

export interface LearnedLifetimeBounds {
  /** A zero or tiny TTL must not make a learned address useless before the client connects. */
  minTtlSeconds: number;
  /** A zone an attacker controls must not make an address permanent with a huge TTL. */
  maxTtlSeconds: number;
  graceSeconds: number;
}

/** The TTL an answer's addresses are learned with: the answer's TTL clamped to [min, max]. */
export function learnedTtlSeconds(answerTtlSeconds: number, bounds: LearnedLifetimeBounds): number {
  return Math.min(Math.max(answerTtlSeconds, bounds.minTtlSeconds), bounds.maxTtlSeconds);
}

/** How long the kernel keeps an address learned for `ttlSeconds` (clamped again: the sink trusts no caller). */
export function kernelLifetimeSeconds(ttlSeconds: number, bounds: LearnedLifetimeBounds): number {
  return learnedTtlSeconds(ttlSeconds, bounds) + bounds.graceSeconds;
}

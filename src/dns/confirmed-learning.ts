// The proxy worker's memory of what the main thread confirmed is in the kernel: (workload, rule, address) → the
// expiry the kernel holds it until (process.hrtime.bigint() clock, the same in every thread). An answer whose
// addresses are all held at least as long as it needs is released without asking the main thread; anything else
// waits for the main thread's learn. Forgotten whenever the policy changes (a withdrawn rule or a removed workload
// takes its entries out of the kernel) and when it grows past its bound.

const MAX_ENTRIES = 100_000;

export class ConfirmedLearning {
  private readonly heldUntilNs = new Map<string, bigint>();

  /** True when every (rule, address) of the workload is held until `neededUntilNs` or later. */
  covers(workloadId: number, ruleIds: readonly number[], ips: readonly string[], neededUntilNs: bigint): boolean {
    for (const ruleId of ruleIds) {
      for (const ip of ips) {
        const held = this.heldUntilNs.get(`${workloadId}|${ruleId}|${ip}`);
        if (held === undefined || held < neededUntilNs) return false;
      }
    }
    return true;
  }

  record(workloadId: number, ruleIds: readonly number[], ips: readonly string[], heldUntilNs: bigint): void {
    if (this.heldUntilNs.size + ruleIds.length * ips.length > MAX_ENTRIES) this.heldUntilNs.clear();
    for (const ruleId of ruleIds) {
      for (const ip of ips) {
        const key = `${workloadId}|${ruleId}|${ip}`;
        const held = this.heldUntilNs.get(key);
        if (held === undefined || held < heldUntilNs) this.heldUntilNs.set(key, heldUntilNs);
      }
    }
  }

  clear(): void {
    this.heldUntilNs.clear();
  }

  get size(): number {
    return this.heldUntilNs.size;
  }
}

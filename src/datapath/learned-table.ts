// A userspace mirror of eg_learned. The kernel only reads that map (the agent is its one writer), so the mirror can
// say what the kernel holds without a syscall: learning an address the kernel already keeps at least as long costs
// nothing, the per-workload cap needs no lookup, and expiry and withdrawal walk memory instead of the map.
//
// Kept in step with the kernel by construction: it is filled from the map when the datapath is opened (an adopted
// map keeps the previous agent's entries), an entry is recorded only after the kernel took the write, and it is
// forgotten as soon as its delete is attempted and did not fail, whether or not the kernel still had it. So the mirror
// never claims an entry the kernel lacks, which would suppress a write the kernel needs.
//
// Learning never shortens an entry: a later answer with a shorter TTL (a cached answer, another resolver) leaves the
// kernel's longer expiry alone, as the address was already released to a workload that may connect until then.
import { decodeLearnedKey, decodeLearnedValue, encodeLearnedKey, encodeLearnedValue } from './abi.js';
import type { NativeMap } from './native.js';
import type { LearnedEntry } from './types.js';

/** What the mirror keeps per kernel entry (the address is in the key). */
export interface HeldLearned {
  workloadId: number;
  ruleId: number;
  expiresAtNs: bigint;
}

export class LearnedTable {
  /** Hex-encoded kernel key → what the kernel holds under it. */
  private readonly held = new Map<string, HeldLearned>();
  /** Entries per workload id: the cap is checked on every new entry. */
  private readonly counts = new Map<number, number>();

  constructor(private readonly map: NativeMap) {
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (value === null) continue;
      const { workloadId, ruleId } = decodeLearnedKey(key);
      this.record(key.toString('hex'), { workloadId, ruleId, expiresAtNs: decodeLearnedValue(value) });
    }
  }

  /**
   * Write the entries the kernel does not already hold at least as long. A new entry of a workload holding `maxPerWorkload`
   * entries is not written; returns how many were refused per workload id.
   */
  learn(entries: readonly LearnedEntry[], maxPerWorkload: number): Map<number, number> {
    const refused = new Map<number, number>();
    for (const entry of entries) {
      const key = encodeLearnedKey(entry.workloadId, entry.ruleId, entry.ip);
      const hex = key.toString('hex');
      const held = this.held.get(hex);
      if (held !== undefined && held.expiresAtNs >= entry.expiresAtNs) continue;
      if (held === undefined && this.count(entry.workloadId) >= maxPerWorkload) {
        refused.set(entry.workloadId, (refused.get(entry.workloadId) ?? 0) + 1);
        continue;
      }
      this.map.update(key, encodeLearnedValue(entry.expiresAtNs));
      if (held === undefined) this.record(hex, { workloadId: entry.workloadId, ruleId: entry.ruleId, expiresAtNs: entry.expiresAtNs });
      else held.expiresAtNs = entry.expiresAtNs;
    }
    return refused;
  }

  /** Delete every entry `matches` selects from the kernel and the mirror; returns how many the kernel removed. */
  delete(matches: (entry: HeldLearned) => boolean): number {
    let removed = 0;
    for (const [hex, entry] of this.held) {
      if (!matches(entry)) continue;
      if (this.map.delete(Buffer.from(hex, 'hex'))) removed++;
      this.held.delete(hex);
      const left = this.count(entry.workloadId) - 1;
      if (left > 0) this.counts.set(entry.workloadId, left);
      else this.counts.delete(entry.workloadId);
    }
    return removed;
  }

  count(workloadId: number): number {
    return this.counts.get(workloadId) ?? 0;
  }

  get size(): number {
    return this.held.size;
  }

  private record(hex: string, entry: HeldLearned): void {
    this.held.set(hex, entry);
    this.counts.set(entry.workloadId, this.count(entry.workloadId) + 1);
  }
}

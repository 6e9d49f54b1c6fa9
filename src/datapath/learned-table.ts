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
import {
  addressToBytes,
  decodeLearnedKey,
  decodeLearnedValue,
  encodeLearnedKeyBytes,
  encodeLearnedValue,
  learnedKeyAddress,
} from './abi.js';
import type { NativeMap } from './native.js';
import type { LearnedEntry } from './types.js';

/** The map operations the mirror uses (entry by entry: learning writes few at a time). */
export type LearnedMap = Pick<NativeMap, 'lookup' | 'update' | 'delete' | 'keys'>;

/** What the mirror keeps per kernel entry. */
export interface HeldLearned {
  workloadId: number;
  ruleId: number;
  /** The key's 16 address bytes, hex. */
  address: string;
  expiresAtNs: bigint;
}

/** Address spellings remembered with their key bytes; past this many the memo starts over. */
const ADDRESS_MEMO_LIMIT = 65_536;

export class LearnedTable {
  /**
   * Workload id → `rule/address hex` → what the kernel holds under that key. By workload: a workload's rule change,
   * its removal and its cap look at its own entries, not at the node's (up to 131,072).
   */
  private readonly held = new Map<number, Map<string, HeldLearned>>();
  private total = 0;
  /** Address as written → its key bytes (hex): answers repeat the same few addresses, parsing each costs more than the rest. */
  private readonly addresses = new Map<string, string>();

  constructor(private readonly map: LearnedMap) {
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (value === null) continue;
      const { workloadId, ruleId } = decodeLearnedKey(key);
      this.record({ workloadId, ruleId, address: learnedKeyAddress(key).toString('hex'), expiresAtNs: decodeLearnedValue(value) });
    }
  }

  /**
   * Write the entries the kernel does not already hold at least as long. A new entry of a workload holding `maxPerWorkload`
   * entries is not written; returns how many were refused per workload id.
   */
  learn(entries: readonly LearnedEntry[], maxPerWorkload: number): Map<number, number> {
    const refused = new Map<number, number>();
    for (const { workloadId, ruleId, ip, expiresAtNs } of entries) {
      const address = this.addressHex(ip);
      const held = this.held.get(workloadId)?.get(mirrorKey(ruleId, address));
      if (held !== undefined && held.expiresAtNs >= expiresAtNs) continue;
      if (held === undefined && this.count(workloadId) >= maxPerWorkload) {
        refused.set(workloadId, (refused.get(workloadId) ?? 0) + 1);
        continue;
      }
      this.map.update(kernelKey(workloadId, ruleId, address), encodeLearnedValue(expiresAtNs));
      if (held === undefined) this.record({ workloadId, ruleId, address, expiresAtNs });
      else held.expiresAtNs = expiresAtNs;
    }
    return refused;
  }

  /**
   * Delete every entry `matches` selects (among one workload's, when given) from the kernel and the mirror; returns
   * how many the kernel removed.
   */
  delete(matches: (entry: HeldLearned) => boolean, workloadId?: number): number {
    let removed = 0;
    for (const [id, entries] of this.held) {
      if (workloadId !== undefined && id !== workloadId) continue;
      for (const [key, entry] of entries) {
        if (!matches(entry)) continue;
        if (this.map.delete(kernelKey(entry.workloadId, entry.ruleId, entry.address))) removed++;
        entries.delete(key);
        this.total--;
      }
      if (entries.size === 0) this.held.delete(id);
    }
    return removed;
  }

  /** What the kernel holds, from the mirror (no syscall): one workload's entries, or all. */
  entries(workloadId?: number): HeldLearned[] {
    if (workloadId !== undefined) return [...(this.held.get(workloadId)?.values() ?? [])];
    return [...this.held.values()].flatMap((entries) => [...entries.values()]);
  }

  count(workloadId: number): number {
    return this.held.get(workloadId)?.size ?? 0;
  }

  get size(): number {
    return this.total;
  }

  private record(entry: HeldLearned): void {
    const entries = this.held.get(entry.workloadId) ?? new Map<string, HeldLearned>();
    this.held.set(entry.workloadId, entries);
    entries.set(mirrorKey(entry.ruleId, entry.address), entry);
    this.total++;
  }

  private addressHex(ip: string): string {
    let hex = this.addresses.get(ip);
    if (hex === undefined) {
      hex = addressToBytes(ip).toString('hex');
      if (this.addresses.size >= ADDRESS_MEMO_LIMIT) this.addresses.clear();
      this.addresses.set(ip, hex);
    }
    return hex;
  }
}

function mirrorKey(ruleId: number, address: string): string {
  return `${ruleId}/${address}`;
}

function kernelKey(workloadId: number, ruleId: number, address: string): Buffer {
  return encodeLearnedKeyBytes(workloadId, ruleId, Buffer.from(address, 'hex'));
}

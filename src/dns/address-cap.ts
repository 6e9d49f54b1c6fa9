// Per-workload cap on how many live addresses one name may teach the datapath. A workload that may resolve
// a name whose zone an attacker controls could otherwise fill its allow map with arbitrary addresses.

export interface CapOutcome {
  admitted: string[];
  /** Addresses dropped because the name already holds `maxPerName` live addresses. */
  rejected: string[];
}

export class AddressCap {
  /** workloadId → name → address → expiry (ms since epoch). */
  private readonly live = new Map<number, Map<string, Map<string, number>>>();

  constructor(private readonly maxPerName: number) {
    if (!Number.isInteger(maxPerName) || maxPerName < 1) {
      throw new Error(`maxIpsPerName must be a positive integer, got ${String(maxPerName)}`);
    }
  }

  /** Admit addresses for (workload, name) up to the cap; addresses already live are refreshed and never count twice. */
  admit(workloadId: number, name: string, addresses: string[], ttlSeconds: number, nowMs: number): CapOutcome {
    let names = this.live.get(workloadId);
    if (names === undefined) {
      names = new Map();
      this.live.set(workloadId, names);
    }
    let entries = names.get(name);
    if (entries === undefined) {
      entries = new Map();
      names.set(name, entries);
    }
    dropExpired(entries, nowMs);
    const expiresAt = nowMs + ttlSeconds * 1000;
    const outcome: CapOutcome = { admitted: [], rejected: [] };
    for (const address of addresses) {
      const known = entries.get(address);
      if (known === undefined && entries.size >= this.maxPerName) {
        outcome.rejected.push(address);
        continue;
      }
      entries.set(address, Math.max(known ?? 0, expiresAt));
      outcome.admitted.push(address);
    }
    return outcome;
  }

  /** Forget expired addresses and empty names so memory follows live state only. */
  prune(nowMs: number): void {
    for (const [workloadId, names] of this.live) {
      for (const [name, entries] of names) {
        dropExpired(entries, nowMs);
        if (entries.size === 0) names.delete(name);
      }
      if (names.size === 0) this.live.delete(workloadId);
    }
  }
}

function dropExpired(entries: Map<string, number>, nowMs: number): void {
  for (const [address, expiresAt] of entries) if (expiresAt <= nowMs) entries.delete(address);
}

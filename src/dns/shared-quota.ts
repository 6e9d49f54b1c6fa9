// A node-wide quota with a per-owner share (DNS queries in flight, DNS-over-TCP connections), counted in shared
// memory so every proxy worker thread draws on the same one: N workers do not make the node's cap N times larger.
// Each worker also counts what it holds itself, so what a worker that died held is given back (releaseWorker) instead
// of staying taken. Owners are workloads (by workload id) or, for sources no workload owns, buckets of addresses.

/** Workload ids are allocated lowest-free from 1 and the datapath holds at most EG_MAX_WORKLOADS (4096): they never fold. */
const WORKLOAD_SLOTS = 8192;
/** Unknown sources share buckets by address hash: a collision only makes two of them share one share. */
const ADDRESS_BUCKETS = 1024;
const NODE = 0;
const SLOTS = 1 + WORKLOAD_SLOTS + ADDRESS_BUCKETS;

export type QuotaOutcome = 'taken' | 'node-full' | 'share-full';

/** One quota's counters: the totals, then one region per worker (what that worker holds). */
export function quotaBuffer(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer((workers + 1) * SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

/** The share a client's query or connection takes: its workload's, or for unknown sources its address bucket's. */
export function quotaOwner(workloadId: number | null, sourceIp: string): number {
  if (workloadId !== null) return 1 + (workloadId % WORKLOAD_SLOTS);
  let hash = 2166136261;
  for (let i = 0; i < sourceIp.length; i += 1) hash = Math.imul(hash ^ sourceIp.charCodeAt(i), 16777619);
  return 1 + WORKLOAD_SLOTS + ((hash >>> 0) % ADDRESS_BUCKETS);
}

export class SharedQuota {
  private readonly totals: Int32Array;
  /** Only this worker writes its region; the host reads it after the worker ended. */
  private readonly held: Int32Array;

  constructor(
    buffer: SharedArrayBuffer,
    worker: number,
    private readonly nodeCap: number,
    private readonly shareCap: number,
  ) {
    this.totals = new Int32Array(buffer, 0, SLOTS);
    this.held = regionOf(buffer, worker);
  }

  /** Take one unit for `owner` (quotaOwner) unless the node or the owner's share is full. */
  take(owner: number): QuotaOutcome {
    if (Atomics.add(this.totals, NODE, 1) >= this.nodeCap) {
      Atomics.sub(this.totals, NODE, 1);
      return 'node-full';
    }
    if (Atomics.add(this.totals, owner, 1) >= this.shareCap) {
      Atomics.sub(this.totals, owner, 1);
      Atomics.sub(this.totals, NODE, 1);
      return 'share-full';
    }
    this.held[NODE] = (this.held[NODE] as number) + 1;
    this.held[owner] = (this.held[owner] as number) + 1;
    return 'taken';
  }

  give(owner: number): void {
    // This worker's own count first: a worker terminated between the steps leaves the totals too high (a unit
    // lost until restart, fail closed), never given back twice by releaseWorker.
    this.held[NODE] = (this.held[NODE] as number) - 1;
    this.held[owner] = (this.held[owner] as number) - 1;
    Atomics.sub(this.totals, owner, 1);
    Atomics.sub(this.totals, NODE, 1);
  }
}

/** Give back everything a worker that ended held (it can no longer give it back itself). */
export function releaseWorker(buffer: SharedArrayBuffer, worker: number): void {
  const totals = new Int32Array(buffer, 0, SLOTS);
  const held = regionOf(buffer, worker);
  for (let slot = 0; slot < SLOTS; slot += 1) {
    const count = held[slot] as number;
    if (count === 0) continue;
    Atomics.sub(totals, slot, count);
    held[slot] = 0;
  }
}

function regionOf(buffer: SharedArrayBuffer, worker: number): Int32Array {
  const offset = (worker + 1) * SLOTS * Int32Array.BYTES_PER_ELEMENT;
  if (!Number.isInteger(worker) || worker < 0 || offset + SLOTS * Int32Array.BYTES_PER_ELEMENT > buffer.byteLength)
    throw new Error(`DNS proxy: worker ${worker} has no region in a quota buffer of ${buffer.byteLength} bytes`);
  return new Int32Array(buffer, offset, SLOTS);
}

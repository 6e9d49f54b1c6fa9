// Delivery: the one component between a sink's format and its transport. It owns what a transport must not decide:
// a bounded queue (a slow or dead destination never blocks the pipeline, the datapath or the DNS proxy), batching
// (records written in the same tick leave together), retry with exponential backoff, a timeout per send, a bounded
// close, and drops that are always counted: oldest-first when the queue is full, a whole batch when it is still
// undeliverable after its attempts. Batches are sent one at a time, so records arrive in the order written.
// A send that timed out may still land later and its batch is sent again: delivery is at least once.
// A transport that throws PermanentDeliveryError (the receiver refused the records for good) is not retried.
// With a disk spool (remote sinks), nothing is dropped for a failing destination: a batch that failed, and what
// piles up behind it, goes to the spool and is retried from there forever, oldest first; the spool's byte bound
// is then the only limit (its evictions are counted). close() leaves what it could not deliver in the spool for the
// next start.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Spool } from './spool.js';
import { PermanentDeliveryError, type SinkLog, type Transport } from './types.js';

export interface DeliveryOptions {
  /** Records held while the transport is busy or failing; beyond it the oldest are dropped (default 10,000). */
  maxQueued?: number;
  /** Records per send (default 500). */
  maxBatch?: number;
  /** Sends of one batch before it is dropped (default 5). */
  maxAttempts?: number;
  /** Delay before the first retry, doubled for each further one (default 200 ms) ... */
  retryDelayMs?: number;
  /** ... up to this (default 5,000 ms). */
  maxRetryDelayMs?: number;
  /** A send that has not settled by then counts as failed (default 10,000 ms). */
  sendTimeoutMs?: number;
  /** How long close() keeps delivering what is queued before dropping the rest (default 5,000 ms). */
  closeTimeoutMs?: number;
}

export interface DeliveryStats {
  /** Records accepted and neither delivered nor dropped yet (the batch in flight included). */
  queued: number;
  delivered: number;
  /** Failed send attempts (each retry of a batch counts). */
  failures: number;
  /** droppedQueueFull + droppedUndeliverable + droppedSpoolFull. */
  dropped: number;
  /** Oldest records pushed out of a full queue. */
  droppedQueueFull: number;
  /** Records whose batch failed every attempt, or still queued when close() ran out of time. */
  droppedUndeliverable: number;
  /** Records waiting in the disk spool (0 without one). */
  spooled: number;
  /** Bytes the spool's segments take on disk. */
  spoolBytes: number;
  /** Oldest spooled records deleted to keep the spool within its byte bound (or found unreadable). */
  droppedSpoolFull: number;
}

export const DELIVERY_DEFAULTS: Required<DeliveryOptions> = {
  maxQueued: 10_000,
  maxBatch: 500,
  maxAttempts: 5,
  retryDelayMs: 200,
  maxRetryDelayMs: 5_000,
  sendTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
};

/** FIFO of records with O(1) removal at the head (a full queue drops its oldest on every write). */
class RecordQueue {
  private items: string[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(record: string): void {
    this.items.push(record);
  }

  /** Remove and return up to `count` records from the head. */
  take(count: number): string[] {
    const taken = this.items.slice(this.head, this.head + count);
    this.head += taken.length;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return taken;
  }
}

export class Delivery {
  private readonly options: Required<DeliveryOptions>;
  private readonly queue = new RecordQueue();
  private readonly counters = { delivered: 0, failures: 0, droppedQueueFull: 0, droppedUndeliverable: 0 };
  private inFlight = 0;
  private draining: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** performance.now() by which close() gives up; Infinity until close() is called. */
  private closeDeadline = Infinity;
  private failing = false;
  /** Aborted by close(): a spool-mode drain waiting out a backoff wakes up to finish. */
  private readonly wake = new AbortController();
  private warnedQueueFull = false;

  constructor(
    /** Names the sink in logs. */
    private readonly name: string,
    private readonly transport: Transport,
    private readonly log: SinkLog,
    options: DeliveryOptions = {},
    private readonly spool: Spool | null = null,
  ) {
    this.options = { ...DELIVERY_DEFAULTS, ...options };
    for (const [key, value] of Object.entries(this.options)) {
      const least = key === 'retryDelayMs' ? 0 : 1;
      if (!Number.isSafeInteger(value) || value < least)
        throw new Error(`sink ${name}: delivery option ${key} must be an integer >= ${least}, got ${value}`);
    }
    // What an earlier run left in the spool goes out first.
    if (spool !== null && spool.size > 0) this.draining = this.drainWithSpool(spool);
  }

  /** Queue one record; never blocks. After close() has begun, records are dropped and counted. */
  enqueue(record: string): void {
    if (this.closing !== null) {
      this.counters.droppedUndeliverable++;
      return;
    }
    if (this.queue.size >= this.options.maxQueued) {
      this.queue.take(1);
      this.counters.droppedQueueFull++;
      if (!this.warnedQueueFull) {
        this.warnedQueueFull = true;
        this.log.warn(
          { sink: this.name, maxQueued: this.options.maxQueued },
          'event sink queue full: dropping its oldest records (counted) until the destination keeps up',
        );
      }
    }
    this.queue.push(record);
    if (this.spool !== null) {
      this.spillIfBacklogged(this.spool);
      this.draining ??= this.drainWithSpool(this.spool);
    } else this.draining ??= this.drain();
  }

  /** False while the destination is failing (from a failed send to the next successful one). */
  get healthy(): boolean {
    return !this.failing;
  }

  /** Drops an earlier run of this sink counted but did not report in the stream (from its spool). */
  get carriedDrops(): number {
    return this.spool?.carriedDrops ?? 0;
  }

  /** Spool mode: leave drops not reported in the stream for the next run to report. */
  saveUnreportedDrops(count: number): void {
    if (this.spool === null || count <= 0) return;
    try {
      this.spool.saveUnreportedDrops(count);
    } catch (error) {
      this.log.warn({ sink: this.name, unreported: count, err: error }, 'event sink could not save its unreported drop count');
    }
  }

  /** True when less than half the queue is used: room for a record that reports drops without causing more. */
  get hasRoom(): boolean {
    return this.queue.size + this.inFlight < this.options.maxQueued / 2;
  }

  stats(): DeliveryStats {
    const { delivered, failures, droppedQueueFull, droppedUndeliverable } = this.counters;
    const droppedSpoolFull = this.spool?.dropped ?? 0;
    return {
      queued: this.queue.size + this.inFlight,
      delivered,
      failures,
      dropped: droppedQueueFull + droppedUndeliverable + droppedSpoolFull,
      droppedQueueFull,
      droppedUndeliverable,
      spooled: this.spool?.size ?? 0,
      spoolBytes: this.spool?.byteSize ?? 0,
      droppedSpoolFull,
    };
  }

  /** Deliver what is queued (within closeTimeoutMs, then drop and count the rest) and close the transport. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closeDeadline = performance.now() + this.options.closeTimeoutMs;
    this.wake.abort();
    await this.draining;
    await this.spool?.idle();
    try {
      await this.transport.close();
    } catch (error) {
      this.log.warn({ sink: this.name, err: error }, 'event sink: closing its destination failed');
    }
  }

  private async drain(): Promise<void> {
    // Let the records written in this tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.size > 0) {
      if (performance.now() >= this.closeDeadline) {
        const left = this.queue.take(this.queue.size).length;
        this.counters.droppedUndeliverable += left;
        this.log.warn({ sink: this.name, dropped: left }, 'event sink closed with records it had no time to deliver');
        break;
      }
      const batch = this.queue.take(this.options.maxBatch);
      this.inFlight = batch.length;
      await this.deliver(batch);
      this.inFlight = 0;
    }
    this.warnedQueueFull = false;
    this.draining = null;
  }

  private async deliver(batch: readonly string[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(batch);
        this.counters.delivered += batch.length;
        if (this.failing) {
          this.failing = false;
          this.log.warn({ sink: this.name, ...this.stats() }, 'event sink delivering again');
        }
        return;
      } catch (error) {
        if (error instanceof PermanentDeliveryError) {
          this.refused(batch, error);
          return;
        }
        this.counters.failures++;
        if (!this.failing) {
          this.failing = true;
          this.log.warn({ sink: this.name, err: error }, 'event sink failed to deliver; retrying with backoff');
        }
        const delay = Math.min(this.options.retryDelayMs * 2 ** (attempt - 1), this.options.maxRetryDelayMs);
        if (attempt >= this.options.maxAttempts || performance.now() + delay >= this.closeDeadline) {
          this.counters.droppedUndeliverable += batch.length;
          this.log.warn(
            { sink: this.name, dropped: batch.length, attempts: attempt, err: error },
            'event sink dropped records it could not deliver',
          );
          return;
        }
        await sleep(delay);
      }
    }
  }

  /** Spool mode: memory holds at most a batch while the destination fails or the spool is not empty. */
  private spillIfBacklogged(spool: Spool): void {
    const backlog = this.queue.size;
    if (backlog < this.options.maxBatch) return;
    if (this.failing || spool.size > 0 || backlog >= this.options.maxQueued / 2) this.toSpool(spool, this.queue.take(backlog), 'back');
  }

  private toSpool(spool: Spool, records: readonly string[], where: 'front' | 'back'): void {
    // Segments of at most one batch: the bound then evicts in batch-sized steps, and a retry re-reads one batch.
    const segments: string[][] = [];
    for (let start = 0; start < records.length; start += this.options.maxBatch)
      segments.push(records.slice(start, start + this.options.maxBatch));
    // Put back in front last segment first, so they end up in their order.
    if (where === 'front') segments.reverse();
    for (const segment of segments) this.toSpoolSegment(spool, segment, where);
  }

  private toSpoolSegment(spool: Spool, records: readonly string[], where: 'front' | 'back'): void {
    (where === 'front' ? spool.prepend(records) : spool.append(records)).catch((error: unknown) => {
      // A full or failing disk: these records are lost, counted, and the agent carries on.
      this.counters.droppedUndeliverable += records.length;
      this.log.warn({ sink: this.name, dropped: records.length, err: error }, 'event sink could not write its spool; records dropped');
    });
  }

  private async drainWithSpool(spool: Spool): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    let attempt = 0;
    while (spool.size > 0 || this.queue.size > 0) {
      if (performance.now() >= this.closeDeadline || (this.closeDeadline !== Infinity && this.failing)) {
        // Closing: what is left waits in the spool for the next start.
        this.toSpool(spool, this.queue.take(this.queue.size), 'back');
        break;
      }
      const segment = spool.size > 0 ? await spool.oldest().catch(() => null) : null;
      if (spool.size > 0 && segment === null) continue;
      const batch = segment?.records ?? this.queue.take(this.options.maxBatch);
      // Spooled records are reported as spooled; only a batch from memory is "queued" while in flight.
      this.inFlight = segment === null ? batch.length : 0;
      const outcome = await this.attempt(batch);
      this.inFlight = 0;
      if (outcome === 'retry') {
        if (segment === null) this.toSpool(spool, batch, 'front');
        this.spillIfBacklogged(spool);
        const delay = Math.min(this.options.retryDelayMs * 2 ** attempt++, this.options.maxRetryDelayMs);
        await sleep(delay, undefined, { signal: this.wake.signal }).catch(() => undefined);
      } else {
        attempt = 0;
        if (segment !== null) await spool.release(segment.sequence);
      }
    }
    this.warnedQueueFull = false;
    this.draining = null;
  }

  /** One send of a batch: delivered, refused for good (dropped, counted), or to be retried. */
  private async attempt(batch: readonly string[]): Promise<'done' | 'retry'> {
    try {
      await this.send(batch);
      this.counters.delivered += batch.length;
      if (this.failing) {
        this.failing = false;
        this.log.warn({ sink: this.name, ...this.stats() }, 'event sink delivering again');
      }
      return 'done';
    } catch (error) {
      if (error instanceof PermanentDeliveryError) {
        this.refused(batch, error);
        return 'done';
      }
      this.counters.failures++;
      if (!this.failing) {
        this.failing = true;
        this.log.warn({ sink: this.name, err: error }, 'event sink failed to deliver; spooling and retrying with backoff');
      }
      return 'retry';
    }
  }

  private refused(batch: readonly string[], error: Error): void {
    this.counters.failures++;
    this.counters.droppedUndeliverable += batch.length;
    this.log.warn({ sink: this.name, dropped: batch.length, err: error }, 'event sink destination refused records; dropped, not retried');
  }

  /** One send, failed if it throws, rejects or outlasts its timeout (shortened to what is left of a close). */
  private async send(batch: readonly string[]): Promise<void> {
    const timeoutMs = Math.max(0, Math.min(this.options.sendTimeoutMs, this.closeDeadline - performance.now()));
    const abort = new AbortController();
    const timeout = sleep(timeoutMs, undefined, { signal: abort.signal }).then(() => {
      throw new Error(`send timed out after ${Math.round(timeoutMs)} ms`);
    });
    try {
      // A transport that throws synchronously fails like one that rejects.
      await Promise.race([Promise.resolve().then(() => this.transport.send(batch)), timeout]);
    } finally {
      // The race already handles the aborted timer's rejection.
      abort.abort();
    }
  }
}

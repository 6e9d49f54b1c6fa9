// A sink's disk spool: records its destination could not take yet, in order, in one directory per sink, bounded in
// bytes. Records are kept in segment files named `<sequence>-<records>.seg` (a JSON array of strings), written to a
// temporary name and renamed, so a crash leaves whole segments or none. The sequence orders them; a batch that
// failed goes back in front (a lower sequence), newer records behind. Beyond the byte bound the oldest segments are
// deleted and their records counted (the count is in the name, so it is exact without reading them). The segment
// being delivered is never evicted, so a record is either delivered or counted as dropped, never both; nor is the
// newest, so the newest records survive even a bound smaller than a segment (the spool then exceeds its bound by at
// most those two segments).
// Every operation runs in order on one promise chain; a failed write (ENOSPC, EIO) rejects that operation only.
// Segments are not fsync'ed: the spool survives an agent restart or crash, not a power loss.
// Drops not yet reported in the stream when the sink closed (the bound evicting while it closed) are saved in
// `unreported-drops` and reported by the next run, so the count reaches the reader exactly.
import { mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface SpoolOptions {
  directory: string;
  maxBytes: number;
}

interface Segment {
  sequence: number;
  records: number;
  bytes: number;
}

/** Sequences of a new spool start here, leaving room below for batches put back in front. */
const FIRST_SEQUENCE = 1_000_000_000;
const SEGMENT_NAME = /^(\d{1,15})-(\d{1,9})\.seg$/;
const UNREPORTED_DROPS = 'unreported-drops';

export class Spool {
  /** Oldest first. */
  private segments: Segment[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private bytes = 0;
  private records = 0;
  /** The segment the delivery is sending, protected from eviction. */
  private inFlight: number | null = null;
  /** Records evicted by the byte bound (or unreadable), since the spool was opened. */
  dropped = 0;
  /** Drops an earlier run counted but could not report in the stream before it closed. */
  readonly carriedDrops: number;

  /** Opens (creating) the directory and indexes what an earlier run left; synchronous, at sink creation. */
  constructor(private readonly options: SpoolOptions) {
    mkdirSync(options.directory, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(options.directory)) {
      const match = SEGMENT_NAME.exec(name);
      if (match === null) {
        // A segment whose write was interrupted: it was never counted as spooled.
        if (name.endsWith('.tmp')) unlinkSync(join(options.directory, name));
        continue;
      }
      const bytes = statSync(join(options.directory, name)).size;
      this.segments.push({ sequence: Number(match[1]), records: Number(match[2]), bytes });
    }
    this.segments.sort((a, b) => a.sequence - b.sequence);
    this.carriedDrops = readUnreportedDrops(join(options.directory, UNREPORTED_DROPS));
    for (const segment of this.segments) this.account(segment, 1);
  }

  /** Records spooled, including those whose write is still pending (so a reader never overtakes them). */
  get size(): number {
    return this.records;
  }

  get byteSize(): number {
    return this.bytes;
  }

  /** Append records behind everything spooled. */
  append(records: readonly string[]): Promise<void> {
    return this.add(records, 'back');
  }

  /** Put records back in front of everything spooled (a batch that failed while newer records were spooled). */
  prepend(records: readonly string[]): Promise<void> {
    return this.add(records, 'front');
  }

  /** The oldest segment's records, marked in flight; null when the spool is empty. */
  oldest(): Promise<{ sequence: number; records: string[] } | null> {
    return this.run(async () => {
      for (;;) {
        const segment = this.segments[0];
        if (segment === undefined) return null;
        this.inFlight = segment.sequence;
        try {
          const records = JSON.parse(await readFile(this.path(segment), 'utf8')) as unknown;
          if (Array.isArray(records) && records.every((r) => typeof r === 'string')) return { sequence: segment.sequence, records };
        } catch {
          // Fall through: unreadable.
        }
        // A corrupt segment cannot be delivered: count its records as dropped and go on.
        this.inFlight = null;
        await this.remove(segment, true);
      }
    });
  }

  /** The segment returned by oldest() was delivered (or refused for good): forget it. */
  release(sequence: number): Promise<void> {
    return this.run(async () => {
      if (this.inFlight === sequence) this.inFlight = null;
      const segment = this.segments.find((s) => s.sequence === sequence);
      if (segment) await this.remove(segment, false);
    });
  }

  /** Leave a drop count for the next run to report (best effort: a failing disk loses it, logged by the caller). */
  saveUnreportedDrops(count: number): void {
    writeFileSync(join(this.options.directory, UNREPORTED_DROPS), String(count), { mode: 0o600 });
  }

  /** Wait for every operation queued so far. */
  idle(): Promise<void> {
    return this.run(async () => undefined);
  }

  private add(records: readonly string[], where: 'front' | 'back'): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    // Counted at once, so size tells readers records are coming; undone if the write fails.
    this.records += records.length;
    return this.run(async () => {
      const first = this.segments[0]?.sequence ?? FIRST_SEQUENCE;
      const last = this.segments.at(-1)?.sequence ?? FIRST_SEQUENCE - 1;
      const sequence = where === 'front' ? first - 1 : last + 1;
      const data = JSON.stringify(records);
      const segment = { sequence, records: records.length, bytes: Buffer.byteLength(data) };
      const path = this.path(segment);
      try {
        await writeFile(`${path}.tmp`, data, { mode: 0o600 });
        await rename(`${path}.tmp`, path);
      } catch (error) {
        this.records -= records.length;
        await unlink(`${path}.tmp`).catch(() => undefined);
        throw error;
      }
      this.records -= records.length;
      if (where === 'front') this.segments.unshift(segment);
      else this.segments.push(segment);
      this.account(segment, 1);
      await this.enforceBound();
    });
  }

  /** Delete the oldest segments (never the one in flight, nor the newest) until the spool fits its bound. */
  private async enforceBound(): Promise<void> {
    while (this.bytes > this.options.maxBytes) {
      const newest = this.segments.at(-1);
      const victim = this.segments.find((s) => s.sequence !== this.inFlight && s !== newest);
      if (victim === undefined) return;
      await this.remove(victim, true);
    }
  }

  private async remove(segment: Segment, asDropped: boolean): Promise<void> {
    this.segments = this.segments.filter((s) => s !== segment);
    this.account(segment, -1);
    if (asDropped) this.dropped += segment.records;
    await unlink(this.path(segment)).catch(() => undefined);
  }

  private account(segment: Segment, sign: 1 | -1): void {
    this.bytes += sign * segment.bytes;
    this.records += sign * segment.records;
  }

  private path(segment: Segment): string {
    return join(this.options.directory, `${String(segment.sequence).padStart(15, '0')}-${segment.records}.seg`);
  }

  private run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.chain.then(operation);
    this.chain = result.catch(() => undefined);
    return result;
  }
}

function readUnreportedDrops(path: string): number {
  try {
    const count = Number(readFileSync(path, 'utf8'));
    unlinkSync(path);
    return Number.isSafeInteger(count) && count > 0 ? count : 0;
  } catch {
    return 0;
  }
}

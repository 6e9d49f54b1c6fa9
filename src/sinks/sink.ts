// A configured sink as the pipeline sees it: each record is formatted at once and handed to the sink's delivery.
// Records the delivery had to drop are reported in the stream itself (a `sink-records-dropped` notice) as soon as
// the destination is healthy and the queue has room again, and at the latest when the sink closes, so the reader
// learns what it is missing. The notice itself can be lost the same way; it is then counted like any record.
import type { PipelineNotice, Sink } from '../events/sink.js';
import type { FlowEvent } from '../events/types.js';
import type { Delivery, DeliveryStats } from './delivery.js';
import type { Format } from './types.js';

export class DeliveredSink implements Sink {
  private dropsReported = 0;
  private closing: Promise<void> | null = null;
  /** Drops of an earlier run, reported with this run's. */
  private readonly carried: number;

  constructor(
    /** Names the sink in status counters and logs: `events.sinks[0]`. */
    readonly name: string,
    private readonly format: Format,
    private readonly delivery: Delivery,
    private readonly node: string,
    /** Which decisions this sink takes (its `filter:`); null for all. Notices always pass. */
    private readonly accepts: ((event: FlowEvent) => boolean) | null = null,
  ) {
    this.carried = delivery.carriedDrops;
  }

  write(event: FlowEvent): void {
    if (this.accepts !== null && !this.accepts(event)) return;
    this.reportDrops();
    this.delivery.enqueue(this.format.flow(event));
  }

  notice(notice: PipelineNotice): void {
    this.reportDrops();
    this.delivery.enqueue(this.format.notice(notice));
  }

  stats(): DeliveryStats {
    return this.delivery.stats();
  }

  close(): Promise<void> {
    if (this.closing === null) {
      this.reportDrops(true);
      // Drops during the close itself (a spool evicting to fit what it was handed) go to the next run.
      this.closing = this.delivery.close().then(() => this.delivery.saveUnreportedDrops(this.lost() - this.dropsReported));
    }
    return this.closing;
  }

  /** Outside close(), only when the notice can get through without pushing another record out. */
  private reportDrops(closing = false): void {
    const dropped = this.lost();
    if (dropped === this.dropsReported) return;
    if (!closing && !(this.delivery.healthy && this.delivery.hasRoom)) return;
    const notice: PipelineNotice = {
      kind: 'sink-records-dropped',
      time: new Date().toISOString(),
      node: this.node,
      sink: this.name,
      count: dropped - this.dropsReported,
      total: dropped,
    };
    this.dropsReported = dropped;
    this.delivery.enqueue(this.format.notice(notice));
  }

  private lost(): number {
    return this.delivery.stats().dropped + this.carried;
  }
}

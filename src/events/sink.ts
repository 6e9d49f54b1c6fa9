// The pipeline's output port. One internal FlowEvent, several renderers: src/sinks implements this interface (a
// format plus a transport behind a delivery component). Notices are the pipeline's own reports (losses), which
// every sink must carry: a SIEM must see that it is missing events, never silently miss them.
import type { FlowEvent } from './types.js';

export type PipelineNotice =
  | {
      kind: 'events-dropped';
      time: string;
      node: string;
      reason: 'aggregation-limit';
      /** Events dropped since the previous notice. */
      count: number;
      total: number;
      limit: number;
    }
  | {
      /**
       * Lost: the ring buffer was full (its reader's bounded queue to JavaScript counts as part of it).
       * Malformed: a record arrived that could not be decoded.
       */
      kind: 'kernel-events-lost' | 'kernel-events-malformed';
      time: string;
      node: string;
      /** Ring-buffer events lost (or malformed records) since the previous notice of this kind. */
      count: number;
      total: number;
    }
  | {
      /** The kernel's per-workload rate limit held back events of one workload: counted there, never sent. */
      kind: 'events-suppressed';
      time: string;
      node: string;
      reason: 'rate-limit';
      workload: { namespace: string; name: string; cgroupId: string };
      /** Events of this workload suppressed since its previous notice. */
      count: number;
      /** Suppressed events of every workload reported so far. */
      total: number;
    }
  | {
      kind: 'sink-records-dropped';
      time: string;
      node: string;
      /** The sink that dropped them, as named in its status counters (`events.sinks[0]`). */
      sink: string;
      /** Records this sink dropped (queue full, or undeliverable after its retries) since its previous notice. */
      count: number;
      total: number;
    };

/** One sentence for a human reader of a notice; every format that carries a message uses this one. */
export function describeNotice(notice: PipelineNotice): string {
  switch (notice.kind) {
    case 'events-dropped':
      return `${notice.count} events dropped: more than ${notice.limit} distinct flows in one aggregation window (${notice.total} in total)`;
    case 'kernel-events-lost':
      return `${notice.count} kernel events lost: ring buffer full (${notice.total} in total)`;
    case 'kernel-events-malformed':
      return `${notice.count} kernel event records malformed: could not be decoded, dropped (${notice.total} in total)`;
    case 'events-suppressed':
      return `${notice.count} events of ${notice.workload.namespace}/${notice.workload.name} suppressed: over its kernel event rate limit (${notice.total} in total)`;
    case 'sink-records-dropped':
      return `${notice.count} records dropped by sink ${notice.sink}: its queue was full or its destination failed (${notice.total} in total)`;
  }
}

export interface Sink {
  write(event: FlowEvent): void;
  notice(notice: PipelineNotice): void;
  /** Flush everything written so far and release the destination. */
  close(): Promise<void>;
}

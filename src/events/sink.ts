// Where events go. One internal FlowEvent, several renderers: JSON lines now; OCSF, CEF, syslog, HEC later
// implement the same interface. Notices are the pipeline's own reports (losses), which every sink must carry:
// a SIEM must see that it is missing events, never silently miss them.
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
      kind: 'kernel-events-lost';
      time: string;
      node: string;
      /** Ring-buffer events lost since the previous notice. */
      count: number;
      total: number;
    };

export interface Sink {
  write(event: FlowEvent): void;
  notice(notice: PipelineNotice): void;
  /** Flush everything written so far and release the destination. */
  close(): Promise<void>;
}

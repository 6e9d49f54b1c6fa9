// Splunk HTTP Event Collector event objects around any record format:
// `{"time":<epoch seconds.ms>,"host":<node>,"source":...,"sourcetype":...,"index":...,"event":<record>}`. A JSON
// record is embedded as an object, a CEF record as a string. The transport concatenates them per batch.
import type { Format } from '../types.js';
import { epochMs } from './common.js';

export interface HecEnvelopeOptions {
  source: string;
  sourcetype: string;
  /** Omitted: the token's default index. */
  index?: string;
  /** The inner format writes JSON objects (embedded as is) rather than text (embedded as a JSON string). */
  jsonRecords: boolean;
}

export function hecEvents(inner: Format, options: HecEnvelopeOptions): Format {
  const fixed = `"source":${JSON.stringify(options.source)},"sourcetype":${JSON.stringify(options.sourcetype)}${
    options.index === undefined ? '' : `,"index":${JSON.stringify(options.index)}`
  }`;
  const envelope = (time: string, node: string, record: string) =>
    `{"time":${(epochMs(time) / 1000).toFixed(3)},"host":${JSON.stringify(node)},${fixed},"event":${
      options.jsonRecords ? record : JSON.stringify(record)
    }}`;
  return {
    flow: (event) => envelope(event.time, event.node, inner.flow(event)),
    notice: (notice) => envelope(notice.time, notice.node, inner.notice(notice)),
  };
}

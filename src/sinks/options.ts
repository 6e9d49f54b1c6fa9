// The `events.sinks[]` fields every sink type shares: the record format, a filter (which decisions this sink
// receives; the pipeline's loss notices always pass, a SIEM must see what it misses), and, for remote sinks, the
// disk spool that carries records over an outage or an agent restart.
import type { FlowEvent, Layer, Verdict } from '../events/types.js';
import { FORMAT_NAMES, type FormatName } from './formats/index.js';
import type { SpoolOptions } from './spool.js';

export interface SinkFilter {
  verdicts?: Verdict[];
  layers?: Layer[];
  namespaces?: string[];
}

export interface CommonSinkConfig {
  /** Record format (default json). */
  format?: FormatName;
  filter?: SinkFilter;
}

export interface RemoteSinkConfig extends CommonSinkConfig {
  /** Disk spool for records the destination cannot take yet; without it a long outage drops (and counts) them. */
  spool?: SpoolOptions;
}

const uniqueEnum = (values: readonly string[]) => ({ type: 'array', minItems: 1, uniqueItems: true, items: { enum: values } });

export const COMMON_SINK_PROPERTIES = {
  format: { enum: FORMAT_NAMES },
  filter: {
    type: 'object',
    additionalProperties: false,
    properties: {
      verdicts: uniqueEnum(['permitted', 'denied', 'would-deny', 'would-permit']),
      layers: uniqueEnum(['connect', 'dns', 'tls', 'packet']),
      namespaces: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string' } },
    },
  },
} as const;

/** Spool bound: at least 64 KiB (a few batches), at most 1 TiB. */
export const REMOTE_SINK_PROPERTIES = {
  ...COMMON_SINK_PROPERTIES,
  spool: {
    type: 'object',
    additionalProperties: false,
    required: ['directory', 'maxBytes'],
    properties: {
      directory: { type: 'string', pattern: '^/' },
      maxBytes: { type: 'integer', minimum: 65536, maximum: 1099511627776 },
    },
  },
} as const;

/** The filter as a predicate over decisions; null when the sink takes everything. */
export function filterPredicate(filter: SinkFilter | undefined): ((event: FlowEvent) => boolean) | null {
  if (filter === undefined) return null;
  const verdicts = filter.verdicts && new Set<string>(filter.verdicts);
  const layers = filter.layers && new Set<string>(filter.layers);
  const namespaces = filter.namespaces && new Set(filter.namespaces);
  return (event) =>
    (verdicts === undefined || verdicts.has(event.verdict)) &&
    (layers === undefined || layers.has(event.layer)) &&
    (namespaces === undefined || namespaces.has(event.workload.namespace));
}

// Recent decisions for `egressguard observe`: a bounded ring of what the pipeline emitted (flows and notices) plus
// live subscribers. It is a pipeline sink like any other but in memory and never blocked by a destination, so an
// operator can follow the agent's decisions while every configured sink is down.
import type { PipelineNotice, Sink } from './sink.js';
import type { FlowEvent, Layer, Verdict } from './types.js';

export type ObservedRecord = { kind: 'flow'; event: FlowEvent } | { kind: 'notice'; notice: PipelineNotice };

/** What an observer asks for; every field narrows (all given fields must match). */
export interface ObserveFilter {
  namespace?: string;
  /** `namespace/name`, or a name in any namespace. */
  workload?: string;
  verdict?: Verdict;
  /** An exact name or `*.suffix` (one or more labels under suffix), case-insensitive. */
  fqdn?: string;
  /** A rule name, or `namespace/policy:rule`. */
  rule?: string;
  layer?: Layer;
  /** Only records at or after this time (milliseconds since the epoch). */
  sinceMs?: number;
}

export const VERDICTS: readonly Verdict[] = ['permitted', 'denied', 'would-deny', 'would-permit'];
export const LAYERS: readonly Layer[] = ['connect', 'dns', 'tls', 'packet', 'http'];
export const DEFAULT_HISTORY_SIZE = 10_000;

function normalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function fqdnMatches(pattern: string, fqdn: string | null): boolean {
  if (fqdn === null) return false;
  const [want, have] = [normalName(pattern), normalName(fqdn)];
  return want.startsWith('*.') ? have.endsWith(want.slice(1)) : have === want;
}

/** Check an observer's filter as it arrives over the control socket: every field named, typed and known. */
export function parseObserveFilter(input: unknown): ObserveFilter | string {
  if (input === undefined || input === null) return {};
  if (typeof input !== 'object' || Array.isArray(input)) return 'filter must be an object';
  const filter: ObserveFilter = {};
  for (const [key, value] of Object.entries(input)) {
    switch (key) {
      case 'namespace':
      case 'workload':
      case 'fqdn':
      case 'rule':
        if (typeof value !== 'string' || value.length === 0) return `filter.${key} must be a non-empty string`;
        filter[key] = value;
        break;
      case 'verdict':
        if (!VERDICTS.includes(value as Verdict)) return `filter.verdict must be one of ${VERDICTS.join(', ')}`;
        filter.verdict = value as Verdict;
        break;
      case 'layer':
        if (!LAYERS.includes(value as Layer)) return `filter.layer must be one of ${LAYERS.join(', ')}`;
        filter.layer = value as Layer;
        break;
      case 'sinceMs':
        if (typeof value !== 'number' || !Number.isFinite(value)) return 'filter.sinceMs must be a number (milliseconds since the epoch)';
        filter.sinceMs = value;
        break;
      default:
        return `filter.${key}: unknown field (known: namespace, workload, verdict, fqdn, rule, layer, sinceMs)`;
    }
  }
  return filter;
}

function flowMatches(filter: ObserveFilter, event: FlowEvent): boolean {
  const { workload } = event;
  if (filter.namespace !== undefined && workload.namespace !== filter.namespace) return false;
  if (filter.workload !== undefined) {
    const wanted = filter.workload;
    if (wanted.includes('/') ? `${workload.namespace}/${workload.name}` !== wanted : workload.name !== wanted) return false;
  }
  if (filter.verdict !== undefined && event.verdict !== filter.verdict) return false;
  if (filter.layer !== undefined && event.layer !== filter.layer) return false;
  if (filter.fqdn !== undefined && !fqdnMatches(filter.fqdn, event.fqdn)) return false;
  if (filter.rule !== undefined) {
    const qualified = event.policy ? `${event.policy.namespace}/${event.policy.name}:${event.rule}` : event.rule;
    if (event.rule !== filter.rule && qualified !== filter.rule) return false;
  }
  return true;
}

/**
 * Flows must match every field. Notices are kept whenever they can concern what the observer follows: a notice
 * about one workload's suppressed events follows the workload filters; losses with no workload always pass, since
 * they may hide matching flows.
 */
export function recordMatches(filter: ObserveFilter, record: ObservedRecord): boolean {
  const time = record.kind === 'flow' ? record.event.time : record.notice.time;
  if (filter.sinceMs !== undefined && Date.parse(time) < filter.sinceMs) return false;
  if (record.kind === 'flow') return flowMatches(filter, record.event);
  const notice = record.notice;
  if (notice.kind !== 'events-suppressed') return true;
  if (filter.namespace !== undefined && notice.workload.namespace !== filter.namespace) return false;
  if (filter.workload !== undefined) {
    const { namespace, name } = notice.workload;
    if (filter.workload.includes('/') ? `${namespace}/${name}` !== filter.workload : name !== filter.workload) return false;
  }
  return true;
}

export type HistoryListener = (record: ObservedRecord) => void;

export class DecisionHistory implements Sink {
  private readonly ring: (ObservedRecord | undefined)[];
  private next = 0;
  private size = 0;
  private readonly listeners = new Set<HistoryListener>();

  constructor(readonly capacity: number = DEFAULT_HISTORY_SIZE) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error(`history capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array<ObservedRecord | undefined>(capacity);
  }

  write(event: FlowEvent): void {
    this.record({ kind: 'flow', event });
  }

  notice(notice: PipelineNotice): void {
    this.record({ kind: 'notice', notice });
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  /** The last `count` records matching `filter`, oldest first. */
  last(count: number, filter: ObserveFilter = {}): ObservedRecord[] {
    const found: ObservedRecord[] = [];
    for (let i = 1; i <= this.size && found.length < count; i++) {
      const record = this.ring[(this.next - i + this.capacity) % this.capacity]!;
      if (recordMatches(filter, record)) found.push(record);
    }
    return found.reverse();
  }

  /** Call `listener` with every later record; returns the unsubscribe function. */
  subscribe(listener: HistoryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private record(record: ObservedRecord): void {
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
    for (const listener of this.listeners) listener(record);
  }
}

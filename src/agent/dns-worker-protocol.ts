// Messages between the agent's main thread (DnsProxyHost) and the DNS proxy worker (dns-proxy-worker.ts).
import type { InheritedSocket } from '../dns/activation.js';
import type { DnsPolicySnapshot } from './dns-policy.js';
import type { DnsProxyOptions, ListeningAddress, ProxyQuotas } from '../dns/proxy.js';
import type { DnsDecisionEvent, DnsProxyStats } from '../dns/types.js';

/** The DnsProxy options that are plain data (the oracle, sink and listener are the worker's own). */
export type WorkerProxySettings = Omit<DnsProxyOptions, 'oracle' | 'sink' | 'onEvent' | 'inherited' | 'quotas'>;

export interface ProxyWorkerData {
  settings: WorkerProxySettings;
  /** The quotas all the host's workers share, and this worker's index into them. */
  quotas: ProxyQuotas;
  /** Descriptors of this worker's own (duplicated) listening sockets; the worker's proxy closes them when it ends. */
  sockets: InheritedSocket[];
  policy: DnsPolicySnapshot;
}

export type ToWorker =
  | { type: 'policy'; policy: DnsPolicySnapshot }
  /** `overCap`: the request's addresses the per-name cap kept out (not learned, so not held until heldUntilNs). */
  | { type: 'learned'; id: number; heldUntilNs: bigint; overCap: string[]; error: null }
  | { type: 'learned'; id: number; heldUntilNs: null; error: string }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; addresses: ListeningAddress[] }
  | { type: 'failed'; error: string }
  | { type: 'learn'; id: number; workloadId: number; ruleIds: number[]; ips: string[]; ttlSeconds: number; name: string }
  | { type: 'events'; events: PackedEvent[]; stats: DnsProxyStats }
  | { type: 'stopped' };

/** Every field of a decision event, in the order a packed event carries them. */
const EVENT_FIELDS = [
  'time',
  'workloadKey',
  'workloadId',
  'sourceIp',
  'sourcePort',
  'transport',
  'query',
  'qtype',
  'verdict',
  'tier',
  'ruleName',
  'policy',
  'rcode',
  'answers',
  'learnedTtlSeconds',
  'upstream',
  'upstreamLatencyMs',
  'reason',
] as const satisfies readonly (keyof DnsDecisionEvent)[];
/** A decision event as a tuple: cloned to the other thread in about a third of an object's time (no key per field). */
export type PackedEvent = unknown[];

export function packEvent(event: DnsDecisionEvent): PackedEvent {
  return EVENT_FIELDS.map((field) => event[field]);
}

export function unpackEvent(packed: PackedEvent): DnsDecisionEvent {
  return Object.fromEntries(EVENT_FIELDS.map((field, index) => [field, packed[index]])) as unknown as DnsDecisionEvent;
}

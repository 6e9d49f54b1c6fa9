// Messages between the agent's main thread (DnsProxyHost) and the DNS proxy worker (dns-proxy-worker.ts).
import type { InheritedSocket } from '../dns/activation.js';
import type { DnsPolicySnapshot } from './dns-policy.js';
import type { DnsProxyOptions, ListeningAddress } from '../dns/proxy.js';
import type { DnsDecisionEvent, DnsProxyStats } from '../dns/types.js';

/** The DnsProxy options that are plain data (the oracle, sink and listener are the worker's own). */
export type WorkerProxySettings = Omit<DnsProxyOptions, 'oracle' | 'sink' | 'onEvent' | 'inherited'>;

export interface ProxyWorkerData {
  settings: WorkerProxySettings;
  /** Descriptors of this worker's own (duplicated) listening sockets; the worker's proxy closes them when it ends. */
  sockets: InheritedSocket[];
  policy: DnsPolicySnapshot;
}

export type ToWorker =
  | { type: 'policy'; policy: DnsPolicySnapshot }
  | { type: 'learned'; id: number; heldUntilNs: bigint; error: null }
  | { type: 'learned'; id: number; heldUntilNs: null; error: string }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; addresses: ListeningAddress[] }
  | { type: 'failed'; error: string }
  | { type: 'learn'; id: number; workloadId: number; ruleIds: number[]; ips: string[]; ttlSeconds: number; name: string }
  | { type: 'events'; events: DnsDecisionEvent[]; stats: DnsProxyStats }
  | { type: 'stopped' };

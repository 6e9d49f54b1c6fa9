// A ResilientInformer (informer.ts: retries with backoff, bounded lists, status) with what the policy, baseline and
// status code need on top: lookup by name, and the cache's changes per object (added, updated, deleted), found by
// comparing resourceVersions with what was seen before. A burst is one comparison of the cache, O(objects).
import type { Logger } from 'pino';
import type { KubeClient, KubeObject } from './api.js';
import { ResilientInformer, type InformerStatus } from './informer.js';

export type ChangeType = 'add' | 'update' | 'delete';

export interface WatchedOptions<T extends KubeObject> {
  client: KubeClient;
  /** The collection's path, e.g. /apis/networking.aviatrix.com/v1alpha1/namespaces/obot-mcp/firewallpolicies. */
  path: string;
  labelSelector?: string;
  log: Logger;
  /** Each object that changed since the last call, after the first list. */
  onChange: (type: ChangeType, object: T) => void;
  /** After each burst of changes has been reported object by object. */
  onSettled?: () => void;
}

function keyOf(object: KubeObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

export class WatchedCollection<T extends KubeObject> {
  private readonly informer: ResilientInformer<T>;
  private readonly seen = new Map<string, T>();
  private readonly waiting: Array<() => void> = [];
  /** Waiters that also settle for a failed list (whenSynced with orFailed). */
  private readonly failing: Array<() => void> = [];
  /** The first list has been compared and reported. */
  private reported = false;

  constructor(private readonly options: WatchedOptions<T>) {
    this.informer = new ResilientInformer<T>({
      name: options.path,
      client: options.client,
      path: options.path,
      ...(options.labelSelector !== undefined ? { labelSelector: options.labelSelector } : {}),
      log: options.log,
      onChange: () => this.compare(),
      onError: () => {
        for (const resolve of this.failing.splice(0)) resolve();
      },
    });
  }

  start(): void {
    this.informer.start();
  }

  /**
   * Resolves once the first list is in the cache and reported, or after `timeoutMs` (the API server is down); with
   * `orFailed`, also as soon as a list fails. The value says whether the collection is synced.
   */
  whenSynced(timeoutMs: number, { orFailed = false }: { orFailed?: boolean } = {}): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const settle = () => {
        clearTimeout(timer);
        resolve(this.synced);
      };
      const timer = setTimeout(settle, timeoutMs);
      timer.unref();
      this.waiting.push(settle);
      if (orFailed) this.failing.push(settle);
    });
  }

  /** True once a list succeeded and was reported: the cache holds the collection (behind while the API is away). */
  get synced(): boolean {
    return this.informer.synced && this.reported;
  }

  /** The last list or watch error; null while the collection is watched. */
  get lastError(): string | null {
    const status: InformerStatus = this.informer.status();
    return status.state === 'watching' ? null : status.lastError;
  }

  status(): InformerStatus {
    return this.informer.status();
  }

  list(): T[] {
    return [...this.seen.values()];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.seen.get(`${namespace ?? ''}/${name}`);
  }

  async stop(): Promise<void> {
    await this.informer.stop();
  }

  private compare(): void {
    const current = new Set<string>();
    for (const object of this.informer.list()) {
      const key = keyOf(object);
      current.add(key);
      const before = this.seen.get(key);
      if (before?.metadata?.resourceVersion === object.metadata?.resourceVersion && before?.metadata?.uid === object.metadata?.uid)
        continue;
      this.seen.set(key, object);
      this.options.onChange(before ? 'update' : 'add', object);
    }
    for (const [key, object] of this.seen) {
      if (current.has(key)) continue;
      this.seen.delete(key);
      this.options.onChange('delete', object);
    }
    this.reported = true;
    for (const resolve of this.waiting.splice(0)) resolve();
    this.options.onSettled?.();
  }
}

// One watched collection of API objects (an informer over list + watch) that keeps going: the client's ListWatch
// re-lists by itself after 410 Gone, but stops on any other error; here it is started again with backoff, and the
// last known objects stay in the cache meanwhile (enforcement keeps the last known state).
import { makeInformer, type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { ObjectCache } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export const RESTART_DELAY_MS = { first: 500, max: 30_000 };

export interface WatchedOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** The collection's path, e.g. /apis/networking.aviatrix.com/v1alpha1/namespaces/obot-mcp/firewallpolicies. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  log: Logger;
  /** Any add, update or delete (after a re-list: one call per object that changed). */
  onChange: (type: 'add' | 'update' | 'delete', object: T) => void;
}

export class WatchedCollection<T extends KubernetesObject> {
  private readonly informer: Informer<T> & ObjectCache<T>;
  private stopped = false;
  private delayMs = RESTART_DELAY_MS.first;
  private timer: NodeJS.Timeout | null = null;
  private listedOnce = false;
  /** The last error since the collection was last in sync; null while watching. */
  lastError: string | null = null;

  constructor(private readonly options: WatchedOptions<T>) {
    this.informer = makeInformer(options.kubeConfig, options.path, options.list, options.labelSelector);
    this.informer.on('add', (object) => this.changed('add', object));
    this.informer.on('update', (object) => this.changed('update', object));
    this.informer.on('delete', (object) => this.changed('delete', object));
    this.informer.on('error', (error: unknown) => this.failed(error));
  }

  /** Lists and starts watching; resolves after the first attempt, listed or not (then it retries with backoff). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.attempt();
  }

  /** True once a list succeeded: the cache holds the collection (possibly behind while the API is unreachable). */
  get synced(): boolean {
    return this.listedOnce;
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.informer.stop();
  }

  private async attempt(): Promise<void> {
    this.lastError = null;
    await this.informer.start();
    // start() returns once the list is in the cache and the watch is open, or after the error callback ran.
    if (this.lastError === null) {
      this.listedOnce = true;
      this.delayMs = RESTART_DELAY_MS.first;
    }
  }

  private changed(type: 'add' | 'update' | 'delete', object: T): void {
    this.options.onChange(type, object);
  }

  private failed(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.lastError = message;
    if (this.stopped || this.timer) return;
    this.options.log.warn(
      { path: this.options.path, err: message, retryInMs: this.delayMs },
      'watch failed; last known objects stay in force',
    );
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) void this.attempt();
    }, this.delayMs);
    this.timer.unref();
    this.delayMs = Math.min(this.delayMs * 2, RESTART_DELAY_MS.max);
  }
}

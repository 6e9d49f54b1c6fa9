// A list-watch informer that never gives up and says how it is doing: it lists, then watches from the list's
// resourceVersion (with bookmarks, so a quiet collection's version stays fresh); 410 Gone lists again at once, a watch
// that went silent for 30 s or that the server ended is resumed from the last version seen, and every other error
// restarts it after an exponential backoff (with jitter). A list is bounded in time, and the state (watching, connecting, backing off; when it last
// listed; the last error) is kept for status and readiness. Until the first list succeeds nothing is reported, so an
// agent started while the API server is down keeps the kernel's last known state instead of an empty set.

import {
  ApiError,
  apiStatusOf,
  WatchIdleTimeout,
  type KubeClient,
  type KubeObject,
  type ObjectList,
  type WatchEventType,
  type Watching,
} from './api.js';
import type { Logger } from 'pino';

export interface InformerStatus {
  /** watching: a watch is established; connecting: a list or watch request is open; backoff: waiting to retry. */
  state: 'connecting' | 'watching' | 'backoff' | 'stopped';
  /** When it entered that state (ISO time). */
  since: string;
  /** The first list succeeded: the cache is the API server's view (possibly stale while not watching). */
  synced: boolean;
  lastListAt: string | null;
  lastError: string | null;
  /** Restarts after an error since the agent started. */
  restarts: number;
}

export interface InformerOptions {
  /** What the log and status call it (`pods on node-1`). */
  name: string;
  client: KubeClient;
  /** The collection listed and watched (`/api/v1/pods`). */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Called (once per burst of changes, after the first list) when the cache changed. */
  onChange: () => void;
  /** A list or watch failed (it is retried after a backoff). */
  onError?: () => void;
  log: Logger;
  listTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

const DEFAULTS = { listTimeoutMs: 30_000, backoffBaseMs: 500, backoffMaxMs: 30_000 };
/** A watch the server ends sooner than this after it began is retried after a backoff, not at once (no tight loop). */
const QUICK_END_MS = 1000;

/** A readable reason from a list or watch failure (the client throws several shapes). */
export function describeApiError(error: unknown): string {
  const e = error as { code?: unknown; body?: unknown; message?: unknown; cause?: { code?: unknown } };
  const status = typeof e.code === 'number' ? e.code : null;
  let detail = typeof e.message === 'string' ? e.message : String(error);
  if (typeof e.body === 'string') {
    try {
      const body = JSON.parse(e.body) as { message?: string };
      if (body.message) detail = body.message;
    } catch {
      // Not a Status object: keep the message.
    }
  }
  if (typeof e.cause?.code === 'string') detail = `${detail} (${e.cause.code})`;
  if (status === 401) return `401 Unauthorized: the API server rejected the agent's credentials: ${detail}`;
  if (status === 403) return `403 Forbidden: the agent's ClusterRole lacks list/watch here: ${detail}`;
  return status === null ? detail : `${status}: ${detail}`;
}

/** Rejects when `promise` has not settled within `ms` (the request itself is left to finish or fail on its own). */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from the API server within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class ResilientInformer<T extends KubeObject> {
  private readonly options: InformerOptions & typeof DEFAULTS;
  private current: InformerStatus = {
    state: 'connecting',
    since: new Date().toISOString(),
    synced: false,
    lastListAt: null,
    lastError: null,
    restarts: 0,
  };
  /** The cache, by `namespace/name`. */
  private readonly objects = new Map<string, T>();
  /** Where the watch resumes; empty: list first. */
  private resourceVersion = '';
  private watching: Watching | null = null;
  /** Each list-and-watch run has a number; callbacks of an earlier run (stopped, restarted) are ignored. */
  private run = 0;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private changeScheduled = false;
  private stopped = false;

  constructor(options: InformerOptions) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** Start listing and watching; returns at once (the first list may take a while or fail and be retried). */
  start(): void {
    this.stopped = false;
    void this.listAndWatch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.run++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.watching?.abort();
    this.watching = null;
    this.enter('stopped');
  }

  /** The cached objects (the API server's view as of the last event). */
  list(): readonly T[] {
    return [...this.objects.values()];
  }

  get synced(): boolean {
    return this.current.synced;
  }

  status(): InformerStatus {
    return { ...this.current };
  }

  /** Lists when there is no resourceVersion to resume from (first run, 410 Gone), then watches. */
  private async listAndWatch(): Promise<void> {
    const run = ++this.run;
    this.watching?.abort();
    this.watching = null;
    this.enter('connecting');
    const { client, path, fieldSelector, labelSelector } = this.options;
    const selectors = {
      ...(fieldSelector !== undefined ? { fieldSelector } : {}),
      ...(labelSelector !== undefined ? { labelSelector } : {}),
    };
    if (this.resourceVersion === '') {
      let listed: ObjectList<T>;
      try {
        listed = await withTimeout(client.list<T>(path, selectors), this.options.listTimeoutMs, `list ${this.options.name}`);
      } catch (error) {
        if (run === this.run) this.failed(error);
        return;
      }
      if (run !== this.run) return;
      this.objects.clear();
      for (const object of listed.items) this.objects.set(keyOf(object), object);
      this.resourceVersion = listed.metadata?.resourceVersion ?? '';
      this.failures = 0;
      this.current.synced = true;
      this.current.lastListAt = new Date().toISOString();
      this.scheduleChange();
    }
    const establishedAt = { ms: 0 };
    this.watching = client.watch(
      path,
      { ...selectors, resourceVersion: this.resourceVersion },
      {
        onEstablished: () => {
          if (run !== this.run) return;
          establishedAt.ms = Date.now();
          this.failures = 0;
          this.enter('watching');
        },
        onEvent: (type, object) => {
          if (run === this.run) this.apply(type, object);
        },
        done: (error) => {
          if (run === this.run) this.watchEnded(error, establishedAt.ms);
        },
      },
    );
  }

  private apply(type: WatchEventType, object: unknown): void {
    if (type === 'ERROR') {
      // A Status: 410 Gone (the resourceVersion was compacted away) lists again at once; anything else is a failure.
      const status = object as { code?: number; message?: string } | null;
      this.watching?.abort();
      this.watching = null;
      const error = new ApiError(status?.code ?? 0, JSON.stringify(status), `watch ${this.options.name}`);
      this.current.lastError = describeApiError(error);
      if (status?.code === 410) {
        this.resourceVersion = '';
        void this.listAndWatch();
      } else this.failed(error);
      return;
    }
    const item = object as T;
    this.resourceVersion = item.metadata?.resourceVersion ?? this.resourceVersion;
    if (type === 'BOOKMARK') return;
    const key = keyOf(item);
    if (type === 'DELETED') {
      if (this.objects.delete(key)) this.scheduleChange();
      return;
    }
    const before = this.objects.get(key);
    if (before?.metadata?.resourceVersion === item.metadata?.resourceVersion && before !== undefined) return;
    this.objects.set(key, item);
    this.scheduleChange();
  }

  private watchEnded(error: Error | null, establishedAtMs: number): void {
    this.watching = null;
    if (this.stopped) return;
    if (error !== null) this.current.lastError = describeApiError(error);
    if (apiStatusOf(error) === 410) this.resourceVersion = '';
    // Gone, a silent connection (after its 30 s) or a watch the server ended after a while: resume at once. A watch
    // closed as soon as it began, or any other error, waits out a backoff.
    const resume =
      apiStatusOf(error) === 410 ||
      error instanceof WatchIdleTimeout ||
      (error === null && establishedAtMs > 0 && Date.now() - establishedAtMs >= QUICK_END_MS);
    if (resume) void this.listAndWatch();
    else this.failed(error ?? new Error(`watch ${this.options.name}: closed by the server as soon as it began`));
  }

  private scheduleChange(): void {
    if (this.changeScheduled || !this.current.synced) return;
    this.changeScheduled = true;
    setImmediate(() => {
      this.changeScheduled = false;
      if (!this.stopped) this.options.onChange();
    });
  }

  private failed(error: unknown): void {
    if (this.stopped) return;
    const reason = describeApiError(error);
    this.current.lastError = reason;
    this.options.onError?.();
    if (this.retryTimer !== null) return; // One restart at a time.
    const { backoffBaseMs, backoffMaxMs } = this.options;
    const delayMs = Math.min(backoffMaxMs, backoffBaseMs * 2 ** this.failures) * (0.5 + Math.random() / 2);
    this.failures++;
    this.current.restarts++;
    this.enter('backoff');
    this.options.log.warn(
      { informer: this.options.name, err: reason, retryInMs: Math.round(delayMs), synced: this.current.synced },
      this.current.synced
        ? 'API server watch failed; enforcing the last known state and retrying'
        : 'API server list failed; nothing is reported until it succeeds (the kernel keeps its state); retrying',
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) void this.listAndWatch();
    }, delayMs);
  }

  private enter(state: InformerStatus['state']): void {
    if (this.current.state === state) return;
    this.current.state = state;
    this.current.since = new Date().toISOString();
  }
}

/** An object's cache key: namespace/name. */
export function keyOf(object: KubeObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

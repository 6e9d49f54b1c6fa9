// A list-watch informer (the client's ListWatch) that never gives up and says how it is doing. ListWatch itself
// re-lists after 410 Gone and resumes a watch that ended, but stops for good on any other error and lets a list hang
// on a server that accepted the connection and never answers; here every error restarts it after an exponential
// backoff (with jitter), a list is bounded in time, and the state (watching, connecting, backing off; when it last
// listed; the last error) is kept for status and readiness. Until the first list succeeds nothing is reported, so an
// agent started while the API server is down keeps the kernel's last known state instead of an empty set.

import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
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

export interface InformerOptions<T extends KubernetesObject> {
  /** What the log and status call it (`pods on node-1`). */
  name: string;
  kubeConfig: KubeConfig;
  /** The watch path (`/api/v1/pods`). */
  path: string;
  /** One list call with the same selectors as the watch. */
  list: () => Promise<KubernetesListObject<T>>;
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

/** A readable reason from a list or watch failure (the client throws several shapes). */
export function describeApiError(error: unknown): string {
  const e = error as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; cause?: { code?: unknown } };
  const status = typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : null;
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

/** A Watch that reports when its request was answered, when events arrive and when it ended. */
class ObservedWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly hooks: { established(): void; ended(error: unknown): void },
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    let ended = false;
    const controller = await super.watch(path, queryParams, callback, (error: unknown) => {
      ended = true;
      this.hooks.ended(error);
      done(error);
    });
    if (!ended) this.hooks.established();
    return controller;
  }
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly listWatch: ListWatch<T>;
  private readonly options: InformerOptions<T> & typeof DEFAULTS;
  private current: InformerStatus = {
    state: 'connecting',
    since: new Date().toISOString(),
    synced: false,
    lastListAt: null,
    lastError: null,
    restarts: 0,
  };
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private changeScheduled = false;
  private stopped = false;

  constructor(options: InformerOptions<T>) {
    this.options = { ...DEFAULTS, ...options };
    const watch = new ObservedWatch(options.kubeConfig, {
      established: () => {
        this.failures = 0;
        this.enter('watching');
      },
      ended: (error) => {
        if (this.stopped) return;
        if (error) this.current.lastError = describeApiError(error);
        this.enter('connecting');
      },
    });
    this.listWatch = new ListWatch<T>(options.path, watch, () => this.listOnce(), false, options.labelSelector, options.fieldSelector);
    for (const verb of ['add', 'update', 'delete'] as const) this.listWatch.on(verb, () => this.scheduleChange());
    this.listWatch.on('connect', () => {
      if (this.current.state !== 'connecting') this.enter('connecting');
    });
    this.listWatch.on('error', (error: unknown) => this.failed(error));
  }

  /** Start listing and watching; returns at once (the first list may take a while or fail and be retried). */
  start(): void {
    this.stopped = false;
    void this.listWatch.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.enter('stopped');
    await this.listWatch.stop();
  }

  /** The cached objects (the API server's view as of the last event). */
  list(): readonly T[] {
    return this.listWatch.list();
  }

  get synced(): boolean {
    return this.current.synced;
  }

  status(): InformerStatus {
    return { ...this.current };
  }

  private async listOnce(): Promise<KubernetesListObject<T>> {
    const list = await withTimeout(this.options.list(), this.options.listTimeoutMs, `list ${this.options.name}`);
    this.failures = 0;
    this.current.synced = true;
    this.current.lastListAt = new Date().toISOString();
    // ListWatch applies the list to its cache right after this promise resolves: report after that.
    this.scheduleChange();
    return list;
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
      if (this.stopped) return;
      this.enter('connecting');
      void this.listWatch.start();
    }, delayMs);
  }

  private enter(state: InformerStatus['state']): void {
    if (this.current.state === state) return;
    this.current.state = state;
    this.current.since = new Date().toISOString();
  }
}

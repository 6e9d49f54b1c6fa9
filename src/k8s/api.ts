// The agent's own small Kubernetes API client: JSON over node:https (list with selectors, get, create, replace, watch
// with bookmarks). @kubernetes/client-node's generated API classes and models load as one module graph of every API
// group (its KubeConfig too imports them): about 31 MiB of V8 heap and 60-80 MiB of RSS in an agent that calls eleven
// endpoints. Its models stay ours as types only (`import type`, no runtime cost).
import type { IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import type { KubernetesObject } from '@kubernetes/client-node';

/** An object as the API server sends it: JSON, so the fields the library's models type as Date are RFC 3339 strings. */
export type Wire<T> = T extends Date
  ? string
  : T extends readonly (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

export type KubeObject = Wire<KubernetesObject>;

export interface ObjectList<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

/** A MicroTime field (Lease renewTime, Event eventTime): the API server parses exactly six fractional digits. */
export function microTime(date: Date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** An answer other than 2xx: `code` is the HTTP status, `body` the server's text (a Status object as JSON). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly body: string,
    what: string,
  ) {
    let reason = body.slice(0, 300);
    try {
      reason = (JSON.parse(body) as { message?: string }).message ?? reason;
    } catch {
      // Not a Status object: keep the text.
    }
    super(`${what}: HTTP ${code}: ${reason}`);
    this.name = 'ApiError';
  }
}

/** The HTTP status of a failed API call (ApiError, or an ERROR event's Status), undefined for other failures. */
export function apiStatusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** Where the API server is and how to authenticate to it (see client.ts for how it is built). */
export interface ApiConnection {
  /** `https://host:port` */
  server: string;
  ca?: Buffer;
  /** Client certificate and key (PEM). */
  cert?: Buffer;
  key?: Buffer;
  /** The name the server's certificate is checked against when it is not the server's host. */
  servername?: string;
  rejectUnauthorized: boolean;
  /** A bearer token, asked for on every request (a service-account token rotates under the same file). */
  token?: () => string;
  /** Connect over this Unix socket instead of TCP (TLS and the server's name as usual): the tests' way in. */
  socketPath?: string;
  /** A call (not a watch) not answered in full within this is ended, its connection closed (default 60 s). */
  requestTimeoutMs?: number;
}

/**
 * Callers bound their waits themselves (shorter, per purpose); this bound ends the request they gave up on, so a
 * black-holed path does not keep a connection open per abandoned call.
 */
const REQUEST_TIMEOUT_MS = 60_000;

export interface Selectors {
  fieldSelector?: string;
  labelSelector?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface Watching {
  /** Ends the watch; `done` is not called. */
  abort(): void;
}

/** A watch with no byte (event, bookmark) for this long is taken as a dead path and ended (client-go and client-node: 30 s). */
export const WATCH_IDLE_TIMEOUT_MS = 30_000;

/** The watch ended by itself after this long without a byte: a black-holed connection. */
export class WatchIdleTimeout extends Error {
  constructor(path: string) {
    super(`watch ${path}: nothing received for ${WATCH_IDLE_TIMEOUT_MS / 1000} s`);
    this.name = 'TimeoutError';
  }
}

function queryString(query: Record<string, string | number | boolean | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.on('error', reject);
  });
}

export class KubeClient {
  private readonly agent: Agent;
  private readonly url: URL;

  constructor(readonly connection: ApiConnection) {
    this.url = new URL(connection.server);
    if (this.url.protocol !== 'https:') throw new Error(`API server ${connection.server}: only https:// is supported`);
    this.agent = new Agent({
      keepAlive: true,
      rejectUnauthorized: connection.rejectUnauthorized,
      ...(connection.ca ? { ca: connection.ca } : {}),
      ...(connection.cert ? { cert: connection.cert } : {}),
      ...(connection.key ? { key: connection.key } : {}),
      ...(connection.servername ? { servername: connection.servername } : {}),
    });
  }

  get server(): string {
    return this.connection.server;
  }

  /** One API call with a JSON answer; every call but a watch goes through here. */
  async request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const what = `${method} ${path.split('?')[0]}`;
    const timeoutMs = this.connection.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    let request: ReturnType<typeof httpsRequest> | null = null;
    const timeout = new Error(`${what}: no answer from the API server within ${timeoutMs / 1000} s`);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      request?.destroy(timeout);
    }, timeoutMs);
    timer.unref();
    try {
      const response = await this.send(method, path, payload, (started) => (request = started));
      const text = await readBody(response);
      if (response.statusCode === undefined || response.statusCode < 200 || response.statusCode > 299)
        throw new ApiError(response.statusCode ?? 0, text, what);
      return JSON.parse(text) as T;
    } catch (error) {
      // Ended mid-answer, the response reports only "aborted": say why.
      throw timedOut ? timeout : error;
    } finally {
      clearTimeout(timer);
    }
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  list<T>(path: string, options: Selectors & { limit?: number } = {}): Promise<ObjectList<T>> {
    return this.request<ObjectList<T>>('GET', path + queryString({ ...options }));
  }

  create<T>(collectionPath: string, body: T): Promise<T> {
    return this.request<T>('POST', collectionPath, body);
  }

  /** PUT: the body's metadata.resourceVersion makes it conditional (409 Conflict when the object moved on). */
  replace<T>(path: string, body: T, query: Record<string, string> = {}): Promise<T> {
    return this.request<T>('PUT', path + queryString(query), body);
  }

  /**
   * Watches a collection from `resourceVersion` with bookmarks. `onEstablished` when the server answered 200; `onEvent`
   * for each event; `done` once when the watch ended: null when the server closed it, else the error (an ApiError for
   * a refused request, WatchIdleTimeout for a silent connection, the socket's error).
   */
  watch(
    path: string,
    query: Selectors & { resourceVersion: string },
    handlers: {
      onEstablished: () => void;
      onEvent: (type: WatchEventType, object: unknown) => void;
      done: (error: Error | null) => void;
    },
  ): Watching {
    let ended = false;
    let request: ReturnType<typeof httpsRequest> | null = null;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error: Error | null) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      request?.destroy();
      handlers.done(error);
    };
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(new WatchIdleTimeout(path)), WATCH_IDLE_TIMEOUT_MS);
      timer.unref();
    };
    idle();
    const fullPath = path + queryString({ ...query, watch: true, allowWatchBookmarks: true });
    this.send('GET', fullPath, undefined, (started) => (request = started)).then(
      async (response) => {
        if (ended) return void response.destroy();
        if (response.statusCode !== 200) {
          const text = await readBody(response).catch(() => '');
          return finish(new ApiError(response.statusCode ?? 0, text, `watch ${path}`));
        }
        idle();
        handlers.onEstablished();
        response.on('data', idle);
        response.on('error', (error) => finish(error));
        response.on('close', () => finish(null));
        const lines = createInterface({ input: response, crlfDelay: Infinity });
        // readline re-emits its input's errors (a reset or aborted response): handled above.
        lines.on('error', () => {});
        lines.on('line', (line) => {
          if (ended || line === '') return;
          let event: { type?: WatchEventType; object?: unknown };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            return finish(new Error(`watch ${path}: not an event: ${line.slice(0, 200)}`));
          }
          if (event.type !== undefined) handlers.onEvent(event.type, event.object);
        });
      },
      (error: Error) => finish(error),
    );
    return {
      abort: () => {
        ended = true;
        clearTimeout(timer);
        request?.destroy();
      },
    };
  }

  /** Closes idle keep-alive connections (the agent stops). */
  close(): void {
    this.agent.destroy();
  }

  private send(
    method: string,
    path: string,
    payload: string | undefined,
    started?: (request: ReturnType<typeof httpsRequest>) => void,
  ): Promise<IncomingMessage> {
    // Built inside the executor: a token that cannot be read (a tokenFile mid-rewrite) rejects this request.
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: 'application/json' };
      const token = this.connection.token?.();
      if (token !== undefined) headers.Authorization = `Bearer ${token}`;
      if (payload !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(payload));
      }
      const options: RequestOptions = {
        method,
        host: this.url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: this.url.port === '' ? 443 : Number(this.url.port),
        path: this.url.pathname.replace(/\/$/, '') + path,
        headers,
        agent: this.agent,
        ...(this.connection.socketPath ? { socketPath: this.connection.socketPath } : {}),
      };
      const request = httpsRequest(options, resolve);
      request.on('error', reject);
      started?.(request);
      request.end(payload);
    });
  }
}

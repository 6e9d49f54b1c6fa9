// Local control socket: `egressguard status` asks the running agent over a Unix socket (root-only, mode 0600), and
// `egressguard observe` follows its decisions: recent history from the agent's ring, then every new record, one JSON
// line each, until the observer disconnects. A slow observer never slows the agent: past a bounded backlog its
// records are dropped and the next line it gets says how many.

import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { parseObserveFilter, recordMatches, type DecisionHistory, type ObservedRecord } from '../events/history.js';

export interface ControlHandlers {
  status(): unknown;
  /** The rules in force per workload, as the datapath has them (RulesetSnapshot): for `policy explain`. */
  ruleset(): unknown;
  reload(): void;
  history: DecisionHistory;
}

export interface ObserveRequest {
  command: 'observe';
  filter?: unknown;
  /** Records from history first (default 0). */
  last?: number;
  /** Keep the connection and stream new records (default true). */
  follow?: boolean;
}

type Request = { command: 'status' } | { command: 'ruleset' } | { command: 'reload' } | ObserveRequest;

/** Bytes an observer may have unread before its records are dropped (and counted). */
const OBSERVER_BACKLOG_BYTES = 1 << 20;

/** One observe line: the record's own fields under its kind, as the native JSON sink writes them. */
export function observedLine(record: ObservedRecord): string {
  return JSON.stringify(
    record.kind === 'flow' ? { kind: 'flow', ...record.event } : { ...record.notice, kind: 'notice', notice: record.notice.kind },
  );
}

function parseRequest(line: string): Request | null {
  try {
    const parsed: unknown = JSON.parse(line);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Request) : null;
  } catch {
    return null;
  }
}

export class ControlServer {
  private server: Server | null = null;
  private readonly observers = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly handlers: ControlHandlers,
  ) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    if (existsSync(this.path)) unlinkSync(this.path);
    const server = createServer((socket) => {
      let buffered = '';
      socket.setEncoding('utf8');
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        if (buffered.length > 65536) return socket.destroy();
        const newline = buffered.indexOf('\n');
        if (newline < 0) return;
        socket.removeAllListeners('data');
        const line = buffered.slice(0, newline);
        const request = parseRequest(line);
        if (request !== null && request.command === 'observe') return this.observe(socket, request);
        socket.end(`${JSON.stringify(this.answer(request))}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  private answer(request: Request | null): unknown {
    if (request === null) return { error: 'request is not a JSON object' };
    switch (request.command) {
      case 'status':
        return { ok: true, status: this.handlers.status() };
      case 'ruleset':
        return { ok: true, ruleset: this.handlers.ruleset() };
      case 'reload':
        this.handlers.reload();
        return { ok: true };
      default:
        return { error: `unknown command; use "status", "ruleset", "reload" or "observe"` };
    }
  }

  private observe(socket: Socket, request: ObserveRequest): void {
    const filter = parseObserveFilter(request.filter);
    const last = request.last ?? 0;
    if (typeof filter === 'string' || !Number.isSafeInteger(last) || last < 0) {
      const error = typeof filter === 'string' ? filter : 'last must be a non-negative integer';
      socket.end(`${JSON.stringify({ error })}\n`);
      return;
    }
    const history = this.handlers.history;
    const lines = history.last(last, filter).map(observedLine);
    socket.write(lines.map((line) => `${line}\n`).join(''));
    if (request.follow === false) {
      socket.end();
      return;
    }
    let dropped = 0;
    const unsubscribe = history.subscribe((record) => {
      if (!recordMatches(filter, record)) return;
      if (socket.writableLength > OBSERVER_BACKLOG_BYTES) {
        dropped++;
        return;
      }
      if (dropped > 0) {
        socket.write(`${JSON.stringify({ kind: 'notice', notice: 'observer-dropped', count: dropped, time: new Date().toISOString() })}\n`);
        dropped = 0;
      }
      socket.write(`${observedLine(record)}\n`);
    });
    this.observers.add(socket);
    socket.on('close', () => {
      unsubscribe();
      this.observers.delete(socket);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    // Destroyed, not ended: an observer that never closes its side must not hold up the agent's stop.
    for (const observer of this.observers) observer.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (existsSync(this.path)) unlinkSync(this.path);
  }
}

/** Send one request to a running agent and return its answer. */
export function controlRequest(
  path: string,
  request: { command: 'status' } | { command: 'ruleset' } | { command: 'reload' },
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the agent at ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? new Error(`no agent is running at ${path} (start one with: egressguard run --config FILE)`)
          : error,
      );
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(reply) as Record<string, unknown>);
      } catch {
        reject(new Error(`the agent at ${path} sent an unreadable answer`));
      }
    });
  });
}

/**
 * Follow a running agent's decisions: send an observe request and call `onLine` with each JSON line it streams.
 * Resolves when the agent ends the stream (history only, or the agent stopped); `signal` ends it from this side.
 */
export function observeStream(
  path: string,
  request: ObserveRequest,
  onLine: (line: Record<string, unknown>) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    signal?.addEventListener('abort', () => {
      socket.destroy();
      resolve();
    });
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line) as Record<string, unknown>;
        } catch {
          socket.destroy();
          return reject(new Error(`the agent at ${path} sent an unreadable line`));
        }
        if (typeof parsed.error === 'string') {
          socket.destroy();
          return reject(new Error(parsed.error));
        }
        onLine(parsed);
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? new Error(`no agent is running at ${path} (start one with: egressguard run --config FILE)`)
          : error,
      ),
    );
    socket.on('end', () => resolve());
  });
}

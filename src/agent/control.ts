// Local control socket: `egressguard status` asks the running agent over a Unix socket (root-only, mode 0600).

import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { dirname } from 'node:path';

export interface ControlHandlers {
  status(): unknown;
  reload(): void;
}

type Request = { command: 'status' } | { command: 'reload' };

export class ControlServer {
  private server: Server | null = null;

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
        socket.end(`${JSON.stringify(this.answer(buffered.slice(0, newline)))}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  private answer(line: string): unknown {
    let request: Request;
    try {
      request = JSON.parse(line) as Request;
    } catch {
      return { error: 'request is not JSON' };
    }
    switch (request.command) {
      case 'status':
        return { ok: true, status: this.handlers.status() };
      case 'reload':
        this.handlers.reload();
        return { ok: true };
      default:
        return { error: `unknown command; use "status" or "reload"` };
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (existsSync(this.path)) unlinkSync(this.path);
  }
}

/** Send one request to a running agent and return its answer. */
export function controlRequest(path: string, request: Request, timeoutMs = 5000): Promise<Record<string, unknown>> {
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

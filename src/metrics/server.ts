// The /metrics endpoint: plain HTTP on the configured address (loopback by default: the numbers name policies and
// namespaces). GET /metrics, and the probes a kubelet uses: /healthz (the agent answers: liveness) and /readyz (it
// enforces: readiness, 503 with the reason otherwise). Anything else is a 404 or 405, and a scrape that fails is a
// 500 with the reason. The server starts only once the agent enforces, so a probe never passes during start.
import { createServer, type Server } from 'node:http';
import type { AgentMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  /** One line: what is enforced, or why not. */
  detail: string;
}

const PATHS = ['/metrics', '/healthz', '/readyz'];

export class MetricsServer {
  private server: Server | null = null;

  constructor(
    private readonly listen: { host: string; port: number },
    private readonly metrics: AgentMetrics,
    private readonly readiness: () => Readiness,
  ) {}

  /** Resolves once listening; rejects with the address in the message when it cannot bind. */
  async start(): Promise<void> {
    const server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (path === undefined || !PATHS.includes(path)) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
        return;
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\n');
        return;
      }
      if (path === '/healthz') {
        response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      }
      if (path === '/readyz') {
        const { ready, detail } = this.readiness();
        response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${detail}\n`);
        return;
      }
      this.metrics.exposition().then(
        ({ contentType, body }) =>
          response.writeHead(200, { 'content-type': contentType }).end(request.method === 'HEAD' ? undefined : body),
        (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${String(error)}\n`),
      );
    });
    const { host, port } = this.listen;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `metrics.listen ${host}:${port}: cannot listen (${error.code ?? error.message}); pick another address or set metrics.enabled: false`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    this.server = server;
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// A real Prometheus server (Debian's `prometheus`) in a lab's node namespace, scraping the agent there: its own
// config and data directory under the lab's work dir, listening on the namespace's loopback, ended by its PID.
// Queries go over its HTTP API from a process in the same namespace.
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Lab } from '../../lab/lab.js';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Runs in the node namespace: GET the URL in EG_ARGS and print {status, body}. */
const FETCH_SCRIPT = `
const url = JSON.parse(process.env.EG_ARGS);
fetch(url).then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })),
  (e) => console.log(JSON.stringify({ status: 0, body: String(e) })));
`;

export class PrometheusServer {
  private constructor(
    private readonly lab: Lab,
    private readonly child: ChildProcess,
    readonly port: number,
    readonly logPath: string,
  ) {}

  /**
   * Start Prometheus scraping `target` (host:port in the node namespace) every second. The port is free by
   * construction: the lab's node namespace is new and only the agent (on its metrics port) listens there.
   */
  static async start(lab: Lab, target: string, port = 9090): Promise<PrometheusServer> {
    const dir = join(lab.workDir, 'prometheus');
    mkdirSync(join(dir, 'data'), { recursive: true });
    const configPath = join(dir, 'prometheus.yml');
    writeFileSync(
      configPath,
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        scrape_configs: [{ job_name: 'egressguard', static_configs: [{ targets: [target] }] }],
      }),
    );
    const logPath = join(dir, 'prometheus.log');
    const log = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = lab.spawnInNode(
        ['prometheus', `--config.file=${configPath}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
        { stdio: ['ignore', log, log] },
      );
    } finally {
      closeSync(log);
    }
    const server = new PrometheusServer(lab, child, port, logPath);
    await server.waitUntil('Prometheus ready', async () => (await server.get('/-/ready')).status === 200, 30_000);
    return server;
  }

  private async get(path: string): Promise<{ status: number; body: string }> {
    const result = await this.lab.runInNode([process.execPath, '-e', FETCH_SCRIPT], {
      env: { ...process.env, EG_ARGS: JSON.stringify(`http://127.0.0.1:${this.port}${path}`) },
    });
    return JSON.parse(result.stdout) as { status: number; body: string };
  }

  /** An instant PromQL query; throws with Prometheus' own error for a bad expression. */
  async query(expr: string): Promise<PromSample[]> {
    const { status, body } = await this.get(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    const parsed = JSON.parse(body) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
    if (status !== 200 || parsed.status !== 'success') throw new Error(`PromQL ${expr}: HTTP ${status} ${parsed.error ?? body}`);
    return parsed.data?.result ?? [];
  }

  /** The single value of a scalar-like query (one sample), or null when there is none. */
  async value(expr: string): Promise<number | null> {
    const result = await this.query(expr);
    return result.length === 0 ? null : Number(result[0]!.value[1]);
  }

  async waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`prometheus exited while waiting for ${what}; see ${this.logPath}`);
      try {
        if (await check()) return;
      } catch {
        // Not up yet, or no data yet.
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; see ${this.logPath}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Wait until `expr` returns exactly `expected` (Prometheus scrapes once a second). */
  async waitForValue(expr: string, expected: number, timeoutMs = 20_000): Promise<void> {
    let last: number | null = null;
    await this.waitUntil(
      `${expr} == ${expected}`,
      async () => {
        last = await this.value(expr);
        return last === expected;
      },
      timeoutMs,
    ).catch((error: Error) => {
      throw new Error(`${error.message} (last value ${last})`);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await exited;
  }
}

// The DNS proxy as the agent runs it: in a worker thread (dns-proxy-worker.ts), off the agent's main event loop. The main
// thread binds the listening sockets and keeps them; the worker serves duplicates of their descriptors. The main
// thread stays the datapath's only writer: it learns what the worker asks (checking the rules are still in force,
// since the worker may have decided under the previous policy) and tells it when the kernel holds the addresses;
// the worker releases the answer only then. When the worker dies, the sockets stay open in the main thread and a new
// worker is started on them: queries that arrive meanwhile wait in the socket, none is answered without a worker.
import { Worker } from 'node:worker_threads';
import type { InheritedSocket } from '../dns/activation.js';
import { rulesInForce, type DnsPolicySnapshot } from './dns-policy.js';
import { zeroStats, type ListeningAddress } from '../dns/proxy.js';
import type { DnsDecisionEvent, DnsProxyStats } from '../dns/types.js';
import { unpackEvent, type FromWorker, type ProxyWorkerData, type ToWorker, type WorkerProxySettings } from './dns-worker-protocol.js';

export interface SocketFunctions {
  bindDnsSocket(kind: InheritedSocket['kind'], address: string, port: number): { fd: number; port: number };
  dupFd(fd: number): number;
  closeFd(fd: number): void;
}

/** Learns for the worker; returns the expiry (process.hrtime.bigint() clock) the kernel holds the addresses until. */
export type HostLearn = (workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number, name: string) => bigint;

export interface DnsProxyHostOptions {
  settings: WorkerProxySettings;
  /** The policy the worker starts with; later ones through setPolicy(). */
  policy: DnsPolicySnapshot;
  learn: HostLearn;
  onEvents: (events: DnsDecisionEvent[]) => void;
  /** A worker ended without being asked to; `restartInMs` is when the next one starts. */
  onWorkerExit?: (reason: string, restartInMs: number) => void;
  sockets: SocketFunctions;
  /** Sockets a holder passed in (activation.ts): used instead of binding. The host owns them from here on. */
  inherited?: InheritedSocket[];
}

const WORKER_URL = new URL('./dns-proxy-worker.js', import.meta.url);
/** A worker that dies within this of starting counts as failing again: restarts back off up to MAX_RESTART_DELAY_MS. */
const QUICK_DEATH_MS = 5000;
const MAX_RESTART_DELAY_MS = 5000;

export class DnsProxyHost {
  private readonly sockets: InheritedSocket[] = [];
  private policy: DnsPolicySnapshot;
  private inForce: Map<number, Set<number>>;
  private worker: Worker | null = null;
  private listening: ListeningAddress[] = [];
  /** Counters of the workers that ended, plus the running one's latest. */
  private endedStats: DnsProxyStats = zeroStats();
  private currentStats: DnsProxyStats = zeroStats();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartDelayMs = 0;
  private workerRestarts = 0;

  constructor(private readonly options: DnsProxyHostOptions) {
    this.policy = options.policy;
    this.inForce = rulesInForce(options.policy);
  }

  async start(): Promise<void> {
    const inherited = this.options.inherited ?? [];
    if (inherited.length > 0) this.sockets.push(...inherited);
    else this.bindAll();
    try {
      this.listening = await this.startWorker();
    } catch (error) {
      this.closeSockets();
      throw error;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    const worker = this.worker;
    if (worker !== null) {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'stop' } satisfies ToWorker);
      const forced = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(forced);
    }
    this.closeSockets();
    this.listening = [];
  }

  /** The policy for the next decisions; a learn decided under an older one is refused unless its rules are still in force. */
  setPolicy(policy: DnsPolicySnapshot): void {
    this.policy = policy;
    this.inForce = rulesInForce(policy);
    this.worker?.postMessage({ type: 'policy', policy } satisfies ToWorker);
  }

  addresses(): ListeningAddress[] {
    return this.listening.map((entry) => ({ ...entry }));
  }

  stats(): DnsProxyStats {
    const sum = { ...this.endedStats };
    for (const key of Object.keys(sum) as (keyof DnsProxyStats)[]) sum[key] += this.currentStats[key];
    // A level, not a count: an ended worker's connections are closed.
    return { ...sum, tcpConnectionsOpen: this.currentStats.tcpConnectionsOpen };
  }

  /** End the running worker as a crash would; the host starts the next one as after a crash. */
  async terminateWorker(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Workers started again after one ended unasked. */
  get restarts(): number {
    return this.workerRestarts;
  }

  /** The running worker's thread id (tests end it to prove the restart); null between workers. */
  get workerThreadId(): number | null {
    return this.worker?.threadId ?? null;
  }

  private bindAll(): void {
    const { listen, port } = this.options.settings;
    let boundPort = port;
    try {
      for (const address of listen) {
        const family = address.includes(':') ? 6 : 4;
        const udp = this.options.sockets.bindDnsSocket(`udp${family}`, address, boundPort);
        this.sockets.push({ fd: udp.fd, kind: `udp${family}` });
        boundPort = udp.port;
        const tcp = this.options.sockets.bindDnsSocket(`tcp${family}`, address, boundPort);
        this.sockets.push({ fd: tcp.fd, kind: `tcp${family}` });
      }
    } catch (error) {
      this.closeSockets();
      throw new Error(`DNS proxy: cannot listen on ${listen.join(', ')} port ${port}: ${(error as Error).message}`);
    }
  }

  private closeSockets(): void {
    for (const socket of this.sockets.splice(0)) {
      try {
        this.options.sockets.closeFd(socket.fd);
      } catch {
        // Already closed: nothing left to release.
      }
    }
  }

  /** Start a worker on duplicates of the sockets; resolves when it serves, rejects with its start error. */
  private startWorker(): Promise<ListeningAddress[]> {
    const copies = this.sockets.map((socket) => ({ fd: this.options.sockets.dupFd(socket.fd), kind: socket.kind }));
    const workerData: ProxyWorkerData = { settings: this.options.settings, sockets: copies, policy: this.policy };
    const worker = new Worker(WORKER_URL, { workerData });
    this.worker = worker;
    const startedMs = Date.now();
    let ready = false;
    this.currentStats = zeroStats();
    return new Promise((resolve, reject) => {
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            ready = true;
            // A policy set while the worker started may have missed it.
            worker.postMessage({ type: 'policy', policy: this.policy } satisfies ToWorker);
            return resolve(message.addresses);
          case 'failed':
            return reject(new Error(message.error));
          case 'learn':
            return worker.postMessage(this.learnFor(message));
          case 'events':
            this.currentStats = message.stats;
            if (message.events.length > 0) this.options.onEvents(message.events.map(unpackEvent));
            return;
          case 'stopped':
            return;
        }
      });
      worker.on('error', (error) => {
        if (!ready) reject(error);
      });
      worker.on('exit', (code) => {
        // The worker's descriptors may still be open when it died before its proxy took them.
        if (!ready) for (const copy of copies) this.closeQuietly(copy.fd);
        if (this.worker === worker) this.worker = null;
        for (const key of Object.keys(this.endedStats) as (keyof DnsProxyStats)[]) this.endedStats[key] += this.currentStats[key];
        this.currentStats = zeroStats();
        if (!ready) return reject(new Error(`DNS proxy worker exited with code ${code} before serving`));
        if (this.stopping) return;
        this.restartDelayMs =
          Date.now() - startedMs < QUICK_DEATH_MS ? Math.min(Math.max(this.restartDelayMs * 2, 100), MAX_RESTART_DELAY_MS) : 0;
        this.options.onWorkerExit?.(`DNS proxy worker exited with code ${code}`, this.restartDelayMs);
        this.restartTimer = setTimeout(() => this.restart(), this.restartDelayMs);
      });
    });
  }

  private restart(): void {
    this.restartTimer = null;
    if (this.stopping) return;
    this.workerRestarts += 1;
    this.startWorker().then(
      (addresses) => (this.listening = addresses),
      (error: Error) => {
        // Keep trying: without a worker nothing is answered (queries wait in the sockets), so the node fails closed.
        this.restartDelayMs = Math.min(Math.max(this.restartDelayMs * 2, 100), MAX_RESTART_DELAY_MS);
        this.options.onWorkerExit?.(`DNS proxy worker failed to start: ${error.message}`, this.restartDelayMs);
        if (!this.stopping) this.restartTimer = setTimeout(() => this.restart(), this.restartDelayMs);
      },
    );
  }

  private closeQuietly(fd: number): void {
    try {
      this.options.sockets.closeFd(fd);
    } catch {
      // The worker's proxy closed it already.
    }
  }

  private learnFor(request: Extract<FromWorker, { type: 'learn' }>): ToWorker {
    const inForce = this.inForce.get(request.workloadId);
    const stale = request.ruleIds.filter((ruleId) => inForce?.has(ruleId) !== true);
    if (stale.length > 0) {
      return {
        type: 'learned',
        id: request.id,
        heldUntilNs: null,
        error: `the policy changed while answering (rule ids ${stale.join(', ')} no longer in force)`,
      };
    }
    try {
      const heldUntilNs = this.options.learn(request.workloadId, request.ruleIds, request.ips, request.ttlSeconds, request.name);
      return { type: 'learned', id: request.id, heldUntilNs, error: null };
    } catch (error) {
      return { type: 'learned', id: request.id, heldUntilNs: null, error: (error as Error).message };
    }
  }
}

// The DNS proxy as the agent runs it: in worker threads (dns-proxy-worker.ts), off the agent's main event loop. The main
// thread binds the listening sockets and keeps them; each worker serves its own duplicates of their descriptors (the
// kernel hands each datagram and connection to whichever worker reads first). The main thread stays the datapath's
// only writer and holds the per-name address cap, one for every worker: it learns what a worker asks (checking the
// rules are still in force, since the worker may have decided under the previous policy, and admitting addresses
// within the cap) and tells it when the kernel holds them; the worker releases the answer only then. The in-flight and
// TCP quotas are shared memory all workers count in (SharedQuota). Each worker keeps its own answer cache: sharing it
// would cost a cross-thread exchange per query, more than the upstream queries N caches add. When a worker dies, the
// sockets stay open in the main thread and a new worker is started on them: queries that arrive meanwhile are served
// by the other workers or wait in the socket; none is answered without a worker.
import { Worker } from 'node:worker_threads';
import type { InheritedSocket } from '../dns/activation.js';
import { AddressCap } from '../dns/address-cap.js';
import { rulesInForce, type DnsPolicySnapshot } from './dns-policy.js';
import { proxyQuotas, zeroStats, type ListeningAddress, type ProxyQuotas } from '../dns/proxy.js';
import { releaseWorker } from '../dns/shared-quota.js';
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
  /** Worker threads serving the sockets (config dns.workers). */
  workers: number;
  /** Live addresses one name may teach one workload, over every worker; extra addresses are not learned (config dns.maxIpsPerName). */
  maxIpsPerName: number;
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
const CAP_PRUNE_INTERVAL_MS = 60_000;

/** One worker's place: the worker running in it (null between workers) and its restart state. */
interface WorkerSlot {
  worker: Worker | null;
  /** The running worker's latest counters. */
  stats: DnsProxyStats;
  restartTimer: NodeJS.Timeout | null;
  restartDelayMs: number;
}

export class DnsProxyHost {
  private readonly sockets: InheritedSocket[] = [];
  private policy: DnsPolicySnapshot;
  private inForce: Map<number, Set<number>>;
  private readonly cap: AddressCap;
  private readonly quotas: Omit<ProxyQuotas, 'worker'>;
  private readonly slots: WorkerSlot[];
  private listening: ListeningAddress[] = [];
  /** Counters of the workers that ended. */
  private readonly endedStats: DnsProxyStats = zeroStats();
  private stopping = false;
  private workerRestarts = 0;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(private readonly options: DnsProxyHostOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1)
      throw new Error(`DNS proxy: workers ${options.workers} is not a positive integer`);
    this.policy = options.policy;
    this.inForce = rulesInForce(options.policy);
    this.cap = new AddressCap(options.maxIpsPerName);
    this.quotas = proxyQuotas(options.workers);
    this.slots = Array.from({ length: options.workers }, () => ({
      worker: null,
      stats: zeroStats(),
      restartTimer: null,
      restartDelayMs: 0,
    }));
    this.pruneTimer = setInterval(() => this.cap.prune(Date.now()), CAP_PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  async start(): Promise<void> {
    const inherited = this.options.inherited ?? [];
    if (inherited.length > 0) this.sockets.push(...inherited);
    else this.bindAll();
    const started = await Promise.allSettled(this.slots.map((_, index) => this.startWorker(index)));
    const failed = started.find((result) => result.status === 'rejected');
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
    this.listening = (started[0] as PromiseFulfilledResult<ListeningAddress[]>).value;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.pruneTimer);
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
        const worker = slot.worker;
        if (worker === null) return;
        const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        worker.postMessage({ type: 'stop' } satisfies ToWorker);
        const forced = setTimeout(() => void worker.terminate(), 5000);
        await exited;
        clearTimeout(forced);
      }),
    );
    this.closeSockets();
    this.listening = [];
  }

  /** The policy for the next decisions; a learn decided under an older one is refused unless its rules are still in force. */
  setPolicy(policy: DnsPolicySnapshot): void {
    this.policy = policy;
    this.inForce = rulesInForce(policy);
    for (const slot of this.slots) slot.worker?.postMessage({ type: 'policy', policy } satisfies ToWorker);
  }

  addresses(): ListeningAddress[] {
    return this.listening.map((entry) => ({ ...entry }));
  }

  stats(): DnsProxyStats {
    const sum = { ...this.endedStats, tcpConnectionsOpen: 0 };
    // tcpConnectionsOpen is a level, not a count: an ended worker's connections are closed, so only running ones add.
    for (const slot of this.slots) for (const key of Object.keys(sum) as (keyof DnsProxyStats)[]) sum[key] += slot.stats[key];
    return sum;
  }

  /** End one running worker as a crash would; the host starts the next one in its place as after a crash. */
  async terminateWorker(index = 0): Promise<void> {
    await this.slots[index]?.worker?.terminate();
  }

  /** Workers started again after one ended unasked. */
  get restarts(): number {
    return this.workerRestarts;
  }

  /** The running workers' thread ids (tests end one to prove the restart); null for a place between workers. */
  get workerThreadIds(): (number | null)[] {
    return this.slots.map((slot) => slot.worker?.threadId ?? null);
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

  /** Start a worker in place `index` on duplicates of the sockets; resolves when it serves, rejects with its start error. */
  private startWorker(index: number): Promise<ListeningAddress[]> {
    const slot = this.slots[index] as WorkerSlot;
    const copies = this.sockets.map((socket) => ({ fd: this.options.sockets.dupFd(socket.fd), kind: socket.kind }));
    const workerData: ProxyWorkerData = {
      settings: this.options.settings,
      quotas: { ...this.quotas, worker: index },
      sockets: copies,
      policy: this.policy,
    };
    const worker = new Worker(WORKER_URL, { workerData });
    slot.worker = worker;
    slot.stats = zeroStats();
    const startedMs = Date.now();
    let ready = false;
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
            slot.stats = message.stats;
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
        if (slot.worker === worker) slot.worker = null;
        // What its queries and connections held in the shared quotas is free again: they ended with it.
        releaseWorker(this.quotas.inflight, index);
        releaseWorker(this.quotas.tcp, index);
        for (const key of Object.keys(this.endedStats) as (keyof DnsProxyStats)[]) this.endedStats[key] += slot.stats[key];
        slot.stats = zeroStats();
        if (!ready) return reject(new Error(`DNS proxy worker exited with code ${code} before serving`));
        if (this.stopping) return;
        slot.restartDelayMs =
          Date.now() - startedMs < QUICK_DEATH_MS ? Math.min(Math.max(slot.restartDelayMs * 2, 100), MAX_RESTART_DELAY_MS) : 0;
        this.options.onWorkerExit?.(`DNS proxy worker exited with code ${code}`, slot.restartDelayMs);
        slot.restartTimer = setTimeout(() => this.restart(index), slot.restartDelayMs);
      });
    });
  }

  private restart(index: number): void {
    const slot = this.slots[index] as WorkerSlot;
    slot.restartTimer = null;
    if (this.stopping) return;
    this.workerRestarts += 1;
    this.startWorker(index).then(
      (addresses) => (this.listening = addresses),
      (error: Error) => {
        // Keep trying: without a worker nothing is answered (queries wait in the sockets), so the node fails closed.
        slot.restartDelayMs = Math.min(Math.max(slot.restartDelayMs * 2, 100), MAX_RESTART_DELAY_MS);
        this.options.onWorkerExit?.(`DNS proxy worker failed to start: ${error.message}`, slot.restartDelayMs);
        if (!this.stopping) slot.restartTimer = setTimeout(() => this.restart(index), slot.restartDelayMs);
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
      // One cap for every worker: this thread sees each address a worker would teach the kernel. A learn that fails
      // keeps what it admitted counted (some of it may be in the kernel already): the cap errs closed.
      const { workloadId, ruleIds, ips, ttlSeconds, name } = request;
      const { admitted, rejected } = this.cap.admit(workloadId, name, ips, ttlSeconds, Date.now());
      const heldUntilNs = admitted.length === 0 ? 0n : this.options.learn(workloadId, ruleIds, admitted, ttlSeconds, name);
      return { type: 'learned', id: request.id, heldUntilNs, overCap: rejected, error: null };
    } catch (error) {
      return { type: 'learned', id: request.id, heldUntilNs: null, error: (error as Error).message };
    }
  }
}

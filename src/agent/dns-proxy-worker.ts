// The DNS proxy's worker thread: a DnsProxy on its own event loop (and core), so queries are not held up by the
// agent's main loop (events, metrics, reconciling, status) nor the main loop by them. It decides from the policy
// snapshots the main thread sends. Learning goes to the main thread, the datapath's only writer, and the answer
// waits for its confirmation, unless the main thread already confirmed the kernel holds every address long enough
// (ConfirmedLearning). Decision events and counters go to the main thread in batches (EVENT_BATCH_MS).
import { parentPort, workerData } from 'node:worker_threads';
import { ConfirmedLearning } from '../dns/confirmed-learning.js';
import { kernelLifetimeSeconds } from '../dns/lifetime.js';
import { snapshotOracle } from './dns-policy.js';
import { DnsProxy } from '../dns/proxy.js';
import type { DnsDecisionEvent, DnsPolicyOracle, LearnOutcome } from '../dns/types.js';
import { packEvent, type FromWorker, type PackedEvent, type ProxyWorkerData, type ToWorker } from './dns-worker-protocol.js';

const NS_PER_SECOND = 1_000_000_000n;
/**
 * Events wait up to this long, or until this many are pending, and go in one message: fewer wake-ups of the main
 * thread than a message per loop turn at moderate rates. The main thread names learned addresses when it learns them,
 * so a later event does not delay the names of kernel events.
 */
const EVENT_BATCH_MS = 10;
const EVENT_BATCH_SIZE = 512;
/** Counters also go out when no query produces an event (dropped, malformed, spoofed datagrams). */
const STATS_INTERVAL_MS = 1000;

if (parentPort === null) throw new Error('dns-proxy-worker.js runs only as a worker thread (DnsProxyHost starts it)');
const port = parentPort;
const data = workerData as ProxyWorkerData;
const post = (message: FromWorker): void => port.postMessage(message);

let oracle: DnsPolicyOracle = snapshotOracle(data.policy);
const confirmed = new ConfirmedLearning();
interface PendingLearn {
  workloadId: number;
  ruleIds: number[];
  ips: string[];
  resolve: (outcome: LearnOutcome) => void;
  reject: (error: Error) => void;
}
/** Learns the main thread has not answered yet, by request id. */
const pendingLearns = new Map<number, PendingLearn>();
let nextLearnId = 1;
let batch: PackedEvent[] = [];
let flushTimer: NodeJS.Timeout | null = null;
/** An answer whose addresses the kernel already holds long enough was admitted by the cap when they were learned. */
const NOTHING_OVER_CAP: LearnOutcome = Object.freeze({ overCap: [] });

const proxy = new DnsProxy({
  ...data.settings,
  inherited: data.sockets,
  quotas: data.quotas,
  // Every question goes to the newest snapshot, workloadsKnown included: without it a new agent's worker refused the
  // pods it had not heard of yet instead of leaving their queries unanswered (k8s-dns-restart.test.ts, replace).
  oracle: {
    workloadFor: (ip) => oracle.workloadFor(ip),
    decide: (workload, name) => oracle.decide(workload, name),
    workloadsKnown: () => oracle.workloadsKnown?.() !== false,
  },
  sink: {
    learn(workloadId, ruleIds, ips, ttlSeconds, name) {
      const neededUntilNs = process.hrtime.bigint() + BigInt(kernelLifetimeSeconds(ttlSeconds, data.settings.lifetime)) * NS_PER_SECOND;
      if (confirmed.covers(workloadId, ruleIds, ips, neededUntilNs)) return NOTHING_OVER_CAP;
      const id = nextLearnId++;
      return new Promise<LearnOutcome>((resolve, reject) => {
        pendingLearns.set(id, { workloadId, ruleIds, ips, resolve, reject });
        post({ type: 'learn', id, workloadId, ruleIds, ips, ttlSeconds, name });
      });
    },
  },
  onEvent: (event) => {
    if (batch.length === 0) flushTimer = setTimeout(flush, EVENT_BATCH_MS);
    batch.push(packEvent(event));
    // An answer nothing was learned for (no rule to learn it for: discovery mode's default permit, a baseline permit)
    // is named to the main thread by this event alone, so it goes now, before the answer is released: the workload's
    // connect to the address comes right after, and its kernel event must find the name.
    if (batch.length >= EVENT_BATCH_SIZE || namesUnlearnedAnswer(event)) flush();
  },
});

function namesUnlearnedAnswer(event: DnsDecisionEvent): boolean {
  return event.verdict === 'permitted' && event.answers.length > 0 && event.learnedTtlSeconds === null;
}

function flush(): void {
  if (flushTimer !== null) clearTimeout(flushTimer);
  flushTimer = null;
  const events = batch;
  batch = [];
  post({ type: 'events', events, stats: proxy.stats() });
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'policy':
      oracle = snapshotOracle(message.policy);
      confirmed.clear();
      return;
    case 'learned': {
      const waiting = pendingLearns.get(message.id);
      if (waiting === undefined) return;
      pendingLearns.delete(message.id);
      if (message.error !== null) return waiting.reject(new Error(message.error));
      const overCap = new Set(message.overCap);
      const learned = overCap.size === 0 ? waiting.ips : waiting.ips.filter((ip) => !overCap.has(ip));
      confirmed.record(waiting.workloadId, waiting.ruleIds, learned, message.heldUntilNs);
      return waiting.resolve({ overCap: message.overCap });
    }
    case 'stop':
      void stop();
      return;
  }
});

const statsTimer = setInterval(() => {
  if (batch.length === 0) flush();
}, STATS_INTERVAL_MS);

async function stop(): Promise<void> {
  clearInterval(statsTimer);
  await proxy.stop();
  if (batch.length > 0) flush();
  post({ type: 'stopped' });
  port.close();
}

try {
  await proxy.start();
  post({ type: 'ready', addresses: proxy.addresses() });
} catch (error) {
  clearInterval(statsTimer);
  post({ type: 'failed', error: (error as Error).message });
  port.close();
}

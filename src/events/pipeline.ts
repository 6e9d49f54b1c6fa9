// Event pipeline: attributes every decision to one FlowEvent, aggregates floods and fans out to the sinks.
//
// Aggregation: per key (workload, destination ip/port/protocol, fqdn, evidence or decision, learned name, first flight,
// layer, verdict, tier, policy, rule) the first
// occurrence is written at once (a SOC sees the first attempt immediately); identical ones within `windowMs` of it
// are counted and written as one event with `count` when the window closes (the SOC sees the volume). Fields
// outside the key (process, DNS query type) of that counted event are those of the first repeat. The FQDN is in the key
// so that each distinct name a workload tried (a DNS-tunnelling burst, say) is on record.
// Bounded: at most `maxOpenAggregates` keys are tracked; events for new keys beyond that are dropped, counted and
// reported through a notice at most once per window. Kernel ring-buffer losses and malformed ring-buffer records
// are counted apart and each reported through its own notice. Events the kernel's per-workload rate limit suppressed
// (reportSuppressed) are summed per workload and reported as one `events-suppressed` notice per workload and window.
import { hostname } from 'node:os';
import { newEventId } from './ids.js';
import type { PipelineNotice, Sink } from './sink.js';
import type { FlowEvent } from './types.js';

export interface EventPipelineOptions {
  /** Aggregation window in milliseconds (the agent's events.aggregateWindowMs). */
  windowMs: number;
  /** Cap on keys aggregated at once (default 10000). */
  maxOpenAggregates?: number;
  sinks?: Sink[];
  /** Node name carried by notices (default: os.hostname()). */
  node?: string;
  /** Monotonic milliseconds; injectable for tests (default: performance.now). */
  clock?: () => number;
}

export interface EventPipelineStats {
  /** Occurrences pushed (an input event with count n counts n). */
  received: number;
  /** Events written to the sinks. */
  emitted: number;
  /** Occurrences folded into a counted event instead of being written one by one. */
  aggregated: number;
  /** Occurrences dropped because maxOpenAggregates keys were already open. */
  droppedByLimit: number;
  /** Ring-buffer events the kernel reported lost (reportKernelLoss). */
  kernelEventsLost: number;
  /** Ring-buffer records that could not be decoded (reportMalformedKernelEvents). */
  kernelEventsMalformed: number;
  /** Events the kernel's per-workload rate limit suppressed, as reported by the events that followed them. */
  suppressedByRateLimit: number;
  openAggregates: number;
}

interface OpenAggregate {
  deadline: number;
  repeats: number;
  /** First repeat after the immediately written occurrence: the template of the counted event. */
  firstRepeat: FlowEvent | null;
}

export const DEFAULT_MAX_OPEN_AGGREGATES = 10_000;

function aggregationKey(event: FlowEvent): string {
  const { workload, destination, policy } = event;
  return JSON.stringify([
    workload.namespace,
    workload.name,
    workload.cgroupId,
    destination.ip,
    destination.port,
    destination.protocol,
    event.fqdn,
    event.evidence === true,
    event.learnedName ?? null,
    event.firstFlight ?? null,
    event.layer,
    event.verdict,
    event.tier,
    policy === null ? null : `${policy.namespace}/${policy.name}`,
    event.rule,
  ]);
}

function occurrencesIn(event: FlowEvent): number {
  return Number.isSafeInteger(event.count) && event.count > 1 ? event.count : 1;
}

export class EventPipeline {
  private readonly windowMs: number;
  private readonly maxOpenAggregates: number;
  private readonly node: string;
  private readonly clock: () => number;
  private readonly sinks: Sink[] = [];
  /** Insertion order is deadline order: every window has the same length and the clock is monotonic. */
  private readonly open = new Map<string, OpenAggregate>();
  private readonly counters = {
    received: 0,
    emitted: 0,
    aggregated: 0,
    droppedByLimit: 0,
    kernelEventsLost: 0,
    kernelEventsMalformed: 0,
    suppressedByRateLimit: 0,
  };
  /** Suppressed counts per workload (cgroup id) not yet reported, and when their notices are due. */
  private readonly suppressedSinceNotice = new Map<string, { workload: FlowEvent['workload']; count: number }>();
  private suppressedNoticeDue: number | null = null;
  private dropsSinceNotice = 0;
  private dropNoticeDue: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: EventPipelineOptions) {
    this.windowMs = options.windowMs;
    this.maxOpenAggregates = options.maxOpenAggregates ?? DEFAULT_MAX_OPEN_AGGREGATES;
    if (!Number.isFinite(this.windowMs) || this.windowMs <= 0)
      throw new Error(`event aggregation window must be > 0 ms, got ${this.windowMs}`);
    if (!Number.isSafeInteger(this.maxOpenAggregates) || this.maxOpenAggregates < 1) {
      throw new Error(`maxOpenAggregates must be a positive integer, got ${this.maxOpenAggregates}`);
    }
    this.node = options.node ?? hostname();
    this.clock = options.clock ?? (() => performance.now());
    for (const sink of options.sinks ?? []) this.addSink(sink);
  }

  addSink(sink: Sink): void {
    this.sinks.push(sink);
  }

  /** Accept one decision. `eventId` is assigned here (any given value is replaced); `count` defaults to 1. */
  push(event: FlowEvent): void {
    if (this.closed) throw new Error('event pipeline is closed');
    const occurrences = occurrencesIn(event);
    this.counters.received += occurrences;
    const key = aggregationKey(event);
    const aggregate = this.open.get(key);
    if (aggregate !== undefined) {
      aggregate.repeats += occurrences;
      aggregate.firstRepeat ??= event;
      this.counters.aggregated += occurrences;
      return;
    }
    const now = this.clock();
    if (this.open.size >= this.maxOpenAggregates) {
      this.counters.droppedByLimit += occurrences;
      this.dropsSinceNotice += occurrences;
      this.dropNoticeDue ??= now + this.windowMs;
      this.schedule();
      return;
    }
    this.open.set(key, { deadline: now + this.windowMs, repeats: 0, firstRepeat: null });
    this.emit(event, occurrences);
    this.schedule();
  }

  /**
   * Record `lost` more ring-buffer events lost by the kernel (the increase since the previous call) and report it
   * to every sink at once.
   */
  reportKernelLoss(lost: number): void {
    this.reportKernelEvents('kernel-events-lost', 'kernelEventsLost', lost);
  }

  /** Record `malformed` more ring-buffer records that could not be decoded, and report it to every sink at once. */
  reportMalformedKernelEvents(malformed: number): void {
    this.reportKernelEvents('kernel-events-malformed', 'kernelEventsMalformed', malformed);
  }

  /**
   * The kernel suppressed `count` events of `workload` before the one just pushed (its rate limit): count them and
   * report them, per workload, in one notice when the current window closes.
   */
  reportSuppressed(workload: FlowEvent['workload'], count: number): void {
    if (!Number.isSafeInteger(count) || count <= 0) return;
    this.counters.suppressedByRateLimit += count;
    const key = `${workload.cgroupId}|${workload.namespace}/${workload.name}`;
    const pending = this.suppressedSinceNotice.get(key);
    if (pending) pending.count += count;
    else this.suppressedSinceNotice.set(key, { workload, count });
    this.suppressedNoticeDue ??= this.clock() + this.windowMs;
    this.schedule();
  }

  /** Close every window whose time is up (the internal timer calls this; tests with an injected clock may too). */
  closeExpiredWindows(now: number = this.clock()): void {
    for (const [key, aggregate] of this.open) {
      if (aggregate.deadline > now) break;
      this.closeWindow(key, aggregate);
    }
    if (this.dropNoticeDue !== null && this.dropNoticeDue <= now) this.reportDrops();
    if (this.suppressedNoticeDue !== null && this.suppressedNoticeDue <= now) this.reportSuppressions();
  }

  /** Close every window now, writing the counted remainders and any pending drop notice. */
  flush(): void {
    for (const [key, aggregate] of this.open) this.closeWindow(key, aggregate);
    if (this.dropsSinceNotice > 0) this.reportDrops();
    if (this.suppressedSinceNotice.size > 0) this.reportSuppressions();
  }

  stats(): EventPipelineStats {
    return { ...this.counters, openAggregates: this.open.size };
  }

  /** Flush, stop the timer and close every sink. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all(this.sinks.map((sink) => sink.close()));
  }

  private closeWindow(key: string, aggregate: OpenAggregate): void {
    this.open.delete(key);
    if (aggregate.firstRepeat !== null) this.emit(aggregate.firstRepeat, aggregate.repeats);
  }

  private emit(template: FlowEvent, count: number): void {
    const event: FlowEvent = { ...template, count, eventId: newEventId() };
    this.counters.emitted++;
    for (const sink of this.sinks) sink.write(event);
  }

  private notify(notice: PipelineNotice): void {
    for (const sink of this.sinks) sink.notice(notice);
  }

  private reportKernelEvents(
    kind: 'kernel-events-lost' | 'kernel-events-malformed',
    counter: 'kernelEventsLost' | 'kernelEventsMalformed',
    count: number,
  ): void {
    if (!Number.isSafeInteger(count) || count <= 0) return;
    this.counters[counter] += count;
    this.notify({ kind, time: new Date().toISOString(), node: this.node, count, total: this.counters[counter] });
  }

  private reportDrops(): void {
    this.notify({
      kind: 'events-dropped',
      time: new Date().toISOString(),
      node: this.node,
      reason: 'aggregation-limit',
      count: this.dropsSinceNotice,
      total: this.counters.droppedByLimit,
      limit: this.maxOpenAggregates,
    });
    this.dropsSinceNotice = 0;
    this.dropNoticeDue = null;
  }

  private reportSuppressions(): void {
    const time = new Date().toISOString();
    for (const { workload, count } of this.suppressedSinceNotice.values()) {
      this.notify({
        kind: 'events-suppressed',
        time,
        node: this.node,
        reason: 'rate-limit',
        workload: { namespace: workload.namespace, name: workload.name, cgroupId: workload.cgroupId },
        count,
        total: this.counters.suppressedByRateLimit,
      });
    }
    this.suppressedSinceNotice.clear();
    this.suppressedNoticeDue = null;
  }

  /** One timer, aimed at the earliest deadline (the oldest window or a pending notice). */
  private schedule(): void {
    if (this.timer !== null || this.closed) return;
    const oldest = this.open.values().next();
    const deadlines = [
      oldest.done ? Infinity : oldest.value.deadline,
      this.dropNoticeDue ?? Infinity,
      this.suppressedNoticeDue ?? Infinity,
    ];
    const next = Math.min(...deadlines);
    if (next === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.closeExpiredWindows();
        this.schedule();
      },
      Math.max(0, next - this.clock()),
    );
    // Pending windows must not keep a finished process alive; close() flushes them.
    this.timer.unref();
  }
}

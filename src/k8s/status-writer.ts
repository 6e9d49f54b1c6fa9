// Status and feedback in Kubernetes mode.
//
// Each agent reports what its node enforces in a per-node Lease (coordination.k8s.io) in the agent's namespace: the
// Lease is the object Kubernetes itself uses for node heartbeats (kube-node-lease), costs one small object per node,
// is covered by a namespaced Role, is owned by the Node (deleted with it), and its renewTime says how fresh the report
// is. The report (policy → generation enforced, pods) rides in one annotation, compressed (see status.ts).
//
// One agent, elected through the Lease `egressguard-status`, aggregates the reports with the pods the policies select
// and writes `status` of each FirewallPolicy and WebgroupPolicy through the status subresource with optimistic
// concurrency (the object's resourceVersion; 409 Conflict → read again, decide again, retry). It also records a
// Kubernetes Event on an object whose newest generation is invalid, once per generation (an object whose Invalid
// condition already names that generation had its Event from an earlier leader).
import { createHash, randomBytes } from 'node:crypto';
import type { EventsV1Event, V1Lease, V1Node, V1OwnerReference } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { PolicyEnforcement } from '../agent/reconciler.js';
import {
  BASELINE_API_VERSION,
  BASELINE_GROUP,
  BASELINE_PLURAL,
  BASELINE_VERSION,
  desiredBaselineStatus,
  type BaselineSource,
  type EgressBaselineObject,
} from './baseline.js';
import { POLICY_GROUP, POLICY_KINDS, POLICY_VERSION, type KubePolicySource, type PolicyKind, type PolicyObject } from './policy-source.js';
import {
  canonicalJson,
  decodeNodeReport,
  desiredPolicyStatus,
  encodeNodeReport,
  statusDiffers,
  type NodeReport,
  type PolicyStatusFields,
  type SelectedPod,
} from './status.js';
import { apiStatusOf, microTime, type KubeClient, type KubeObject, type Wire } from './api.js';
import { withTimeout } from './informer.js';
import type { Pod } from './pod-source.js';
import { WatchedCollection } from './watched.js';

export const STATUS_LEASE = 'egressguard-status';
export const REPORT_LABEL = 'egressguard.io/node-report';
export const REPORT_ANNOTATION = 'egressguard.io/report';
export const FIELD_MANAGER = 'egressguard-agent';
export const REPORTING_CONTROLLER = 'egressguard.io/agent';

/** Lease timing as client-go's leader election uses it: a leader that cannot renew within the duration is replaced. */
export interface LeaseTiming {
  durationSeconds: number;
  /** How often the holder renews and the others try to acquire. */
  retryMs: number;
}
export const DEFAULT_LEASE_TIMING: LeaseTiming = { durationSeconds: 15, retryMs: 2000 };

/**
 * How long a status-plane API call may take before it is abandoned: a third of the Lease duration, so that a leader
 * whose API server hangs (a frozen process, a black-holed path) steps down in time and nothing waits on it forever.
 */
export function callTimeoutMs(timing: LeaseTiming): number {
  return Math.max(1000, (timing.durationSeconds * 1000) / 3);
}

type Lease = Wire<V1Lease>;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function leasesPath(namespace: string): string {
  return `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
}

/** The Lease carrying a node's report: a DNS-subdomain name, hashed when the node's name would make it too long. */
export function nodeLeaseName(node: string): string {
  const name = `egressguard-node-${node}`;
  return name.length <= 253 ? name : `egressguard-node-${createHash('sha256').update(node).digest('hex').slice(0, 32)}`;
}

/**
 * What this node enforces (see NodeReport), kept from the policies that changed, never by walking every policy: a
 * reconciler pass names the policies whose rules in force moved, a policy source batch those whose accepted generation
 * may have. At 10,000 policies a walk of all of them on every pass cost more than the change itself.
 */
export class NodeReportBuilder {
  private readonly policies = new Map<string, { generation: number; pods: string[] }>();

  constructor(
    private readonly node: string,
    /** What the reconciler enforces of a policy (`namespace/name`): Reconciler.enforcement. */
    private readonly enforcement: (policyKey: string) => Pick<PolicyEnforcement, 'ruleset' | 'workloads'> | undefined,
    /** The generation of the policy this node accepted (the API object's metadata.generation). */
    private readonly acceptedGeneration: (namespace: string, name: string) => number | undefined,
  ) {}

  /** Reads these policies (`namespace/name`) again; true when the report changed. */
  refresh(policyKeys: Iterable<string>): boolean {
    let changed = false;
    for (const key of policyKeys) {
      const namespace = key.slice(0, key.indexOf('/'));
      const generation = this.acceptedGeneration(namespace, key.slice(namespace.length + 1));
      const enforced = this.enforcement(key);
      const before = this.policies.get(key);
      if (generation === undefined || enforced === undefined || enforced.ruleset === '' || enforced.workloads.length === 0) {
        changed = this.policies.delete(key) || changed;
        continue;
      }
      // Workload keys are `namespace/pod`; a policy selects pods of its own namespace only.
      const pods = enforced.workloads.flatMap((w) => (w.startsWith(`${namespace}/`) ? [w.slice(namespace.length + 1)] : [])).sort();
      if (before?.generation === generation && before.pods.join('\n') === pods.join('\n')) continue;
      this.policies.set(key, { generation, pods });
      changed = true;
    }
    return changed;
  }

  report(): NodeReport {
    return { node: this.node, policies: Object.fromEntries(this.policies) };
  }
}

/** A running pod in an enforced namespace counts for status; hostNetwork pods are not enforced, finished pods are gone. */
function enforcedPod(pod: Pod): boolean {
  return !!pod.spec?.nodeName && !pod.spec.hostNetwork && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

function labelsMatch(matchLabels: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(matchLabels).every(([key, value]) => labels[key] === value);
}

export interface NodeReporterOptions {
  client: KubeClient;
  /** The agent's namespace (where the Leases live). */
  namespace: string;
  node: string;
  log: Logger;
  timing?: LeaseTiming;
}

/** Keeps this node's Lease renewed with the latest report. */
export class NodeReporter {
  private report: string | null = null;
  private written: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private readonly timing: LeaseTiming;
  /** The last write error; null after a successful write. */
  lastError: string | null = null;

  constructor(private readonly options: NodeReporterOptions) {
    this.timing = options.timing ?? DEFAULT_LEASE_TIMING;
  }

  start(): void {
    this.timer = setInterval(() => void this.write(), (this.timing.durationSeconds * 1000) / 3);
    this.timer.unref();
  }

  /** A new report: written now (at most one write in flight; the latest report wins). */
  update(report: NodeReport): Promise<void> {
    this.report = encodeNodeReport(report);
    return this.write();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  private write(): Promise<void> {
    if (this.report === null) return Promise.resolve();
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = this.writeOnce()
      .catch((error: unknown) => {
        this.lastError = messageOf(error);
        this.options.log.warn({ err: this.lastError }, 'node status report not written; retried on the next renewal');
      })
      .finally(() => {
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          void this.write();
        }
      });
    return this.inFlight;
  }

  private async writeOnce(): Promise<void> {
    const { namespace, node } = this.options;
    const name = nodeLeaseName(node);
    const report = this.report!;
    const now = microTime();
    const leases = leasesPath(namespace);
    for (let attempt = 0; attempt < 3; attempt++) {
      let lease: Lease | null = null;
      try {
        lease = await this.call(this.options.client.get<Lease>(`${leases}/${name}`), 'read the node report');
      } catch (error) {
        if (apiStatusOf(error) !== 404) throw error;
      }
      const body: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          ...(lease?.metadata ?? {}),
          name,
          namespace,
          labels: { ...(lease?.metadata?.labels ?? {}), [REPORT_LABEL]: 'true' },
          annotations: { ...(lease?.metadata?.annotations ?? {}), [REPORT_ANNOTATION]: report, 'egressguard.io/node': node },
          ownerReferences: lease?.metadata?.ownerReferences ?? (await this.nodeOwner()),
        },
        spec: { holderIdentity: node, leaseDurationSeconds: this.timing.durationSeconds, renewTime: now },
      };
      try {
        await this.call(
          lease ? this.options.client.replace(`${leases}/${name}`, body) : this.options.client.create(leases, body),
          'write the node report',
        );
        this.written = report;
        this.lastError = null;
        return;
      } catch (error) {
        // Another write got there first (or the Lease appeared): read it again.
        if (apiStatusOf(error) !== 409) throw error;
      }
    }
    throw new Error(`Lease ${namespace}/${name} kept changing under three writes`);
  }

  /** The Node owns its report, so deleting the node deletes the Lease; without read access to the Node, no owner. */
  private async nodeOwner(): Promise<V1OwnerReference[] | undefined> {
    try {
      const found = await this.call(this.options.client.get<Wire<V1Node>>(`/api/v1/nodes/${this.options.node}`), 'read the node');
      if (!found.metadata?.uid) return undefined;
      return [{ apiVersion: 'v1', kind: 'Node', name: this.options.node, uid: found.metadata.uid }];
    } catch {
      return undefined;
    }
  }

  private call<T>(request: Promise<T>, what: string): Promise<T> {
    return withTimeout(request, callTimeoutMs(this.timing), what);
  }

  /** True when the latest report is the one in the Lease. */
  get current(): boolean {
    return this.report !== null && this.report === this.written;
  }
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  /** Unique per agent process: node name and process id. */
  identity: string;
  log: Logger;
  timing?: LeaseTiming;
  onStarted: () => void;
  onStopped: () => void;
  leaseName?: string;
}

/**
 * Leader election over one coordination.k8s.io Lease, as client-go does it: the holder renews every retry period;
 * another candidate takes over when the Lease has not changed for its whole duration, judged by its own clock from
 * when it last saw the Lease change (no clock agreement needed). Every write carries the resourceVersion read, so of
 * two candidates racing, exactly one wins (the other gets 409 Conflict).
 */
export class LeaderElector {
  private readonly timing: LeaseTiming;
  private readonly name: string;
  /** The Lease's path. */
  private readonly path: string;
  private timer: NodeJS.Timeout | null = null;
  private observed: { record: string; atMs: number } | null = null;
  private leading = false;
  private lastRenewMs = 0;
  private running: Promise<void> | null = null;

  constructor(private readonly options: LeaderElectionOptions) {
    this.timing = options.timing ?? DEFAULT_LEASE_TIMING;
    this.name = options.leaseName ?? STATUS_LEASE;
    this.path = `${leasesPath(options.namespace)}/${this.name}`;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = () => {
      if (!this.running) this.running = this.tryAcquireOrRenew().finally(() => (this.running = null));
    };
    tick();
    this.timer = setInterval(tick, this.timing.retryMs);
    this.timer.unref();
  }

  /** Stop campaigning; a leader releases the Lease so that another agent takes over at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.call(this.options.client.get<Lease>(this.path));
      if (lease.spec?.holderIdentity !== this.options.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: undefined, renewTime: undefined, acquireTime: undefined };
      await this.call(this.options.client.replace(this.path, lease));
    } catch (error) {
      this.options.log.debug({ err: messageOf(error) }, 'status Lease not released; it expires by itself');
    }
  }

  private call<T>(request: Promise<T>): Promise<T> {
    return withTimeout(request, callTimeoutMs(this.timing), `the status Lease ${this.name}`);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.options.log.info(
      { identity: this.options.identity, lease: this.name },
      leading ? 'elected status writer' : 'no longer the status writer',
    );
    if (leading) this.options.onStarted();
    else this.options.onStopped();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, identity, log } = this.options;
    const nowMs = Date.now();
    const now = microTime(new Date(nowMs));
    try {
      let lease: Lease;
      try {
        lease = await this.call(this.options.client.get<Lease>(this.path));
      } catch (error) {
        if (apiStatusOf(error) !== 404) throw error;
        await this.call(
          this.options.client.create<Lease>(leasesPath(namespace), {
            metadata: { name: this.name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: this.timing.durationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          }),
        );
        this.lastRenewMs = nowMs;
        this.setLeading(true);
        return;
      }
      const spec = lease.spec ?? {};
      const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseTransitions]);
      if (this.observed?.record !== record) this.observed = { record, atMs: nowMs };
      const holder = spec.holderIdentity ?? '';
      const duration = (spec.leaseDurationSeconds ?? this.timing.durationSeconds) * 1000;
      const held = holder !== '' && holder !== identity && nowMs - this.observed.atMs < duration;
      if (held) {
        this.setLeading(false);
        return;
      }
      const mine = holder === identity;
      lease.spec = {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.timing.durationSeconds,
        renewTime: now,
        acquireTime: mine ? spec.acquireTime : now,
        leaseTransitions: mine ? spec.leaseTransitions : (spec.leaseTransitions ?? 0) + 1,
      };
      await this.call(this.options.client.replace(this.path, lease));
      this.lastRenewMs = nowMs;
      this.setLeading(true);
    } catch (error) {
      // 409: another candidate wrote first; anything else: the API is unreachable. A leader that cannot renew steps
      // down before its Lease can expire for the others, so two writers never overlap.
      if (apiStatusOf(error) !== 409) log.warn({ err: messageOf(error) }, 'status Lease not renewed');
      if (this.leading && (apiStatusOf(error) === 409 || Date.now() - this.lastRenewMs > (this.timing.durationSeconds * 1000) / 2))
        this.setLeading(false);
    }
  }
}

export interface StatusWriterOptions {
  client: KubeClient;
  /** The agent's namespace: node report Leases. */
  namespace: string;
  /** This agent's node (reportingInstance of Events). */
  node: string;
  namespaces: readonly string[];
  policies: KubePolicySource;
  log: Logger;
  /** Writes in flight at once (10,000 policies are written in batches, never all at once). */
  concurrency?: number;
  /** The baseline whose status (posture in force) the writer keeps. */
  baseline?: BaselineSource;
  /** Bounds each API call (callTimeoutMs) and paces the retry of a pass the API server did not take. */
  timing?: LeaseTiming;
}

/** A write the API server did not take (unreachable, hung, refused): the pass stops and is retried. */
class WriteFailed extends Error {}

/** The elected agent's writer: status of every policy object, and Events for invalid generations. */
export class PolicyStatusWriter {
  private reports: WatchedCollection<Lease> | null = null;
  private readonly pods = new Map<string, WatchedCollection<Pod>>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private namespaces: string[];
  /** Counters for status and tests. */
  readonly stats = { written: 0, conflicts: 0, failed: 0, events: 0 };

  constructor(private readonly options: StatusWriterOptions) {
    this.namespaces = [...options.namespaces];
    options.policies.onChange(() => this.schedule());
  }

  /** Start writing (this agent was elected). */
  async start(): Promise<void> {
    this.stopped = false;
    const { client, namespace, log } = this.options;
    this.reports = new WatchedCollection<Lease>({
      client,
      path: leasesPath(namespace),
      labelSelector: `${REPORT_LABEL}=true`,
      log,
      onChange: () => this.schedule(),
    });
    await Promise.all([this.reports.start(), ...this.namespaces.map((ns) => this.watchPods(ns))]);
    this.schedule();
  }

  /** Stop writing (leadership lost, or the agent stops); what was written stays. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    await this.reports?.stop();
    this.reports = null;
    await Promise.all([...this.pods.values()].map((c) => c.stop()));
    this.pods.clear();
  }

  /** The enforced namespaces changed. */
  async setNamespaces(namespaces: readonly string[]): Promise<void> {
    this.namespaces = [...namespaces];
    if (this.stopped) return;
    for (const [ns, collection] of this.pods) {
      if (namespaces.includes(ns)) continue;
      await collection.stop();
      this.pods.delete(ns);
    }
    await Promise.all(namespaces.filter((ns) => !this.pods.has(ns)).map((ns) => this.watchPods(ns)));
    this.schedule();
  }

  /** Resolves when no pass is pending or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.timer || this.running) {
      if (this.running) await this.running;
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private async watchPods(namespace: string): Promise<void> {
    const collection = new WatchedCollection<Pod>({
      client: this.options.client,
      path: `/api/v1/namespaces/${namespace}/pods`,
      log: this.options.log,
      onChange: () => this.schedule(),
    });
    this.pods.set(namespace, collection);
    await collection.start();
  }

  private call<T>(request: Promise<T>, what: string): Promise<T> {
    return withTimeout(request, callTimeoutMs(this.options.timing ?? DEFAULT_LEASE_TIMING), what);
  }

  /** Debounced: a burst of report, pod and policy changes is one pass; a failed pass is retried after retryMs. */
  private schedule(delayMs = 100): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      let failed = false;
      this.running = this.pass()
        .catch((error: unknown) => {
          const retryMs = (this.options.timing ?? DEFAULT_LEASE_TIMING).retryMs;
          this.options.log.warn({ err: messageOf(error), retryInMs: retryMs }, 'status pass stopped; retried');
          failed = true;
        })
        .finally(() => {
          this.running = null;
          if (this.again || failed) {
            this.again = false;
            this.schedule(failed ? (this.options.timing ?? DEFAULT_LEASE_TIMING).retryMs : 100);
          }
        });
    }, delayMs);
    this.timer.unref();
  }

  private nodeReports(): Map<string, NodeReport> {
    const reports = new Map<string, NodeReport>();
    for (const lease of this.reports?.list() ?? []) {
      const text = lease.metadata?.annotations?.[REPORT_ANNOTATION];
      const report = text === undefined ? null : decodeNodeReport(text);
      if (report === null) {
        this.options.log.warn({ lease: lease.metadata?.name }, 'node report unreadable; its node counts as not enforcing');
        continue;
      }
      reports.set(report.node, report);
    }
    return reports;
  }

  private selectedPods(namespace: string, selectors: readonly Record<string, string>[]): SelectedPod[] {
    if (selectors.length === 0) return [];
    return (this.pods.get(namespace)?.list() ?? []).flatMap((pod) =>
      enforcedPod(pod) && selectors.some((s) => labelsMatch(s, pod.metadata?.labels ?? {}))
        ? [{ node: pod.spec!.nodeName!, name: pod.metadata!.name! }]
        : [],
    );
  }

  private async pass(): Promise<void> {
    // Before the reports and pods are listed, every policy would look vacuously enforced: decide nothing yet.
    if (!this.reports?.synced || [...this.pods.values()].some((c) => !c.synced)) {
      this.again = true;
      return;
    }
    const reports = this.nodeReports();
    const work: (() => Promise<void>)[] = [];
    for (const verdict of this.options.policies.verdicts()) {
      const object = this.options.policies.current(verdict.kind, verdict.namespace, verdict.name);
      if (!object) continue;
      const selected = this.selectedPods(verdict.namespace, verdict.selectors);
      const decide = (previous: Partial<PolicyStatusFields> | undefined) =>
        desiredPolicyStatus(verdict, selected, reports, previous, new Date());
      const desired = decide(object.status as Partial<PolicyStatusFields> | undefined);
      if (verdict.rejected !== null) {
        const invalid = (object.status as Partial<PolicyStatusFields> | undefined)?.conditions?.find((c) => c.type === 'Invalid');
        if (!(invalid?.status === 'True' && invalid.observedGeneration === verdict.rejected.generation))
          work.push(() => this.recordInvalid(verdict.kind, object, verdict.accepted?.generation ?? null, verdict.rejected!.messages));
      }
      if (statusDiffers(object.status as Partial<PolicyStatusFields> | undefined, desired))
        work.push(() => this.writeStatus(verdict.kind, object, decide));
    }
    work.push(...this.baselineWork());
    const concurrency = this.options.concurrency ?? 8;
    let next = 0;
    // One write the API server did not take stops the pass: with it unreachable or hung, every other write would wait
    // out its own timeout. What is left is decided again on the retry.
    let failed: WriteFailed | null = null;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, work.length) }, async () => {
        while (next < work.length && !this.stopped && failed === null) {
          try {
            await work[next++]!();
          } catch (error) {
            if (!(error instanceof WriteFailed)) throw error;
            failed = error;
          }
        }
      }),
    );
    if (failed !== null) throw failed;
  }

  /** Writes a policy's status; see replaceStatus. */
  private writeStatus(
    kind: PolicyKind,
    seen: PolicyObject,
    decide: (previous: Partial<PolicyStatusFields> | undefined) => PolicyStatusFields,
  ): Promise<void> {
    const plural = POLICY_KINDS.find((k) => k.kind === kind)!.plural;
    const { namespace, name } = seen.metadata as { namespace: string; name: string };
    const path = `/apis/${POLICY_GROUP}/${POLICY_VERSION}/namespaces/${namespace}/${plural}/${name}`;
    return this.replaceStatus(
      `${kind} ${namespace}/${name}`,
      seen,
      (object) => {
        const current = object.status as Partial<PolicyStatusFields> | undefined;
        const desired = decide(current);
        return statusDiffers(current, desired) ? desired : null;
      },
      path,
    );
  }

  /**
   * Writes status through the subresource with the resourceVersion read (optimistic concurrency): on 409 Conflict the
   * object is read again and the status decided again from what it now holds; `decide` returns null when nothing
   * needs writing. A gone object is skipped; other errors wait for the next pass.
   */
  private async replaceStatus<T extends KubeObject & { status?: Record<string, unknown> }>(
    what: string,
    seen: T,
    decide: (object: T) => object | null,
    /** The object's path; its status subresource is `${path}/status`. */
    path: string,
  ): Promise<void> {
    const { client } = this.options;
    let object = seen;
    for (let attempt = 0; attempt < 5; attempt++) {
      const desired = decide(object);
      if (desired === null) return;
      try {
        const body = { ...object, status: { ...(object.status ?? {}), ...desired } };
        await this.call(client.replace(`${path}/status`, body, { fieldManager: FIELD_MANAGER }), `write ${what}`);
        this.stats.written++;
        return;
      } catch (error) {
        const code = apiStatusOf(error);
        if (code === 404) return;
        if (code !== 409) {
          this.stats.failed++;
          throw new WriteFailed(`${what}: status not written: ${messageOf(error)}`);
        }
        this.stats.conflicts++;
        try {
          object = await this.call(client.get<T>(path), `read ${what}`);
        } catch (readError) {
          if (apiStatusOf(readError) === 404) return;
          this.stats.failed++;
          throw new WriteFailed(`${what}: not read again after a conflict: ${messageOf(readError)}`);
        }
      }
    }
    this.stats.failed++;
    this.options.log.warn({ object: what }, 'status kept conflicting; retried on the next pass');
  }

  /** The baseline's status (what is in force), and an Event when the object is not valid. */
  private baselineWork(): (() => Promise<void>)[] {
    const source = this.options.baseline;
    const object = source?.object();
    if (!source || !object) return [];
    const state = source.state();
    const name = object.metadata!.name!;
    const comparable = (status: Record<string, unknown> | undefined) =>
      canonicalJson([
        status?.observedGeneration,
        status?.effective,
        ((status?.conditions ?? []) as Record<string, unknown>[]).map(({ lastTransitionTime: _t, ...rest }) => rest),
      ]);
    const decide = (current: EgressBaselineObject) => {
      const desired = desiredBaselineStatus(state, current.status as Parameters<typeof desiredBaselineStatus>[1], new Date());
      return comparable(current.status) === comparable(desired) ? null : desired;
    };
    const work: (() => Promise<void>)[] = [];
    const valid = (object.status?.conditions as { type: string; status: string; observedGeneration?: number }[] | undefined)?.find(
      (c) => c.type === 'Valid',
    );
    if (state.source !== 'object' && !(valid?.status === 'False' && valid.observedGeneration === state.generation))
      work.push(() =>
        this.recordEvent('EgressBaseline', BASELINE_API_VERSION, object, 'InvalidBaseline', `not in force: ${state.problems.join('; ')}`),
      );
    if (decide(object) !== null)
      work.push(() =>
        this.replaceStatus(
          `EgressBaseline ${name}`,
          object,
          decide,
          `/apis/${BASELINE_GROUP}/${BASELINE_VERSION}/${BASELINE_PLURAL}/${name}`,
        ),
      );
    return work;
  }

  /** A Warning Event on the object naming why its newest generation was rejected. */
  private recordInvalid(kind: PolicyKind, object: PolicyObject, inForce: number | null, messages: string[]): Promise<void> {
    const generation = object.metadata?.generation ?? 0;
    const kept = inForce !== null ? `generation ${inForce} stays in force` : 'no valid generation is in force';
    const note = `generation ${generation} rejected (${kept}): ${messages.join('; ')}`;
    return this.recordEvent(kind, `${POLICY_GROUP}/${POLICY_VERSION}`, object, 'InvalidPolicy', note);
  }

  private async recordEvent(kind: string, apiVersion: string, object: KubeObject, reason: string, note: string): Promise<void> {
    const { name, namespace, uid, resourceVersion } = object.metadata ?? {};
    // Events of a cluster-scoped object live in the default namespace.
    const eventNamespace = namespace ?? 'default';
    try {
      await this.call(
        this.options.client.create<Wire<EventsV1Event>>(`/apis/events.k8s.io/v1/namespaces/${eventNamespace}/events`, {
          // As client-go names them: the object's name and a unique suffix (generateName may not end in a dot).
          metadata: { name: `${name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`, namespace: eventNamespace },
          eventTime: microTime(),
          type: 'Warning',
          reason,
          action: 'Validate',
          note: note.length > 1024 ? `${note.slice(0, 1020)} …` : note,
          regarding: { apiVersion, kind, name, uid, resourceVersion, ...(namespace ? { namespace } : {}) },
          reportingController: REPORTING_CONTROLLER,
          reportingInstance: this.options.node,
        }),
        `record the ${reason} Event`,
      );
      this.stats.events++;
    } catch (error) {
      this.options.log.warn({ object: `${kind} ${namespace ? `${namespace}/` : ''}${name}`, err: messageOf(error) }, 'Event not recorded');
    }
  }
}

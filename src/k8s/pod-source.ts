// Kubernetes mode's workload source: the pods on this node (a Pod informer with the field selector
// spec.nodeName=<node>), each bound to its pod-level cgroup, its addresses (status.podIPs, both families) and its
// labels, reported to the reconciler as the full set on every change.
//
// Order of events for a new pod: the API server announces it (its labels and namespace are known, so its policy is
// ready); the kubelet creates the pod cgroup, which the cgroup watch sees at once and the pod is enrolled; then the
// sandbox and the containers start inside that cgroup, already enforced; the CNI's addresses arrive with a status
// update and the pod is enrolled again with them and its host-side interface.
//
// What is not reported: pods outside the enforced namespaces; hostNetwork pods (they share the node's network
// namespace and addresses, so the DNS proxy cannot tell them from the node and the backstop has no link of theirs:
// egressguard leaves them alone, as it leaves the node itself); pods that have finished (Succeeded, Failed); pods
// whose cgroup is gone after it existed (being torn down: no process is left to enforce). An announced pod whose
// cgroup has not appeared is held back for `cgroupTimeoutMs`; after that it is reported with the cgroup it should
// have, so the reconciler records it as not enforced (status failures, log, metric) instead of forgetting it.

import type { V1Pod } from '@kubernetes/client-node';
import type { KubeClient, Wire } from './api.js';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { CgroupDriver } from '../agent/config.js';
import { workloadKey } from '../identity/registry.js';
import type { WorkloadSource, WorkloadSpec } from '../identity/source.js';
import { QOS_CLASSES, detectLayout, podCgroupPath, type PodCgroupLayout, type QosClass } from './cgroups.js';
import { PodCgroupWatch, firstContainerCreatedMs } from './cgroup-watch.js';
import { ResilientInformer, type InformerStatus } from './informer.js';

export type PodExclusion = 'namespace-not-enforced' | 'host-network' | 'finished';

/** A Pod as the API server sends it. */
export type Pod = Wire<V1Pod>;

/** Why a pod on this node is not enforced by design, or null when it is one to enforce. */
export function podExclusion(pod: Pod, namespaces: ReadonlySet<string>): PodExclusion | null {
  if (!namespaces.has(pod.metadata?.namespace ?? '')) return 'namespace-not-enforced';
  if (pod.spec?.hostNetwork === true) return 'host-network';
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return 'finished';
  return null;
}

/** The pod's addresses: status.podIPs (every family), else the older status.podIP; invalid entries left out. */
export function podAddresses(pod: Pod): string[] {
  const listed = pod.status?.podIPs?.map((p) => p.ip) ?? [];
  const candidates = listed.length > 0 ? listed : [pod.status?.podIP ?? ''];
  return [...new Set(candidates.filter((ip) => isIP(ip) !== 0))];
}

/** The QoS class the API server recorded, or null when it has none (a pod object without status). */
export function podQosClass(pod: Pod): QosClass | null {
  const qos = pod.status?.qosClass;
  return QOS_CLASSES.find((c) => c === qos) ?? null;
}

export function podSpecOf(pod: Pod, cgroupPath: string): WorkloadSpec {
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    labels: { ...(pod.metadata?.labels ?? {}) },
    addresses: podAddresses(pod),
    cgroupPath,
    interfaces: [],
    netns: null,
  };
}

/** When a pod's cgroup came, when it was enrolled, and when its first container started (ms since the epoch). */
export interface PodTiming {
  key: string;
  uid: string;
  /** The kernel's creation time of the pod cgroup. */
  cgroupCreatedMs: number;
  /** When the agent saw the pod cgroup. */
  cgroupSeenMs: number;
  /** When the reconciler had it enrolled; null while not. */
  enrolledMs: number | null;
  /** The kernel's creation time of the pod's first container cgroup; null while it has none. */
  firstContainerMs: number | null;
}

export interface PodSourceStatus {
  node: string;
  /** Until the first list: the pods reported from the state file of an earlier agent, and when it wrote them. */
  lastKnown: { pods: number; writtenAt: string } | null;
  /** Per pod with a cgroup: its registration timeline (what a benchmark of the registration gap reads). */
  registration: PodTiming[];
  namespaces: string[];
  api: InformerStatus;
  /** The pod cgroup root in use, or null while none was found (every pod then waits for its cgroup). */
  cgroupRoot: string | null;
  cgroupDriver: CgroupDriver | null;
  pods: {
    /** Pods reported to the reconciler. */
    reported: number;
    /** Announced pods waiting for their cgroup (within the timeout). */
    waitingForCgroup: string[];
    /** Pods whose cgroup did not appear in time: reported as not enforced. */
    cgroupMissing: string[];
    /** Pods on this node left alone by design, by reason. */
    excluded: Record<PodExclusion, number>;
    /** Pods whose first container started before they were enrolled (the enrolment lost the race). */
    enrolledLate: string[];
  };
}

export interface PodSourceOptions {
  client: KubeClient;
  nodeName: string;
  /** The enforced namespaces (setNamespaces changes them at run time). */
  namespaces: Iterable<string>;
  cgroup2Mount: string;
  cgroupDriver: CgroupDriver | null;
  cgroupRoot: string | null;
  cgroupTimeoutMs: number;
  /** True when the reconciler has the workload in the kernel (for the enrolment timestamp). */
  isEnrolled: (key: string) => boolean;
  /** Each new pod's registration gap: from its cgroup's creation to its enrolment, in seconds. */
  observeEnrolment?: (seconds: number) => void;
  log: Logger;
  /**
   * Where the last reported set is kept (a tmpfs such as /run: gone at reboot, when every cgroup is new anyway). A
   * restarted agent reports it until its first list succeeds, so pods it knew keep their DNS while the API server is
   * unreachable; null: nothing kept.
   */
  stateFile: string | null;
  /** Rescan of the cgroup tree and report of the full set (the reconciler retries its failures on it). */
  resyncMs?: number;
  clock?: () => number;
}

/** What the source remembers of a pod between reports. */
export interface PodRecord {
  key: string;
  firstSeenMs: number;
  hadCgroup: boolean;
  cgroupSeenMs: number | null;
  enrolledMs: number | null;
  firstContainerMs: number | null;
  missingReported: boolean;
}

export interface PodSnapshotInput {
  pods: readonly Pod[];
  namespaces: ReadonlySet<string>;
  cgroupOf: (uid: string) => { path: string } | null;
  /** Per pod uid, updated in place: new pods added, pods gone removed. */
  records: Map<string, PodRecord>;
  now: number;
  cgroupTimeoutMs: number;
  /** Where a pod's cgroup should be, for the report of one that never appeared. */
  expectedCgroup: (pod: Pod) => string;
}

export interface PodSnapshot {
  specs: WorkloadSpec[];
  status: Omit<PodSourceStatus['pods'], 'enrolledLate'>;
  /** Uids of reported pods with a cgroup and not enrolled yet. */
  fresh: string[];
  /** Pods whose cgroup wait has just run out. */
  newlyMissing: { key: string; uid: string; expected: string }[];
  /** When the first waiting pod's time is up; null when none waits. */
  nextExpiryMs: number | null;
}

/** The workloads to report now, from the cached pods and the pod cgroups found; see the file comment for the rules. */
export function podSnapshot(input: PodSnapshotInput): PodSnapshot {
  const { records, now, cgroupTimeoutMs } = input;
  const snapshot: PodSnapshot = {
    specs: [],
    status: {
      reported: 0,
      waitingForCgroup: [],
      cgroupMissing: [],
      excluded: { 'namespace-not-enforced': 0, 'host-network': 0, finished: 0 },
    },
    fresh: [],
    newlyMissing: [],
    nextExpiryMs: null,
  };
  const present = new Set<string>();
  for (const pod of input.pods) {
    const uid = pod.metadata?.uid ?? '';
    present.add(uid);
    const exclusion = podExclusion(pod, input.namespaces);
    if (exclusion !== null) {
      snapshot.status.excluded[exclusion]++;
      continue;
    }
    const key = workloadKey({ namespace: pod.metadata?.namespace ?? '', name: pod.metadata?.name ?? '' });
    let record = records.get(uid);
    if (!record) {
      record = {
        key,
        firstSeenMs: now,
        hadCgroup: false,
        cgroupSeenMs: null,
        enrolledMs: null,
        firstContainerMs: null,
        missingReported: false,
      };
      records.set(uid, record);
    }
    const cgroup = input.cgroupOf(uid);
    if (cgroup !== null) {
      record.hadCgroup = true;
      record.cgroupSeenMs ??= now;
      if (record.enrolledMs === null) snapshot.fresh.push(uid);
      snapshot.specs.push(podSpecOf(pod, cgroup.path));
      continue;
    }
    if (record.hadCgroup) continue; // Torn down: no process is left in it.
    const expiresMs = record.firstSeenMs + cgroupTimeoutMs;
    if (now < expiresMs) {
      snapshot.status.waitingForCgroup.push(key);
      snapshot.nextExpiryMs = Math.min(snapshot.nextExpiryMs ?? expiresMs, expiresMs);
      continue;
    }
    const expected = input.expectedCgroup(pod);
    snapshot.status.cgroupMissing.push(key);
    if (!record.missingReported) snapshot.newlyMissing.push({ key, uid, expected });
    record.missingReported = true;
    snapshot.specs.push(podSpecOf(pod, expected));
  }
  for (const uid of [...records.keys()]) if (!present.has(uid)) records.delete(uid);
  snapshot.status.reported = snapshot.specs.length;
  return snapshot;
}

/** Pods whose first container started before their enrolment. */
function enrolledLate(records: ReadonlyMap<string, PodRecord>): string[] {
  return [...records.values()].flatMap((r) =>
    r.enrolledMs !== null && r.firstContainerMs !== null && r.firstContainerMs < r.enrolledMs ? [r.key] : [],
  );
}

const wallClockMs = () => performance.timeOrigin + performance.now();

export class PodSource implements WorkloadSource {
  private readonly informer: ResilientInformer<Pod>;
  private namespaces: Set<string>;
  private layout: PodCgroupLayout | null = null;
  private watch: PodCgroupWatch | null = null;
  private readonly records = new Map<string, PodRecord>();
  private onChange: ((workloads: WorkloadSpec[]) => void) | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private readonly clock: () => number;
  private lastKnown: { pods: number; writtenAt: string } | null = null;
  private savedText = '';
  private lastStatus: PodSourceStatus['pods'] = {
    reported: 0,
    waitingForCgroup: [],
    cgroupMissing: [],
    excluded: { 'namespace-not-enforced': 0, 'host-network': 0, finished: 0 },
    enrolledLate: [],
  };

  constructor(private readonly options: PodSourceOptions) {
    this.clock = options.clock ?? wallClockMs;
    this.namespaces = new Set(options.namespaces);
    this.informer = new ResilientInformer<Pod>({
      name: `pods on node ${options.nodeName}`,
      client: options.client,
      path: '/api/v1/pods',
      fieldSelector: `spec.nodeName=${options.nodeName}`,
      onChange: () => this.report(),
      log: options.log,
    });
  }

  async start(onChange: (workloads: WorkloadSpec[]) => void): Promise<void> {
    this.onChange = onChange;
    this.findCgroupRoot();
    this.reportLastKnown();
    this.informer.start();
    this.resyncTimer = setInterval(() => this.resync(), this.options.resyncMs ?? 5000);
    this.resyncTimer.unref();
  }

  async stop(): Promise<void> {
    this.onChange = null;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.watch?.stop();
    await this.informer.stop();
  }

  /** The enforced namespaces changed (configuration reload, or the baseline object). */
  setNamespaces(namespaces: Iterable<string>): void {
    this.namespaces = new Set(namespaces);
    this.report();
  }

  status(): PodSourceStatus {
    return {
      node: this.options.nodeName,
      namespaces: [...this.namespaces].sort(),
      api: this.informer.status(),
      cgroupRoot: this.layout?.root ?? null,
      cgroupDriver: this.layout?.driver ?? null,
      pods: this.lastStatus,
      registration: this.timings(),
      lastKnown: this.informer.synced ? null : this.lastKnown,
    };
  }

  /** The cached pod of a workload key (namespace/name), for Events about it. */
  podRef(key: string): { namespace: string; name: string; uid: string } | null {
    const pod = this.informer
      .list()
      .find((p) => workloadKey({ namespace: p.metadata?.namespace ?? '', name: p.metadata?.name ?? '' }) === key);
    return pod?.metadata?.uid ? { namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid } : null;
  }

  /** Per enrolled pod: cgroup created → seen → enrolled, and the first container's start (the registration gap). */
  timings(): PodTiming[] {
    const timings: PodTiming[] = [];
    for (const pod of this.informer.list()) {
      const uid = pod.metadata?.uid ?? '';
      const record = this.records.get(uid);
      const cgroup = this.watch?.get(uid);
      if (!record || !cgroup || record.cgroupSeenMs === null) continue;
      if (record.firstContainerMs === null && this.layout) record.firstContainerMs = firstContainerCreatedMs(this.layout, cgroup.path);
      timings.push({
        key: workloadKey(podSpecOf(pod, cgroup.path)),
        uid,
        cgroupCreatedMs: cgroup.createdMs,
        cgroupSeenMs: record.cgroupSeenMs,
        enrolledMs: record.enrolledMs,
        firstContainerMs: record.firstContainerMs,
      });
    }
    return timings;
  }

  /** Find the kubelet's pod cgroup root and watch it; until it exists every pod waits for its cgroup. */
  private findCgroupRoot(): void {
    if (this.layout !== null) return;
    const { cgroup2Mount, cgroupDriver, cgroupRoot, log } = this.options;
    this.layout = detectLayout(cgroup2Mount, { cgroupDriver, cgroupRoot });
    if (this.layout === null) {
      log.warn({ cgroup2Mount, cgroupDriver, cgroupRoot }, 'no pod cgroup root (kubepods.slice or kubepods) yet; looking again');
      return;
    }
    log.info({ root: this.layout.root, driver: this.layout.driver }, 'watching pod cgroups');
    this.watch = new PodCgroupWatch(this.layout, () => this.report(), log);
    this.watch.start();
  }

  private resync(): void {
    this.findCgroupRoot();
    this.watch?.rescan();
    // The first container's start, for pods enrolled before it (most): read once it is there.
    for (const [uid, record] of this.records) {
      const cgroup = this.watch?.get(uid);
      if (record.enrolledMs !== null && record.firstContainerMs === null && cgroup && this.layout)
        record.firstContainerMs = firstContainerCreatedMs(this.layout, cgroup.path);
    }
    this.report();
  }

  /** Build the full set from the cache and the cgroup watch, and hand it to the reconciler. */
  private report(): void {
    if (this.onChange === null || !this.informer.synced) return;
    const now = this.clock();
    const layout = this.layout;
    const snapshot = podSnapshot({
      pods: this.informer.list(),
      namespaces: this.namespaces,
      cgroupOf: (uid) => this.watch?.get(uid) ?? null,
      records: this.records,
      now,
      cgroupTimeoutMs: this.options.cgroupTimeoutMs,
      expectedCgroup: (pod) =>
        layout
          ? podCgroupPath(layout, podQosClass(pod) ?? 'BestEffort', pod.metadata?.uid ?? '')
          : `${this.options.cgroupRoot ?? `${this.options.cgroup2Mount}/kubepods.slice`} (pod cgroup root not found)`,
    });
    for (const { key, uid, expected } of snapshot.newlyMissing)
      this.options.log.error(
        { workload: key, uid, expected, waitedSeconds: this.options.cgroupTimeoutMs / 1000 },
        'pod cgroup did not appear: the pod is NOT enforced (see status failures)',
      );
    this.onChange(snapshot.specs);
    this.save(snapshot.specs);
    const enrolledMs = this.clock();
    for (const uid of snapshot.fresh) {
      const record = this.records.get(uid)!;
      const cgroup = this.watch?.get(uid);
      if (!this.options.isEnrolled(record.key) || !cgroup) continue;
      record.enrolledMs = enrolledMs;
      this.options.observeEnrolment?.(Math.max(0, enrolledMs - cgroup.createdMs) / 1000);
      if (layout) record.firstContainerMs = firstContainerCreatedMs(layout, cgroup.path);
      if (record.firstContainerMs !== null && record.firstContainerMs < enrolledMs)
        this.options.log.warn(
          { workload: record.key, uid },
          'a container of the pod started before its enrolment: its first moments were not enforced',
        );
    }
    this.lastStatus = { ...snapshot.status, enrolledLate: enrolledLate(this.records) };
    this.scheduleExpiry(snapshot.nextExpiryMs, now);
  }

  /** Keep the reported set for a restarted agent (written only when it changed; replaced atomically). */
  private save(specs: WorkloadSpec[]): void {
    const path = this.options.stateFile;
    if (path === null) return;
    const text = JSON.stringify(specs);
    if (text === this.savedText) return;
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(`${path}.tmp`, JSON.stringify({ writtenAt: new Date().toISOString(), specs }));
      renameSync(`${path}.tmp`, path);
      this.savedText = text;
    } catch (error) {
      this.options.log.warn({ path, err: error }, 'cannot keep the pod set for a restart');
    }
  }

  /** At start: report the set an earlier agent kept, those whose cgroup is still there, until the first list. */
  private reportLastKnown(): void {
    const path = this.options.stateFile;
    if (path === null || !existsSync(path) || this.onChange === null) return;
    let kept: { writtenAt: string; specs: WorkloadSpec[] };
    try {
      kept = JSON.parse(readFileSync(path, 'utf8')) as { writtenAt: string; specs: WorkloadSpec[] };
      if (!Array.isArray(kept.specs)) throw new Error('no specs');
    } catch (error) {
      this.options.log.warn({ path, err: error }, 'the kept pod set is unreadable; waiting for the API server');
      return;
    }
    const alive = kept.specs.filter((spec) => typeof spec.cgroupPath === 'string' && existsSync(spec.cgroupPath));
    this.lastKnown = { pods: alive.length, writtenAt: kept.writtenAt };
    this.options.log.info(
      { pods: alive.length, writtenAt: kept.writtenAt },
      'reporting the last known pods until the API server lists them',
    );
    this.onChange(alive);
  }

  /** Report again when the first waiting pod's time is up. */
  private scheduleExpiry(atMs: number | null, now: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (atMs === null) return;
    this.expiryTimer = setTimeout(() => this.report(), Math.max(0, atMs - now) + 1);
    this.expiryTimer.unref();
  }
}

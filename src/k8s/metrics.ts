// Kubernetes mode's metrics, in the agent's registry: whether the pod watch is up, how the node's pods map to
// workloads (and which are not enforced), and the registration gap of new pods. Labels are closed vocabularies.
import { Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../metrics/metrics.js';
import type { PodSourceStatus } from './pod-source.js';

export interface KubernetesMetricsSources {
  pods(): PodSourceStatus;
  /** The reconciler's workloads whose own rules are not in force (every workload is a pod in this mode). */
  failures(): { enforced: 'deny-all' | 'none' }[];
}

/** Registers the gauges and returns the observer of each new pod's registration gap (seconds). */
export function registerKubernetesMetrics(registry: Registry, sources: KubernetesMetricsSources): (seconds: number) => void {
  new Gauge({
    name: `${METRIC_PREFIX}kubernetes_pod_watch_up`,
    help: 'The pod watch is established (1), or connecting or backing off after an error (0): enforcement then follows the last known pods.',
    registers: [registry],
    collect() {
      this.set(sources.pods().api.state === 'watching' ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}kubernetes_pods`,
    help: 'Pods on this node by state: reported (to enforce), waiting_for_cgroup, cgroup_missing (not enforced), enrolled_late (a container started first).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const { pods } = sources.pods();
      this.set({ state: 'reported' }, pods.reported);
      this.set({ state: 'waiting_for_cgroup' }, pods.waitingForCgroup.length);
      this.set({ state: 'cgroup_missing' }, pods.cgroupMissing.length);
      this.set({ state: 'enrolled_late' }, pods.enrolledLate.length);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}kubernetes_pods_excluded`,
    help: 'Pods on this node left alone by design, by reason (namespace-not-enforced, host-network, finished).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const [reason, count] of Object.entries(sources.pods().pods.excluded)) this.set({ reason }, count);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}kubernetes_pods_not_enforced`,
    help: 'Pods whose own rules are not in force: enrolled deny-all (interface or rules failed) or not enrolled at all (no cgroup).',
    labelNames: ['enforced'],
    registers: [registry],
    collect() {
      const failures = sources.failures();
      for (const enforced of ['deny-all', 'none'] as const) this.set({ enforced }, failures.filter((f) => f.enforced === enforced).length);
    },
  });
  const gap = new Histogram({
    name: `${METRIC_PREFIX}pod_registration_seconds`,
    help: "From a new pod cgroup's creation (the kernel's timestamp) to the pod's enrolment in the kernel.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  return (seconds) => gap.observe(seconds);
}

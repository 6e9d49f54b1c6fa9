// Kubernetes mode's sources, the twin of host mode's (src/agent/mode.ts): the node's pods as workloads, found
// through the API server; Events on pods that cannot be enforced; the pod source's metrics.
import type { AgentConfig } from '../agent/config.js';
import type { KubernetesModeFactory, ModeSources } from '../agent/mode.js';
import type { WorkloadSource, WorkloadSpec } from '../identity/source.js';
import { kubeClientFor } from './client.js';
import { keptPoliciesPath } from './kept-policies.js';
import { registerKubernetesMetrics } from './metrics.js';
import { podWorkloadHost } from './pod-host.js';
import { PodEventRecorder } from './pod-events.js';
import { PodSource } from './pod-source.js';
import { PolicyPlane, agentNamespace } from './policy-plane.js';

export const kubernetesModeSources: KubernetesModeFactory = (settings, { cgroup2Mount, log, isEnrolled, baselineChanged }) => {
  const { client, endpoint } = kubeClientFor(settings);
  log.info({ server: endpoint.server, credentials: endpoint.credentials, node: settings.nodeName }, 'Kubernetes mode');
  if (settings.namespaces.length === 0) log.warn('kubernetes.namespaces is empty: no pod is enforced');
  let observeEnrolment: (seconds: number) => void = () => {};
  const pods = new PodSource({
    client,
    nodeName: settings.nodeName,
    namespaces: settings.namespaces,
    cgroup2Mount,
    cgroupDriver: settings.cgroupDriver,
    cgroupRoot: settings.cgroupRoot,
    cgroupTimeoutMs: settings.podCgroupTimeoutSeconds * 1000,
    stateFile: settings.stateFile,
    isEnrolled,
    observeEnrolment: (seconds) => observeEnrolment(seconds),
    log,
  });
  const events = new PodEventRecorder(client, settings.nodeName, log);
  // The EgressBaseline decides the posture and the enforced namespaces; the configuration's namespaces apply only
  // while no valid one was ever read (fail closed).
  let clusterBaseline: AgentConfig['baseline'] | null = null;
  const plane = new PolicyPlane({
    client,
    node: settings.nodeName,
    agentNamespace: agentNamespace(settings.serviceAccountDir),
    fallbackNamespaces: settings.namespaces,
    log,
    keptFile: settings.stateFile === null ? null : keptPoliciesPath(settings.stateFile),
    onBaseline: (state) => {
      clusterBaseline = state.result.baseline;
      pods.setNamespaces(state.result.namespaces);
      baselineChanged();
    },
  });
  // Pods wait for the policies: a pod report compiled before the store holds the cluster's policies (listed, or the
  // copy kept by the previous agent) would replace a restarted agent's pinned enforcement with deny-all while the API
  // server is unreachable. Held, the pinned state keeps enforcing; the latest report is delivered once they are in.
  let policiesReady = false;
  let heldReport: WorkloadSpec[] | null = null;
  let deliver: ((workloads: WorkloadSpec[]) => void) | null = null;
  const workloads: WorkloadSource = {
    start: (onChange) => {
      deliver = onChange;
      return pods.start((report) => (policiesReady ? onChange(report) : (heldReport = report)));
    },
    stop: () => {
      deliver = null;
      return pods.stop();
    },
  };
  const policies: ModeSources['policies'] = {
    start: async (sink) => {
      void plane.policiesReady.then(() => {
        policiesReady = true;
        if (heldReport !== null) deliver?.(heldReport);
        heldReport = null;
      });
      await plane.start(sink);
    },
    stop: () => plane.stop(),
    rejected: () => plane.rejected(),
  };
  return {
    workloads,
    policies,
    resolver: plane.resolver,
    baseline: () => clusterBaseline,
    enforcementChanged: (reconciler, policies) => {
      plane.reportFrom((key) => reconciler.enforcement(key));
      plane.enforcementChanged(policies);
    },
    host: podWorkloadHost,
    workloadsApplied: (failures) => events.update(failures, (key) => pods.podRef(key)),
    reload: (next) => {
      // The enforced namespaces come from the EgressBaseline (kubernetes.namespaces only while none is valid).
      if (next.kubernetes === null) log.warn('the kubernetes: section was removed: restart the agent to change mode');
    },
    kubernetes: () => ({ server: endpoint.server, credentials: endpoint.credentials, pods: pods.status(), policies: plane.status() }),
    registerMetrics: (registry, failures) => {
      observeEnrolment = registerKubernetesMetrics(registry, { pods: () => pods.status(), failures });
    },
  };
};

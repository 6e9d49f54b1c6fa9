// Host mode or Kubernetes mode: the one place that picks where workloads (and, later, policies) come from. Both
// modes hand the composition root the same accessors (as Tetragon's main_k8s/main_nok8s do), so nothing else in
// the agent knows the mode. Kubernetes mode's modules are loaded only when it is chosen: a host-mode agent never
// loads the Kubernetes client.
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AgentConfig, KubernetesConfig } from './config.js';
import type { WorkloadFailure } from './reconciler.js';
import type { KubernetesStatus } from './status.js';
import { hostWorkloadHost } from '../identity/host.js';
import type { WorkloadHost, WorkloadSource } from '../identity/source.js';
import { ConfigWorkloadSource } from '../sources/config-workloads.js';

export interface ModeSources {
  workloads: WorkloadSource;
  /** How the reconciler asks the node about a workload (pods: interfaces found from their netns or routes). */
  host: WorkloadHost;
  /** After each workload report was reconciled: the workloads not enforced as their policies say. */
  workloadsApplied(failures: WorkloadFailure[]): void;
  /** A reloaded configuration: what it changes in the sources. */
  reload(config: AgentConfig): void;
  /** Kubernetes mode's part of the status; null in host mode. */
  kubernetes(): KubernetesStatus | null;
  /** Hooks the sources' own metrics into the agent's registry. */
  registerMetrics(registry: Registry, failures: () => WorkloadFailure[]): void;
}

export interface ModeContext {
  cgroup2Mount: string;
  log: Logger;
  /** True when the reconciler has the workload (namespace/name) in the kernel. */
  isEnrolled: (key: string) => boolean;
}

/** Kubernetes mode's twin of hostModeSources (src/k8s/mode.ts). */
export type KubernetesModeFactory = (settings: KubernetesConfig, context: ModeContext) => ModeSources;

function hostModeSources(config: AgentConfig): ModeSources {
  const source = new ConfigWorkloadSource(config.workloads);
  return {
    workloads: source,
    host: hostWorkloadHost,
    workloadsApplied: () => {},
    reload: (next) => source.update(next.workloads),
    kubernetes: () => null,
    registerMetrics: () => {},
  };
}

export async function modeSources(config: AgentConfig, context: ModeContext): Promise<ModeSources> {
  if (config.kubernetes === null) return hostModeSources(config);
  const { kubernetesModeSources } = (await import('../k8s/mode.js')) as { kubernetesModeSources: KubernetesModeFactory };
  return kubernetesModeSources(config.kubernetes, context);
}

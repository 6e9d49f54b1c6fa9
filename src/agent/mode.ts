// Host mode or Kubernetes mode: the one place that picks where workloads (and, later, policies) come from. Both
// modes hand the composition root the same accessors (as Tetragon's main_k8s/main_nok8s do), so nothing else in
// the agent knows the mode. Kubernetes mode's modules are loaded only when it is chosen: a host-mode agent never
// loads the Kubernetes client.
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AgentConfig, KubernetesConfig } from './config.js';
import type { Reconciler, WorkloadFailure } from './reconciler.js';
import type { KubernetesStatus } from './status.js';
import { hostWorkloadHost } from '../identity/host.js';
import type { WorkloadHost, WorkloadSource } from '../identity/source.js';
import { hostModeResolver, type DestinationResolver } from '../policy/destination-resolver.js';
import type { PolicySource } from '../policy/source.js';
import { ConfigWorkloadSource } from '../sources/config-workloads.js';
import { PolicyFileSource } from '../sources/policy-files.js';

export interface ModeSources {
  workloads: WorkloadSource;
  /** Policy files (host mode) or FirewallPolicy objects (Kubernetes mode), with the objects whose last version was rejected. */
  policies: PolicySource & { rejected(): { file: string; messages: string[] }[] };
  /** How the policy store reports `selector.service` (Kubernetes mode: through Services). */
  resolver: DestinationResolver;
  /** Kubernetes mode: the EgressBaseline in force replaces the configuration's baseline; null in host mode. */
  baseline(): AgentConfig['baseline'] | null;
  /**
   * The kernel changed (a reconciler pass) for these policies (`namespace/name`): Kubernetes mode reports what this
   * node enforces.
   */
  enforcementChanged(reconciler: Reconciler, policies: ReadonlySet<string>): void;
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
  /** Kubernetes mode: the EgressBaseline in force changed (read it with ModeSources.baseline()). */
  baselineChanged: () => void;
}

/** Kubernetes mode's twin of hostModeSources (src/k8s/mode.ts). */
export type KubernetesModeFactory = (settings: KubernetesConfig, context: ModeContext) => ModeSources;

function hostModeSources(config: AgentConfig, log: Logger): ModeSources {
  const source = new ConfigWorkloadSource(config.workloads);
  const policies = new PolicyFileSource(config.policies, log);
  return {
    workloads: source,
    policies,
    resolver: hostModeResolver,
    baseline: () => null,
    enforcementChanged: () => {},
    host: hostWorkloadHost,
    workloadsApplied: () => {},
    reload: (next) => {
      policies.setPaths(next.policies);
      source.update(next.workloads);
    },
    kubernetes: () => null,
    registerMetrics: () => {},
  };
}

export async function modeSources(config: AgentConfig, context: ModeContext): Promise<ModeSources> {
  if (config.kubernetes === null) return hostModeSources(config, context.log);
  const { kubernetesModeSources } = (await import('../k8s/mode.js')) as { kubernetesModeSources: KubernetesModeFactory };
  return kubernetesModeSources(config.kubernetes, context);
}

// Host mode's workload source: the workloads listed in the configuration file, reported again on every reload.
import { existsSync } from 'node:fs';
import type { AgentConfig, WorkloadConfig } from '../agent/config.js';
import { workloadKey } from '../identity/registry.js';
import type { WorkloadSource, WorkloadSpec } from '../identity/source.js';

/**
 * Workloads whose cgroup is missing, each named with the field to fix. The agent starts anyway and enforces the
 * others: one vanished cgroup must not leave the whole node without its DNS proxy and policies.
 */
export function missingWorkloadCgroups(config: AgentConfig): string[] {
  return config.workloads
    .filter((w) => !existsSync(w.cgroup))
    .map(
      (w) => `workload ${workloadKey(w)}: cgroup path ${w.cgroup} does not exist; create it or fix workloads[].cgroup in ${config.file}`,
    );
}

function specOf(w: WorkloadConfig): WorkloadSpec {
  return {
    namespace: w.namespace,
    name: w.name,
    labels: w.labels,
    addresses: w.addresses,
    cgroupPath: w.cgroup,
    interfaces: w.interfaces,
    netns: w.netns,
  };
}

export class ConfigWorkloadSource implements WorkloadSource {
  private onChange: ((workloads: WorkloadSpec[]) => void) | null = null;

  constructor(private workloads: readonly WorkloadConfig[]) {}

  async start(onChange: (workloads: WorkloadSpec[]) => void): Promise<void> {
    this.onChange = onChange;
    onChange(this.workloads.map(specOf));
  }

  /** The configuration was reloaded: report its workloads (the reconciler skips those that did not change). */
  update(workloads: readonly WorkloadConfig[]): void {
    this.workloads = workloads;
    this.onChange?.(workloads.map(specOf));
  }

  async stop(): Promise<void> {
    this.onChange = null;
  }
}

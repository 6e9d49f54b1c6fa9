// Workload identity: which cgroup, which addresses, which labels make up a workload, and lookups by each.

import { unmapIpv4 } from '../model/ip.js';

export interface Workload {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  addresses: string[];
  cgroupPath: string;
  cgroupId: bigint;
  workloadId: number;
}

export function workloadKey(w: { namespace: string; name: string }): string {
  return `${w.namespace}/${w.name}`;
}

export class WorkloadRegistry {
  private byKeyMap = new Map<string, Workload>();
  private byAddressMap = new Map<string, Workload>();
  private byIdMap = new Map<number, Workload>();

  replace(workloads: Workload[]): void {
    this.byKeyMap = new Map(workloads.map((w) => [workloadKey(w), w]));
    this.byIdMap = new Map(workloads.map((w) => [w.workloadId, w]));
    this.byAddressMap = new Map(workloads.flatMap((w) => w.addresses.map((a) => [a, w] as const)));
  }

  all(): Workload[] {
    return [...this.byKeyMap.values()];
  }

  byKey(key: string): Workload | null {
    return this.byKeyMap.get(key) ?? null;
  }

  byId(workloadId: number): Workload | null {
    return this.byIdMap.get(workloadId) ?? null;
  }

  /** The workload that owns a source address (IPv4-mapped IPv6 addresses are matched as IPv4). */
  byAddress(ip: string): Workload | null {
    return this.byAddressMap.get(unmapIpv4(ip)) ?? null;
  }
}

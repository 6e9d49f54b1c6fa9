// Where workloads come from: the config file in host mode, the node's pods in Kubernetes mode. The reconciler
// enrols whatever a source reports and withdraws what it stops reporting; it knows no source in particular.

/** A workload as its source describes it, before it is enrolled in the kernel. */
export interface WorkloadSpec {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The workload's own addresses: the DNS proxy identifies it by them, the backstop allows only them as sources. */
  addresses: string[];
  /** Absolute path of the workload's cgroup v2 directory. */
  cgroupPath: string;
  /** Host-side interfaces for the packet-layer backstop; empty: found from `netns` when given. */
  interfaces: string[];
  /** The workload's network namespace (a path such as /run/netns/NAME or /proc/PID/ns/net). */
  netns: string | null;
}

export interface WorkloadSource {
  /** Report the full current set now and again on every change. */
  start(onChange: (workloads: WorkloadSpec[]) => void): Promise<void>;
  stop(): Promise<void>;
}

/** What the reconciler asks the host about a workload: kept apart so that it runs without root in tests. */
export interface WorkloadHost {
  /** The cgroup's id (its inode number); throws when the cgroup does not exist. */
  cgroupIdOf(cgroupPath: string): bigint;
  /** Host-side interfaces of the workload for the backstop; throws, saying why, when they cannot be found. */
  interfacesOf(workload: WorkloadSpec): string[];
}

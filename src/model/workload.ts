// Who a workload is, as policies select it and events name it. A leaf module: it imports nothing.

export interface WorkloadIdentity {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  podIps: string[];
  cgroupId: string;
}

/** What a FirewallPolicy rule selects on: the namespace and the pod labels. */
export type SelectableWorkload = Pick<WorkloadIdentity, 'namespace' | 'labels'>;

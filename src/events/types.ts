// The one internal flow event every renderer (JSON lines, OCSF, CEF, ...) reads.

export type Verdict = 'permitted' | 'denied' | 'would-deny' | 'would-permit';
export type Layer = 'connect' | 'dns' | 'tls' | 'packet';
export type FqdnSource = 'dns' | 'sni' | 'none';
/** 0: deny list, 1: baseline permits, 2: FirewallPolicy rules, 3: default action. */
export type Tier = 0 | 1 | 2 | 3;

export interface WorkloadIdentity {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  podIps: string[];
  cgroupId: string;
}

export interface FlowEvent {
  /** ISO-8601 time of the first occurrence in this aggregate. */
  time: string;
  node: string;
  workload: WorkloadIdentity;
  process?: { pid: number; comm: string };
  destination: { ip: string; port: number; protocol: string; family: 4 | 6 };
  fqdn: string | null;
  fqdnSource: FqdnSource;
  layer: Layer;
  verdict: Verdict;
  tier: Tier;
  policy: { namespace: string; name: string; generation: number } | null;
  /** Rule name; `default-action` for tier 3, the baseline entry name for tier 1. */
  rule: string;
  reason?: string;
  /** Number of identical decisions aggregated into this event. */
  count: number;
  dns?: { query: string; type: string; rcode: string; answers: string[] };
  eventId: string;
}

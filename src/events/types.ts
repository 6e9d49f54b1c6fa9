// The one internal flow event every renderer (JSON lines, OCSF, CEF, ...) reads.
import type { FqdnSource, Layer, Tier, Verdict } from '../model/decision.js';
import type { WorkloadIdentity } from '../model/workload.js';

// The vocabulary moved to src/model; re-exported so existing importers keep compiling.
export type { FqdnSource, Layer, Tier, Verdict } from '../model/decision.js';
export type { WorkloadIdentity } from '../model/workload.js';

export interface FlowEvent {
  /** ISO-8601 time of the first occurrence in this aggregate. */
  time: string;
  node: string;
  workload: WorkloadIdentity;
  process?: { pid: number; comm: string };
  destination: { ip: string; port: number; protocol: string; family: 4 | 6 };
  /** Packet layer: the source address the packet carried (a forged one included). */
  source?: { ip: string };
  fqdn: string | null;
  fqdnSource: FqdnSource;
  /** When `fqdn` is the SNI the flow sent: the name the workload's DNS answers gave the address, if any (they differ
   * for a fronted flow). */
  resolvedName?: string;
  layer: Layer;
  verdict: Verdict;
  tier: Tier;
  policy: { namespace: string; name: string; generation: number } | null;
  /** Rule name; `default-action` for tier 3, the baseline entry name for tier 1, `packet-integrity` for a
   * packet-layer drop no rule decided (then `reason` says why: forged-source, source-routed, ...). */
  rule: string;
  reason?: string;
  /** Number of identical decisions aggregated into this event. */
  count: number;
  dns?: { query: string; type: string; rcode: string; answers: string[] };
  eventId: string;
}

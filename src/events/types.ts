// The one internal flow event every renderer (JSON lines, OCSF, CEF, ...) reads.
import type { FirstFlightSeen, FqdnSource, LearnedFrom, Layer, Tier, Verdict } from '../model/decision.js';
import type { WorkloadIdentity } from '../model/workload.js';

// The vocabulary moved to src/model; re-exported so existing importers keep compiling.
export type { FirstFlightSeen, FqdnSource, LearnedFrom, Layer, Tier, Verdict } from '../model/decision.js';
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
  /** The server_name its ClientHello sent, as the datapath read it (whatever `fqdn` shows). */
  sni?: string;
  /** The Host header its HTTP/1.x request sent, as the datapath read it. */
  httpHost?: string;
  /** The name the destination address was learned for (a fronted flow's SNI differs from it). */
  learnedName?: string;
  /** How learnedName was learned. */
  learnedFrom?: LearnedFrom;
  /** What the flow sent first, when the datapath read it (`none`: it closed without a complete first flight). */
  firstFlight?: FirstFlightSeen;
  /** The ClientHello carried encrypted_client_hello: its real name is hidden. */
  ech?: true;
  /** Evidence of a flow an earlier decision (named by tier, policy and rule) permitted: not a decision itself. */
  evidence?: true;
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

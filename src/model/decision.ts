// The words every layer uses for one egress decision: where it was taken, what it was, which tier took it.
// A leaf module: it imports nothing, so policy, identity, dns, events and datapath can all depend on it.

export type Verdict = 'permitted' | 'denied' | 'would-deny' | 'would-permit';
export type Layer = 'connect' | 'dns' | 'tls' | 'packet' | 'http';
/** Where a flow's name came from: a DNS answer the workload saw, the TLS ClientHello SNI, or nowhere. */
export type FqdnSource = 'dns' | 'sni' | 'http-host' | 'none';
/** 0: deny list, 1: baseline permits, 2: FirewallPolicy rules, 3: default action. */
export type Tier = 0 | 1 | 2 | 3;

/** What the datapath read of a TCP flow's first flight: a ClientHello, an HTTP/1.x request head, something else,
 * or nothing (the socket closed before sending a complete one). */
export type FirstFlightSeen = 'client-hello' | 'http-request' | 'other' | 'none';

/** How the name of an address was learned: an answer to the workload's own query, seen by the agent's DNS proxy
 * (`workload-dns`); the agent's own resolution of a policy's exact name for the workload (`agent-resolution`); or
 * another workload's answer for the same address (`other-workload-dns`, a weaker hint). */
export type LearnedFrom = 'workload-dns' | 'agent-resolution' | 'other-workload-dns';

/** Why the packet layer dropped a packet before any rule applied (enum eg_reason); or `withdrawn-no-sock-destroy`:
 * a packet of a socket a re-judgment denied that the kernel could not end (no bpf_sock_destroy before Linux 6.5),
 * reported with the rule that denies it now; `not-as-sent`: a segment at tc on a flow whose first flight is still
 * compared, with bytes its socket did not send (substituted inside the pod). */
export type PacketReason =
  'forged-source' | 'source-routed' | 'malformed' | 'orphan-fragment' | 'not-as-judged' | 'withdrawn-no-sock-destroy' | 'not-as-sent';

/** A decision reported by the kernel, decoded by the datapath but not yet enriched (events/enrich.ts names it). */
export interface KernelEvent {
  timestampNs: bigint;
  cgroupId: bigint;
  workloadId: number;
  ruleId: number;
  ip: string;
  family: 4 | 6;
  port: number;
  protocol: number;
  verdict: Verdict;
  tier: Tier;
  layer: Layer;
  pid: number;
  comm: string;
  /** The ClientHello's server name (layer tls) or the request's Host (layer http), lower-cased; null when none. */
  sni: string | null;
  /** Packet layer: the packet's source address (ARP: the sender's), as sent, forged or not. */
  source?: string;
  /** Set when no rule decided: the packet was dropped for this reason (tier 0, rule id 0). */
  reason?: PacketReason;
  /** Events of this workload the kernel's rate limit suppressed just before this one (counted, not sent). */
  suppressed: number;
  /** Evidence of a flow a decision already permitted (what it sent first), not a decision. */
  evidence: boolean;
  /** What the datapath read of the flow's first flight; absent when it read nothing. */
  firstFlight?: FirstFlightSeen;
  /** The ClientHello carried encrypted_client_hello. */
  ech?: true;
}

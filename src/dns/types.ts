// The DNS path's contract with the rest of the agent: the policy oracle it asks, the sink it teaches
// learned addresses to, and the decision events it reports. The proxy depends on nothing else.

import type { Tier } from '../model/decision.js';
import type { PolicyRef } from '../policy/types.js';

export interface DnsWorkload {
  key: string;
  workloadId: number;
}

export interface DnsDecision {
  /** The proxy answers or forwards only when permitted. */
  verdict: 'permitted' | 'denied';
  tier: Tier;
  ruleName: string;
  policy: PolicyRef | null;
  /** Rule ids the answer's A/AAAA addresses must be learned for (may be empty). */
  learnFor: number[];
}

export interface DnsPolicyOracle {
  /** Which workload owns this source address; null when unknown. */
  workloadFor(sourceIp: string): DnsWorkload | null;
  /**
   * False while the agent does not know its workloads yet (Kubernetes mode, a new agent before its first pod list):
   * an unknown source is then left unanswered, so its client retries, instead of refused. Absent: always known.
   */
  workloadsKnown?(): boolean;
  /** Decide a query name (lower case, no trailing dot) for a workload. */
  decide(workload: DnsWorkload, qname: string): DnsDecision;
}

/** What the proxy's learn() did not install. */
export interface LearnOutcome {
  /** Addresses over the workload's per-name cap (AddressCap, applied where every worker's learns meet): not learned. */
  overCap: string[];
}

/** Where the proxy teaches an answer's addresses: applies the per-name cap and installs the rest. */
export interface AnswerLearnSink {
  /** Install what the cap admits for (workloadId, ruleIds); MUST be complete when the promise resolves. */
  learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number, name: string): LearnOutcome | Promise<LearnOutcome>;
}

export interface LearnedIpSink {
  /** Install addresses for (workloadId, ruleIds) with expiry; MUST be complete when the promise resolves. `name` is
   * the name they answer for. */
  learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number, name: string): void | Promise<void>;
}

/** A trusted resolver the proxy and the refresher query. */
export interface ResolverAddress {
  ip: string;
  port: number;
}

export type DnsTransport = 'udp' | 'tcp';
export type DeniedRcode = 'NXDOMAIN' | 'REFUSED';

export interface DnsDecisionEvent {
  /** ISO-8601 time the query arrived. */
  time: string;
  /** null when the source address belongs to no known workload. */
  workloadKey: string | null;
  workloadId: number | null;
  sourceIp: string;
  sourcePort: number;
  transport: DnsTransport;
  /** Lower case, no trailing dot; '' when the query could not be parsed. */
  query: string;
  /** Record type mnemonic (`A`, `AAAA`, `TXT`, `UNKNOWN_65400`); '' when the query could not be parsed. */
  qtype: string;
  verdict: 'permitted' | 'denied';
  tier: Tier;
  /** Policy rule name, or a proxy reason code for decisions made without policy: `unknown-source`, `malformed-query`, `policy-error`. */
  ruleName: string;
  policy: PolicyRef | null;
  /** Response code sent to the client (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...). */
  rcode: string;
  /** A/AAAA addresses the answer carried for the query name (CNAME chain followed). */
  answers: string[];
  /** TTL the addresses were learned with; null when nothing was learned. */
  learnedTtlSeconds: number | null;
  /** `address:port` of the resolver that answered; null when not forwarded. */
  upstream: string | null;
  /** null when not forwarded: denied, failed, or answered from the shared answer cache (then `upstream` gave it). */
  upstreamLatencyMs: number | null;
  /** Why the outcome differs from a plain answer (upstream failure, cap reached, ...); null otherwise. */
  reason: string | null;
}

export type DnsEventListener = (event: DnsDecisionEvent) => void;

export interface DnsProxyStats {
  queries: number;
  permitted: number;
  denied: number;
  /** Queries from addresses no workload owns (refused; unanswered while the workloads are not known yet). */
  unknownSource: number;
  /** Unparseable, multi-question or otherwise invalid queries (dropped or answered FORMERR/NOTIMP). */
  malformed: number;
  /** Permitted queries no upstream answered (SERVFAIL to the client). */
  upstreamErrors: number;
  /** Upstream datagrams or frames that did not match an outstanding query (possible spoofing). */
  upstreamResponsesIgnored: number;
  /** learn() rejected or timed out (SERVFAIL to the client). */
  learnFailures: number;
  /** Addresses handed to learn(). */
  learnedAddresses: number;
  /** Addresses not learned because the per-name cap of a workload was reached. */
  addressesOverCap: number;
  /** Queries dropped because too many were in flight. */
  droppedOverload: number;
  /** Queries dropped because their workload (unknown sources: their address) had its own share in flight. */
  droppedOverloadPerWorkload: number;
  /** TCP connections closed at accept because the connection cap was reached. */
  tcpConnectionsRejected: number;
  /** TCP connections closed at accept because their workload held its own cap of slots. */
  tcpConnectionsRejectedPerWorkload: number;
  /** TCP connections open now (a level, not a count): against the node-wide cap, so a full proxy shows before it refuses. */
  tcpConnectionsOpen: number;
}

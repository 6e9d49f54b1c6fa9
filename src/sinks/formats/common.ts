// What every SIEM format shares: who wrote the record, and the small vocabulary maps over one decision.
import type { FlowEvent } from '../../events/types.js';

/** The product as SIEM records name it (OCSF metadata.product, ECS observer, CEF header). */
export interface ProductInfo {
  name: string;
  vendor: string;
  version: string;
}

/** Epoch milliseconds of an ISO-8601 time, as OCSF `time` and CEF `rt` want it. */
export function epochMs(iso: string): number {
  return Date.parse(iso);
}

/** The IANA protocol number of a transport name the datapath reports (`tcp`, `udp`, ...), or undefined. */
export function ianaProtocol(protocol: string): number | undefined {
  return ({ tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 } as Record<string, number>)[protocol.toLowerCase()];
}

/** `namespace/name` of the workload; just the name when it has no namespace (a DNS query from an unknown source). */
export function workloadName(event: FlowEvent): string {
  return event.workload.namespace === '' ? event.workload.name : `${event.workload.namespace}/${event.workload.name}`;
}

/** `namespace/name` of the policy that decided, or undefined for baseline and deny-list decisions. */
export function policyName(event: FlowEvent): string | undefined {
  return event.policy === null ? undefined : `${event.policy.namespace}/${event.policy.name}`;
}

/** Traffic was let through (audit-mode verdicts included: nothing was blocked). */
export function wasAllowed(event: FlowEvent): boolean {
  return event.verdict !== 'denied';
}

/** Audit mode: the decision was recorded, not enforced. */
export function isAudit(event: FlowEvent): boolean {
  return event.verdict === 'would-deny' || event.verdict === 'would-permit';
}

/** What the datapath saw of the flow beyond its decision (FlowEvent sni, httpHost, learnedName, ...), under snake_case
 * names for the JSON formats' custom field sets; only the fields the event has. */
export function sightingFields(event: FlowEvent): Record<string, string | boolean> {
  return {
    ...(event.learnedName !== undefined ? { learned_name: event.learnedName } : {}),
    ...(event.learnedFrom !== undefined ? { learned_from: event.learnedFrom } : {}),
    ...(event.firstFlight !== undefined ? { first_flight: event.firstFlight } : {}),
    ...(event.ech ? { ech: true } : {}),
    ...(event.evidence ? { evidence: true } : {}),
  };
}

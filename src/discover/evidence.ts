// Evidence joined to the flows it describes. In discovery mode (and for every reported permit) the kernel decides a TCP
// flow at connect, then reads what the flow sent first and reports it as a separate evidence event: the SNI or HTTP
// Host, beside the name the address was learned for. A suggestion or a replay must judge that flow once, on what it
// really sent, so each evidence event takes the place of a connect decision of its flow (same workload, destination
// and deciding rule); a connect decision no evidence followed (nothing readable was sent, or the event was lost)
// stays as it was recorded.
import type { FlowEvent } from '../events/types.js';

/** The flow an event belongs to, as both a connect decision and its evidence name it. */
function flowKey(event: FlowEvent): string {
  const { workload, destination, policy } = event;
  return JSON.stringify([
    workload.namespace,
    workload.name,
    workload.cgroupId,
    destination.ip,
    destination.port,
    destination.protocol,
    event.tier,
    policy === null ? null : `${policy.namespace}/${policy.name}`,
    event.rule,
  ]);
}

/** Whether a recorded decision is one an evidence event can follow: a TCP connect the kernel permitted. */
function awaitsEvidence(event: FlowEvent): boolean {
  return !event.evidence && event.layer === 'connect' && event.verdict === 'permitted' && event.destination.protocol === 'tcp';
}

/**
 * The recorded events with the evidence events in place of the connect decisions they describe (counts of aggregated
 * records are split as needed; the earliest decisions are taken first). File order cannot pair them: the pipeline
 * writes an aggregate of repeated connects when its window closes, after the evidence of those connects. Every other
 * record is kept as it is.
 */
export function joinEvidence(events: readonly FlowEvent[]): FlowEvent[] {
  const evidenced = new Map<string, number>();
  for (const event of events) if (event.evidence) evidenced.set(flowKey(event), (evidenced.get(flowKey(event)) ?? 0) + event.count);
  const byTime = events.map((event, index) => ({ event, index })).filter(({ event }) => awaitsEvidence(event));
  byTime.sort((a, b) => (a.event.time < b.event.time ? -1 : a.event.time > b.event.time ? 1 : a.index - b.index));
  const remaining = new Map<number, number>();
  for (const { event, index } of byTime) {
    const key = flowKey(event);
    const taken = Math.min(event.count, evidenced.get(key) ?? 0);
    evidenced.set(key, (evidenced.get(key) ?? 0) - taken);
    remaining.set(index, event.count - taken);
  }
  return events.flatMap((event, index) => {
    const count = remaining.get(index);
    if (count === undefined) return [event];
    return count > 0 ? [{ ...event, count }] : [];
  });
}

/** The name a flow sent itself (its ClientHello's SNI or its request's Host), or null when none was read. */
export function sentName(event: FlowEvent): string | null {
  const name = event.sni ?? event.httpHost ?? (event.fqdnSource === 'sni' || event.fqdnSource === 'http-host' ? event.fqdn : null);
  return name === null ? null : normalized(name);
}

/** The name the flow's address was learned for (from DNS), or null. */
export function learnedNameOf(event: FlowEvent): string | null {
  const name = event.learnedName ?? (event.fqdnSource === 'dns' ? event.fqdn : null);
  return name === null ? null : normalized(name);
}

/** A fronted flow: it sent a name other than the one its address was learned for. */
export function isFronted(event: FlowEvent): boolean {
  const sent = sentName(event);
  const learned = learnedNameOf(event);
  return sent !== null && learned !== null && sent !== learned;
}

function normalized(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

// OCSF 1.8.0: flow decisions as Network Activity (class 4001), DNS decisions as DNS Activity (class 4003), the
// pipeline's notices as Base Event (class 0). Field meanings from the public schema (schema.ocsf.io, 1.8.0); the
// mappings OCSF leaves open are our conventions, documented in README "Events":
// - activity: permitted at connect → 1 Open, denied at connect → 5 Refuse, decided mid-flow (tls, packet) → 6 Traffic;
// - verdict: action/disposition Allowed/Allowed, Denied/Blocked (Dropped mid-flow), audit verdicts Observed/Logged;
// - Kubernetes identity (OCSF has no namespace or pod field): src_endpoint.name "<ns>/<pod>",
//   src_endpoint.container {orchestrator "Kubernetes", tags k8s.namespace, k8s.pod, k8s.label.<key>};
// - what OCSF has no attribute for (layer, tier, verdict, fqdn source, reason, the learned name and how it was
//   learned, what the flow sent first, evidence) goes to `unmapped`.
// No `tls` object is sent for an SNI-named flow: OCSF requires tls.version there, which the datapath does not know;
// the SNI is dst_endpoint.hostname with unmapped.fqdn_source "sni", and unmapped.sni (unmapped.http_host) always.
import { describeNotice, type PipelineNotice } from '../../events/sink.js';
import type { FlowEvent } from '../../events/types.js';
import type { Format } from '../types.js';
import { epochMs, ianaProtocol, isAudit, policyName, sightingFields, workloadName, type ProductInfo } from './common.js';

export const OCSF_VERSION = '1.8.0';

const NETWORK_ACTIVITY = { uid: 4001, name: 'Network Activity' };
const DNS_ACTIVITY = { uid: 4003, name: 'DNS Activity' };
const NETWORK_CATEGORY = { category_uid: 4, category_name: 'Network Activity' };

const ACTIVITY = { open: [1, 'Open'], refuse: [5, 'Refuse'], traffic: [6, 'Traffic'] } as const;
/** DNS Activity: the agent's proxy answered the workload's query. */
const DNS_RESPONSE = [2, 'Response'] as const;
const RCODE_IDS: Record<string, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
};
const RCODE_NAMES = ['NoError', 'FormError', 'ServError', 'NXDomain', 'NotImp', 'Refused'];
/** OCSF rcode_id 99: Other (the caption goes in `rcode`). */
const OTHER = 99;

function activityOf(event: FlowEvent): readonly [number, string] {
  if (event.layer !== 'connect') return ACTIVITY.traffic;
  return event.verdict === 'denied' ? ACTIVITY.refuse : ACTIVITY.open;
}

function verdictAttributes(event: FlowEvent): Record<string, unknown> {
  if (isAudit(event)) return { action_id: 3, action: 'Observed', disposition_id: 17, disposition: 'Logged' };
  if (event.verdict === 'permitted') return { action_id: 1, action: 'Allowed', disposition_id: 1, disposition: 'Allowed' };
  const dropped = event.layer === 'tls' || event.layer === 'packet';
  return {
    action_id: 2,
    action: 'Denied',
    ...(dropped ? { disposition_id: 6, disposition: 'Dropped' } : { disposition_id: 2, disposition: 'Blocked' }),
  };
}

function severityOf(event: FlowEvent): { severity_id: number; severity: string } {
  if (event.verdict === 'denied') return { severity_id: 3, severity: 'Medium' };
  if (event.verdict === 'would-deny') return { severity_id: 2, severity: 'Low' };
  return { severity_id: 1, severity: 'Informational' };
}

function metadata(product: ProductInfo, uid: string | undefined): Record<string, unknown> {
  return {
    version: OCSF_VERSION,
    product: { name: product.name, vendor_name: product.vendor, version: product.version },
    ...(uid ? { uid } : {}),
  };
}

function sourceEndpoint(event: FlowEvent): Record<string, unknown> {
  const { namespace, name, labels, podIps } = event.workload;
  const tags = [
    ...(namespace ? [{ name: 'k8s.namespace', value: namespace }] : []),
    { name: 'k8s.pod', value: name },
    ...Object.entries(labels).map(([key, value]) => ({ name: `k8s.label.${key}`, value })),
  ];
  return {
    name: workloadName(event),
    ...(podIps[0] ? { ip: podIps[0] } : {}),
    container: { name, orchestrator: 'Kubernetes', tags },
  };
}

function destinationEndpoint(event: FlowEvent): Record<string, unknown> {
  return { ip: event.destination.ip, port: event.destination.port, ...(event.fqdn ? { hostname: event.fqdn } : {}) };
}

function common(event: FlowEvent, product: ProductInfo, classInfo: { uid: number; name: string }, activity: readonly [number, string]) {
  const [activityId, activityName] = activity;
  const policy = policyName(event);
  return {
    activity_id: activityId,
    activity_name: activityName,
    ...NETWORK_CATEGORY,
    class_uid: classInfo.uid,
    class_name: classInfo.name,
    type_uid: classInfo.uid * 100 + activityId,
    type_name: `${classInfo.name}: ${activityName}`,
    ...severityOf(event),
    time: epochMs(event.time),
    count: event.count,
    ...verdictAttributes(event),
    metadata: metadata(product, event.eventId),
    device: { hostname: event.node, type_id: 1, type: 'Server' },
    src_endpoint: sourceEndpoint(event),
    dst_endpoint: destinationEndpoint(event),
    connection_info: {
      direction_id: 2,
      direction: 'Outbound',
      ...(ianaProtocol(event.destination.protocol) !== undefined ? { protocol_num: ianaProtocol(event.destination.protocol) } : {}),
      protocol_name: event.destination.protocol,
      protocol_ver_id: event.destination.family,
    },
    ...(event.process ? { actor: { process: { pid: event.process.pid, name: event.process.comm } } } : {}),
    ...(policy && event.policy ? { policy: { name: policy, version: String(event.policy.generation) } } : {}),
    firewall_rule: { name: event.rule },
    ...(event.reason ? { status_detail: event.reason } : {}),
    unmapped: {
      verdict: event.verdict,
      layer: event.layer,
      tier: event.tier,
      fqdn_source: event.fqdnSource,
      ...(event.sni !== undefined ? { sni: event.sni } : {}),
      ...(event.httpHost !== undefined ? { http_host: event.httpHost } : {}),
      ...sightingFields(event),
    },
  };
}

export function ocsfFormat(product: ProductInfo): Format {
  return {
    flow(event) {
      if (event.dns === undefined) return JSON.stringify(common(event, product, NETWORK_ACTIVITY, activityOf(event)));
      const rcode = event.dns.rcode.toUpperCase();
      const rcodeId = RCODE_IDS[rcode] ?? OTHER;
      return JSON.stringify({
        ...common(event, product, DNS_ACTIVITY, DNS_RESPONSE),
        query: { hostname: event.dns.query, type: event.dns.type, class: 'IN' },
        answers: event.dns.answers.map((rdata) => ({ rdata })),
        rcode_id: rcodeId,
        rcode: rcodeId === OTHER ? event.dns.rcode : RCODE_NAMES[rcodeId],
      });
    },
    notice(notice: PipelineNotice) {
      const { kind, time, node, ...details } = notice;
      return JSON.stringify({
        activity_id: 0,
        activity_name: 'Unknown',
        category_uid: 0,
        category_name: 'Uncategorized',
        class_uid: 0,
        class_name: 'Base Event',
        type_uid: 0,
        type_name: 'Base Event: Unknown',
        severity_id: 3,
        severity: 'Medium',
        time: epochMs(time),
        message: describeNotice(notice),
        metadata: metadata(product, undefined),
        device: { hostname: node, type_id: 1, type: 'Server' },
        unmapped: { kind, ...details },
      });
    },
  };
}

// Elastic Common Schema 9.0.0 (elastic.co/guide/en/ecs/9.0): one document per decision or notice, with nested
// objects (as Elasticsearch ingests them). What ECS has no field for (layer, tier, verdict, fqdn source, aggregate
// count, workload labels, the name an address was learned for and how, what the flow sent first, evidence) goes under
// `egressguard.*`, a custom field set. The SNI a flow sent is tls.client.server_name, an HTTP Host url.domain.
import { describeNotice, type PipelineNotice } from '../../events/sink.js';
import type { FlowEvent } from '../../events/types.js';
import type { Format } from '../types.js';
import { ianaProtocol, isAudit, policyName, sightingFields, wasAllowed, type ProductInfo } from './common.js';

export const ECS_VERSION = '9.0.0';

function observer(product: ProductInfo, node: string): Record<string, unknown> {
  return { type: 'firewall', product: product.name, vendor: product.vendor, version: product.version, hostname: node };
}

function flowDocument(event: FlowEvent, product: ProductInfo): Record<string, unknown> {
  const allowed = wasAllowed(event);
  const protocolNumber = ianaProtocol(event.destination.protocol);
  const policy = policyName(event);
  return {
    '@timestamp': event.time,
    ecs: { version: ECS_VERSION },
    message: `egress ${event.verdict} ${event.workload.namespace}/${event.workload.name} -> ${event.fqdn ?? event.destination.ip}:${event.destination.port}`,
    event: {
      kind: 'event',
      category: ['network'],
      type: ['connection', allowed ? 'allowed' : 'denied'],
      action: `egress-${event.verdict}`,
      outcome: 'success',
      ...(event.eventId ? { id: event.eventId } : {}),
      dataset: 'egressguard.flow',
      module: 'egressguard',
      ...(event.reason ? { reason: event.reason } : {}),
    },
    source: { ...(event.workload.podIps[0] ? { ip: event.workload.podIps[0] } : {}) },
    destination: { ip: event.destination.ip, port: event.destination.port, ...(event.fqdn ? { domain: event.fqdn } : {}) },
    network: {
      transport: event.destination.protocol.toLowerCase(),
      ...(protocolNumber !== undefined ? { iana_number: String(protocolNumber) } : {}),
      type: event.destination.family === 6 ? 'ipv6' : 'ipv4',
      direction: 'egress',
    },
    ...(event.sni !== undefined ? { tls: { client: { server_name: event.sni } } } : {}),
    ...(event.httpHost !== undefined ? { url: { domain: event.httpHost } } : {}),
    rule: { name: event.rule, ...(policy && event.policy ? { ruleset: policy, version: String(event.policy.generation) } : {}) },
    orchestrator: {
      type: 'kubernetes',
      ...(event.workload.namespace ? { namespace: event.workload.namespace } : {}),
      resource: { type: 'pod', name: event.workload.name },
    },
    host: { name: event.node },
    observer: observer(product, event.node),
    ...(event.process ? { process: { pid: event.process.pid, name: event.process.comm } } : {}),
    ...(event.dns
      ? {
          dns: {
            type: 'answer',
            question: { name: event.dns.query, type: event.dns.type },
            response_code: event.dns.rcode,
            answers: event.dns.answers.map((data) => ({ data })),
          },
        }
      : {}),
    egressguard: {
      verdict: event.verdict,
      audit: isAudit(event),
      layer: event.layer,
      tier: event.tier,
      fqdn_source: event.fqdnSource,
      count: event.count,
      workload_labels: event.workload.labels,
      ...sightingFields(event),
    },
  };
}

export function ecsFormat(product: ProductInfo): Format {
  return {
    flow: (event) => JSON.stringify(flowDocument(event, product)),
    notice(notice: PipelineNotice) {
      const { kind, time, node, ...details } = notice;
      return JSON.stringify({
        '@timestamp': time,
        ecs: { version: ECS_VERSION },
        message: describeNotice(notice),
        event: {
          kind: 'event',
          category: ['configuration'],
          type: ['info'],
          action: kind,
          dataset: 'egressguard.notice',
          module: 'egressguard',
        },
        host: { name: node },
        observer: observer(product, node),
        egressguard: { notice: { kind, ...details } },
      });
    },
  };
}

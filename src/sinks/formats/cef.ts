// ArcSight CEF 0 (Micro Focus "Implementing ArcSight CEF", rev. 25): `CEF:0|Vendor|Product|Version|SignatureID|Name|
// Severity|Extension`. Escaping per the spec: in the header `\` and `|`; in extension values `\`, `=` and line
// breaks (as `\n` / `\r`). Extension keys are fixed names of ours, never escaped. What the dictionary has no key for
// and the six custom strings are taken (the learned name, how it was learned, what the flow sent first) goes under
// vendor keys named as the spec asks (`egressguardLearnedName`, ...); the SNI or HTTP Host is flexString2 (which DNS
// decisions, the only other users, never need), an evidence record has cat=evidence.
import { describeNotice, type PipelineNotice } from '../../events/sink.js';
import type { FlowEvent } from '../../events/types.js';
import type { Format } from '../types.js';
import { epochMs, policyName, wasAllowed, type ProductInfo } from './common.js';

export function escapeCefHeader(value: string): string {
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|\r|\n/g, ' ');
}

export function escapeCefValue(value: string): string {
  return value
    .replace(/[\\=]/g, (c) => `\\${c}`)
    .replace(/\r\n|\n/g, '\\n')
    .replace(/\r/g, '\\r');
}

type Field = [string, string | number | undefined];

/** A custom field (`cs1`, `cn1`, ...) with its label, both left out when there is no value. */
function custom(key: string, label: string, value: string | number | undefined): Field[] {
  return value === undefined || value === ''
    ? []
    : [
        [`${key}Label`, label],
        [key, value],
      ];
}

function extension(fields: Field[]): string {
  return fields
    .filter((field): field is [string, string | number] => field[1] !== undefined && field[1] !== '')
    .map(([key, value]) => `${key}=${escapeCefValue(String(value))}`)
    .join(' ');
}

function header(product: ProductInfo, signatureId: string, name: string, severity: number): string {
  return ['CEF:0', product.vendor, product.name, product.version, signatureId, name, String(severity)].map(escapeCefHeader).join('|');
}

const SEVERITY = { denied: 5, 'would-deny': 3, 'would-permit': 1, permitted: 1 } as const;

function flowRecord(event: FlowEvent, product: ProductInfo): string {
  const allowed = wasAllowed(event);
  const app = event.workload.labels['app'];
  return `${header(product, `egress-${event.verdict}`, `Egress ${event.verdict} at ${event.layer}`, SEVERITY[event.verdict])}|${extension([
    ['rt', epochMs(event.time)],
    ['act', allowed ? 'allowed' : 'blocked'],
    ['outcome', event.verdict],
    ['deviceDirection', 1],
    ['dvchost', event.node],
    ['src', event.workload.podIps[0]],
    ['dst', event.destination.ip],
    ['dpt', event.destination.port],
    ['proto', event.destination.protocol.toUpperCase()],
    ['dhost', event.fqdn ?? undefined],
    ['cnt', event.count],
    ['reason', event.reason],
    ['externalId', event.eventId],
    ['sproc', event.process?.comm],
    ['spid', event.process?.pid],
    ...custom('cs1', 'policy', policyName(event) ?? '-'),
    ...custom('cs2', 'rule', event.rule),
    ...custom('cs3', 'namespace', event.workload.namespace),
    ...custom('cs4', 'pod', event.workload.name),
    ...custom('cs5', 'app', app),
    ...custom('cs6', 'layer', event.layer),
    ...custom('cn1', 'tier', event.tier),
    ...custom('flexString1', 'fqdnSource', event.fqdnSource),
    ...(event.dns
      ? ([...custom('flexString2', 'dnsRcode', event.dns.rcode), ['requestContext', `${event.dns.type} ${event.dns.query}`]] as Field[])
      : event.httpHost !== undefined
        ? custom('flexString2', 'httpHost', event.httpHost)
        : custom('flexString2', 'sni', event.sni)),
    ['cat', event.evidence ? 'evidence' : undefined],
    ['egressguardLearnedName', event.learnedName],
    ['egressguardLearnedFrom', event.learnedFrom],
    ['egressguardFirstFlight', event.firstFlight],
    ['egressguardEch', event.ech ? 'true' : undefined],
  ])}`;
}

export function cefFormat(product: ProductInfo): Format {
  return {
    flow: (event) => flowRecord(event, product),
    notice(notice: PipelineNotice) {
      return `${header(product, notice.kind, 'egressguard notice', 6)}|${extension([
        ['rt', epochMs(notice.time)],
        ['dvchost', notice.node],
        ['cnt', notice.count],
        ['msg', describeNotice(notice)],
        ...custom('cs1', 'sink', notice.kind === 'sink-records-dropped' ? notice.sink : undefined),
        ...custom('cn1', 'total', notice.total),
      ])}`;
    },
  };
}

// RFC 5424 syslog messages around any record format: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
// TIMESTAMP is the decision's time (not the send time), HOSTNAME the node, MSGID `flow` or the notice kind, no
// structured data; MSG is the inner record as UTF-8 without a BOM (RFC 5424 allows MSG-ANY; a BOM confuses the CEF
// and JSON parsers SIEMs run on MSG). Framing (octet counting) is the transport's.
import type { PipelineNotice } from '../../events/sink.js';
import type { Verdict } from '../../events/types.js';
import type { Format } from '../types.js';

export interface SyslogHeaderOptions {
  /** 0-23 (default 13, "log audit"). */
  facility: number;
  appName: string;
  procId: string;
}

/** RFC 5424 severities: 4 warning, 5 notice, 6 informational. */
const SEVERITY: Record<Verdict, number> = { denied: 4, 'would-deny': 5, 'would-permit': 6, permitted: 6 };
const NOTICE_SEVERITY = 4;

/** A header field: printable US-ASCII only (RFC 5424 PRINTUSASCII), at most `max` characters, `-` when empty. */
function headerField(value: string, max: number): string {
  const printable = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return printable === '' ? '-' : printable;
}

export function syslogMessages(inner: Format, options: SyslogHeaderOptions): Format {
  const app = headerField(options.appName, 48);
  const procId = headerField(options.procId, 128);
  const message = (severity: number, time: string, node: string, msgId: string, record: string) =>
    `<${options.facility * 8 + severity}>1 ${time} ${headerField(node, 255)} ${app} ${procId} ${headerField(msgId, 32)} - ${record}`;
  return {
    flow: (event) => message(SEVERITY[event.verdict], event.time, event.node, 'flow', inner.flow(event)),
    notice: (notice: PipelineNotice) => message(NOTICE_SEVERITY, notice.time, notice.node, notice.kind, inner.notice(notice)),
  };
}

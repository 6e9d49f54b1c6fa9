// The policy log as a plain-text table for terminals (the demo): aligned columns, one row per event.
import type { FlowEvent } from './types.js';

interface Column {
  header: string;
  cell: (event: FlowEvent) => string;
  maxWidth: number;
  alignRight?: boolean;
}

const COLUMNS: Column[] = [
  // ISO time, UTC, to the millisecond: HH:MM:SS.mmm
  { header: 'TIME (UTC)', cell: (e) => e.time.slice(11, 23), maxWidth: 12 },
  { header: 'WORKLOAD', cell: (e) => `${e.workload.namespace}/${e.workload.name}`, maxWidth: 32 },
  { header: 'POD IP', cell: (e) => e.workload.podIps[0] ?? '-', maxWidth: 39 },
  { header: 'DESTINATION FQDN', cell: (e) => e.fqdn ?? '-', maxWidth: 40 },
  { header: 'DESTINATION IP', cell: (e) => e.destination.ip, maxWidth: 39 },
  { header: 'PORT', cell: (e) => `${e.destination.port}/${e.destination.protocol}`, maxWidth: 10 },
  { header: 'LAYER', cell: (e) => e.layer, maxWidth: 7 },
  { header: 'RULE', cell: (e) => e.rule, maxWidth: 32 },
  { header: 'TIER', cell: (e) => String(e.tier), maxWidth: 4, alignRight: true },
  { header: 'VERDICT', cell: (e) => e.verdict, maxWidth: 12 },
  { header: 'COUNT', cell: (e) => String(e.count), maxWidth: 8, alignRight: true },
];

/** Workload-controlled text (DNS names above all) must not move the cursor or inject terminal escapes. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function fit(text: string, width: number): string {
  const clean = printable(text);
  return clean.length <= width ? clean : `${clean.slice(0, width - 3)}...`;
}

export function renderPolicyLogTable(events: readonly FlowEvent[]): string {
  const rows = events.map((event) => COLUMNS.map((column) => fit(column.cell(event), column.maxWidth)));
  const widths = COLUMNS.map((column, i) => Math.max(column.header.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (COLUMNS[i]?.alignRight ? cell.padStart(widths[i] as number) : cell.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return (
    [line(COLUMNS.map((column) => column.header)), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n') + '\n'
  );
}

/**
 * One row per distinct flow for a human reader: the pipeline writes a first occurrence and later a counted repeat
 * (and DNS asks A and AAAA separately); here they are summed, earliest time first.
 */
export function summarizeFlows(events: readonly FlowEvent[]): FlowEvent[] {
  const rows = new Map<string, FlowEvent>();
  for (const event of [...events].sort((a, b) => a.time.localeCompare(b.time))) {
    const key = JSON.stringify([
      event.workload.namespace,
      event.workload.name,
      event.fqdn,
      event.destination.ip,
      event.destination.port,
      event.destination.protocol,
      event.layer,
      event.rule,
      event.tier,
      event.verdict,
    ]);
    const row = rows.get(key);
    if (row) row.count += event.count;
    else rows.set(key, { ...event });
  }
  return [...rows.values()];
}

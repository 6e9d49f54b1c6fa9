// `egressguard observe`: follow a running agent's decisions over its control socket, filtered in the agent, printed
// as a table or as JSON lines (one record each, as the agent sent it).
import { parseArgs } from 'node:util';
import { observeStream } from '../agent/control.js';
import { LAYERS, VERDICTS } from '../events/history.js';
import { describeNotice, type PipelineNotice } from '../events/sink.js';
import type { FlowEvent, Layer, Verdict } from '../events/types.js';

const DURATION = /^(\d+)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30s`, `5m`, `2h`, `1d` before now, or an ISO-8601 time. */
export function parseSince(text: string, nowMs: number): number {
  const duration = DURATION.exec(text);
  if (duration) return nowMs - Number(duration[1]) * UNIT_MS[duration[2]!]!;
  const time = Date.parse(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && Number.isFinite(time)) return time;
  throw new Error(`--since "${text}": give a duration (30s, 5m, 2h, 1d) or an ISO-8601 time (2026-12-01T04:00:00Z)`);
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new Error(`--${flag} "${value}": use one of ${allowed.join(', ')}`);
  return value as T;
}

function destinationText(event: FlowEvent): string {
  const { ip, port, protocol, family } = event.destination;
  return `${family === 6 ? `[${ip}]` : ip}:${port}/${protocol}`;
}

/** One table row for a record as the agent streams it (see observedLine in src/agent/control.ts). */
export function formatObservedRow(line: Record<string, unknown>): string {
  if (line.kind === 'flow') {
    const event = line as unknown as FlowEvent;
    const workload = `${event.workload.namespace}/${event.workload.name}`;
    const rule = event.policy ? `${event.policy.namespace}/${event.policy.name}:${event.rule}` : event.rule;
    const count = event.count > 1 ? `  x${event.count}` : '';
    return [
      event.time.slice(11, 23),
      event.verdict.toUpperCase().padEnd(12),
      workload.padEnd(28),
      event.layer.padEnd(7),
      destinationText(event).padEnd(30),
      (event.fqdn ?? '-').padEnd(28),
      `tier ${event.tier} ${rule}${count}`,
    ].join(' ');
  }
  const time = typeof line.time === 'string' ? line.time.slice(11, 23) : '';
  const message =
    line.notice === 'observer-dropped'
      ? `${String(line.count)} records not shown: this observer fell behind`
      : describeNotice({ ...line, kind: line.notice } as PipelineNotice);
  return `${time} ${'NOTICE'.padEnd(12)} ${message}`;
}

export async function observe(args: string[], defaultSocket: string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      socket: { type: 'string' },
      namespace: { type: 'string' },
      workload: { type: 'string' },
      verdict: { type: 'string' },
      fqdn: { type: 'string' },
      rule: { type: 'string' },
      layer: { type: 'string' },
      since: { type: 'string' },
      last: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
      output: { type: 'string', short: 'o', default: 'table' },
    },
  });
  const output = oneOf('output', values.output, ['table', 'json'] as const);
  const last = values.last === undefined ? undefined : Number(values.last);
  if (last !== undefined && (!Number.isSafeInteger(last) || last < 1)) throw new Error(`--last "${values.last}": give a positive integer`);
  const filter = {
    ...(values.namespace !== undefined && { namespace: values.namespace }),
    ...(values.workload !== undefined && { workload: values.workload }),
    ...(values.verdict !== undefined && { verdict: oneOf<Verdict>('verdict', values.verdict, VERDICTS) }),
    ...(values.fqdn !== undefined && { fqdn: values.fqdn }),
    ...(values.rule !== undefined && { rule: values.rule }),
    ...(values.layer !== undefined && { layer: oneOf<Layer>('layer', values.layer, LAYERS) }),
    ...(values.since !== undefined && { sinceMs: parseSince(values.since, Date.now()) }),
  };
  // History alone when asked for it without --follow; live otherwise. --since alone means all history since then.
  const historyOnly = (last !== undefined || values.since !== undefined) && !values.follow;
  const request = {
    command: 'observe' as const,
    filter,
    last: last ?? (values.since !== undefined ? Number.MAX_SAFE_INTEGER : 0),
    follow: !historyOnly,
  };
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  await observeStream(
    values.socket ?? defaultSocket,
    request,
    (line) => process.stdout.write(`${output === 'json' ? JSON.stringify(line) : formatObservedRow(line)}\n`),
    stop.signal,
  );
  return 0;
}

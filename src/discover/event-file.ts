// Reading recorded decisions: the JSON lines the agent's jsonl sink writes (and `observe --output json` prints), one
// record per line, `kind: flow` or `kind: notice`. Every line is checked field by field; a bad line stops the read with
// its file and line number, and a last line cut off mid-record is named as truncated, so a suggestion or a replay is
// never computed from part of a file without saying so.
import { readFileSync } from 'node:fs';
import { VERDICTS, LAYERS } from '../events/history.js';
import type { FirstFlightSeen, FlowEvent, FqdnSource, LearnedFrom } from '../events/types.js';

/** What recorded traffic holds: flows in file order, and the losses the pipeline reported while recording. */
export interface RecordedEvents {
  flows: FlowEvent[];
  /** One line per loss notice (events dropped, lost, suppressed): the record is incomplete by that much. */
  losses: string[];
}

export class EventFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'EventFileError';
  }
}

const LOSS_NOTICES = new Set([
  'events-dropped',
  'kernel-events-lost',
  'kernel-events-malformed',
  'events-suppressed',
  'sink-records-dropped',
  'observer-dropped',
]);

type Check = (value: unknown) => boolean;
const isString: Check = (v) => typeof v === 'string';
const isNullableString: Check = (v) => v === null || typeof v === 'string';
const isCount: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 1;
const isPort: Check = (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;
const isName: Check = (v) => typeof v === 'string' && v !== '';
const FQDN_SOURCES: readonly FqdnSource[] = ['dns', 'sni', 'http-host', 'none'];
const LEARNED_FROM: readonly LearnedFrom[] = ['workload-dns', 'agent-resolution', 'other-workload-dns'];
const FIRST_FLIGHTS: readonly FirstFlightSeen[] = ['client-hello', 'http-request', 'other', 'none'];
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The fields a flow record must carry to be replayed or suggested from, with the check each must pass. */
const FLOW_FIELDS: [string, Check, string][] = [
  ['time', (v) => isString(v) && Number.isFinite(Date.parse(v as string)), 'an ISO-8601 time'],
  [
    'workload',
    (v) => isObject(v) && isString(v.namespace) && isString(v.name) && isObject(v.labels),
    'an object with namespace, name and labels',
  ],
  [
    'destination',
    (v) => isObject(v) && isString(v.ip) && isPort(v.port) && isString(v.protocol) && (v.family === 4 || v.family === 6),
    'an object with ip, port (0-65535), protocol and family (4 or 6)',
  ],
  ['fqdn', isNullableString, 'a string or null'],
  ['fqdnSource', (v) => FQDN_SOURCES.includes(v as FqdnSource), `one of ${FQDN_SOURCES.join(', ')}`],
  ['layer', (v) => LAYERS.includes(v as FlowEvent['layer']), `one of ${LAYERS.join(', ')}`],
  ['verdict', (v) => VERDICTS.includes(v as FlowEvent['verdict']), `one of ${VERDICTS.join(', ')}`],
  ['tier', (v) => v === 0 || v === 1 || v === 2 || v === 3, 'a tier: 0, 1, 2 or 3'],
  ['rule', isString, 'a rule name'],
  ['count', isCount, 'a positive integer'],
];

/** What the datapath saw of a flow: optional, but each one present must be what the agent writes. */
const SIGHTING_FIELDS: [string, Check, string][] = [
  ['sni', isName, 'the server name a ClientHello sent (a non-empty string)'],
  ['httpHost', isName, 'the Host an HTTP request sent (a non-empty string)'],
  ['learnedName', isName, 'the name the address was learned for (a non-empty string)'],
  ['learnedFrom', (v) => LEARNED_FROM.includes(v as LearnedFrom), `one of ${LEARNED_FROM.join(', ')}`],
  ['firstFlight', (v) => FIRST_FLIGHTS.includes(v as FirstFlightSeen), `one of ${FIRST_FLIGHTS.join(', ')}`],
  ['ech', (v) => v === true, 'true (or absent)'],
  ['evidence', (v) => v === true, 'true (or absent)'],
];

function checkFlow(record: Record<string, unknown>): string | null {
  for (const [field, check, want] of FLOW_FIELDS) {
    if (!(field in record)) return `flow record has no "${field}" (want ${want})`;
    if (!check(record[field])) return `flow record field "${field}" is ${JSON.stringify(record[field])}; want ${want}`;
  }
  const policy = record.policy;
  if (policy !== null && !(isObject(policy) && isString(policy.namespace) && isString(policy.name)))
    return `flow record field "policy" is ${JSON.stringify(policy)}; want null or an object with namespace and name`;
  for (const [field, check, want] of SIGHTING_FIELDS)
    if (record[field] !== undefined && !check(record[field]))
      return `flow record field "${field}" is ${JSON.stringify(record[field])}; want ${want}`;
  const dns = record.dns;
  if (dns !== undefined && !(isObject(dns) && isString(dns.query) && Array.isArray(dns.answers) && dns.answers.every(isString)))
    return `flow record field "dns" is ${JSON.stringify(dns)}; want an object with query and answers (strings)`;
  return null;
}

/** Parse one file's text; `file` names it in errors. */
export function parseEventText(text: string, file: string, into: RecordedEvents = { flows: [], losses: [] }): RecordedEvents {
  const lines = text.split('\n');
  const complete = text.endsWith('\n') || text === '';
  lines.forEach((line, index) => {
    const number = index + 1;
    if (line.trim() === '') return;
    const last = index === lines.length - 1;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (error) {
      const problem =
        last && !complete
          ? 'truncated: the last record ends without a newline and is not complete JSON (was the file copied while being written?)'
          : `not JSON (${(error as Error).message})`;
      throw new EventFileError(file, number, problem);
    }
    if (!isObject(record)) throw new EventFileError(file, number, 'not a JSON object: each line must be one event record');
    if (record.kind === 'flow') {
      const problem = checkFlow(record);
      if (problem !== null) throw new EventFileError(file, number, problem);
      into.flows.push(record as unknown as FlowEvent);
    } else if (record.kind === 'notice' || LOSS_NOTICES.has(String(record.kind))) {
      // The jsonl sink writes a notice under its own kind; `observe --output json` as kind "notice".
      const notice = String(record.kind === 'notice' ? record.notice : record.kind);
      if (LOSS_NOTICES.has(notice)) into.losses.push(`${file}:${number}: ${notice} (${String(record.count ?? '?')} records)`);
    } else {
      throw new EventFileError(file, number, `unknown record kind ${JSON.stringify(record.kind)}: want "flow" or a notice`);
    }
  });
  return into;
}

/** Read event files in the order given (each in file order). */
export function readEventFiles(paths: readonly string[]): RecordedEvents {
  const recorded: RecordedEvents = { flows: [], losses: [] };
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new Error(`${path}: cannot read the event file: ${(error as Error).message}`);
    }
    parseEventText(text, path, recorded);
  }
  return recorded;
}

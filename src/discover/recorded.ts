// Recorded decisions from either place they live: event files the agent wrote, or a running agent's in-memory history
// (the `observe` stream: the last records it holds, optionally followed live for a while).
import { observeStream } from '../agent/control.js';
import type { FlowEvent } from '../events/types.js';
import { parseEventText, readEventFiles, type RecordedEvents } from './event-file.js';

export interface RecordedSource {
  /** Event files (jsonl), read in order. */
  files: readonly string[];
  /** A running agent's control socket, used when no file is given. */
  socket: string;
  /** Only records at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Keep following the live agent this long (ms) after its history; 0: history only. */
  followMs: number;
}

export async function loadRecorded(source: RecordedSource): Promise<RecordedEvents> {
  if (source.files.length > 0) {
    const recorded = readEventFiles(source.files);
    if (source.sinceMs === undefined) return recorded;
    const since = source.sinceMs;
    return { ...recorded, flows: recorded.flows.filter((e: FlowEvent) => Date.parse(e.time) >= since) };
  }
  const lines: string[] = [];
  const stop = new AbortController();
  const timer = source.followMs > 0 ? setTimeout(() => stop.abort(), source.followMs) : null;
  try {
    await observeStream(
      source.socket,
      {
        command: 'observe',
        filter: source.sinceMs === undefined ? {} : { sinceMs: source.sinceMs },
        last: Number.MAX_SAFE_INTEGER,
        follow: source.followMs > 0,
      },
      (line) => lines.push(JSON.stringify(line)),
      stop.signal,
    );
  } finally {
    if (timer) clearTimeout(timer);
  }
  return parseEventText(lines.map((l) => `${l}\n`).join(''), `agent ${source.socket}`);
}

const DURATION = /^(\d+)(s|m|h)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/** `30s`, `10m`, `1h` in milliseconds; `flag` names the option in the error. */
export function parseDuration(flag: string, text: string): number {
  const match = DURATION.exec(text);
  if (!match || Number(match[1]) === 0) throw new Error(`--${flag} "${text}": give a duration such as 30s, 10m or 1h`);
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}

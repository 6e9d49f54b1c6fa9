// `egressguard policy replay POLICY... --events FILE`: what proposed policies would have decided over recorded traffic.
import { parseArgs } from 'node:util';
import { loadConfig } from '../agent/config.js';
import { loadPolicySet } from '../discover/policy-set.js';
import { loadRecorded, parseDuration } from '../discover/recorded.js';
import { formatReplay, replay, type ReplayContext, type ReplayedFlow } from '../discover/replay.js';
import type { FlowEvent } from '../events/types.js';
import { parseSince } from './observe.js';

export const replayUsage = `egressguard policy replay POLICY|DIR... (--events FILE... | --socket PATH) [--since 1h|ISO-TIME] [--follow-for 10m]
                          [--config FILE] [--mode enforce|discovery] [--output text|json]`;

/** The cgroup2 mount only resolves relative workload cgroups, which neither replay nor explain uses. */
export const CONFIG_CGROUP2_MOUNT = '/sys/fs/cgroup';

export async function policyReplay(args: string[], defaultSocket: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      events: { type: 'string', multiple: true, default: [] },
      socket: { type: 'string', default: defaultSocket },
      since: { type: 'string' },
      'follow-for': { type: 'string' },
      config: { type: 'string' },
      mode: { type: 'string' },
      output: { type: 'string', default: 'text' },
    },
  });
  if (positionals.length === 0) throw new Error(`egressguard policy replay needs at least one POLICY file or folder\n${replayUsage}`);
  if (values.output !== 'text' && values.output !== 'json') throw new Error(`--output "${values.output}": use text or json`);
  if (values.mode !== undefined && values.mode !== 'enforce' && values.mode !== 'discovery')
    throw new Error(`--mode "${values.mode}": use enforce or discovery`);
  const config = values.config === undefined ? null : loadConfig(values.config, CONFIG_CGROUP2_MOUNT);
  // Replay asks "what if these policies were enforced": enforce mode unless told otherwise.
  const context: ReplayContext = {
    mode: (values.mode as 'enforce' | 'discovery' | undefined) ?? 'enforce',
    tls: config?.enforcement.tls ?? true,
    denyList: config?.baseline.denyList ?? [],
    permits: config?.baseline.permits ?? [],
    dnsNames: config?.baseline.dnsNames ?? [],
  };
  const { policies, warnings } = loadPolicySet(positionals, config?.policyNamespace);
  for (const w of warnings) console.error(w);
  const recorded = await loadRecorded({
    files: values.events,
    socket: values.socket,
    ...(values.since !== undefined && { sinceMs: parseSince(values.since, Date.now()) }),
    followMs: values['follow-for'] === undefined ? 0 : parseDuration('follow-for', values['follow-for']),
  });
  for (const loss of recorded.losses) console.error(`warning: the recording is incomplete: ${loss}`);
  const result = replay(recorded.flows, policies, context);
  if (values.output === 'json')
    for (const w of result.workloads) for (const f of w.flows) console.log(JSON.stringify(replayJsonLine(w.key, f)));
  else console.log(formatReplay(result));
  return 0;
}

/** One line of `policy replay --output json`: a recorded decision beside the one the proposed policies make. */
export interface ReplayJsonLine {
  workload: string;
  time: string;
  eventId: string;
  layer: FlowEvent['layer'];
  destination: FlowEvent['destination'];
  fqdn: string | null;
  count: number;
  recorded: { verdict: FlowEvent['verdict']; tier: number; rule: string };
  replayed: { verdict: ReplayedFlow['replayed']; tier: number; rule: string; layer: ReplayedFlow['layer'] };
  assumedSni?: string;
  watched?: ReplayedFlow['watched'];
}

export function replayJsonLine(workload: string, f: ReplayedFlow): ReplayJsonLine {
  return {
    workload,
    time: f.event.time,
    eventId: f.event.eventId,
    layer: f.event.layer,
    destination: f.event.destination,
    fqdn: f.event.fqdn,
    count: f.event.count,
    recorded: { verdict: f.event.verdict, tier: f.event.tier, rule: f.event.rule },
    replayed: { verdict: f.replayed, tier: f.tier, rule: f.rule, layer: f.layer },
    ...(f.assumedSni !== null && { assumedSni: f.assumedSni }),
    ...(f.watched.length > 0 && { watched: f.watched }),
  };
}

/** The lines `policy replay --output json` printed. */
export const parseReplayJson = (stdout: string): ReplayJsonLine[] =>
  stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ReplayJsonLine);

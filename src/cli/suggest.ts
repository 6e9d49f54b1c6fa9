// `egressguard suggest`: FirewallPolicies from recorded traffic (event files or a running agent), one per MCP server.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadRecorded, parseDuration } from '../discover/recorded.js';
import { DEFAULT_SUGGEST_OPTIONS, suggestPolicies } from '../discover/suggest.js';
import { parseSince } from './observe.js';

export const suggestUsage = `egressguard suggest [--events FILE]... [--socket PATH] [--since 1h|ISO-TIME] [--follow-for 10m]
                   [--include-rare] [--wildcard-min N] [--dns-names SUFFIX,...] [--output-dir DIR]`;

export async function suggest(args: string[], defaultSocket: string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      events: { type: 'string', multiple: true, default: [] },
      socket: { type: 'string', default: defaultSocket },
      since: { type: 'string' },
      'follow-for': { type: 'string' },
      'include-rare': { type: 'boolean', default: false },
      'wildcard-min': { type: 'string' },
      'dns-names': { type: 'string' },
      'output-dir': { type: 'string' },
    },
  });
  const wildcardMin = values['wildcard-min'] === undefined ? DEFAULT_SUGGEST_OPTIONS.wildcardMin : Number(values['wildcard-min']);
  if (!Number.isSafeInteger(wildcardMin) || wildcardMin < 0 || wildcardMin === 1)
    throw new Error(`--wildcard-min "${values['wildcard-min']}": give 0 (never group) or a whole number of at least 2`);
  const recorded = await loadRecorded({
    files: values.events,
    socket: values.socket,
    ...(values.since !== undefined && { sinceMs: parseSince(values.since, Date.now()) }),
    followMs: values['follow-for'] === undefined ? 0 : parseDuration('follow-for', values['follow-for']),
  });
  const suggestions = suggestPolicies(recorded.flows, {
    includeRare: values['include-rare'],
    wildcardMin,
    dnsNames: values['dns-names'] === undefined ? DEFAULT_SUGGEST_OPTIONS.dnsNames : values['dns-names'].split(',').filter(Boolean),
  });
  for (const loss of recorded.losses) console.error(`warning: the recording is incomplete: ${loss}`);
  if (suggestions.length === 0) {
    console.error('no flow of an enrolled, labelled workload in the recorded traffic: nothing to suggest');
    return 1;
  }
  if (values['output-dir'] !== undefined) {
    mkdirSync(values['output-dir'], { recursive: true });
    for (const s of suggestions) {
      const path = join(values['output-dir'], `${s.name}.yaml`);
      writeFileSync(path, s.yaml);
      console.error(`wrote ${path}`);
    }
  } else process.stdout.write(suggestions.map((s) => s.yaml).join('---\n'));
  for (const s of suggestions) {
    console.error(
      `${s.namespace}/${s.name}: ${s.form}${s.form === 'allowlist' ? ` (${s.domains.join(', ')})` : ''} from ${s.flows} flow(s); ${s.leftOut.length} destination(s) left out`,
    );
    for (const l of s.leftOut) console.error(`  left out: ${l.what} (${l.flows} flow(s)): ${l.reason}`);
  }
  return 0;
}

// `egressguard policy diff OLD NEW`: what changes for which workload between two policy sets.
import { parseArgs } from 'node:util';
import { loadConfig } from '../agent/config.js';
import { diffPolicies, formatDiff, workloadsSelectedBy, type DiffWorkload } from '../discover/diff.js';
import { readEventFiles } from '../discover/event-file.js';
import { loadPolicySet } from '../discover/policy-set.js';
import { CONFIG_CGROUP2_MOUNT } from './policy-replay.js';

export const diffUsage = `egressguard policy diff OLD NEW [--config FILE | --events FILE...]
                                         OLD, NEW: a policy file or folder; workloads from the config, the events, or the policies' selectors`;

export function policyDiff(args: string[]): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string' }, events: { type: 'string', multiple: true, default: [] } },
  });
  if (positionals.length !== 2) throw new Error(`egressguard policy diff needs OLD and NEW\n${diffUsage}`);
  const config = values.config === undefined ? null : loadConfig(values.config, CONFIG_CGROUP2_MOUNT);
  const before = loadPolicySet([positionals[0]!], config?.policyNamespace).policies;
  const after = loadPolicySet([positionals[1]!], config?.policyNamespace).policies;
  let workloads: DiffWorkload[];
  if (config) workloads = config.workloads.map((w) => ({ key: `${w.namespace}/${w.name}`, namespace: w.namespace, labels: w.labels }));
  else if (values.events.length > 0) {
    const seen = new Map<string, DiffWorkload>();
    for (const e of readEventFiles(values.events).flows)
      if (e.workload.namespace !== '')
        seen.set(`${e.workload.namespace}/${e.workload.name}`, {
          key: `${e.workload.namespace}/${e.workload.name}`,
          namespace: e.workload.namespace,
          labels: e.workload.labels,
        });
    workloads = [...seen.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  } else workloads = workloadsSelectedBy(before, after);
  const diffs = diffPolicies(before, after, workloads);
  console.log(formatDiff(diffs) || 'no workload to compare');
  return 0;
}

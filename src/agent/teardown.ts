// Ending enforcement on purpose: detach the programs and tc filters and remove the pins an agent left behind, so the
// node carries no egressguard state (DNS steering lives in the detached connect/sendmsg programs and ends with them).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from './config.js';
import { destroyDatapath, type DestroyedState } from '../datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../datapath/mounts.js';

export interface TeardownReport extends DestroyedState {
  pinDir: string;
  /** false: nothing was pinned there (already clean). */
  found: boolean;
}

/** The pin directory: the config's (the one the agent ran with), else `<bpffs>/egressguard`. */
function pinDirOf(where: { configPath?: string; pinDir?: string }): string {
  if (where.pinDir !== undefined) return where.pinDir;
  if (where.configPath !== undefined) {
    const cgroup2Mount = findCgroup2Mount();
    if (cgroup2Mount === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts)');
    const configured = loadConfig(where.configPath, cgroup2Mount).pinDir;
    if (configured !== null) return configured;
  }
  return join(ensureBpffs(), 'egressguard');
}

export function teardownNode(where: { configPath?: string; pinDir?: string }): TeardownReport {
  const pinDir = pinDirOf(where);
  const found = existsSync(pinDir);
  return { pinDir, found, ...destroyDatapath({ pinDir }) };
}

export function describeTeardown(report: TeardownReport): string {
  if (!report.found) return `nothing is pinned under ${report.pinDir}: no egressguard state on this node`;
  return (
    `detached ${report.links} program link(s) and ${report.tcFilters} tc filter(s), removed ${report.maps} map pin(s) ` +
    `and ${report.pinDir}: enforcement has ended and this node carries no egressguard state`
  );
}

// Ending enforcement on purpose: detach the programs and tc filters and remove the pins an agent left behind, so the
// node carries no egressguard state (DNS steering lives in the detached connect/sendmsg programs and ends with them).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from './config.js';
import { destroyDatapath, type DestroyedState } from '../datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../datapath/mounts.js';

export interface TeardownReport extends DestroyedState {
  pinDir: string;
  /** false: nothing was pinned there (already clean). */
  found: boolean;
  /** The DNS proxy's interface removed (the chart's dummy interface), or null. */
  dnsInterface: string | null;
}

export interface TeardownTarget {
  configPath?: string;
  pinDir?: string;
  /** The dummy interface holding the DNS proxy's address (Helm chart: dns.interface); removed when present. */
  dnsInterface?: string;
}

/** The pin directory: the config's (the one the agent ran with), else `<bpffs>/egressguard`. */
function pinDirOf(where: TeardownTarget): string {
  if (where.pinDir !== undefined) return where.pinDir;
  if (where.configPath !== undefined) {
    const cgroup2Mount = findCgroup2Mount();
    if (cgroup2Mount === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts)');
    const configured = loadConfig(where.configPath, cgroup2Mount).pinDir;
    if (configured !== null) return configured;
  }
  return join(ensureBpffs(), 'egressguard');
}

/** Deletes a dummy interface by name; false when there is none. Anything but a dummy is refused, never deleted. */
function removeDummyInterface(name: string): boolean {
  if (!existsSync(`/sys/class/net/${name}`)) return false;
  const [link] = JSON.parse(execFileSync('ip', ['-j', '-d', 'link', 'show', 'dev', name], { encoding: 'utf8' })) as {
    linkinfo?: { info_kind?: string };
  }[];
  const kind = link?.linkinfo?.info_kind ?? 'unknown';
  if (kind !== 'dummy') throw new Error(`${name} is a ${kind} interface, not the DNS proxy's dummy interface: left in place`);
  execFileSync('ip', ['link', 'del', 'dev', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  return true;
}

export function teardownNode(where: TeardownTarget): TeardownReport {
  const pinDir = pinDirOf(where);
  const found = existsSync(pinDir);
  // Programs first: once they are detached no workload's DNS is steered to the address about to go.
  const destroyed = destroyDatapath({ pinDir });
  const dnsInterface = where.dnsInterface !== undefined && removeDummyInterface(where.dnsInterface) ? where.dnsInterface : null;
  return { pinDir, found, dnsInterface, ...destroyed };
}

export function describeTeardown(report: TeardownReport): string {
  const dns = report.dnsInterface !== null ? `, removed DNS interface ${report.dnsInterface}` : '';
  if (!report.found) return `nothing is pinned under ${report.pinDir}${dns}: no egressguard state on this node`;
  return (
    `detached ${report.links} program link(s) and ${report.tcFilters} tc filter(s), removed ${report.maps} map pin(s) ` +
    `and ${report.pinDir}${dns}: enforcement has ended and this node carries no egressguard state`
  );
}

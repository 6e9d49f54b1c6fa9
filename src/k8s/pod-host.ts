// What the reconciler asks the node about a pod: its cgroup id, and the host-side interface the packet-layer
// backstop attaches to. The interface is found from the pod's network namespace (a process in its cgroup:
// /proc/PID/ns/net, then the veth peer in the agent's namespace; needs the host PID namespace) or else from the
// node's route to the pod's addresses (a routed CNI such as Calico or Cilium gives each pod a veth route). A bridge
// CNI's route leads to the bridge, shared by every pod, and is refused: the backstop must sit on the pod's own link.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostWorkloadHost } from '../identity/host.js';
import { hostInterfacesOf } from '../identity/interfaces.js';
import type { WorkloadHost, WorkloadSpec } from '../identity/source.js';

/** Nested cgroups are walked at most this deep for a process (pod → container → a runtime's sub-cgroups). */
const MAX_CGROUP_DEPTH = 4;

/** A process in the cgroup or below it, or null when there is none (no container started yet, or out of our sight). */
export function processInCgroup(cgroupPath: string, depth = 0): number | null {
  try {
    const pid = readFileSync(join(cgroupPath, 'cgroup.procs'), 'utf8')
      .split('\n')
      .map((line) => Number(line))
      .find((n) => Number.isInteger(n) && n > 0);
    if (pid !== undefined) return pid;
    if (depth >= MAX_CGROUP_DEPTH) return null;
    for (const entry of readdirSync(cgroupPath, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const found = processInCgroup(join(cgroupPath, entry.name), depth + 1);
      if (found !== null) return found;
    }
  } catch {
    // The cgroup went away meanwhile.
  }
  return null;
}

function ipJson<T>(args: string[]): T {
  try {
    return JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as T;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() || String(error);
    throw new Error(`ip ${args.join(' ')}: ${stderr}`);
  }
}

/** The veth the node routes `address` to directly (no gateway), or an error saying why there is none. */
export function vethRoutedTo(address: string): string {
  const [route] = ipJson<{ dev?: string; gateway?: string }[]>(['route', 'get', address]);
  if (route?.dev === undefined) throw new Error(`the node has no route to ${address}`);
  if (route.gateway !== undefined) throw new Error(`the node routes ${address} through gateway ${route.gateway}, not to a local pod`);
  const [link] = ipJson<{ linkinfo?: { info_kind?: string } }[]>(['-d', 'link', 'show', 'dev', route.dev]);
  const kind = link?.linkinfo?.info_kind ?? 'unknown';
  if (kind !== 'veth')
    throw new Error(`the route to ${address} leads to ${route.dev}, a ${kind} link shared by pods, not the pod's own veth`);
  return route.dev;
}

/** The pod's host-side interfaces: from its network namespace, else from the routes to its addresses. */
export function podInterfaces(spec: WorkloadSpec): string[] {
  if (spec.interfaces.length > 0) return spec.interfaces;
  // No addresses yet: the CNI has not set the pod's network up, so there is no link to guard.
  if (spec.addresses.length === 0) return [];
  const problems: string[] = [];
  const pid = processInCgroup(spec.cgroupPath);
  if (pid !== null) {
    try {
      return hostInterfacesOf(`/proc/${pid}/ns/net`);
    } catch (error) {
      problems.push(`from its network namespace (process ${pid}): ${(error as Error).message}`);
    }
  } else problems.push('no process of the pod is visible in its cgroup (the agent needs the host PID namespace)');
  try {
    return [...new Set(spec.addresses.map(vethRoutedTo))];
  } catch (error) {
    problems.push(`from the node's routes: ${(error as Error).message}`);
  }
  throw new Error(`host-side interface of the pod not found: ${problems.join('; ')}`);
}

export const podWorkloadHost: WorkloadHost = {
  cgroupIdOf: hostWorkloadHost.cgroupIdOf,
  interfacesOf: podInterfaces,
};

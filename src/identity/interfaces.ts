// Finding a workload's host-side interface: the peer, in the agent's network namespace, of the veth inside the
// workload's network namespace. The packet-layer backstop attaches there, out of the workload's reach.

import { execFileSync } from 'node:child_process';

interface LinkInfo {
  ifindex: number;
  ifname: string;
  link_index?: number;
  link_netnsid?: number;
  link_type?: string;
}

function links(netnsPath: string | null): LinkInfo[] {
  const argv = netnsPath === null ? ['ip', '-j', 'link', 'show'] : ['nsenter', `--net=${netnsPath}`, '--', 'ip', '-j', 'link', 'show'];
  let output: string;
  try {
    output = execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? String(error);
    throw new Error(`cannot list interfaces${netnsPath ? ` in network namespace ${netnsPath}` : ''}: ${stderr}`);
  }
  return JSON.parse(output) as LinkInfo[];
}

/**
 * Names of the interfaces in this process's network namespace that are veth peers of interfaces inside
 * `netnsPath`. Both ends must point at each other, so an unrelated interface that happens to share an index is
 * never chosen.
 */
export function hostInterfacesOf(netnsPath: string): string[] {
  const inside = links(netnsPath).filter((l) => l.link_index !== undefined && l.link_netnsid !== undefined);
  const here = links(null);
  const found = inside.flatMap((podSide) => {
    const hostSide = here.find((l) => l.ifindex === podSide.link_index && l.link_index === podSide.ifindex);
    return hostSide ? [hostSide.ifname] : [];
  });
  if (found.length === 0)
    throw new Error(
      `no interface in the agent's network namespace is the peer of a veth in ${netnsPath}; declare workloads[].interfaces instead`,
    );
  return found;
}

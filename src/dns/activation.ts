// Listening sockets handed to the agent by the process that started it, in systemd's socket-activation convention
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES; descriptors from 3). When a holder (systemd's .socket unit, or
// scripts/egressguard-dns-holder.py) owns the DNS proxy's sockets, they outlive the agent: queries that arrive
// while it restarts wait in the socket's buffer and are answered by the next agent instead of being refused.

export type InheritedKind = 'udp4' | 'udp6' | 'tcp4' | 'tcp6';

export interface InheritedSocket {
  fd: number;
  kind: InheritedKind;
}

const FIRST_FD = 3;
const KINDS: readonly InheritedKind[] = ['udp4', 'udp6', 'tcp4', 'tcp6'];

/**
 * The DNS sockets passed to this process: every descriptor must be named `dns-<udp4|udp6|tcp4|tcp6>` (systemd:
 * FileDescriptorName=). Empty when nothing was passed or the variables are for another process (LISTEN_PID).
 */
export function inheritedDnsSockets(env: NodeJS.ProcessEnv, pid: number): InheritedSocket[] {
  if (env.LISTEN_FDS === undefined) return [];
  if (env.LISTEN_PID !== String(pid)) return [];
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count < 0 || count > 64) throw new Error(`LISTEN_FDS="${env.LISTEN_FDS}" is not a descriptor count`);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  if (count > 0 && names.length !== count) {
    throw new Error(
      `LISTEN_FDNAMES names ${names.length} descriptor(s) for LISTEN_FDS=${count}; name each dns-udp4|dns-udp6|dns-tcp4|dns-tcp6`,
    );
  }
  return names.slice(0, count).map((name, index) => {
    const kind = name.replace(/^dns-/, '') as InheritedKind;
    if (!name.startsWith('dns-') || !KINDS.includes(kind)) {
      throw new Error(`inherited descriptor ${FIRST_FD + index} is named "${name}"; expected dns-udp4, dns-udp6, dns-tcp4 or dns-tcp6`);
    }
    return { fd: FIRST_FD + index, kind };
  });
}

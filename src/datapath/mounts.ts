// Where cgroup2 and bpffs are mounted, read from /proc/mounts (never assumed).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';

export interface MountEntry {
  source: string;
  mountPoint: string;
  fsType: string;
}

const DEFAULT_BPFFS = '/sys/fs/bpf';

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMounts(text: string): MountEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [source = '', mountPoint = '', fsType = ''] = line.split(' ');
      return { source, mountPoint: unescapeMountField(mountPoint), fsType };
    });
}

function readMounts(): MountEntry[] {
  return parseMounts(readFileSync('/proc/mounts', 'utf8'));
}

function firstMountOfType(fsType: string): string | null {
  return readMounts().find((entry) => entry.fsType === fsType)?.mountPoint ?? null;
}

/** The cgroup v2 mount point, or null when the host has none. */
export function findCgroup2Mount(): string | null {
  return firstMountOfType('cgroup2');
}

/** A bpffs mount point, or null when none is mounted. */
export function findBpffsMount(): string | null {
  return firstMountOfType('bpf');
}

/** Returns a bpffs mount point, mounting bpffs at /sys/fs/bpf when none exists. */
export function ensureBpffs(): string {
  const existing = findBpffsMount();
  if (existing !== null) return existing;
  mkdirSync(DEFAULT_BPFFS, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', DEFAULT_BPFFS], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? String(error);
    throw new Error(`no bpffs is mounted and mounting one at ${DEFAULT_BPFFS} failed: ${stderr}`);
  }
  return DEFAULT_BPFFS;
}

/** True when `path` is `root` or lies below it (both absolute, already resolved). */
export function isAtOrBelow(path: string, root: string): boolean {
  const base = root.endsWith('/') ? root : `${root}/`;
  return path === root || path.startsWith(base);
}

// Which files hold policy manifests: one rule for `egressguard policy lint` and the agent's policy paths.
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';

const MANIFEST_FILE = /\.ya?ml$/;

/**
 * `path` itself when it is a file (whatever its name: the caller named it). For a directory: every `*.yaml` and
 * `*.yml` file below it, recursing into subdirectories depth-first, names sorted in each directory. Entries whose
 * name starts with "." are skipped: hidden files, and the `..data` / `..2024_…` directories through which a
 * Kubernetes ConfigMap volume publishes its keys (the visible `name.yaml` symlinks lead into them; reading both
 * would define every object twice). Symlinks are followed; a directory reached twice (a link loop) is read once.
 * Entries that vanish while walking, and dangling links, are skipped; throws when `path` or a directory below it
 * cannot be read.
 */
export function manifestFilesIn(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return filesBelow(path, new Set());
}

function filesBelow(directory: string, visited: Set<string>): string[] {
  const real = realpathSync(directory);
  if (visited.has(real)) return [];
  visited.add(real);
  return readdirSync(directory)
    .filter((entry) => !entry.startsWith('.'))
    .sort()
    .flatMap((entry) => {
      const child = join(directory, entry);
      const stats = statSync(child, { throwIfNoEntry: false });
      // Gone since readdir (a ConfigMap update swaps its links), or a dangling link: nothing to read.
      if (stats === undefined) return [];
      if (stats.isDirectory()) return filesBelow(child, visited);
      return MANIFEST_FILE.test(entry) ? [child] : [];
    });
}

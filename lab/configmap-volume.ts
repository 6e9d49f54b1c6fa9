// A folder laid out the way the kubelet writes a ConfigMap volume, for tests of an agent whose configuration and
// policies are mounted from ConfigMaps: each key is a visible symlink `<key> -> ..data/<key>`, `..data` is a symlink
// to a timestamped folder `..<time>` holding the files, and a new version is published by renaming a fresh `..data`
// link over the old one (one atomic swap), as the kubelet's atomic writer does.
import { existsSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const DATA_LINK = '..data';

export class ConfigMapVolume {
  private versions = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The path through which a key is read (its visible link). */
  path(key: string): string {
    return join(this.dir, key);
  }

  /**
   * Publishes `files` (key -> content) as the volume's whole content, in the kubelet's order: the new timestamped
   * folder is written, `..data` is swapped to it by rename, links for new keys are added, links of keys gone and the
   * previous folder are removed.
   */
  publish(files: Record<string, string>): void {
    const dataLink = join(this.dir, DATA_LINK);
    const previous = existsSync(dataLink) ? readlinkSync(dataLink) : null;
    // ..2026_12_02_17_32_01.371000002: the kubelet's timestamp (nanoseconds), made unique by a counter.
    const stamp = new Date().toISOString().replace(/[-:T]/g, '_').replace('Z', '');
    const version = `..${stamp}${String(++this.versions).padStart(6, '0')}`;
    mkdirSync(join(this.dir, version));
    for (const [key, content] of Object.entries(files)) writeFileSync(join(this.dir, version, key), content);
    const staged = join(this.dir, `${DATA_LINK}_tmp`);
    symlinkSync(version, staged);
    renameSync(staged, dataLink);
    for (const key of Object.keys(files)) if (!existsSync(this.path(key))) symlinkSync(`${DATA_LINK}/${key}`, this.path(key));
    for (const entry of readdirSync(this.dir)) if (!entry.startsWith('.') && !Object.hasOwn(files, entry)) unlinkSync(this.path(entry));
    if (previous !== null) rmSync(join(this.dir, previous), { recursive: true, force: true });
  }
}

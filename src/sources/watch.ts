// Watching files and folders for edits: one debounced callback for a burst of changes (editors write in steps).
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

// Quiet time after the last event: enough to take an editor's save (write, chmod, rename: microseconds apart) as one
// change, and short, as it is part of every policy edit's way into the kernel (issue 10's 50 ms, bench/propagation.ts).
// A write caught half done is rejected and the last good state stays in force until the rest of it arrives, which
// brings another event: an emptied file (truncated, not written yet) holds no document, and a file cut anywhere but
// between two complete rules fails validation.
const DEBOUNCE_MS = 5;

export interface WatchTarget {
  path: string;
  /** Also changes anywhere below a folder. */
  recursive: boolean;
}

export class DebouncedWatch {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(targets: Iterable<string | WatchTarget>, onChange: () => void, log: Logger) {
    for (const target of targets) {
      const { path, recursive } = typeof target === 'string' ? { path: target, recursive: false } : target;
      try {
        this.watchers.push(watch(path, { recursive }, () => this.schedule(onChange)));
      } catch (error) {
        log.warn({ path, err: error }, 'cannot watch; send SIGHUP to apply changes');
      }
    }
  }

  private schedule(onChange: () => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      onChange();
    }, DEBOUNCE_MS);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
  }
}

/**
 * Watches a file by its path, not its inode: editors, `sed -i`, configuration management and Kubernetes ConfigMap
 * volumes (a `..data` symlink swap) replace the file, and a watch on the old inode would never fire again. The
 * folder holding the path and the folder holding its current target are watched, and re-resolved after each change;
 * the content digest is also checked every `pollMs`, in case a watch event is lost. `onChange` runs when the
 * digest of what the path reads changed.
 */
export class PathWatch {
  private digest: string | null;
  private folders = '';
  private watch: DebouncedWatch | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly path: string,
    private readonly onChange: () => void,
    private readonly log: Logger,
    pollMs = 2000,
  ) {
    this.digest = contentDigest(path);
    this.rewatch();
    this.timer = setInterval(() => this.check(), pollMs);
    this.timer.unref();
  }

  /** Re-read the path: runs onChange when its content differs from the last read. */
  check(): void {
    this.rewatch();
    const digest = contentDigest(this.path);
    if (digest === this.digest) return;
    this.digest = digest;
    this.onChange();
  }

  private rewatch(): void {
    const folders = [dirname(this.path)];
    try {
      folders.push(dirname(realpathSync(this.path)));
    } catch {
      // Not there right now: its folder is watched for its return.
    }
    const key = [...new Set(folders)].join('\n');
    if (key === this.folders) return;
    this.folders = key;
    this.watch?.close();
    this.watch = new DebouncedWatch(key.split('\n'), () => this.check(), this.log);
  }

  close(): void {
    clearInterval(this.timer);
    this.watch?.close();
  }
}

/** SHA-256 of what `path` reads now (hex), or null when it cannot be read. */
export function contentDigest(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

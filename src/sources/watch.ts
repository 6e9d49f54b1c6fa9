// Watching files and folders for edits: one debounced callback for a burst of changes (editors write in steps).
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';

const DEBOUNCE_MS = 150;

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

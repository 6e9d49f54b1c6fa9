// Watching files and folders for edits: one debounced callback for a burst of changes (editors write in steps).
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';

const DEBOUNCE_MS = 150;

export class DebouncedWatch {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(targets: Iterable<string>, onChange: () => void, log: Logger) {
    for (const target of targets) {
      try {
        this.watchers.push(watch(target, () => this.schedule(onChange)));
      } catch (error) {
        log.warn({ path: target, err: error }, 'cannot watch; send SIGHUP to apply changes');
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

// Pod cgroups as they appear and go: an inotify watch (fs.watch) on the pod cgroup root and on each QoS folder, so
// a pod cgroup is known the moment the kubelet creates it, before its first container starts. A rescan (readdir)
// backs the watch up (a full inotify queue drops events) and catches QoS folders created later.

import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { QOS_CLASSES, containerOfCgroupName, podUidOfCgroupName, qosDirectory, type PodCgroupLayout } from './cgroups.js';

export interface PodCgroup {
  path: string;
  /** When the kernel created the cgroup (its folder's modification time: kernfs sets it at creation only), ms. */
  createdMs: number;
}

/** Creation time of a cgroup folder in ms (kernfs: set at mkdir, not moved by children); null when it is gone. */
export function cgroupCreatedMs(path: string): number | null {
  try {
    return Number(statSync(path, { bigint: true }).mtimeNs) / 1e6;
  } catch {
    return null;
  }
}

/** The earliest creation time of a container cgroup below a pod cgroup, or null while it has none. */
export function firstContainerCreatedMs(layout: PodCgroupLayout, podPath: string): number | null {
  let names: string[];
  try {
    names = readdirSync(podPath);
  } catch {
    return null;
  }
  const times = names
    .filter((name) => containerOfCgroupName(layout.driver, name) !== null)
    .flatMap((name) => {
      const created = cgroupCreatedMs(join(podPath, name));
      return created === null ? [] : [created];
    });
  return times.length === 0 ? null : Math.min(...times);
}

export class PodCgroupWatch {
  private readonly byUid = new Map<string, PodCgroup>();
  private readonly watchers = new Map<string, FSWatcher>();
  private stopped = false;

  /** `onChange` runs once per pod uid whose cgroup appeared or disappeared. */
  constructor(
    readonly layout: PodCgroupLayout,
    private readonly onChange: (uid: string) => void,
    private readonly log: Logger,
  ) {}

  /** Watch the root and the QoS folders, then read what is already there. */
  start(): void {
    this.rescan();
  }

  /** The pod cgroup of `uid`, or null when none is there. */
  get(uid: string): PodCgroup | null {
    return this.byUid.get(uid) ?? null;
  }

  /** Read every watched folder again: adds what the watch missed, removes what is gone, watches new QoS folders. */
  rescan(): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const dir of this.directories()) {
      this.watchDirectory(dir);
      let names: string[] = [];
      try {
        names = readdirSync(dir);
      } catch {
        continue; // A QoS folder the kubelet has not made yet.
      }
      for (const name of names) {
        const uid = podUidOfCgroupName(this.layout, name);
        if (uid === null) continue;
        seen.add(uid);
        this.note(uid, join(dir, name));
      }
    }
    for (const uid of [...this.byUid.keys()]) if (!seen.has(uid) && cgroupCreatedMs(this.byUid.get(uid)!.path) === null) this.forget(uid);
  }

  stop(): void {
    this.stopped = true;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  private directories(): string[] {
    return [...new Set(QOS_CLASSES.map((qos) => qosDirectory(this.layout, qos)))];
  }

  private watchDirectory(dir: string): void {
    if (this.watchers.has(dir)) return;
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (typeof name !== 'string') {
          this.rescan(); // The kernel did not say which entry: read the folder.
          return;
        }
        if (dir === this.layout.root && this.directories().includes(join(dir, name))) this.rescan(); // A QoS folder came.
        const uid = podUidOfCgroupName(this.layout, name);
        if (uid !== null) this.note(uid, join(dir, name));
      });
    } catch {
      return; // Not there yet: the next rescan tries again.
    }
    watcher.on('error', (error) => {
      // The folder went away (the kubelet removed a QoS folder): drop the watch; the next rescan sets it up again.
      this.log.debug({ dir, err: error }, 'cgroup watch ended');
      watcher.close();
      this.watchers.delete(dir);
    });
    this.watchers.set(dir, watcher);
  }

  /** The folder for `uid` changed (created or removed): record what is there now. */
  private note(uid: string, path: string): void {
    const createdMs = cgroupCreatedMs(path);
    if (createdMs === null) {
      if (this.byUid.get(uid)?.path === path) this.forget(uid);
      return;
    }
    const known = this.byUid.get(uid);
    if (known?.path === path && known.createdMs === createdMs) return;
    this.byUid.set(uid, { path, createdMs });
    this.onChange(uid);
  }

  private forget(uid: string): void {
    this.byUid.delete(uid);
    this.onChange(uid);
  }
}

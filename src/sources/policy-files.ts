// Host mode's policy source: FirewallPolicy manifests in files and folders, read again when they change. An invalid
// file keeps its last good objects in force (the store's rule); a removed file withdraws its objects. A file holding
// no document at all is what a write looks like between its truncation and its content: rejected, never read as
// "no policies" (delete the file to withdraw them).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { formatDiagnostic } from '../policy/diagnostics.js';
import { manifestFilesIn } from '../policy/manifest-files.js';
import type { PolicySink, PolicySource } from '../policy/source.js';
import type { PolicyDiagnostic } from '../policy/types.js';
import { DebouncedWatch } from './watch.js';

export class PolicyFileSource implements PolicySource {
  /** Content digest per file applied: an unchanged file is not parsed again. */
  private readonly digests = new Map<string, string>();
  private readonly rejectedFiles = new Map<string, string[]>();
  private sink: PolicySink | null = null;
  private watch: DebouncedWatch | null = null;

  constructor(
    private paths: readonly string[],
    private readonly log: Logger,
  ) {}

  async start(sink: PolicySink): Promise<void> {
    this.sink = sink;
    this.scan();
    this.watchPaths();
  }

  /** New paths from a reloaded configuration: watch them and read them. */
  setPaths(paths: readonly string[]): void {
    const same = paths.length === this.paths.length && paths.every((p, i) => p === this.paths[i]);
    this.paths = paths;
    if (!same && this.sink) this.watchPaths();
    this.scan();
  }

  /**
   * Read every policy file and hand the changes to the sink as one transaction: changed and new files, files gone
   * since the last scan, and files rejected before (a clash with a file that is now gone must clear).
   */
  scan(): void {
    const sink = this.sink;
    if (!sink) return;
    const changes = new Map<string, string | null>();
    const digests = new Map<string, string>();
    const seen = new Set<string>();
    for (const root of this.paths) {
      if (!existsSync(root)) this.log.warn({ path: root }, 'policy path does not exist (yet); watching for it');
      for (const file of existsSync(root) ? manifestFilesIn(root) : []) {
        seen.add(file);
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (error) {
          this.log.error({ file, err: error }, 'cannot read policy file; previous objects stay in force');
          continue;
        }
        if (holdsNoDocument(text)) {
          const message = `${file}: holds no policy document (a write caught half done?); its last good objects stay in force: delete the file to withdraw them`;
          this.rejectedFiles.set(file, [message]);
          this.log.error({ file }, message);
          continue;
        }
        const digest = createHash('sha256').update(text).digest('hex');
        if (this.digests.get(file) === digest && !this.rejectedFiles.has(file)) continue;
        digests.set(file, digest);
        changes.set(file, text);
      }
    }
    for (const file of this.digests.keys()) if (!seen.has(file)) changes.set(file, null);
    const results = changes.size > 0 ? sink.apply(changes) : new Map<string, PolicyDiagnostic[]>();
    for (const [file, text] of changes) {
      if (text === null) {
        this.digests.delete(file);
        this.rejectedFiles.delete(file);
        this.log.info({ file }, 'policy file removed; its objects are withdrawn');
        continue;
      }
      this.digests.set(file, digests.get(file)!);
      const diagnostics = results.get(file) ?? [];
      for (const d of diagnostics)
        (d.severity === 'error' ? this.log.error.bind(this.log) : this.log.warn.bind(this.log))(formatDiagnostic(d));
      const errors = diagnostics.filter((d) => d.severity === 'error');
      if (errors.length > 0) {
        this.rejectedFiles.set(file, errors.map(formatDiagnostic));
        this.log.error({ file }, 'policy file rejected; the last good version stays in force');
      } else {
        this.rejectedFiles.delete(file);
      }
    }
    sink.commit();
  }

  /** Files whose last version was rejected, with the errors (their last good version stays in force). */
  rejected(): { file: string; messages: string[] }[] {
    return [...this.rejectedFiles].map(([file, messages]) => ({ file, messages }));
  }

  private watchPaths(): void {
    this.watch?.close();
    // Folders are read recursively, so they are watched recursively; a file (or a path not there yet) through its folder.
    const targets = this.paths.map((p) =>
      existsSync(p) && statSync(p).isDirectory() ? { path: p, recursive: true } : { path: dirname(p), recursive: false },
    );
    this.watch = new DebouncedWatch(targets, () => this.scan(), this.log);
  }

  async stop(): Promise<void> {
    this.watch?.close();
    this.watch = null;
    this.sink = null;
  }
}

/** Nothing but blank lines, comments and document markers. */
function holdsNoDocument(text: string): boolean {
  return text.split('\n').every((line) => /^\s*(#.*)?$/.test(line) || /^(---|\.\.\.)\s*(#.*)?$/.test(line));
}

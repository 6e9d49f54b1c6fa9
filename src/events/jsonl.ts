// JSON lines sink (pino): one object per line, `{"level":"info","kind":"flow",...FlowEvent}` for decisions and
// `{"level":"warn","kind":"events-dropped"|"kernel-events-lost",...,"msg":"..."}` for the pipeline's loss notices.
import { pino, type Logger } from 'pino';
import type { PipelineNotice, Sink } from './sink.js';
import type { FlowEvent } from './types.js';

export interface JsonLinesSinkOptions {
  /** File to append to (parent directories are created), or `-` for standard output. */
  path: string;
}

const STDOUT_PATH = '-';

function describeNotice(notice: PipelineNotice): string {
  switch (notice.kind) {
    case 'events-dropped':
      return `${notice.count} events dropped: more than ${notice.limit} distinct flows in one aggregation window (${notice.total} in total)`;
    case 'kernel-events-lost':
      return `${notice.count} kernel events lost: ring buffer full (${notice.total} in total)`;
  }
}

export class JsonLinesSink implements Sink {
  private readonly destination: ReturnType<typeof pino.destination>;
  private readonly logger: Logger;
  private readonly toStdout: boolean;
  private closing: Promise<void> | null = null;

  constructor(options: JsonLinesSinkOptions) {
    if (options.path.trim() === '') throw new Error('JSON lines sink: path must be a file path or "-" for standard output');
    this.toStdout = options.path === STDOUT_PATH;
    this.destination = pino.destination(
      this.toStdout ? { dest: 1, sync: false } : { dest: options.path, append: true, mkdir: true, sync: false },
    );
    this.logger = pino({ base: null, timestamp: false, formatters: { level: (label) => ({ level: label }) } }, this.destination);
  }

  write(event: FlowEvent): void {
    this.logger.info({ kind: 'flow', ...event });
  }

  notice(notice: PipelineNotice): void {
    this.logger.warn(notice, describeNotice(notice));
  }

  close(): Promise<void> {
    this.closing ??= this.flushAndRelease();
    return this.closing;
  }

  private async flushAndRelease(): Promise<void> {
    const destination = this.destination;
    // A file is opened asynchronously: wait until it is, or flushing has nothing to write to.
    if ((destination as { fd?: number }).fd === -1) await new Promise((resolve) => destination.once('ready', resolve));
    if (this.toStdout) {
      await new Promise<void>((resolve, reject) => destination.flush((error) => (error ? reject(error) : resolve())));
      return;
    }
    const closed = new Promise((resolve) => destination.once('close', resolve));
    destination.end();
    await closed;
  }
}

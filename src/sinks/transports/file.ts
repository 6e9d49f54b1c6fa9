// Appends newline-terminated records to a file (parent directories created) or to standard output (`-`).
// Failures (ENOSPC, EIO, a directory that cannot be created) are thrown to the delivery, which retries and counts;
// a failed write is rolled back to the file's previous size so that a retry never leaves a torn line behind
// (standard output cannot be rolled back: a retry after a partial write there repeats its start).
// The file is opened at the first send, so a path that cannot be written shows up as the sink's first failure.
// With a rotation bound, a batch that would take the file past maxBytes first renames it to `<path>.1` (and `.1` to
// `.2`, ... the oldest beyond maxFiles overwritten): at most (maxFiles + 1) x maxBytes on disk, plus one batch.
import { write } from 'node:fs';
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Transport } from '../types.js';

export const STDOUT_PATH = '-';
const writeToFd = promisify(write);
/** A non-blocking stdout pipe that is full says EAGAIN: wait for the reader this many times, 10 ms apart. */
const EAGAIN_WAITS = 100;

export interface FileRotation {
  /** Rotate before a batch would take the file past this size. */
  maxBytes: number;
  /** Rotated files kept (`<path>.1` newest ... `<path>.<maxFiles>` oldest). */
  maxFiles: number;
}

export class FileTransport implements Transport {
  private handle: FileHandle | null = null;

  constructor(
    private readonly path: string,
    private readonly rotation: FileRotation | null = null,
  ) {}

  async send(batch: readonly string[]): Promise<void> {
    const data = Buffer.from(batch.join('\n') + '\n');
    if (this.path === STDOUT_PATH) return writeStdout(data);
    let handle = await this.open();
    let { size } = await handle.stat();
    if (this.rotation !== null && size > 0 && size + data.length > this.rotation.maxBytes) {
      await this.rotate(this.rotation.maxFiles);
      handle = await this.open();
      size = 0;
    }
    try {
      for (let offset = 0; offset < data.length;) offset += (await handle.write(data, offset)).bytesWritten;
    } catch (error) {
      await handle.truncate(size).catch(() => undefined);
      // Reopen on the next attempt: the descriptor may be what failed.
      this.handle = null;
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
  }

  private async rotate(maxFiles: number): Promise<void> {
    await this.close();
    for (let index = maxFiles - 1; index >= 1; index--) {
      await rename(`${this.path}.${index}`, `${this.path}.${index + 1}`).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
    await rename(this.path, `${this.path}.1`);
  }

  private async open(): Promise<FileHandle> {
    if (this.handle !== null) return this.handle;
    await mkdir(dirname(this.path), { recursive: true });
    this.handle = await open(this.path, 'a');
    return this.handle;
  }
}

async function writeStdout(data: Buffer): Promise<void> {
  let waits = 0;
  for (let offset = 0; offset < data.length;) {
    try {
      offset += (await writeToFd(1, data, offset, data.length - offset)).bytesWritten;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || ++waits > EAGAIN_WAITS) throw error;
      await sleep(10);
    }
  }
}

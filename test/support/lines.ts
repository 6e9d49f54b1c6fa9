// A child process's stdout read line by line, for tests that drive a long-lived client or server and wait for what it
// reports.
import type { ChildProcess } from 'node:child_process';

export class Lines {
  readonly lines: string[] = [];
  private buffered = '';

  /** onLine also sees each complete line as it comes. */
  constructor(
    readonly child: ChildProcess,
    private readonly onLine?: (line: string) => void,
  ) {
    child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString();
      let index: number;
      while ((index = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, index);
        this.lines.push(line);
        this.onLine?.(line);
        this.buffered = this.buffered.slice(index + 1);
      }
    });
  }

  /** Waits for that line, or for one `line` accepts. The deadline only guards against a hang. */
  async waitFor(line: string | ((line: string) => boolean)): Promise<void> {
    const deadline = Date.now() + 10_000;
    const wanted = typeof line === 'string' ? (seen: string) => seen === line : line;
    while (!this.lines.some(wanted)) {
      if (Date.now() > deadline)
        throw new Error(
          `no line ${JSON.stringify(typeof line === 'string' ? line : line.toString())} among ${JSON.stringify(this.lines.slice(-10))}`,
        );
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

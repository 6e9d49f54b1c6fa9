// Small process helpers for the lab: run a command to completion and collect its output, with a hard timeout.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface RunResult {
  /** Exit code, or null when the process was ended by a signal (including our timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Collect a spawned child's output until it exits; SIGKILL it (by PID) when timeoutMs passes. */
export function collect(child: ChildProcess, timeoutMs: number, input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    if (child.stdin) {
      // A program that exits without reading its input must not turn into an EPIPE crash here.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    }
  });
}

export function run(argv: readonly string[], timeoutMs = 10_000, input?: string): Promise<RunResult> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('run: empty argv');
  return collect(spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] }), timeoutMs, input);
}

/** Run and throw an error naming the command and its stderr unless it exits 0. */
export async function mustRun(argv: readonly string[], timeoutMs = 10_000): Promise<string> {
  const result = await run(argv, timeoutMs);
  if (result.code !== 0) {
    const how = result.timedOut ? `timed out after ${timeoutMs} ms` : `exited ${result.code ?? result.signal}`;
    throw new Error(`${argv.join(' ')} ${how}: ${(result.stderr ?? '').trim() || (result.stdout ?? '').trim()}`);
  }
  return result.stdout;
}

/** mustRun for synchronous callers: the command's stdout, or an error naming the command and its stderr. */
export function mustRunSync(argv: readonly string[]): string {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('mustRunSync: empty argv');
  const result = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  if (result.status !== 0) {
    const how = result.error ? result.error.message : `exited ${result.status ?? result.signal}`;
    throw new Error(`${argv.join(' ')} ${how}: ${(result.stderr ?? '').trim() || (result.stdout ?? '').trim()}`);
  }
  return result.stdout;
}

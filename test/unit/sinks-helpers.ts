// Builders shared by the sinks tests.
import type { SinkLog } from '../../src/sinks/registry.js';
import type { Transport } from '../../src/sinks/types.js';

/** A log that keeps its warnings. */
export class MemoryLog implements SinkLog {
  readonly warnings: { fields: Record<string, unknown>; message: string }[] = [];
  warn(fields: Record<string, unknown>, message: string): void {
    this.warnings.push({ fields, message });
  }
  messages(): string[] {
    return this.warnings.map((w) => w.message);
  }
}

/**
 * A transport whose sends are scripted: `outcomes` says, send by send, whether it succeeds ('ok'), throws ('throw'),
 * rejects ('reject') or never settles ('hang'); past the script it succeeds. `gate`, while set, holds every send
 * until released.
 */
export class ScriptedTransport implements Transport {
  readonly sent: string[][] = [];
  readonly delivered: string[] = [];
  closed = 0;
  private gate: { promise: Promise<void>; release: () => void } | null = null;

  constructor(private readonly outcomes: ('ok' | 'throw' | 'reject' | 'hang')[] = []) {}

  hold(): void {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => (release = resolve));
    this.gate = { promise, release };
  }

  release(): void {
    this.gate?.release();
    this.gate = null;
  }

  send(batch: readonly string[]): Promise<void> {
    this.sent.push([...batch]);
    const outcome = this.outcomes.shift() ?? 'ok';
    if (outcome === 'throw') throw new Error('scripted synchronous failure');
    return (async () => {
      await this.gate?.promise;
      if (outcome === 'reject') throw Object.assign(new Error('scripted failure: no space left on device'), { code: 'ENOSPC' });
      if (outcome === 'hang') await new Promise(() => undefined);
      this.delivered.push(...batch);
    })();
  }

  async close(): Promise<void> {
    this.closed++;
  }
}

/**
 * Resolve after the delivery's deferred first batch (a setImmediate queued earlier runs first) and any sends that
 * settle at once.
 */
export async function settle(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Resolve once `condition` holds (polled every 2 ms), or fail after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

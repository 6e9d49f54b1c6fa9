import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { EventPipeline } from '../../src/events/pipeline.js';
import { Delivery } from '../../src/sinks/delivery.js';
import { createSinks } from '../../src/sinks/registry.js';
import { FileTransport } from '../../src/sinks/transports/file.js';
import { flowEvent } from './events-helpers.js';
import { MemoryLog } from './sinks-helpers.js';

// /dev/full answers every write with ENOSPC: a full disk without filling one.
const FULL_DEVICE = '/dev/full';

describe('file transport', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egressguard-sinks-'));
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('appends newline-terminated records, creating the directory', async () => {
    const path = join(dir, 'a', 'b', 'events.jsonl');
    const transport = new FileTransport(path);
    await transport.send(['one', 'two']);
    await transport.send(['three']);
    await transport.close();
    assert.equal(await readFile(path, 'utf8'), 'one\ntwo\nthree\n');
  });

  test('a full disk is thrown to the delivery, not raised as a crash', async () => {
    assert.ok(existsSync(FULL_DEVICE), `${FULL_DEVICE} is needed for this test`);
    const transport = new FileTransport(FULL_DEVICE);
    await assert.rejects(transport.send(['x']), { code: 'ENOSPC' });
    await assert.rejects(transport.send(['y']), { code: 'ENOSPC' }, 'reopens and fails again, still as an error');
    await transport.close();
  });

  test('behind a delivery, ENOSPC is retried, then dropped and counted', async () => {
    const log = new MemoryLog();
    const delivery = new Delivery('full', new FileTransport(FULL_DEVICE), log, { retryDelayMs: 1, maxAttempts: 3 });
    for (let i = 0; i < 4; i++) delivery.enqueue(`r${i}`);
    await delivery.close();
    assert.deepEqual(delivery.stats(), {
      queued: 0,
      delivered: 0,
      failures: 3,
      dropped: 4,
      droppedQueueFull: 0,
      droppedUndeliverable: 4,
      spooled: 0,
      spoolBytes: 0,
      droppedSpoolFull: 0,
    });
    const failed = log.warnings.find((w) => w.message === 'event sink failed to deliver; retrying with backoff');
    assert.equal((failed?.fields.err as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
  });

  test('a directory that cannot be created fails the send; the file is written once it can be', async () => {
    const blocker = join(dir, 'blocker');
    await writeFile(blocker, '');
    const path = join(blocker, 'events.jsonl');
    const transport = new FileTransport(path);
    await assert.rejects(transport.send(['x']), /blocker/);
    await rm(blocker);
    await transport.send(['y']);
    await transport.close();
    assert.equal(await readFile(path, 'utf8'), 'y\n');
  });

  test('an agent pipeline whose event log is on a full disk keeps running and counts what it lost', async () => {
    const log = new MemoryLog();
    const sinks = createSinks([{ type: 'jsonl', path: FULL_DEVICE }], { node: 'n1', log });
    const pipeline = new EventPipeline({ windowMs: 1000, sinks, node: 'n1' });
    pipeline.push(flowEvent());
    pipeline.push(flowEvent({ rule: 'other' }));
    await pipeline.close();
    const stats = sinks[0]?.stats();
    assert.equal(stats?.delivered, 0);
    assert.equal(stats?.dropped, 2);
    assert.ok((stats?.failures ?? 0) >= 1);
    assert.ok(log.messages().includes('event sink dropped records it could not deliver'));
  });
});

import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { Delivery, type DeliveryOptions } from '../../src/sinks/delivery.js';
import { DeliveredSink } from '../../src/sinks/sink.js';
import { jsonLinesFormat } from '../../src/sinks/formats/jsonl.js';
import { flowEvent } from './events-helpers.js';
import { MemoryLog, ScriptedTransport, settle, until } from './sinks-helpers.js';

const fast: DeliveryOptions = { retryDelayMs: 1, maxRetryDelayMs: 4 };

function setup(outcomes: ConstructorParameters<typeof ScriptedTransport>[0] = [], options: DeliveryOptions = {}) {
  const transport = new ScriptedTransport(outcomes);
  const log = new MemoryLog();
  const delivery = new Delivery('test-sink', transport, log, { ...fast, ...options });
  return { transport, log, delivery };
}

const records = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `r${from + i}`);

describe('Delivery', () => {
  test('keeps order and batches what was written in one tick, up to maxBatch', async () => {
    const { transport, delivery } = setup([], { maxBatch: 500 });
    for (const r of records(1200)) delivery.enqueue(r);
    await delivery.close();
    assert.deepEqual(
      transport.sent.map((b) => b.length),
      [500, 500, 200],
    );
    assert.deepEqual(transport.delivered, records(1200));
    assert.deepEqual(delivery.stats(), {
      queued: 0,
      delivered: 1200,
      failures: 0,
      dropped: 0,
      droppedQueueFull: 0,
      droppedUndeliverable: 0,
      spooled: 0,
      spoolBytes: 0,
      droppedSpoolFull: 0,
    });
  });

  test('a full queue drops its oldest records, counts them and warns once; the rest arrive in order', async () => {
    const { transport, log, delivery } = setup([], { maxQueued: 3 });
    transport.hold();
    delivery.enqueue('r0');
    await settle(); // r0 is in flight, held
    for (const r of records(5, 1)) delivery.enqueue(r);
    assert.equal(delivery.stats().queued, 4, 'three queued and one in flight');
    assert.equal(delivery.stats().droppedQueueFull, 2);
    transport.release();
    await delivery.close();
    assert.deepEqual(transport.delivered, ['r0', 'r3', 'r4', 'r5']);
    assert.deepEqual(delivery.stats(), {
      queued: 0,
      delivered: 4,
      failures: 0,
      dropped: 2,
      droppedQueueFull: 2,
      droppedUndeliverable: 0,
      spooled: 0,
      spoolBytes: 0,
      droppedSpoolFull: 0,
    });
    assert.equal(log.messages().filter((m) => /queue full/.test(m)).length, 1);
  });

  test('retries a batch that throws or rejects, with the same records, until it is delivered', async () => {
    const { transport, log, delivery } = setup(['throw', 'reject']);
    for (const r of records(3)) delivery.enqueue(r);
    await delivery.close();
    assert.deepEqual(transport.sent, [records(3), records(3), records(3)]);
    assert.deepEqual(transport.delivered, records(3));
    assert.equal(delivery.stats().failures, 2);
    assert.equal(delivery.stats().dropped, 0);
    assert.deepEqual(log.messages(), ['event sink failed to deliver; retrying with backoff', 'event sink delivering again']);
    assert.equal(delivery.healthy, true);
  });

  test('drops and counts a batch that fails every attempt, then carries on with the next', async () => {
    const { transport, log, delivery } = setup(['reject', 'reject', 'reject'], { maxAttempts: 3 });
    delivery.enqueue('lost-1');
    delivery.enqueue('lost-2');
    await until(() => delivery.stats().droppedUndeliverable === 2);
    assert.equal(delivery.healthy, false);
    delivery.enqueue('kept');
    await delivery.close();
    assert.deepEqual(transport.delivered, ['kept']);
    assert.deepEqual(delivery.stats(), {
      queued: 0,
      delivered: 1,
      failures: 3,
      dropped: 2,
      droppedQueueFull: 0,
      droppedUndeliverable: 2,
      spooled: 0,
      spoolBytes: 0,
      droppedSpoolFull: 0,
    });
    assert.ok(log.warnings.some((w) => w.message === 'event sink dropped records it could not deliver' && w.fields.dropped === 2));
  });

  test('a send that never settles times out and counts as a failure', async () => {
    const { transport, delivery } = setup(['hang', 'hang'], { sendTimeoutMs: 20, maxAttempts: 2 });
    delivery.enqueue('r0');
    await delivery.close();
    assert.equal(transport.sent.length, 2);
    assert.equal(delivery.stats().failures, 2);
    assert.equal(delivery.stats().droppedUndeliverable, 1);
  });

  test('close delivers everything queued before closing the transport once; later records are dropped and counted', async () => {
    const { transport, delivery } = setup();
    for (const r of records(10)) delivery.enqueue(r);
    const closing = delivery.close();
    assert.equal(transport.closed, 0);
    await closing;
    await delivery.close();
    assert.deepEqual(transport.delivered, records(10));
    assert.equal(transport.closed, 1);
    delivery.enqueue('too-late');
    assert.equal(delivery.stats().droppedUndeliverable, 1);
    assert.equal(transport.sent.length, 1);
  });

  test('close is bounded: a destination that keeps failing is given up on at the close timeout, all counted', async () => {
    const outcomes = Array.from({ length: 1000 }, () => 'reject' as const);
    const { transport, delivery } = setup(outcomes, {
      maxAttempts: 1000,
      retryDelayMs: 5,
      maxRetryDelayMs: 5,
      closeTimeoutMs: 100,
      maxBatch: 2,
    });
    for (const r of records(5)) delivery.enqueue(r);
    const started = performance.now();
    await delivery.close();
    assert.ok(performance.now() - started < 1000, 'close returned within its bound');
    assert.equal(transport.delivered.length, 0);
    assert.equal(transport.closed, 1);
    assert.deepEqual({ queued: delivery.stats().queued, dropped: delivery.stats().droppedUndeliverable }, { queued: 0, dropped: 5 });
  });

  test('refuses nonsensical options', () => {
    assert.throws(
      () => new Delivery('s', new ScriptedTransport(), new MemoryLog(), { maxQueued: 0 }),
      /maxQueued must be an integer >= 1, got 0/,
    );
  });
});

describe('DeliveredSink', () => {
  test('reports its own drops in the stream once the destination is healthy again', async () => {
    const transport = new ScriptedTransport(['reject']);
    const sink = new DeliveredSink(
      'events.sinks[0]',
      jsonLinesFormat,
      new Delivery('s', transport, new MemoryLog(), { ...fast, maxAttempts: 1 }),
      'n1',
    );
    sink.write(flowEvent({ rule: 'lost', eventId: 'e1' }));
    await settle();
    sink.write(flowEvent({ rule: 'kept', eventId: 'e2' }));
    await sink.close();
    await sink.close();
    const lines = transport.delivered.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => l.kind),
      ['flow', 'sink-records-dropped'],
    );
    assert.equal(lines[0]?.rule, 'kept');
    assert.equal(lines[1]?.sink, 'events.sinks[0]');
    assert.equal(lines[1]?.count, 1);
    assert.equal(lines[1]?.total, 1);
    assert.equal(sink.stats().dropped, 1);
  });
});

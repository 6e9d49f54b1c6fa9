import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { EventPipeline } from '../../src/events/pipeline.js';
import { flowEvent, manualClock, MemorySink } from './events-helpers.js';

function setup(maxOpenAggregates?: number) {
  const clock = manualClock();
  const sink = new MemorySink();
  const pipeline = new EventPipeline({ windowMs: 1000, maxOpenAggregates, sinks: [sink], clock: clock.now, node: 'n1' });
  return { clock, sink, pipeline };
}

describe('EventPipeline aggregation', () => {
  test('the first occurrence is written at once with count 1, repeats as one counted event when the window closes', async () => {
    const { clock, sink, pipeline } = setup();
    pipeline.push(flowEvent());
    assert.equal(sink.events.length, 1);
    assert.equal(sink.events[0]?.count, 1);
    for (let i = 0; i < 4; i++) pipeline.push(flowEvent({ time: `2025-01-02T03:04:06.00${i}Z` }));
    assert.equal(sink.events.length, 1, 'repeats are held until the window closes');
    clock.advance(999);
    pipeline.closeExpiredWindows();
    assert.equal(sink.events.length, 1);
    clock.advance(1);
    pipeline.closeExpiredWindows();
    assert.equal(sink.events.length, 2);
    assert.equal(sink.events[1]?.count, 4);
    assert.equal(sink.events[1]?.time, '2025-01-02T03:04:06.000Z', 'the counted event starts at the first repeat');
    assert.deepEqual(pipeline.stats(), {
      received: 5,
      emitted: 2,
      aggregated: 4,
      droppedByLimit: 0,
      kernelEventsLost: 0,
      kernelEventsMalformed: 0,
      suppressedByRateLimit: 0,
      openAggregates: 0,
    });
    await pipeline.close();
  });

  test('a lone event closes its window without a second event; the next one opens a new window', async () => {
    const { clock, sink, pipeline } = setup();
    pipeline.push(flowEvent());
    clock.advance(1000);
    pipeline.closeExpiredWindows();
    pipeline.push(flowEvent());
    assert.deepEqual(
      sink.events.map((e) => e.count),
      [1, 1],
    );
    await pipeline.close();
  });

  test('different workloads, destinations, ports, protocols, names, layers, verdicts and rules are separate keys', async () => {
    const { sink, pipeline } = setup();
    const base = flowEvent();
    const variants = [
      base,
      flowEvent({ workload: { ...base.workload, name: 'benign', cgroupId: '43' } }),
      flowEvent({ destination: { ...base.destination, ip: '198.18.100.30' } }),
      flowEvent({ destination: { ...base.destination, port: 80 } }),
      flowEvent({ destination: { ...base.destination, protocol: 'udp' } }),
      // Each distinct name is on record: a tunnelling burst of unique names is not folded into one row.
      flowEvent({ fqdn: 'other.example' }),
      flowEvent({ layer: 'dns' }),
      flowEvent({ verdict: 'would-deny' }),
      flowEvent({ rule: 'default-action', tier: 3, policy: null }),
    ];
    for (const event of variants) pipeline.push(event);
    assert.equal(sink.events.length, variants.length);
    // Same key again, from another process: aggregated (the process is not part of the key).
    pipeline.push(flowEvent({ process: { pid: 4242, comm: 'other' } }));
    assert.equal(sink.events.length, variants.length);
    await pipeline.close();
    assert.equal(sink.events.at(-1)?.process?.pid, 4242);
    assert.equal(sink.events.at(-1)?.count, 1);
  });

  test('every written event gets a fresh unique UUIDv7 id', async () => {
    const { sink, pipeline } = setup();
    pipeline.push(flowEvent({ eventId: 'caller-supplied' }));
    pipeline.push(flowEvent());
    pipeline.push(flowEvent({ rule: 'other' }));
    await pipeline.close();
    const ids = sink.events.map((e) => e.eventId);
    assert.equal(new Set(ids).size, 3);
    for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('close() writes pending counted events and closes the sinks; push after close is refused', async () => {
    const { sink, pipeline } = setup();
    pipeline.push(flowEvent());
    pipeline.push(flowEvent());
    await pipeline.close();
    assert.deepEqual(
      sink.events.map((e) => e.count),
      [1, 1],
    );
    assert.equal(sink.closed, true);
    assert.throws(() => pipeline.push(flowEvent()), /closed/);
  });
});

describe('EventPipeline limits and losses', () => {
  test('new keys beyond the cap are dropped, counted and reported once per window', async () => {
    const { clock, sink, pipeline } = setup(2);
    pipeline.push(flowEvent({ destination: { ip: '198.18.100.1', port: 443, protocol: 'tcp', family: 4 } }));
    pipeline.push(flowEvent({ destination: { ip: '198.18.100.2', port: 443, protocol: 'tcp', family: 4 } }));
    for (let i = 3; i < 10; i++)
      pipeline.push(flowEvent({ destination: { ip: `198.18.100.${i}`, port: 443, protocol: 'tcp', family: 4 } }));
    // Repeats of an open key are still counted, not dropped.
    pipeline.push(flowEvent({ destination: { ip: '198.18.100.1', port: 443, protocol: 'tcp', family: 4 } }));
    assert.equal(sink.events.length, 2);
    assert.equal(pipeline.stats().droppedByLimit, 7);
    assert.equal(sink.notices.length, 0, 'drops are reported when the window closes, not per drop');
    clock.advance(1000);
    pipeline.closeExpiredWindows();
    assert.deepEqual(sink.notices, [
      { kind: 'events-dropped', time: sink.notices[0]?.time, node: 'n1', reason: 'aggregation-limit', count: 7, total: 7, limit: 2 },
    ]);
    assert.equal(sink.events.at(-1)?.count, 1, 'the repeat of the open key was written as a counted event');
    // The window closed: room again.
    pipeline.push(flowEvent({ destination: { ip: '198.18.100.9', port: 443, protocol: 'tcp', family: 4 } }));
    assert.equal(sink.events.at(-1)?.destination.ip, '198.18.100.9');
    await pipeline.close();
  });

  test('drops pending at close are reported', async () => {
    const { sink, pipeline } = setup(1);
    pipeline.push(flowEvent());
    pipeline.push(flowEvent({ rule: 'another' }));
    await pipeline.close();
    assert.equal(sink.notices.length, 1);
    assert.equal(sink.notices[0]?.count, 1);
  });

  test('kernel losses accumulate and each increase is reported at once', async () => {
    const { sink, pipeline } = setup();
    pipeline.reportKernelLoss(5);
    pipeline.reportKernelLoss(0);
    pipeline.reportKernelLoss(3);
    assert.equal(pipeline.stats().kernelEventsLost, 8);
    assert.deepEqual(
      sink.notices.map((n) => [n.kind, n.count, n.total]),
      [
        ['kernel-events-lost', 5, 5],
        ['kernel-events-lost', 3, 8],
      ],
    );
    await pipeline.close();
  });

  test('malformed ring-buffer records are counted and reported apart from losses', async () => {
    const { sink, pipeline } = setup();
    pipeline.reportKernelLoss(2);
    pipeline.reportMalformedKernelEvents(1);
    pipeline.reportMalformedKernelEvents(4);
    assert.equal(pipeline.stats().kernelEventsLost, 2);
    assert.equal(pipeline.stats().kernelEventsMalformed, 5);
    assert.deepEqual(
      sink.notices.map((n) => [n.kind, n.count, n.total]),
      [
        ['kernel-events-lost', 2, 2],
        ['kernel-events-malformed', 1, 1],
        ['kernel-events-malformed', 4, 5],
      ],
    );
    await pipeline.close();
  });

  test('the internal timer closes windows without anyone calling closeExpiredWindows', { timeout: 10_000 }, async () => {
    const sink = new MemorySink();
    const written = new Promise<void>((resolve) => {
      sink.write = (event) => {
        sink.events.push(event);
        if (sink.events.length === 2) resolve();
      };
    });
    const pipeline = new EventPipeline({ windowMs: 5, sinks: [sink] });
    pipeline.push(flowEvent());
    pipeline.push(flowEvent());
    await written;
    assert.deepEqual(
      sink.events.map((e) => e.count),
      [1, 1],
    );
    await pipeline.close();
  });

  test('invalid settings are rejected', () => {
    assert.throws(() => new EventPipeline({ windowMs: 0 }), /window must be > 0/);
    assert.throws(() => new EventPipeline({ windowMs: 1000, maxOpenAggregates: 0 }), /maxOpenAggregates must be a positive integer/);
  });
});

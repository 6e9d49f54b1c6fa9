// Events the kernel's rate limit suppressed reach the stream as one `events-suppressed` notice per workload and window.
import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { EventPipeline } from '../../src/events/pipeline.js';
import { flowEvent, manualClock, MemorySink } from './events-helpers.js';

describe('EventPipeline suppression notices', () => {
  test('suppressed counts are summed per workload and reported when the window closes, with the running total', () => {
    const clock = manualClock();
    const sink = new MemorySink();
    const pipeline = new EventPipeline({ windowMs: 1000, sinks: [sink], clock: clock.now, node: 'n1' });
    const rogue = flowEvent().workload;
    const other = { ...rogue, name: 'other', cgroupId: '43' };
    pipeline.reportSuppressed(rogue, 700);
    pipeline.reportSuppressed(rogue, 300);
    pipeline.reportSuppressed(other, 5);
    pipeline.reportSuppressed(other, 0);
    clock.advance(999);
    pipeline.closeExpiredWindows();
    assert.equal(sink.notices.length, 0, 'held until the window closes');
    clock.advance(1);
    pipeline.closeExpiredWindows();
    assert.deepEqual(
      sink.notices.map((n) => (n.kind === 'events-suppressed' ? [n.workload.name, n.count, n.total, n.reason] : n.kind)),
      [
        ['rogue', 1000, 1005, 'rate-limit'],
        ['other', 5, 1005, 'rate-limit'],
      ],
    );
    assert.equal(pipeline.stats().suppressedByRateLimit, 1005);
    pipeline.reportSuppressed(rogue, 1);
    pipeline.flush();
    assert.equal(sink.notices.length, 3, 'flush reports what is pending');
  });
});

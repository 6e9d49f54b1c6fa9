// The agent's decision history and the observe filters: bounded, in order, each filter narrowing as documented.
import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { DecisionHistory, parseObserveFilter, recordMatches, type ObservedRecord } from '../../src/events/history.js';
import { parseSince, formatObservedRow } from '../../src/cli/observe.js';
import { observedLine } from '../../src/agent/control.js';
import type { PipelineNotice } from '../../src/events/sink.js';
import { flowEvent } from './events-helpers.js';

const flow = (overrides: Parameters<typeof flowEvent>[0] = {}): ObservedRecord => ({ kind: 'flow', event: flowEvent(overrides) });
const suppressed: PipelineNotice = {
  kind: 'events-suppressed',
  time: '2025-01-02T03:04:07.000Z',
  node: 'n1',
  reason: 'rate-limit',
  workload: { namespace: 'obot-mcp', name: 'rogue', cgroupId: '42' },
  count: 500,
  total: 500,
};

describe('DecisionHistory', () => {
  test('keeps the last `capacity` records, oldest first, and feeds subscribers until they unsubscribe', () => {
    const history = new DecisionHistory(3);
    const seen: ObservedRecord[] = [];
    const unsubscribe = history.subscribe((record) => seen.push(record));
    for (const port of [1, 2, 3, 4]) history.write(flowEvent({ destination: { ip: '198.18.100.20', port, protocol: 'tcp', family: 4 } }));
    unsubscribe();
    history.notice(suppressed);
    const ports = history.last(10).map((r) => (r.kind === 'flow' ? r.event.destination.port : r.notice.kind));
    assert.deepEqual(ports, [3, 4, 'events-suppressed']);
    assert.equal(seen.length, 4);
    assert.deepEqual(
      history.last(1).map((r) => r.kind),
      ['notice'],
    );
  });

  test('last(n, filter) returns the n most recent matches', () => {
    const history = new DecisionHistory(100);
    for (let i = 0; i < 10; i++) history.write(flowEvent({ verdict: i % 2 === 0 ? 'denied' : 'permitted', count: i + 1 }));
    assert.deepEqual(
      history.last(2, { verdict: 'permitted' }).map((r) => (r.kind === 'flow' ? r.event.count : 0)),
      [8, 10],
    );
  });
});

describe('observe filters', () => {
  test('each field narrows: namespace, workload, verdict, layer, fqdn (exact and *.suffix), rule (bare and qualified), since', () => {
    const record = flow();
    const cases: [Record<string, unknown>, boolean][] = [
      [{}, true],
      [{ namespace: 'obot-mcp' }, true],
      [{ namespace: 'other' }, false],
      [{ workload: 'rogue' }, true],
      [{ workload: 'obot-mcp/rogue' }, true],
      [{ workload: 'other/rogue' }, false],
      [{ verdict: 'denied' }, true],
      [{ verdict: 'permitted' }, false],
      [{ layer: 'connect' }, true],
      [{ layer: 'dns' }, false],
      [{ fqdn: 'HTTPBIN.org.' }, true],
      [{ fqdn: '*.org' }, true],
      [{ fqdn: '*.httpbin.org' }, false],
      [{ rule: 'deny-all' }, true],
      [{ rule: 'obot-mcp/rogue-policy:deny-all' }, true],
      [{ rule: 'allow' }, false],
      [{ sinceMs: Date.parse('2025-01-02T03:04:05.000Z') }, true],
      [{ sinceMs: Date.parse('2025-01-02T03:04:06.000Z') }, false],
    ];
    for (const [input, expected] of cases) {
      const filter = parseObserveFilter(input);
      assert.ok(typeof filter !== 'string', String(filter));
      assert.equal(recordMatches(filter, record), expected, JSON.stringify(input));
    }
  });

  test('notices pass unless they name another workload', () => {
    const notice: ObservedRecord = { kind: 'notice', notice: suppressed };
    assert.equal(recordMatches({ verdict: 'permitted' }, notice), true);
    assert.equal(recordMatches({ workload: 'rogue' }, notice), true);
    assert.equal(recordMatches({ namespace: 'other' }, notice), false);
  });

  test('a bad filter is a specific error', () => {
    assert.equal(parseObserveFilter({ verdict: 'dropped' }), 'filter.verdict must be one of permitted, denied, would-deny, would-permit');
    assert.equal(
      parseObserveFilter({ pod: 'x' }),
      'filter.pod: unknown field (known: namespace, workload, verdict, fqdn, rule, layer, sinceMs)',
    );
    assert.equal(parseObserveFilter({ namespace: '' }), 'filter.namespace must be a non-empty string');
    assert.equal(parseObserveFilter([]), 'filter must be an object');
  });

  test('--since takes a duration or an ISO time, nothing else', () => {
    const now = Date.parse('2026-12-01T04:00:00Z');
    assert.equal(parseSince('5m', now), now - 300_000);
    assert.equal(parseSince('2026-12-01T03:00:00Z', now), now - 3_600_000);
    assert.throws(() => parseSince('yesterday', now), /--since "yesterday": give a duration/);
  });

  test('table rows name the verdict, workload, destination, name and rule; notices read as sentences', () => {
    const row = formatObservedRow(JSON.parse(observedLine(flow({ count: 3 }))) as Record<string, unknown>);
    assert.match(
      row,
      /DENIED\s+obot-mcp\/rogue\s+connect\s+198\.18\.100\.20:443\/tcp\s+httpbin\.org\s+tier 2 obot-mcp\/rogue-policy:deny-all {2}x3$/,
    );
    const notice = formatObservedRow(JSON.parse(observedLine({ kind: 'notice', notice: suppressed })) as Record<string, unknown>);
    assert.match(notice, /NOTICE\s+500 events of obot-mcp\/rogue suppressed: over its kernel event rate limit/);
  });
});

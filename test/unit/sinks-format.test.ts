import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import type { PipelineNotice } from '../../src/events/sink.js';
import type { FlowEvent } from '../../src/events/types.js';
import { jsonLinesFormat } from '../../src/sinks/formats/jsonl.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/sinks/', import.meta.url));
type FixtureRecord = { flow: FlowEvent } | { notice: PipelineNotice };
const records = JSON.parse(readFileSync(`${fixtures}records.json`, 'utf8')) as FixtureRecord[];

describe('jsonl format', () => {
  test('renders the fixture records byte for byte as the golden file (written by the earlier pino-based sink)', () => {
    const rendered = records.map((r) => ('flow' in r ? jsonLinesFormat.flow(r.flow) : jsonLinesFormat.notice(r.notice)));
    const golden = readFileSync(`${fixtures}jsonl.golden.jsonl`, 'utf8').split('\n');
    assert.equal(golden.pop(), '', 'the golden file ends with a newline');
    assert.equal(rendered.length, golden.length);
    rendered.forEach((line, i) => assert.equal(line, golden[i], `record ${i}`));
  });

  test('one record is one line, whatever a workload put in its names', () => {
    for (const r of records) {
      const line = 'flow' in r ? jsonLinesFormat.flow(r.flow) : jsonLinesFormat.notice(r.notice);
      assert.doesNotMatch(line, /[\n\r]/);
    }
  });

  test('the malformed ring-buffer records notice', () => {
    const notice: PipelineNotice = {
      kind: 'kernel-events-malformed',
      time: '2025-01-02T03:04:08.000Z',
      node: 'node-1',
      count: 2,
      total: 3,
    };
    assert.equal(
      jsonLinesFormat.notice(notice),
      '{"level":"warn","kind":"kernel-events-malformed","time":"2025-01-02T03:04:08.000Z","node":"node-1","count":2,"total":3,' +
        '"msg":"2 kernel event records malformed: could not be decoded, dropped (3 in total)"}',
    );
  });

  test("a sink's own drop notice", () => {
    const notice: PipelineNotice = {
      kind: 'sink-records-dropped',
      time: '2025-01-02T03:04:08.000Z',
      node: 'node-1',
      sink: 'events.sinks[0]',
      count: 3,
      total: 5,
    };
    assert.equal(
      jsonLinesFormat.notice(notice),
      '{"level":"warn","kind":"sink-records-dropped","time":"2025-01-02T03:04:08.000Z","node":"node-1","sink":"events.sinks[0]",' +
        '"count":3,"total":5,"msg":"3 records dropped by sink events.sinks[0]: its queue was full or its destination failed (5 in total)"}',
    );
  });
});

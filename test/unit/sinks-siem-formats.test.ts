// OCSF, ECS and CEF over the shared fixture records: byte for byte against golden files, OCSF and ECS valid against
// the schemas written from their public specs (test/fixtures/sinks/*.schema.json), CEF escaped per its spec, and
// the RFC 5424 and HEC envelopes around them.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, test } from 'vitest';
import type { PipelineNotice } from '../../src/events/sink.js';
import type { FlowEvent } from '../../src/events/types.js';
import { escapeCefHeader, escapeCefValue } from '../../src/sinks/formats/cef.js';
import { hecEvents } from '../../src/sinks/formats/hec.js';
import { createFormat, type FormatName } from '../../src/sinks/formats/index.js';
import { syslogMessages } from '../../src/sinks/formats/syslog.js';
import type { Format } from '../../src/sinks/types.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/sinks/', import.meta.url));
type FixtureRecord = { flow: FlowEvent } | { notice: PipelineNotice };
const records = JSON.parse(readFileSync(`${fixtures}records.json`, 'utf8')) as FixtureRecord[];
const product = { name: 'egressguard', vendor: 'egressguard', version: '0.0.0-test' };
const render = (format: Format, record: FixtureRecord) => ('flow' in record ? format.flow(record.flow) : format.notice(record.notice));
const golden = (file: string) => {
  const lines = readFileSync(`${fixtures}${file}`, 'utf8').split('\n');
  assert.equal(lines.pop(), '', `${file} ends with a newline`);
  return lines;
};
const flows = records.flatMap((r) => ('flow' in r ? [r.flow] : []));
const firstFlow = flows[0] as FlowEvent;

describe('SIEM formats: golden files', () => {
  for (const [name, file] of [
    ['ocsf', 'ocsf.golden.jsonl'],
    ['ecs', 'ecs.golden.jsonl'],
    ['cef', 'cef.golden.txt'],
  ] as [FormatName, string][]) {
    test(`${name} renders the fixture records as ${file}`, () => {
      const format = createFormat(name, product);
      const expected = golden(file);
      assert.equal(records.length, expected.length);
      records.forEach((record, i) => assert.equal(render(format, record), expected[i], `record ${i}`));
    });

    test(`${name}: one record is one line, whatever a workload put in its names`, () => {
      for (const record of records) assert.doesNotMatch(render(createFormat(name, product), record), /[\n\r]/);
    });
  }
});

describe('SIEM formats: schemas', () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  for (const [name, schemaFile] of [
    ['ocsf', 'ocsf-1.8.0.schema.json'],
    ['ecs', 'ecs-9.0.0.schema.json'],
  ] as [FormatName, string][]) {
    test(`every ${name} record validates against ${schemaFile}`, () => {
      const validate = ajv.compile(JSON.parse(readFileSync(`${fixtures}${schemaFile}`, 'utf8')) as object);
      for (const [i, record] of records.entries()) {
        const rendered = JSON.parse(render(createFormat(name, product), record)) as unknown;
        assert.ok(validate(rendered), `record ${i}: ${ajv.errorsText(validate.errors)}`);
      }
    });

    test(`the ${name} schema rejects a record that breaks it (the check can fail)`, () => {
      const validate = ajv.compile(JSON.parse(readFileSync(`${fixtures}${schemaFile}`, 'utf8')) as object);
      const rendered = JSON.parse(createFormat(name, product).flow(firstFlow)) as Record<string, unknown>;
      const broken = name === 'ocsf' ? { ...rendered, class_uid: 4002 } : { ...rendered, network: { direction: 'sideways' } };
      assert.equal(validate(broken), false);
    });
  }

  test('OCSF classes and activities follow the decision: DNS Activity for DNS, Refuse at connect, Traffic mid-flow', () => {
    const ocsf = createFormat('ocsf', product);
    const parsed = (event: FlowEvent) => JSON.parse(ocsf.flow(event)) as Record<string, unknown>;
    const dns = parsed(firstFlow);
    assert.deepEqual([dns['class_uid'], dns['activity_id'], dns['type_uid'], dns['rcode_id']], [4003, 2, 400302, 3]);
    const connect: FlowEvent = { ...firstFlow };
    delete connect.dns;
    const refused = parsed({ ...connect, layer: 'connect' });
    assert.deepEqual(
      [refused['class_uid'], refused['activity_id'], refused['action'], refused['disposition']],
      [4001, 5, 'Denied', 'Blocked'],
    );
    const dropped = parsed({ ...connect, layer: 'tls' });
    assert.deepEqual([dropped['activity_id'], dropped['disposition_id']], [6, 6]);
    const audited = parsed({ ...connect, layer: 'connect', verdict: 'would-deny' });
    assert.deepEqual([audited['action_id'], audited['disposition_id']], [3, 17]);
  });
});

describe('CEF escaping', () => {
  test('header: backslash and pipe escaped, line breaks flattened', () => {
    assert.equal(escapeCefHeader('a|b\\c\nd'), 'a\\|b\\\\c d');
  });

  test('extension values: backslash, equals and line breaks escaped; pipes left alone', () => {
    assert.equal(escapeCefValue('k=v\\x|y\r\nz\rw'), 'k\\=v\\\\x|y\\nz\\rw');
  });

  test('a hostile workload name cannot add an extension field or a record', () => {
    const record = createFormat('cef', product).flow({ ...firstFlow, rule: 'x act=allowed\nCEF:0|forged' });
    assert.match(record, / cs2=x act\\=allowed\\nCEF:0\|forged /);
    assert.equal(record.match(/ act=/g)?.length, 1);
  });
});

describe('envelopes', () => {
  test('RFC 5424: PRI from facility and verdict, the decision time, printable header fields, the record as MSG', () => {
    const syslog = syslogMessages(createFormat('cef', product), { facility: 13, appName: 'egressguard', procId: '77' });
    const message = syslog.flow({ ...firstFlow, node: 'node 1\u00e9' });
    assert.ok(message.startsWith('<108>1 2025-01-02T03:04:05.678Z node_1_ egressguard 77 flow - CEF:0|'), message);
    const notice = records.find((r): r is { notice: PipelineNotice } => 'notice' in r) as { notice: PipelineNotice };
    assert.ok(syslog.notice(notice.notice).startsWith('<108>1 2025-01-02T03:04:06.000Z node-1 egressguard 77 events-dropped - CEF:0|'));
    const permitted = syslog.flow({ ...firstFlow, verdict: 'permitted' });
    assert.ok(permitted.startsWith('<110>1 '));
  });

  test('HEC: JSON records embedded as objects, CEF as strings, time in epoch seconds', () => {
    const json = hecEvents(createFormat('ocsf', product), { source: 'egressguard', sourcetype: 'ocsf', index: 'sec', jsonRecords: true });
    const event = JSON.parse(json.flow(firstFlow)) as Record<string, unknown>;
    assert.deepEqual(
      { ...event, event: typeof event['event'] },
      { time: 1735787045.678, host: 'node-1', source: 'egressguard', sourcetype: 'ocsf', index: 'sec', event: 'object' },
    );
    const cef = hecEvents(createFormat('cef', product), { source: 'egressguard', sourcetype: 'cef', jsonRecords: false });
    const parsed = JSON.parse(cef.flow(firstFlow)) as Record<string, unknown>;
    assert.equal(parsed['event'], createFormat('cef', product).flow(firstFlow));
    assert.equal('index' in parsed, false);
  });
});

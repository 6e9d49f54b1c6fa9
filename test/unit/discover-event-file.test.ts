// Recorded event files: every problem stops the read with the file, the line and what is wrong with it.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { EventFileError, parseEventText } from '../../src/discover/event-file.js';
import { flowEvent } from './events-helpers.js';

const line = (record: unknown) => `${JSON.stringify(record)}\n`;
const flowLine = (overrides = {}) => line({ level: 'info', kind: 'flow', ...flowEvent(overrides) });

function errorOf(text: string): EventFileError {
  try {
    parseEventText(text, 'events.jsonl');
  } catch (error) {
    assert.ok(error instanceof EventFileError, String(error));
    return error;
  }
  assert.fail('the text was accepted');
}

describe('event files', () => {
  test('flows are read in order; notices of losses are kept; blank lines are ignored', () => {
    const text =
      flowLine({ fqdn: 'a.example.com' }) +
      '\n' +
      line({ level: 'warn', kind: 'kernel-events-lost', count: 3, total: 3, time: 't', node: 'n', msg: 'lost' }) +
      flowLine({ fqdn: 'b.example.com' });
    const recorded = parseEventText(text, 'events.jsonl');
    assert.deepEqual(
      recorded.flows.map((f) => f.fqdn),
      ['a.example.com', 'b.example.com'],
    );
    assert.deepEqual(recorded.losses, ['events.jsonl:3: kernel-events-lost (3 records)']);
  });

  test('observe --output json lines (kind notice) are read too', () => {
    const recorded = parseEventText(flowLine() + line({ kind: 'notice', notice: 'observer-dropped', count: 2 }), 'agent');
    assert.equal(recorded.flows.length, 1);
    assert.deepEqual(recorded.losses, ['agent:2: observer-dropped (2 records)']);
  });

  test('a truncated last line is named as truncated, with its line number', () => {
    const text = flowLine() + flowLine().slice(0, 80);
    const error = errorOf(text);
    assert.equal(error.line, 2);
    assert.match(error.message, /^events\.jsonl:2: truncated: the last record ends without a newline/);
  });

  test('a broken line in the middle is not JSON, not truncated', () => {
    const error = errorOf(flowLine() + '{"kind":"flow",\n' + flowLine());
    assert.match(error.message, /^events\.jsonl:2: not JSON/);
  });

  test('each missing or mistyped field is named with what it should be', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ verdict: 'maybe' }, /field "verdict" is "maybe"; want one of permitted, denied, would-deny, would-permit/],
      [{ destination: { ip: '198.18.100.20', port: 70000, protocol: 'tcp', family: 4 } }, /field "destination" .*port \(0-65535\)/],
      [{ tier: 7 }, /field "tier" is 7/],
      [{ count: 0 }, /field "count" is 0; want a positive integer/],
      [{ time: 'yesterday' }, /field "time" is "yesterday"; want an ISO-8601 time/],
      [{ policy: 'p' }, /field "policy" is "p"/],
    ];
    for (const [overrides, pattern] of cases) {
      const error = errorOf(flowLine() + flowLine(overrides));
      assert.equal(error.line, 2);
      assert.match(error.message, pattern);
    }
    const withoutWorkload: Record<string, unknown> = { kind: 'flow', ...flowEvent() };
    delete withoutWorkload.workload;
    assert.match(errorOf(line(withoutWorkload)).message, /^events\.jsonl:1: flow record has no "workload"/);
  });

  test('records that are not objects or of an unknown kind are refused', () => {
    assert.match(errorOf('[1,2]\n').message, /events\.jsonl:1: not a JSON object/);
    assert.match(errorOf(line({ kind: 'audit' })).message, /events\.jsonl:1: unknown record kind "audit"/);
  });

  test('what the datapath saw is read when present, and a malformed field names its line', () => {
    const seen = {
      sni: 'evil.example',
      learnedName: 'api.openai.com',
      learnedFrom: 'workload-dns',
      firstFlight: 'client-hello',
      evidence: true,
    };
    const recorded = parseEventText(flowLine({ layer: 'tls', fqdnSource: 'sni', ...seen }), 'events.jsonl');
    assert.deepEqual(
      [recorded.flows[0]!.sni, recorded.flows[0]!.learnedFrom, recorded.flows[0]!.evidence],
      ['evil.example', 'workload-dns', true],
    );
    assert.equal(parseEventText(flowLine({ layer: 'http', fqdnSource: 'http-host', httpHost: 'a.example' }), 'e').flows.length, 1);
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { learnedFrom: 'guess' },
        /events\.jsonl:2: flow record field "learnedFrom" is "guess"; want one of workload-dns, agent-resolution, other-workload-dns/,
      ],
      [
        { firstFlight: 'syn' },
        /events\.jsonl:2: flow record field "firstFlight" is "syn"; want one of client-hello, http-request, other, none/,
      ],
      [{ sni: '' }, /events\.jsonl:2: flow record field "sni" is ""; want the server name a ClientHello sent/],
      [{ httpHost: 7 }, /events\.jsonl:2: flow record field "httpHost" is 7/],
      [{ evidence: 'yes' }, /events\.jsonl:2: flow record field "evidence" is "yes"; want true/],
    ];
    for (const [fields, message] of cases) assert.match(errorOf(flowLine() + flowLine(fields)).message, message);
  });
});

import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { ConfigError, parseConfig } from '../../src/agent/config.js';
import { createSinks, sinkStats, type SinkConfig } from '../../src/sinks/registry.js';
import { MemoryLog } from './sinks-helpers.js';

function configWithSinks(sinks: string): string {
  return `workloads: []\nevents:\n  sinks:\n${sinks}`;
}

function problems(text: string): string[] {
  try {
    parseConfig('/etc/egressguard/egressguard.yaml', text, '/sys/fs/cgroup');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail('the configuration was accepted');
}

describe('sink registry: configuration', () => {
  test("today's sink entries are accepted unchanged", () => {
    const config = parseConfig(
      'c.yaml',
      configWithSinks('    - { type: jsonl, path: /var/log/egressguard/events.jsonl }\n    - { type: jsonl, path: "-" }\n'),
      '/sys/fs/cgroup',
    );
    assert.deepEqual(config.events.sinks, [
      { type: 'jsonl', path: '/var/log/egressguard/events.jsonl' },
      { type: 'jsonl', path: '-' },
    ]);
  });

  test('an unknown sink type is named with its index and the known types', () => {
    assert.deepEqual(problems(configWithSinks('    - { type: jsonl, path: "-" }\n    - { type: carrier-pigeon, address: 198.18.0.1 }\n')), [
      'events.sinks[1].type: must be one of "jsonl", "stdout", "file", "syslog", "splunk-hec", "webhook"',
    ]);
  });

  test("a bad entry is reported by its type's schema, naming the field", () => {
    assert.deepEqual(problems(configWithSinks('    - { type: jsonl, path: "-" }\n    - { type: jsonl }\n')), [
      'events.sinks[1]: missing required field "path"',
    ]);
    assert.deepEqual(problems(configWithSinks('    - { type: jsonl, path: 42 }\n')), ['events.sinks[0].path: must be string']);
    assert.deepEqual(problems(configWithSinks('    - { type: jsonl, path: "-", rotate: true }\n')), [
      'events.sinks[0].rotate: unknown field; remove it or check its spelling',
    ]);
    assert.deepEqual(problems(configWithSinks('    - { path: "-" }\n')), ['events.sinks[0]: missing required field "type"']);
  });

  test('an aggregation window of 0 ms is rejected by the configuration, not at start', () => {
    assert.deepEqual(problems('workloads: []\nevents: { aggregateWindowMs: 0 }\n'), ['events.aggregateWindowMs: must be >= 1']);
  });
});

describe('sink registry: factory', () => {
  test('creates one sink per entry, in order, named after its entry, with delivery counters for status', async () => {
    const sinks = createSinks(
      [
        { type: 'jsonl', path: '-' },
        { type: 'jsonl', path: '-' },
      ],
      { node: 'n1', log: new MemoryLog() },
    );
    assert.deepEqual(
      sinks.map((s) => s.name),
      ['events.sinks[0]', 'events.sinks[1]'],
    );
    const stats = sinkStats(sinks);
    assert.deepEqual(
      Object.keys(stats).filter((k) => k.startsWith('events.sinks[1].')),
      [
        'events.sinks[1].queued',
        'events.sinks[1].delivered',
        'events.sinks[1].failures',
        'events.sinks[1].dropped',
        'events.sinks[1].droppedQueueFull',
        'events.sinks[1].droppedUndeliverable',
        'events.sinks[1].spooled',
        'events.sinks[1].spoolBytes',
        'events.sinks[1].droppedSpoolFull',
      ],
    );
    assert.ok(Object.values(stats).every((v) => v === 0));
    await Promise.all(sinks.map((s) => s.close()));
  });

  test('an unknown type reaching the factory (a config that bypassed validation) is refused by name', () => {
    const bogus = { type: 'carrier-pigeon' } as unknown as SinkConfig;
    assert.throws(
      () => createSinks([bogus], { node: 'n1', log: new MemoryLog() }),
      /unknown sink type "carrier-pigeon"; known: jsonl, stdout, file, syslog, splunk-hec, webhook/,
    );
  });
});

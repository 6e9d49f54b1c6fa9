// The disk spool and the delivery over it, with a scripted transport: order across failures and restarts, the byte
// bound counted exactly, a spool that cannot be written (a full or broken disk) counted without crashing, a corrupt
// segment counted; and the rotated file transport, the per-sink filter and the new sink types' configuration.
import * as assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'vitest';
import { ConfigError, parseConfig } from '../../src/agent/config.js';
import { Delivery } from '../../src/sinks/delivery.js';
import { filterPredicate } from '../../src/sinks/options.js';
import { Spool } from '../../src/sinks/spool.js';
import { FileTransport } from '../../src/sinks/transports/file.js';
import { MemoryLog, ScriptedTransport, until } from './sinks-helpers.js';

const records = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `r${from + i}`);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'eg-spool-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function spooled(transport: ScriptedTransport, maxBytes = 1 << 20, directory = join(dir, 'spool')) {
  const log = new MemoryLog();
  const spool = new Spool({ directory, maxBytes });
  const delivery = new Delivery('test', transport, log, { maxBatch: 10, retryDelayMs: 1, maxRetryDelayMs: 5, closeTimeoutMs: 200 }, spool);
  return { log, spool, delivery };
}

describe('spooled delivery', () => {
  test('a failing destination: records wait on disk and arrive once, in order, when it returns', async () => {
    const transport = new ScriptedTransport(Array(20).fill('reject') as 'reject'[]);
    const { delivery } = spooled(transport);
    for (const r of records(95)) delivery.enqueue(r);
    await until(() => transport.delivered.length === 95);
    await delivery.close();
    assert.deepEqual(transport.delivered, records(95));
    const stats = delivery.stats();
    assert.deepEqual([stats.delivered, stats.dropped, stats.spooled, stats.failures], [95, 0, 0, 20]);
  });

  test('closed while the destination is down, reopened on the same directory: delivered in order, nothing lost', async () => {
    const down = new ScriptedTransport(Array(1000).fill('reject') as 'reject'[]);
    const first = spooled(down);
    for (const r of records(45)) first.delivery.enqueue(r);
    await until(() => first.delivery.stats().failures > 0);
    for (const r of records(30, 45)) first.delivery.enqueue(r);
    await first.delivery.close();
    assert.deepEqual([first.delivery.stats().spooled, first.delivery.stats().dropped], [75, 0]);

    const up = new ScriptedTransport();
    const second = spooled(up);
    assert.equal(second.delivery.stats().spooled, 75);
    second.delivery.enqueue('after-restart');
    await until(() => up.delivered.length === 76);
    await second.delivery.close();
    assert.deepEqual(up.delivered, [...records(75), 'after-restart']);
    assert.deepEqual(readdirSync(join(dir, 'spool')), [], 'delivered segments are deleted');
  });

  test('beyond the byte bound the oldest segments go, counted exactly; the rest are delivered in order', async () => {
    const down = new ScriptedTransport(Array(1000).fill('reject') as 'reject'[]);
    const first = spooled(down, 400);
    for (let round = 0; round < 20; round++) {
      for (const r of records(10, round * 10)) first.delivery.enqueue(r);
      await until(() => first.delivery.stats().queued === 0);
    }
    await first.delivery.close();
    const dropped = first.delivery.stats().droppedSpoolFull;
    assert.ok(dropped > 0);
    assert.equal(first.delivery.stats().dropped, dropped);
    assert.ok(first.spool.byteSize <= 400);

    const up = new ScriptedTransport();
    const second = spooled(up, 400);
    await until(() => second.delivery.stats().spooled === 0);
    await second.delivery.close();
    assert.equal(up.delivered.length + dropped, 200, 'every record delivered or counted');
    // What arrives is in the order written and ends with the newest; what went is the oldest, except the segment
    // that was being retried when the bound was reached (kept, whichever it was then).
    const order = up.delivered.map((r) => Number(r.slice(1)));
    assert.deepEqual(
      order,
      [...order].sort((x, y) => x - y),
    );
    assert.deepEqual(up.delivered.slice(-10), records(10, 190));
    const kept = new Set(up.delivered);
    const missing = records(200).filter((r) => !kept.has(r));
    assert.equal(missing.length, dropped);
    assert.ok(Number(missing.at(-1)?.slice(1)) < Number(up.delivered.at(-10)?.slice(1)), 'the newest were not dropped');
  });

  test('a spool that cannot be written (the disk is gone): records counted as dropped, the agent carries on', async () => {
    const transport = new ScriptedTransport(Array(1000).fill('reject') as 'reject'[]);
    const directory = join(dir, 'spool');
    const { delivery, log } = spooled(transport, 1 << 20, directory);
    // Replace the directory by a file: every segment write now fails (ENOTDIR), as ENOSPC or EIO would.
    rmSync(directory, { recursive: true });
    writeFileSync(directory, 'not a directory');
    for (const r of records(40)) delivery.enqueue(r);
    await until(() => delivery.stats().droppedUndeliverable > 0);
    await delivery.close();
    const stats = delivery.stats();
    assert.equal(stats.delivered + stats.dropped + stats.spooled, 40);
    assert.ok(log.messages().some((m) => /could not write its spool/.test(m)));
  });

  test('a corrupt segment left by an earlier run is counted as dropped, the rest delivered', async () => {
    const directory = join(dir, 'spool');
    mkdirSync(directory);
    writeFileSync(join(directory, '000000999999998-3.seg'), '["a","b","c"]');
    writeFileSync(join(directory, '000000999999999-2.seg'), '{torn');
    writeFileSync(join(directory, '000001000000000-1.seg'), '["d"]');
    writeFileSync(join(directory, '000001000000001-1.seg.tmp'), '["never renamed"]');
    const transport = new ScriptedTransport();
    const { delivery } = spooled(transport, 1 << 20, directory);
    await until(() => transport.delivered.length === 4);
    await delivery.close();
    assert.deepEqual(transport.delivered, ['a', 'b', 'c', 'd']);
    assert.equal(delivery.stats().droppedSpoolFull, 2);
  });
});

describe('rotated file transport', () => {
  test('rotates before a batch would pass maxBytes, keeping maxFiles rotated files', async () => {
    const path = join(dir, 'events.log');
    const transport = new FileTransport(path, { maxBytes: 100, maxFiles: 2 });
    for (let i = 0; i < 10; i++) await transport.send([`${'x'.repeat(40)}${i}`]);
    await transport.close();
    assert.deepEqual(readdirSync(dir).sort(), ['events.log', 'events.log.1', 'events.log.2']);
    const lines = (file: string) => readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(
      ['events.log.2', 'events.log.1', 'events.log'].flatMap(lines).map((l) => l.at(-1)),
      ['4', '5', '6', '7', '8', '9'],
    );
    for (const file of readdirSync(dir)) assert.ok(readFileSync(join(dir, file)).length <= 100);
  });
});

describe('sink filter and configuration', () => {
  test('a filter passes only the configured verdicts, layers and namespaces', () => {
    const accepts = filterPredicate({ verdicts: ['denied'], namespaces: ['obot-mcp'] });
    assert.ok(accepts);
    const event = { verdict: 'denied', layer: 'connect', workload: { namespace: 'obot-mcp' } } as Parameters<typeof accepts>[0];
    assert.equal(accepts(event), true);
    assert.equal(accepts({ ...event, verdict: 'permitted' }), false);
    assert.equal(accepts({ ...event, workload: { ...event.workload, namespace: 'other' } }), false);
    assert.equal(filterPredicate(undefined), null);
  });

  const parse = (sinks: string) => parseConfig('c.yaml', `workloads: []\nevents:\n  sinks:\n${sinks}`, '/sys/fs/cgroup').events.sinks;
  const problems = (sinks: string) => {
    try {
      parse(sinks);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems;
    }
    return assert.fail('accepted');
  };

  test('every sink type with its options is accepted', () => {
    const sinks = parse(
      [
        '    - { type: stdout, format: ecs }',
        '    - { type: file, path: /var/log/egressguard/events.log, format: json, maxBytes: 104857600, maxFiles: 5 }',
        '    - type: syslog',
        '      host: siem.example',
        '      caFile: /etc/egressguard/siem-ca.pem',
        '      format: cef',
        '      filter: { verdicts: [denied, would-deny] }',
        '      spool: { directory: /var/lib/egressguard/spool/siem, maxBytes: 1073741824 }',
        '    - { type: syslog, protocol: udp, host: 198.18.0.1, port: 514 }',
        '    - { type: splunk-hec, url: "https://splunk.example:8088", tokenFile: /etc/egressguard/hec-token, format: ocsf, index: security }',
        '    - { type: webhook, url: "https://collector.example/ingest", headers: { x-api-key: abc }, format: json }',
        '',
      ].join('\n'),
    );
    assert.deepEqual(
      sinks.map((s) => s.type),
      ['stdout', 'file', 'syslog', 'syslog', 'splunk-hec', 'webhook'],
    );
  });

  test('bad entries are reported by field', () => {
    assert.deepEqual(problems('    - { type: stdout, format: xml }\n'), [
      'events.sinks[0].format: must be one of "json", "ocsf", "ecs", "cef"',
    ]);
    assert.ok(problems('    - { type: syslog, host: h, certFile: /c.pem }\n').some((p) => /keyFile/.test(p)));
    assert.ok(problems('    - { type: syslog, protocol: tcp, host: h, caFile: /ca.pem }\n').length > 0, 'TLS options without TLS');
    assert.ok(problems('    - { type: splunk-hec, url: "https://s:8088" }\n').length > 0, 'a HEC sink needs a token');
    assert.ok(problems('    - { type: file, path: /x, filter: { verdicts: [maybe] } }\n').some((p) => /verdicts/.test(p)));
    assert.ok(problems('    - { type: webhook, url: "http://c", spool: { directory: relative, maxBytes: 1 } }\n').length >= 2);
  });
});

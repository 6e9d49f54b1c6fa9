import * as assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { ConfigError, parseConfig } from '../../src/agent/config.js';
import { EventPipeline } from '../../src/events/pipeline.js';
import { createSinks, type DeliveredSink } from '../../src/sinks/registry.js';
import { flowEvent } from './events-helpers.js';
import { MemoryLog } from './sinks-helpers.js';

function jsonlSink(path: string): DeliveredSink {
  const [sink] = createSinks([{ type: 'jsonl', path }], { node: 'n1', log: new MemoryLog() });
  return sink ?? assert.fail('no sink created');
}

describe('jsonl sink', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'egressguard-events-'));
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function linesOf(path: string): Promise<Record<string, unknown>[]> {
    return (await readFile(path, 'utf8'))
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  test('writes one JSON object per event with every attribution field, into a created directory', async () => {
    const path = join(dir, 'nested', 'deeper', 'events.jsonl');
    const pipeline = new EventPipeline({ windowMs: 1000, sinks: [jsonlSink(path)], node: 'n1' });
    pipeline.push(flowEvent({ dns: { query: 'httpbin.org', type: 'A', rcode: 'NXDOMAIN', answers: [] }, layer: 'dns' }));
    await pipeline.close();
    const [line, ...rest] = await linesOf(path);
    assert.deepEqual(rest, []);
    assert.ok(line);
    assert.equal(line.level, 'info');
    assert.equal(line.kind, 'flow');
    assert.equal(line.time, '2025-01-02T03:04:05.678Z');
    assert.equal(line.node, 'node-1');
    assert.deepEqual(line.workload, {
      namespace: 'obot-mcp',
      name: 'rogue',
      labels: { app: 'pt5rfqaz' },
      podIps: ['198.18.11.2'],
      cgroupId: '42',
    });
    assert.deepEqual(line.destination, { ip: '198.18.100.20', port: 443, protocol: 'tcp', family: 4 });
    assert.equal(line.fqdn, 'httpbin.org');
    assert.equal(line.fqdnSource, 'dns');
    assert.equal(line.layer, 'dns');
    assert.equal(line.verdict, 'denied');
    assert.equal(line.tier, 2);
    assert.deepEqual(line.policy, { namespace: 'obot-mcp', name: 'rogue-policy', generation: 1 });
    assert.equal(line.rule, 'deny-all');
    assert.equal(line.count, 1);
    assert.equal(typeof line.eventId, 'string');
    assert.notEqual(line.eventId, '');
    assert.deepEqual(line.dns, { query: 'httpbin.org', type: 'A', rcode: 'NXDOMAIN', answers: [] });
  });

  test('appends to an existing file and writes loss notices as warnings', async () => {
    const path = join(dir, 'append.jsonl');
    await writeFile(path, '{"earlier":true}\n');
    const pipeline = new EventPipeline({ windowMs: 1000, sinks: [jsonlSink(path)], node: 'n1' });
    pipeline.reportKernelLoss(4);
    pipeline.push(flowEvent());
    await pipeline.close();
    const lines = await linesOf(path);
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[0], { earlier: true });
    assert.equal(lines[1]?.level, 'warn');
    assert.equal(lines[1]?.kind, 'kernel-events-lost');
    assert.equal(lines[1]?.count, 4);
    assert.match(String(lines[1]?.msg), /4 kernel events lost/);
    assert.equal(lines[2]?.kind, 'flow');
  });

  test('a workload-controlled name with quotes and newlines stays inside one line', async () => {
    const path = join(dir, 'escape.jsonl');
    const sink = jsonlSink(path);
    sink.write(flowEvent({ fqdn: 'a"b\nc.example', eventId: 'x' }));
    await sink.close();
    const lines = await linesOf(path);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.fqdn, 'a"b\nc.example');
  });

  test('close is idempotent and an empty path is rejected', async () => {
    const sink = jsonlSink(join(dir, 'idem.jsonl'));
    await sink.close();
    await sink.close();
    assert.throws(
      () => parseConfig('c.yaml', 'workloads: []\nevents:\n  sinks: [{ type: jsonl, path: " " }]\n', '/sys/fs/cgroup'),
      (error: unknown) => error instanceof ConfigError && /events\.sinks\[0\]\.path: must match pattern/.test(error.message),
    );
  });
});

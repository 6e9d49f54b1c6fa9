// Splunk HEC and webhook sinks against an HTTP receiver that follows the documented HEC protocol (siem-helpers.ts
// says what it does not model): token, gzip, concatenated batches, retry on 5xx and 429 but not on other 4xx; and
// the disk spool: the receiver killed mid-stream and the sink stack restarted on the same spool directory loses
// nothing below the bound and keeps order; beyond the bound the oldest are dropped and counted exactly, and the
// count reaches the receiver as a notice.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, test } from 'vitest';
import type { FlowEvent } from '../../src/events/types.js';
import { createSinks, type DeliveredSink, type SinkConfig } from '../../src/sinks/registry.js';
import { MemoryLog, until } from '../unit/sinks-helpers.js';
import { freePort, HecReceiver } from './siem-helpers.js';

const TOKEN = '7f0c1e0a-5b7e-4a8e-9d1f-3c2b1a0f9e8d';

function flow(i: number, verdict: FlowEvent['verdict'] = 'denied'): FlowEvent {
  return {
    time: new Date(1735787045678 + i).toISOString(),
    node: 'node-1',
    workload: { namespace: 'obot-mcp', name: 'rogue', labels: { app: 'pt5rfqaz' }, podIps: ['198.18.11.2'], cgroupId: '42' },
    destination: { ip: '198.18.100.20', port: 443, protocol: 'tcp', family: 4 },
    fqdn: `host-${i}.example`,
    fqdnSource: 'dns',
    layer: 'connect',
    verdict,
    tier: 2,
    policy: { namespace: 'obot-mcp', name: 'rogue-policy', generation: 1 },
    rule: 'deny-all',
    count: 1,
    eventId: `e${i}`,
  };
}

/** The event ids a receiver got, in order of first arrival (delivery is at least once). */
function firstArrivals(events: Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const e of events) {
    const id = (e['event'] as { eventId?: string }).eventId;
    if (id !== undefined) seen.add(id);
  }
  return [...seen];
}

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => `e${from + k}`);

describe('Splunk HEC sink', () => {
  let dir: string;
  let hec: HecReceiver;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-siem-hec-'));
    hec = new HecReceiver(TOKEN, await freePort());
    await hec.start();
  });

  afterAll(async () => {
    await hec.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function sinkFor(config: Partial<SinkConfig> & Record<string, unknown>, log = new MemoryLog()): DeliveredSink {
    const [sink] = createSinks([{ type: 'splunk-hec', url: hec.url, token: TOKEN, ...config } as SinkConfig], { node: 'node-1', log });
    assert.ok(sink);
    return sink;
  }

  test('token, gzip, batches of concatenated event objects, all in order', async () => {
    hec.requests.length = 0;
    hec.events.length = 0;
    const sink = sinkFor({ format: 'ocsf', index: 'security' });
    for (let i = 0; i < 1200; i++) sink.write(flow(i));
    await sink.close();
    assert.equal(sink.stats().delivered, 1200);
    assert.deepEqual(
      hec.requests.map((r) => [r.authorization, r.encoding, r.status]),
      hec.requests.map(() => [`Splunk ${TOKEN}`, 'gzip', 200]),
    );
    assert.ok(hec.requests.length >= 3 && hec.requests.every((r) => r.events <= 500), 'batched, at most 500 per request');
    assert.equal(hec.events.length, 1200);
    const first = hec.events[0] as Record<string, unknown>;
    assert.deepEqual(
      { ...first, event: undefined },
      { time: 1735787045.678, host: 'node-1', source: 'egressguard', sourcetype: 'egressguard:ocsf', index: 'security', event: undefined },
    );
    assert.equal((first['event'] as { class_uid: number }).class_uid, 4001);
    assert.deepEqual(
      hec.events.map((e) => (e['event'] as { metadata: { uid: string } }).metadata.uid),
      ids(0, 1200),
    );
  });

  test('5xx and 429 are retried with backoff until delivered', async () => {
    hec.requests.length = 0;
    hec.events.length = 0;
    hec.failNext(503, 429, 500);
    const log = new MemoryLog();
    const sink = sinkFor({ gzip: false }, log);
    for (let i = 0; i < 10; i++) sink.write(flow(i));
    await until(() => sink.stats().delivered === 10, 10_000);
    await sink.close();
    assert.deepEqual(
      hec.requests.map((r) => [r.status, r.encoding]),
      [
        [503, undefined],
        [429, undefined],
        [500, undefined],
        [200, undefined],
      ],
    );
    assert.equal(sink.stats().failures, 3);
    assert.deepEqual(firstArrivals(hec.events), ids(0, 10));
    assert.ok(log.messages().some((m) => /failed to deliver/.test(m)));
  });

  test('a wrong token (403) and other 4xx are not retried: dropped, counted, logged', async () => {
    hec.requests.length = 0;
    const log = new MemoryLog();
    const sink = sinkFor({ token: 'wrong' }, log);
    for (let i = 0; i < 10; i++) sink.write(flow(i));
    await until(() => sink.stats().dropped === 10);
    await sink.close();
    assert.deepEqual(
      hec.requests.map((r) => r.status),
      // The batch, then the sink's own drop notice at close: each refused once.
      [403, 403],
    );
    assert.equal(sink.stats().delivered, 0);
    assert.ok(log.messages().some((m) => /refused records; dropped, not retried/.test(m)));
  });

  test('receiver killed mid-stream, agent restarted while spooling: nothing lost, order kept', async () => {
    hec.events.length = 0;
    const spool = { directory: join(dir, 'spool-kill'), maxBytes: 64 * 1024 * 1024 };
    const first = sinkFor({ spool });
    for (let i = 0; i < 3000; i++) {
      first.write(flow(i));
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 2));
      if (i === 1000) await hec.stop();
    }
    await until(() => first.stats().spooled > 0);
    await first.close();
    assert.equal(first.stats().dropped, 0);
    const spooled = first.stats().spooled;
    assert.ok(spooled >= 1999, `the records after the kill wait on disk (${spooled})`);

    // The restarted agent: a new sink stack on the same spool directory, then the receiver comes back.
    const second = sinkFor({ spool });
    assert.equal(second.stats().spooled, spooled);
    for (let i = 3000; i < 3500; i++) second.write(flow(i));
    await hec.start();
    await until(() => second.stats().spooled === 0 && second.stats().queued === 0, 30_000);
    await second.close();
    assert.equal(second.stats().dropped, 0);
    assert.deepEqual(firstArrivals(hec.events), ids(0, 3500));
  });

  test('beyond the spool bound the oldest are dropped, counted exactly, and the count arrives as a notice', async () => {
    hec.events.length = 0;
    await hec.stop();
    const spool = { directory: join(dir, 'spool-bound'), maxBytes: 1024 * 1024 };
    const first = sinkFor({ spool });
    const written = 5000;
    for (let i = 0; i < written; i++) {
      first.write(flow(i));
      if (i % 250 === 249) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await first.close();
    const dropped = first.stats().droppedSpoolFull;
    assert.ok(dropped > 0, 'the bound was reached');
    // Over the bound by at most the segment in flight and the newest (each one batch).
    assert.ok(first.stats().spoolBytes <= 2 * spool.maxBytes);

    const second = sinkFor({ spool });
    await hec.start();
    await until(() => second.stats().spooled === 0, 30_000);
    await second.close();
    const arrived = firstArrivals(hec.events);
    // Every record is either delivered or counted as dropped, exactly; what arrived is in the order written.
    assert.equal(arrived.length + dropped + second.stats().droppedSpoolFull, written);
    const order = arrived.map((id) => Number(id.slice(1)));
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
    );
    assert.ok(order.includes(written - 1), 'the newest records are kept');
    // Drops while the first run closed (its spool evicting what it was handed) are reported by the second run.
    const notices = hec.events.map((e) => e['event'] as { kind?: string; count?: number }).filter((e) => e.kind === 'sink-records-dropped');
    assert.ok(notices.length >= 1);
    assert.equal(
      notices.reduce((sum, n) => sum + (n.count ?? 0), 0),
      dropped + second.stats().droppedSpoolFull,
    );
  });
});

describe('webhook sink', () => {
  test('NDJSON POSTs with the configured headers, one record per line, only the filtered decisions', async () => {
    const bodies: { headers: IncomingMessage['headers']; lines: string[] }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
        bodies.push({ headers: req.headers, lines: text.split('\n') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const [sink] = createSinks(
        [
          {
            type: 'webhook',
            url: `http://127.0.0.1:${port}/ingest`,
            headers: { 'x-api-key': 'k1' },
            gzip: true,
            format: 'ecs',
            filter: { verdicts: ['denied'] },
          },
        ],
        { node: 'node-1', log: new MemoryLog() },
      );
      assert.ok(sink);
      for (let i = 0; i < 20; i++) sink.write(flow(i, i % 2 === 0 ? 'denied' : 'permitted'));
      await sink.close();
      const lines = bodies.flatMap((b) => b.lines.slice(0, -1));
      assert.ok(bodies.every((b) => b.headers['x-api-key'] === 'k1' && b.headers['content-type'] === 'application/x-ndjson'));
      assert.ok(
        bodies.every((b) => b.lines.at(-1) === ''),
        'each body ends with a newline',
      );
      assert.deepEqual(
        lines.map((l) => (JSON.parse(l) as { event: { id: string } }).event.id),
        ids(0, 20).filter((_, i) => i % 2 === 0),
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

// Syslog sinks against a real rsyslogd (imtcp with the gtls driver, and plain TCP): every record arrives byte for
// byte as the RFC 5424 message the sink built, octet counting intact, including records holding newlines, quotes,
// backslashes and non-ASCII names; a server certificate that does not verify is counted and logged, and nothing is
// sent in the clear to it.
import * as assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { createLabPki, LAB_UNLISTED_TLS_NAME, type LabPki } from '../../lab/certs.js';
import type { PipelineNotice } from '../../src/events/sink.js';
import type { FlowEvent } from '../../src/events/types.js';
import { createFormat, type FormatName } from '../../src/sinks/formats/index.js';
import { syslogMessages } from '../../src/sinks/formats/syslog.js';
import { PRODUCT } from '../../src/sinks/product.js';
import { createSinks, type SinkConfig } from '../../src/sinks/registry.js';
import { SyslogStreamTransport } from '../../src/sinks/transports/syslog.js';
import { MemoryLog, until } from '../unit/sinks-helpers.js';
import { Rsyslog } from './siem-helpers.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/sinks/', import.meta.url));
type FixtureRecord = { flow: FlowEvent } | { notice: PipelineNotice };
const records = JSON.parse(readFileSync(`${fixtures}records.json`, 'utf8')) as FixtureRecord[];
const base = (records[0] as { flow: FlowEvent }).flow;

/** The fixtures, plus names a workload controls holding every character that could break framing. */
const hostile: FlowEvent[] = [
  { ...base, fqdn: 'line1\nline2\r\nline3.example', rule: 'r\n<13>1 2025-01-01T00:00:00Z forged - - - - injected' },
  { ...base, workload: { ...base.workload, name: 'pöd-名前-🚀', labels: { app: 'ünïcödé "quoted" \\ back' } } },
  { ...base, fqdn: `${'x'.repeat(4000)}.example`, eventId: 'long' },
  { ...base, rule: '123 4 octet-count lookalike' },
];

function expectedMessages(format: FormatName, facility = 13): string[] {
  const syslog = syslogMessages(createFormat(format, PRODUCT), { facility, appName: 'egressguard', procId: String(process.pid) });
  return [...records.map((r) => ('flow' in r ? syslog.flow(r.flow) : syslog.notice(r.notice))), ...hostile.map((e) => syslog.flow(e))];
}

function writeAll(sink: ReturnType<typeof createSinks>[number]): void {
  for (const r of records) {
    if ('flow' in r) sink.write(r.flow);
    else sink.notice(r.notice);
  }
  for (const event of hostile) sink.write(event);
}

describe('syslog sinks into rsyslog', () => {
  let dir: string;
  let pki: LabPki;
  let otherPki: LabPki;
  let rsyslog: Rsyslog;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eg-siem-syslog-'));
    pki = await createLabPki(dir, [{ name: 'siem.test', ipv4: '127.0.0.1', ipv6: '::1' }]);
    const otherDir = join(dir, 'other');
    mkdirSync(otherDir);
    otherPki = await createLabPki(otherDir, [{ name: 'siem.test', ipv4: '127.0.0.1', ipv6: '::1' }]);
    const cert = pki.certificates.get('siem.test');
    assert.ok(cert);
    rsyslog = await Rsyslog.start({ dir, caPath: pki.caPath, certPath: cert.certPath, keyPath: cert.keyPath });
  });

  afterAll(async () => {
    await rsyslog?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function deliver(config: SinkConfig, expected: string[]): Promise<void> {
    const before = rsyslog.received().length;
    const log = new MemoryLog();
    const [sink] = createSinks([config], { node: 'node-1', log });
    assert.ok(sink);
    writeAll(sink);
    await sink.close();
    assert.deepEqual(log.warnings, []);
    assert.equal(sink.stats().delivered, expected.length);
    await until(() => rsyslog.received().length >= before + expected.length, 10_000).catch(() => undefined);
    const got = rsyslog.received().slice(before);
    assert.equal(got.length, expected.length, `rsyslog log: ${rsyslog.log}`);
    got.forEach((message, i) => assert.equal(message, expected[i], `message ${i}`));
  }

  test('TLS (RFC 5425), CEF: every message byte-exact, newlines and non-ASCII included', async () => {
    const expected = expectedMessages('cef');
    assert.ok(
      expected.some((m) => m.includes('\u540d')),
      'a non-ASCII name is among them',
    );
    await deliver({ type: 'syslog', host: '127.0.0.1', port: rsyslog.tlsPort, caFile: pki.caPath, format: 'cef' }, expected);
  });

  test('TLS, OCSF JSON with the name checked against a DNS SAN (serverName)', async () => {
    await deliver(
      { type: 'syslog', host: '127.0.0.1', port: rsyslog.tlsPort, caFile: pki.caPath, serverName: 'siem.test', format: 'ocsf' },
      expectedMessages('ocsf'),
    );
  });

  test('plain TCP (RFC 6587 octet counting), native JSON, facility local0', async () => {
    const expected = expectedMessages('json', 16);
    await deliver({ type: 'syslog', protocol: 'tcp', host: '127.0.0.1', port: rsyslog.tcpPort, facility: 16, format: 'json' }, expected);
  });

  test('plain TCP, a message with raw newlines (a CEF header field) arrives whole', async () => {
    // CEF escapes newlines in values; the one place raw bytes could reach the wire is a header field, which is
    // flattened. Send an RFC 5424 message with raw newlines directly through the transport's framing instead.
    const transport = new SyslogStreamTransport({ host: '127.0.0.1', port: rsyslog.tcpPort });
    const messages = ['<110>1 - - app - - - first\nsecond\r\nthird', '<110>1 - - app - - - é\n中'];
    const before = rsyslog.received().length;
    await transport.send(messages);
    await transport.close();
    await until(() => rsyslog.received().length >= before + 2, 10_000);
    assert.deepEqual(rsyslog.received().slice(before), messages);
  });

  test('UDP (RFC 5426): one message per datagram, byte-exact', async () => {
    // Over loopback with nothing else sending, no datagram is lost; UDP is best effort in general.
    await deliver({ type: 'syslog', protocol: 'udp', host: '127.0.0.1', port: rsyslog.udpPort, format: 'cef' }, expectedMessages('cef'));
  });

  test('a client certificate where the receiver requires one: delivered with it, nothing arrives without it', async () => {
    const client = pki.certificates.get(LAB_UNLISTED_TLS_NAME);
    assert.ok(client);
    await deliver(
      {
        type: 'syslog',
        host: '127.0.0.1',
        port: rsyslog.mutualTlsPort,
        caFile: pki.caPath,
        certFile: client.certPath,
        keyFile: client.keyPath,
        format: 'cef',
      },
      expectedMessages('cef'),
    );
    const before = rsyslog.received().length;
    const [anonymous] = createSinks([{ type: 'syslog', host: '127.0.0.1', port: rsyslog.mutualTlsPort, caFile: pki.caPath }], {
      node: 'node-1',
      log: new MemoryLog(),
    });
    assert.ok(anonymous);
    writeAll(anonymous);
    await anonymous.close();
    // Judged on the receiving side: give rsyslogd time to have written anything it accepted.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(rsyslog.received().length, before, 'nothing accepted without a client certificate');
  });

  test('a server certificate from another CA: nothing delivered, every failure counted and logged, drops counted', async () => {
    const before = rsyslog.received().length;
    const log = new MemoryLog();
    const [sink] = createSinks([{ type: 'syslog', host: '127.0.0.1', port: rsyslog.tlsPort, caFile: otherPki.caPath }], {
      node: 'node-1',
      log,
    });
    assert.ok(sink);
    writeAll(sink);
    await until(() => sink.stats().failures >= 2);
    await sink.close();
    const stats = sink.stats();
    assert.equal(stats.delivered, 0);
    // Every record written is counted as dropped (its batch was still being retried when close() ran out of time).
    assert.equal(stats.droppedUndeliverable, records.length + hostile.length);
    const failure = log.warnings.find((w) => /failed to deliver/.test(w.message));
    assert.ok(failure, JSON.stringify(log.warnings));
    assert.match(String((failure.fields['err'] as Error).message), /certificate|self.signed|verify/i);
    assert.equal(rsyslog.received().length, before, 'nothing reached the receiver');
  });
});

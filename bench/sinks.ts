// Sustained events per second from the pipeline's push (DeliveredSink.write, what src/events/pipeline.ts calls) to
// a sink, with the agent process's CPU over the same interval: to the rotated file sink (native JSON and OCSF) and
// over syslog-TLS (RFC 5425) to a real rsyslogd on 127.0.0.1 (CEF and native JSON). The producer pushes in chunks
// and keeps the sink's queue under half its bound, so what is measured is what the sink sustains with nothing
// dropped (asserted). rsyslogd parses and discards (writing a file there would measure its disk, not the agent);
// its own CPU is not counted: it is the SIEM's side. "events per CPU-second" is the rate one fully available core
// sustains (the agent's user + system time, all threads, the producer's waiting included); on a shared machine the
// wall rate is bounded by the CPU the process is given.
//   node dist/bench/sinks.js        (BENCH_EVENTS=200000 per case)
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createLabPki } from '../lab/certs.js';
import type { FlowEvent } from '../src/events/types.js';
import { createSinks, type SinkConfig } from '../src/sinks/registry.js';
import { Rsyslog } from '../test/integration/siem-helpers.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 200_000);
const CHUNK = 1000;
/** Keep the sink's queue below half its default bound (10,000): a producer that never causes drops. */
const HIGH_WATER = 5000;

function flow(i: number): FlowEvent {
  return {
    time: new Date(1735787045678 + i).toISOString(),
    node: 'node-1',
    workload: { namespace: 'obot-mcp', name: `mcp-${i % 50}`, labels: { app: 'mcp-server' }, podIps: ['198.18.11.2'], cgroupId: '42' },
    destination: { ip: '198.18.100.20', port: 443, protocol: 'tcp', family: 4 },
    fqdn: `api-${i % 200}.example.com`,
    fqdnSource: 'sni',
    layer: 'tls',
    verdict: i % 3 === 0 ? 'denied' : 'permitted',
    tier: 2,
    policy: { namespace: 'obot-mcp', name: 'mcp-egress', generation: 7 },
    rule: 'allow-approved',
    count: 1,
    eventId: `0193a1b2-c3d4-7e5f-8a9b-${String(i).padStart(12, '0')}`,
  };
}

const events = Array.from({ length: 1000 }, (_, i) => flow(i));
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function measure(label: string, config: SinkConfig): Promise<void> {
  const [sink] = createSinks([config], { node: 'node-1', log: { warn: (fields, message) => console.error(message, fields) } });
  if (sink === undefined) throw new Error('no sink');
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let sent = 0; sent < EVENTS; sent += CHUNK) {
    for (let i = 0; i < CHUNK; i++) sink.write(events[(sent + i) % events.length]!);
    while (sink.stats().queued > HIGH_WATER) await tick();
  }
  while (sink.stats().delivered < EVENTS) await tick();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await sink.close();
  const { delivered, dropped } = sink.stats();
  if (delivered !== EVENTS || dropped !== 0) throw new Error(`${label}: delivered ${delivered}, dropped ${dropped}`);
  const cpuSeconds = (used.user + used.system) / 1e6;
  const rate = (per: number) =>
    Math.round(EVENTS / per)
      .toLocaleString('en-US')
      .padStart(9);
  console.log(
    `${label.padEnd(30)} ${rate(seconds)} events/s wall   agent CPU ${(cpuSeconds / seconds).toFixed(2)} cores   ` +
      `${rate(cpuSeconds)} events per CPU-second   (${seconds.toFixed(2)} s, 0 dropped)`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'eg-bench-sinks-'));
let rsyslog: Rsyslog | null = null;
try {
  const pki = await createLabPki(dir, [{ name: 'siem.test', ipv4: '127.0.0.1', ipv6: '::1' }]);
  const cert = pki.certificates.get('siem.test')!;
  mkdirSync(join(dir, 'rsyslog'));
  rsyslog = await Rsyslog.start({
    dir: join(dir, 'rsyslog'),
    caPath: pki.caPath,
    certPath: cert.certPath,
    keyPath: cert.keyPath,
    discard: true,
  });
  console.log(`sinks: ${EVENTS.toLocaleString('en-US')} events per case, pushed ${CHUNK} per tick, queue kept under ${HIGH_WATER}`);
  await measure('file, json (rotated at 100 MiB)', { type: 'file', path: join(dir, 'events.jsonl'), format: 'json' });
  await measure('file, ocsf', { type: 'file', path: join(dir, 'events.ocsf'), format: 'ocsf' });
  await measure('syslog-TLS to rsyslogd, cef', {
    type: 'syslog',
    host: '127.0.0.1',
    port: rsyslog.tlsPort,
    caFile: pki.caPath,
    format: 'cef',
  });
  await measure('syslog-TLS to rsyslogd, json', {
    type: 'syslog',
    host: '127.0.0.1',
    port: rsyslog.tlsPort,
    caFile: pki.caPath,
    format: 'json',
  });
} finally {
  await rsyslog?.stop();
  rmSync(dir, { recursive: true, force: true });
}

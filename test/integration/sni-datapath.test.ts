// TLS SNI enforcement against the real kernel: real TLS handshakes (certificates made here with
// openssl) and crafted ClientHellos from a workload in a pod namespace, IPv4 and IPv6.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { openDatapath } from '../../src/datapath/datapath.js';
import type { Datapath, DatapathSettings, KernelEvent, KernelRule } from '../../src/datapath/types.js';
import { Lab } from '../../lab/lab.js';
import { eventMatching, rule } from '../support/datapath-helpers.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { buildClientHello } from '../unit/clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
const skip = privilegedSkip();

const POD = 'workload';
const LEARNED = 2; // inet host whose address is learned for the web rule
const UNLEARNED = 3;
const WEB_RULE = 11;
const ANY_RULE = 12;
const SINK_PORT = 8443;

/** TLS on 443 (answers "hello:<servername>") and a byte-counting sink on 8443 (acks the running total). */
const SERVER_SCRIPT = `
const tls = require('tls'), net = require('net'), fs = require('fs');
const options = { key: fs.readFileSync(process.env.EG_KEY), cert: fs.readFileSync(process.env.EG_CERT) };
let pending = 2;
const ready = () => { if (--pending === 0) console.log('ready'); };
tls.createServer(options, (s) => { s.on('error', () => {}); s.end('hello:' + (s.servername || '-')); }).listen({ port: 443, host: '::' }, ready);
net.createServer((s) => { let total = 0; s.on('error', () => {}); s.on('data', (c) => { total += c.length; s.write(total + '\\n'); }); })
  .listen({ port: ${SINK_PORT}, host: '::' }, ready);`;

/** One client action; prints JSON. The timer only bounds a connection whose packets are dropped. */
const CLIENT_SCRIPT = `
const tls = require('tls'), net = require('net');
const a = JSON.parse(process.env.EG_ARGS);
const done = (r) => { process.stdout.write(JSON.stringify({ pid: process.pid, ...r })); process.exit(0); };
if (a.op === 'tls') {
  setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), 2500);
  const o = { host: a.host, port: 443, ca: a.ca, checkServerIdentity: () => undefined };
  if (a.servername !== null) o.servername = a.servername;
  const s = tls.connect(o);
  let data = '';
  s.on('data', (c) => (data += c));
  s.on('end', () => done({ ok: s.authorized, data }));
  s.on('error', (e) => done({ ok: false, code: e.code }));
} else {
  const parts = a.parts.map((p) => Buffer.from(p, 'hex'));
  const total = parts.reduce((n, p) => n + p.length, 0);
  let acked = 0;
  setTimeout(() => done({ ok: false, code: 'TIMEOUT', acked, total }), 2500);
  const s = net.connect({ host: a.host, port: a.port, noDelay: true });
  s.on('data', (c) => { for (const line of String(c).split('\\n')) if (line) acked = Number(line); if (acked === total) done({ ok: true, acked, total }); });
  s.on('error', (e) => done({ ok: false, code: e.code, acked, total }));
  s.on('connect', async () => {
    for (const p of parts) { s.write(p); await new Promise((r) => setTimeout(r, 60)); }
  });
}`;

interface TlsResult {
  pid: number;
  ok: boolean;
  code?: string;
  data?: string;
}

interface RawResult {
  pid: number;
  ok: boolean;
  code?: string;
  acked: number;
  total: number;
}

function makeCertificates(dir: string): { ca: string; key: string; cert: string } {
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=egressguard test CA', '-days', '1']);
  run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=allowed.example']);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:allowed.example,DNS:evil.example,DNS:wild.example,DNS:*.wild.example\n');
  run([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '1',
    '-extfile',
    'ext',
  ]);
  return { ca: join(dir, 'ca.crt'), key: join(dir, 'server.key'), cert: join(dir, 'server.crt') };
}

/** Splits bytes into n parts at the given fractions (so a part boundary falls inside the SNI). */
function split(bytes: Buffer, n: number): string[] {
  const parts: string[] = [];
  for (let i = 0; i < n; i++)
    parts.push(bytes.subarray(Math.floor((bytes.length * i) / n), Math.floor((bytes.length * (i + 1)) / n)).toString('hex'));
  return parts;
}

describe('TLS SNI datapath (real kernel)', { skip }, () => {
  let lab: Lab;
  let datapath: Datapath | null = null;
  let certDir = '';
  let ca = '';
  let workloadId = 0;
  const events: KernelEvent[] = [];
  const settings: DatapathSettings = {
    defaultAction: 'deny',
    dnsProxy: { ipv4: null, ipv6: null, port: 0 },
    denyEch: false,
    maxLearnedPerWorkload: 4096,
    features: { tls: true, packet: true },
  };

  const webRule = (overrides: Partial<KernelRule> = {}): KernelRule =>
    rule({
      ruleId: WEB_RULE,
      action: 'permit',
      protocol: 'tcp',
      portLow: 443,
      portHigh: SINK_PORT,
      web: true,
      log: true,
      domains: [
        { kind: 'exact', name: 'allowed.example' },
        { kind: 'wildcard', suffix: 'wild.example' },
      ],
      ...overrides,
    });

  const tlsClient = (host: string, servername: string | null): Promise<TlsResult> =>
    lab.runScriptInPod<TlsResult>(POD, CLIENT_SCRIPT, { op: 'tls', host, servername, ca });
  const rawClient = (host: string, parts: string[], port = SINK_PORT): Promise<RawResult> =>
    lab.runScriptInPod<RawResult>(POD, CLIENT_SCRIPT, { op: 'raw', host, port, parts });

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'eg-sni-'));
    const certs = makeCertificates(certDir);
    ca = readFileSync(certs.ca, 'utf8');
    lab = await Lab.create({ prefix: uniquePrefix('sn'), pods: [POD], hosts: [], unnamedHosts: [LEARNED, UNLEARNED], services: false });
    await lab.serve(SERVER_SCRIPT, { EG_KEY: certs.key, EG_CERT: certs.cert });
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup });
    datapath.onEvent((event) => events.push(event));
    datapath.configure(settings);
    workloadId = datapath.setWorkload(lab.pod(POD).cgroupPath, [webRule()]);
    const expiresAtNs = process.hrtime.bigint() + 600_000_000_000n;
    for (const family of [4, 6] as const) {
      datapath.learn([{ workloadId, ruleId: WEB_RULE, ip: lab.inet(LEARNED, family), expiresAtNs }]);
    }
  }, 60_000);

  afterAll(async () => {
    try {
      datapath?.close();
    } finally {
      if (certDir) rmSync(certDir, { recursive: true, force: true });
      await lab?.destroy();
    }
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: an allowed SNI to a learned address completes the handshake`, async () => {
      const result = await tlsClient(lab.inet(LEARNED, family), 'allowed.example');
      assert.deepEqual([result.ok, result.data], [true, 'hello:allowed.example'], JSON.stringify(result));
      const event = await eventMatching(events, (e) => e.pid === result.pid && e.layer === 'tls');
      assert.deepEqual(
        [event.verdict, event.tier, event.ruleId, event.sni, event.ip],
        ['permitted', 2, WEB_RULE, 'allowed.example', lab.inet(LEARNED, family)],
      );
    });

    test(`IPv${family}: SNI spoofing (allowed name, address never learned) fails at connect`, async () => {
      const result = await tlsClient(lab.inet(UNLEARNED, family), 'allowed.example');
      assert.equal(result.code, 'EPERM');
    });

    test(`IPv${family}: domain fronting (learned address, other SNI) never completes; the event names the SNI`, async () => {
      const result = await tlsClient(lab.inet(LEARNED, family), 'evil.example');
      assert.equal(result.ok, false);
      assert.equal(result.data, undefined);
      const event = await eventMatching(events, (e) => e.pid === result.pid && e.layer === 'tls');
      assert.deepEqual([event.verdict, event.tier, event.ruleId, event.sni, event.family], ['denied', 3, 0, 'evil.example', family]);
    });

    test(`IPv${family}: TLS without SNI and plain HTTP to a foreign Host on 443 are dropped`, async () => {
      const noSni = await tlsClient(lab.inet(LEARNED, family), null);
      assert.equal(noSni.ok, false);
      const event = await eventMatching(events, (e) => e.pid === noSni.pid && e.layer === 'tls');
      assert.deepEqual([event.verdict, event.sni], ['denied', null]);
      const http = Buffer.from('GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n');
      const plain = await rawClient(lab.inet(LEARNED, family), [http.toString('hex')], 443);
      assert.equal(plain.ok, false, 'HTTP bytes never reach the server');
      assert.equal(plain.acked, 0);
    });

    test(`IPv${family}: a ClientHello split across 2 and 3 segments`, async () => {
      for (const parts of [2, 3]) {
        const allowed = buildClientHello({ sni: 'allowed.example', grease: true });
        const passed = await rawClient(lab.inet(LEARNED, family), split(allowed, parts));
        assert.equal(passed.ok, true, `allowed, ${parts} parts: ${JSON.stringify(passed)}`);
        assert.equal(passed.acked, allowed.length, 'the server received every byte');
        const denied = buildClientHello({ sni: 'evil.example', grease: true });
        const dropped = await rawClient(lab.inet(LEARNED, family), split(denied, parts));
        assert.equal(dropped.ok, false, `denied, ${parts} parts`);
        assert.ok(dropped.acked < denied.length, 'the completing segment never arrives');
        const event = await eventMatching(events, (e) => e.pid === dropped.pid && e.layer === 'tls');
        assert.equal(event.sni, 'evil.example');
      }
    });

    test(`IPv${family}: ECH-style hello decides on the outer SNI unless ECH is denied`, async () => {
      const hello = buildClientHello({ sni: 'allowed.example', ech: true });
      assert.equal((await rawClient(lab.inet(LEARNED, family), [hello.toString('hex')])).ok, true);
      datapath!.configure({ ...settings, denyEch: true });
      try {
        const denied = await rawClient(lab.inet(LEARNED, family), [hello.toString('hex')]);
        assert.equal(denied.ok, false);
        const event = await eventMatching(events, (e) => e.pid === denied.pid && e.layer === 'tls');
        assert.deepEqual([event.verdict, event.tier, event.sni], ['denied', 1, 'allowed.example']);
        const plain = buildClientHello({ sni: 'allowed.example' });
        assert.equal((await rawClient(lab.inet(LEARNED, family), [plain.toString('hex')])).ok, true, 'without ECH still permitted');
      } finally {
        datapath!.configure(settings);
      }
    });

    test(`IPv${family}: wildcard matches subdomains, never the apex; names are case-insensitive`, async () => {
      const sub = await tlsClient(lab.inet(LEARNED, family), 'api.wild.example');
      assert.equal(sub.data, 'hello:api.wild.example', JSON.stringify(sub));
      const deep = buildClientHello({ sni: 'A.B.Wild.Example.' });
      assert.equal((await rawClient(lab.inet(LEARNED, family), [deep.toString('hex')])).ok, true, 'two labels, case, trailing dot');
      const apex = await tlsClient(lab.inet(LEARNED, family), 'wild.example');
      assert.equal(apex.ok, false);
    });
  }

  test('a `*` rule accepts any SNI but still needs one', async () => {
    datapath!.setWorkload(lab.pod(POD).cgroupPath, [
      rule({
        ruleId: ANY_RULE,
        action: 'permit',
        protocol: 'tcp',
        portLow: 443,
        portHigh: 443,
        web: true,
        anyName: true,
        domains: [{ kind: 'any' }],
      }),
    ]);
    try {
      for (const family of [4, 6] as const) {
        const anyName = await tlsClient(lab.inet(UNLEARNED, family), 'evil.example');
        assert.equal(anyName.data, 'hello:evil.example', JSON.stringify(anyName));
        const noSni = await tlsClient(lab.inet(UNLEARNED, family), null);
        assert.equal(noSni.ok, false);
      }
    } finally {
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [webRule()]);
    }
  });

  test('a deny webGroup rule before a permit-all rule denies only its names', async () => {
    datapath!.setWorkload(lab.pod(POD).cgroupPath, [
      webRule({ ruleId: 21, action: 'deny', domains: [{ kind: 'exact', name: 'evil.example' }] }),
      rule({ ruleId: 22, action: 'permit', protocol: 'tcp', anyDestination: true }),
    ]);
    datapath!.learn([{ workloadId, ruleId: 21, ip: lab.inet(LEARNED, 4), expiresAtNs: process.hrtime.bigint() + 600_000_000_000n }]);
    try {
      assert.equal((await tlsClient(lab.inet(LEARNED, 4), 'allowed.example')).data, 'hello:allowed.example', 'fallback permits');
      const denied = await tlsClient(lab.inet(LEARNED, 4), 'evil.example');
      assert.equal(denied.ok, false);
      const event = await eventMatching(events, (e) => e.pid === denied.pid && e.layer === 'tls');
      assert.deepEqual([event.verdict, event.ruleId], ['denied', 21]);
    } finally {
      datapath!.setWorkload(lab.pod(POD).cgroupPath, [webRule()]);
    }
  });

  test('invalid domain patterns are rejected with the rule named', () => {
    assert.throws(
      () => datapath!.setWorkload(lab.pod(POD).cgroupPath, [webRule({ domains: [{ kind: 'exact', name: 'bad name.example' }] })]),
      /rule #0 \(id 11\): domain "bad name.example" contains " "/,
    );
  });
});

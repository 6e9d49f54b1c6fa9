// Fuzzes the kernel's ClientHello path (reassembly, parse, name match: the functions eg_skb_egress
// uses) through eg_hello_probe (bpf/tests/hello_probe.bpf.o) and BPF_PROG_TEST_RUN, against a reference reading in TypeScript.
// Seeded: a failure names its seed and case so it can be replayed.
import * as assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { EG_DOMAIN_NAME_MAX, EG_HELLO_MAX, PROBE, RULE_FLAG, encodeDomainKey, encodeProbeInput } from '../../src/datapath/abi.js';
import { ensureBpffs } from '../../src/datapath/mounts.js';
import { loadNative, type NativeObject, type NativeProgram } from '../../src/datapath/native.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { buildClientHello, readClientHello, sniAllowed } from './clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../../bpf/tests/hello_probe.bpf.o', import.meta.url));
const skip = privilegedSkip();
const SEED = Number(process.env.EG_FUZZ_SEED ?? 0x5eed);
const CASES = Number(process.env.EG_FUZZ_CASES ?? 4000);
const MAX_EXTENSIONS = 128;
const RULE_ID = 77;
const EXACT = ['allowed.example'];
const WILDCARDS = ['wild.example'];

/** mulberry32: small, seedable, good enough to spread mutations. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = [
  'allowed.example',
  'ALLOWED.Example',
  'allowed.example.',
  'allowed.example..',
  'x.allowed.example',
  'api.wild.example',
  'a.b.wild.example',
  'wild.example',
  '.wild.example',
  'a..wild.example',
  'evil.example',
  'allowed.examplf',
  'allowed.exampl',
  'allowed example',
  'allowed.example\u00ff',
  'under_score.wild.example',
  '',
  `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(50)}.wild.example`,
  `${'a'.repeat(240)}.wild.example`,
  `${'a'.repeat(236)}.wild.example`,
];

describe('ClientHello parser fuzz (BPF_PROG_TEST_RUN)', { skip }, () => {
  let object: NativeObject;
  let probe: NativeProgram;
  let pinRoot = '';

  beforeAll(() => {
    pinRoot = join(ensureBpffs(), uniquePrefix('fz'));
    mkdirSync(pinRoot);
    object = new (loadNative().BpfObject)(objectPath, pinRoot);
    object.load(); // the probe and the production ClientHello functions it calls pass the verifier
    const domains = object.map('eg_domains');
    for (const name of EXACT) domains.update(encodeDomainKey(RULE_ID, { kind: 'exact', name })!, Buffer.from([1]));
    for (const suffix of WILDCARDS) domains.update(encodeDomainKey(RULE_ID, { kind: 'wildcard', suffix })!, Buffer.from([1]));
    domains.close();
    probe = object.program('eg_hello_probe');
  });

  afterAll(() => {
    object?.close();
    if (pinRoot) {
      for (const name of readdirSync(pinRoot)) unlinkSync(join(pinRoot, name));
      rmdirSync(pinRoot);
    }
  });

  function run(payload: Buffer, flags: number): number {
    return probe.testRun({ data: encodeProbeInput(RULE_ID, flags, payload), dataOutSize: payload.length + 64 }).retval;
  }

  function expected(payload: Buffer, flags: number): { match: boolean; valid: boolean } {
    const reading = readClientHello(payload, EG_HELLO_MAX, MAX_EXTENSIONS);
    const hasName = reading.sni !== null && reading.sni.length > 0;
    let match = reading.valid;
    if (flags & RULE_FLAG.web) {
      match =
        reading.valid && hasName && ((flags & RULE_FLAG.anyName) !== 0 || sniAllowed(reading.sni!, EXACT, WILDCARDS, EG_DOMAIN_NAME_MAX));
    }
    return { match, valid: reading.valid };
  }

  function check(payload: Buffer, flags: number, label: string): void {
    const result = run(payload, flags);
    const want = expected(payload, flags);
    const context = `${label} flags=${flags} seed=${SEED} bytes=${payload.subarray(0, 64).toString('hex')}…(${payload.length})`;
    assert.equal((result & PROBE.match) !== 0, want.match, `match: ${context}`);
    assert.equal((result & PROBE.valid) !== 0, want.valid, `valid: ${context}`);
  }

  test('well-formed hellos: names, wildcards, case, GREASE, ECH, record versions 1.0-1.3', () => {
    for (const sni of [...NAMES, null]) {
      for (const recordVersion of [0x0301, 0x0302, 0x0303, 0x0304]) {
        const hello = buildClientHello({ sni, recordVersion, grease: true, ech: recordVersion === 0x0304 });
        check(hello, RULE_FLAG.web, `sni=${JSON.stringify(sni)} v=${recordVersion.toString(16)}`);
      }
    }
    const allowed = buildClientHello({ sni: 'api.wild.example', ech: true });
    const result = run(allowed, RULE_FLAG.web);
    assert.equal(result & (PROBE.match | PROBE.valid | PROBE.sni | PROBE.ech), PROBE.match | PROBE.valid | PROBE.sni | PROBE.ech);
    assert.equal(run(buildClientHello({ sni: 'x', recordVersion: 0x0300 }), RULE_FLAG.web) & PROBE.valid, 0, 'SSL 3.0 record');
    assert.equal(run(buildClientHello({ sni: 'x', recordVersion: 0x0305 }), RULE_FLAG.web) & PROBE.valid, 0, 'unknown record version');
  });

  test('`*` needs a non-empty SNI; tlsRequired alone needs only a ClientHello', () => {
    for (const sni of ['evil.example', '', null]) {
      const hello = buildClientHello({ sni });
      check(hello, RULE_FLAG.web | RULE_FLAG.anyName, `any sni=${JSON.stringify(sni)}`);
      check(hello, 0, `tlsRequired sni=${JSON.stringify(sni)}`);
    }
    assert.equal(run(Buffer.from('GET / HTTP/1.1\r\n\r\n'), 0) & PROBE.match, 0, 'plain HTTP');
  });

  test('plain HTTP: the Host header is matched like an SNI, and only an unambiguous one', () => {
    const request = (head: string) => Buffer.from(`${head}\r\n\r\n`);
    const matches = (head: string) => (run(request(head), RULE_FLAG.web) & PROBE.match) !== 0;
    assert.equal(matches('GET /x HTTP/1.1\r\nHost: allowed.example'), true, 'exact name');
    assert.equal(matches('POST / HTTP/1.1\r\naccept: */*\r\nhOsT:Allowed.Example:8080'), true, 'case, no space, port');
    assert.equal(matches('GET / HTTP/1.1\r\nHost: a.wild.example'), true, 'wildcard');
    assert.equal(matches('GET / HTTP/1.1\r\nHost: evil.example'), false, 'other name');
    assert.equal(matches('GET http://evil.example/ HTTP/1.1\r\nHost: allowed.example'), false, 'absolute-form target');
    assert.equal(matches('CONNECT evil.example:443 HTTP/1.1\r\nHost: allowed.example'), false, 'authority form');
    assert.equal(matches('GET / HTTP/1.1\r\nHost: allowed.example\r\nHost: evil.example'), false, 'two Host headers');
    assert.equal(matches('GET / HTTP/1.1\r\nHost: allowed.example\r\n evil'), false, 'folded line');
    assert.equal(matches('GET / HTTP/1.1\r\nHost: allowed.example:evil'), false, 'port that is not digits');
    assert.equal(matches('GET / HTTP/1.1\r\nX-Host: allowed.example'), false, 'no Host header');
    assert.equal(matches('get / HTTP/1.1\r\nHost: allowed.example'), false, 'lower-case method is not HTTP');
    assert.equal(run(request('GET / HTTP/1.1\r\nHost: allowed.example'), RULE_FLAG.web | RULE_FLAG.anyName) & PROBE.match, PROBE.match);
    assert.equal(run(request('GET / HTTP/1.1\r\nHost: allowed.example'), 0) & PROBE.match, 0, 'tlsRequired needs TLS');
    const partial = run(Buffer.from('GET / HTTP/1.1\r\nHost: allowed.example\r\n'), RULE_FLAG.web);
    assert.equal(partial & (PROBE.match | PROBE.incomplete), PROBE.incomplete, 'the head is not complete before its empty line');
  });

  test('many extensions: up to the walk limit parses, beyond it fails closed', () => {
    for (const count of [MAX_EXTENSIONS - 4, MAX_EXTENSIONS - 3, MAX_EXTENSIONS - 2, MAX_EXTENSIONS + 10]) {
      const extra = Array.from({ length: count }, (_, index): [number, Buffer] => [0x1a1a + index * 0x1010, Buffer.alloc(index % 3)]);
      check(buildClientHello({ sni: 'allowed.example', extra }), RULE_FLAG.web, `extensions=${count}`);
    }
  });

  test('zero-length, truncated and oversized input', () => {
    assert.equal(run(Buffer.alloc(0), RULE_FLAG.web) & (PROBE.match | PROBE.incomplete), PROBE.incomplete);
    const hello = buildClientHello({ sni: 'allowed.example' });
    for (let length = 0; length < hello.length; length++) {
      const result = run(hello.subarray(0, length), RULE_FLAG.web);
      assert.equal(result & PROBE.match, 0, `truncated to ${length}`);
      assert.equal((result & PROBE.incomplete) !== 0, true, `truncated to ${length} waits for more`);
    }
    // BPF_PROG_TEST_RUN carries at most about a page, so "beyond the bound" is a record that claims it.
    const claimsTooMuch = Buffer.from(hello);
    claimsTooMuch.writeUInt16BE(EG_HELLO_MAX - 4, 3);
    check(claimsTooMuch, RULE_FLAG.web, 'record beyond the bound');
    assert.equal(run(claimsTooMuch, RULE_FLAG.web) & PROBE.incomplete, 0, 'beyond the bound: decided, not waiting');
    const trailing = Buffer.concat([hello, Buffer.alloc(2048, 0x17)]);
    check(trailing, RULE_FLAG.web, 'complete hello followed by other records');
  });

  test(`${CASES} seeded random mutations never permit what the reference denies`, () => {
    const next = random(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    for (let index = 0; index < CASES; index++) {
      const base = buildClientHello({
        sni: pick([...NAMES, null]),
        recordVersion: pick([0x0301, 0x0303, 0x0304]),
        grease: next() < 0.5,
        ech: next() < 0.2,
        extra: next() < 0.3 ? [[0x0a0a, Buffer.alloc(Math.floor(next() * 40))]] : [],
        sessionId: Buffer.alloc(Math.floor(next() * 33), 7),
      });
      const bytes = Buffer.from(base);
      const mode = next();
      let payload: Buffer;
      if (mode < 0.5) {
        const flips = 1 + Math.floor(next() * 4);
        for (let flip = 0; flip < flips; flip++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
        payload = bytes;
      } else if (mode < 0.7) {
        payload = bytes.subarray(0, Math.floor(next() * bytes.length));
      } else if (mode < 0.85) {
        const at = 3 + Math.floor(next() * Math.min(bytes.length - 4, 120));
        bytes.writeUInt16BE(Math.floor(next() * 65536), at); // a length field or its neighbour
        payload = bytes;
      } else {
        payload = Buffer.from(Array.from({ length: Math.floor(next() * 600) }, () => Math.floor(next() * 256)));
        if (next() < 0.5 && payload.length > 6) payload.set([0x16, 0x03, 0x01, payload[3]!, payload[4]!, 0x01]);
      }
      const flags = pick([RULE_FLAG.web, RULE_FLAG.web, RULE_FLAG.web | RULE_FLAG.anyName, 0]);
      check(payload, flags, `case ${index}`);
    }
  });
});

// The hand-built ClientHello (used by lab probes and the kernel parser fuzz tests) and the packet builder produce
// well-formed bytes: lengths, record framing, GREASE rules, checksums and fragment layout.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'vitest';
import { EXTENSION_ECH, EXTENSION_SERVER_NAME, buildClientHello, parseClientHello } from '../../lab/clienthello.js';
import { buildUdpFragments, buildUdpPacket, internetChecksum } from '../../lab/packet.js';
import { ipBytes } from '../../src/model/ip.js';

/** Deterministic byte source, so failures reproduce. */
function seeded(seed: string): (size: number) => Buffer {
  let counter = 0;
  return (size) => {
    const out = Buffer.alloc(size);
    for (let filled = 0; filled < size; filled += 32) createHash('sha256').update(`${seed}:${counter++}`).digest().copy(out, filled);
    return out;
  };
}

/** Split a byte stream into its TLS records, checking each header's length. */
function records(stream: Buffer): { type: number; version: number; body: Buffer }[] {
  const out: { type: number; version: number; body: Buffer }[] = [];
  for (let at = 0; at < stream.length;) {
    const length = stream.readUInt16BE(at + 3);
    assert.ok(at + 5 + length <= stream.length, 'record overruns the stream');
    out.push({ type: stream[at] as number, version: stream.readUInt16BE(at + 1), body: stream.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

describe('buildClientHello', () => {
  test('one handshake record whose lengths add up, with the server name where the parser finds it', () => {
    const hello = buildClientHello({ serverName: 'api.openai.com', random: seeded('a') });
    const [record, ...rest] = records(hello);
    assert.deepEqual(rest, []);
    assert.equal(record?.type, 0x16);
    assert.equal(record?.version, 0x0301);
    assert.equal(record?.body[0], 0x01);
    assert.equal(record?.body.readUIntBE(1, 3), (record?.body.length ?? 0) - 4);
    const parsed = parseClientHello(hello);
    assert.ok(parsed !== null && parsed !== 'incomplete');
    assert.equal(parsed.serverName, 'api.openai.com');
    assert.equal(parsed.extensionTypes[0], EXTENSION_SERVER_NAME);
    assert.equal(parsed.hasEch, false);
  });

  test('no server name means no server_name extension at all', () => {
    const parsed = parseClientHello(buildClientHello({ serverName: null }));
    assert.ok(parsed !== null && parsed !== 'incomplete');
    assert.equal(parsed.serverName, null);
    assert.ok(!parsed.extensionTypes.includes(EXTENSION_SERVER_NAME));
  });

  test('GREASE extensions are distinct 0x?a?a values; ECH and last-position SNI are honoured', () => {
    for (let seed = 0; seed < 32; seed++) {
      const parsed = parseClientHello(
        buildClientHello({ serverName: 'outer.example', grease: true, ech: true, serverNameLast: true, random: seeded(String(seed)) }),
      );
      assert.ok(parsed !== null && parsed !== 'incomplete');
      const grease = parsed.extensionTypes.filter((type) => (type & 0x0f0f) === 0x0a0a && type >> 8 === (type & 0xff));
      assert.equal(grease.length, 2);
      assert.notEqual(grease[0], grease[1]);
      assert.equal(new Set(parsed.extensionTypes).size, parsed.extensionTypes.length, 'duplicate extension');
      assert.equal(parsed.hasEch, true);
      assert.ok(parsed.extensionTypes.includes(EXTENSION_ECH));
      assert.equal(parsed.serverName, 'outer.example');
      assert.equal(parsed.extensionTypes.at(-2), EXTENSION_SERVER_NAME, 'server_name sits just before the trailing GREASE');
    }
  });

  test('a large hello spans several records and still parses; a prefix is incomplete; non-TLS is rejected', () => {
    const hello = buildClientHello({ serverName: 'x.example', paddingBytes: 3000, maxRecordPayload: 1000, recordVersion: 0x0303 });
    const parts = records(hello);
    assert.equal(parts.length, 4);
    assert.ok(parts.every((part) => part.version === 0x0303 && part.body.length <= 1000));
    const parsed = parseClientHello(hello);
    assert.ok(parsed !== null && parsed !== 'incomplete');
    assert.equal(parsed.serverName, 'x.example');
    assert.equal(parseClientHello(hello.subarray(0, 1500)), 'incomplete');
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), null);
  });

  test('TLS 1.2 and lower set legacy_version and omit supported_versions', () => {
    const hello = buildClientHello({ serverName: 'a.example', tlsVersion: '1.0' });
    const body = records(hello)[0]?.body as Buffer;
    assert.equal(body.readUInt16BE(4), 0x0301);
    const parsed = parseClientHello(hello);
    assert.ok(parsed !== null && parsed !== 'incomplete');
    assert.ok(!parsed.extensionTypes.includes(0x002b));
  });

  test('bad inputs are refused with a reason', () => {
    assert.throws(() => buildClientHello({ serverName: '' }), /server name must be 1\.\.255 bytes/);
    assert.throws(() => buildClientHello({ maxRecordPayload: 0 }), /maxRecordPayload must be 1\.\.16384/);
    assert.throws(() => buildClientHello({ paddingBytes: 70_000 }), /exceeds its 2-byte length prefix/);
  });
});

describe('packet builder', () => {
  test('IPv6 addresses expand; IPv4 headers and UDP checksums verify', () => {
    assert.equal(ipBytes('fd00:eb:100::10').toString('hex'), 'fd0000eb010000000000000000000010');
    assert.equal(ipBytes('::1').toString('hex'), '00000000000000000000000000000001');
    const packet = buildUdpPacket({
      source: '198.18.10.2',
      destination: '198.18.100.10',
      sourcePort: 4000,
      destinationPort: 9999,
      payload: Buffer.from('hi!'),
    });
    assert.equal(internetChecksum(packet.subarray(0, 20)), 0);
    const pseudo = Buffer.concat([packet.subarray(12, 20), Buffer.from([0, 17]), packet.subarray(24, 26)]);
    assert.equal(internetChecksum(pseudo, packet.subarray(20)), 0);
  });

  test('IPv6 UDP checksum verifies over the pseudo-header', () => {
    const packet = buildUdpPacket({
      source: 'fd00:eb:10::2',
      destination: 'fd00:eb:100::10',
      sourcePort: 1,
      destinationPort: 2,
      payload: Buffer.from('x'),
    });
    const length = Buffer.alloc(4);
    length.writeUInt32BE(packet.length - 40);
    assert.equal(internetChecksum(packet.subarray(8, 40), length, Buffer.from([0, 0, 0, 17]), packet.subarray(40)), 0);
  });

  test('fragments carry 8-byte-aligned offsets that cover the datagram exactly once', () => {
    const spec = { source: '198.18.10.2', destination: '198.18.100.10', sourcePort: 1, destinationPort: 2, payload: Buffer.alloc(64, 1) };
    const v4 = buildUdpFragments(spec, 32, 77);
    assert.deepEqual(
      v4.map((f) => [f.readUInt16BE(4), f.readUInt16BE(6) & 0x1fff, f.readUInt16BE(6) >> 13, f.length - 20]),
      [
        [77, 0, 1, 32],
        [77, 4, 1, 32],
        [77, 8, 0, 8],
      ],
    );
    const v6 = buildUdpFragments({ ...spec, source: 'fd00:eb:10::2', destination: 'fd00:eb:100::10' }, 32, 77);
    assert.deepEqual(
      v6.map((f) => [f[6], f[40], f.readUInt16BE(42) & 0xfff8, f.readUInt16BE(42) & 1, f.readUInt32BE(44)]),
      [
        [44, 17, 0, 1, 77],
        [44, 17, 32, 1, 77],
        [44, 17, 64, 0, 77],
      ],
    );
    assert.throws(() => buildUdpFragments(spec, 4, 1), /must hold the UDP header/);
    assert.throws(() => buildUdpPacket({ ...spec, destination: 'fd00:eb:100::10' }), /differ in family/);
  });
});

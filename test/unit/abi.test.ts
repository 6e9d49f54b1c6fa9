// The TypeScript mirror of bpf/egressguard.h must match the compiled object's BTF exactly.
import * as assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'vitest';

import {
  LAYOUTS,
  addressToBytes,
  bytesToAddress,
  cidrToKeyParts,
  decodeEvent,
  encodeDomainKey,
  encodeRuleCidrKey,
  encodeSniLookupKey,
  reversedName,
} from '../../src/datapath/abi.js';
import { ruleIdFor } from '../../src/datapath/ids.js';
import { loadNative } from '../../src/datapath/native.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));

describe('ABI layouts against BTF', () => {
  const structNames = Object.keys(LAYOUTS);
  const btf = loadNative().btfLayout(objectPath, structNames);

  for (const [name, mirror] of Object.entries(LAYOUTS)) {
    test(`struct ${name}: size and every member offset`, () => {
      const kernel = btf[name];
      assert.ok(kernel, `struct ${name} missing from ${objectPath}`);
      assert.equal(mirror.size, kernel.size, `sizeof(struct ${name})`);
      const kernelMembers = Object.fromEntries(kernel.members.map((m) => [m.name, { offset: m.offset, size: m.size }]));
      assert.deepEqual(mirror.members, kernelMembers);
    });
  }

  test('a struct the object lacks is reported by name', () => {
    assert.throws(() => loadNative().btfLayout(objectPath, ['eg_no_such_struct']), /eg_no_such_struct/);
  });
});

describe('addresses', () => {
  test('IPv4 is stored IPv4-mapped and round-trips', () => {
    assert.equal(addressToBytes('198.18.0.1').toString('hex'), '00000000000000000000ffffc6120001');
    assert.equal(bytesToAddress(addressToBytes('198.18.0.1')), '198.18.0.1');
  });

  test('IPv6 forms parse and print canonically', () => {
    assert.equal(addressToBytes('fd00:eb::1').toString('hex'), 'fd0000eb000000000000000000000001');
    assert.equal(bytesToAddress(addressToBytes('fd00:00eb:0:0:0:0:0:1')), 'fd00:eb::1');
    assert.equal(bytesToAddress(addressToBytes('::')), '::');
    assert.equal(bytesToAddress(addressToBytes('1:0:0:2:0:0:0:3')), '1:0:0:2::3');
    assert.equal(bytesToAddress(addressToBytes('::ffff:198.18.0.9')), '198.18.0.9');
  });

  test('non-addresses are rejected', () => {
    assert.throws(() => addressToBytes('198.18.0.256'), /not an IP address/);
    assert.throws(() => addressToBytes('example.com'), /not an IP address/);
    assert.throws(() => addressToBytes('fe80::1%eth0'), /not an IP address/);
  });

  test('CIDR keys clear host bits and count mapped prefix bits', () => {
    const v4 = cidrToKeyParts({ family: 4, address: '198.18.7.9', prefix: 16 });
    assert.equal(v4.prefixBits, 112);
    assert.equal(bytesToAddress(v4.addr), '198.18.0.0');
    const v6 = cidrToKeyParts({ family: 6, address: 'fd00:eb:1::5', prefix: 48 });
    assert.equal(v6.prefixBits, 48);
    assert.equal(bytesToAddress(v6.addr), 'fd00:eb:1::');
    assert.throws(() => cidrToKeyParts({ family: 4, address: '198.18.0.0', prefix: 33 }), /invalid prefix/);
    assert.throws(() => cidrToKeyParts({ family: 6, address: '198.18.0.0', prefix: 8 }), /is not IPv6/);
  });

  test('per-rule CIDR keys cover the fixed workload and rule fields', () => {
    const key = encodeRuleCidrKey(7, 65, { family: 4, address: '198.18.0.0', prefix: 24 });
    assert.equal(key.readUInt32LE(LAYOUTS.eg_rule_cidr_key.members.prefixlen.offset), 64 + 96 + 24);
    assert.equal(key.readUInt32LE(LAYOUTS.eg_rule_cidr_key.members.workload_id.offset), 7);
    assert.equal(key.readUInt32LE(LAYOUTS.eg_rule_cidr_key.members.rule_ref.offset), 65);
  });
});

describe('events', () => {
  test('a record decodes field by field', () => {
    const m = LAYOUTS.eg_event.members;
    const record = Buffer.alloc(LAYOUTS.eg_event.size);
    record.writeBigUInt64LE(123n, m.timestamp_ns.offset);
    record.writeBigUInt64LE(456n, m.cgroup_id.offset);
    record.writeUInt32LE(3, m.workload_id.offset);
    record.writeUInt32LE(0xdeadbeef, m.rule_id.offset);
    addressToBytes('fd00:eb::2').copy(record, m.addr.offset);
    record.writeUInt16LE(443, m.port.offset);
    record.writeUInt8(6, m.protocol.offset);
    record.writeUInt8(6, m.family.offset);
    record.writeUInt8(2, m.verdict.offset);
    record.writeUInt8(2, m.tier.offset);
    record.writeUInt8(1, m.layer.offset);
    record.writeUInt32LE(4242, m.pid.offset);
    record.write('curl', m.comm.offset);
    assert.deepEqual(decodeEvent(record), {
      timestampNs: 123n,
      cgroupId: 456n,
      workloadId: 3,
      ruleId: 0xdeadbeef,
      ip: 'fd00:eb::2',
      family: 6,
      port: 443,
      protocol: 6,
      verdict: 'would-deny',
      tier: 2,
      layer: 'connect',
      hook: 0,
      pid: 4242,
      comm: 'curl',
      sni: null,
    });
  });

  test('records of the wrong size or with unknown enums are rejected', () => {
    assert.throws(() => decodeEvent(Buffer.alloc(10)), /10 bytes/);
    const record = Buffer.alloc(LAYOUTS.eg_event.size);
    record.writeUInt8(9, LAYOUTS.eg_event.members.verdict.offset);
    assert.throws(() => decodeEvent(record), /unknown verdict/);
  });
});

describe('rule ids', () => {
  test('stable, distinct and never zero', () => {
    assert.equal(ruleIdFor('obot-mcp', 'p', 'allow'), ruleIdFor('obot-mcp', 'p', 'allow'));
    assert.notEqual(ruleIdFor('obot-mcp', 'p', 'allow'), ruleIdFor('obot-mcp', 'p', 'deny'));
    assert.notEqual(ruleIdFor('a', 'b/c', 'd'), 0);
    // FNV-1a 32 of "a/b/c" (reference value computed independently).
    assert.equal(ruleIdFor('a', 'b', 'c'), 0x477dfb6b);
  });
});

describe('webGroup domain keys', () => {
  /** What the kernel's LPM lookup does: the stored prefix (after prefixlen) must start the query. */
  function matches(pattern: Buffer | null, query: Buffer | null): boolean {
    if (pattern === null || query === null) return false;
    const bits = pattern.readUInt32LE(0);
    return bits % 8 === 0 && bits <= query.readUInt32LE(0) && pattern.subarray(4, 4 + bits / 8).equals(query.subarray(4, 4 + bits / 8));
  }
  const wildcard = encodeDomainKey(9, { kind: 'wildcard', suffix: 'example.com' });
  const exact = encodeDomainKey(9, { kind: 'exact', name: 'api.example.com' });

  test('a wildcard matches one and two labels, never the apex', () => {
    assert.equal(matches(wildcard, encodeSniLookupKey(9, 'api.example.com')), true);
    assert.equal(matches(wildcard, encodeSniLookupKey(9, 'a.b.example.com')), true);
    assert.equal(matches(wildcard, encodeSniLookupKey(9, 'example.com')), false);
    assert.equal(matches(wildcard, encodeSniLookupKey(9, 'badexample.com')), false);
  });

  test('an exact name matches only itself, case-insensitively and with one trailing dot', () => {
    assert.equal(matches(exact, encodeSniLookupKey(9, 'API.Example.COM.')), true);
    assert.equal(matches(exact, encodeSniLookupKey(9, 'x.api.example.com')), false);
    assert.equal(matches(exact, encodeSniLookupKey(9, 'api.example.co')), false);
    assert.equal(matches(exact, encodeSniLookupKey(10, 'api.example.com')), false, 'other rule');
  });

  test('keys are the reversed name; invalid names are refused with the reason', () => {
    assert.equal(reversedName('Api.Example.com.'), 'moc.elpmaxe.ipa');
    assert.equal(exact!.subarray(8, 8 + 16).toString('latin1'), 'moc.elpmaxe.ipa\0');
    assert.equal(exact!.readUInt32LE(0), 32 + 8 * 16);
    assert.equal(encodeDomainKey(9, { kind: 'any' }), null);
    assert.throws(() => reversedName('a..b'), /empty label/);
    assert.throws(() => reversedName('a b.com'), /contains " "/);
    assert.throws(() => reversedName(`${'a'.repeat(252)}`), /at most 251/);
    assert.equal(encodeSniLookupKey(9, 'bad name'), null);
  });
});

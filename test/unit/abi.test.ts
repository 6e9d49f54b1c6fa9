// The TypeScript mirror of bpf/egressguard.h must match the compiled objects' BTF exactly: struct
// layouts and enum values. The pinned-state fingerprint makes a layout change without an
// EG_ABI_VERSION bump fail here.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'vitest';

import {
  ACTION,
  CLOSING,
  APPROVAL_KIND,
  CONFIG_FLAG,
  EG_ABI_VERSION,
  EVENT_KIND,
  EVIDENCE,
  HOOK,
  LAYERS,
  LAYOUTS,
  PROBE,
  REASONS,
  RULE_FLAG,
  STAT,
  STAT_COUNT,
  TIER,
  VERDICTS,
  WORKLOAD_FLAG,
  addressToBytes,
  bytesToAddress,
  cidrToKeyParts,
  decodeEvent,
  encodeDomainKey,
  encodeRuleCidrKey,
  encodeSniLookupKey,
  reversedName,
} from '../../src/datapath/abi.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { loadNative } from '../../src/datapath/native.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
const probeObjectPath = fileURLToPath(new URL('../../../bpf/tests/hello_probe.bpf.o', import.meta.url));

/** Structs only the test probe (bpf/tests/hello_probe.bpf.c) uses: checked against its object. */
const PROBE_STRUCTS = new Set(['eg_probe_header']);

/** Every enum shared with TypeScript: C enumerator -> the value src/datapath/abi.ts uses for it. */
const ENUMS: Record<string, Record<string, number>> = {
  eg_abi: { EG_ABI_VERSION },
  eg_action: { EG_ACTION_DENY: ACTION.deny, EG_ACTION_PERMIT: ACTION.permit },
  eg_verdict: {
    EG_VERDICT_DENIED: VERDICTS.indexOf('denied'),
    EG_VERDICT_PERMITTED: VERDICTS.indexOf('permitted'),
    EG_VERDICT_WOULD_DENY: VERDICTS.indexOf('would-deny'),
    EG_VERDICT_WOULD_PERMIT: VERDICTS.indexOf('would-permit'),
  },
  eg_tier: {
    EG_TIER_DENY_LIST: TIER.denyList,
    EG_TIER_BASELINE: TIER.baseline,
    EG_TIER_POLICY: TIER.policy,
    EG_TIER_DEFAULT: TIER.default,
  },
  eg_layer: Object.fromEntries(Object.entries(LAYERS).map(([value, layer]) => [`EG_LAYER_${layer.toUpperCase()}`, Number(value)])),
  eg_reason: {
    EG_REASON_NONE: REASONS.indexOf(null),
    EG_REASON_FORGED_SOURCE: REASONS.indexOf('forged-source'),
    EG_REASON_SOURCE_ROUTED: REASONS.indexOf('source-routed'),
    EG_REASON_MALFORMED: REASONS.indexOf('malformed'),
    EG_REASON_ORPHAN_FRAGMENT: REASONS.indexOf('orphan-fragment'),
    EG_REASON_NOT_AS_JUDGED: REASONS.indexOf('not-as-judged'),
    EG_REASON_WITHDRAWN: REASONS.indexOf('withdrawn-no-sock-destroy'),
    EG_REASON_NOT_AS_SENT: REASONS.indexOf('not-as-sent'),
  },
  eg_hook: {
    EG_HOOK_CONNECT4: HOOK.connect4,
    EG_HOOK_CONNECT6: HOOK.connect6,
    EG_HOOK_SENDMSG4: HOOK.sendmsg4,
    EG_HOOK_SENDMSG6: HOOK.sendmsg6,
    EG_HOOK_SKB_EGRESS: HOOK.skbEgress,
    EG_HOOK_TC_INGRESS: HOOK.tcIngress,
    EG_HOOK_SOCKET_ITER: HOOK.socketIter,
    EG_HOOK_SOCK_RELEASE: HOOK.sockRelease,
  },
  eg_event_kind: { EG_KIND_DECISION: EVENT_KIND.decision, EG_KIND_EVIDENCE: EVENT_KIND.evidence },
  eg_evidence: {
    EG_EVIDENCE_HELLO: EVIDENCE.hello,
    EG_EVIDENCE_HTTP: EVIDENCE.http,
    EG_EVIDENCE_OTHER: EVIDENCE.other,
    EG_EVIDENCE_NO_HELLO: EVIDENCE.noHello,
    EG_EVIDENCE_ECH: EVIDENCE.ech,
  },
  eg_rule_flag: {
    EG_RULE_HAS_CIDR: RULE_FLAG.hasCidr,
    EG_RULE_ANY_DEST: RULE_FLAG.anyDestination,
    EG_RULE_WEB: RULE_FLAG.web,
    EG_RULE_ANY_NAME: RULE_FLAG.anyName,
    EG_RULE_WATCH: RULE_FLAG.watch,
    EG_RULE_LOG: RULE_FLAG.log,
    EG_RULE_TLS_REQUIRED: RULE_FLAG.tlsRequired,
  },
  eg_stat: {
    EG_STAT_EVENTS_LOST: STAT.eventsLost,
    EG_STAT_PERMITTED: STAT.permitted,
    EG_STAT_DENIED: STAT.denied,
    EG_STAT_DNS_STEERED: STAT.dnsSteered,
    EG_STAT_EVENTS_SUPPRESSED: STAT.eventsSuppressed,
    EG_STAT_FLOWS_ENDED: STAT.flowsEnded,
    EG_STAT_FLOWS_REFUSED: STAT.flowsRefused,
    EG_STAT_CANDIDATE_OVERFLOWS: STAT.candidateOverflows,
    EG_STAT_EVIDENCE_READ: STAT.evidenceRead,
    EG_STAT_FLIGHTS_REFUSED: STAT.flightsRefused,
    EG_STAT_COUNT: STAT_COUNT,
  },
  eg_config_flag: {
    EG_CONFIG_PROXY_V4: CONFIG_FLAG.proxyV4,
    EG_CONFIG_PROXY_V6: CONFIG_FLAG.proxyV6,
    EG_CONFIG_TLS: CONFIG_FLAG.tls,
    EG_CONFIG_BACKSTOP: CONFIG_FLAG.backstop,
    EG_CONFIG_DENY_ECH: CONFIG_FLAG.denyEch,
  },
  eg_workload_flag: { EG_WORKLOAD_HAS_ADDRESSES: WORKLOAD_FLAG.hasAddresses },
  eg_closing: { EG_CLOSING_WORKLOAD: CLOSING.workload, EG_CLOSING_PEER: CLOSING.peer },
  eg_approval_kind: {
    EG_APPROVED_FLOW: APPROVAL_KIND.flow,
    EG_APPROVED_HANDSHAKE: APPROVAL_KIND.handshake,
    EG_APPROVED_JUDGED: APPROVAL_KIND.judged,
  },
};

/** The same for enums only the test probe uses. */
const PROBE_ENUMS: Record<string, Record<string, number>> = {
  eg_probe_result: {
    EG_PROBE_MATCH: PROBE.match,
    EG_PROBE_INCOMPLETE: PROBE.incomplete,
    EG_PROBE_VALID: PROBE.valid,
    EG_PROBE_SNI: PROBE.sni,
    EG_PROBE_ECH: PROBE.ech,
  },
};

/**
 * What pinned state depends on: every map definition of the production object, every shared
 * struct layout and enum value. Recorded with the version it belongs to; when it changes, bump
 * EG_ABI_VERSION (bpf/egressguard.h and src/datapath/abi.ts) and record the new pair here.
 */
const PINNED_ABI = { version: 9, fingerprint: 'af2d6e1a64a01d7b286bfe0bfd7969577ca2b0825f51c2467211284bbb75e2cd' };

function pinnedAbiFingerprint(): string {
  const native = loadNative();
  const object = new native.BpfObject(objectPath);
  let maps;
  try {
    maps = object.mapDefinitions().sort((a, b) => a.name.localeCompare(b.name));
  } finally {
    object.close();
  }
  const structNames = Object.keys(LAYOUTS)
    .filter((name) => !PROBE_STRUCTS.has(name))
    .sort();
  const layouts = native.btfLayout(objectPath, structNames);
  const enums = native.btfEnums(objectPath, Object.keys(ENUMS).sort());
  return createHash('sha256')
    .update(JSON.stringify({ maps, layouts: structNames.map((name) => [name, layouts[name]]), enums }))
    .digest('hex');
}

describe('ABI layouts against BTF', () => {
  const structNames = Object.keys(LAYOUTS).filter((name) => !PROBE_STRUCTS.has(name));
  const btf = {
    ...loadNative().btfLayout(objectPath, structNames),
    ...loadNative().btfLayout(probeObjectPath, [...PROBE_STRUCTS]),
  };

  for (const [name, mirror] of Object.entries(LAYOUTS)) {
    test(`struct ${name}: size and every member offset`, () => {
      const kernel = btf[name];
      assert.ok(kernel, `struct ${name} missing from its object`);
      assert.equal(mirror.size, kernel.size, `sizeof(struct ${name})`);
      const kernelMembers = Object.fromEntries(kernel.members.map((m) => [m.name, { offset: m.offset, size: m.size }]));
      assert.deepEqual(mirror.members, kernelMembers);
    });
  }

  test('a struct the object lacks is reported by name', () => {
    assert.throws(() => loadNative().btfLayout(objectPath, ['eg_no_such_struct']), /eg_no_such_struct/);
  });
});

describe('ABI enum values against BTF', () => {
  for (const [path, enums] of [
    [objectPath, ENUMS],
    [probeObjectPath, PROBE_ENUMS],
  ] as const) {
    const btf = loadNative().btfEnums(path, Object.keys(enums));
    for (const [name, mirror] of Object.entries(enums)) {
      test(`enum ${name}: every enumerator has the value TypeScript uses`, () => {
        assert.deepEqual(mirror, btf[name], `enum ${name} in ${path} (a new enumerator needs its TypeScript mirror too)`);
      });
    }
  }

  test('an enum the object lacks is reported by name', () => {
    assert.throws(() => loadNative().btfEnums(objectPath, ['eg_no_such_enum']), /eg_no_such_enum/);
  });

  test('the production object no longer carries the test probe', () => {
    const object = new (loadNative().BpfObject)(objectPath);
    try {
      assert.deepEqual(
        object.mapDefinitions().filter((map) => map.name === 'eg_probe_hello'),
        [],
      );
      assert.throws(() => object.program('eg_hello_probe'), /eg_hello_probe/);
    } finally {
      object.close();
    }
  });
});

describe('pinned-state ABI version', () => {
  test('the recorded version is the one the header and the agent speak', () => {
    assert.equal(PINNED_ABI.version, EG_ABI_VERSION);
  });

  test('the pinned-state fingerprint changes only with an EG_ABI_VERSION bump', () => {
    const fingerprint = pinnedAbiFingerprint();
    assert.equal(
      fingerprint,
      PINNED_ABI.fingerprint,
      `pinned maps, layouts or enum values changed (fingerprint ${fingerprint}): bump EG_ABI_VERSION in bpf/egressguard.h and src/datapath/abi.ts, then record { version, fingerprint } in PINNED_ABI`,
    );
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
    record.writeUInt16LE(65535, m.suppressed.offset);
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
      suppressed: 65535,
      evidence: false,
    });
  });

  test('an evidence record names what the flow sent first', () => {
    const m = LAYOUTS.eg_event.members;
    const record = Buffer.alloc(LAYOUTS.eg_event.size);
    addressToBytes('198.18.100.10').copy(record, m.addr.offset);
    record.writeUInt8(1, m.verdict.offset);
    record.writeUInt8(3, m.tier.offset);
    record.writeUInt8(3, m.layer.offset);
    record.writeUInt8(HOOK.skbEgress, m.hook.offset);
    record.writeUInt8(EVENT_KIND.evidence, m.kind.offset);
    record.writeUInt8(EVIDENCE.hello | EVIDENCE.ech, m.evidence.offset);
    record.writeUInt16LE(12, m.sni_len.offset);
    record.write('evil.example', m.sni.offset, 'latin1');
    const event = decodeEvent(record);
    assert.deepEqual([event.evidence, event.firstFlight, event.ech, event.sni], [true, 'client-hello', true, 'evil.example']);
    record.writeUInt8(EVIDENCE.noHello, m.evidence.offset);
    record.writeUInt16LE(0, m.sni_len.offset);
    record.writeUInt8(HOOK.sockRelease, m.hook.offset);
    assert.deepEqual([decodeEvent(record).firstFlight, decodeEvent(record).sni, decodeEvent(record).ech], ['none', null, undefined]);
  });

  test('records of the wrong size or with unknown enums are rejected', () => {
    assert.throws(() => decodeEvent(Buffer.alloc(10)), /10 bytes/);
    const record = Buffer.alloc(LAYOUTS.eg_event.size);
    record.writeUInt8(1, LAYOUTS.eg_event.members.layer.offset);
    record.writeUInt8(9, LAYOUTS.eg_event.members.kind.offset);
    assert.throws(() => decodeEvent(record), /unknown kind 9/);
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

import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { AddressCap } from '../../src/dns/address-cap.js';
import { extractAddresses } from '../../src/dns/answers.js';
import { kernelLifetimeSeconds, learnedTtlSeconds } from '../../src/dns/lifetime.js';
import { refreshPlan } from '../../src/dns/resolver.js';
import { capAnswerTtls } from '../../src/dns/wire.js';

const bounds = (minTtlSeconds: number, maxTtlSeconds = 3600, graceSeconds = 30) => ({ minTtlSeconds, maxTtlSeconds, graceSeconds });

/** Round-trip through the wire so the test sees what the proxy sees. */
function response(answers: dnsPacket.Answer[]): dnsPacket.DecodedPacket {
  return dnsPacket.decode(dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'chat.openai.com' }], answers }));
}

describe('extractAddresses', () => {
  test('follows the CNAME chain from the query name and takes the minimum TTL over the chain', () => {
    const packet = response([
      { type: 'CNAME', name: 'chat.openai.com', ttl: 300, data: 'edge.cdn.example' },
      { type: 'CNAME', name: 'edge.cdn.example', ttl: 60, data: 'pop7.cdn.example' },
      { type: 'A', name: 'pop7.cdn.example', ttl: 120, data: '198.18.100.10' },
      { type: 'AAAA', name: 'pop7.cdn.example', ttl: 90, data: 'fd00:eb:100::10' },
    ]);
    assert.deepEqual(extractAddresses(packet, 'chat.openai.com'), { addresses: ['198.18.100.10', 'fd00:eb:100::10'], ttlSeconds: 60 });
  });

  test('ignores records for owner names outside the chain, and their TTLs', () => {
    const packet = response([
      { type: 'A', name: 'chat.openai.com', ttl: 200, data: '198.18.100.10' },
      { type: 'A', name: 'attacker.example', ttl: 1, data: '198.18.66.66' },
      { type: 'CNAME', name: 'other.example', ttl: 1, data: 'chat.openai.com' },
    ]);
    assert.deepEqual(extractAddresses(packet, 'chat.openai.com'), { addresses: ['198.18.100.10'], ttlSeconds: 200 });
  });

  test('matches owner names case-insensitively and with a trailing dot in the query', () => {
    const packet = response([{ type: 'A', name: 'CHAT.OpenAI.com', ttl: 30, data: '198.18.100.11' }]);
    assert.deepEqual(extractAddresses(packet, 'chat.openai.com.').addresses, ['198.18.100.11']);
  });

  test('a CNAME loop or a chain that leads nowhere yields no addresses', () => {
    const loop = response([
      { type: 'CNAME', name: 'chat.openai.com', ttl: 30, data: 'b.example' },
      { type: 'CNAME', name: 'b.example', ttl: 30, data: 'chat.openai.com' },
    ]);
    assert.deepEqual(extractAddresses(loop, 'chat.openai.com'), { addresses: [], ttlSeconds: null });
    const dangling = response([{ type: 'CNAME', name: 'chat.openai.com', ttl: 30, data: 'gone.example' }]);
    assert.deepEqual(extractAddresses(dangling, 'chat.openai.com'), { addresses: [], ttlSeconds: null });
  });

  test('deduplicates repeated addresses', () => {
    const packet = response([
      { type: 'A', name: 'chat.openai.com', ttl: 30, data: '198.18.100.10' },
      { type: 'A', name: 'chat.openai.com', ttl: 20, data: '198.18.100.10' },
    ]);
    assert.deepEqual(extractAddresses(packet, 'chat.openai.com'), { addresses: ['198.18.100.10'], ttlSeconds: 20 });
  });
});

describe('TTL handling', () => {
  test('learned TTL is the answer TTL raised to the minimum', () => {
    assert.equal(learnedTtlSeconds(0, bounds(5)), 5);
    assert.equal(learnedTtlSeconds(300, bounds(5)), 300);
  });

  test('learned TTL is lowered to the maximum, and the kernel keeps it for the TTL plus grace', () => {
    assert.equal(learnedTtlSeconds(86_400, bounds(5)), 3600);
    assert.equal(kernelLifetimeSeconds(86_400, bounds(5)), 3630);
    assert.equal(kernelLifetimeSeconds(0, bounds(5)), 35);
    assert.equal(kernelLifetimeSeconds(120, bounds(5, 3600, 0)), 120);
  });

  test('refresh happens at ~80% of the TTL within [minTtl, maxRefresh] and learned entries outlive the next refresh', () => {
    assert.deepEqual(refreshPlan(100, bounds(5), 300), { refreshAfterSeconds: 80, learnTtlSeconds: 100 });
    assert.deepEqual(refreshPlan(3600, bounds(5), 300), { refreshAfterSeconds: 300, learnTtlSeconds: 3600 });
    const tiny = refreshPlan(0, bounds(5), 300);
    assert.equal(tiny.refreshAfterSeconds, 5);
    assert.ok(tiny.learnTtlSeconds > tiny.refreshAfterSeconds);
    const noMinimum = refreshPlan(0, bounds(0), 300);
    assert.equal(noMinimum.refreshAfterSeconds, 1);
    assert.ok(noMinimum.learnTtlSeconds > noMinimum.refreshAfterSeconds);
  });
});

describe('AddressCap', () => {
  test('admits up to the cap per (workload, name), refreshes known addresses, frees slots on expiry', () => {
    const cap = new AddressCap(2);
    assert.deepEqual(cap.admit(1, 'a.example', ['198.18.0.1', '198.18.0.2', '198.18.0.3'], 10, 0), {
      admitted: ['198.18.0.1', '198.18.0.2'],
      rejected: ['198.18.0.3'],
    });
    assert.deepEqual(cap.admit(1, 'a.example', ['198.18.0.2'], 10, 1000), { admitted: ['198.18.0.2'], rejected: [] });
    assert.deepEqual(cap.admit(2, 'a.example', ['198.18.0.3'], 10, 1000).admitted, ['198.18.0.3'], 'other workloads have their own cap');
    assert.deepEqual(cap.admit(1, 'b.example', ['198.18.0.3'], 10, 1000).admitted, ['198.18.0.3'], 'other names have their own cap');
    // 198.18.0.1 expires at 10 s, 198.18.0.2 was refreshed to 11 s.
    assert.deepEqual(cap.admit(1, 'a.example', ['198.18.0.4', '198.18.0.5'], 10, 10_500), {
      admitted: ['198.18.0.4'],
      rejected: ['198.18.0.5'],
    });
  });

  test('rejects a non-positive cap with a message naming the setting', () => {
    assert.throws(() => new AddressCap(0), /maxIpsPerName/);
  });
});

describe('answer TTLs released to the workload', () => {
  const ttlOf = (record: dnsPacket.Answer | undefined): number | undefined =>
    record !== undefined && 'ttl' in record ? record.ttl : undefined;
  const message = (answers: dnsPacket.Answer[], additionals: dnsPacket.Answer[] = []): Buffer =>
    dnsPacket.encode({
      type: 'response',
      id: 7,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'A', name: 'api.example.com' }],
      answers,
      additionals,
    });

  test('answer records above the cap are lowered to it; shorter ones and every other byte are kept', () => {
    const original = message(
      [
        { type: 'CNAME', name: 'api.example.com', ttl: 86_400, data: 'edge.example.net' },
        { type: 'A', name: 'edge.example.net', ttl: 86_400, data: '198.18.0.1' },
        { type: 'AAAA', name: 'edge.example.net', ttl: 20, data: 'fd00:eb::1' },
      ],
      [
        {
          type: 'OPT',
          name: '.',
          udpPayloadSize: 1232,
          extendedRcode: 0,
          ednsVersion: 0,
          flags: dnsPacket.DNSSEC_OK,
          flag_do: true,
          options: [],
        },
      ],
    );
    const capped = capAnswerTtls(original, 3600);
    assert.ok(capped !== null);
    assert.equal(capped.length, original.length);
    const decoded = dnsPacket.decode(capped);
    assert.deepEqual(
      decoded.answers?.map((record) => [record.type, ttlOf(record)]),
      [
        ['CNAME', 3600],
        ['A', 3600],
        ['AAAA', 20],
      ],
    );
    const opt = decoded.additionals?.[0] as { flags?: number } | undefined;
    assert.equal(opt?.flags, dnsPacket.DNSSEC_OK, 'the OPT pseudo-record (whose TTL field holds flags) is untouched');
    assert.equal(ttlOf(dnsPacket.decode(original).answers?.[0]), 86_400, 'the input is not modified');
  });

  test('a message that cannot be walked is refused rather than relayed uncapped', () => {
    const original = message([{ type: 'A', name: 'api.example.com', ttl: 86_400, data: '198.18.0.1' }]);
    assert.equal(capAnswerTtls(original.subarray(0, original.length - 6), 60), null);
    assert.equal(capAnswerTtls(Buffer.alloc(5), 60), null);
  });
});

import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { AddressCap } from '../../src/dns/address-cap.js';
import { extractAddresses, learnTtlSeconds } from '../../src/dns/answers.js';
import { refreshPlan } from '../../src/dns/resolver.js';

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
    assert.equal(learnTtlSeconds(0, 5), 5);
    assert.equal(learnTtlSeconds(300, 5), 300);
  });

  test('refresh happens at ~80% of the TTL within [minTtl, maxRefresh] and learned entries outlive the next refresh', () => {
    assert.deepEqual(refreshPlan(100, 5, 300), { refreshAfterSeconds: 80, learnTtlSeconds: 100 });
    assert.deepEqual(refreshPlan(3600, 5, 300), { refreshAfterSeconds: 300, learnTtlSeconds: 3600 });
    const tiny = refreshPlan(0, 5, 300);
    assert.equal(tiny.refreshAfterSeconds, 5);
    assert.ok(tiny.learnTtlSeconds > tiny.refreshAfterSeconds);
    const noMinimum = refreshPlan(0, 0, 300);
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

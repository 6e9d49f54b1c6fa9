import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { LearnedAddresses } from '../../src/agent/learned.js';
import { FakeDatapath } from '../support/fake-datapath.js';

const lifetime = { minTtlSeconds: 5, maxTtlSeconds: 3600, graceSeconds: 30 };

function secondsLeft(datapath: FakeDatapath): number[] {
  const now = process.hrtime.bigint();
  // Expiries are rounded up to a whole second: up to one more.
  return datapath.learned().map((e) => Math.floor(Number(e.expiresAtNs - now) / 1e9));
}

describe('LearnedAddresses', () => {
  test('every address is learned for every rule, for the TTL plus the grace period', () => {
    const datapath = new FakeDatapath();
    new LearnedAddresses(datapath, lifetime).learn(3, [7, 8], ['203.0.113.1', '2001:db8::1'], 60);
    assert.deepEqual(
      datapath.learned().map((e) => `${e.workloadId}/${e.ruleId}/${e.ip}`),
      ['3/7/203.0.113.1', '3/7/2001:db8::1', '3/8/203.0.113.1', '3/8/2001:db8::1'],
    );
    assert.deepEqual(new Set(secondsLeft(datapath)), new Set([90]));
    // On a whole second of the monotonic clock, so the same answer learned again within it changes nothing.
    assert.ok(datapath.learned().every((e) => e.expiresAtNs % 1_000_000_000n === 0n));
  });

  test('the TTL is clamped both ways: a huge TTL cannot make an address permanent, a zero TTL still holds', () => {
    const huge = new FakeDatapath();
    new LearnedAddresses(huge, lifetime).learn(1, [1], ['203.0.113.1'], 86_400);
    assert.deepEqual(secondsLeft(huge), [3630]);
    const zero = new FakeDatapath();
    new LearnedAddresses(zero, lifetime).learn(1, [1], ['203.0.113.1'], 0);
    assert.deepEqual(secondsLeft(zero), [35]);
  });

  test('nothing is written without rules or addresses; expire() removes what expired', () => {
    const datapath = new FakeDatapath();
    const learned = new LearnedAddresses(datapath, lifetime);
    learned.learn(1, [], ['203.0.113.1'], 60);
    learned.learn(1, [1], [], 60);
    assert.deepEqual(datapath.learned(), []);
    datapath.learn([{ workloadId: 1, ruleId: 1, ip: '203.0.113.9', expiresAtNs: 1n }]);
    learned.learn(1, [1], ['203.0.113.1'], 60);
    assert.equal(learned.expire(), 1);
    assert.deepEqual(
      datapath.learned().map((e) => e.ip),
      ['203.0.113.1'],
    );
  });
});

import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import { ConfirmedLearning } from '../../src/dns/confirmed-learning.js';

describe('ConfirmedLearning (what the proxy worker may release without asking the main thread)', () => {
  test('covers an answer only when every rule and address of the workload is held at least as long as needed', () => {
    const confirmed = new ConfirmedLearning();
    assert.equal(confirmed.covers(7, [101], ['198.18.100.10'], 1n), false, 'nothing is assumed');
    confirmed.record(7, [101, 102], ['198.18.100.10', 'fd00:eb:100::10'], 5000n);
    assert.equal(confirmed.covers(7, [101, 102], ['198.18.100.10', 'fd00:eb:100::10'], 5000n), true);
    assert.equal(confirmed.covers(7, [101], ['198.18.100.10'], 5001n), false, 'held shorter than needed');
    assert.equal(confirmed.covers(8, [101], ['198.18.100.10'], 1n), false, 'another workload');
    assert.equal(confirmed.covers(7, [103], ['198.18.100.10'], 1n), false, 'another rule');
    assert.equal(confirmed.covers(7, [101], ['198.18.100.10', '198.18.100.11'], 1n), false, 'one address not held');
  });

  test('a shorter confirmation never lowers a longer one; clear() forgets everything', () => {
    const confirmed = new ConfirmedLearning();
    confirmed.record(7, [101], ['198.18.100.10'], 9000n);
    confirmed.record(7, [101], ['198.18.100.10'], 3000n);
    assert.equal(confirmed.covers(7, [101], ['198.18.100.10'], 9000n), true);
    confirmed.clear();
    assert.equal(confirmed.covers(7, [101], ['198.18.100.10'], 1n), false);
    assert.equal(confirmed.size, 0);
  });

  test('memory stays bounded: past 100,000 entries it starts over', () => {
    const confirmed = new ConfirmedLearning();
    const ips = Array.from({ length: 1000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    for (let rule = 0; rule < 100; rule++) confirmed.record(7, [rule], ips, 1000n);
    assert.equal(confirmed.size, 100_000);
    confirmed.record(7, [500], ['198.18.200.1'], 1000n);
    assert.equal(confirmed.size, 1);
    assert.equal(confirmed.covers(7, [500], ['198.18.200.1'], 1000n), true);
  });
});

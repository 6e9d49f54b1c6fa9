// The in-flight and TCP quotas the DNS proxy's workers share: one node cap and one share per owner over every worker,
// and what a worker that ended held given back.
import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import { quotaBuffer, quotaOwner, releaseWorker, SharedQuota } from '../../src/dns/shared-quota.js';

describe('SharedQuota', () => {
  const podA = quotaOwner(7, '198.18.0.10');
  const podB = quotaOwner(8, '198.18.0.11');

  test('two workers on one buffer draw on one node cap and one share per owner', () => {
    const buffer = quotaBuffer(2);
    const [first, second] = [new SharedQuota(buffer, 0, 4, 3), new SharedQuota(buffer, 1, 4, 3)];
    assert.deepEqual([first.take(podA), second.take(podA), first.take(podA)], ['taken', 'taken', 'taken']);
    assert.equal(second.take(podA), 'share-full', "the owner's share counts both workers' units");
    assert.equal(second.take(podB), 'taken');
    assert.equal(first.take(podB), 'node-full', "the node cap counts both workers' units");
    second.give(podA);
    assert.equal(first.take(podB), 'taken', 'a unit given back by one worker is free for the other');
  });

  test('a worker that ended gives back what it held, and only that', () => {
    const buffer = quotaBuffer(2);
    const [first, second] = [new SharedQuota(buffer, 0, 4, 4), new SharedQuota(buffer, 1, 4, 4)];
    for (let i = 0; i < 3; i += 1) assert.equal(first.take(podA), 'taken');
    assert.equal(second.take(podA), 'taken');
    assert.equal(second.take(podA), 'node-full');
    releaseWorker(buffer, 0);
    const next = new SharedQuota(buffer, 0, 4, 4);
    assert.deepEqual([next.take(podA), next.take(podA), next.take(podA)], ['taken', 'taken', 'taken']);
    assert.equal(next.take(podA), 'node-full', "the other worker's unit is still held");
  });

  test('workloads have their own shares; unknown sources share by address', () => {
    assert.notEqual(podA, podB);
    assert.equal(quotaOwner(null, '198.18.0.99'), quotaOwner(null, '198.18.0.99'));
    assert.notEqual(quotaOwner(null, '198.18.0.99'), quotaOwner(7, '198.18.0.99'));
    assert.throws(() => new SharedQuota(quotaBuffer(1), 1, 4, 4), /worker 1 has no region/);
  });
});

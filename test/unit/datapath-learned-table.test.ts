// The userspace mirror of eg_learned, over an in-memory map that counts the writes and deletes the kernel would see.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { decodeLearnedKey, decodeLearnedValue, encodeLearnedKey, encodeLearnedValue } from '../../src/datapath/abi.js';
import { LearnedTable, type LearnedMap } from '../../src/datapath/learned-table.js';
import type { LearnedEntry } from '../../src/datapath/types.js';

/** Stands in for the kernel map: a hash keyed by the key bytes, counting the syscalls made. */
class MemoryMap implements LearnedMap {
  readonly entries = new Map<string, Buffer>();
  updates = 0;
  deletes = 0;

  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  update(key: Buffer, value: Buffer): void {
    this.updates++;
    this.entries.set(key.toString('hex'), Buffer.from(value));
  }
  delete(key: Buffer): boolean {
    this.deletes++;
    return this.entries.delete(key.toString('hex'));
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((hex) => Buffer.from(hex, 'hex'));
  }
  /** What the kernel holds, as `workload/rule/ip@expiry`, sorted. */
  held(): string[] {
    return [...this.entries]
      .map(([hex, value]) => {
        const { workloadId, ruleId, ip } = decodeLearnedKey(Buffer.from(hex, 'hex'));
        return `${workloadId}/${ruleId}/${ip}@${decodeLearnedValue(value)}`;
      })
      .sort();
  }
}

const CAP = 100;
const entry = (ip: string, expiresAtNs: bigint, workloadId = 1, ruleId = 7): LearnedEntry => ({ workloadId, ruleId, ip, expiresAtNs });

describe('LearnedTable', () => {
  test('an entry the kernel holds at least as long is not written again; a longer one is, a shorter one never', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    table.learn([entry('203.0.113.1', 100n), entry('2001:db8::1', 100n)], CAP);
    assert.equal(map.updates, 2);
    table.learn([entry('203.0.113.1', 100n), entry('2001:db8::1', 90n)], CAP);
    assert.equal(map.updates, 2, 'same or shorter expiry: no write');
    assert.deepEqual(map.held(), ['1/7/2001:db8::1@100', '1/7/203.0.113.1@100']);
    table.learn([entry('203.0.113.1', 150n)], CAP);
    assert.equal(map.updates, 3);
    assert.deepEqual(map.held(), ['1/7/2001:db8::1@100', '1/7/203.0.113.1@150']);
    // Another spelling of the same address is the same kernel key.
    table.learn([entry('2001:0db8:0::1', 100n)], CAP);
    assert.equal(map.updates, 3);
    assert.equal(table.size, 2);
  });

  test('the same address for another rule or workload is its own entry', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    table.learn([entry('203.0.113.1', 100n, 1, 7), entry('203.0.113.1', 100n, 1, 8), entry('203.0.113.1', 100n, 2, 7)], CAP);
    assert.equal(map.updates, 3);
    assert.deepEqual([table.count(1), table.count(2)], [2, 1]);
  });

  test('the cap refuses new entries only: a held entry is refreshed, and a deleted one frees room', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    const refused = table.learn(
      ['203.0.113.1', '203.0.113.2', '203.0.113.3'].map((ip) => entry(ip, 100n)),
      2,
    );
    assert.deepEqual([...refused], [[1, 1]]);
    assert.equal(table.count(1), 2);
    assert.deepEqual([...table.learn([entry('203.0.113.1', 200n)], 2)], []);
    assert.equal(
      table.delete((held) => held.expiresAtNs <= 100n),
      1,
    );
    assert.deepEqual([...table.learn([entry('203.0.113.3', 100n)], 2)], []);
    assert.deepEqual(map.held(), ['1/7/203.0.113.1@200', '1/7/203.0.113.3@100']);
  });

  test("a delete for one workload touches that workload's entries only", () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    const both = [1, 2].flatMap((workload) => [entry('203.0.113.1', 100n, workload, 7), entry('203.0.113.2', 100n, workload, 8)]);
    table.learn(both, CAP);
    // Workload 1 loses rule 8: every entry of rule 8 is selected, only workload 1's go.
    assert.equal(
      table.delete((held) => held.ruleId === 8, 1),
      1,
    );
    assert.deepEqual(map.held(), ['1/7/203.0.113.1@100', '2/7/203.0.113.1@100', '2/8/203.0.113.2@100']);
    assert.deepEqual(
      table.entries(1).map((held) => held.ruleId),
      [7],
    );
    assert.equal(table.entries().length, 3);
    assert.equal(table.size, 3);
    assert.equal(table.count(2), 2);
  });

  test('withdrawal and expiry leave no mirror entry behind: learning the same entry again writes it', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    table.learn([entry('203.0.113.1', 100n, 1), entry('203.0.113.1', 100n, 2), entry('203.0.113.2', 50n, 2)], CAP);
    // The workload is withdrawn: its entries leave the kernel and the mirror.
    assert.equal(
      table.delete((held) => held.workloadId === 1),
      1,
    );
    assert.deepEqual(map.held(), ['2/7/203.0.113.1@100', '2/7/203.0.113.2@50']);
    assert.equal(table.count(1), 0);
    const before = map.updates;
    table.learn([entry('203.0.113.1', 100n, 1)], CAP);
    assert.equal(map.updates, before + 1, 'a withdrawn entry learned again is written');
    // Expiry.
    assert.equal(
      table.delete((held) => held.expiresAtNs <= 60n),
      1,
    );
    table.learn([entry('203.0.113.2', 50n, 2)], CAP);
    assert.equal(map.updates, before + 2, 'an expired entry learned again is written, even with the same expiry');
    assert.deepEqual(map.held(), ['1/7/203.0.113.1@100', '2/7/203.0.113.1@100', '2/7/203.0.113.2@50']);
  });

  test('an entry gone from the kernel behind the mirror is dropped from it at its delete, and written again when learned', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    table.learn([entry('203.0.113.1', 100n)], CAP);
    map.entries.clear();
    assert.equal(
      table.delete(() => true),
      0,
      'the kernel had nothing to remove',
    );
    assert.equal(table.size, 0);
    table.learn([entry('203.0.113.1', 100n)], CAP);
    assert.deepEqual(map.held(), ['1/7/203.0.113.1@100']);
  });

  test('a write the kernel refuses is not recorded', () => {
    const map = new MemoryMap();
    const table = new LearnedTable(map);
    const full = Object.assign(new Error('bpf_map_update_elem: Argument list too long'), { errno: 7 });
    map.update = () => {
      throw full;
    };
    assert.throws(() => table.learn([entry('203.0.113.1', 100n)], CAP), /too long/);
    assert.equal(table.size, 0);
    assert.equal(table.count(1), 0);
  });

  test('a map left by an earlier agent is mirrored when opened: its entries count and are not rewritten', () => {
    const map = new MemoryMap();
    map.update(encodeLearnedKey(3, 7, '203.0.113.1'), encodeLearnedValue(100n));
    map.update(encodeLearnedKey(3, 7, '203.0.113.2'), encodeLearnedValue(100n));
    map.updates = 0;
    const table = new LearnedTable(map);
    assert.equal(table.count(3), 2);
    table.learn([entry('203.0.113.1', 100n, 3)], CAP);
    assert.equal(map.updates, 0);
    assert.deepEqual([...table.learn([entry('203.0.113.9', 100n, 3)], 2)], [[3, 1]]);
    assert.equal(
      table.delete((held) => held.workloadId === 3),
      2,
    );
    assert.deepEqual(map.held(), []);
  });
});

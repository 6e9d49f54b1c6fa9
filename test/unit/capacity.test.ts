// The capacities docs, lint and status speak of are the ones the kernel object is built with.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'vitest';
import { KERNEL_CAPACITY } from '../../src/model/capacity.js';
import { lintFiles } from '../../src/policy/lint.js';
import { firewallPolicy } from './control-plane-helpers.js';

const header = readFileSync(fileURLToPath(new URL('../../../bpf/egressguard.h', import.meta.url)), 'utf8');
const defines = new Map([...header.matchAll(/^#define (EG_[A-Z0-9_]+) ([^/\n]+)/gm)].map((m) => [m[1]!, m[2]!.trim()]));

/** A #define's value: numbers, other defines, parentheses, - and <<. */
function valueOf(name: string): number {
  const text = defines.get(name);
  assert.ok(text !== undefined, `${name} is not defined in bpf/egressguard.h`);
  const expression = text.replace(/EG_[A-Z0-9_]+/g, (other) => String(valueOf(other)));
  assert.match(expression, /^[0-9\s()<-]+$/, `${name} = ${text}`);
  return Function(`return (${expression});`)() as number;
}

describe('kernel capacities', () => {
  test('every capacity equals its bpf/egressguard.h definition', () => {
    for (const [name, capacity] of Object.entries(KERNEL_CAPACITY)) assert.equal(capacity.max, valueOf(capacity.header), name);
  });

  test('docs/capacity.md names every capacity with its limit', () => {
    const docs = readFileSync(fileURLToPath(new URL('../../../docs/capacity.md', import.meta.url)), 'utf8');
    for (const capacity of Object.values(KERNEL_CAPACITY)) {
      assert.ok(docs.includes(`\`${capacity.header}\``), capacity.header);
      assert.ok(docs.includes(capacity.max.toLocaleString('en-US')), `${capacity.header} = ${capacity.max}`);
    }
  });
});

describe('policy lint checks the kernel capacities', () => {
  const lintText = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-capacity-'));
    try {
      writeFileSync(join(dir, 'p.yaml'), text);
      return lintFiles([dir]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const label = 'a'.repeat(63);

  test('a name DNS allows but the kernel cannot match (252 characters) is an error naming it', () => {
    const long = `${label}.${label}.${label}.${'b'.repeat(56)}.com`;
    assert.equal(long.length, 252);
    const result = lintText(firewallPolicy({ name: 'p', app: 'one', domains: [long] }));
    assert.equal(result.ok, false);
    assert.match(result.diagnostics[0]!.message, /longer than the 251 characters the kernel matches/);
    assert.equal(lintText(firewallPolicy({ name: 'p', app: 'one', domains: [long.slice(1)] })).ok, true);
  });

  test('more rules for one label set than the kernel holds per workload is an error; more webGroup rules than candidates a warning', () => {
    const rules = (count: number, web: boolean) =>
      Array.from(
        { length: count },
        (_, i) => `    - name: extra-${i}
      action: permit
      protocol: tcp
      port: ${1000 + i}
      selector: { matchLabels: { app: one } }
      destinationSmartGroups: [{ name: any-destination }]
${web ? '      webGroups: [{ name: approved }]\n' : ''}`,
      ).join('');
    const tooMany = lintText(firewallPolicy({ name: 'p', app: 'one', extraRule: rules(63, false) }));
    assert.equal(tooMany.ok, false);
    assert.match(tooMany.diagnostics[0]!.message, /selected by 65 rules; the kernel holds 64 per workload/);
    assert.equal(lintText(firewallPolicy({ name: 'p', app: 'one', extraRule: rules(62, false) })).ok, true);
    const web = lintText(firewallPolicy({ name: 'p', app: 'one', domains: ['a.example.com'], extraRule: rules(8, true) }));
    assert.deepEqual(
      web.diagnostics.map((d) => d.severity),
      ['warning'],
    );
    assert.match(web.diagnostics[0]!.message, /9 webGroup\/tlsRequired rules/);
    // Past the list nothing is denied: the ClientHello is judged by a walk over the rules.
    assert.match(web.diagnostics[0]!.message, /judged by walking all of the workload's rules at its ClientHello/);
    assert.doesNotMatch(web.diagnostics[0]!.message, /denied/);
  });
});

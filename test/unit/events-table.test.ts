import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { renderPolicyLogTable } from '../../src/events/table.js';
import { flowEvent } from './events-helpers.js';

describe('renderPolicyLogTable', () => {
  const benign = flowEvent({
    workload: { namespace: 'obot-mcp', name: 'benign', labels: {}, podIps: ['198.18.10.2'], cgroupId: '1' },
    destination: { ip: '198.18.100.10', port: 443, protocol: 'tcp', family: 4 },
    fqdn: 'api.openai.com',
    verdict: 'permitted',
    rule: 'allow-openai',
  });
  const rogue = flowEvent({ fqdn: null, destination: { ip: 'fd00:eb:100::66', port: 8443, protocol: 'tcp', family: 6 }, count: 17 });

  test('has a header, a rule line and one aligned row per event with every column', () => {
    const lines = renderPolicyLogTable([benign, rogue]).trimEnd().split('\n');
    assert.equal(lines.length, 4);
    const header = lines[0] as string;
    for (const title of [
      'TIME (UTC)',
      'WORKLOAD',
      'POD IP',
      'DESTINATION FQDN',
      'DESTINATION IP',
      'PORT',
      'RULE',
      'TIER',
      'VERDICT',
      'COUNT',
    ]) {
      assert.ok(header.includes(title), title);
    }
    assert.match(lines[1] as string, /^-+( +-+)+$/);
    assert.match(
      lines[2] as string,
      /^03:04:05\.678 +obot-mcp\/benign +198\.18\.10\.2 +api\.openai\.com +198\.18\.100\.10 +443\/tcp +connect +allow-openai +2 +permitted +1$/,
    );
    assert.match(lines[3] as string, /obot-mcp\/rogue +198\.18\.11\.2 +- +fd00:eb:100::66 +8443\/tcp .* deny-all +2 +denied +17$/);
    // Aligned: every column starts at the same offset in every row.
    const start = (line: string, text: string): number => line.indexOf(text);
    assert.equal(start(lines[2] as string, '198.18.100.10'), start(header, 'DESTINATION IP'));
    assert.equal(start(lines[3] as string, 'fd00:eb:100::66'), start(header, 'DESTINATION IP'));
  });

  test('control characters are neutralised and long names are shortened', () => {
    const hostile = flowEvent({ fqdn: `\u001b[31m${'x'.repeat(80)}.example` });
    const row = renderPolicyLogTable([hostile]).split('\n')[2] as string;
    assert.ok(!row.includes('\u001b'));
    assert.match(row, /\?\[31mx+\.\.\. /);
  });

  test('an empty log still has its header', () => {
    assert.equal(renderPolicyLogTable([]).split('\n')[0]?.startsWith('TIME (UTC)'), true);
  });
});

// Status aggregation in Kubernetes mode (src/k8s/status.ts, NodeReportBuilder): what status.ruleset, the conditions and
// lastReconciledGeneration say for the reports of the nodes running the selected pods.
import { strict as assert } from 'node:assert';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'vitest';
import { NodeReportBuilder, nodeLeaseName } from '../../src/k8s/status-writer.js';
import {
  MAX_CONDITION_MESSAGE,
  decodeNodeReport,
  desiredPolicyStatus,
  encodeNodeReport,
  statusDiffers,
  type NodeReport,
  type PolicyVerdict,
} from '../../src/k8s/status.js';

const NOW = new Date('2026-12-01T06:00:00Z');
const LATER = new Date('2026-12-01T06:05:00Z');

function verdict(overrides: Partial<PolicyVerdict> = {}): PolicyVerdict {
  return {
    kind: 'FirewallPolicy',
    namespace: 'obot-mcp',
    name: 'obot-ms1a-fw',
    generation: 2,
    accepted: {
      generation: 2,
      ruleset: 'a1b2c3d4e5f60718',
      notEnforced: [],
      smartGroups: ['obot-ms1a-pods', 'any-destination'],
      webGroups: ['obot-ms1a-approved-domains'],
    },
    rejected: null,
    ...overrides,
  };
}

function reports(...list: NodeReport[]): Map<string, NodeReport> {
  return new Map(list.map((r) => [r.node, r]));
}

const KEY = 'obot-mcp/obot-ms1a-fw';
const condition = (status: ReturnType<typeof desiredPolicyStatus>, type: string) => status.conditions.find((c) => c.type === type)!;

describe('desiredPolicyStatus', () => {
  test('every node running a selected pod enforces the generation: ruleset set, Enforced True, group names listed', () => {
    const status = desiredPolicyStatus(
      verdict(),
      [
        { node: 'n1', name: 'ms1a-0' },
        { node: 'n2', name: 'ms1a-1' },
      ],
      reports(
        { node: 'n1', policies: { [KEY]: { generation: 2, pods: ['ms1a-0'] } } },
        { node: 'n2', policies: { [KEY]: { generation: 2, pods: ['ms1a-1'] } } },
      ),
      undefined,
      NOW,
    );
    assert.equal(status.ruleset, 'a1b2c3d4e5f60718');
    assert.equal(status.lastReconciledGeneration, 2);
    assert.deepEqual(status.webGroups, [{ name: 'obot-ms1a-approved-domains' }]);
    assert.deepEqual(status.smartGroups, [{ name: 'obot-ms1a-pods' }, { name: 'any-destination' }]);
    const enforced = condition(status, 'Enforced');
    assert.deepEqual([enforced.status, enforced.reason, enforced.observedGeneration], ['True', 'Enforced', 2]);
    assert.match(enforced.message, /2 pod\(s\) on 2 node\(s\)/);
    assert.deepEqual([condition(status, 'Invalid').status, condition(status, 'Unsupported').status], ['False', 'False']);
  });

  test('a node still on the previous generation clears ruleset, keeps lastReconciledGeneration and names node and pod', () => {
    const status = desiredPolicyStatus(
      verdict({ generation: 3, accepted: { ...verdict().accepted!, generation: 3 } }),
      [
        { node: 'n1', name: 'ms1a-0' },
        { node: 'n2', name: 'ms1a-1' },
      ],
      reports(
        { node: 'n1', policies: { [KEY]: { generation: 3, pods: ['ms1a-0'] } } },
        { node: 'n2', policies: { [KEY]: { generation: 2, pods: ['ms1a-1'] } } },
      ),
      { ruleset: 'old', lastReconciledGeneration: 2, conditions: [] },
      NOW,
    );
    assert.equal(status.ruleset, '');
    assert.equal(status.lastReconciledGeneration, 2);
    const enforced = condition(status, 'Enforced');
    assert.deepEqual([enforced.status, enforced.reason], ['False', 'Pending']);
    assert.equal(enforced.message, 'node n2 has not enforced generation 3 for ms1a-1');
  });

  test('a node without a report, or whose report lacks one of its selected pods, is pending', () => {
    const selected = [
      { node: 'n1', name: 'ms1a-0' },
      { node: 'n1', name: 'ms1a-2' },
      { node: 'n3', name: 'ms1a-9' },
    ];
    const status = desiredPolicyStatus(
      verdict(),
      selected,
      reports({ node: 'n1', policies: { [KEY]: { generation: 2, pods: ['ms1a-0'] } } }),
      undefined,
      NOW,
    );
    assert.equal(status.ruleset, '');
    assert.equal(status.lastReconciledGeneration, undefined, 'never reconciled everywhere');
    assert.equal(
      condition(status, 'Enforced').message,
      'node n1 has not enforced generation 2 for ms1a-2; node n3 has not enforced generation 2 for ms1a-9',
    );
  });

  test('a policy selecting no running pod is enforced vacuously (the lab waits for ruleset before any pod is selected)', () => {
    const status = desiredPolicyStatus(verdict(), [], new Map(), undefined, NOW);
    assert.equal(status.ruleset, 'a1b2c3d4e5f60718');
    assert.match(condition(status, 'Enforced').message, /selects no running pod/);
  });

  test('an invalid newest generation: Invalid True naming the field, the last good generation stays in force and reported', () => {
    const status = desiredPolicyStatus(
      verdict({ generation: 3, rejected: { generation: 3, messages: ['spec.rules[0].action must be one of permit, deny'] } }),
      [{ node: 'n1', name: 'ms1a-0' }],
      reports({ node: 'n1', policies: { [KEY]: { generation: 2, pods: ['ms1a-0'] } } }),
      undefined,
      NOW,
    );
    const invalid = condition(status, 'Invalid');
    assert.deepEqual([invalid.status, invalid.reason, invalid.observedGeneration], ['True', 'ValidationFailed', 3]);
    assert.equal(invalid.message, 'generation 3 rejected (generation 2 stays in force); spec.rules[0].action must be one of permit, deny');
    assert.equal(status.ruleset, 'a1b2c3d4e5f60718', 'generation 2 is enforced everywhere');
    assert.equal(status.lastReconciledGeneration, 2);
  });

  test('never valid: no ruleset, Enforced False with reason Invalid', () => {
    const status = desiredPolicyStatus(
      verdict({ accepted: null, rejected: { generation: 1, messages: ['spec.rules is missing'] } }),
      [],
      new Map(),
      undefined,
      NOW,
    );
    assert.equal(status.ruleset, '');
    assert.equal(condition(status, 'Enforced').reason, 'Invalid');
    assert.match(condition(status, 'Invalid').message, /nothing of it is enforced/);
  });

  test('unsupported parts: Unsupported True listing them, bounded in length', () => {
    const many = Array.from({ length: 200 }, (_, i) => `rule r${i}: destination smartGroup "pods" selects by type k8s`);
    const status = desiredPolicyStatus(verdict({ accepted: { ...verdict().accepted!, notEnforced: many } }), [], new Map(), undefined, NOW);
    const unsupported = condition(status, 'Unsupported');
    assert.equal(unsupported.status, 'True');
    assert.ok(unsupported.message.length <= MAX_CONDITION_MESSAGE, `${unsupported.message.length}`);
    assert.match(unsupported.message, /^rule r0: .*… and \d+ more$/);
  });

  test('a WebgroupPolicy is reported as validated, not enforced', () => {
    const status = desiredPolicyStatus(verdict({ kind: 'WebgroupPolicy' }), [], new Map(), undefined, NOW);
    assert.equal(status.ruleset, undefined);
    assert.equal(status.lastReconciledGeneration, 2);
    assert.equal(condition(status, 'Enforced').reason, 'NotEnforced');
  });

  test('lastTransitionTime moves only when a condition changes status; statusDiffers ignores it', () => {
    const first = desiredPolicyStatus(verdict(), [], new Map(), undefined, NOW);
    const same = desiredPolicyStatus(verdict(), [], new Map(), first, LATER);
    assert.equal(condition(same, 'Enforced').lastTransitionTime, NOW.toISOString());
    assert.equal(statusDiffers(first, same), false);
    const pending = desiredPolicyStatus(verdict(), [{ node: 'n1', name: 'ms1a-0' }], new Map(), first, LATER);
    assert.equal(condition(pending, 'Enforced').lastTransitionTime, LATER.toISOString());
    assert.equal(condition(pending, 'Invalid').lastTransitionTime, NOW.toISOString());
    assert.equal(statusDiffers(first, pending), true);
    assert.equal(statusDiffers(undefined, first), true, 'an object without status gets one');
  });
});

describe('node reports', () => {
  test('the report lists the policies in force for pods on this node, at the generation this node accepted', () => {
    const enforced = new Map([
      ['obot-mcp/a-fw', { ruleset: 'x', workloads: ['obot-mcp/pod-b', 'obot-mcp/pod-a'] }],
      ['obot-mcp/idle-fw', { ruleset: '', workloads: [] }],
      ['obot-mcp/unknown-fw', { ruleset: 'y', workloads: ['obot-mcp/pod-c'] }],
    ]);
    const generations = new Map([['a-fw', 7]]);
    const builder = new NodeReportBuilder(
      'n1',
      (key) => enforced.get(key),
      (_namespace, name) => generations.get(name),
    );
    assert.equal(builder.refresh(enforced.keys()), true);
    assert.deepEqual(builder.report(), { node: 'n1', policies: { 'obot-mcp/a-fw': { generation: 7, pods: ['pod-a', 'pod-b'] } } });
    assert.equal(builder.refresh(enforced.keys()), false, 'nothing moved');
    generations.set('a-fw', 8);
    enforced.set('obot-mcp/a-fw', { ruleset: 'x', workloads: ['obot-mcp/pod-a'] });
    assert.equal(builder.refresh(['obot-mcp/a-fw']), true);
    assert.deepEqual(builder.report().policies, { 'obot-mcp/a-fw': { generation: 8, pods: ['pod-a'] } });
    enforced.delete('obot-mcp/a-fw');
    assert.equal(builder.refresh(['obot-mcp/a-fw']), true, 'a policy no longer accepted leaves the report');
    assert.deepEqual(builder.report().policies, {});
  });

  test('a report round-trips; 10,000 policies stay far below the 256 KiB annotation limit', () => {
    const report: NodeReport = { node: 'n1', policies: {} };
    for (let i = 0; i < 10_000; i++)
      report.policies[`obot-mcp/obot-ms1x${i.toString(36)}-fw`] = { generation: 1 + (i % 5), pods: [`ms1x${i.toString(36)}-0`] };
    const text = encodeNodeReport(report);
    assert.ok(text.length < 256 * 1024, `${text.length} bytes`);
    assert.deepEqual(decodeNodeReport(text), report);
  });

  test('a malformed report is refused, never half-read', () => {
    assert.equal(decodeNodeReport('not base64 gzip'), null);
    const encode = (value: unknown) => gzipSync(Buffer.from(JSON.stringify(value))).toString('base64');
    assert.equal(decodeNodeReport(encode({ node: 'n1', policies: { 'a/b': { generation: 'two', pods: [] } } })), null);
    assert.equal(decodeNodeReport(encode({ node: 'n1', policies: [] })), null);
    assert.equal(decodeNodeReport(encode({ policies: {} })), null);
    assert.deepEqual(decodeNodeReport(encode({ node: 'n1', policies: {} })), { node: 'n1', policies: {} });
  });

  test('the Lease name is a valid object name whatever the node is called', () => {
    assert.equal(nodeLeaseName('worker-1'), 'egressguard-node-worker-1');
    const long = nodeLeaseName('n'.repeat(253));
    assert.ok(long.length <= 253);
    assert.match(long, /^egressguard-node-[0-9a-f]{32}$/);
  });
});

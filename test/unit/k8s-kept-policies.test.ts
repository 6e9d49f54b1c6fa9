// The copy of the last listed policies and baseline a restarted agent starts from: written atomically, read back
// whole, and rejected with a reason when it is torn, altered or of another format version.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import {
  KEPT_POLICIES_VERSION,
  keptPoliciesPath,
  readKeptPolicies,
  writeKeptPolicies,
  type KeptPolicySet,
} from '../../src/k8s/kept-policies.js';

const dir = mkdtempSync(join(tmpdir(), 'egressguard-kept-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SET: KeptPolicySet = {
  baseline: {
    spec: { mode: 'enforce', enforcedNamespaces: ['obot-mcp'] },
    detected: {
      values: { apiServer: ['198.19.0.1'], clusterDNS: [], nodeAddresses: [], serviceCIDRs: [], podCIDRs: [] },
      missing: [],
    },
  },
  policies: [
    {
      kind: 'FirewallPolicy',
      generation: 2,
      manifest: {
        apiVersion: 'networking.aviatrix.com/v1alpha1',
        kind: 'FirewallPolicy',
        metadata: { name: 'a', namespace: 'obot-mcp' },
        spec: {},
      },
      services: [],
    },
  ],
};

describe('kept policies', () => {
  test('beside the pod state file', () => {
    assert.equal(keptPoliciesPath('/run/egressguard/kubernetes-pods.json'), '/run/egressguard/kubernetes-policies.json');
  });

  test('written and read back whole; no temporary file left', () => {
    const path = join(dir, 'whole', 'kubernetes-policies.json');
    assert.equal(readKeptPolicies(path), null, 'no copy: null');
    writeKeptPolicies(path, SET, new Date('2026-01-01T00:00:00Z'));
    assert.deepEqual(readKeptPolicies(path), { ok: true, copy: { writtenAt: '2026-01-01T00:00:00.000Z', set: SET } });
    assert.equal(existsSync(`${path}.tmp`), false);
  });

  test('a torn, altered, foreign or newer-version copy is rejected with the reason', () => {
    const path = join(dir, 'bad.json');
    writeKeptPolicies(path, SET);
    const good = readFileSync(path, 'utf8');
    const file = JSON.parse(good) as Record<string, unknown>;
    const cases: [string, string, RegExp][] = [
      ['torn', good.slice(0, good.length / 2), /^not JSON/],
      [
        'altered',
        JSON.stringify({ ...file, payload: (file.payload as string).replace('"generation":2', '"generation":3') }),
        /SHA-256 mismatch/,
      ],
      ['foreign', JSON.stringify({ ...file, format: 'something-else' }), /not a egressguard.io\/kept-policies file/],
      ['newer', JSON.stringify({ ...file, version: KEPT_POLICIES_VERSION + 1 }), /format version 2, this agent reads version 1/],
    ];
    for (const [name, text, reason] of cases) {
      writeFileSync(path, text);
      const read = readKeptPolicies(path);
      assert.ok(read !== null && !read.ok, name);
      assert.match(read.reason, reason, name);
    }
  });
});

// The stopping agent's choice under the chart: clean the node only when its DaemonSet is gone or being deleted
// (helm uninstall); keep the pinned state on a rolling update, a restart, and whenever the answer is uncertain.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { agentOwnerFromEnv, decideOnStop, type DaemonSetReader } from '../../src/k8s/uninstall.js';

const OWNER = { namespace: 'egressguard-system', daemonSet: 'egressguard' };

describe('decideOnStop', () => {
  test('the DaemonSet is gone (helm uninstall, background deletion): clean the node', async () => {
    const decision = await decideOnStop(OWNER, async () => null, 1000);
    assert.deepEqual(decision, {
      cleanNode: true,
      reason: 'DaemonSet egressguard-system/egressguard is gone: egressguard is being uninstalled',
    });
  });

  test('a deletion the running agent watched decides, even when the read at stop is refused (RBAC deleted too)', async () => {
    const refused: DaemonSetReader = () => Promise.reject(Object.assign(new Error('forbidden'), { code: 403 }));
    const decision = await decideOnStop(OWNER, refused, 1000, 'was deleted (seen at 2026-01-01T00:00:00.000Z)');
    assert.deepEqual(decision, {
      cleanNode: true,
      reason: 'DaemonSet egressguard-system/egressguard was deleted (seen at 2026-01-01T00:00:00.000Z): egressguard is being uninstalled',
    });
    assert.equal((await decideOnStop(OWNER, refused, 1000, null)).cleanNode, false, 'nothing seen, refused: keep enforcing');
  });

  test('the DaemonSet is being deleted (foreground deletion): clean the node', async () => {
    const decision = await decideOnStop(OWNER, async () => ({ deletionTimestamp: new Date().toISOString() }), 1000);
    assert.equal(decision.cleanNode, true);
    assert.match(decision.reason, /is being deleted/);
  });

  test('the DaemonSet still exists (rolling update, rollout restart, deleted pod): keep the pinned state', async () => {
    const decision = await decideOnStop(OWNER, async () => ({ deletionTimestamp: null }), 1000);
    assert.equal(decision.cleanNode, false);
    assert.match(decision.reason, /still exists .* the next agent adopts the pinned state/);
  });

  test('an API error (forbidden, unreachable) keeps enforcing and names the manual way out', async () => {
    const forbidden: DaemonSetReader = async () => {
      throw Object.assign(new Error('HTTP-Code: 403 Message: Unknown API Status Code!'), { code: 403 }); // client-node's ApiException
    };
    const refused: DaemonSetReader = async () => {
      throw new Error('connect ECONNREFUSED 10.96.0.1:443');
    };
    for (const [reader, detail] of [
      [forbidden, 'HTTP 403'],
      [refused, 'connect ECONNREFUSED 10.96.0.1:443'],
    ] as const) {
      const decision = await decideOnStop(OWNER, reader, 1000);
      assert.equal(decision.cleanNode, false);
      assert.ok(decision.reason.includes(`(${detail})`), decision.reason);
      assert.match(decision.reason, /enforcement stays in force; run `egressguard teardown` on the node/);
    }
  });

  test('an API server that never answers keeps enforcing after the timeout', async () => {
    const decision = await decideOnStop(OWNER, () => new Promise(() => undefined), 50);
    assert.equal(decision.cleanNode, false);
    assert.match(decision.reason, /no answer within 50 ms/);
  });
});

describe('agentOwnerFromEnv', () => {
  test('both variables the chart sets name the owner; without either the agent never cleans on stop', () => {
    assert.deepEqual(agentOwnerFromEnv({ POD_NAMESPACE: 'egressguard-system', EGRESSGUARD_DAEMONSET: 'egressguard' }), OWNER);
    assert.equal(agentOwnerFromEnv({ POD_NAMESPACE: 'egressguard-system' }), null);
    assert.equal(agentOwnerFromEnv({ EGRESSGUARD_DAEMONSET: 'egressguard' }), null);
    assert.equal(agentOwnerFromEnv({ POD_NAMESPACE: ' ', EGRESSGUARD_DAEMONSET: 'egressguard' }), null);
  });
});

// Rollout counters behind `status`: what the default permitted per workload, what each watch rule reported.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { RolloutCounter } from '../../src/discover/rollout.js';
import { flowEvent } from './events-helpers.js';

describe('RolloutCounter', () => {
  test('counts default permits by layer and watch reports by rule, per workload, with aggregate counts', () => {
    const counter = new RolloutCounter();
    const key = 'obot-mcp/rogue';
    const defaultPermit = { verdict: 'permitted' as const, tier: 3 as const, policy: null, rule: 'default-action' };
    counter.observe(flowEvent({ ...defaultPermit, count: 2 }));
    counter.observe(flowEvent({ ...defaultPermit, layer: 'tls' }));
    counter.observe(flowEvent({ ...defaultPermit, layer: 'dns' }));
    // Evidence of a flow already counted (what it sent first) is not a second flow.
    counter.observe(flowEvent({ ...defaultPermit, layer: 'tls', evidence: true, firstFlight: 'client-hello', sni: 'httpbin.org' }));
    counter.observe(flowEvent({ verdict: 'would-deny', rule: 'deny-all' }));
    counter.observe(flowEvent({ verdict: 'would-deny', rule: 'deny-all', count: 4 }));
    counter.observe(flowEvent({ verdict: 'would-permit', rule: 'allow' }));
    counter.observe(flowEvent({ verdict: 'denied' }));
    counter.observe(
      flowEvent({ ...defaultPermit, workload: { namespace: '', name: '(unenrolled)', labels: {}, podIps: [], cgroupId: '9' } }),
    );
    assert.deepEqual(counter.of(key), {
      flowsDeniedIfDefaultFlipped: 3,
      queriesDeniedIfDefaultFlipped: 1,
      watch: [
        { rule: 'obot-mcp/rogue-policy:deny-all', wouldPermit: 0, wouldDeny: 5 },
        { rule: 'obot-mcp/rogue-policy:allow', wouldPermit: 1, wouldDeny: 0 },
      ],
    });
    assert.deepEqual(counter.of('obot-mcp/other'), { flowsDeniedIfDefaultFlipped: 0, queriesDeniedIfDefaultFlipped: 0, watch: [] });
  });

  test('the workload unseen longest is forgotten past the bound', () => {
    const counter = new RolloutCounter(2);
    const permit = (name: string) =>
      flowEvent({
        verdict: 'permitted',
        tier: 3,
        policy: null,
        rule: 'default-action',
        workload: { namespace: 'ns', name, labels: {}, podIps: [], cgroupId: '1' },
      });
    counter.observe(permit('a'));
    counter.observe(permit('b'));
    counter.observe(permit('a'));
    counter.observe(permit('c'));
    assert.deepEqual(
      ['ns/a', 'ns/b', 'ns/c'].map((key) => counter.of(key).flowsDeniedIfDefaultFlipped),
      [2, 0, 1],
    );
  });
});

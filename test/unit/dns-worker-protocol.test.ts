import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import { packEvent, unpackEvent } from '../../src/agent/dns-worker-protocol.js';
import type { DnsDecisionEvent } from '../../src/dns/types.js';

describe('decision events between the DNS worker and the main thread', () => {
  test('a packed event crosses threads (structured clone) and unpacks to every field it had', () => {
    // Typed as the full interface: a field added to DnsDecisionEvent must be added here, and is then checked.
    const event: DnsDecisionEvent = {
      time: '2026-12-02T14:00:00.000Z',
      workloadKey: 'team/agent',
      workloadId: 7,
      sourceIp: 'fd00:eb::7',
      sourcePort: 40123,
      transport: 'udp',
      query: 'api.openai.com',
      qtype: 'AAAA',
      verdict: 'permitted',
      tier: 2,
      ruleName: 'allow-openai',
      policy: { namespace: 'team', name: 'p', generation: 3 },
      rcode: 'NOERROR',
      answers: ['fd00:eb:100::10'],
      learnedTtlSeconds: 300,
      upstream: '198.18.0.1:53',
      upstreamLatencyMs: null,
      reason: '1 address(es) not learned',
    };
    assert.deepEqual(unpackEvent(structuredClone(packEvent(event))), event);
    const unknownSource = {
      ...event,
      workloadKey: null,
      workloadId: null,
      policy: null,
      answers: [],
      learnedTtlSeconds: null,
      reason: null,
    };
    assert.deepEqual(unpackEvent(structuredClone(packEvent(unknownSource))), unknownSource);
  });
});

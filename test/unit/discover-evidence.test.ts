// Evidence a suggestion or a replay decides on: a TLS event names both the SNI the flow sent and the name its address
// was resolved for, so a fronted flow is told from an honest one.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { Enricher } from '../../src/events/enrich.js';
import { WorkloadRegistry } from '../../src/identity/registry.js';
import { suggestPolicies } from '../../src/discover/suggest.js';
import { replay } from '../../src/discover/replay.js';
import type { FlowEvent } from '../../src/events/types.js';
import { flowEvent } from './events-helpers.js';
import { acceptPolicies, translatorPolicy } from './policy-helpers.js';

const WORKLOAD = {
  namespace: 'obot-mcp',
  name: 'ms1abc-0',
  labels: { app: 'ms1abc' },
  addresses: ['198.18.1.2'],
  cgroupPath: '/x',
  cgroupId: 7n,
  workloadId: 3,
};

describe('evidence in events', () => {
  const registry = new WorkloadRegistry();
  registry.replace([WORKLOAD]);
  const enricher = new Enricher({ node: () => 'n', workloads: registry, ruleLabel: () => undefined, dnsListen: ['198.18.0.53'] });
  const kernel = {
    timestampNs: 1n,
    cgroupId: 7n,
    workloadId: 3,
    ruleId: 0,
    ip: '198.18.100.10',
    family: 4 as const,
    port: 443,
    protocol: 6,
  };
  const common = { verdict: 'permitted' as const, tier: 3 as const, pid: 1, comm: 'node', suppressed: 0 };

  test('a TLS event carries the SNI as its name and the DNS-learned name beside it; a connect event the learned name', () => {
    enricher.fromDns({
      time: '2026-01-01T00:00:00.000Z',
      workloadKey: 'obot-mcp/ms1abc-0',
      workloadId: 3,
      sourceIp: '198.18.1.2',
      sourcePort: 4000,
      transport: 'udp',
      query: 'api.openai.com',
      qtype: 'A',
      verdict: 'permitted',
      tier: 3,
      ruleName: 'default-action',
      policy: null,
      rcode: 'NOERROR',
      answers: ['198.18.100.10'],
      learnedTtlSeconds: 60,
      upstream: '198.18.100.53:53',
      upstreamLatencyMs: 1,
      reason: null,
    });
    const tls = enricher.fromKernel({ ...kernel, ...common, layer: 'tls', sni: 'evil.example' });
    assert.deepEqual([tls.fqdn, tls.fqdnSource, tls.resolvedName], ['evil.example', 'sni', 'api.openai.com']);
    const connect = enricher.fromKernel({ ...kernel, ...common, layer: 'connect', sni: null });
    assert.deepEqual([connect.fqdn, connect.fqdnSource, connect.resolvedName], ['api.openai.com', 'dns', undefined]);
  });
});

describe('suggest and replay read the evidence', () => {
  const server = { namespace: 'obot-mcp', name: 'ms1abc-0', labels: { app: 'ms1abc' }, podIps: [], cgroupId: '7' };
  const tlsEvent = (sni: string, resolvedName: string): FlowEvent =>
    flowEvent({
      workload: server,
      layer: 'tls',
      fqdn: sni,
      fqdnSource: 'sni',
      resolvedName,
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
    });

  test('a name sent as SNI to an address resolved for another name is left out as possible fronting', () => {
    const [s] = suggestPolicies([
      tlsEvent('evil.example', 'api.openai.com'),
      tlsEvent('evil.example', 'api.openai.com'),
      tlsEvent('api.openai.com', 'api.openai.com'),
      tlsEvent('api.openai.com', 'api.openai.com'),
    ]);
    assert.deepEqual(s!.domains, ['api.openai.com']);
    const fronted = s!.leftOut.find((l) => l.what.startsWith('evil.example'));
    assert.ok(fronted, JSON.stringify(s!.leftOut));
    assert.match(fronted.reason, /SNI differs from the name its address was resolved for \(api\.openai\.com\): possible domain fronting/);
    assert.equal(fronted.flows, 2);
  });

  test('replay learns the address from the resolved name a TLS event carries', () => {
    const policies = acceptPolicies(translatorPolicy('ms1abc', { domains: ['api.openai.com'] }));
    const result = replay([tlsEvent('api.openai.com', 'api.openai.com'), tlsEvent('evil.example', 'api.openai.com')], policies, {
      mode: 'enforce',
      tls: true,
      denyList: [],
      permits: [],
      dnsNames: [],
    });
    assert.deepEqual(
      result.workloads[0]!.flows.map((f) => [f.replayed, f.rule, f.layer]),
      [
        ['permitted', 'obot-mcp/obot-ms1abc-fw:allow-approved-egress', 'tls'],
        ['denied', 'obot-mcp/obot-ms1abc-fw:deny-all-external', 'tls'],
      ],
    );
  });
});

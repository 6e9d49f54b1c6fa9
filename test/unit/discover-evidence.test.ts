// Evidence a suggestion or a replay decides on: a TLS event names both the SNI the flow sent and the name its address
// was resolved for, so a fronted flow is told from an honest one.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { Enricher } from '../../src/events/enrich.js';
import { WorkloadRegistry } from '../../src/identity/registry.js';
import { suggestPolicies } from '../../src/discover/suggest.js';
import { replay } from '../../src/discover/replay.js';
import { joinEvidence } from '../../src/discover/evidence.js';
import { cefFormat } from '../../src/sinks/formats/cef.js';
import { ecsFormat } from '../../src/sinks/formats/ecs.js';
import { ocsfFormat } from '../../src/sinks/formats/ocsf.js';
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
  const common = { verdict: 'permitted' as const, tier: 3 as const, pid: 1, comm: 'node', suppressed: 0, evidence: false };

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
    assert.deepEqual([tls.fqdn, tls.fqdnSource, tls.sni, tls.learnedName], ['evil.example', 'sni', 'evil.example', 'api.openai.com']);
    const connect = enricher.fromKernel({ ...kernel, ...common, layer: 'connect', sni: null });
    assert.deepEqual(
      [connect.fqdn, connect.fqdnSource, connect.learnedName, connect.learnedFrom],
      ['api.openai.com', 'dns', 'api.openai.com', 'workload-dns'],
    );
    assert.equal(connect.sni, undefined);
  });

  test('an evidence event carries what the flow sent, the learned name and how; an HTTP Host is httpHost, not sni', () => {
    const evidence = enricher.fromKernel({
      ...kernel,
      ...common,
      layer: 'tls',
      sni: 'evil.example',
      evidence: true,
      firstFlight: 'client-hello',
    });
    assert.deepEqual(
      [evidence.evidence, evidence.firstFlight, evidence.sni, evidence.learnedName, evidence.learnedFrom],
      [true, 'client-hello', 'evil.example', 'api.openai.com', 'workload-dns'],
    );
    const http = enricher.fromKernel({
      ...kernel,
      ...common,
      layer: 'http',
      sni: 'api.openai.com',
      evidence: true,
      firstFlight: 'http-request',
    });
    assert.deepEqual([http.httpHost, http.sni, http.fqdnSource], ['api.openai.com', undefined, 'http-host']);
  });

  test("the agent's own resolution names an address for the workload, below the workload's own answer", () => {
    const own = new Enricher({ node: () => 'n', workloads: registry, ruleLabel: () => undefined, dnsListen: [] });
    own.fromAgentLookup(3, 'api.openai.com', ['198.18.100.10']);
    const connect = own.fromKernel({ ...kernel, ...common, layer: 'connect', sni: null });
    assert.deepEqual([connect.learnedName, connect.learnedFrom], ['api.openai.com', 'agent-resolution']);
    const other = own.fromKernel({ ...kernel, ...common, workloadId: 4, layer: 'connect', sni: null });
    assert.deepEqual([other.learnedName, other.learnedFrom], [undefined, undefined], "one workload's lookups never name another's flows");
  });
});

describe('evidence in every SIEM format', () => {
  const product = { name: 'egressguard', vendor: 'egressguard', version: 't' };
  const fronted = flowEvent({
    layer: 'tls',
    fqdn: 'evil.example',
    fqdnSource: 'sni',
    sni: 'evil.example',
    learnedName: 'api.openai.com',
    learnedFrom: 'workload-dns',
    firstFlight: 'client-hello',
    evidence: true,
    verdict: 'permitted',
  });
  const http = flowEvent({
    layer: 'http',
    fqdn: 'api.openai.com',
    fqdnSource: 'http-host',
    httpHost: 'api.openai.com',
    firstFlight: 'http-request',
  });

  test('ECS: tls.client.server_name and url.domain; the learned name, how and the first flight under egressguard.*', () => {
    const ecs = JSON.parse(ecsFormat(product).flow(fronted)) as { tls: unknown; egressguard: Record<string, unknown> };
    assert.deepEqual(ecs.tls, { client: { server_name: 'evil.example' } });
    assert.deepEqual(
      [ecs.egressguard.learned_name, ecs.egressguard.learned_from, ecs.egressguard.first_flight, ecs.egressguard.evidence],
      ['api.openai.com', 'workload-dns', 'client-hello', true],
    );
    assert.deepEqual((JSON.parse(ecsFormat(product).flow(http)) as { url: unknown }).url, { domain: 'api.openai.com' });
  });

  test('CEF: the SNI or Host in flexString2, evidence as cat, the learned name under a vendor key', () => {
    const cef = cefFormat(product).flow(fronted);
    assert.match(
      cef,
      / flexString2Label=sni flexString2=evil\.example cat=evidence egressguardLearnedName=api\.openai\.com egressguardLearnedFrom=workload-dns egressguardFirstFlight=client-hello/,
    );
    assert.match(cefFormat(product).flow(http), / flexString2Label=httpHost flexString2=api\.openai\.com/);
  });

  test('OCSF: unmapped carries the SNI, the learned name and the evidence mark', () => {
    const ocsf = JSON.parse(ocsfFormat(product).flow(fronted)) as { unmapped: Record<string, unknown> };
    assert.deepEqual(
      [ocsf.unmapped.sni, ocsf.unmapped.learned_name, ocsf.unmapped.first_flight, ocsf.unmapped.evidence],
      ['evil.example', 'api.openai.com', 'client-hello', true],
    );
  });
});

describe('joining evidence to its flows', () => {
  const flow = { workload: { namespace: 'obot-mcp', name: 'ms1abc-0', labels: { app: 'ms1abc' }, podIps: [], cgroupId: '7' } };
  const connect = (count: number): FlowEvent =>
    flowEvent({
      ...flow,
      layer: 'connect',
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
      fqdn: 'api.openai.com',
      count,
    });
  const evidence = (sni: string, count: number, overrides: Partial<FlowEvent> = {}): FlowEvent =>
    flowEvent({
      ...flow,
      layer: 'tls',
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
      fqdn: sni,
      fqdnSource: 'sni',
      sni,
      learnedName: 'api.openai.com',
      firstFlight: 'client-hello',
      evidence: true,
      count,
      ...overrides,
    });

  test('evidence takes the place of the connect decisions of its flow, splitting aggregated counts', () => {
    const recorded = [connect(3), evidence('evil.example', 2)];
    const joined = joinEvidence(recorded);
    assert.deepEqual(
      joined.map((e) => [e.layer, e.fqdn, e.count]),
      [
        ['connect', 'api.openai.com', 1],
        ['tls', 'evil.example', 2],
      ],
    );
    assert.equal(recorded[0]!.count, 3, 'the recording itself is left as it was');
  });

  test('evidence joins only decisions of the same flow and rule, in whatever order the aggregates were written', () => {
    const otherPort = evidence('api.openai.com', 1, { destination: { ip: '198.18.100.20', port: 8443, protocol: 'tcp', family: 4 } });
    const otherRule = evidence('api.openai.com', 1, {
      tier: 2,
      rule: 'allow',
      policy: { namespace: 'obot-mcp', name: 'p', generation: 1 },
    });
    const repeats = { ...connect(2), time: '2025-01-02T03:04:06.000Z' };
    const joined = joinEvidence([connect(1), evidence('a.example', 1), evidence('b.example', 1), repeats, otherPort, otherRule]);
    assert.deepEqual(
      joined.map((e) => [e.layer, e.fqdn, e.count]),
      [
        ['tls', 'a.example', 1],
        ['tls', 'b.example', 1],
        ['connect', 'api.openai.com', 1],
        ['tls', 'api.openai.com', 1],
        ['tls', 'api.openai.com', 1],
      ],
    );
  });
});

describe('suggest and replay read the evidence', () => {
  const server = { namespace: 'obot-mcp', name: 'ms1abc-0', labels: { app: 'ms1abc' }, podIps: [], cgroupId: '7' };
  const tlsEvent = (sni: string, learnedName: string): FlowEvent =>
    flowEvent({
      workload: server,
      layer: 'tls',
      fqdn: sni,
      fqdnSource: 'sni',
      learnedName,
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
    });
  /** The connect decision of a discovery-mode flow to api.openai.com, which its evidence event replaces. */
  const discoveryConnect = (): FlowEvent =>
    flowEvent({
      workload: server,
      layer: 'connect',
      fqdn: 'api.openai.com',
      learnedName: 'api.openai.com',
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
    });
  const evidence = (sni: string): FlowEvent => ({ ...tlsEvent(sni, 'api.openai.com'), sni, firstFlight: 'client-hello', evidence: true });

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
    assert.match(fronted.reason, /SNI differs from the name its address was learned for \(api\.openai\.com\): possible domain fronting/);
    assert.equal(fronted.flows, 2);
  });

  test('from a discovery recording, suggest keeps the honest flows and leaves out the fronted ones, saying why', () => {
    const recorded = [
      discoveryConnect(),
      evidence('api.openai.com'),
      discoveryConnect(),
      evidence('api.openai.com'),
      discoveryConnect(),
      evidence('evil.example'),
    ];
    const [s] = suggestPolicies(recorded);
    assert.deepEqual(s!.domains, ['api.openai.com']);
    assert.equal(s!.flows, 3, 'each flow counted once: its evidence stands for its connect decision');
    const fronted = s!.leftOut.find((l) => l.what.startsWith('evil.example'));
    assert.match(fronted?.reason ?? '', /possible domain fronting/);
  });

  test('a name only ever sent as an SNI is left out unless honest flows learned it too; a flow that sent nothing is left out', () => {
    const sniOnly = (sni: string): FlowEvent => ({ ...tlsEvent(sni, 'x'), learnedName: undefined, sni });
    const silent: FlowEvent = { ...tlsEvent('api.openai.com', 'api.openai.com'), fqdnSource: 'dns', firstFlight: 'none', evidence: true };
    const [s] = suggestPolicies([
      sniOnly('hardcoded.example'),
      sniOnly('hardcoded.example'),
      sniOnly('api.openai.com'),
      tlsEvent('api.openai.com', 'api.openai.com'),
      silent,
    ]);
    assert.deepEqual(s!.domains, ['api.openai.com']);
    assert.match(s!.leftOut.find((l) => l.what === 'hardcoded.example')?.reason ?? '', /sniOnly/);
    assert.match(s!.leftOut.find((l) => l.what.startsWith('api.openai.com at'))?.reason ?? '', /closed before it sent a ClientHello/);
  });

  test('replay judges a webGroup rule on the SNI the evidence shows, not on the learned name of the connect', () => {
    const policies = acceptPolicies(translatorPolicy('ms1abc', { domains: ['api.openai.com'] }));
    const dns = flowEvent({
      workload: server,
      layer: 'dns',
      fqdn: 'api.openai.com',
      verdict: 'permitted',
      tier: 3,
      policy: null,
      rule: 'default-action',
      destination: { ip: '198.18.0.53', port: 53, protocol: 'udp', family: 4 },
      dns: { query: 'api.openai.com', type: 'A', rcode: 'NOERROR', answers: ['198.18.100.20'] },
    });
    const result = replay([dns, discoveryConnect(), evidence('api.openai.com'), discoveryConnect(), evidence('evil.example')], policies, {
      mode: 'enforce',
      tls: true,
      denyList: [],
      permits: [],
      dnsNames: [],
    });
    assert.deepEqual(
      result.workloads[0]!.flows.map((f) => [f.layer, f.replayed, f.assumedSni]),
      [
        ['dns', 'permitted', null],
        ['tls', 'permitted', null],
        ['tls', 'denied', null],
      ],
    );
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

// The agent's metrics as Prometheus reads them: decisions counted by their bounded labels, owners' counters mirrored
// at scrape time, and the flow series capped.
import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { AgentMetrics, MAX_FLOW_SERIES, type MetricsSources } from '../../src/metrics/metrics.js';
import { MetricsServer, type Readiness } from '../../src/metrics/server.js';
import { zeroStats } from '../../src/dns/proxy.js';
import type { DnsProxyStats } from '../../src/dns/types.js';
import { flowEvent } from './events-helpers.js';

function sources(overrides: Partial<MetricsSources> = {}): MetricsSources {
  return {
    kernel: () => ({
      eventsLost: 3n,
      eventsMalformed: 0n,
      decisionsPermitted: 10n,
      decisionsDenied: 7n,
      dnsSteered: 2n,
      flowsRefused: 0n,
      candidateOverflows: 0n,
      evidenceRead: 0n,
      firstFlightsRefused: 0n,
    }),
    flood: () => ({ suppressedByRateLimit: 1234n, droppedByReader: 5n }),
    pipeline: () => ({
      received: 9,
      emitted: 4,
      aggregated: 5,
      droppedByLimit: 0,
      kernelEventsLost: 3,
      kernelEventsMalformed: 0,
      suppressedByRateLimit: 1234,
      openAggregates: 2,
    }),
    sinks: () => ({
      'events.sinks[0].queued': 12,
      'events.sinks[0].delivered': 40,
      'events.sinks[0].failures': 2,
      'events.sinks[0].dropped': 1,
    }),
    dns: () => null,
    learned: () => ({ entries: 6, capacity: 131072 }),
    approvedFlows: () => ({ entries: 0, capacity: 262144 }),
    workloads: () => ({ enrolled: 2, capacity: 4096 }),
    policiesRejected: () => 1,
    kernelFeatures: () => ({ socketDestroy: false }),
    ...overrides,
  };
}

/** The value of one sample line `name{labels} value` in the exposition text. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('AgentMetrics', () => {
  test('decisions are counted by verdict, tier, layer, namespace, policy and rule; aggregates by their count', async () => {
    const metrics = new AgentMetrics(sources());
    metrics.observeFlow(flowEvent());
    metrics.observeFlow(flowEvent({ count: 4 }));
    metrics.observeFlow(flowEvent({ verdict: 'permitted', tier: 3, rule: 'default-action', policy: null, layer: 'tls' }));
    const { body } = await metrics.exposition();
    assert.equal(
      sample(
        body,
        'egressguard_flows_total{verdict="denied",tier="2",layer="connect",namespace="obot-mcp",policy="obot-mcp/rogue-policy",rule="deny-all"}',
      ),
      5,
    );
    assert.equal(
      sample(
        body,
        'egressguard_flows_total{verdict="permitted",tier="3",layer="tls",namespace="obot-mcp",policy="",rule="default-action"}',
      ),
      1,
    );
    assert.doesNotMatch(body, /httpbin\.org|198\.18\.100\.20|rogue"/, 'no destination, name or workload name in any label');
  });

  test('evidence is counted apart from decisions, by first flight and how the name sent compares with the learned one', async () => {
    const metrics = new AgentMetrics(sources());
    const evidence = {
      layer: 'tls' as const,
      verdict: 'permitted' as const,
      tier: 3 as const,
      policy: null,
      rule: 'default-action',
      evidence: true as const,
    };
    metrics.observeFlow(
      flowEvent({ ...evidence, sni: 'evil.example', learnedName: 'api.openai.com', firstFlight: 'client-hello', count: 2 }),
    );
    metrics.observeFlow(flowEvent({ ...evidence, sni: 'api.openai.com', learnedName: 'API.openai.com.', firstFlight: 'client-hello' }));
    metrics.observeFlow(flowEvent({ ...evidence, firstFlight: 'none' }));
    metrics.observeFlow(flowEvent({ verdict: 'permitted', tier: 3, rule: 'default-action', policy: null, count: 3 }));
    const { body } = await metrics.exposition();
    assert.equal(sample(body, 'egressguard_flow_evidence_total{first_flight="client-hello",name="differs-from-learned"}'), 2);
    assert.equal(sample(body, 'egressguard_flow_evidence_total{first_flight="client-hello",name="matches-learned"}'), 1);
    assert.equal(sample(body, 'egressguard_flow_evidence_total{first_flight="none",name="none-sent"}'), 1);
    assert.equal(sample(body, 'egressguard_default_flip_would_deny_total{namespace="obot-mcp",layer="connect"}'), 3);
    assert.doesNotMatch(body, /egressguard_flows_total\{[^}]*layer="tls"/, 'evidence is not a decision');
  });

  test('counts kept between scrapes: a scrape neither resets nor doubles them', async () => {
    const metrics = new AgentMetrics(sources());
    const series =
      'egressguard_flows_total{verdict="denied",tier="2",layer="connect",namespace="obot-mcp",policy="obot-mcp/rogue-policy",rule="deny-all"}';
    metrics.observeFlow(flowEvent({ count: 2 }));
    assert.equal(sample((await metrics.exposition()).body, series), 2);
    assert.equal(sample((await metrics.exposition()).body, series), 2);
    metrics.observeFlow(flowEvent());
    assert.equal(sample((await metrics.exposition()).body, series), 3);
  });

  test('DNS answers are counted by rcode', async () => {
    const metrics = new AgentMetrics(sources());
    metrics.observeFlow(flowEvent({ layer: 'dns', dns: { query: 'a.example', type: 'A', rcode: 'NXDOMAIN', answers: [] } }));
    metrics.observeFlow(
      flowEvent({
        layer: 'dns',
        verdict: 'permitted',
        dns: { query: 'b.example', type: 'A', rcode: 'NOERROR', answers: ['198.18.100.10'] },
      }),
    );
    const { body } = await metrics.exposition();
    assert.equal(sample(body, 'egressguard_dns_answers_total{rcode="NXDOMAIN"}'), 1);
    assert.equal(sample(body, 'egressguard_dns_answers_total{rcode="NOERROR"}'), 1);
  });

  test('DNS-over-TCP connections closed at accept are counted by the cap reached, open ones shown, read from the proxy at scrape time', async () => {
    const proxy: DnsProxyStats = {
      ...zeroStats(),
      tcpConnectionsRejected: 2,
      tcpConnectionsRejectedPerWorkload: 36,
      tcpConnectionsOpen: 5,
      droppedOverload: 3,
      droppedOverloadPerWorkload: 11,
    };
    const metrics = new AgentMetrics(sources({ dns: () => proxy }));
    const { body } = await metrics.exposition();
    assert.equal(sample(body, 'egressguard_dns_tcp_connections_rejected_total{limit="node"}'), 2);
    assert.equal(sample(body, 'egressguard_dns_tcp_connections_rejected_total{limit="workload"}'), 36);
    assert.equal(sample(body, 'egressguard_dns_tcp_connections_open'), 5);
    assert.equal(sample(body, 'egressguard_dns_queries_total{outcome="droppedOverload"}'), 3);
    assert.equal(sample(body, 'egressguard_dns_queries_total{outcome="droppedOverloadPerWorkload"}'), 11);
    proxy.tcpConnectionsRejectedPerWorkload += 4;
    assert.equal(sample((await metrics.exposition()).body, 'egressguard_dns_tcp_connections_rejected_total{limit="workload"}'), 40);
  });

  test("owners' counters are read at scrape time: kernel, flood, sinks, maps, health", async () => {
    let denied = 7n;
    const metrics = new AgentMetrics(
      sources({
        kernel: () => ({
          eventsLost: 3n,
          eventsMalformed: 0n,
          decisionsPermitted: 10n,
          decisionsDenied: denied,
          dnsSteered: 2n,
          flowsRefused: 0n,
          candidateOverflows: 4n,
          evidenceRead: 0n,
          firstFlightsRefused: 0n,
        }),
      }),
    );
    let { body } = await metrics.exposition();
    assert.equal(sample(body, 'egressguard_kernel_decisions_total{verdict="denied"}'), 7);
    assert.equal(sample(body, 'egressguard_ringbuf_events_lost_total'), 3);
    assert.equal(sample(body, 'egressguard_tls_candidate_overflows_total'), 4);
    assert.equal(sample(body, 'egressguard_events_rate_limited_total'), 1234);
    assert.equal(sample(body, 'egressguard_ringbuf_reader_dropped_total'), 5);
    assert.equal(sample(body, 'egressguard_sink_queue_depth{sink="events.sinks[0]"}'), 12);
    assert.equal(sample(body, 'egressguard_sink_delivery_failures_total{sink="events.sinks[0]"}'), 2);
    assert.equal(sample(body, 'egressguard_sink_spool_bytes{sink="events.sinks[0]"}'), undefined, 'a sink without a spool reports none');
    assert.equal(sample(body, 'egressguard_map_entries{map="learned"}'), 6);
    assert.equal(sample(body, 'egressguard_map_capacity{map="learned"}'), 131072);
    assert.equal(sample(body, 'egressguard_policies_rejected'), 1);
    assert.equal(sample(body, 'egressguard_up'), 1);
    assert.equal(sample(body, 'egressguard_kernel_feature_available{feature="socketDestroy"}'), 0);
    denied = 9n;
    ({ body } = await metrics.exposition());
    assert.equal(sample(body, 'egressguard_kernel_decisions_total{verdict="denied"}'), 9);
  });

  test('reconcile and propagation histograms', async () => {
    const metrics = new AgentMetrics(sources());
    metrics.observeReconcile(0.004, 'ok');
    metrics.observePropagation(0.3);
    metrics.observePropagation(0.007); // below the 50 ms goal: told apart from it
    const { body } = await metrics.exposition();
    assert.equal(sample(body, 'egressguard_reconcile_duration_seconds_count{outcome="ok"}'), 1);
    assert.equal(sample(body, 'egressguard_policy_propagation_seconds_bucket{le="0.5"}'), 2);
    assert.equal(sample(body, 'egressguard_policy_propagation_seconds_bucket{le="0.25"}'), 1);
    assert.equal(sample(body, 'egressguard_policy_propagation_seconds_bucket{le="0.01"}'), 1);
    assert.equal(sample(body, 'egressguard_policy_propagation_seconds_bucket{le="0.005"}'), 0);
  });

  test(`flow label sets are capped at ${MAX_FLOW_SERIES}; the rest are counted under (overflow)`, async () => {
    const metrics = new AgentMetrics(sources());
    for (let i = 0; i < MAX_FLOW_SERIES + 10; i++) metrics.observeFlow(flowEvent({ rule: `rule#${i}` }));
    const { body } = await metrics.exposition();
    const series = body.split('\n').filter((line) => line.startsWith('egressguard_flows_total{'));
    assert.equal(series.length, MAX_FLOW_SERIES + 1);
    assert.equal(sample(body, 'egressguard_flow_series_overflow_total'), 10);
    assert.equal(
      sample(
        body,
        'egressguard_flows_total{verdict="denied",tier="2",layer="connect",namespace="obot-mcp",policy="(overflow)",rule="(overflow)"}',
      ),
      10,
    );
  });
});

describe('MetricsServer', () => {
  let readiness: Readiness = { ready: true, detail: 'enforcing' };

  test('serves GET /metrics in the exposition format; other paths are 404, other methods 405', async () => {
    const server = new MetricsServer({ host: '127.0.0.1', port: 0 }, new AgentMetrics(sources()), () => readiness);
    await server.start();
    try {
      const base = `http://127.0.0.1:${server.port}`;
      const response = await fetch(`${base}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      assert.match(await response.text(), /^egressguard_up 1$/m);
      assert.equal((await fetch(`${base}/`)).status, 404);
      assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await server.stop();
    }
  });

  test('/healthz answers while the agent runs; /readyz is 200 while enforcing and 503 with the reason otherwise', async () => {
    const server = new MetricsServer({ host: '127.0.0.1', port: 0 }, new AgentMetrics(sources()), () => readiness);
    await server.start();
    try {
      const base = `http://127.0.0.1:${server.port}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      readiness = { ready: true, detail: 'enforcing (enforce): 2 workload(s), 1 policy(ies)' };
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(await ready.text(), 'enforcing (enforce): 2 workload(s), 1 policy(ies)\n');
      readiness = { ready: false, detail: 'not enforcing: no programs are pinned' };
      const unready = await fetch(`${base}/readyz`);
      assert.equal(unready.status, 503);
      assert.match(await unready.text(), /^not enforcing: no programs are pinned/);
      assert.equal((await fetch(`${base}/readyz`, { method: 'POST' })).status, 405);
    } finally {
      await server.stop();
    }
  });

  test('an address in use is a clear error naming the setting', async () => {
    const first = new MetricsServer({ host: '127.0.0.1', port: 0 }, new AgentMetrics(sources()), () => readiness);
    await first.start();
    try {
      const second = new MetricsServer({ host: '127.0.0.1', port: first.port }, new AgentMetrics(sources()), () => readiness);
      await assert.rejects(second.start(), /metrics\.listen 127\.0\.0\.1:\d+: cannot listen \(EADDRINUSE\)/);
    } finally {
      await first.stop();
    }
  });
});

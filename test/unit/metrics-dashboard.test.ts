// The shipped Grafana dashboard queries only metrics the agent exports (a renamed metric breaks this test, not a
// customer's dashboard). The integration test (test/integration/metrics.test.ts) runs every query on a real Prometheus.
import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';
import { AgentMetrics } from '../../src/metrics/metrics.js';
import { dashboardExpressions, metricNamesIn } from '../support/dashboard.js';

async function exportedNames(): Promise<Set<string>> {
  const metrics = new AgentMetrics({
    kernel: () => ({
      eventsLost: 0n,
      eventsMalformed: 0n,
      decisionsPermitted: 0n,
      decisionsDenied: 0n,
      dnsSteered: 0n,
      flowsRefused: 0n,
      candidateOverflows: 0n,
      evidenceRead: 0n,
      firstFlightsRefused: 0n,
    }),
    flood: () => ({ suppressedByRateLimit: 0n, droppedByReader: 0n }),
    pipeline: () => ({
      received: 0,
      emitted: 0,
      aggregated: 0,
      droppedByLimit: 0,
      kernelEventsLost: 0,
      kernelEventsMalformed: 0,
      suppressedByRateLimit: 0,
      openAggregates: 0,
    }),
    sinks: () => ({}),
    dns: () => null,
    learned: () => ({ entries: 0, capacity: 1 }),
    approvedFlows: () => ({ entries: 0, capacity: 1 }),
    workloads: () => ({ enrolled: 0, capacity: 1 }),
    policiesRejected: () => 0,
    kernelFeatures: () => ({ socketDestroy: true }),
  });
  const names = new Set<string>();
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
  }
  return names;
}

describe('Grafana dashboard', () => {
  test('every query names only metrics the agent exports', async () => {
    const exported = await exportedNames();
    const expressions = dashboardExpressions();
    assert.ok(expressions.length >= 10, 'the dashboard has its panels');
    for (const { panel, expr } of expressions) {
      const names = metricNamesIn(expr);
      assert.ok(names.length > 0, `panel "${panel}" queries an egressguard metric: ${expr}`);
      for (const name of names) assert.ok(exported.has(name), `panel "${panel}" uses ${name}, which the agent does not export`);
    }
  });

  test('the name extraction ignores label values and sees every metric of an expression', () => {
    assert.deepEqual(metricNamesIn('egressguard_map_entries{map="egressguard_fake"} / egressguard_map_capacity'), [
      'egressguard_map_entries',
      'egressguard_map_capacity',
    ]);
  });
});

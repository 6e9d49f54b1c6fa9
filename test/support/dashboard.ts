// The shipped Grafana dashboard's queries, for the unit test (metric names) and the Prometheus integration test.
import { readFileSync } from 'node:fs';
import { METRIC_PREFIX } from '../../src/metrics/metrics.js';

const DASHBOARD_PATH = new URL('../../../docs/grafana/egressguard.json', import.meta.url);

interface Dashboard {
  panels: { title: string; targets: { expr: string }[] }[];
}

export function dashboardExpressions(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
  return dashboard.panels.flatMap((panel) => panel.targets.map((target) => ({ panel: panel.title, expr: target.expr })));
}

/** Metric names in a PromQL expression: identifiers with the agent's prefix, outside label matchers' quoted values. */
export function metricNamesIn(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...unquoted.matchAll(new RegExp(`\\b${METRIC_PREFIX}[a-zA-Z0-9_]+`, 'g'))].map((match) => match[0]);
}

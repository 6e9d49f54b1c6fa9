// Prometheus metrics through the whole product: the CLI agent in the lab serves /metrics, a real Prometheus server
// (Debian's) scrapes it, and PromQL over Prometheus' HTTP API returns the counters of a scripted scenario: permitted
// and denied connects, a denied DNS name, a policy edit. Every query of the shipped Grafana dashboard runs too.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import type { DnsProbeResult, TcpProbeResult } from '../../lab/probe-result.js';
import { CONFIG_DEFAULTS } from '../../src/agent/config.js';
import { ATTACKER, HTTPBIN, POLICY_NAME, POLICY_NAMESPACE, decisionPolicy } from '../support/decision-lab.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { dashboardExpressions } from '../support/dashboard.js';
import { PrometheusServer } from '../support/prometheus.js';

const APP = { pod: 'app', namespace: POLICY_NAMESPACE, name: 'app', labels: { app: 'obs' } };
const POLICY = `${POLICY_NAMESPACE}/${POLICY_NAME}`;

describe('metrics scraped by a real Prometheus', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;
  let prometheus: PrometheusServer | undefined;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('me'), pods: [APP.pod] });
    agent = new LabAgent(lab, { workloads: [APP], mode: 'enforce', aggregateWindowMs: 100 });
    agent.writePolicy('obs.yaml', decisionPolicy);
    await agent.start();
    await agent.waitForPolicies([POLICY_NAME]);
    // The agent's default metrics address, inside the lab's node namespace.
    prometheus = await PrometheusServer.start(lab, CONFIG_DEFAULTS.metrics.listen);
    await prometheus.waitForValue('up{job="egressguard"}', 1);
  }, 90_000);

  afterAll(async () => {
    try {
      await prometheus?.stop();
      await agent?.teardown();
    } finally {
      await lab?.destroy();
    }
  });

  test('after permitted and denied connects and a denied name, PromQL returns exactly those counts', async () => {
    for (let i = 0; i < 2; i++) assert.equal(((await lab.probe(APP.pod, ['tcp', HTTPBIN.ipv4, '8443'])) as TcpProbeResult).ok, true);
    for (let i = 0; i < 3; i++) assert.equal(((await lab.probe(APP.pod, ['tcp', ATTACKER.ipv4, '8443'])) as TcpProbeResult).error, 'EPERM');
    const dns = (await lab.probe(APP.pod, ['dns', ATTACKER.name, '--server', lab.addresses.dnsProxy.ipv4])) as DnsProbeResult;
    assert.equal(dns.rcode, 'NXDOMAIN');

    const flows = (verdict: string, rule: string) =>
      `sum(egressguard_flows_total{layer="connect",verdict="${verdict}",tier="2",namespace="${APP.namespace}",policy="${POLICY}",rule="${rule}"})`;
    await prometheus!.waitForValue(flows('permitted', 'allow-httpbin'), 2);
    await prometheus!.waitForValue(flows('denied', 'deny-all'), 3);
    await prometheus!.waitForValue('sum(egressguard_dns_answers_total{rcode="NXDOMAIN"})', 1);
    await prometheus!.waitForValue(`sum(egressguard_flows_total{layer="dns",verdict="denied",namespace="${APP.namespace}"})`, 1);
    assert.ok((await prometheus!.value('egressguard_kernel_decisions_total{verdict="denied"}'))! >= 3);
    assert.equal(await prometheus!.value('egressguard_map_entries{map="workloads"}'), 1);
    assert.equal(await prometheus!.value('egressguard_map_capacity{map="workloads"}'), 4096);
    assert.equal(await prometheus!.value('egressguard_sink_dropped_total{sink="events.sinks[0]"}'), 0);
    assert.equal(await prometheus!.value('egressguard_ringbuf_events_lost_total'), 0);
    assert.equal(await prometheus!.value('egressguard_up'), 1);
  });

  test('a policy edit is timed from the file change to enforcement; reconcile passes are timed', async () => {
    const before = (await prometheus!.value('egressguard_policy_propagation_seconds_count')) ?? 0;
    agent.writePolicy('obs.yaml', decisionPolicy.replace('port: 8443', 'port: 8443\n      # edited'));
    await prometheus!.waitUntil(
      'a propagation sample',
      async () => ((await prometheus!.value('egressguard_policy_propagation_seconds_count')) ?? 0) > before,
    );
    const seconds = await prometheus!.value('egressguard_policy_propagation_seconds_sum');
    assert.ok(seconds !== null && seconds >= 0 && seconds < 30, `propagation ${seconds} s`);
    assert.ok(((await prometheus!.value('sum(egressguard_reconcile_duration_seconds_count{outcome="ok"})')) ?? 0) >= 1);
  });

  test('every query of the Grafana dashboard is valid PromQL and the decision panels have data', async () => {
    for (const { panel, expr } of dashboardExpressions()) {
      const concrete = expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
      const result = await prometheus!.query(concrete);
      if (panel === 'Decisions by verdict' || panel === 'Kernel map occupancy') assert.ok(result.length > 0, `panel "${panel}" has data`);
    }
  });
});

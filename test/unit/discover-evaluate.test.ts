// The userspace evaluation (replay, explain) on the kernel's semantics; test/integration/discover.test.ts holds it
// against the kernel itself. Also replay over recorded events and diff between two policy sets.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { diffPolicies, formatDiff, workloadsSelectedBy } from '../../src/discover/diff.js';
import { evaluateFlow, type EvaluationContext, type FlowQuery } from '../../src/discover/evaluate.js';
import { formatReplay, replay } from '../../src/discover/replay.js';
import { explainFlow, snapshotFromFiles } from '../../src/discover/ruleset.js';
import { compileForWorkload } from '../../src/policy/compile.js';
import { parseCidr } from '../../src/policy/cidr.js';
import type { Cidr } from '../../src/policy/types.js';
import type { FlowEvent } from '../../src/events/types.js';
import { flowEvent } from './events-helpers.js';
import { acceptPolicies, policyWith, translatorPolicy } from './policy-helpers.js';

const SERVER = { namespace: 'obot-mcp', name: 'ms1abc-0', labels: { app: 'ms1abc' }, podIps: [], cgroupId: '1' };
const ENFORCE: EvaluationContext = { mode: 'enforce', tls: true, denyList: [], permits: [] };
const OPENAI = '198.18.100.10';
const policies = acceptPolicies(translatorPolicy('ms1abc', { domains: ['api.openai.com'] }));
const rules = compileForWorkload(policies, SERVER);
const allow = rules.find((r) => r.name === 'allow-approved-egress')!;

function query(overrides: Partial<FlowQuery> = {}): FlowQuery {
  return {
    ip: OPENAI,
    port: 443,
    protocol: 'tcp',
    firstFlight: { clientHello: true, sni: 'api.openai.com' },
    learnedFor: new Set([allow.ruleId]),
    ...overrides,
  };
}

const cidr = (text: string) => parseCidr(text) as Cidr;

describe('evaluateFlow', () => {
  test('a learned address and a matching SNI: the webGroup rule permits at the ClientHello', () => {
    const e = evaluateFlow(rules, query(), ENFORCE);
    assert.deepEqual([e.verdict, e.layer, e.tier, e.rule?.name], ['permitted', 'tls', 2, 'allow-approved-egress']);
  });

  test('domain fronting (learned address, other SNI) falls to the next rule at the ClientHello', () => {
    const e = evaluateFlow(rules, query({ firstFlight: { clientHello: true, sni: 'evil.example' } }), ENFORCE);
    assert.deepEqual([e.verdict, e.layer, e.rule?.name], ['denied', 'tls', 'deny-all-external']);
    assert.match(e.reason, /the ClientHello names evil\.example, which no TLS candidate accepts/);
  });

  test('no ClientHello, or no SNI, matches no webGroup rule', () => {
    for (const firstFlight of [{ clientHello: false } as const, { clientHello: true, sni: null } as const])
      assert.equal(evaluateFlow(rules, query({ firstFlight }), ENFORCE).rule?.name, 'deny-all-external');
  });

  test('an address not learned for the names is decided at connect by the deny rule', () => {
    const e = evaluateFlow(rules, query({ learnedFor: new Set() }), ENFORCE);
    assert.deepEqual([e.verdict, e.layer, e.rule?.name], ['denied', 'connect', 'deny-all-external']);
    assert.match(e.steps[0]!.why, /not learned for its names \(api\.openai\.com\)/);
  });

  test('without TLS checks the learned address alone decides the webGroup rule', () => {
    const e = evaluateFlow(rules, query({ firstFlight: { clientHello: false } }), { ...ENFORCE, tls: false });
    assert.deepEqual([e.verdict, e.layer, e.rule?.name], ['permitted', 'connect', 'allow-approved-egress']);
  });

  test('tier 0 and tier 1 come first; the longest baseline prefix decides or nothing does', () => {
    const entry = (name: string, text: string, protocol: 'tcp' | 'any', low = 0, high = 65535) => ({
      name,
      cidr: cidr(text),
      protocol,
      portLow: low,
      portHigh: high,
    });
    const context: EvaluationContext = {
      ...ENFORCE,
      denyList: [entry('threat', '198.18.100.66/32', 'any')],
      permits: [entry('wide', '198.18.0.0/15', 'any'), entry('narrow-dns', '198.18.100.0/24', 'tcp', 53, 53)],
    };
    assert.deepEqual(
      [evaluateFlow(rules, query({ ip: '198.18.100.66' }), context)].map((e) => [e.verdict, e.tier, e.ruleName]),
      [['denied', 0, 'threat']],
    );
    // 198.18.100.10 lies in both permits: the /24 is looked up, its port does not match, so tier 2 decides.
    assert.equal(evaluateFlow(rules, query(), context).tier, 2);
    assert.deepEqual(
      [evaluateFlow(rules, query({ port: 53 }), context)].map((e) => [e.verdict, e.tier, e.ruleName]),
      [['permitted', 1, 'narrow-dns']],
    );
  });

  test('watch rules report and do not decide; discovery mode permits what no rule decides', () => {
    const watched = compileForWorkload(
      acceptPolicies(
        policyWith({
          smartGroups: `    - name: anywhere
      selectors: [{ cidr: 0.0.0.0/0 }, { cidr: "::/0" }]`,
          rules: `    - name: watch-deny
      action: deny
      protocol: any
      watch: true
      selector: { matchLabels: { app: ms1abc } }
      destinationSmartGroups: [{ name: anywhere }]`,
        }).replace(/namespace: [a-z-]+/, 'namespace: obot-mcp'),
      ),
      SERVER,
    );
    assert.equal(watched.length, 1);
    const e = evaluateFlow(watched, query({ ip: 'fd00:eb:100::10', learnedFor: new Set() }), { ...ENFORCE, mode: 'discovery' });
    assert.deepEqual([e.verdict, e.tier, e.ruleName], ['permitted', 3, 'default-action']);
    assert.deepEqual(
      e.watched.map((w) => [w.rule.name, w.verdict]),
      [['watch-deny', 'would-deny']],
    );
  });
});

const discovery = (overrides: Partial<FlowEvent>): FlowEvent =>
  flowEvent({ workload: SERVER, verdict: 'permitted', tier: 3, policy: null, rule: 'default-action', ...overrides });

describe('replay', () => {
  const recorded: FlowEvent[] = [
    discovery({
      layer: 'dns',
      fqdn: 'api.openai.com',
      destination: { ip: '198.18.0.53', port: 53, protocol: 'udp', family: 4 },
      dns: { query: 'api.openai.com', type: 'A', rcode: 'NOERROR', answers: [OPENAI] },
    }),
    discovery({ fqdn: 'api.openai.com', destination: { ip: OPENAI, port: 443, protocol: 'tcp', family: 4 }, count: 3 }),
    discovery({
      layer: 'dns',
      fqdn: 'httpbin.org',
      destination: { ip: '198.18.0.53', port: 53, protocol: 'udp', family: 4 },
      dns: { query: 'httpbin.org', type: 'A', rcode: 'NOERROR', answers: ['198.18.100.20'] },
    }),
    discovery({ fqdn: 'httpbin.org', destination: { ip: '198.18.100.20', port: 443, protocol: 'tcp', family: 4 } }),
    discovery({ verdict: 'would-deny', tier: 2, rule: 'watch' }),
  ];

  test('a discovery recording replayed against an allowlist: what stays permitted, what would be denied, and the assumption made', () => {
    const result = replay(recorded, policies, { ...ENFORCE, dnsNames: [] });
    assert.equal(result.workloads.length, 1);
    const flows = result.workloads[0]!.flows;
    assert.deepEqual(
      flows.map((f) => [f.event.layer, f.event.fqdn, f.replayed, f.rule, f.layer]),
      [
        ['dns', 'api.openai.com', 'permitted', 'obot-mcp/obot-ms1abc-fw:allow-approved-egress', 'dns'],
        ['connect', 'api.openai.com', 'permitted', 'obot-mcp/obot-ms1abc-fw:allow-approved-egress', 'tls'],
        ['dns', 'httpbin.org', 'denied', 'obot-mcp/obot-ms1abc-fw:deny-all-external', 'dns'],
        ['connect', 'httpbin.org', 'denied', 'obot-mcp/obot-ms1abc-fw:deny-all-external', 'connect'],
      ],
    );
    assert.equal(flows[1]!.assumedSni, 'api.openai.com');
    assert.deepEqual(result.skipped, [{ reason: 'watch-rule reports (would-permit/would-deny) of the recorded rules', count: 1 }]);
    const text = formatReplay(result);
    assert.match(text, /workload obot-mcp\/ms1abc-0: 6 decisions replayed: 4 permitted, 2 denied; 2 differ from the recording/);
    assert.match(text, /CHANGED .* httpbin\.org 198\.18\.100\.20:443\/tcp: recorded permitted \(tier 3 default-action\), replayed denied/);
    assert.match(text, /their resolved name was taken as the SNI \(e\.g\. api\.openai\.com\)/);
  });

  test('an SNI the kernel recorded decides, not the resolved name', () => {
    const fronted = discovery({
      layer: 'tls',
      fqdn: 'evil.example',
      fqdnSource: 'sni',
      destination: { ip: OPENAI, port: 443, protocol: 'tcp', family: 4 },
    });
    const result = replay([recorded[0]!, fronted], policies, { ...ENFORCE, dnsNames: [] });
    const flow = result.workloads[0]!.flows[1]!;
    assert.deepEqual([flow.replayed, flow.rule, flow.assumedSni], ['denied', 'obot-mcp/obot-ms1abc-fw:deny-all-external', null]);
  });
});

describe('explain from files', () => {
  const snapshot = snapshotFromFiles(
    {
      file: 'egressguard.yaml',
      baseline: { mode: 'enforce', denyList: [], permits: [], dnsNames: ['cluster.local'] },
      enforcement: { tls: true },
      workloads: [SERVER],
    },
    policies,
  );

  test('a name: the DNS answer is learned for the webGroup rule and the SNI decides', () => {
    const e = explainFlow(snapshot, { workload: 'ms1abc-0', destination: 'api.openai.com', address: OPENAI, port: 443, protocol: 'tcp' });
    assert.deepEqual(e.dns?.learnedFor, ['obot-mcp/obot-ms1abc-fw:allow-approved-egress']);
    assert.deepEqual([e.evaluation.verdict, e.evaluation.layer, e.evaluation.rule?.name], ['permitted', 'tls', 'allow-approved-egress']);
  });

  test('an address alone is not learned for any name; a fronted SNI is denied', () => {
    assert.equal(
      explainFlow(snapshot, { workload: 'obot-mcp/ms1abc-0', destination: OPENAI, port: 443, protocol: 'tcp' }).evaluation.layer,
      'connect',
    );
    const fronted = explainFlow(snapshot, {
      workload: 'ms1abc-0',
      destination: 'api.openai.com',
      address: OPENAI,
      port: 443,
      protocol: 'tcp',
      sni: 'evil.example',
    });
    assert.deepEqual([fronted.evaluation.verdict, fronted.evaluation.layer], ['denied', 'tls']);
  });

  test('an unknown workload names the ones there are', () => {
    assert.throws(
      () => explainFlow(snapshot, { workload: 'nope', destination: OPENAI, port: 443, protocol: 'tcp' }),
      /workload "nope" is not in egressguard\.yaml; known: obot-mcp\/ms1abc-0/,
    );
  });
});

describe('diff', () => {
  test('per workload: rules changed and names newly allowed, from the compiled rules', () => {
    const after = acceptPolicies(translatorPolicy('ms1abc', { domains: ['api.anthropic.com', 'api.openai.com'] }));
    const denyAll = acceptPolicies(translatorPolicy('ms1abc', {}));
    const workloads = workloadsSelectedBy(policies, after);
    assert.deepEqual(
      workloads.map((w) => w.key),
      ['obot-mcp pods with app=ms1abc'],
    );
    const [widened] = diffPolicies(policies, after, workloads);
    assert.deepEqual(widened!.namesAllowed, ['api.anthropic.com']);
    assert.deepEqual(widened!.changed, [
      'obot-mcp/obot-ms1abc-fw:allow-approved-egress: names api.openai.com -> api.anthropic.com, api.openai.com',
    ]);
    const [closed] = diffPolicies(policies, denyAll, workloads);
    assert.deepEqual(closed!.namesNoLongerAllowed, ['api.openai.com']);
    assert.match(
      formatDiff([closed!]),
      /- obot-mcp\/obot-ms1abc-fw:allow-approved-egress {2}permit tcp\/443 to any names api\.openai\.com/,
    );
    assert.match(formatDiff(diffPolicies(policies, policies, workloads)), /unchanged/);
  });
});

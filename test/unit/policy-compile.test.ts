import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'vitest';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { compileForWorkload, compilePolicy, compilePolicyForWorkload } from '../../src/policy/compile.js';
import { hostModeResolver, type DestinationResolver } from '../../src/policy/destination-resolver.js';
import { dnsDecision } from '../../src/policy/domains.js';
import type { CompiledRule } from '../../src/policy/types.js';
import { acceptPolicies, fixturesDir, policyWith, translatorPolicy } from './policy-helpers.js';

const labPolicies = acceptPolicies(
  ['benign-mcp-fw.yaml', 'rogue-mcp-fw.yaml'].map((f) => readFileSync(join(fixturesDir, f), 'utf8')).join('---\n'),
);
const benign = { namespace: 'obot-mcp', labels: { app: 'ms1kbsng', 'mcp-user-id': 'u1' } };
const rogue = { namespace: 'obot-mcp', labels: { app: 'pt5rfqaz', 'mcp-user-id': 'u2' } };

function names(rules: CompiledRule[]): string[] {
  return rules.map((r) => `${r.policy.name}/${r.name}`);
}

describe('compileForWorkload: the lab policies', () => {
  test('the benign server gets allow-openai then deny-all', () => {
    const rules = compileForWorkload(labPolicies, benign);
    assert.deepEqual(names(rules), ['benign-mcp-fw/allow-openai', 'benign-mcp-fw/deny-all']);
    const [allow, deny] = rules;
    assert.deepEqual(allow, {
      ruleId: ruleIdFor('obot-mcp', 'benign-mcp-fw', 'allow-openai'),
      policy: { namespace: 'obot-mcp', name: 'benign-mcp-fw', generation: 1 },
      name: 'allow-openai',
      action: 'permit',
      protocol: 'tcp',
      portLow: 443,
      portHigh: 443,
      cidrs: [{ family: 4, address: '0.0.0.0', prefix: 0 }],
      // any-destination in a webGroup rule: the learned A and AAAA addresses decide, in both families.
      anyDestination: true,
      domains: [{ kind: 'exact', name: 'api.openai.com' }],
      watch: false,
      logging: true,
      tlsRequired: false,
      notEnforced: [],
      active: true,
    });
    assert.equal(deny?.action, 'deny');
    assert.equal(deny?.protocol, 'any');
    assert.deepEqual([deny?.portLow, deny?.portHigh], [0, 65535]);
    assert.equal(deny?.domains, null);
  });

  test('the rogue server gets deny-all only', () => {
    assert.deepEqual(names(compileForWorkload(labPolicies, rogue)), ['rogue-mcp-fw/deny-all']);
  });

  test('workloads that no rule selects, or in another namespace, get nothing (tier 3 decides)', () => {
    assert.deepEqual(compileForWorkload(labPolicies, { namespace: 'obot-mcp', labels: { app: 'sms1system' } }), []);
    assert.deepEqual(compileForWorkload(labPolicies, { namespace: 'other', labels: { app: 'ms1kbsng' } }), []);
    assert.deepEqual(compileForWorkload(labPolicies, { namespace: 'obot-mcp', labels: {} }), []);
  });

  test('DNS: benign may resolve api.openai.com (learned for allow-openai), nothing else', () => {
    const rules = compileForWorkload(labPolicies, benign);
    const allowed = dnsDecision(rules, 'API.OpenAI.com.');
    assert.equal(allowed.action, 'permit');
    assert.equal(allowed.rule?.name, 'allow-openai');
    assert.deepEqual(
      allowed.learnFor.map((r) => r.name),
      ['allow-openai'],
    );
    const denied = dnsDecision(rules, 'httpbin.org');
    assert.equal(denied.action, 'deny');
    assert.equal(denied.rule?.name, 'deny-all');
    assert.deepEqual(denied.learnFor, []);
  });

  test('DNS: rogue is denied every name by deny-all', () => {
    const rules = compileForWorkload(labPolicies, rogue);
    for (const name of ['httpbin.org', 'webhook.site', 'api.openai.com', 'x.tunnel.attacker.example']) {
      assert.equal(dnsDecision(rules, name).rule?.name, 'deny-all', name);
    }
  });
});

describe('compileForWorkload: the translator shapes', () => {
  const workload = { namespace: 'obot-mcp', labels: { app: 'ms1abc' } };

  test('allowlist: wildcard entries match subdomains, not the apex; the rest is denied', () => {
    const rules = compileForWorkload(
      acceptPolicies(translatorPolicy('ms1abc', { domains: ['*.githubusercontent.com', 'api.github.com'] })),
      workload,
    );
    assert.deepEqual(
      rules.map((r) => r.name),
      ['allow-approved-egress', 'deny-all-external'],
    );
    assert.equal(dnsDecision(rules, 'raw.githubusercontent.com').action, 'permit');
    assert.equal(dnsDecision(rules, 'a.b.githubusercontent.com').action, 'permit');
    assert.equal(dnsDecision(rules, 'githubusercontent.com').action, 'deny');
    assert.equal(dnsDecision(rules, 'api.github.com').action, 'permit');
    assert.equal(dnsDecision(rules, 'github.com').action, 'deny');
  });

  test('deny all: one deny rule covering every name', () => {
    const rules = compileForWorkload(acceptPolicies(translatorPolicy('ms1abc', {})), workload);
    assert.deepEqual(
      rules.map((r) => [r.name, r.action]),
      [['deny-all-external', 'deny']],
    );
    assert.equal(dnsDecision(rules, 'anything.example').action, 'deny');
  });

  test('allow all (*): every name permitted and learned', () => {
    const rules = compileForWorkload(acceptPolicies(translatorPolicy('ms1abc', { domains: ['*'] })), workload);
    const decision = dnsDecision(rules, 'anything.example');
    assert.equal(decision.action, 'permit');
    assert.deepEqual(
      decision.learnFor.map((r) => r.name),
      ['allow-approved-egress'],
    );
  });

  test('a deny narrower than every protocol and port does not hide names a later rule permits', () => {
    const text = policyWith({
      rules: `    - name: deny-udp
      action: deny
      protocol: udp
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
    - name: allow
      action: permit
      protocol: tcp
      port: 443
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
      webGroups: [{name: approved}]
    - name: deny-all
      action: deny
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]`,
    });
    const rules = compileForWorkload(acceptPolicies(text), { namespace: 'obot-mcp', labels: { app: 'a1' } });
    assert.equal(dnsDecision(rules, 'api.example.com').rule?.name, 'allow');
    assert.equal(dnsDecision(rules, 'other.example').rule?.name, 'deny-all');
  });

  test('a policy for another server does not select this one', () => {
    assert.deepEqual(compileForWorkload(acceptPolicies(translatorPolicy('ms1other', {})), workload), []);
  });
});

describe('ordering and selection', () => {
  const policy = (name: string, rules: string): string => policyWith({ metadata: `  name: ${name}\n  namespace: team`, rules });
  const rule = (name: string, action: string, labels: string, extra = ''): string =>
    `    - name: ${name}\n      action: ${action}\n      selector: {matchLabels: ${labels}}\n      destinationSmartGroups: [{name: any-destination}]\n${extra}`;

  test('first match wins across two policies in (namespace, name) order, rules in array order', () => {
    // Declared b-policy first: order comes from names, not from the file.
    const policies = acceptPolicies(
      `${policy('b-policy', rule('b-deny', 'deny', '{}'))}---\n${policy('a-policy', `${rule('a-permit', 'permit', '{app: x}', '      webGroups: [{name: approved}]')}\n${rule('a-second', 'permit', '{app: x, tier: web}')}`)}`,
    );
    const rules = compileForWorkload(policies, { namespace: 'team', labels: { app: 'x', tier: 'web' } });
    assert.deepEqual(names(rules), ['a-policy/a-permit', 'a-policy/a-second', 'b-policy/b-deny']);
    assert.equal(dnsDecision(rules, 'api.example.com').rule?.name, 'a-permit');
    // a-second is a 0.0.0.0/0 permit without webGroups: it covers every other name before b-deny.
    assert.equal(dnsDecision(rules, 'other.example').rule?.name, 'a-second');
    const narrower = compileForWorkload(policies, { namespace: 'team', labels: { app: 'x' } });
    assert.deepEqual(names(narrower), ['a-policy/a-permit', 'b-policy/b-deny']);
    assert.equal(dnsDecision(narrower, 'other.example').rule?.name, 'b-deny');
  });

  test('matchLabels must be a subset of the workload labels; {} selects every pod', () => {
    const policies = acceptPolicies(policy('p', `${rule('all', 'deny', '{}')}\n${rule('two', 'deny', '{app: x, env: prod}')}`));
    assert.deepEqual(names(compileForWorkload(policies, { namespace: 'team', labels: { app: 'x' } })), ['p/all']);
    assert.deepEqual(names(compileForWorkload(policies, { namespace: 'team', labels: { app: 'x', env: 'prod', more: '1' } })), [
      'p/all',
      'p/two',
    ]);
    assert.deepEqual(names(compileForWorkload(policies, { namespace: 'team', labels: { app: 'x', env: 'dev' } })), ['p/all']);
  });

  test('service selectors select no workload', () => {
    const policies = acceptPolicies(policy('p', rule('svc', 'deny', '{}').replace('{matchLabels: {}}', '{service: api}')));
    assert.deepEqual(compileForWorkload(policies, { namespace: 'team', labels: { app: 'api' } }), []);
  });
});

describe('dnsDecision semantics', () => {
  const smartGroups = `    - name: any-destination
      selectors: [{cidr: 0.0.0.0/0}]
    - name: any6
      selectors: [{cidr: '::/0'}]
    - name: corp
      selectors: [{cidr: 198.18.0.0/16}, {cidr: 'fd00:eb::/32'}]
    - name: pods
      selectors: [{type: k8s, tags: {app: y}}]`;
  const compile = (rules: string): CompiledRule[] =>
    compileForWorkload(acceptPolicies(policyWith({ smartGroups, rules })), { namespace: 'obot-mcp', labels: { app: 'a1' } });
  const rule = (name: string, action: string, dest: string, extra = ''): string =>
    `    - name: ${name}\n      action: ${action}\n      selector: {matchLabels: {}}\n      destinationSmartGroups: [{name: ${dest}}]\n${extra}`;
  const web = '      webGroups: [{name: approved}]';

  test('narrow CIDR rules do not cover names; /0 in either family does', () => {
    assert.equal(dnsDecision(compile(rule('corp', 'permit', 'corp')), 'api.example.com').action, 'default');
    assert.equal(dnsDecision(compile(rule('v6', 'deny', 'any6')), 'api.example.com').rule?.name, 'v6');
  });

  test('IPv4 and IPv6 CIDRs are normalised and kept together', () => {
    const [corp] = compile(rule('corp', 'permit', 'corp'));
    assert.deepEqual(corp?.cidrs, [
      { family: 4, address: '198.18.0.0', prefix: 16 },
      { family: 6, address: 'fd00:eb::', prefix: 32 },
    ]);
  });

  test('watch and inactive rules never decide, but watch web rules still learn', () => {
    const rules = compile(
      `${rule('watched', 'deny', 'any-destination', `${web}\n      watch: true`)}\n${rule('inactive', 'permit', 'pods')}\n${rule('allow', 'permit', 'any-destination', web)}`,
    );
    assert.equal(rules[1]?.active, false);
    const decision = dnsDecision(rules, 'api.example.com');
    assert.equal(decision.rule?.name, 'allow');
    assert.deepEqual(
      decision.learnFor.map((r) => r.name),
      ['watched', 'allow'],
    );
  });

  test('a deny web rule before a permit decides; the shadowed permit learns nothing for the name', () => {
    const rules = compile(`${rule('deny-web', 'deny', 'any-destination', web)}\n${rule('allow-web', 'permit', 'any-destination', web)}`);
    const decision = dnsDecision(rules, 'API.EXAMPLE.COM');
    assert.equal(decision.action, 'deny');
    assert.deepEqual(
      decision.learnFor.map((r) => r.name),
      ['deny-web'],
    );
  });

  test('a deny rule with an unsupported destination covers every name (never widens access)', () => {
    const rules = compile(`${rule('deny-pods', 'deny', 'pods')}\n${rule('allow', 'permit', 'any-destination', web)}`);
    assert.equal(rules[0]?.anyDestination, true);
    assert.equal(dnsDecision(rules, 'api.example.com').rule?.name, 'deny-pods');
  });

  test('a permit rule with only a uuid webGroup is inactive and does not permit names', () => {
    const rules = compile(`${rule('uuid-web', 'permit', 'any-destination', '      webGroups: [{uuid: wg-1234}]')}`);
    assert.equal(rules[0]?.active, false);
    assert.equal(dnsDecision(rules, 'api.example.com').action, 'default');
  });

  test('no covering rule gives default', () => {
    const decision = dnsDecision(compile(rule('allow', 'permit', 'any-destination', web)), 'other.example.com');
    assert.deepEqual(decision, { action: 'default', rule: null, learnFor: [] });
  });
});

describe('the compiler takes destination resolution as a parameter', () => {
  const text = policyWith({
    smartGroups: `    - name: any-destination
      selectors: [{cidr: 0.0.0.0/0}]
    - name: pods
      selectors: [{type: k8s, k8sNamespace: obot-mcp, tags: {app: db}}]`,
    rules: `    - name: permit-pods
      action: permit
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: pods}]
    - name: permit-api
      action: permit
      selector: {service: api}
      destinationSmartGroups: [{name: any-destination}]
    - name: deny-pods
      action: deny
      selector: {matchLabels: {}}
      destinationSmartGroups: [{name: pods}]`,
  });
  const [policy] = acceptPolicies(text);
  const workload = { namespace: 'obot-mcp', labels: { app: 'a1' } };
  // What Kubernetes mode will do: pod selectors become the pods' addresses, services their pod selector.
  const asked: string[] = [];
  const kubernetes: DestinationResolver = {
    resolve(selector, namespace) {
      asked.push(`${namespace}:${selector.type ?? selector.cidr ?? ''}`);
      if (selector.type === 'k8s') return { cidrs: [{ family: 4, address: '198.18.7.1', prefix: 32 }] };
      return hostModeResolver.resolve(selector, namespace);
    },
    resolveService: (service) => (service === 'api' ? { matchLabels: { app: 'a1' } } : { unsupported: 'names no Service' }),
  };

  test('host mode (the default): k8s destinations are unsupported, service selectors select nothing', () => {
    const rules = compileForWorkload(policy ? [policy] : [], workload);
    assert.deepEqual(
      rules.map((r) => [r.name, r.active, r.anyDestination, r.cidrs.length]),
      [
        ['permit-pods', false, false, 0],
        ['deny-pods', true, true, 0],
      ],
    );
    assert.match(rules[0]?.notEnforced.join() ?? '', /smartGroup "pods" selects by type k8s, which host mode cannot resolve/);
    const findings = compilePolicy(policy!).diagnostics.map((d) => `${d.location.field}: ${d.message}`);
    assert.deepEqual(findings, [
      'spec.rules[0].destinationSmartGroups[0]: smartGroup "pods" selects by type k8s, which host mode cannot resolve to addresses (dropped from this permit rule): not enforced',
      'spec.rules[1].selector.service: service selector "api" cannot be resolved in host mode, so the rule selects no workload: not enforced',
      'spec.rules[2].destinationSmartGroups[0]: smartGroup "pods" selects by type k8s, which host mode cannot resolve to addresses (this deny rule applies to every destination): not enforced',
    ]);
  });

  test('another resolver changes the compiled rules, not validation', () => {
    const rules = compileForWorkload(policy ? [policy] : [], workload, kubernetes);
    assert.deepEqual(
      rules.map((r) => [r.name, r.active, r.anyDestination, r.cidrs, r.notEnforced]),
      [
        ['permit-pods', true, false, [{ family: 4, address: '198.18.7.1', prefix: 32 }], []],
        ['permit-api', true, false, [{ family: 4, address: '0.0.0.0', prefix: 0 }], []],
        ['deny-pods', true, false, [{ family: 4, address: '198.18.7.1', prefix: 32 }], []],
      ],
    );
    assert.deepEqual(compilePolicy(policy!, kubernetes).diagnostics, []);
    assert.ok(
      asked.every((entry) => entry.startsWith('obot-mcp:')),
      'selectors are resolved in the policy namespace',
    );
  });

  test('compilePolicyForWorkload: per-policy results concatenated in (namespace, name) order equal compileForWorkload', () => {
    const policies = acceptPolicies(
      [translatorPolicy('a1', { domains: ['a.example.com'] }), translatorPolicy('a1', {}).replace('obot-a1-fw', 'zz-a1-fw'), text].join(
        '---\n',
      ),
    );
    const sorted = [...policies].sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const resolver of [hostModeResolver, kubernetes]) {
      const perPolicy = sorted.flatMap((p) => compilePolicyForWorkload(p, workload, resolver));
      assert.deepEqual(perPolicy, compileForWorkload(policies, workload, resolver));
      assert.ok(perPolicy.length >= 3);
    }
    assert.deepEqual(compilePolicyForWorkload(policies[0]!, { namespace: 'other', labels: { app: 'a1' } }), []);
  });
});

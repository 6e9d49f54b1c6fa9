// Suggestions: the translator's shapes, evidence thresholds, wildcard grouping only on evidence, and what is left out.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { suggestPolicies, DEFAULT_SUGGEST_OPTIONS } from '../../src/discover/suggest.js';
import { compileForWorkload } from '../../src/policy/compile.js';
import { lintFiles } from '../../src/policy/lint.js';
import type { FlowEvent } from '../../src/events/types.js';
import { flowEvent } from './events-helpers.js';
import { acceptPolicies, translatorPolicy } from './policy-helpers.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SERVER = { namespace: 'obot-mcp', name: 'ms1abc-0', labels: { app: 'ms1abc', 'mcp-user-id': 'u1' }, podIps: [], cgroupId: '1' };

function flowTo(fqdn: string | null, overrides: Partial<FlowEvent> = {}): FlowEvent {
  return flowEvent({
    workload: SERVER,
    fqdn,
    fqdnSource: fqdn ? 'dns' : 'none',
    verdict: 'permitted',
    tier: 3,
    policy: null,
    rule: 'default-action',
    ...overrides,
  });
}

const twice = (fqdn: string | null, overrides: Partial<FlowEvent> = {}) => [flowTo(fqdn, overrides), flowTo(fqdn, overrides)];

/** The compiled meaning of a manifest for the server: what the kernel would get, names aside. */
function meaning(yaml: string) {
  return compileForWorkload(acceptPolicies(yaml), SERVER).map((r) => ({
    action: r.action,
    protocol: r.protocol,
    ports: [r.portLow, r.portHigh],
    cidrs: r.cidrs,
    anyDestination: r.anyDestination,
    domains: r.domains,
    logging: r.logging,
  }));
}

describe('suggest', () => {
  test('names seen more than once on TCP 443 give the translator allowlist, exactly as the translator writes it', () => {
    const [s] = suggestPolicies([...twice('api.openai.com'), ...twice('Api.Anthropic.com.'), ...twice('api.openai.com')]);
    assert.ok(s);
    assert.equal(s.name, 'obot-ms1abc-fw');
    assert.equal(s.form, 'allowlist');
    assert.deepEqual(s.domains, ['api.anthropic.com', 'api.openai.com']);
    assert.deepEqual(meaning(s.yaml), meaning(translatorPolicy('ms1abc', { domains: ['api.anthropic.com', 'api.openai.com'] })));
    assert.equal(acceptPolicies(s.yaml)[0]!.name, 'obot-ms1abc-fw');
  });

  test('a workload with nothing that qualifies gets the deny-all form, and every left-out destination says why', () => {
    const [s] = suggestPolicies([
      flowTo('httpbin.org'),
      ...twice('webhook.site', { destination: { ip: '198.18.100.30', port: 8443, protocol: 'tcp', family: 4 } }),
      ...twice('metrics.udp.example', { destination: { ip: '198.18.100.31', port: 443, protocol: 'udp', family: 4 } }),
      ...twice(null, { destination: { ip: '198.18.100.66', port: 443, protocol: 'tcp', family: 4 } }),
      ...twice('kube-dns.kube-system.svc.cluster.local'),
    ]);
    assert.ok(s);
    assert.equal(s.form, 'deny-all');
    assert.deepEqual(meaning(s.yaml), meaning(translatorPolicy('ms1abc', {})));
    const reasons = Object.fromEntries(s.leftOut.map((l) => [l.what, l.reason]));
    assert.match(reasons['httpbin.org']!, /seen in a single flow/);
    assert.match(reasons['webhook.site tcp/8443']!, /permits TCP 443 only/);
    assert.match(reasons['metrics.udp.example udp/443']!, /permits TCP 443 only/);
    assert.match(reasons['198.18.100.66:443/tcp']!, /no name was seen/);
    assert.match(reasons['kube-dns.kube-system.svc.cluster.local']!, /cluster-internal/);
    for (const l of s.leftOut) assert.ok(s.yaml.includes(`# left out: ${l.what}`), l.what);
  });

  test('--include-rare keeps names seen once', () => {
    const [s] = suggestPolicies([flowTo('httpbin.org')], { ...DEFAULT_SUGGEST_OPTIONS, includeRare: true });
    assert.deepEqual(s!.domains, ['httpbin.org']);
  });

  test('names are grouped under a wildcard only when enough distinct names, each seen more than once, share the suffix', () => {
    const cdn = ['a.cdn.example.com', 'b.cdn.example.com', 'c.cdn.example.com'];
    const [grouped] = suggestPolicies(cdn.flatMap((n) => twice(n)));
    assert.deepEqual(grouped!.domains, ['*.cdn.example.com']);
    assert.match(
      grouped!.yaml,
      /# \*\.cdn\.example\.com: 3 distinct names under it, each seen more than once \(a\.cdn\.example\.com, b\.cdn\.example\.com, c\.cdn\.example\.com; 6 flows\)/,
    );
    // A tunnel's fresh names, each seen once, never earn a wildcard.
    const [tunnel] = suggestPolicies(['x1.attacker.example', 'x2.attacker.example', 'x3.attacker.example'].map((n) => flowTo(n)));
    assert.equal(tunnel!.form, 'deny-all');
    // Two names are not enough evidence by default; the suffix must keep two labels (`*.com` is never written).
    const [two] = suggestPolicies([...twice('a.cdn.example.com'), ...twice('b.cdn.example.com')]);
    assert.deepEqual(two!.domains, ['a.cdn.example.com', 'b.cdn.example.com']);
    const [tld] = suggestPolicies(['a.com', 'b.com', 'c.com'].flatMap((n) => twice(n)));
    assert.deepEqual(tld!.domains, ['a.com', 'b.com', 'c.com']);
  });

  test('replicas of one server share one policy; servers are separate', () => {
    const replica = { ...SERVER, name: 'ms1abc-1' };
    const other = { ...SERVER, name: 'ms1xyz-0', labels: { app: 'ms1xyz' } };
    const suggestions = suggestPolicies([
      flowTo('api.openai.com'),
      flowTo('api.openai.com', { workload: replica }),
      flowTo('x.example.com', { workload: other }),
    ]);
    assert.deepEqual(
      suggestions.map((s) => [s.name, s.workloads, s.domains]),
      [
        ['obot-ms1abc-fw', ['obot-mcp/ms1abc-0', 'obot-mcp/ms1abc-1'], ['api.openai.com']],
        ['obot-ms1xyz-fw', ['obot-mcp/ms1xyz-0'], []],
      ],
    );
  });

  test('every suggestion passes policy lint', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-suggest-'));
    try {
      const suggestions = suggestPolicies([
        ...twice('api.openai.com'),
        ...['a.cdn.example.com', 'b.cdn.example.com', 'c.cdn.example.com'].flatMap((n) => twice(n)),
      ]);
      writeFileSync(join(dir, 'suggested.yaml'), suggestions.map((s) => s.yaml).join('---\n'));
      const result = lintFiles([dir]);
      assert.equal(result.ok, true, JSON.stringify(result.diagnostics));
      assert.deepEqual(result.diagnostics, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

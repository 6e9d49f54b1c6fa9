import { strict as assert } from 'node:assert';
import { domainToASCII } from 'node:url';
import { describe, test } from 'vitest';
import { parseCidr } from '../../src/policy/cidr.js';
import { DomainIndex, matchesDomain, normalizeDomain, parseDomainPattern } from '../../src/policy/domains.js';
import type { DomainPattern } from '../../src/policy/types.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';

function accepted(raw: string): DomainPattern {
  const parsed = parseDomainPattern(raw);
  assert.ok(parsed.ok, `expected "${raw}" to be accepted: ${parsed.ok ? '' : parsed.problem.reason}`);
  return parsed.pattern;
}

function rejected(raw: string): string {
  const parsed = parseDomainPattern(raw);
  assert.ok(!parsed.ok, `expected "${raw}" to be rejected`);
  return `${parsed.problem.reason} — ${parsed.problem.fix}`;
}

describe('domain grammar', () => {
  test('accepts exact names, one leading wildcard with two labels, and * alone', () => {
    assert.deepEqual(accepted('api.openai.com'), { kind: 'exact', name: 'api.openai.com' });
    assert.deepEqual(accepted('*.example.com'), { kind: 'wildcard', suffix: 'example.com' });
    assert.deepEqual(accepted('*'), { kind: 'any' });
    assert.deepEqual(accepted('_acme-challenge.example.com'), { kind: 'exact', name: '_acme-challenge.example.com' });
  });

  test('normalises case, one trailing dot, whitespace and IDNA', () => {
    assert.deepEqual(accepted('  API.OpenAI.com. '), { kind: 'exact', name: 'api.openai.com' });
    assert.deepEqual(accepted('bücher.example'), { kind: 'exact', name: 'xn--bcher-kva.example' });
    assert.deepEqual(accepted('*.Bücher.Example.'), { kind: 'wildcard', suffix: 'xn--bcher-kva.example' });
    assert.match(rejected('example.com..'), /empty label/);
  });

  test('rejects inner and repeated wildcards and wildcards over a TLD', () => {
    assert.match(rejected('api*.example.com'), /inner or repeated wildcard/);
    assert.match(rejected('**.example.com'), /inner or repeated wildcard/);
    assert.match(rejected('*.*.example.com'), /inner or repeated wildcard/);
    assert.match(rejected('api.*.com'), /inner or repeated wildcard/);
    assert.match(rejected('*.com'), /top-level domain.*at least two labels/);
  });

  test('rejects IP literals and points at cidr smartGroups', () => {
    assert.match(rejected('203.0.113.7'), /IP address.*cidr smartGroup/);
    assert.match(rejected('2001:db8::1'), /IP address.*cidr smartGroup/);
    assert.match(rejected('[2001:db8::1]'), /IP address.*cidr smartGroup/);
    assert.match(rejected('0x7f.1'), /IP address.*cidr smartGroup|numeric label/);
  });

  test('rejects URLs, ports, paths, spaces and empty entries', () => {
    assert.match(rejected('https://api.openai.com/v1'), /is a URL.*only the hostname/);
    assert.match(rejected('api.openai.com:443'), /port.*rule/);
    assert.match(rejected('api.openai.com/v1'), /path/);
    assert.match(rejected('api openai.com'), /whitespace/);
    assert.match(rejected('   '), /empty/);
    assert.match(rejected('-bad.example.com'), /invalid label "-bad"/);
  });

  test('enforces label and name length limits', () => {
    accepted(`${'a'.repeat(63)}.example.com`);
    assert.match(rejected(`${'a'.repeat(64)}.example.com`), /label of 64 characters \(maximum 63\)/);
    const long = Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.'); // 304 characters
    assert.match(rejected(long), /304 characters long \(maximum 253\)/);
  });
});

describe('domain matching', () => {
  const wildcard: DomainPattern = { kind: 'wildcard', suffix: 'example.com' };

  test('a wildcard matches one or more labels but never the apex', () => {
    assert.equal(matchesDomain('example.com', wildcard), false);
    assert.equal(matchesDomain('a.example.com', wildcard), true);
    assert.equal(matchesDomain('a.b.c.example.com', wildcard), true);
    assert.equal(matchesDomain('badexample.com', wildcard), false);
    assert.equal(matchesDomain('example.com.evil.net', wildcard), false);
  });

  test('matching is case-insensitive and ignores one trailing dot', () => {
    assert.equal(matchesDomain('API.OpenAI.COM.', { kind: 'exact', name: 'api.openai.com' }), true);
    assert.equal(matchesDomain('A.Example.Com', wildcard), true);
    assert.equal(matchesDomain('bücher.example', { kind: 'exact', name: 'xn--bcher-kva.example' }), true);
    assert.equal(matchesDomain('api.openai.com.evil', { kind: 'exact', name: 'api.openai.com' }), false);
  });

  test('plain names skip the URL host parser and normalise exactly as it would', () => {
    const viaHostParser = (name: string) => {
      const lower = name.trim().toLowerCase().replace(/\.$/, '');
      return domainToASCII(lower) || lower;
    };
    for (const name of [
      'api.openai.com',
      'API.OpenAI.com.',
      '_acme-challenge.example.com',
      'a-.-b.example',
      'localhost',
      '127.1',
      '0x7f.1',
      '1.0xa',
      'foo.0xa',
      'foo.1a',
      '1.2.3.4',
      'a..b.example',
      '.a.example',
      'xn--bcher-kva.example',
      'a.xn--zz.example',
      'xn--.example',
      'bücher.example',
      'ab--cd.example',
    ]) {
      assert.equal(normalizeDomain(name), viaHostParser(name), name);
    }
  });

  test('* matches any name', () => {
    assert.equal(matchesDomain('anything.at.all', { kind: 'any' }), true);
    assert.equal(matchesDomain('', { kind: 'any' }), false);
  });

  test('the per-rule index agrees with matchesDomain over many patterns', () => {
    const patterns: DomainPattern[] = [
      ...Array.from({ length: 500 }, (_, i): DomainPattern => ({ kind: 'exact', name: `host${i}.example.org` })),
      { kind: 'wildcard', suffix: 'cdn.example.net' },
    ];
    const index = new DomainIndex(patterns);
    for (const name of [
      'host7.example.org',
      'host500.example.org',
      'x.cdn.example.net',
      'a.b.cdn.example.net',
      'cdn.example.net',
      'example.net',
    ]) {
      const expected = patterns.some((p) => matchesDomain(name, p));
      assert.equal(index.matches(normalizeDomain(name)), expected, name);
    }
    assert.equal(index.matches('host7.example.org'), true);
    assert.equal(index.matches('cdn.example.net'), false);
  });
});

describe('CIDR parsing', () => {
  test('normalises IPv4 and IPv6 to the network address', () => {
    assert.deepEqual(parseCidr('198.18.7.9/16'), { family: 4, address: '198.18.0.0', prefix: 16 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, address: '0.0.0.0', prefix: 0 });
    assert.deepEqual(parseCidr('203.0.113.5'), { family: 4, address: '203.0.113.5', prefix: 32 });
    assert.deepEqual(parseCidr('fd00:eb:0:0:0:0:0:1/32'), { family: 6, address: 'fd00:eb::', prefix: 32 });
    assert.deepEqual(parseCidr('::/0'), { family: 6, address: '::', prefix: 0 });
    assert.deepEqual(parseCidr('2001:db8::ff/121'), { family: 6, address: '2001:db8::80', prefix: 121 });
    assert.deepEqual(parseCidr('::ffff:198.18.0.1/128'), { family: 6, address: '::ffff:c612:1', prefix: 128 });
  });

  test('rejects bad addresses and prefix lengths with a reason', () => {
    assert.match(String(parseCidr('10.0.0.0/33')), /from 0 to 32/);
    assert.match(String(parseCidr('2001:db8::/129')), /from 0 to 128/);
    assert.match(String(parseCidr('10.0.0/8')), /not an IPv4 or IPv6 address/);
    assert.match(String(parseCidr('example.com/8')), /not an IPv4 or IPv6 address/);
    assert.match(String(parseCidr('10.0.0.0/')), /prefix length/);
  });
});

describe('ruleIdFor', () => {
  test('is the 32-bit FNV-1a of namespace/policy/rule and stable', () => {
    // Reference value computed independently (Python FNV-1a 32) for the lab's benign rule.
    assert.equal(ruleIdFor('obot-mcp', 'benign-mcp-fw', 'allow-openai'), 4059667816);
    assert.equal(ruleIdFor('obot-mcp', 'benign-mcp-fw', 'allow-openai'), ruleIdFor('obot-mcp', 'benign-mcp-fw', 'allow-openai'));
    assert.notEqual(ruleIdFor('obot-mcp', 'benign-mcp-fw', 'allow-openai'), ruleIdFor('obot-mcp', 'benign-mcp-fw', 'deny-all'));
  });
});

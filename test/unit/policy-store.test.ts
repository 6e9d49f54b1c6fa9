import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { formatDiagnostic, lintFiles } from '../../src/policy/lint.js';
import { hostModeResolver } from '../../src/policy/destination-resolver.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { PolicyDiagnostic } from '../../src/policy/types.js';
import { compiledRules, fixturesDir, translatorPolicy } from './policy-helpers.js';

const hasErrors = (diagnostics: PolicyDiagnostic[]): boolean => diagnostics.some((d) => d.severity === 'error');

const withUuidDestination = (text: string): string =>
  text.replace('destinationSmartGroups:\n        - name: any-destination', 'destinationSmartGroups:\n        - uuid: sg-1');

describe('PolicyStore', () => {
  test('a bad edit is rejected and the last good policy stays in force', () => {
    const store = new PolicyStore();
    assert.deepEqual(store.applyFile('a.yaml', translatorPolicy('ms1aaa', { domains: ['api.example.com'] })), []);
    const before = store.get('obot-mcp', 'obot-ms1aaa-fw');
    assert.ok(before);

    const bad = [
      translatorPolicy('ms1aaa', { domains: ['api.example.com'] }).replace('port: 443', 'prot: 443'),
      translatorPolicy('ms1aaa', { domains: ['https://api.example.com'] }),
      translatorPolicy('ms1aaa', { domains: ['api.example.com'] }).replace('- name: deny-all-external', '- name: allow-approved-egress'),
      'apiVersion: [\n',
      translatorPolicy('ms1aaa', { domains: Array.from({ length: 1001 }, (_, i) => `h${i}.example.com`) }),
    ];
    for (const text of bad) {
      const revision = store.revision;
      assert.equal(hasErrors(store.applyFile('a.yaml', text)), true);
      assert.equal(store.revision, revision, 'a rejected file changes nothing');
      assert.equal(store.get('obot-mcp', 'obot-ms1aaa-fw'), before, 'the previous object must stay in force');
    }
  });

  test('a bad multi-document file rejects all its objects, keeping the previous ones', () => {
    const store = new PolicyStore();
    store.applyFile('f.yaml', translatorPolicy('ms1aaa', {}));
    const result = store.applyFile(
      'f.yaml',
      `${translatorPolicy('ms1bbb', {})}---\n${translatorPolicy('ms1aaa', {}).replace('action: deny', 'action: drop')}`,
    );
    assert.equal(hasErrors(result), true);
    assert.deepEqual(
      store.policies().map((p) => p.name),
      ['obot-ms1aaa-fw'],
    );
  });

  test('a good edit replaces the file; objects removed from the file are removed', () => {
    const store = new PolicyStore();
    store.applyFile('f.yaml', `${translatorPolicy('ms1aaa', {})}---\n${translatorPolicy('ms1bbb', {})}`);
    assert.deepEqual(
      store.policies().map((p) => p.name),
      ['obot-ms1aaa-fw', 'obot-ms1bbb-fw'],
    );
    const revision = store.revision;
    assert.deepEqual(store.applyFile('f.yaml', translatorPolicy('ms1bbb', {})), []);
    assert.equal(store.revision, revision + 1);
    assert.deepEqual(
      store.policies().map((p) => p.name),
      ['obot-ms1bbb-fw'],
    );
    assert.equal(store.removeFile('f.yaml'), true);
    assert.deepEqual(store.policies(), []);
    assert.equal(store.removeFile('f.yaml'), false);
  });

  test('generation increments only when the spec changes', () => {
    const store = new PolicyStore();
    const text = translatorPolicy('ms1aaa', { domains: ['a.example.com'] });
    store.applyFile('f.yaml', text);
    assert.equal(store.get('obot-mcp', 'obot-ms1aaa-fw')?.generation, 1);
    // Same spec, different comments and metadata labels: no change.
    const revision = store.revision;
    store.applyFile('f.yaml', `# edited\n${text.replace('  namespace: obot-mcp', '  namespace: obot-mcp\n  labels: {x: y}')}`);
    assert.equal(store.revision, revision);
    assert.equal(store.get('obot-mcp', 'obot-ms1aaa-fw')?.generation, 1);
    store.applyFile('f.yaml', translatorPolicy('ms1aaa', { domains: ['b.example.com'] }));
    const updated = store.get('obot-mcp', 'obot-ms1aaa-fw');
    assert.equal(updated?.generation, 2);
    assert.deepEqual(compiledRules(updated)[0]?.domains, [{ kind: 'exact', name: 'b.example.com' }]);
    // Removed and re-added: generations never repeat.
    store.removeFile('f.yaml');
    store.applyFile('g.yaml', translatorPolicy('ms1aaa', { domains: ['c.example.com'] }));
    assert.equal(store.get('obot-mcp', 'obot-ms1aaa-fw')?.generation, 3);
  });

  test('the same object in two files is an error on the later file', () => {
    const store = new PolicyStore();
    store.applyFile('first.yaml', translatorPolicy('ms1aaa', {}));
    const result = store.applyFile('second.yaml', `${translatorPolicy('ms1bbb', {})}---\n${translatorPolicy('ms1aaa', {})}`);
    assert.match(
      result.map(formatDiagnostic).join('\n'),
      /second\.yaml doc 2 obot-mcp\/obot-ms1aaa-fw: error: metadata\.name FirewallPolicy obot-mcp\/obot-ms1aaa-fw is already defined in first\.yaml/,
    );
    assert.deepEqual(store.files(), ['first.yaml']);
    assert.deepEqual(
      store.policies().map((p) => p.name),
      ['obot-ms1aaa-fw'],
    );
    // Once first.yaml lets go of it, second.yaml may define it.
    store.removeFile('first.yaml');
    assert.deepEqual(store.applyFile('second.yaml', translatorPolicy('ms1aaa', {})), []);
  });

  test('the change journal names the objects changed since a revision, and sends a reader too far behind to the set', () => {
    const store = new PolicyStore();
    const names = (refs: ReturnType<PolicyStore['changesSince']>) => refs?.map((r) => `${r.kind} ${r.namespace}/${r.name}`).sort();
    assert.equal(store.changesSince(null), null, 'a first read reads the set');
    store.applyFile('f.yaml', `${translatorPolicy('ms1aaa', {})}---\n${translatorPolicy('ms1bbb', {})}`);
    const first = store.revision;
    assert.deepEqual(names(store.changesSince(0)), ['FirewallPolicy obot-mcp/obot-ms1aaa-fw', 'FirewallPolicy obot-mcp/obot-ms1bbb-fw']);
    assert.deepEqual(store.changesSince(first), []);
    store.applyFile('f.yaml', `${translatorPolicy('ms1aaa', {})}---\n${translatorPolicy('ms1bbb', { domains: ['b.example.com'] })}`);
    assert.equal(hasErrors(store.applyFile('f.yaml', 'apiVersion: [\n')), true);
    store.applyFile('g.yaml', translatorPolicy('ms1ccc', {}));
    assert.deepEqual(
      names(store.changesSince(first)),
      ['FirewallPolicy obot-mcp/obot-ms1bbb-fw', 'FirewallPolicy obot-mcp/obot-ms1ccc-fw'],
      'an unchanged object and a rejected file are not changes',
    );
    const second = store.revision;
    store.removeFile('g.yaml');
    assert.deepEqual(names(store.changesSince(second)), ['FirewallPolicy obot-mcp/obot-ms1ccc-fw'], 'a removal is a change');
    assert.deepEqual(names(store.changesSince(first)), [
      'FirewallPolicy obot-mcp/obot-ms1bbb-fw',
      'FirewallPolicy obot-mcp/obot-ms1ccc-fw',
    ]);
    // Past 1,024 entries (more than the set holds) the older half goes: a reader from before reads the set.
    for (let i = 0; i < 1100; i++) store.applyFile('f.yaml', translatorPolicy('ms1aaa', { domains: [`h${i}.example.com`] }));
    assert.equal(store.changesSince(first), null);
    assert.deepEqual(names(store.changesSince(store.revision - 1)), ['FirewallPolicy obot-mcp/obot-ms1aaa-fw']);
  });

  test('entries() reads the findings kept at acceptance, except for a policy naming a Service (they follow the Service)', () => {
    let resolves = 0;
    let service: { matchLabels: Record<string, string> } | { unsupported: string } = {
      unsupported: 'names no Service in namespace obot-mcp',
    };
    const store = new PolicyStore(
      {},
      {
        resolve: (selector, namespace) => (resolves++, hostModeResolver.resolve(selector, namespace)),
        resolveService: () => service,
      },
    );
    store.applyFile('a.yaml', translatorPolicy('ms1aaa', {}));
    const byService = translatorPolicy('ms1bbb', {}).replace(/matchLabels:\n\s+app: ms1bbb/g, 'service: api');
    assert.notEqual(byService, translatorPolicy('ms1bbb', {}), 'the fixture selects by service');
    store.applyFile('b.yaml', byService);
    const warnings = () => store.entries().map((e) => e.warnings.join('\n'));
    const first = warnings();
    const counted = resolves;
    assert.deepEqual(warnings(), first);
    assert.equal(first[0], '');
    assert.match(first[1]!, /names no Service/);
    service = { matchLabels: { app: 'ms1bbb' } };
    assert.doesNotMatch(warnings()[1]!, /names no Service/, 'the Service now resolves');
    assert.equal(resolves - counted, 2, 'two more reads compiled only the policy naming a Service (one destination each)');
  });

  test('warnings do not block a file and are returned', () => {
    const store = new PolicyStore();
    const result = store.applyFile('w.yaml', withUuidDestination(translatorPolicy('ms1aaa', {})));
    assert.ok(result.length > 0 && result.every((d) => d.severity === 'warning'));
    assert.equal(compiledRules(store.policies()[0])[0]?.anyDestination, true);
  });

  test('entries() gives each policy with its file and formatted warnings', () => {
    const store = new PolicyStore();
    store.applyFile('b.yaml', withUuidDestination(translatorPolicy('ms1bbb', {})));
    store.applyFile('a.yaml', translatorPolicy('ms1aaa', {}));
    const entries = store.entries();
    assert.deepEqual(
      entries.map((e) => [e.policy.name, e.file, e.warnings.length]),
      [
        ['obot-ms1aaa-fw', 'a.yaml', 0],
        ['obot-ms1bbb-fw', 'b.yaml', 1],
      ],
    );
    assert.match(
      entries[1]?.warnings[0] ?? '',
      /^b\.yaml:\d+ doc 1 obot-mcp\/obot-ms1bbb-fw: warning: spec\.rules\[0\]\.destinationSmartGroups\[0\]\.uuid smartGroup uuid sg-1/,
    );
  });

  test('the store reports what its resolver cannot enforce: host mode warns about k8s destinations, another resolver does not', () => {
    const text = translatorPolicy('ms1aaa', {}).replace('- cidr: 0.0.0.0/0', '- {type: k8s, k8sNamespace: obot-mcp, tags: {app: db}}');
    assert.notEqual(text, translatorPolicy('ms1aaa', {}), 'the fixture names a k8s destination');
    const host = new PolicyStore().applyFile('k.yaml', text).map(formatDiagnostic);
    assert.match(
      host.join('\n'),
      /warning: spec\.rules\[0\]\.destinationSmartGroups\[0\] smartGroup "any-destination" selects by type k8s/,
    );
    const resolving = new PolicyStore(
      {},
      {
        resolve: () => ({ cidrs: [{ family: 4, address: '198.18.7.0', prefix: 24 }] }),
        resolveService: () => ({ unsupported: 'is not used here' }),
      },
    );
    assert.deepEqual(resolving.applyFile('k.yaml', text), []);
    assert.deepEqual(resolving.entries()[0]?.warnings, []);
  });

  test('the default namespace option applies to objects without one', () => {
    const store = new PolicyStore({ defaultNamespace: 'obot-mcp' });
    assert.deepEqual(store.applyFile('n.yaml', translatorPolicy('ms1aaa', {}).replace('  namespace: obot-mcp\n', '')), []);
    assert.ok(store.get('obot-mcp', 'obot-ms1aaa-fw'));
  });
});

describe('lintFiles and formatDiagnostic', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egressguard-lint-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the lab fixtures lint clean', () => {
    assert.deepEqual(lintFiles([fixturesDir]), { diagnostics: [], ok: true });
  });

  test('directories are searched for *.yaml and *.yml; errors fail the run', () => {
    mkdirSync(join(dir, 'nested'));
    writeFileSync(join(dir, 'good.yml'), translatorPolicy('ms1aaa', {}));
    writeFileSync(join(dir, 'nested', 'bad.yaml'), translatorPolicy('ms1bbb', { domains: ['*.com'] }));
    writeFileSync(join(dir, 'notes.txt'), 'not yaml: [');
    const result = lintFiles([dir]);
    assert.equal(result.ok, false);
    const lines = result.diagnostics.map(formatDiagnostic);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(
      lines[0] ?? '',
      /nested\/bad\.yaml:\d+ doc 1 obot-mcp\/obot-ms1bbb-fw: error: spec\.webGroups\[0\]\.domains\[0\] "\*\.com" matches a whole top-level domain — fix: /,
    );
  });

  test('duplicates across files and missing paths are reported', () => {
    const a = join(dir, 'dup-a.yaml');
    const b = join(dir, 'dup-b.yaml');
    writeFileSync(a, translatorPolicy('ms1dup', {}));
    writeFileSync(b, translatorPolicy('ms1dup', {}));
    const result = lintFiles([a, b, join(dir, 'missing.yaml')]);
    assert.equal(result.ok, false);
    const text = result.diagnostics.map(formatDiagnostic).join('\n');
    assert.match(text, /dup-b\.yaml doc 1 obot-mcp\/obot-ms1dup-fw: error: .*already defined in .*dup-a\.yaml/);
    assert.match(text, /missing\.yaml: error: cannot read: .*ENOENT/);
  });

  test('formatDiagnostic without location parts', () => {
    assert.equal(formatDiagnostic({ severity: 'warning', location: {}, message: 'something' }), 'warning: something');
  });
});

import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { formatDiagnostic } from '../../src/policy/lint.js';
import { parseManifests } from '../../src/policy/parse.js';
import { MAX_DOMAINS_PER_WEBGROUP } from '../../src/policy/validate.js';
import { acceptPolicies, assertDiagnostic, compiledRules, findings, policyWith, rejectErrors, translatorPolicy } from './policy-helpers.js';

const permitRule = (extra: string, name = 'allow'): string => `    - name: ${name}
      action: permit
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
${extra}`;

describe('parsing manifests', () => {
  test('accepts the three translator shapes', () => {
    const [allowlist] = acceptPolicies(translatorPolicy('ms1abc', { domains: ['api.openai.com', '*.githubusercontent.com'] }));
    assert.deepEqual(
      compiledRules(allowlist).map((r) => r.name),
      ['allow-approved-egress', 'deny-all-external'],
    );
    const [denyAll] = acceptPolicies(translatorPolicy('ms1abc', {}));
    assert.deepEqual(
      compiledRules(denyAll).map((r) => r.name),
      ['deny-all-external'],
    );
    const [allowAll] = acceptPolicies(translatorPolicy('ms1abc', { domains: ['*'] }));
    assert.deepEqual(compiledRules(allowAll)[0]?.domains, [{ kind: 'any' }]);
    // The pods smartGroup (type k8s) is defined but never used as a destination: nothing to report.
    assert.deepEqual(findings(allowlist), []);
  });

  test('reads several documents, skips empty ones, and numbers documents in file order', () => {
    const text = `---\n# only a comment\n---\n${translatorPolicy('ms1aaa', {})}---\n${translatorPolicy('ms1bbb', { domains: ['a.example.com'] })}---\n`;
    const result = parseManifests(text, 'multi.yaml');
    assert.equal(result.ok, true, result.diagnostics.map(formatDiagnostic).join('\n'));
    assert.deepEqual(
      result.objects.map((o) => [o.name, o.source.document]),
      [
        ['obot-ms1aaa-fw', 2],
        ['obot-ms1bbb-fw', 3],
      ],
    );
  });

  test('a List of items is accepted, and item errors name items[i]', () => {
    const item = translatorPolicy('ms1aaa', {})
      .replace(/^/gm, '    ')
      .replace(/^ {4}apiVersion/, '  - apiVersion');
    const list = `apiVersion: v1\nkind: List\nitems:\n${item}`;
    assert.equal(acceptPolicies(list).length, 1);
    const errors = rejectErrors(list.replace('protocol: any', 'protocol: sctp'));
    assertDiagnostic(errors, 'items[0].spec.rules[0].protocol', /"sctp" is not one of/);
  });

  test('a file of comments only has no objects and no diagnostics', () => {
    assert.deepEqual(parseManifests('# nothing here\n', 'empty.yaml'), { objects: [], diagnostics: [], ok: true });
  });

  test('malformed YAML is reported with its line', () => {
    const text = `${translatorPolicy('ms1aaa', {})}---\napiVersion: networking.aviatrix.com/v1alpha1\nkind: FirewallPolicy\nmetadata: {name: x\n`;
    const errors = rejectErrors(text);
    const line = formatDiagnostic(errors[0] ?? assert.fail('no error'));
    assert.match(line, /^bad\.yaml:\d+ doc 2: error: malformed YAML/);
    // The first document is fine; the file as a whole is not ok, and the well-formed object is still reported.
    assert.equal(parseManifests(text, 'bad.yaml').objects.length, 1);
  });

  test('an alias bomb is rejected, not expanded', () => {
    const aliases = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++)
      aliases.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    const errors = rejectErrors(`${aliases.join('\n')}\n`);
    assert.match(formatDiagnostic(errors[0] ?? assert.fail()), /bad\.yaml doc 1: error: cannot read the document: .*alias/i);
  });

  test('shape errors name the object', () => {
    const errors = rejectErrors(policyWith({ rules: permitRule('      port: true') }));
    assert.match(
      formatDiagnostic(errors[0] ?? assert.fail()),
      /^bad\.yaml:\d+ doc 1 obot-mcp\/p1: error: spec\.rules\[0\]\.port must be an integer, not boolean true$/,
    );
  });

  test('duplicate keys in a map are malformed YAML', () => {
    const errors = rejectErrors(policyWith({}).replace('kind: FirewallPolicy', 'kind: FirewallPolicy\nkind: FirewallPolicy'));
    assert.match(formatDiagnostic(errors[0] ?? assert.fail()), /malformed YAML.*unique/i);
  });

  test('other kinds are rejected naming the kind', () => {
    const errors = rejectErrors('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: y}\n');
    assertDiagnostic(errors, 'kind', /"ConfigMap" is not supported/, /FirewallPolicy/);
  });

  test('a wrong apiVersion is rejected with the expected value', () => {
    const errors = rejectErrors(policyWith({}).replace('networking.aviatrix.com/v1alpha1', 'networking.aviatrix.com/v1'));
    assertDiagnostic(errors, 'apiVersion', /must be "networking\.aviatrix\.com\/v1alpha1"/);
  });

  test('the same object twice in one file is an error on the second', () => {
    const errors = rejectErrors(`${policyWith({})}---\n${policyWith({})}`);
    assertDiagnostic(errors, 'metadata.name', /doc 2 obot-mcp\/p1: error: .*already defined in document 1/);
  });

  test('accepts the chart 10.1.0 optional fields and reports the unenforced ones', () => {
    const [policy] = acceptPolicies(
      policyWith({
        rules: permitRule(
          `      webGroups: [{name: approved}]
      protocol: tcp
      port: 8000
      endPort: 8100
      logging: false
      watch: true
      logProfile: start/end
      flowAppRequirement: tlsRequired
      decryptPolicy: dp1
      tlsProfile: tp1`,
        ),
      }),
    );
    const rule = compiledRules(policy)[0];
    assert.equal(rule?.portLow, 8000);
    assert.equal(rule?.portHigh, 8100);
    assert.equal(rule?.watch, true);
    assert.equal(rule?.logging, false);
    assert.equal(rule?.tlsRequired, true);
    assert.equal(rule?.active, true);
    assert.equal(rule?.notEnforced.length, 3);
    const fields = findings(policy).map((w) => w.location.field);
    assert.deepEqual(fields, ['spec.rules[0].decryptPolicy', 'spec.rules[0].tlsProfile', 'spec.rules[0].logProfile']);
  });

  test('accepts a chart 8.2.0 object (no † fields) with defaults', () => {
    const [policy] = acceptPolicies(policyWith({ rules: permitRule('') }));
    const rule = compiledRules(policy)[0];
    assert.equal(rule?.protocol, 'any');
    assert.deepEqual([rule?.portLow, rule?.portHigh], [0, 65535]);
    assert.equal(rule?.watch, false);
    assert.equal(rule?.domains, null);
  });

  test('status written by a controller is accepted and ignored', () => {
    acceptPolicies(`${policyWith({})}status:\n  ruleset: abc\n  lastReconciledGeneration: 3\n`);
  });
});

describe('validation errors name the field and the fix', () => {
  test('the brief example: an undefined webGroup reference', () => {
    const text = `${translatorPolicy('ms1aaa', {})}---\n${translatorPolicy('pt5', { domains: ['a.example.com'] }).replace(
      '        - name: obot-pt5-approved-domains\n',
      '        - name: approved\n',
    )}`;
    const result = parseManifests(text, 'policies/rogue.yaml');
    const line = result.diagnostics.map(formatDiagnostic).find((l) => l.includes('webGroups[0].name'));
    assert.match(
      line ?? '',
      /^policies\/rogue\.yaml:\d+ doc 2 obot-mcp\/obot-pt5-fw: error: spec\.rules\[0\]\.webGroups\[0\]\.name "approved" does not name a webGroup in spec\.webGroups \(known: obot-pt5-approved-domains\)/,
    );
  });

  test('the line number points at the offending node', () => {
    const text = policyWith({ rules: permitRule('      port: 70000') });
    const errors = rejectErrors(text);
    const found = assertDiagnostic(errors, 'spec.rules[0].port', /70000 is outside 1\.\.65535/);
    assert.equal(text.split('\n')[(found.location.line ?? 0) - 1]?.trim(), 'port: 70000');
  });

  test('missing metadata.name and namespace', () => {
    assertDiagnostic(rejectErrors(policyWith({ metadata: '  namespace: obot-mcp' })), 'metadata.name', /is required but missing/);
    assertDiagnostic(rejectErrors(policyWith({ metadata: '  name: p1' })), 'metadata.namespace', /is required/, /obot-mcp/);
    const [defaulted] = acceptPolicies(policyWith({ metadata: '  name: p1' }), { defaultNamespace: 'team-a' });
    assert.equal(defaulted?.namespace, 'team-a');
    assertDiagnostic(
      rejectErrors(policyWith({ metadata: '  name: Bad_Name\n  namespace: obot-mcp' })),
      'metadata.name',
      /not a valid object name/,
    );
  });

  test('unknown fields suggest the closest known one', () => {
    const errors = rejectErrors(policyWith({ rules: permitRule('      prot: 443\n      destinationSmartgroups: []') }));
    assertDiagnostic(errors, 'spec.rules[0].prot', /is not a known field — fix: did you mean "port"\?/);
    assertDiagnostic(errors, 'spec.rules[0].destinationSmartgroups', /did you mean "destinationSmartGroups"/);
    const far = rejectErrors(policyWith({ rules: permitRule('      zzzzzzzzzz: 1') }));
    assertDiagnostic(far, 'spec.rules[0].zzzzzzzzzz', /remove it; known fields here: name, action/);
    assertDiagnostic(rejectErrors(`${policyWith({})}extra: 1\n`), 'extra', /not a known field/);
  });

  test('unknown fields and semantic errors are reported in one pass', () => {
    const errors = rejectErrors(policyWith({ rules: permitRule('      prot: 443\n      webGroups: [{name: nope}]') }));
    assertDiagnostic(errors, 'spec.rules[0].prot', /not a known field/);
    assertDiagnostic(errors, 'spec.rules[0].webGroups[0].name', /"nope" does not name a webGroup/);
  });

  test('wrong types', () => {
    const errors = rejectErrors(policyWith({ rules: permitRule('      port: "443"\n      logging: yes please') }));
    assertDiagnostic(errors, 'spec.rules[0].port', /must be an integer, not the string "443"/);
    assertDiagnostic(errors, 'spec.rules[0].logging', /must be a boolean/);
    assertDiagnostic(
      rejectErrors(
        policyWith({
          rules:
            '    - name: r\n      action: permit\n      selector: {matchLabels: {app: 1}}\n      destinationSmartGroups: [{name: any-destination}]',
        }),
      ),
      'spec.rules[0].selector.matchLabels.app',
      /must be a string/,
    );
  });

  test('enum values suggest the closest value', () => {
    const errors = rejectErrors(policyWith({ rules: permitRule('      protocol: TCP').replace('action: permit', 'action: allow') }));
    assertDiagnostic(errors, 'spec.rules[0].protocol', /"TCP" is not one of "tcp", "udp", "icmp", "any" — fix: did you mean "tcp"\?/);
    assertDiagnostic(errors, 'spec.rules[0].action', /"allow" is not one of "permit", "deny", "intrusion_detection_permit"/);
  });

  test('port ranges', () => {
    assertDiagnostic(
      rejectErrors(policyWith({ rules: permitRule('      endPort: 500') })),
      'spec.rules[0].endPort',
      /set without port — fix: add port/,
    );
    assertDiagnostic(
      rejectErrors(policyWith({ rules: permitRule('      port: 500\n      endPort: 400') })),
      'spec.rules[0].endPort',
      /400 is below port 500/,
    );
    assertDiagnostic(rejectErrors(policyWith({ rules: permitRule('      port: 0') })), 'spec.rules[0].port', /0 is outside 1\.\.65535/);
    assertDiagnostic(
      rejectErrors(policyWith({ rules: permitRule('      port: 500\n      endPort: 65536') })),
      'spec.rules[0].endPort',
      /outside 1\.\.65535/,
    );
    assertDiagnostic(
      rejectErrors(policyWith({ rules: permitRule('      protocol: icmp\n      port: 7') })),
      'spec.rules[0].port',
      /icmp rule/,
    );
  });

  test('missing or empty rules', () => {
    const noRules = policyWith({}).replace(/ {2}rules:\n[\s\S]*$/, '');
    assertDiagnostic(rejectErrors(noRules), 'spec.rules', /is required but missing/);
    assertDiagnostic(
      rejectErrors(policyWith({ rules: '    []' }).replace('rules:\n    []', 'rules: []')),
      'spec.rules',
      /at least 1 entry/,
    );
  });

  test('duplicate rule, smartGroup and webGroup names', () => {
    const errors = rejectErrors(
      policyWith({
        rules: `${permitRule('', 'same')}\n${permitRule('', 'same')}`,
        smartGroups:
          '    - name: g\n      selectors: [{cidr: 10.0.0.0/8}]\n    - name: g\n    - name: any-destination\n      selectors: [{cidr: 0.0.0.0/0}]',
        webGroups: '    - name: w\n      domains: [a.example.com]\n    - name: w\n      domains: [b.example.com]',
      }),
    );
    assertDiagnostic(errors, 'spec.rules[1].name', /"same" is already used by spec\.rules\[0\]/, /unique name/);
    assertDiagnostic(errors, 'spec.smartGroups[1].name', /"g" is already used by spec\.smartGroups\[0\]/);
    assertDiagnostic(errors, 'spec.webGroups[1].name', /"w" is already used by spec\.webGroups\[0\]/);
  });

  test('references to undefined smartGroups, and name XOR uuid', () => {
    const errors = rejectErrors(
      policyWith({
        rules: `    - name: r
      action: deny
      selector: {matchLabels: {}}
      destinationSmartGroups: [{name: any-destinaton}, {}, {name: any-destination, uuid: u-1}]`,
      }),
    );
    assertDiagnostic(
      errors,
      'spec.rules[0].destinationSmartGroups[0].name',
      /"any-destinaton" does not name a smartGroup.*known: any-destination.*did you mean "any-destination"/,
    );
    assertDiagnostic(errors, 'spec.rules[0].destinationSmartGroups[1]', /has neither name nor uuid/);
    assertDiagnostic(errors, 'spec.rules[0].destinationSmartGroups[2]', /has both name and uuid/);
  });

  test('a rule without destinations is rejected', () => {
    const errors = rejectErrors(
      policyWith({
        rules: permitRule('').replace('      destinationSmartGroups: [{name: any-destination}]\n', '      destinationSmartGroups: []\n'),
      }),
    );
    assertDiagnostic(errors, 'spec.rules[0].destinationSmartGroups', /at least 1 entry/);
  });

  test('selector: matchLabels XOR service', () => {
    const both = rejectErrors(
      policyWith({
        rules: permitRule('').replace('selector: {matchLabels: {app: a1}}', 'selector: {matchLabels: {app: a1}, service: svc}'),
      }),
    );
    assertDiagnostic(both, 'spec.rules[0].selector', /sets both matchLabels and service/);
    const neither = rejectErrors(policyWith({ rules: permitRule('').replace('selector: {matchLabels: {app: a1}}', 'selector: {}') }));
    assertDiagnostic(neither, 'spec.rules[0].selector', /sets neither.*matchLabels: \{\}/);
  });

  test('smartGroup selectors: cidr alone, valid CIDRs, one kind', () => {
    const errors = rejectErrors(
      policyWith({
        smartGroups: `    - name: any-destination
      selectors:
        - cidr: 10.0.0.0/33
        - cidr: 10.0.0.0/8
          k8sNamespace: x
        - k8sNamespace: x
        - cidr: not-an-ip`,
      }),
    );
    assertDiagnostic(
      errors,
      'spec.smartGroups[0].selectors[0].cidr',
      /"10\.0\.0\.0\/33": prefix length "\/33" must be a whole number from 0 to 32/,
    );
    assertDiagnostic(errors, 'spec.smartGroups[0].selectors[1].k8sNamespace', /cannot be combined with "cidr"/);
    assertDiagnostic(errors, 'spec.smartGroups[0].selectors[2]', /names no selector kind/);
    assertDiagnostic(errors, 'spec.smartGroups[0].selectors[3].cidr', /not an IPv4 or IPv6 address/);
  });

  test('domain grammar errors name the entry', () => {
    const errors = rejectErrors(
      policyWith({
        webGroups:
          '    - name: approved\n      domains: ["api.example.com", "https://x.example.com/", "*.com", "api*.example.com", "10.0.0.1", "a.example.com:443", ""]',
      }),
    );
    assertDiagnostic(errors, 'spec.webGroups[0].domains[1]', /"https:\/\/x\.example\.com\/" is a URL/);
    assertDiagnostic(errors, 'spec.webGroups[0].domains[2]', /"\*\.com" matches a whole top-level domain/);
    assertDiagnostic(errors, 'spec.webGroups[0].domains[3]', /inner or repeated wildcard/);
    assertDiagnostic(errors, 'spec.webGroups[0].domains[4]', /IP address — fix: use a cidr smartGroup/);
    assertDiagnostic(errors, 'spec.webGroups[0].domains[5]', /contains a port/);
    assertDiagnostic(errors, 'spec.webGroups[0].domains[6]', /is empty/);
  });

  test('oversized domain lists are rejected; the cap is configurable', () => {
    const domains = (n: number): string => Array.from({ length: n }, (_, i) => `h${i}.example.com`).join(', ');
    const text = (n: number): string => policyWith({ webGroups: `    - name: approved\n      domains: [${domains(n)}]` });
    acceptPolicies(text(MAX_DOMAINS_PER_WEBGROUP));
    assertDiagnostic(
      rejectErrors(text(MAX_DOMAINS_PER_WEBGROUP + 1)),
      'spec.webGroups[0].domains',
      new RegExp(`lists ${MAX_DOMAINS_PER_WEBGROUP + 1} domains \\(maximum ${MAX_DOMAINS_PER_WEBGROUP}\\)`),
    );
    assertDiagnostic(rejectErrors(text(3), { maxDomainsPerWebGroup: 2 }), 'spec.webGroups[0].domains', /lists 3 domains \(maximum 2\)/);
  });

  test('domains are normalised and de-duplicated', () => {
    const [policy] = acceptPolicies(
      policyWith({ webGroups: '    - name: approved\n      domains: ["API.Example.com.", "api.example.com", "bücher.example"]' }),
    );
    assert.deepEqual(compiledRules(policy)[0]?.domains, [
      { kind: 'exact', name: 'api.example.com' },
      { kind: 'exact', name: 'xn--bcher-kva.example' },
    ]);
  });
});

describe('accepted but not enforced', () => {
  test('uuid references: a permit rule becomes inactive, a deny rule widens to every destination and name', () => {
    const [policy] = acceptPolicies(
      policyWith({
        rules: `${permitRule('      webGroups: [{uuid: wg-1}]', 'permit-web-uuid')}
    - name: permit-dest-uuid
      action: permit
      selector: {matchLabels: {}}
      destinationSmartGroups: [{uuid: sg-1}]
    - name: deny-uuid
      action: deny
      selector: {matchLabels: {}}
      destinationSmartGroups: [{uuid: sg-2}]
      webGroups: [{name: approved}, {uuid: wg-2}]`,
      }),
    );
    const [webUuid, destUuid, denyUuid] = compiledRules(policy);
    assert.equal(webUuid?.active, false);
    assert.match(webUuid?.notEnforced.join() ?? '', /webGroup uuid wg-1 cannot be resolved \(dropped from this permit rule\)/);
    assert.equal(destUuid?.active, false);
    assert.deepEqual(destUuid?.cidrs, []);
    assert.equal(denyUuid?.active, true);
    assert.equal(denyUuid?.anyDestination, true);
    assert.equal(denyUuid?.domains, null);
    const warnings = findings(policy).map(formatDiagnostic);
    assert.ok(
      warnings.some((w) => /warning: spec\.rules\[0\]\.webGroups\[0\]\.uuid webGroup uuid wg-1 .*not enforced/.test(w)),
      warnings.join('\n'),
    );
  });

  test('non-cidr destination smartGroups: dropped from permits, widen denies', () => {
    const [policy] = acceptPolicies(
      policyWith({
        smartGroups: `    - name: any-destination
      selectors: [{cidr: 0.0.0.0/0}]
    - name: mixed
      selectors: [{cidr: 198.18.0.0/15}, {type: vpc, tags: {env: prod}}, {external: geo, extArgs: {country: FR}}, {s2c: remote}]
    - name: pods
      selectors: [{type: k8s, k8sNamespace: obot-mcp, tags: {app: x}}]`,
        rules: `    - name: permit-mixed
      action: permit
      selector: {matchLabels: {}}
      destinationSmartGroups: [{name: mixed}]
    - name: permit-pods
      action: permit
      selector: {matchLabels: {}}
      destinationSmartGroups: [{name: pods}]
    - name: deny-pods
      action: deny
      selector: {matchLabels: {}}
      destinationSmartGroups: [{name: pods}]`,
      }),
    );
    const [mixed, pods, denyPods] = compiledRules(policy);
    assert.deepEqual(mixed?.cidrs, [{ family: 4, address: '198.18.0.0', prefix: 15 }]);
    assert.equal(mixed?.active, true);
    assert.equal(mixed?.notEnforced.length, 3);
    assert.match(mixed?.notEnforced.join('\n') ?? '', /type vpc[\s\S]*external[\s\S]*s2c/);
    assert.equal(pods?.active, false);
    assert.equal(denyPods?.anyDestination, true);
    assert.match(denyPods?.notEnforced[0] ?? '', /this deny rule applies to every destination/);
  });

  test('destinations without any cidr selector are reported: the rule matches nothing', () => {
    const [policy] = acceptPolicies(
      policyWith({
        smartGroups: '    - name: any-destination\n    - name: unused\n      selectors: [{cidr: 10.0.0.0/8}]',
        rules: permitRule(''),
      }),
    );
    assert.equal(compiledRules(policy)[0]?.active, false);
    assert.match(findings(policy).map(formatDiagnostic).join(), /spec\.rules\[0\]\.destinationSmartGroups hold no cidr selector/);
  });

  test('service selectors, intrusion_detection_permit and WebgroupPolicy are warnings', () => {
    const [policy] = acceptPolicies(
      policyWith({
        rules: permitRule('')
          .replace('selector: {matchLabels: {app: a1}}', 'selector: {service: api}')
          .replace('action: permit', 'action: intrusion_detection_permit'),
      }),
    );
    const messages = findings(policy).map(formatDiagnostic).join('\n');
    assert.match(messages, /spec\.rules\[0\]\.selector\.service service selector "api" cannot be resolved in host mode/);
    assert.match(messages, /intrusion_detection_permit is enforced as permit/);
    assert.equal(compiledRules(policy)[0]?.action, 'permit');

    const webgroup = parseManifests(
      'apiVersion: networking.aviatrix.com/v1alpha1\nkind: WebgroupPolicy\nmetadata: {name: w, namespace: obot-mcp}\nspec:\n  allowedDomains: ["*.Example.com"]\n  selector: {matchLabels: {app: a}}\n',
      'wg.yaml',
    );
    assert.equal(webgroup.ok, true);
    assert.equal(webgroup.objects[0]?.kind, 'WebgroupPolicy');
    assert.match(
      webgroup.diagnostics.map(formatDiagnostic).join(),
      /warning: kind WebgroupPolicy is validated but not enforced.*Obot never writes/,
    );
    const badWebgroup = parseManifests(
      'apiVersion: networking.aviatrix.com/v1alpha1\nkind: WebgroupPolicy\nmetadata: {name: w, namespace: n}\nspec:\n  allowedDomains: ["*.com"]\n',
      'wg.yaml',
    );
    assert.equal(badWebgroup.ok, false);
    assertDiagnostic(badWebgroup.diagnostics, 'spec.allowedDomains[0]', /top-level domain/);
  });
});

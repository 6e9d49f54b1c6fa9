// Builders for policy manifests used by the policy unit tests: the Obot translator's three shapes and the lab fixtures.
import { strict as assert } from 'node:assert';
import { fileURLToPath } from 'node:url';
import { compilePolicy } from '../../src/policy/compile.js';
import { formatDiagnostic } from '../../src/policy/lint.js';
import { parseManifests } from '../../src/policy/parse.js';
import type { CompiledRule, PolicyDiagnostic } from '../../src/policy/types.js';
import type { ValidatedPolicy, ValidationOptions } from '../../src/policy/validate.js';

export const fixturesDir = fileURLToPath(new URL('../../../test/fixtures/policies/', import.meta.url));

/** The FirewallPolicy Obot's Aviatrix translator writes for one MCP server (policy contract §1). */
export function translatorPolicy(id: string, options: { domains?: string[]; namespace?: string }): string {
  const namespace = options.namespace ?? 'obot-mcp';
  const webGroup =
    options.domains === undefined
      ? ''
      : `  webGroups:
    - name: obot-${id}-approved-domains
      domains:
${options.domains.map((d) => `        - "${d}"`).join('\n')}
`;
  const allowRule =
    options.domains === undefined
      ? ''
      : `    - name: allow-approved-egress
      action: permit
      protocol: tcp
      port: 443
      logging: true
      selector:
        matchLabels:
          app: ${id}
      destinationSmartGroups:
        - name: any-destination
      webGroups:
        - name: obot-${id}-approved-domains
`;
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: obot-${id}-fw
  namespace: ${namespace}
spec:
  smartGroups:
    - name: obot-${id}-pods
      selectors:
        - type: k8s
          k8sNamespace: ${namespace}
          tags:
            app: ${id}
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
${webGroup}  rules:
${allowRule}    - name: deny-all-external
      action: deny
      protocol: any
      logging: true
      selector:
        matchLabels:
          app: ${id}
      destinationSmartGroups:
        - name: any-destination
`;
}

/** Parses text that must be valid and returns its FirewallPolicies. */
export function acceptPolicies(text: string, options: ValidationOptions = {}): ValidatedPolicy[] {
  const result = parseManifests(text, 'test.yaml', options);
  assert.equal(result.ok, true, result.diagnostics.map(formatDiagnostic).join('\n'));
  return result.objects.filter((o): o is ValidatedPolicy => o.kind === 'FirewallPolicy');
}

/** Parses text that must be rejected; returns the error diagnostics. */
export function rejectErrors(text: string, options: ValidationOptions = {}): PolicyDiagnostic[] {
  const result = parseManifests(text, 'bad.yaml', options);
  assert.equal(result.ok, false, 'expected the manifest to be rejected');
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  for (const object of result.objects) {
    const flagged = errors.some((d) => d.location.document === object.source.document && d.location.name === object.name);
    assert.ok(!flagged, `${object.name} has errors yet was accepted: a policy with an error must be rejected as a whole`);
  }
  return errors;
}

/** Asserts that one diagnostic points at `field` and that its one-line form matches every pattern. */
export function assertDiagnostic(diagnostics: PolicyDiagnostic[], field: string, ...patterns: RegExp[]): PolicyDiagnostic {
  const found = diagnostics.find((d) => d.location.field === field);
  assert.ok(found, `no diagnostic for ${field}; got:\n${diagnostics.map(formatDiagnostic).join('\n')}`);
  const line = formatDiagnostic(found);
  for (const pattern of patterns) assert.match(line, pattern);
  return found;
}

/** A minimal valid policy whose rule list and groups can be replaced piecewise (YAML fragments, 2-space indented under spec). */
export function policyWith(parts: { rules?: string; smartGroups?: string; webGroups?: string; metadata?: string }): string {
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
${parts.metadata ?? '  name: p1\n  namespace: obot-mcp'}
spec:
  smartGroups:
${parts.smartGroups ?? '    - name: any-destination\n      selectors:\n        - cidr: 0.0.0.0/0'}
  webGroups:
${parts.webGroups ?? '    - name: approved\n      domains: ["api.example.com"]'}
  rules:
${
  parts.rules ??
  `    - name: allow
      action: permit
      protocol: tcp
      port: 443
      selector: {matchLabels: {app: a1}}
      destinationSmartGroups: [{name: any-destination}]
      webGroups: [{name: approved}]`
}
`;
}

/** Every rule of `policy` compiled with host mode's resolver, whatever it selects. */
export function compiledRules(policy: ValidatedPolicy | undefined): CompiledRule[] {
  return policy === undefined ? [] : compilePolicy(policy).rules;
}

/** What the store reports about an accepted policy: validation warnings, then the compiler's findings. */
export function findings(policy: ValidatedPolicy | undefined): PolicyDiagnostic[] {
  return policy === undefined ? [] : [...policy.warnings, ...compilePolicy(policy).diagnostics];
}

// What the Kubernetes policy source hands to the store for an API object (src/k8s/policy-source.ts manifestFor), and
// that the store then enforces it like a file: selector.service resolved through the Service's selector.
import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { manifestFor, type PolicyObject } from '../../src/k8s/policy-source.js';
import { PolicyStore } from '../../src/policy/store.js';
import { translatorPolicy } from './policy-helpers.js';

function apiObject(yamlText: string): PolicyObject {
  const object = parseYaml(yamlText) as PolicyObject;
  object.metadata = {
    ...object.metadata,
    uid: 'u-1',
    generation: 3,
    resourceVersion: '812',
    managedFields: [{ manager: 'kubectl' }],
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"huge":"copy"}' },
  };
  object.status = { ruleset: 'abc' };
  return object;
}

const serviceRule = (service: string) => `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: by-service
  namespace: obot-mcp
spec:
  smartGroups:
    - name: anywhere
      selectors:
        - cidr: 0.0.0.0/0
  rules:
    - name: deny-all
      action: deny
      selector:
        service: ${service}
      destinationSmartGroups:
        - name: anywhere
`;

describe('manifestFor', () => {
  test('metadata is cut to name, namespace and labels; status dropped; the spec handed over as is', () => {
    const object = apiObject(translatorPolicy('ms1a', { domains: ['api.openai.com'] }));
    const { manifest, services } = manifestFor(object, 'FirewallPolicy', () => null);
    assert.deepEqual(manifest.metadata, { name: 'obot-ms1a-fw', namespace: 'obot-mcp' });
    assert.equal('status' in manifest, false);
    assert.deepEqual(manifest.spec, object.spec);
    assert.deepEqual(services, []);
  });

  test('selector.service becomes the Service selector as matchLabels; an unknown Service stays (it selects nothing)', () => {
    const object = apiObject(serviceRule('api'));
    const selectors: Record<string, Record<string, string> | null> = { 'obot-mcp/api': { app: 'ms1a', tier: 'web' } };
    const resolved = manifestFor(object, 'FirewallPolicy', (ns, name) => selectors[`${ns}/${name}`] ?? null);
    assert.deepEqual(resolved.services, ['api']);
    const rule = (resolved.manifest.spec as { rules: { selector: unknown }[] }).rules[0]!;
    assert.deepEqual(rule.selector, { matchLabels: { app: 'ms1a', tier: 'web' } });
    assert.deepEqual(
      (object.spec as { rules: { selector: unknown }[] }).rules[0]!.selector,
      { service: 'api' },
      'the cached object is untouched',
    );

    const unresolved = manifestFor(apiObject(serviceRule('gone')), 'FirewallPolicy', () => null);
    assert.deepEqual((unresolved.manifest.spec as { rules: { selector: unknown }[] }).rules[0]!.selector, { service: 'gone' });
  });

  test('in the store: a resolved service selects like matchLabels; a Service re-labelled is a new generation', () => {
    const store = new PolicyStore(
      {},
      {
        resolve: () => ({ unsupported: 'n/a' }),
        resolveService: (service, namespace) => ({ unsupported: `names no Service in namespace ${namespace} (${service})` }),
      },
    );
    const apply = (selector: Record<string, string> | null) =>
      store.applyFile(
        'kubernetes:FirewallPolicy/obot-mcp/by-service',
        JSON.stringify(manifestFor(apiObject(serviceRule('api')), 'FirewallPolicy', () => selector).manifest),
      );
    assert.deepEqual(
      apply({ app: 'ms1a' }).filter((d) => d.severity === 'error'),
      [],
    );
    const first = store.get('obot-mcp', 'by-service')!;
    assert.deepEqual(first.rules[0]!.selector, { matchLabels: { app: 'ms1a' } });
    apply({ app: 'ms1b' });
    assert.equal(store.get('obot-mcp', 'by-service')!.generation, first.generation + 1);
    const warnings = apply(null);
    assert.match(
      warnings.map((d) => d.message).join('\n'),
      /service selector "api" names no Service in namespace obot-mcp .*selects no workload/,
    );
  });
});

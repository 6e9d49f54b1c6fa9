// The chart's CRDs and FirewallPolicy objects in a test control plane, sent as kubectl and helm send them.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ApiextensionsV1Api, CustomObjectsApi, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { ControlPlane } from './control-plane.js';

export const CRD_DIR = fileURLToPath(new URL('../../../../charts/egressguard/crds/', import.meta.url));

/**
 * Creates a CRD from its YAML exactly as written: the typed client would drop fields it names differently (`enum` is
 * `_enum` in its model), so the object goes through the untyped custom-object call.
 */
export function createCrd(plane: ControlPlane, crd: V1CustomResourceDefinition): Promise<unknown> {
  return plane
    .admin(CustomObjectsApi)
    .createClusterCustomObject({ group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', body: crd });
}

/** Installs every CRD of the chart and waits until the API server serves each. */
export async function installChartCrds(plane: ControlPlane, timeoutMs = 30_000): Promise<void> {
  const extensions = plane.admin(ApiextensionsV1Api);
  for (const file of readdirSync(CRD_DIR)) {
    const crd = parseYaml(readFileSync(`${CRD_DIR}${file}`, 'utf8')) as V1CustomResourceDefinition;
    await createCrd(plane, crd);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const read = await extensions.readCustomResourceDefinition({ name: crd.metadata!.name! });
      if (read.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata!.name!} not established within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Creates a FirewallPolicy given as YAML (its metadata names the namespace). */
export async function createFirewallPolicy(plane: ControlPlane, yamlText: string): Promise<void> {
  const body = parseYaml(yamlText) as { metadata: { namespace: string } };
  await plane.admin(CustomObjectsApi).createNamespacedCustomObject({
    group: 'networking.aviatrix.com',
    version: 'v1alpha1',
    namespace: body.metadata.namespace,
    plural: 'firewallpolicies',
    body,
  });
}

// Shared by the lab benchmarks: the workload, its policy, running the load generator in the pod, medians.
import { fileURLToPath } from 'node:url';
import type { Lab } from '../lab/lab.js';

const LOAD_SCRIPT = fileURLToPath(new URL('./load.js', import.meta.url));

export const WORKLOAD = { pod: 'w', namespace: 'bench', name: 'w', labels: { app: 'bench' } };

/** The translator's allowlist shape for the bench workload: api.openai.com on the given TCP ports, then deny-all. */
export function allowOpenAiPolicy(name: string, port: number, endPort = port): string {
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: ${name}, namespace: ${WORKLOAD.namespace} }
spec:
  smartGroups:
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
  webGroups:
    - name: approved
      domains: [api.openai.com]
  rules:
    - name: allow-openai
      action: permit
      protocol: tcp
      port: ${port}
      endPort: ${endPort}
      selector: { matchLabels: { app: ${WORKLOAD.labels.app} } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
    - name: deny-all
      action: deny
      selector: { matchLabels: { app: ${WORKLOAD.labels.app} } }
      destinationSmartGroups: [{ name: any-destination }]
`;
}

/** Run bench/load.ts in the workload's pod (the lab trusts its CA there) and parse its JSON line. */
export async function loadInPod(lab: Lab, args: string[]): Promise<Record<string, number>> {
  const result = await lab.runInPod(WORKLOAD.pod, [process.execPath, LOAD_SCRIPT, ...args], { timeoutMs: 600_000 });
  if (result.code !== 0) throw new Error(`load ${args.join(' ')} failed: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

export function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

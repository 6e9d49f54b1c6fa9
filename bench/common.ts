// Shared by the lab benchmarks: the workload, its policy, running the load generator in the pod, medians.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
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

/** The middle value; with an even count, the mean of the two middle ones. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Sorted ascending first. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Smallest and largest sample: the spread reported next to a median. */
export function spread(values: readonly number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) };
}

/** Where each benchmark leaves its JSON report for bench/report.ts (docs/benchmarks.md and the charts). */
export function saveResult(name: string, report: object): void {
  const dir = process.env.BENCH_RESULTS ?? 'dist/bench-results';
  mkdirSync(dir, { recursive: true });
  const machine = { loadAverage: loadavg(), cpus: cpus().length, kernel: release() };
  writeFileSync(join(dir, `${name}.json`), JSON.stringify({ name, machine, ...report }, null, 2));
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime + stime of a process, seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

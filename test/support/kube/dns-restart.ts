// An agent restart in Kubernetes mode while a pod looks names up through the steered proxy and a rogue pod loops
// connecting: what test/integration/k8s-dns-restart.test.ts asserts and bench/k8s-dns-restart.ts reports. Both clients
// are bench/load.js (dns-rate: paced lookups retried like glibc's resolver; connect-loop), run in the pods' network
// namespaces and cgroups, so the kernel steers and judges them as any container of the pod.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAB_ADDRESSES, type Lab } from '../../../lab/lab.js';
import type { LabAgent } from '../../../lab/lab-agent.js';
import { keptPoliciesPath } from '../../../src/k8s/kept-policies.js';
import { DENIED_PORT, DNS_POLICY, HTTPBIN, NAMESPACE } from '../k8s-pods.js';
import { waitUntil } from '../wait.js';
import { createFirewallPolicy } from './crds.js';
import type { KubeNode } from './node.js';
import type { KubePod } from './pods.js';

const LOAD_SCRIPT = fileURLToPath(new URL('../../../bench/load.js', import.meta.url));

/**
 * `kill`: SIGKILL, then a new agent process with the same files (a crashed container that kubelet restarts in its
 * pod: the emptyDir /run/egressguard, holding the kept pods and policies, survives). `replace`: SIGTERM, the kept
 * files removed, a new process (a DaemonSet rollout: a new pod, a new emptyDir; it must list the API server first).
 */
export type RestartKind = 'kill' | 'replace';

export interface Lookups {
  sent: number;
  /** Lookups with no answer after every attempt. */
  failed: number;
  rcodes: Record<string, number>;
  /** When answers other than NOERROR came: the first and the last of each code, ms since the epoch. */
  rcodeSpans: Record<string, { firstMs: number; lastMs: number }>;
  /** Stretches of over 100 ms without any answer, ms since the epoch. */
  silences: { fromMs: number; toMs: number }[];
  lastAnswerMs: number;
}

export interface ConnectLoop {
  attempts: number;
  connected: number;
  errors: Record<string, number>;
}

export interface RestartRun {
  kind: RestartKind;
  lookups: Lookups;
  rogue: ConnectLoop;
  /** When the old agent was stopped and when the new one was ready (it knows its pods; /readyz 200), epoch ms. */
  stoppedMs: number;
  readyMs: number;
  /** The longest silence after the stop (no agent answering); null when the answers never paused for over 100 ms. */
  outage: { fromMs: number; toMs: number } | null;
  /** When the client stopped sending new lookups (about; it started just before), epoch ms. */
  sendingEndsMs: number;
}

/** Paced lookups from `pod` for `seconds` at `qps`, each retried every `timeoutMs` up to `attempts` times. */
export function lookupsFrom(
  lab: Lab,
  pod: KubePod,
  name: string,
  options: { qps: number; seconds: number; timeoutMs: number; attempts: number },
): Promise<Lookups> {
  const { qps, seconds, timeoutMs, attempts } = options;
  const argv = ['dns-rate', name, LAB_ADDRESSES.resolver.ipv4, String(qps), String(seconds), String(timeoutMs), String(attempts)];
  return runLoad<Lookups>(lab, pod, argv, seconds * 1000 + timeoutMs * attempts + 30_000);
}

/** TCP connects from `pod` to address:port, one after the other, for `seconds`. */
export function connectLoopFrom(lab: Lab, pod: KubePod, address: string, port: number, seconds: number): Promise<ConnectLoop> {
  return runLoad<ConnectLoop>(lab, pod, ['connect-loop', address, String(port), String(seconds)], seconds * 1000 + 30_000);
}

async function runLoad<T>(lab: Lab, pod: KubePod, argv: string[], timeoutMs: number): Promise<T> {
  if (pod.network === null) throw new Error(`pod ${pod.name} has no network yet`);
  const result = await lab.runInPod(pod.network, [process.execPath, LOAD_SCRIPT, ...argv], { timeoutMs });
  if (result.code !== 0) throw new Error(`load ${argv[0]} in ${pod.name} failed (exit ${result.code ?? result.signal}): ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as T;
}

/** When the agent logged that it is ready (knows its pods: /readyz answers 200) after `sinceMs`, epoch ms; null: not yet. */
function readySince(agent: LabAgent, sinceMs: number): number | null {
  for (const line of agent.log().split('\n')) {
    if (!line.includes('"msg":"workloads known: ready"')) continue;
    const { time } = JSON.parse(line) as { time: number };
    if (time >= sinceMs) return time;
  }
  return null;
}

/** benign may resolve api.openai.com (DNS_POLICY); rogue has no policy. The agent is made, not started. */
export async function restartScene(node: KubeNode): Promise<{ agent: LabAgent; benign: KubePod; rogue: KubePod }> {
  await createFirewallPolicy(node.plane, DNS_POLICY);
  const benign = await node.kubelet.runPod({ namespace: NAMESPACE, name: 'benign', labels: { app: 'benign' } });
  const rogue = await node.kubelet.runPod({ namespace: NAMESPACE, name: 'rogue', labels: { app: 'rogue' } });
  return { agent: await node.agent(), benign, rogue };
}

/** Wait until the agent enforces both pods of the scene, with their addresses. */
export async function bothEnforced(agent: LabAgent): Promise<void> {
  await agent.waitFor(
    'both pods enforced with their addresses',
    (s) => ['benign', 'rogue'].every((name) => s.workloads.find((w) => w.key === `${NAMESPACE}/${name}`)?.addresses.length === 2),
    60_000,
  );
}

/**
 * Restart the scene's agent (started, enforcing both pods) 3 s into `seconds` of lookups of api.openai.com from
 * benign at `qps`, retried like glibc's resolver (5 s, 2 attempts), and of the rogue's connect loop to a denied
 * address (httpbin, port 80).
 */
export async function restartUnderLoad(options: {
  lab: Lab;
  agent: LabAgent;
  kind: RestartKind;
  benign: KubePod;
  rogue: KubePod;
  qps: number;
  seconds: number;
}): Promise<RestartRun> {
  const { lab, agent, kind, benign, rogue, seconds } = options;
  /** After this the client only waits for the answers (retries) it still expects: silences then are no outage. */
  const sendingEndsMs = Date.now() + seconds * 1000;
  const lookups = lookupsFrom(lab, benign, 'api.openai.com', { ...options, timeoutMs: 5000, attempts: 2 });
  const connects = connectLoopFrom(lab, rogue, HTTPBIN.ipv4, DENIED_PORT, seconds);
  try {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const stoppedMs = Date.now();
    await agent.stop(kind === 'kill' ? 'SIGKILL' : 'SIGTERM');
    // The pod state and the policies kept beside it: what a replaced pod's emptyDir loses.
    const podState = join(lab.workDir, 'agent-pods.json');
    if (kind === 'replace') for (const file of [podState, keptPoliciesPath(podState)]) rmSync(file, { force: true });
    await agent.start(60_000);
    await waitUntil('the new agent ready', () => readySince(agent, stoppedMs) !== null, 60_000);
    const readyMs = readySince(agent, stoppedMs)!;
    const [done, rogueLoop] = await Promise.all([lookups, connects]);
    const outage = done.silences.filter((s) => s.toMs >= stoppedMs).sort((a, b) => b.toMs - b.fromMs - (a.toMs - a.fromMs))[0] ?? null;
    return { kind, lookups: done, rogue: rogueLoop, stoppedMs, readyMs, outage, sendingEndsMs };
  } finally {
    // Both clients end on their own; wait for them whatever happened to the agent.
    await Promise.allSettled([lookups, connects]);
  }
}

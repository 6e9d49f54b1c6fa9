// Whether a stopping agent pod is being uninstalled (end enforcement, leave the node clean) or replaced (rolling
// update, restart, eviction: keep the pinned state so the next agent adopts it and enforcement never pauses).
//
// The signal is the agent's own DaemonSet: `helm uninstall` deletes it before its pods stop, while a rolling update,
// `kubectl rollout restart` or a deleted pod leave it in place. Anything uncertain (API server unreachable, a
// forbidden read, a timeout) keeps enforcing: failing open on a node because the API server was slow is the worse
// error, and `egressguard teardown` on the node ends enforcement on purpose.

import type { KubeConfig } from '@kubernetes/client-node';

/** The DaemonSet that runs this agent, as the chart passes it (downward API namespace, release name). */
export interface AgentOwner {
  namespace: string;
  daemonSet: string;
}

/** null: the DaemonSet does not exist (HTTP 404). */
export type DaemonSetReader = (owner: AgentOwner) => Promise<{ deletionTimestamp: Date | null } | null>;

export interface StopDecision {
  /** true: end enforcement on this node (detach, unpin); false: leave the pinned state for the next agent. */
  cleanNode: boolean;
  reason: string;
}

/** The owner from the environment the chart sets, or null outside the chart (host mode, a hand-run agent). */
export function agentOwnerFromEnv(env: NodeJS.ProcessEnv): AgentOwner | null {
  const namespace = env.POD_NAMESPACE?.trim();
  const daemonSet = env.EGRESSGUARD_DAEMONSET?.trim();
  return namespace && daemonSet ? { namespace, daemonSet } : null;
}

export async function decideOnStop(owner: AgentOwner, read: DaemonSetReader, timeoutMs: number): Promise<StopDecision> {
  const where = `DaemonSet ${owner.namespace}/${owner.daemonSet}`;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const daemonSet = await Promise.race([read(owner), timeout]);
    if (daemonSet === null) return { cleanNode: true, reason: `${where} is gone: egressguard is being uninstalled` };
    if (daemonSet.deletionTimestamp !== null)
      return { cleanNode: true, reason: `${where} is being deleted: egressguard is being uninstalled` };
    return { cleanNode: false, reason: `${where} still exists (rolling update or restart): the next agent adopts the pinned state` };
  } catch (error) {
    const status = httpStatusOf(error);
    const detail = status !== null ? `HTTP ${status}` : error instanceof Error ? error.message : String(error);
    return {
      cleanNode: false,
      reason: `cannot read ${where} (${detail}): enforcement stays in force; run \`egressguard teardown\` on the node to end it`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The HTTP status of a client-node ApiException (a numeric `code`), or null for any other error. */
function httpStatusOf(error: unknown): number | null {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : null;
}

/** A reader over the API server the agent already talks to (in-cluster service account, or $KUBECONFIG). */
export async function apiDaemonSetReader(kubeConfig: KubeConfig): Promise<DaemonSetReader> {
  // Loaded here, not at the top: host mode never pays for the Kubernetes client.
  const { AppsV1Api } = await import('@kubernetes/client-node');
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  return async ({ namespace, daemonSet }) => {
    try {
      const found = await apps.readNamespacedDaemonSet({ name: daemonSet, namespace });
      return { deletionTimestamp: found.metadata?.deletionTimestamp ?? null };
    } catch (error) {
      if (httpStatusOf(error) === 404) return null;
      throw error;
    }
  };
}

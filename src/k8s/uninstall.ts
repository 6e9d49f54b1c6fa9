// Whether a stopping agent pod is being uninstalled (end enforcement, leave the node clean) or replaced (rolling
// update, restart, eviction: keep the pinned state so the next agent adopts it and enforcement never pauses).
//
// The signal is the agent's own DaemonSet: `helm uninstall` deletes it before its pods stop, while a rolling update,
// `kubectl rollout restart` or a deleted pod leave it in place. `helm uninstall` also deletes the agent's Role,
// RoleBinding and ServiceAccount right after the DaemonSet (Helm's uninstall order), so a read at stop is usually
// refused (403, or 401 once the token's ServiceAccount is gone): the agent watches its DaemonSet while it runs, and
// the deletion its established watch saw decides. Anything uncertain (no deletion seen, API server unreachable, a
// forbidden read, a timeout) keeps enforcing: failing open on a node because the API server was slow is the worse
// error, and `egressguard teardown` on the node ends enforcement on purpose.

import type { V1DaemonSet } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AgentOwner } from './agent-owner.js';
import { apiStatusOf, type KubeClient, type Wire } from './api.js';
import { ResilientInformer } from './informer.js';

export { agentOwnerFromEnv, type AgentOwner } from './agent-owner.js';

/** null: the DaemonSet does not exist (HTTP 404). */
export type DaemonSetReader = (owner: AgentOwner) => Promise<{ deletionTimestamp: string | null } | null>;

export interface StopDecision {
  /** true: end enforcement on this node (detach, unpin); false: leave the pinned state for the next agent. */
  cleanNode: boolean;
  reason: string;
}

/**
 * `deletionSeen`: what the running agent's watch saw (OwnDaemonSetWatch.deletionSeen), which decides on its own;
 * otherwise the DaemonSet is read now.
 */
export async function decideOnStop(
  owner: AgentOwner,
  read: DaemonSetReader,
  timeoutMs: number,
  deletionSeen: string | null = null,
): Promise<StopDecision> {
  const where = `DaemonSet ${owner.namespace}/${owner.daemonSet}`;
  if (deletionSeen !== null) return { cleanNode: true, reason: `${where} ${deletionSeen}: egressguard is being uninstalled` };
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
    const status = apiStatusOf(error) ?? null;
    const detail = status !== null ? `HTTP ${status}` : error instanceof Error ? error.message : String(error);
    return {
      cleanNode: false,
      reason: `cannot read ${where} (${detail}): enforcement stays in force; run \`egressguard teardown\` on the node to end it`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The agent's own DaemonSet, watched by name (field selector metadata.name, which RBAC's resourceNames allows for list
 * and watch) while the agent runs: remembers a deletion it saw, gone from a list or marked for deletion.
 */
export class OwnDaemonSetWatch {
  private readonly informer: ResilientInformer<Wire<V1DaemonSet>>;
  private seen: string | null = null;
  private listedOnce = false;

  constructor(client: KubeClient, owner: AgentOwner, log: Logger) {
    this.informer = new ResilientInformer<Wire<V1DaemonSet>>({
      name: `DaemonSet ${owner.namespace}/${owner.daemonSet}`,
      client,
      path: `/apis/apps/v1/namespaces/${owner.namespace}/daemonsets`,
      fieldSelector: `metadata.name=${owner.daemonSet}`,
      log,
      onChange: () => this.observe(),
    });
  }

  start(): void {
    this.informer.start();
  }

  async stop(): Promise<void> {
    await this.informer.stop();
  }

  /** How the deletion was seen ("was deleted at ...", "is being deleted"), or null when it was not. */
  deletionSeen(): string | null {
    return this.seen;
  }

  private observe(): void {
    const [daemonSet] = this.informer.list();
    if (daemonSet === undefined) {
      // Gone from a list that once held it (a first list without it says nothing: the agent may run outside the chart).
      if (this.listedOnce && this.seen === null) this.seen = `was deleted (seen at ${new Date().toISOString()})`;
      return;
    }
    this.listedOnce = true;
    if (daemonSet.metadata?.deletionTimestamp && this.seen === null) this.seen = 'is being deleted';
  }
}

/** A reader over the API server the agent already talks to (in-cluster service account, or $KUBECONFIG). */
export function apiDaemonSetReader(client: KubeClient): DaemonSetReader {
  return async ({ namespace, daemonSet }) => {
    try {
      const found = await client.get<Wire<V1DaemonSet>>(`/apis/apps/v1/namespaces/${namespace}/daemonsets/${daemonSet}`);
      return { deletionTimestamp: found.metadata?.deletionTimestamp ?? null };
    } catch (error) {
      if (apiStatusOf(error) === 404) return null;
      throw error;
    }
  };
}

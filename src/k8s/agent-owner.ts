// Which DaemonSet runs this agent, from the environment the Helm chart sets. Apart from src/k8s/uninstall.ts so that an
// agent outside the chart (host mode) never loads the Kubernetes client just to learn it has no owner.

/** The DaemonSet that runs this agent, as the chart passes it (downward API namespace, release name). */
export interface AgentOwner {
  namespace: string;
  daemonSet: string;
}

/** The owner from the environment the chart sets, or null outside the chart (host mode, a hand-run agent). */
export function agentOwnerFromEnv(env: NodeJS.ProcessEnv): AgentOwner | null {
  const namespace = env.POD_NAMESPACE?.trim();
  const daemonSet = env.EGRESSGUARD_DAEMONSET?.trim();
  return namespace && daemonSet ? { namespace, daemonSet } : null;
}

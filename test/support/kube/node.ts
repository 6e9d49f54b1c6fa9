// One Kubernetes node for the Kubernetes-mode tests and benchmarks: the netns lab, a real kube-apiserver and etcd in its
// node namespace with the enforced and the agent's namespaces, the agent's ServiceAccount and RBAC and the chart's CRDs;
// optionally a kubelet laying pods out, and the real agent process reading them with that ServiceAccount's token.
// Everything it starts is removed by destroy(), in reverse order, even when a step fails.
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { Lab, type LabOptions } from '../../../lab/lab.js';
import { LabAgent, type LabAgentOptions } from '../../../lab/lab-agent.js';
import type { PolicyObject } from '../../../src/k8s/policy-source.js';
import { translatorPolicy } from '../../unit/policy-helpers.js';
import { AGENT_NAMESPACE, NAMESPACE, grantAgentRbac } from '../k8s-pods.js';
import { installChartCrds } from './crds.js';
import { ControlPlane, type ControlPlaneOptions } from './control-plane.js';
import { Kubelet, ensureNamespace, type KubeletOptions } from './pods.js';

export interface KubeNodeOptions {
  /** Unique lab prefix; stale labs and control planes of `stalePattern` are removed first. */
  prefix: string;
  stalePattern: RegExp;
  lab?: Omit<LabOptions, 'prefix'>;
  /** Namespaces besides the enforced one (NAMESPACE) and the agent's (AGENT_NAMESPACE). */
  namespaces?: string[];
  watchCache?: ControlPlaneOptions['watchCache'];
  /** A kubelet laying pods out on this node; none when omitted. */
  kubelet?: Omit<KubeletOptions, 'lab' | 'plane'>;
}

/** What the agent's `kubernetes:` section may set beyond what the node gives (node name, namespace, credentials, root). */
export interface KubeAgentOptions extends Omit<LabAgentOptions, 'workloads' | 'kubernetes' | 'mode'> {
  podCgroupTimeoutSeconds?: number;
  /** The agent's pod state file, relative to the lab's work directory; null: none. Default `agent-pods.json`. */
  stateFile?: string | null;
}

export const FIREWALL_POLICIES = { group: 'networking.aviatrix.com', version: 'v1alpha1', plural: 'firewallpolicies' } as const;

export class KubeNode {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  private readonly agents: LabAgent[] = [];

  private constructor(
    readonly lab: Lab,
    readonly plane: ControlPlane,
    private readonly kubeletOrNull: Kubelet | null,
  ) {
    this.core = plane.admin(CoreV1Api);
    this.custom = plane.admin(CustomObjectsApi);
  }

  static async start(options: KubeNodeOptions): Promise<KubeNode> {
    await Lab.cleanupStale(options.stalePattern);
    await ControlPlane.cleanupStale(options.stalePattern);
    const lab = await Lab.create({ pods: [], ...options.lab, prefix: options.prefix });
    let plane: ControlPlane | null = null;
    try {
      plane = await ControlPlane.start({ prefix: options.prefix, netns: lab.nodeNetns, watchCache: options.watchCache });
      const core = plane.admin(CoreV1Api);
      for (const namespace of [NAMESPACE, AGENT_NAMESPACE, ...(options.namespaces ?? [])]) await ensureNamespace(core, namespace);
      await grantAgentRbac(plane);
      await installChartCrds(plane);
      const kubelet = options.kubelet ? await Kubelet.start({ ...options.kubelet, lab, plane }) : null;
      return new KubeNode(lab, plane, kubelet);
    } catch (error) {
      // The setup's own error is the one to report; a cleanup that also fails is logged beside it.
      await plane?.destroy().catch((cleanup: unknown) => console.error('control plane cleanup after a failed start:', cleanup));
      await lab.destroy().catch((cleanup: unknown) => console.error('lab cleanup after a failed start:', cleanup));
      throw error;
    }
  }

  get kubelet(): Kubelet {
    if (this.kubeletOrNull === null) throw new Error('this node was started without a kubelet');
    return this.kubeletOrNull;
  }

  /** The real agent in Kubernetes mode on this node, with the ServiceAccount's token and RBAC (not started). */
  async agent(options: KubeAgentOptions = {}): Promise<LabAgent> {
    const { podCgroupTimeoutSeconds, stateFile = 'agent-pods.json', env, ...rest } = options;
    const serviceAccount = await this.plane.serviceAccountFiles(AGENT_NAMESPACE, 'egressguard');
    const agent = new LabAgent(this.lab, {
      ...rest,
      workloads: [],
      mode: 'enforce',
      env: { ...serviceAccount.env, ...env },
      kubernetes: {
        nodeName: this.kubelet.nodeName,
        namespaces: [NAMESPACE],
        serviceAccountDir: serviceAccount.dir,
        cgroupRoot: this.kubelet.kubepodsCgroup,
        ...(podCgroupTimeoutSeconds === undefined ? {} : { podCgroupTimeoutSeconds }),
        stateFile: stateFile === null ? null : join(this.lab.workDir, stateFile),
      },
    });
    this.agents.push(agent);
    return agent;
  }

  /** `count` FirewallPolicies of Obot's translator shape in NAMESPACE, MCP server `ms<i>` permitted `api<i>.example.com`. */
  async createTranslatorPolicies(count: number, parallel = 8): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const i = next++;
          await this.custom.createNamespacedCustomObject({ ...FIREWALL_POLICIES, namespace: NAMESPACE, body: translatorPolicyObject(i) });
        }
      }),
    );
  }

  async destroy(): Promise<void> {
    try {
      for (const agent of this.agents.reverse()) await agent.teardown().catch(() => undefined);
    } finally {
      try {
        await this.kubeletOrNull?.destroy();
      } finally {
        try {
          await this.plane.destroy();
        } finally {
          await this.lab.destroy();
        }
      }
    }
  }
}

/** Policy i of Obot's translator shape: MCP server `ms<i>` (pods labelled app=ms<i>) may reach `domain`. */
export function translatorPolicyObject(i: number, domain = `api${i}.example.com`): PolicyObject {
  return parseYaml(translatorPolicy(`ms${i}`, { domains: [domain], namespace: NAMESPACE })) as PolicyObject;
}

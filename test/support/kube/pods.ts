// Pods laid out on a netns lab the way kubelet, containerd (or CRI-O) and a CNI plugin lay them out on a node, with
// the Pod objects in a real API server (control-plane.ts) carrying the status a kubelet writes. The agent under test
// sees what it would see on a node: the kubepods cgroup tree of the systemd or the cgroupfs driver (all three QoS
// classes), a netns and a veth per pod with its host side in the node netns, a pause process in the sandbox scope.
//
// Order of one pod start, as kubelet does it: the Pod object exists (bound to the node) → kubelet creates the pod-level
// cgroup → the runtime makes the sandbox (netns, CNI ADD: veth and addresses; then the sandbox scope and its pause
// process) → kubelet writes status (Pending, podIPs) → the runtime creates the container scope and starts the
// application in it → kubelet writes status (Running, Ready). runPod can stop after any step (`until`).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CoreV1Api, type V1Node, type V1Pod, type V1ResourceRequirements } from '@kubernetes/client-node';
import { removeCgroup, type Lab, type LabPod } from '../../../lab/lab.js';
import type { ControlPlane } from './control-plane.js';

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';
export type CgroupDriver = 'systemd' | 'cgroupfs';
export type ContainerRuntime = 'containerd' | 'cri-o';
/** The kubelet steps of one pod start, in order; runPod stops after the one named by `until`. */
export const POD_STEPS = ['bound', 'pod-cgroup', 'sandbox', 'running'] as const;
export type PodStep = (typeof POD_STEPS)[number];

export interface KubeletOptions {
  lab: Lab;
  plane: ControlPlane;
  /** The Node object's name (the agent's NODE_NAME). */
  nodeName: string;
  driver: CgroupDriver;
  runtime?: ContainerRuntime;
  /** Where the kubepods tree goes. Default: the lab's attach cgroup (on a node it is the cgroup2 root). */
  cgroupRoot?: string;
  /** Node addresses (status.addresses InternalIP); default: the node's end of the lab's uplink, both families. */
  nodeIps?: string[];
  /** spec.podCIDRs of the Node; default none (many CNIs do not use them). */
  podCidrs?: string[];
}

export interface PodOptions {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  qos?: QosClass;
  /** A hostNetwork pod: cgroups and status as any pod, but no netns, veth or addresses of its own. */
  hostNetwork?: boolean;
  /** The application started in the container scope (inside the pod); default `sleep infinity`. */
  command?: string[];
  /** Stop after this step (default 'running'); advance() continues later. */
  until?: PodStep;
}

export interface KubePod {
  namespace: string;
  name: string;
  uid: string;
  qos: QosClass;
  hostNetwork: boolean;
  /** The last step done. */
  step: PodStep;
  /** cgroup v2 directories: the pod-level one, the sandbox (pause) scope and the application container's scope. */
  podCgroup: string;
  sandboxCgroup: string;
  containerCgroup: string;
  sandboxId: string;
  containerId: string;
  /** The lab pod (netns, addresses, probes); null before the sandbox step and for hostNetwork pods. */
  network: LabPod | null;
  /** performance.timeOrigin-based milliseconds of each step's end, for registration-gap measurements. */
  timeline: Partial<Record<PodStep, number>>;
}

const APP_CONTAINER = 'app';
const APP_IMAGE = 'registry.example/egressguard-test/app:1';
const QOS_DIRECTORY: Record<Exclude<QosClass, 'Guaranteed'>, string> = { Burstable: 'burstable', BestEffort: 'besteffort' };

/** The resources that make the API server compute the wanted QoS class (status.qosClass). */
function resourcesFor(qos: QosClass): V1ResourceRequirements | undefined {
  switch (qos) {
    case 'Guaranteed':
      return { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '10m', memory: '16Mi' } };
    case 'Burstable':
      return { requests: { cpu: '10m', memory: '16Mi' } };
    case 'BestEffort':
      return undefined;
  }
}

function containerId(): string {
  return randomBytes(32).toString('hex');
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Relative cgroup paths (under the cgroup root) of the node-level kubepods tree, parents first. */
export function nodeCgroups(driver: CgroupDriver): string[] {
  return driver === 'systemd'
    ? ['kubepods.slice', 'kubepods.slice/kubepods-burstable.slice', 'kubepods.slice/kubepods-besteffort.slice']
    : ['kubepods', 'kubepods/burstable', 'kubepods/besteffort'];
}

/** Relative path of a pod's pod-level cgroup, as kubelet names it (systemd escapes '-' in the UID as '_'). */
export function podCgroup(driver: CgroupDriver, qos: QosClass, uid: string): string {
  if (driver === 'systemd') {
    const escaped = uid.replaceAll('-', '_');
    if (qos === 'Guaranteed') return `kubepods.slice/kubepods-pod${escaped}.slice`;
    const tier = QOS_DIRECTORY[qos];
    return `kubepods.slice/kubepods-${tier}.slice/kubepods-${tier}-pod${escaped}.slice`;
  }
  return qos === 'Guaranteed' ? `kubepods/pod${uid}` : `kubepods/${QOS_DIRECTORY[qos]}/pod${uid}`;
}

/** Name of a container's cgroup inside its pod's cgroup, as the runtime names it for the driver. */
export function containerCgroupName(driver: CgroupDriver, runtime: ContainerRuntime, id: string): string {
  const runtimePrefix = runtime === 'containerd' ? 'cri-containerd' : 'crio';
  if (driver === 'systemd') return `${runtimePrefix}-${id}.scope`;
  return runtime === 'containerd' ? id : `crio-${id}`;
}

/**
 * Create a namespace unless it exists, with the `default` ServiceAccount that kube-controller-manager would add (the
 * harness runs no controller-manager; the ServiceAccount admission plugin refuses pods without it).
 */
export async function ensureNamespace(core: CoreV1Api, name: string): Promise<void> {
  const unlessExists = (error: unknown): void => {
    if ((error as { code?: number }).code !== 409) throw error;
  };
  await core.createNamespace({ body: { metadata: { name } } }).catch(unlessExists);
  await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } }).catch(unlessExists);
}

/** A stand-in for the kubelet and container runtime of one lab node. */
export class Kubelet {
  readonly nodeName: string;
  readonly driver: CgroupDriver;
  readonly runtime: ContainerRuntime;
  readonly cgroupRoot: string;
  readonly pods: KubePod[] = [];
  private readonly lab: Lab;
  private readonly core: CoreV1Api;
  private readonly nodeIps: string[];

  private constructor(options: KubeletOptions) {
    this.lab = options.lab;
    this.nodeName = options.nodeName;
    this.driver = options.driver;
    this.runtime = options.runtime ?? 'containerd';
    this.cgroupRoot = options.cgroupRoot ?? options.lab.attachCgroup;
    this.core = options.plane.admin(CoreV1Api);
    this.nodeIps = options.nodeIps ?? ['198.18.2.1', 'fd00:eb:2::1'];
  }

  /** Create the node-level kubepods cgroups and register the Node (Ready), as kubelet does when it starts. */
  static async start(options: KubeletOptions): Promise<Kubelet> {
    const kubelet = new Kubelet(options);
    for (const relative of nodeCgroups(kubelet.driver)) await kubelet.lab.addCgroup(join(kubelet.cgroupRoot, relative));
    await kubelet.registerNode(options.podCidrs ?? []);
    return kubelet;
  }

  /** The kubelet's pod cgroup root (`kubepods.slice` or `kubepods`), absolute: the agent's kubernetes.cgroupRoot. */
  get kubepodsCgroup(): string {
    return join(this.cgroupRoot, nodeCgroups(this.driver)[0] as string);
  }

  /** The pod of that namespace and name on this node, or throw. */
  pod(namespace: string, name: string): KubePod {
    const pod = this.pods.find((candidate) => candidate.namespace === namespace && candidate.name === name);
    if (pod === undefined) throw new Error(`kubelet ${this.nodeName} runs no pod ${namespace}/${name}`);
    return pod;
  }

  /** Create the Pod (bound to this node) and take it through kubelet's steps up to options.until. */
  async runPod(options: PodOptions): Promise<KubePod> {
    const qos = options.qos ?? 'BestEffort';
    const created = await this.core.createNamespacedPod({
      namespace: options.namespace,
      body: {
        metadata: { name: options.name, namespace: options.namespace, labels: options.labels ?? {} },
        spec: {
          nodeName: this.nodeName,
          hostNetwork: options.hostNetwork === true ? true : undefined,
          containers: [{ name: APP_CONTAINER, image: APP_IMAGE, resources: resourcesFor(qos) }],
        },
      },
    });
    const uid = created.metadata?.uid;
    if (uid === undefined) throw new Error(`the API server returned pod ${options.namespace}/${options.name} without a uid`);
    if (created.status?.qosClass !== qos) {
      throw new Error(`pod ${options.name}: the API server computed QoS ${created.status?.qosClass}, expected ${qos}`);
    }
    const podPath = join(this.cgroupRoot, podCgroup(this.driver, qos, uid));
    const sandboxId = containerId();
    const appId = containerId();
    const pod: KubePod = {
      namespace: options.namespace,
      name: options.name,
      uid,
      qos,
      hostNetwork: options.hostNetwork === true,
      step: 'bound',
      podCgroup: podPath,
      sandboxCgroup: join(podPath, containerCgroupName(this.driver, this.runtime, sandboxId)),
      containerCgroup: join(podPath, containerCgroupName(this.driver, this.runtime, appId)),
      sandboxId,
      containerId: appId,
      network: null,
      timeline: { bound: now() },
    };
    this.pods.push(pod);
    await this.advance(pod, options.until ?? 'running', options.command);
    return pod;
  }

  /** Continue a pod's start up to (and including) `until`. */
  async advance(pod: KubePod, until: PodStep, command: string[] = ['sleep', 'infinity']): Promise<void> {
    while (POD_STEPS.indexOf(pod.step) < POD_STEPS.indexOf(until)) {
      const next = POD_STEPS[POD_STEPS.indexOf(pod.step) + 1] as PodStep;
      if (next === 'pod-cgroup') await this.lab.addCgroup(pod.podCgroup);
      if (next === 'sandbox') await this.startSandbox(pod);
      if (next === 'running') await this.startContainer(pod, command);
      pod.step = next;
      pod.timeline[next] = now();
    }
  }

  /**
   * Delete a pod as the API and kubelet do together: a graceful DELETE sets deletionTimestamp; kubelet stops the
   * containers, tears the sandbox down (CNI DEL), removes the cgroups, writes the final status and deletes the object
   * for good (grace period 0, preconditioned on the UID).
   */
  async deletePod(pod: KubePod): Promise<void> {
    await this.core.deleteNamespacedPod({ namespace: pod.namespace, name: pod.name, gracePeriodSeconds: 30 });
    const running = pod.step === 'running';
    await this.stopPod(pod);
    if (running) {
      const current = await this.core.readNamespacedPodStatus({ namespace: pod.namespace, name: pod.name });
      const finishedAt = new Date();
      current.status = {
        ...current.status,
        phase: 'Failed',
        conditions: (current.status?.conditions ?? []).map((condition) =>
          condition.type === 'Ready' || condition.type === 'ContainersReady' || condition.type === 'PodReadyToStartContainers'
            ? { ...condition, status: 'False', lastTransitionTime: finishedAt }
            : condition,
        ),
        containerStatuses: (current.status?.containerStatuses ?? []).map((status) => ({
          ...status,
          ready: false,
          started: false,
          state: {
            terminated: {
              exitCode: 137,
              reason: 'Error',
              containerID: status.containerID,
              startedAt: status.state?.running?.startedAt,
              finishedAt,
            },
          },
        })),
      };
      await this.core.replaceNamespacedPodStatus({ namespace: pod.namespace, name: pod.name, body: current });
    }
    await this.core.deleteNamespacedPod({
      namespace: pod.namespace,
      name: pod.name,
      // In the body: with a body, the API server takes the options from it alone.
      body: { gracePeriodSeconds: 0, preconditions: { uid: pod.uid } },
    });
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  /** Stop every pod's processes, network and cgroups, and delete the Node (Pod objects die with the API server). */
  async destroy(): Promise<void> {
    const failures: unknown[] = [];
    for (const pod of [...this.pods].reverse()) await this.stopPod(pod).catch((error: unknown) => failures.push(error));
    this.pods.length = 0;
    await this.core.deleteNode({ name: this.nodeName }).catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw new AggregateError(failures, `kubelet ${this.nodeName}: cleanup incomplete`);
  }

  private async stopPod(pod: KubePod): Promise<void> {
    if (pod.network !== null) await this.lab.removePod(pod.network.name);
    for (const path of [pod.containerCgroup, pod.sandboxCgroup, pod.podCgroup]) await removeCgroup(path);
    pod.network = null;
  }

  private async registerNode(podCidrs: string[]): Promise<void> {
    const node: V1Node = {
      metadata: {
        name: this.nodeName,
        labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' },
      },
      spec: podCidrs.length > 0 ? { podCIDR: podCidrs[0], podCIDRs: podCidrs } : {},
    };
    const created = await this.core.createNode({ body: node });
    const heartbeat = new Date();
    created.status = {
      addresses: [...this.nodeIps.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: this.nodeName }],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: heartbeat,
          lastTransitionTime: heartbeat,
        },
      ],
      nodeInfo: {
        architecture: 'amd64',
        bootID: '',
        containerRuntimeVersion: this.runtime === 'containerd' ? 'containerd://2.1.0' : 'cri-o://1.35.0',
        kernelVersion: '',
        kubeProxyVersion: '',
        kubeletVersion: 'v1.35.4',
        machineID: '',
        operatingSystem: 'linux',
        osImage: 'egressguard test node',
        systemUUID: '',
      },
    };
    await this.core.replaceNodeStatus({ name: this.nodeName, body: created });
  }

  /** Network first (netns, CNI ADD), then the sandbox scope and its pause process; kubelet then reports the IPs. */
  private async startSandbox(pod: KubePod): Promise<void> {
    if (!pod.hostNetwork) {
      // The lab names netns and veths by index; the pod name only labels its files, so it must be unique per lab.
      pod.network = await this.lab.addPod(`${pod.namespace}-${pod.name}`.slice(0, 63).replace(/-+$/, ''), {
        cgroupPath: pod.containerCgroup,
      });
    }
    await this.lab.addCgroup(pod.sandboxCgroup);
    if (pod.network !== null) this.lab.spawnInPod(pod.network, ['sleep', 'infinity'], { cgroup: pod.sandboxCgroup });
    await this.writeStatus(pod, 'Pending');
  }

  private async startContainer(pod: KubePod, command: string[]): Promise<void> {
    await this.lab.addCgroup(pod.containerCgroup);
    if (pod.network !== null) this.lab.spawnInPod(pod.network, command, { cgroup: pod.containerCgroup });
    await this.writeStatus(pod, 'Running');
  }

  /** The status kubelet writes through the status subresource (optimistic concurrency on resourceVersion). */
  private async writeStatus(pod: KubePod, phase: 'Pending' | 'Running'): Promise<void> {
    const current: V1Pod = await this.core.readNamespacedPodStatus({ namespace: pod.namespace, name: pod.name });
    const at = new Date();
    const running = phase === 'Running';
    const podIps = pod.network === null ? this.nodeIps : [pod.network.ipv4, pod.network.ipv6];
    const condition = (type: string, status: boolean): { type: string; status: string; lastTransitionTime: Date } => ({
      type,
      status: status ? 'True' : 'False',
      lastTransitionTime: at,
    });
    current.status = {
      ...current.status,
      phase,
      hostIP: this.nodeIps[0],
      hostIPs: this.nodeIps.map((ip) => ({ ip })),
      podIP: podIps[0],
      podIPs: podIps.map((ip) => ({ ip })),
      startTime: current.status?.startTime ?? at,
      conditions: [
        condition('PodReadyToStartContainers', true),
        condition('Initialized', true),
        condition('Ready', running),
        condition('ContainersReady', running),
        condition('PodScheduled', true),
      ],
      containerStatuses: [
        {
          name: APP_CONTAINER,
          image: APP_IMAGE,
          imageID: '',
          containerID: running ? `${this.runtime === 'containerd' ? 'containerd' : 'cri-o'}://${pod.containerId}` : undefined,
          ready: running,
          started: running,
          restartCount: 0,
          state: running ? { running: { startedAt: at } } : { waiting: { reason: 'ContainerCreating' } },
        },
      ],
    };
    await this.core.replaceNamespacedPodStatus({ namespace: pod.namespace, name: pod.name, body: current });
  }
}

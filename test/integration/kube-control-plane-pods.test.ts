// Pods laid out as kubelet does (test/support/kube/pods.ts) on a netns lab, with their Pod objects in the real API
// server: the cgroup trees of both drivers and all QoS classes, kubelet's order of creation, the status it writes,
// the network a CNI gives each pod, and deletion leaving nothing behind.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CoreV1Api } from '@kubernetes/client-node';
import { Lab } from '../../lab/lab.js';
import { mustRun } from '../../lab/exec.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { BUILD_TIMEOUT_MS, ControlPlane } from '../support/kube/control-plane.js';
import { ensureNamespace, Kubelet, type KubePod, type QosClass } from '../support/kube/pods.js';

const NAMESPACE = 'obot-mcp';

async function processesIn(cgroup: string): Promise<number[]> {
  return (await readFile(join(cgroup, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);
}

async function commandOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean).join(' ');
}

async function waitForProcess(cgroup: string): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const [pid] = await processesIn(cgroup);
    if (pid !== undefined) return pid;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no process joined ${cgroup}`);
}

describe('pods laid out as kubelet does, against the real API server', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let plane: ControlPlane;
  let core: CoreV1Api;
  let systemd: Kubelet;
  let cgroupfs: Kubelet;

  beforeAll(async () => {
    await Lab.cleanupStale(/^egkl[0-9a-f]{4}$/);
    await ControlPlane.cleanupStale(/^egkl[0-9a-f]{4}$/);
    lab = await Lab.create({ prefix: uniquePrefix('kl'), pods: [], services: false });
    plane = await ControlPlane.start({ prefix: lab.prefix, netns: lab.nodeNetns });
    core = plane.admin(CoreV1Api);
    await ensureNamespace(core, NAMESPACE);
    systemd = await Kubelet.start({ lab, plane, nodeName: 'node-systemd', driver: 'systemd' });
    await lab.addCgroup(join(lab.attachCgroup, 'node-b'));
    cgroupfs = await Kubelet.start({
      lab,
      plane,
      nodeName: 'node-cgroupfs',
      driver: 'cgroupfs',
      runtime: 'cri-o',
      cgroupRoot: join(lab.attachCgroup, 'node-b'),
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await systemd?.destroy();
    await cgroupfs?.destroy();
    await plane?.destroy();
    await lab?.destroy();
  });

  test('the Nodes are registered Ready with their addresses', async () => {
    const node = await core.readNode({ name: 'node-systemd' });
    expect(node.status?.addresses).toEqual(
      expect.arrayContaining([
        { type: 'InternalIP', address: '198.18.2.1' },
        { type: 'InternalIP', address: 'fd00:eb:2::1' },
      ]),
    );
    expect(node.status?.conditions).toContainEqual(expect.objectContaining({ type: 'Ready', status: 'True' }));
  });

  test.each([
    ['Guaranteed', 'kubepods.slice/kubepods-pod<uid_>.slice'],
    ['Burstable', 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice'],
    ['BestEffort', 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice'],
  ] as const)('systemd driver, %s: cgroups, network, processes and the status kubelet writes', async (qos: QosClass, layout) => {
    const name = `app-${qos.toLowerCase()}`;
    const pod = await systemd.runPod({ namespace: NAMESPACE, name, labels: { app: name }, qos });
    const expectedPodCgroup = join(lab.attachCgroup, layout.replace('<uid_>', pod.uid.replaceAll('-', '_')));
    expect(pod.podCgroup).toBe(expectedPodCgroup);
    expect(pod.containerCgroup).toBe(join(expectedPodCgroup, `cri-containerd-${pod.containerId}.scope`));
    expect(pod.sandboxCgroup).toBe(join(expectedPodCgroup, `cri-containerd-${pod.sandboxId}.scope`));
    expect(pod.containerId).toMatch(/^[0-9a-f]{64}$/);
    expect(await commandOf(await waitForProcess(pod.sandboxCgroup))).toBe('sleep infinity');
    expect(await commandOf(await waitForProcess(pod.containerCgroup))).toBe('sleep infinity');
    // The application runs in the pod's netns, which carries the pod's addresses on eth0.
    const network = pod.network as NonNullable<KubePod['network']>;
    const addresses = await mustRun(['ip', '-n', network.netns, '-br', 'addr', 'show', 'eth0']);
    expect(addresses).toContain(`${network.ipv4}/24`);
    expect(addresses).toContain(`${network.ipv6}/64`);
    const [appPid] = await processesIn(pod.containerCgroup);
    expect(await mustRun(['readlink', `/proc/${appPid}/ns/net`])).toBe(await mustRun(['stat', '-L', '-c', 'net:[%i]', network.netnsPath]));

    const object = await core.readNamespacedPod({ namespace: NAMESPACE, name });
    expect(object.spec?.nodeName).toBe('node-systemd');
    expect(object.metadata?.labels).toEqual({ app: name });
    expect(object.status).toMatchObject({
      phase: 'Running',
      qosClass: qos,
      podIP: network.ipv4,
      podIPs: [{ ip: network.ipv4 }, { ip: network.ipv6 }],
      hostIPs: [{ ip: '198.18.2.1' }, { ip: 'fd00:eb:2::1' }],
    });
    expect(object.status?.conditions?.find((condition) => condition.type === 'Ready')?.status).toBe('True');
    expect(object.status?.containerStatuses?.[0]).toMatchObject({ containerID: `containerd://${pod.containerId}`, ready: true });
  });

  test('kubelet order: the pod-level cgroup first, then the sandbox and the IPs, then the container', async () => {
    const pod = await systemd.runPod({ namespace: NAMESPACE, name: 'ordered', qos: 'Burstable', until: 'pod-cgroup' });
    expect(existsSync(pod.podCgroup)).toBe(true);
    expect(existsSync(pod.sandboxCgroup)).toBe(false);
    expect((await core.readNamespacedPod({ namespace: NAMESPACE, name: 'ordered' })).status?.podIPs).toBeUndefined();

    await systemd.advance(pod, 'sandbox');
    expect(existsSync(pod.containerCgroup)).toBe(false);
    const pending = await core.readNamespacedPod({ namespace: NAMESPACE, name: 'ordered' });
    expect(pending.status?.phase).toBe('Pending');
    expect(pending.status?.podIPs).toEqual([{ ip: pod.network?.ipv4 }, { ip: pod.network?.ipv6 }]);
    expect(pending.status?.containerStatuses?.[0]?.state?.waiting?.reason).toBe('ContainerCreating');

    await systemd.advance(pod, 'running');
    expect(existsSync(pod.containerCgroup)).toBe(true);
    const timeline = pod.timeline as Required<KubePod['timeline']>;
    expect(timeline['pod-cgroup']).toBeLessThan(timeline.sandbox);
    expect(timeline.sandbox).toBeLessThan(timeline.running);
  });

  test('cgroupfs driver with CRI-O names, all QoS classes', async () => {
    const root = join(lab.attachCgroup, 'node-b');
    const expected: Record<QosClass, (uid: string) => string> = {
      Guaranteed: (uid) => `kubepods/pod${uid}`,
      Burstable: (uid) => `kubepods/burstable/pod${uid}`,
      BestEffort: (uid) => `kubepods/besteffort/pod${uid}`,
    };
    for (const qos of ['Guaranteed', 'Burstable', 'BestEffort'] as const) {
      const pod = await cgroupfs.runPod({ namespace: NAMESPACE, name: `crio-${qos.toLowerCase()}`, qos });
      expect(pod.podCgroup).toBe(join(root, expected[qos](pod.uid)));
      expect(pod.containerCgroup).toBe(join(pod.podCgroup, `crio-${pod.containerId}`));
      // The application joins its scope asynchronously (spawned through nsenter and a shell): wait for it.
      expect(await commandOf(await waitForProcess(pod.containerCgroup))).toBe('sleep infinity');
      const object = await core.readNamespacedPod({ namespace: NAMESPACE, name: pod.name });
      expect(object.status?.containerStatuses?.[0]?.containerID).toBe(`cri-o://${pod.containerId}`);
    }
  });

  test('a hostNetwork pod gets cgroups and the node addresses, no netns of its own', async () => {
    const pod = await systemd.runPod({ namespace: NAMESPACE, name: 'host-networked', hostNetwork: true });
    expect(pod.network).toBeNull();
    expect(existsSync(pod.containerCgroup)).toBe(true);
    const object = await core.readNamespacedPod({ namespace: NAMESPACE, name: 'host-networked' });
    expect(object.spec?.hostNetwork).toBe(true);
    expect(object.status?.podIPs).toEqual([{ ip: '198.18.2.1' }, { ip: 'fd00:eb:2::1' }]);
  });

  test('deleting a pod stops it, removes its network and cgroups, then the object', async () => {
    const pod = await systemd.runPod({ namespace: NAMESPACE, name: 'short-lived', qos: 'Burstable' });
    const netns = pod.network?.netnsPath as string;
    await systemd.deletePod(pod);
    for (const path of [pod.containerCgroup, pod.sandboxCgroup, pod.podCgroup, netns]) expect(existsSync(path)).toBe(false);
    await expect(core.readNamespacedPod({ namespace: NAMESPACE, name: 'short-lived' })).rejects.toMatchObject({ code: 404 });
    // The QoS parent stays for the next pod, as on a node.
    expect(existsSync(join(lab.attachCgroup, 'kubepods.slice/kubepods-burstable.slice'))).toBe(true);
  });
});

// Where the kubelet puts pod and container cgroups, for both drivers, every QoS class and both runtimes.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import {
  containerCgroupName,
  containerOfCgroupName,
  detectLayout,
  podCgroupPath,
  podUidOfCgroupName,
  qosDirectory,
  type PodCgroupLayout,
} from '../../src/k8s/cgroups.js';

const uid = '0b9e2a41-6d3c-4f1e-9a77-2c5d8e1f3a90';
const id = 'a'.repeat(32) + '0123456789abcdef0123456789abcdef';
const systemd: PodCgroupLayout = { driver: 'systemd', root: '/sys/fs/cgroup/kubepods.slice' };
const cgroupfs: PodCgroupLayout = { driver: 'cgroupfs', root: '/sys/fs/cgroup/kubepods' };

describe('pod cgroup paths', () => {
  test('systemd driver: slices named by prefix, uid dashes as underscores, Guaranteed directly under the root', () => {
    const u = uid.replace(/-/g, '_');
    assert.equal(podCgroupPath(systemd, 'Guaranteed', uid), `/sys/fs/cgroup/kubepods.slice/kubepods-pod${u}.slice`);
    assert.equal(
      podCgroupPath(systemd, 'Burstable', uid),
      `/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${u}.slice`,
    );
    assert.equal(
      podCgroupPath(systemd, 'BestEffort', uid),
      `/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u}.slice`,
    );
  });

  test('cgroupfs driver: plain folders, the uid as it is', () => {
    assert.equal(podCgroupPath(cgroupfs, 'Guaranteed', uid), `/sys/fs/cgroup/kubepods/pod${uid}`);
    assert.equal(podCgroupPath(cgroupfs, 'Burstable', uid), `/sys/fs/cgroup/kubepods/burstable/pod${uid}`);
    assert.equal(podCgroupPath(cgroupfs, 'BestEffort', uid), `/sys/fs/cgroup/kubepods/besteffort/pod${uid}`);
  });

  test('a kubelet with its own systemd cgroup root: every slice takes the root prefix', () => {
    const nested: PodCgroupLayout = { driver: 'systemd', root: '/sys/fs/cgroup/node.slice/node-kubepods.slice' };
    assert.equal(qosDirectory(nested, 'Burstable'), '/sys/fs/cgroup/node.slice/node-kubepods.slice/node-kubepods-burstable.slice');
    const path = podCgroupPath(nested, 'Burstable', uid);
    assert.equal(podUidOfCgroupName(nested, path.split('/').at(-1)!), uid);
    assert.equal(podUidOfCgroupName(systemd, path.split('/').at(-1)!), null);
  });

  test('folder names map back to the pod uid, and nothing else does', () => {
    for (const layout of [systemd, cgroupfs])
      for (const qos of ['Guaranteed', 'Burstable', 'BestEffort'] as const)
        assert.equal(podUidOfCgroupName(layout, podCgroupPath(layout, qos, uid).split('/').at(-1)!), uid, `${layout.driver} ${qos}`);
    for (const name of [
      'kubepods-burstable.slice',
      'kubepods-besteffort.slice',
      'kubepods-pod1234.slice',
      `kubepods-pod${uid}.slice`, // dashes: not how systemd names it
      `kubepods-guaranteed-pod${uid.replace(/-/g, '_')}.slice`,
      'cgroup.procs',
      'burstable',
      `pod${uid.toUpperCase()}`,
      `pod${uid}x`,
    ])
      assert.equal(podUidOfCgroupName(name.startsWith('pod') || name === 'burstable' ? cgroupfs : systemd, name), null, name);
  });

  test('container cgroups: containerd and CRI-O names both ways; runtime monitors and others are not containers', () => {
    const cases = [
      ['systemd', 'containerd', `cri-containerd-${id}.scope`],
      ['systemd', 'cri-o', `crio-${id}.scope`],
      ['cgroupfs', 'containerd', id],
      ['cgroupfs', 'cri-o', `crio-${id}`],
    ] as const;
    for (const [driver, runtime, name] of cases) {
      assert.equal(containerCgroupName(driver, runtime, id), name);
      assert.deepEqual(containerOfCgroupName(driver, name), { runtime, id });
    }
    for (const name of [`crio-conmon-${id}.scope`, 'kubepods-besteffort.slice', `docker-${id}.scope`, 'cgroup.procs', id.slice(1)])
      assert.equal(containerOfCgroupName('systemd', name), null, name);
    assert.equal(containerOfCgroupName('cgroupfs', `crio-conmon-${id}`), null);
  });

  test('layout detection: the configured root (driver from its name), else whichever kubelet root exists', () => {
    const present = (paths: string[]) => (p: string) => paths.includes(p);
    const mount = '/sys/fs/cgroup';
    assert.deepEqual(detectLayout(mount, { cgroupDriver: null, cgroupRoot: null }, present([`${mount}/kubepods.slice`])), systemd);
    assert.deepEqual(detectLayout(mount, { cgroupDriver: null, cgroupRoot: null }, present([`${mount}/kubepods`])), cgroupfs);
    assert.deepEqual(
      detectLayout(mount, { cgroupDriver: 'cgroupfs', cgroupRoot: null }, present([`${mount}/kubepods.slice`, `${mount}/kubepods`])),
      cgroupfs,
    );
    assert.equal(detectLayout(mount, { cgroupDriver: null, cgroupRoot: null }, present([])), null);
    assert.deepEqual(detectLayout(mount, { cgroupDriver: null, cgroupRoot: '/x/kubepods.slice' }, present(['/x/kubepods.slice'])), {
      driver: 'systemd',
      root: '/x/kubepods.slice',
    });
    assert.equal(detectLayout(mount, { cgroupDriver: null, cgroupRoot: '/x/kubepods' }, present([])), null);
  });
});

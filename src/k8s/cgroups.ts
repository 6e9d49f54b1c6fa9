// Where the kubelet puts a pod's cgroup, derived from the pod's uid and QoS class, and the names below it.
//
// systemd driver (root kubepods.slice; slice names nest by prefix):
//   Guaranteed  kubepods.slice/kubepods-pod<uid, - as _>.slice
//   Burstable   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice
//   BestEffort  kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice
//   containers  cri-containerd-<id>.scope (containerd), crio-<id>.scope (CRI-O; crio-conmon-<id>.scope is its monitor)
// cgroupfs driver (root kubepods):
//   Guaranteed  kubepods/pod<uid>;  Burstable  kubepods/burstable/pod<uid>;  BestEffort  kubepods/besteffort/pod<uid>
//   containers  <id> (containerd), crio-<id> (CRI-O)
// A kubelet with its own --cgroup-root under the systemd driver names its root `<parent>-kubepods.slice`; every name
// below takes that root's prefix, which is why the prefix is read from the root's name rather than assumed.

import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { CgroupDriver } from '../agent/config.js';

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';
export const QOS_CLASSES: readonly QosClass[] = ['Guaranteed', 'Burstable', 'BestEffort'];

export type ContainerRuntime = 'containerd' | 'cri-o';

/** The kubelet's pod cgroup tree on this node. */
export interface PodCgroupLayout {
  driver: CgroupDriver;
  /** Absolute path of the pod cgroup root (kubepods.slice or kubepods). */
  root: string;
}

/** Kubernetes pod uids are RFC 4122 UUIDs in lower case; systemd unit names carry them with `_` for `-`. */
const uidPattern = (separator: string) => [8, 4, 4, 4, 12].map((n) => `[0-9a-f]{${n}}`).join(separator);
const UID = uidPattern('-');
const SYSTEMD_UID = uidPattern('_');
const CONTAINER_ID = '[0-9a-f]{64}';

function slicePrefix(layout: PodCgroupLayout): string {
  return basename(layout.root).replace(/\.slice$/, '');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The folder holding the pod cgroups of one QoS class (Guaranteed pods sit directly in the root). */
export function qosDirectory(layout: PodCgroupLayout, qos: QosClass): string {
  if (qos === 'Guaranteed') return layout.root;
  const lower = qos.toLowerCase();
  return join(layout.root, layout.driver === 'systemd' ? `${slicePrefix(layout)}-${lower}.slice` : lower);
}

/** The pod-level cgroup of a pod, as the kubelet names it. */
export function podCgroupPath(layout: PodCgroupLayout, qos: QosClass, uid: string): string {
  const dir = qosDirectory(layout, qos);
  if (layout.driver === 'cgroupfs') return join(dir, `pod${uid}`);
  const qosPart = qos === 'Guaranteed' ? '' : `-${qos.toLowerCase()}`;
  return join(dir, `${slicePrefix(layout)}${qosPart}-pod${uid.replace(/-/g, '_')}.slice`);
}

/** The pod uid a folder in a QoS directory belongs to, or null when the name is not a pod cgroup's. */
export function podUidOfCgroupName(layout: PodCgroupLayout, name: string): string | null {
  if (layout.driver === 'cgroupfs') return new RegExp(`^pod(${UID})$`).exec(name)?.[1] ?? null;
  const match = new RegExp(`^${escapeRegExp(slicePrefix(layout))}(?:-burstable|-besteffort)?-pod(${SYSTEMD_UID})\\.slice$`).exec(name);
  return match ? match[1]!.replace(/_/g, '-') : null;
}

/** A container's cgroup below its pod's, as the runtime names it. */
export function containerCgroupName(driver: CgroupDriver, runtime: ContainerRuntime, id: string): string {
  if (driver === 'systemd') return runtime === 'containerd' ? `cri-containerd-${id}.scope` : `crio-${id}.scope`;
  return runtime === 'containerd' ? id : `crio-${id}`;
}

/** The container a folder below a pod cgroup is, or null (a runtime's monitor such as crio-conmon, anything else). */
export function containerOfCgroupName(driver: CgroupDriver, name: string): { runtime: ContainerRuntime; id: string } | null {
  const patterns: [ContainerRuntime, RegExp][] =
    driver === 'systemd'
      ? [
          ['containerd', new RegExp(`^cri-containerd-(${CONTAINER_ID})\\.scope$`)],
          ['cri-o', new RegExp(`^crio-(${CONTAINER_ID})\\.scope$`)],
        ]
      : [
          ['containerd', new RegExp(`^(${CONTAINER_ID})$`)],
          ['cri-o', new RegExp(`^crio-(${CONTAINER_ID})$`)],
        ];
  for (const [runtime, pattern] of patterns) {
    const id = pattern.exec(name)?.[1];
    if (id !== undefined) return { runtime, id };
  }
  return null;
}

/**
 * The node's layout: the configured root (driver from its name unless configured), else the first of
 * `<cgroup2>/kubepods.slice` and `<cgroup2>/kubepods` that exists (only the configured driver's, when one is).
 * Null while none exists (the kubelet creates it when it starts).
 */
export function detectLayout(
  cgroup2Mount: string,
  settings: { cgroupDriver: CgroupDriver | null; cgroupRoot: string | null },
  exists: (path: string) => boolean = existsSync,
): PodCgroupLayout | null {
  if (settings.cgroupRoot !== null) {
    const driver = settings.cgroupDriver ?? (settings.cgroupRoot.endsWith('.slice') ? 'systemd' : 'cgroupfs');
    return exists(settings.cgroupRoot) ? { driver, root: settings.cgroupRoot } : null;
  }
  const candidates: PodCgroupLayout[] = [
    { driver: 'systemd', root: join(cgroup2Mount, 'kubepods.slice') },
    { driver: 'cgroupfs', root: join(cgroup2Mount, 'kubepods') },
  ];
  return candidates.find((c) => (settings.cgroupDriver === null || c.driver === settings.cgroupDriver) && exists(c.root)) ?? null;
}

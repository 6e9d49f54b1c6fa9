// Kernel features the datapath needs, checked against probeFeatures() before the object is loaded:
// a missing one fails with its name, the Linux release that brought it and the setting that avoids
// it (when one does), instead of a verifier dump. Optional features only weaken something; status
// and metrics say which are available and, in words, what is weaker without them.
import type { KernelFeatures } from './native.js';

/** The enforcement layers a configuration wants (config enforcement.tls / enforcement.packet). */
export interface DatapathFeatures {
  tls: boolean;
  packet: boolean;
}

/** The features the datapath can run without (see OPTIONAL_FEATURES). */
export type OptionalFeatureName = 'socketDestroy';
/** The features the datapath cannot run without (see FEATURE_NEEDS). */
export type NeededFeatureName = Exclude<keyof KernelFeatures, OptionalFeatureName>;

export interface FeatureNeed {
  feature: NeededFeatureName;
  /** What the kernel lacks, in words. */
  what: string;
  /** First Linux release that has it. */
  linux: string;
  /** The only layer that needs it, or null when every configuration does. */
  layer: 'packet' | null;
}

/**
 * Every probed feature and who needs it. The cgroup_skb program (and with it bpf_loop, used by the
 * ClientHello parser) runs whatever enforcement.tls says: it also judges raw and ping sockets and
 * records the flows the backstop passes, so no setting avoids its features.
 */
export const FEATURE_NEEDS: readonly FeatureNeed[] = [
  { feature: 'cgroupSockAddrProgram', what: 'cgroup sock_addr programs (the connect/sendmsg hooks)', linux: '4.17', layer: null },
  { feature: 'hashMap', what: 'hash maps', linux: '3.19', layer: null },
  { feature: 'lpmTrieMap', what: 'LPM trie maps', linux: '4.11', layer: null },
  { feature: 'ringBufferMap', what: 'BPF ring buffers', linux: '5.8', layer: null },
  { feature: 'socketStorageMap', what: 'socket storage maps', linux: '5.2', layer: null },
  { feature: 'perCpuArrayMap', what: 'per-CPU array maps', linux: '4.6', layer: null },
  { feature: 'ancestorCgroupIdHelper', what: 'bpf_get_current_ancestor_cgroup_id', linux: '5.6', layer: null },
  { feature: 'socketStorageHelper', what: 'socket storage in cgroup sock_addr programs', linux: '5.8', layer: null },
  { feature: 'cgroupSkbProgram', what: 'cgroup_skb programs', linux: '4.10', layer: null },
  { feature: 'loopHelper', what: 'bpf_loop (the ClientHello parser)', linux: '5.17', layer: null },
  { feature: 'schedClsProgram', what: 'tc (sched_cls) programs', linux: '4.1', layer: 'packet' },
];

function describeMissing(need: FeatureNeed, kernelRelease: string): string {
  const lacks = `this kernel (${kernelRelease}) lacks ${need.what} (Linux ≥ ${need.linux})`;
  if (need.layer === 'packet') return `${lacks}; set enforcement.packet: false to run without the tc backstop, or upgrade the kernel`;
  return `${lacks}, which every configuration needs: upgrade the kernel`;
}

/** Throws, naming every missing feature the wanted layers need; returns when none is missing. */
export function checkKernelFeatures(features: KernelFeatures, wanted: DatapathFeatures, kernelRelease: string): void {
  const missing = FEATURE_NEEDS.filter((need) => !features[need.feature] && (need.layer === null || wanted[need.layer]));
  if (missing.length > 0) throw new Error(missing.map((need) => describeMissing(need, kernelRelease)).join('; '));
}

export interface OptionalFeature {
  feature: OptionalFeatureName;
  what: string;
  linux: string;
  /** What is weaker on a kernel without it, given the layers in force. */
  degraded(wanted: DatapathFeatures): string;
}

export const OPTIONAL_FEATURES: readonly OptionalFeature[] = [
  {
    feature: 'socketDestroy',
    what: 'bpf_sock_destroy from socket iterators',
    linux: '6.5',
    // What lib/reap.h does without the kfunc: the socket lives on, marked withdrawn, and the cgroup_skb program drops
    // what it sends (with or without the tc backstop); a socket denied on its ClientHello is dropped the same way.
    degraded: () =>
      'existing sockets a policy change no longer permits are not ended and their applications see no error; ' +
      'every packet they send is dropped instead (reported with reason withdrawn-no-sock-destroy), so their ' +
      'connections stall until the application gives up, as does a connection denied on its ClientHello',
  },
];

/** Each optional feature: available or not (status `features`, metric egressguard_kernel_feature_available). */
export type OptionalFeatures = Record<OptionalFeatureName, boolean>;

export function optionalFeatures(features: KernelFeatures): OptionalFeatures {
  return Object.fromEntries(OPTIONAL_FEATURES.map((optional) => [optional.feature, features[optional.feature]])) as OptionalFeatures;
}

/** What is weaker on this kernel, one sentence per missing optional feature (status `degraded`). */
export function degradedFeatures(features: OptionalFeatures, wanted: DatapathFeatures, kernelRelease: string): string[] {
  return OPTIONAL_FEATURES.filter((optional) => !features[optional.feature]).map(
    (optional) => `this kernel (${kernelRelease}) lacks ${optional.what} (Linux ≥ ${optional.linux}): ${optional.degraded(wanted)}`,
  );
}

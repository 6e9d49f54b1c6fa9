// The host's answers about a workload: its cgroup id from the cgroup filesystem, its interfaces from its netns.
import { statSync } from 'node:fs';
import { hostInterfacesOf } from './interfaces.js';
import type { WorkloadHost } from './source.js';

export const hostWorkloadHost: WorkloadHost = {
  cgroupIdOf: (cgroupPath) => statSync(cgroupPath, { bigint: true }).ino,
  interfacesOf: (w) => (w.interfaces.length > 0 ? w.interfaces : w.netns === null ? [] : hostInterfacesOf(w.netns)),
};

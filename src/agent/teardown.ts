// Ending enforcement on purpose: detach the programs and remove the pins an agent left behind.

import { join } from 'node:path';
import { loadConfig } from './config.js';
import { destroyDatapath } from '../datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../datapath/mounts.js';

export function teardownFromConfig(configPath: string): void {
  const cgroup2Mount = findCgroup2Mount();
  if (cgroup2Mount === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts)');
  const config = loadConfig(configPath, cgroup2Mount);
  destroyDatapath({ pinDir: config.pinDir ?? join(ensureBpffs(), 'egressguard') });
}

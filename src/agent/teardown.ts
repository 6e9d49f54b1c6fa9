// Ending enforcement on purpose: detach the programs and remove the pins an agent left behind.

import { join } from 'node:path';
import { loadConfig } from './config.js';
import { defaultObjectPath } from './agent.js';
import { openDatapath } from '../datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../datapath/mounts.js';

export function teardownFromConfig(configPath: string, objectPath = defaultObjectPath): void {
  const cgroup2Mount = findCgroup2Mount();
  if (cgroup2Mount === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts)');
  const config = loadConfig(configPath, cgroup2Mount);
  const datapath = openDatapath({
    objectPath,
    pinDir: config.pinDir ?? join(ensureBpffs(), 'egressguard'),
    attachCgroup: config.attachCgroup ?? cgroup2Mount,
  });
  datapath.destroy();
}

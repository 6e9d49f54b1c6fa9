// Pinned state across agents, on the real kernel: the features the product needs are present
// (fails, never skips, when one is missing), pins of another ABI version are refused before
// anything touches them, same-version pins are adopted, and a malformed ring-buffer record is
// counted as malformed, not as lost. Workload processes run in a fresh network namespace holding
// only a down loopback: nothing they send can leave it.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { EG_ABI_VERSION, encodeU32 } from '../../src/datapath/abi.js';
import { destroyPinned, openDatapath, pinPaths } from '../../src/datapath/datapath.js';
import { FEATURE_NEEDS } from '../../src/datapath/features.js';
import { ensureBpffs, findCgroup2Mount } from '../../src/datapath/mounts.js';
import { loadNative } from '../../src/datapath/native.js';
import type { Datapath, DatapathOptions } from '../../src/datapath/types.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const objectPath = fileURLToPath(new URL('../../../bpf/egressguard.bpf.o', import.meta.url));
const recordObjectPath = fileURLToPath(new URL('../../../bpf/tests/ringbuf_record.bpf.o', import.meta.url));
const skip = privilegedSkip();

/** A TCP connect from a process in `cgroup`, in a namespace of its own; prints the error code or "connected". */
function connectFrom(cgroup: string): string {
  const script = `require('node:net').connect({ host: '198.18.0.1', port: 80 })
    .on('connect', () => { console.log('connected'); process.exit(0); })
    .on('error', (error) => { console.log(error.code); process.exit(0); });`;
  return execFileSync(
    'unshare',
    ['--net', '--', 'sh', '-c', `echo $$ > ${join(cgroup, 'cgroup.procs')} && exec "$0" -e "$EG_SCRIPT"`, process.execPath],
    { encoding: 'utf8', env: { ...process.env, EG_SCRIPT: script }, timeout: 10_000 },
  ).trim();
}

function linkProgramIds(pinDir: string): Map<string, number> {
  const native = loadNative();
  const ids = new Map<string, number>();
  for (const name of readdirSync(pinPaths(pinDir).links)) {
    const link = native.BpfLink.openPinned(pinPaths(pinDir).link(name));
    try {
      ids.set(name, link.info().progId);
    } finally {
      link.close();
    }
  }
  return ids;
}

function writePinnedVersion(pinDir: string, version: number): void {
  const map = loadNative().BpfMap.openPinned(join(pinPaths(pinDir).maps, 'eg_abi_version'));
  try {
    map.update(encodeU32(0), encodeU32(version));
  } finally {
    map.close();
  }
}

describe('kernel features this product needs', { skip }, () => {
  test('every probed feature is present on this kernel', () => {
    const features = loadNative().probeFeatures();
    const missing = FEATURE_NEEDS.filter((need) => !features[need.feature]).map((need) => `${need.feature} (Linux ≥ ${need.linux})`);
    assert.deepEqual(missing, [], 'this kernel must have every feature egressguard uses');
  });
});

describe('pinned state across agents (real kernel)', { skip }, () => {
  const prefix = uniquePrefix('ps');
  let attachCgroup = '';
  let workloadCgroup = '';
  let pinDir = '';
  let options: DatapathOptions;
  let datapath: Datapath | null = null;

  beforeAll(() => {
    const cgroup2 = findCgroup2Mount();
    assert.ok(cgroup2, 'cgroup2 must be mounted');
    attachCgroup = join(cgroup2, prefix);
    workloadCgroup = join(attachCgroup, 'workload');
    mkdirSync(attachCgroup);
    mkdirSync(workloadCgroup);
    pinDir = join(ensureBpffs(), prefix);
    options = { objectPath, pinDir, attachCgroup };
    openEnforcing();
  });

  /** A fresh datapath enforcing default deny on the workload cgroup. */
  function openEnforcing(): void {
    datapath = openDatapath(options);
    datapath.configure({
      defaultAction: 'deny',
      dnsProxy: { ipv4: null, ipv6: null, port: 0 },
      denyEch: false,
      features: { tls: true, packet: true },
      maxLearnedPerWorkload: 4096,
    });
    datapath.setWorkload(workloadCgroup, []);
  }

  afterAll(() => {
    datapath?.close();
    if (existsSync(pinDir)) destroyPinned(loadNative(), pinDir);
    for (const dir of [workloadCgroup, attachCgroup]) if (dir && existsSync(dir)) rmdirSync(dir);
  });

  test('a new datapath records its ABI version in the pins', () => {
    const map = loadNative().BpfMap.openPinned(join(pinPaths(pinDir).maps, 'eg_abi_version'));
    try {
      assert.equal(map.lookup(encodeU32(0))?.readUInt32LE(0), EG_ABI_VERSION);
    } finally {
      map.close();
    }
    assert.equal(connectFrom(workloadCgroup), 'EPERM', 'default deny is enforced');
  });

  test('pins of another ABI version are refused with what to do; their enforcement is untouched', () => {
    datapath!.close();
    datapath = null;
    const other = EG_ABI_VERSION + 1;
    writePinnedVersion(pinDir, other);
    const programsBefore = linkProgramIds(pinDir);
    const pinsBefore = readdirSync(pinPaths(pinDir).maps).sort();

    assert.throws(
      () => openDatapath(options),
      (error: Error) => {
        assert.equal(
          error.message,
          `pinned state at ${pinDir} was written by ABI v${other}, this agent speaks v${EG_ABI_VERSION}: ` +
            `run \`egressguard teardown\` with this agent (enforcement pauses until it starts again) or roll back to an agent of ABI v${other}`,
        );
        return true;
      },
    );
    assert.deepEqual(linkProgramIds(pinDir), programsBefore, 'the pinned links still run the programs they ran');
    assert.deepEqual(readdirSync(pinPaths(pinDir).maps).sort(), pinsBefore);
    assert.equal(connectFrom(workloadCgroup), 'EPERM', 'the refused pins keep enforcing');
    writePinnedVersion(pinDir, EG_ABI_VERSION);
  });

  test('pins of the same version are adopted as before', () => {
    datapath = openDatapath(options);
    assert.equal(datapath.adopted, true);
    assert.equal(datapath.workloads().size, 1);
    assert.equal(connectFrom(workloadCgroup), 'EPERM');
  });

  test('pins from before versioning count as v1', () => {
    datapath!.close();
    datapath = null;
    unlinkSync(join(pinPaths(pinDir).maps, 'eg_abi_version'));
    if ((EG_ABI_VERSION as number) === 1) {
      datapath = openDatapath(options);
      assert.equal(datapath.adopted, true);
      assert.equal(existsSync(join(pinPaths(pinDir).maps, 'eg_abi_version')), true, 'the version is recorded again');
    } else {
      assert.throws(() => openDatapath(options), /written by ABI v1,/);
      // What an operator does next: teardown, then this agent starts afresh (the later tests need it running).
      destroyPinned(loadNative(), pinDir);
      openEnforcing();
    }
  });

  test('opened without the packet layer, the datapath refuses to attach the tc backstop later', () => {
    datapath?.close();
    datapath = openDatapath({ ...options, features: { tls: true, packet: false } });
    const settings = {
      defaultAction: 'deny',
      dnsProxy: { ipv4: null, ipv6: null, port: 0 },
      denyEch: false,
      maxLearnedPerWorkload: 4096,
    } as const;
    assert.throws(() => datapath!.configure({ ...settings, features: { tls: true, packet: true } }), /the tc backstop was not loaded/);
    datapath.configure({ ...settings, features: { tls: true, packet: false } });
    assert.equal(connectFrom(workloadCgroup), 'EPERM');
  });

  test('a malformed ring-buffer record is counted as malformed, not as lost', async () => {
    datapath ??= openDatapath(options);
    datapath.onEvent(() => assert.fail('a malformed record must not reach listeners'));
    const before = datapath.stats();
    const record = new (loadNative().BpfObject)(recordObjectPath, pinPaths(pinDir).maps);
    try {
      record.load();
      assert.equal(record.program('eg_malformed_record').testRun({ data: Buffer.alloc(64) }).retval, 1);
    } finally {
      record.close();
    }
    const deadline = Date.now() + 5000;
    while (datapath.stats().eventsMalformed === before.eventsMalformed && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const stats = datapath.stats();
    assert.equal(stats.eventsMalformed, before.eventsMalformed + 1n);
    assert.equal(stats.eventsLost, before.eventsLost);
  });
});

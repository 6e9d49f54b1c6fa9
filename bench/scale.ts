// Scale in host mode: W workloads × D domains, with D learned addresses per workload (100,000 at 1,000 × 100), on
// the real datapath (programs loaded and attached, maps pinned, in a netns lab of its own; the workloads are cgroups
// of the lab). Each workload's policy is the translator's shape: a webGroup permit of its D names, then deny-all.
// For each W in BENCH_SCALE_WORKLOADS, in a child process of its own (so each RSS starts from the same floor):
//   - compile and load: the policy store accepting the W files, and the reconciler's first pass compiling them and
//     writing every workload's rules and names into the kernel;
//   - learning: every workload's D addresses written (one Datapath.learn per workload, one answer's worth each);
//   - map memory: bytes_memlock of every pinned map (bpftool), and this process's RSS growth: the policy store,
//     reconciler and datapath mirrors, what the agent holds for them.
// The smallest W is the baseline: per-workload figures at each W ÷ those at the smallest say whether the cost grows
// faster than the workloads. The verdict's cost with 100,000 learned addresses is bench/connect.ts egressguard-100000.
//   node dist/bench/scale.js   (root; BENCH_SCALE_WORKLOADS=10,250,1000 BENCH_SCALE_DOMAINS=100)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Reconciler } from '../src/agent/reconciler.js';
import { openDatapath } from '../src/datapath/datapath.js';
import type { Datapath } from '../src/datapath/types.js';
import { hostWorkloadHost } from '../src/identity/host.js';
import type { WorkloadSpec } from '../src/identity/source.js';
import { PolicyStore } from '../src/policy/store.js';
import { translatorPolicy } from '../test/unit/policy-helpers.js';
import { Lab } from '../lab/lab.js';
import { mustRun } from '../lab/exec.js';
import { saveResult } from './common.js';

const SCALES = (process.env.BENCH_SCALE_WORKLOADS ?? '10,250,1000').split(',').map(Number);
const DOMAINS = Number(process.env.BENCH_SCALE_DOMAINS ?? 100);
const NAMESPACE = 'bench-scale';
const objectPath = fileURLToPath(new URL('../../bpf/egressguard.bpf.o', import.meta.url));
const log = pino({ level: 'silent' });

export interface ScaleSample {
  workloads: number;
  domains: number;
  learned: number;
  compileAndLoadMs: number;
  learnMs: number;
  mapBytes: number;
  /** The largest maps by bytes_memlock. */
  maps: { name: string; bytes: number }[];
  rssGrowthMiB: number;
  /** This process's RSS at the end: node itself, the lab's code and the above. */
  rssMiB: number;
}

/** Workload i's name j: unique across the node, so every workload's D names are D domain patterns of its own. */
const domain = (i: number, j: number) => `d${j}.w${i}.example.com`;
/** Workload i's address for its name j: one per name, unique per workload, inside 198.18.0.0/15. */
const address = (i: number, j: number) => `198.19.${Math.floor((i * DOMAINS + j) / 250) % 256}.${((i * DOMAINS + j) % 250) + 1}`;

async function pinnedMapBytes(mapsDir: string): Promise<{ name: string; bytes: number }[]> {
  const maps: { name: string; bytes: number }[] = [];
  for (const name of readdirSync(mapsDir)) {
    const shown = JSON.parse(await mustRun(['bpftool', '-j', 'map', 'show', 'pinned', join(mapsDir, name)])) as { bytes_memlock?: number };
    maps.push({ name, bytes: shown.bytes_memlock ?? 0 });
  }
  return maps.sort((a, b) => b.bytes - a.bytes);
}

async function measureOne(workloadCount: number): Promise<ScaleSample> {
  const rssBefore = process.memoryUsage().rss;
  const names = Array.from({ length: workloadCount }, (_, i) => `w${i}`);
  const lab = await Lab.create({ prefix: `egsc${randomBytes(2).toString('hex')}`, pods: [], services: false, extraCgroups: names });
  let datapath: Datapath | null = null;
  try {
    datapath = openDatapath({ objectPath, pinDir: lab.pinDir, attachCgroup: lab.attachCgroup, features: { tls: true, packet: false } });
    datapath.configure({
      maxLearnedPerWorkload: DOMAINS * 4,
      defaultAction: 'deny',
      dnsProxy: { ipv4: null, ipv6: null, port: 53 },
      denyEch: false,
      features: { tls: true, packet: false },
    });
    const workloads: WorkloadSpec[] = names.map((name, i) => ({
      namespace: NAMESPACE,
      name,
      labels: { app: `w${i}` },
      addresses: [`198.18.${20 + Math.floor(i / 250)}.${(i % 250) + 1}`],
      cgroupPath: `${lab.attachCgroup}/${name}`,
      interfaces: [],
      netns: null,
    }));
    const files = new Map(
      names.map((name, i) => [
        `/etc/egressguard/policies/${name}.yaml`,
        translatorPolicy(name, { namespace: NAMESPACE, domains: Array.from({ length: DOMAINS }, (_, j) => domain(i, j)) }),
      ]),
    );
    const store = new PolicyStore();
    const reconciler = new Reconciler({ datapath, policies: store, log, packet: false, host: hostWorkloadHost });

    const started = performance.now();
    const diagnostics = [...store.applyFiles(files).values()].flat().filter((d) => d.severity === 'error');
    if (diagnostics.length > 0) throw new Error(`policies refused: ${JSON.stringify(diagnostics.slice(0, 3))}`);
    reconciler.setWorkloads(workloads);
    reconciler.syncPolicies();
    const compileAndLoadMs = performance.now() - started;
    const enforced = workloads.filter((w) => reconciler.rulesFor(`${NAMESPACE}/${w.name}`).length === 2).length;
    if (enforced !== workloadCount) throw new Error(`${enforced} of ${workloadCount} workloads enforced their policy`);

    // One rule of each workload holds its names: learn one address per name for it.
    const expiresAtNs = process.hrtime.bigint() + 3_600_000_000_000n;
    const byWorkload = new Map<number, { ruleId: number; i: number; j: number }[]>();
    for (const { workloadId, ruleIds, name } of reconciler.exactNames()) {
      const match = /^d(\d+)\.w(\d+)\.example\.com$/.exec(name);
      if (!match) continue;
      const list = byWorkload.get(workloadId) ?? [];
      list.push({ ruleId: ruleIds[0]!, i: Number(match[2]), j: Number(match[1]) });
      byWorkload.set(workloadId, list);
    }
    const learnStarted = performance.now();
    for (const [workloadId, entries] of byWorkload) {
      datapath.learn(entries.map(({ ruleId, i, j }) => ({ workloadId, ruleId, ip: address(i, j), expiresAtNs })));
    }
    const learnMs = performance.now() - learnStarted;
    const learned = datapath.learned().length;
    if (learned !== workloadCount * DOMAINS) throw new Error(`${learned} learned addresses, expected ${workloadCount * DOMAINS}`);

    const maps = await pinnedMapBytes(join(lab.pinDir, 'maps'));
    return {
      workloads: workloadCount,
      domains: DOMAINS,
      learned,
      compileAndLoadMs,
      learnMs,
      mapBytes: maps.reduce((sum, m) => sum + m.bytes, 0),
      maps: maps.slice(0, 6),
      rssGrowthMiB: (process.memoryUsage().rss - rssBefore) / 2 ** 20,
      rssMiB: process.memoryUsage().rss / 2 ** 20,
    };
  } finally {
    datapath?.destroy();
    await lab.destroy();
  }
}

const only = process.argv[2];
if (only !== undefined) {
  // A child: one scale, one JSON line.
  console.log(JSON.stringify(await measureOne(Number(only))));
} else {
  const samples: ScaleSample[] = [];
  for (const workloads of [...SCALES].sort((a, b) => a - b)) {
    const output = execFileSync(process.execPath, [fileURLToPath(import.meta.url), String(workloads)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 1_800_000,
    });
    samples.push(JSON.parse(output.trim().split('\n').pop()!) as ScaleSample);
  }
  const base = samples[0]!;
  const perWorkload = (s: ScaleSample, key: 'compileAndLoadMs' | 'learnMs' | 'rssGrowthMiB') => s[key] / s.workloads;
  const report = {
    date: new Date().toISOString(),
    command: 'node dist/bench/scale.js',
    domains: DOMAINS,
    samples,
    /**
     * Per-workload time and RSS at each scale ÷ at the smallest (1 is linear, above 1 grows faster than the
     * workloads); map memory as a whole ÷ at the smallest (most of it is preallocated whatever the scale).
     */
    ratios: samples.map((s) => ({
      workloads: s.workloads,
      compileAndLoad: perWorkload(s, 'compileAndLoadMs') / perWorkload(base, 'compileAndLoadMs'),
      learn: perWorkload(s, 'learnMs') / perWorkload(base, 'learnMs'),
      rssGrowth: perWorkload(s, 'rssGrowthMiB') / perWorkload(base, 'rssGrowthMiB'),
      mapBytes: s.mapBytes / base.mapBytes,
    })),
  };
  saveResult('scale', report);
  console.log(JSON.stringify(report, null, 2));
}

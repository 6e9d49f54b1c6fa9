// Per-connection cost of an allowlist, side by side in one run: a pod connecting to an allowed destination through
// the node netns (sequential TCP connect + reset, bench/load.ts), with
//   - none: no agent, no rules (the baseline every ratio is against);
//   - egressguard-N: the agent enforcing a policy that allows the destination by name, plus a rule with N other /32
//     CIDRs, with N addresses learned for the name's rule (the allowed one and N - 1 others written into eg_learned
//     next to the agent's own entry), for each N in BENCH_SCALES: the verdict's cost should not grow with N;
//   - iptables-N: an iptables allowlist in the node's FORWARD path, N rules with the allowed destination last
//     (established traffic accepted first, then the rules, then drop), for each N in BENCH_IPTABLES_RULES;
//   - nftset: one nftables rule matching a set of as many addresses as the largest N (with the allowed one).
// Rounds alternate the order of the sides. With the agent running, kernel.bpf_stats_enabled is switched on for the
// measurement and each of the lab's programs reports run_cnt and run_time_ns (per connect and per run), and the
// agent's own CPU time per connect is read from /proc (the events it handles share the machine with the load).
// Run: node dist/bench/connect.js (root), or make bench; BENCH_CONNECT_SIDES=none,egressguard-1 picks sides.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKLOAD, allowOpenAiPolicy, cpuSeconds, loadInPod, median, saveResult, spread } from './common.js';
import { decodeLearnedKey, decodeLearnedValue, encodeLearnedKey, encodeLearnedValue } from '../src/datapath/abi.js';
import { loadNative } from '../src/datapath/native.js';
import { DEFAULT_LAB_HOSTS, Lab } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';
import { mustRun } from '../lab/exec.js';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const IPTABLES_RULES = (process.env.BENCH_IPTABLES_RULES ?? '10,1000,10000').split(',').map(Number);
const SCALES = (process.env.BENCH_SCALES ?? '1,1000,10000,100000').split(',').map(Number);
const CIDRS = Math.max(...SCALES);
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const PORT = 8443;
const NFT_TABLE = 'egbench';
const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

interface Sample {
  side: string;
  connectsPerSecond: number;
  p50us: number;
  p99us: number;
  /** The agent's user + system CPU per connect while the sample ran (egressguard sides only). */
  agentCpuUsPerConnect?: number;
}

interface ProgramCost {
  name: string;
  type: string;
  runs: number;
  runTimeNs: number;
}

/** The i-th address of 10.64.0.0/10, never the lab's: filler destinations for the allowlists. */
function filler(i: number): string {
  return `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** The bench policy plus a rule allowing `count` other /32s: the CIDR map grows, the allowed flow stays the same. */
function policyWithCidrs(count: number): string {
  const base = allowOpenAiPolicy('bench-connect-fw', PORT);
  if (count === 0) return base;
  const cidrs = Array.from({ length: count }, (_, i) => `        - { cidr: ${filler(i)}/32 }`).join('\n');
  return base.replace('  webGroups:\n', `    - name: other-destinations\n      selectors:\n${cidrs}\n  webGroups:\n`).replace(
    '    - name: deny-all\n',
    `    - name: allow-others
      action: permit
      protocol: tcp
      port: ${PORT}
      selector: { matchLabels: { app: ${WORKLOAD.labels.app} } }
      destinationSmartGroups: [{ name: other-destinations }]
    - name: deny-all
`,
  );
}

async function inNode(lab: Lab, argv: string[], input?: string): Promise<void> {
  const result = await lab.runInNode(argv, { timeoutMs: 120_000, input });
  if (result.code !== 0) throw new Error(`${argv.join(' ')} failed: ${result.stderr}`);
}

/** iptables allowlist of `rules` rules for the pod in the node's FORWARD chain, the allowed destination last. */
async function installIptables(lab: Lab, rules: number): Promise<void> {
  const pod = lab.pod(WORKLOAD.pod);
  const lines = ['*filter', ':EGBENCH - [0:0]', `-A FORWARD -s ${pod.ipv4}/32 -j EGBENCH`];
  lines.push('-A EGBENCH -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT');
  for (let i = 0; i < rules - 1; i++) lines.push(`-A EGBENCH -d ${filler(i)}/32 -p tcp --dport ${PORT} -j ACCEPT`);
  lines.push(`-A EGBENCH -d ${OPENAI.ipv4}/32 -p tcp --dport ${PORT} -j ACCEPT`, '-A EGBENCH -j DROP', 'COMMIT', '');
  await inNode(lab, ['iptables-restore', '--noflush'], lines.join('\n'));
}

async function removeIptables(lab: Lab): Promise<void> {
  // Without --noflush the filter table is replaced whole: the node netns is the lab's, nothing else has rules there.
  await inNode(lab, ['iptables-restore'], '*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n');
}

async function installNftSet(lab: Lab): Promise<void> {
  const pod = lab.pod(WORKLOAD.pod);
  const elements = [...Array.from({ length: CIDRS - 1 }, (_, i) => filler(i)), OPENAI.ipv4].join(', ');
  const path = join(lab.workDir, 'bench-connect.nft');
  writeFileSync(
    path,
    `table inet ${NFT_TABLE} {
  set allowed { type ipv4_addr; elements = { ${elements} } }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    ip saddr ${pod.ipv4} ip daddr @allowed tcp dport ${PORT} accept
    ip saddr ${pod.ipv4} drop
  }
}
`,
  );
  await inNode(lab, ['nft', '-f', path]);
}

/** Programs attached for this lab: on its cgroup and on the node netns's interfaces (other labs may run meanwhile). */
async function labProgramIds(lab: Lab): Promise<number[]> {
  const cgroup = JSON.parse(await mustRun(['bpftool', '-j', 'cgroup', 'show', lab.attachCgroup])) as { id: number }[];
  const net = await lab.runInNode(['bpftool', '-j', 'net', 'show']);
  const ids = new Set(cgroup.map((entry) => entry.id));
  for (const match of net.stdout.matchAll(/"id":\s*(\d+)/g)) ids.add(Number(match[1]));
  return [...ids];
}

async function programCosts(ids: number[]): Promise<Map<number, ProgramCost>> {
  const costs = new Map<number, ProgramCost>();
  for (const id of ids) {
    const prog = JSON.parse(await mustRun(['bpftool', '-j', 'prog', 'show', 'id', String(id)])) as {
      name: string;
      type: string;
      run_cnt?: number;
      run_time_ns?: number;
    };
    costs.set(id, { name: prog.name, type: prog.type, runs: prog.run_cnt ?? 0, runTimeNs: prog.run_time_ns ?? 0 });
  }
  return costs;
}

async function measure(lab: Lab, side: string, agentPid: number | null = null): Promise<Sample> {
  const cpuBefore = agentPid === null ? 0 : cpuSeconds(agentPid);
  const result = await loadInPod(lab, ['connect', OPENAI.ipv4, String(PORT), String(CONNECTS)]);
  const sample: Sample = { side, connectsPerSecond: result.perSecond!, p50us: result.p50us!, p99us: result.p99us! };
  if (agentPid !== null) sample.agentCpuUsPerConnect = ((cpuSeconds(agentPid) - cpuBefore) * 1e6) / CONNECTS;
  return sample;
}

/**
 * Grows the learned addresses of the allowed name's rule to `count`: N - 1 filler addresses next to the entry the
 * agent learned from DNS, written into the pinned map (the agent only ever deletes what it wrote itself, and the lab's
 * pins go with its teardown).
 */
function learnFillers(lab: Lab, count: number): void {
  const learned = loadNative().BpfMap.openPinned(join(lab.pinDir, 'maps', 'eg_learned'));
  try {
    const own = learned.keys().map((key) => ({ key: decodeLearnedKey(key), value: learned.lookup(key)! }));
    const entry = own.find((e) => e.key.ip === `::ffff:${OPENAI.ipv4}` || e.key.ip === OPENAI.ipv4);
    if (!entry) throw new Error(`${OPENAI.ipv4} is not in eg_learned: ${JSON.stringify(own.map((e) => e.key))}`);
    // Far from expiring within the sample: the agent's entry's own expiry plus an hour.
    const value = encodeLearnedValue(decodeLearnedValue(entry.value) + 3_600_000_000_000n);
    for (let i = 0; i < count - 1; i++) learned.update(encodeLearnedKey(entry.key.workloadId, entry.key.ruleId, filler(i)), value);
  } finally {
    learned.close();
  }
}

type BpfCost = ProgramCost & { nsPerRun: number; nsPerConnect: number };

const lab = await Lab.create({ prefix: `egbc${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod] });
const agent = new LabAgent(lab, { workloads: [WORKLOAD], mode: 'enforce' });
const allSides = ['none', ...SCALES.map((n) => `egressguard-${n}`), ...IPTABLES_RULES.map((n) => `iptables-${n}`), 'nftset'];
const sides = process.env.BENCH_CONNECT_SIDES?.split(',') ?? allSides;
const unknown = sides.filter((side) => !allSides.includes(side));
if (unknown.length > 0) throw new Error(`BENCH_CONNECT_SIDES: unknown side(s) ${unknown.join(', ')}; known: ${allSides.join(', ')}`);
const samples: Sample[] = [];
const bpfStats: Record<string, BpfCost[][]> = {};
const statsBefore = readFileSync(BPF_STATS, 'utf8').trim();
try {
  const measureEnforced = async (side: string, scale: number): Promise<void> => {
    agent.writePolicy('bench.yaml', policyWithCidrs(scale));
    // Compiling and loading the CIDRs takes a while on a busy machine.
    await agent.start(300_000);
    try {
      await agent.waitForPolicies(['bench-connect-fw'], 300_000);
      await agent.waitFor('api.openai.com to be learned', (s) => s.workloads.some((w) => w.learned.some((l) => l.ip === OPENAI.ipv4)));
      learnFillers(lab, scale);
      const ids = await labProgramIds(lab);
      writeFileSync(BPF_STATS, '1');
      const before = await programCosts(ids);
      samples.push(await measure(lab, side, agent.agentPid()));
      const after = await programCosts(ids);
      writeFileSync(BPF_STATS, statsBefore);
      (bpfStats[side] ??= []).push(
        ids
          .map((id) => {
            const [a, b] = [before.get(id)!, after.get(id)!];
            const runs = b.runs - a.runs;
            const runTimeNs = b.runTimeNs - a.runTimeNs;
            return {
              name: b.name,
              type: b.type,
              runs,
              runTimeNs,
              nsPerRun: runs > 0 ? runTimeNs / runs : 0,
              nsPerConnect: runTimeNs / CONNECTS,
            };
          })
          .filter((cost) => cost.runs > 0),
      );
    } finally {
      writeFileSync(BPF_STATS, statsBefore);
      await agent.teardown();
    }
  };
  const measureSide = async (side: string): Promise<void> => {
    if (side === 'none') return void samples.push(await measure(lab, side));
    if (side === 'nftset') {
      await installNftSet(lab);
      try {
        samples.push(await measure(lab, side));
      } finally {
        await inNode(lab, ['nft', 'delete', 'table', 'inet', NFT_TABLE]);
      }
      return;
    }
    if (side.startsWith('iptables-')) {
      await installIptables(lab, Number(side.slice('iptables-'.length)));
      try {
        samples.push(await measure(lab, side));
      } finally {
        await removeIptables(lab);
      }
      return;
    }
    await measureEnforced(side, Number(side.slice('egressguard-'.length)));
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) await measureSide(side);
  }
} finally {
  writeFileSync(BPF_STATS, statsBefore);
  await agent.teardown().catch(() => undefined);
  await lab.destroy();
}

const of = (side: string) => samples.filter((s) => s.side === side);
const summary = Object.fromEntries(
  sides.map((side) => {
    const at = of(side);
    const pick = (key: 'connectsPerSecond' | 'p50us' | 'p99us') => ({
      median: median(at.map((s) => s[key])),
      ...spread(at.map((s) => s[key])),
    });
    const agentCpu = at.flatMap((s) => (s.agentCpuUsPerConnect === undefined ? [] : [s.agentCpuUsPerConnect]));
    return [
      side,
      {
        connectsPerSecond: pick('connectsPerSecond'),
        p50us: pick('p50us'),
        p99us: pick('p99us'),
        agentCpuUsPerConnect: agentCpu.length > 0 ? median(agentCpu) : null,
      },
    ];
  }),
);
const base = summary.none?.connectsPerSecond.median ?? NaN;
const report = {
  date: new Date().toISOString(),
  rounds: ROUNDS,
  connects: CONNECTS,
  scales: SCALES,
  command: 'load connect 198.18.100.10 8443 <connects> (sequential connect + RST from the pod, bench/load.ts)',
  summary,
  ratios: Object.fromEntries(sides.map((side) => [side, summary[side]!.connectsPerSecond.median / base])),
  bpfStats,
  samples,
};
saveResult('connect', report);
const lastStats = Object.fromEntries(Object.entries(bpfStats).map(([side, runs]) => [side, runs.at(-1)]));
console.log(JSON.stringify({ summary, ratios: report.ratios, bpfStats: lastStats }, null, 2));

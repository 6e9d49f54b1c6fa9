// DNS latency and saturation with dnsperf (Debian's), three ways in one run at rising offered load:
//   - direct: the pod queries the lab resolver, no agent (the baseline);
//   - egressguard: the agent enforcing, the kernel steering the pod's port-53 traffic to its proxy;
//   - dnsmasq: no agent; the pod queries a dnsmasq forwarder in the node netns that fills an nftables set with the
//     answers' addresses (`--nftset`), the classic "DNS-learned allowlist" setup.
// Every sample runs dnsperf for BENCH_DNS_SECONDS at one rate (BENCH_DNS_RATES, `max` = as fast as dnsperf can with
// 100 queries outstanding); rounds alternate the order of the three sides. Per-query latencies come from dnsperf -v.
// Run: node dist/bench/dns.js (root), or make bench.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { WORKLOAD, allowOpenAiPolicy, cpuSeconds, median, percentile, saveResult, spread } from './common.js';
import { Lab, LAB_ADDRESSES } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';

const RATES = (process.env.BENCH_DNS_RATES ?? '2000,10000,20000,max').split(',');
const SECONDS = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
/** An unrecorded dnsperf run at the first rate before each side's samples. */
const WARM_UP_SECONDS = 2;
/** dnsperf gives up on a query after this; a lost query counts as unanswered. */
const TIMEOUT_SECONDS = 2;
/** The dnsmasq forwarder's address, on the node netns's loopback next to the agent's proxy address. */
const DNSMASQ = { ipv4: '198.18.0.54' };
const NFT_TABLE = 'egbench';
const ALL_SIDES = ['direct', 'egressguard', 'dnsmasq'] as const;
type Side = (typeof ALL_SIDES)[number];
/** A subset (e.g. `egressguard` alone, to profile the agent) with BENCH_DNS_SIDES. */
const SIDES = ALL_SIDES.filter((side) => (process.env.BENCH_DNS_SIDES ?? ALL_SIDES.join(',')).split(',').includes(side));

export interface DnsperfSample {
  rate: string;
  sent: number;
  completed: number;
  /** Queries answered per second over the run. */
  answeredPerSecond: number;
  averageMs: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of the answering process (agent or dnsmasq forwarder) per answered query; null for the resolver itself. */
  cpuUsPerQuery: number | null;
}

/** Run dnsperf in the pod against `server` and read its per-query latencies (-v lines end in the latency, seconds). */
async function dnsperf(lab: Lab, server: string, queryFile: string, rate: string, seconds = SECONDS): Promise<DnsperfSample> {
  const limit = rate === 'max' ? [] : ['-Q', rate];
  const argv = ['dnsperf', '-v', '-s', server, '-d', queryFile, '-l', String(seconds), '-t', String(TIMEOUT_SECONDS), ...limit];
  const result = await lab.runInPod(WORKLOAD.pod, argv, { timeoutMs: (seconds + TIMEOUT_SECONDS + 30) * 1000 });
  if (result.code !== 0) throw new Error(`dnsperf against ${server} failed (${result.code}): ${result.stderr}${result.stdout.slice(-500)}`);
  const number = (label: string): number => {
    const match = new RegExp(`${label}:\\s+([\\d.]+)`).exec(result.stdout);
    if (match === null) throw new Error(`dnsperf printed no "${label}": ${result.stdout.slice(-800)}`);
    return Number(match[1]);
  };
  const latencies = result.stdout
    .split('\n')
    .filter((line) => line.startsWith('> NOERROR '))
    .map((line) => Number(line.trim().split(/\s+/).pop()) * 1000)
    .sort((a, b) => a - b);
  const completed = number('Queries completed');
  const runSeconds = number('Run time \\(s\\)');
  return {
    rate,
    sent: number('Queries sent'),
    completed,
    answeredPerSecond: completed / runSeconds,
    averageMs: number('Average Latency \\(s\\)') * 1000,
    p50Ms: latencies.length > 0 ? percentile(latencies, 50) : NaN,
    p99Ms: latencies.length > 0 ? percentile(latencies, 99) : NaN,
    cpuUsPerQuery: null,
  };
}

/** dnsmasq forwarding to the lab resolver, adding every api.openai.com answer to an nftables set, as its users run it. */
async function startDnsmasq(lab: Lab): Promise<ChildProcess> {
  const ruleset = `table inet ${NFT_TABLE} {
  set allowed4 { type ipv4_addr; flags timeout; timeout 1h; }
  set allowed6 { type ipv6_addr; flags timeout; timeout 1h; }
  chain forward { type filter hook forward priority 0; policy accept; ip daddr @allowed4 accept; ip6 daddr @allowed6 accept; }
}
`;
  const rulesPath = join(lab.workDir, 'dnsmasq-bench.nft');
  writeFileSync(rulesPath, ruleset);
  await mustSucceed(lab.runInNode(['nft', '-f', rulesPath]), 'nft -f');
  await mustSucceed(lab.runInNode(['ip', 'addr', 'replace', `${DNSMASQ.ipv4}/32`, 'dev', 'lo']), 'ip addr');
  const child = lab.spawnInNode(
    [
      '/usr/sbin/dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${DNSMASQ.ipv4}`,
      '--port=53',
      '--user=root',
      '--pid-file',
      `--server=${LAB_ADDRESSES.resolver.ipv4}`,
      `--nftset=/api.openai.com/4#inet#${NFT_TABLE}#allowed4,6#inet#${NFT_TABLE}#allowed6`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  // Bound once it answers.
  for (let attempt = 0; attempt < 100; attempt++) {
    const probe = await lab.runInPod(WORKLOAD.pod, ['dnsperf', '-s', DNSMASQ.ipv4, '-n', '1', '-t', '1'], {
      input: 'api.openai.com A\n',
    });
    if (/Queries completed:\s+1 /.test(probe.stdout)) return child;
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('dnsmasq forwarder did not answer');
}

async function stopDnsmasq(lab: Lab, child: ChildProcess): Promise<number> {
  const set = await lab.runInNode(['nft', '-j', 'list', 'set', 'inet', NFT_TABLE, 'allowed4']);
  child.kill('SIGTERM');
  if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  await lab.runInNode(['nft', 'delete', 'table', 'inet', NFT_TABLE]);
  // The set must have been filled, or this side measured a forwarder that does less than the others.
  return (set.stdout.match(/198\.18\.100\.10/g) ?? []).length;
}

async function mustSucceed(pending: Promise<{ code: number | null; stderr: string }>, what: string): Promise<void> {
  const result = await pending;
  if (result.code !== 0) throw new Error(`${what} failed: ${result.stderr}`);
}

const lab = await Lab.create({ prefix: `egbd${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod] });
const queryFile = join(lab.workDir, 'dnsperf-queries.txt');
// The pod sees the host's file system: the query file is readable from inside it.
writeFileSync(queryFile, 'api.openai.com A\napi.openai.com AAAA\n');
// BENCH_AGENT_PROFILE=<dir>: the agent writes a CPU profile of each dnsperf run there (see bench/cpu-profile.ts).
const profiling = process.env.BENCH_AGENT_PROFILE !== undefined;
const nodeArgs = profiling ? [`--import=${fileURLToPath(new URL('./cpu-profile.js', import.meta.url))}`] : [];
// BENCH_DNS_WORKERS=<n>: the agent's dns.workers (default: the agent's own, min(2, CPUs)).
const workers = process.env.BENCH_DNS_WORKERS === undefined ? {} : { workers: Number(process.env.BENCH_DNS_WORKERS) };
const agent = new LabAgent(lab, { workloads: [WORKLOAD], mode: 'enforce', nodeArgs, dns: workers });
agent.writePolicy('bench.yaml', allowOpenAiPolicy('bench-dns-fw', 443));
const samples: Record<Side, DnsperfSample[]> = { direct: [], egressguard: [], dnsmasq: [] };
try {
  const measureSide = async (side: Side): Promise<void> => {
    if (side === 'egressguard') {
      await agent.start();
      await agent.waitForPolicies(['bench-dns-fw']);
    }
    const dnsmasq = side === 'dnsmasq' ? await startDnsmasq(lab) : null;
    let setEntries = -1;
    try {
      const server = side === 'dnsmasq' ? DNSMASQ.ipv4 : LAB_ADDRESSES.resolver.ipv4;
      // The process answering (the agent, or the dnsmasq forwarder): its CPU per answered query.
      const answering = side === 'egressguard' ? agent.pid : (dnsmasq?.pid ?? null);
      // Not recorded: the agent's first seconds (compiling its hot code, the first reconcile and name refresh) would
      // otherwise land in the first sample only. Every side gets the same.
      await dnsperf(lab, server, queryFile, RATES[0] ?? 'max', WARM_UP_SECONDS);
      for (const rate of RATES) {
        const profiled = profiling && side === 'egressguard' ? agent.pid : null;
        if (profiled !== null) process.kill(profiled, 'SIGUSR2');
        const cpuBefore = answering === null ? 0 : cpuSeconds(answering);
        const sample = await dnsperf(lab, server, queryFile, rate);
        sample.cpuUsPerQuery = answering === null ? null : ((cpuSeconds(answering) - cpuBefore) * 1e6) / sample.completed;
        samples[side].push(sample);
        if (profiled !== null) process.kill(profiled, 'SIGUSR2');
      }
    } finally {
      if (side === 'egressguard') await agent.teardown();
      if (dnsmasq !== null) setEntries = await stopDnsmasq(lab, dnsmasq);
    }
    if (setEntries === 0) throw new Error('dnsmasq never filled its nftables set');
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? SIDES : [...SIDES].reverse()) await measureSide(side);
  }
} finally {
  await agent.teardown().catch(() => undefined);
  await lab.destroy();
}

const summary = (side: Side) =>
  RATES.map((rate) => {
    const at = samples[side].filter((s) => s.rate === rate);
    const pick = (key: Exclude<keyof DnsperfSample, 'rate' | 'cpuUsPerQuery'>) => ({
      median: median(at.map((s) => s[key])),
      ...spread(at.map((s) => s[key])),
    });
    return {
      rate,
      answeredShare: median(at.map((s) => s.completed / s.sent)),
      answeredPerSecond: pick('answeredPerSecond'),
      averageMs: pick('averageMs'),
      p50Ms: pick('p50Ms'),
      p99Ms: pick('p99Ms'),
      cpuUsPerQuery: at[0]?.cpuUsPerQuery === null ? null : median(at.map((s) => s.cpuUsPerQuery ?? 0)),
    };
  });
const report = {
  date: new Date().toISOString(),
  rounds: ROUNDS,
  secondsPerSample: SECONDS,
  timeoutSeconds: TIMEOUT_SECONDS,
  command: 'dnsperf -v -s <server> -d <api.openai.com A/AAAA> -l <seconds> -t 2 [-Q <rate>]',
  summary: Object.fromEntries(SIDES.map((side) => [side, summary(side)])) as Record<Side, ReturnType<typeof summary>>,
  samples,
};
saveResult('dns', report);
console.log(JSON.stringify(report.summary, null, 2));
for (const rate of RATES) {
  const line = SIDES.map((side) => {
    const s = report.summary[side].find((entry) => entry.rate === rate)!;
    return `${side} ${s.answeredPerSecond.median.toFixed(0)}/s answered (${(s.answeredShare * 100).toFixed(1)}%), avg ${s.averageMs.median.toFixed(3)} ms, p99 ${s.p99Ms.median.toFixed(3)} ms`;
  });
  console.log(`offered ${rate}: ${line.join(' | ')}`);
}

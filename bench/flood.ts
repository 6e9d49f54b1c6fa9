// The flood scenario (issue 9): one workload hammers denied destinations (TCP connects over changing ports, as fast
// as one process can) while a well-behaved workload resolves an allowed name through the agent's DNS proxy.
// Reported, from the same run: the agent's CPU (cores, from /proc/<pid>/stat) and peak RSS during the flood and
// during the same span without it, the well-behaved workload's DNS latency (p50, p99) with vs without the flood,
// and the ratios; plus the flood's attempt rate and how many events the kernel's rate limit suppressed.
// Rounds alternate flood / no flood. Run: node dist/bench/flood.js (root), or make bench.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WORKLOAD, allowOpenAiPolicy, cpuSeconds, loadInPod, median } from './common.js';
import { DEFAULT_LAB_HOSTS, Lab } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';
import { FLOOD_SCRIPT, type FloodResult } from '../test/support/flood.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 1500);
const FLOOD_SECONDS = Number(process.env.BENCH_FLOOD_SECONDS ?? 10);
const ATTACKER = DEFAULT_LAB_HOSTS.find((h) => h.name === 'attacker.example')!;
const FLOOD_POD = { pod: 'flood', namespace: WORKLOAD.namespace, name: 'flood', labels: WORKLOAD.labels };

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

interface Sample {
  dnsP50us: number;
  dnsP99us: number;
  agentCores: number;
  agentPeakRssMiB: number;
  floodAttemptsPerSecond: number;
}

const lab = await Lab.create({ prefix: `egbf${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod, FLOOD_POD.pod] });
const agent = new LabAgent(lab, { workloads: [WORKLOAD, FLOOD_POD], mode: 'enforce' });
agent.writePolicy('bench.yaml', allowOpenAiPolicy('bench-fw', 443));
const quiet: Sample[] = [];
const flooded: Sample[] = [];
let suppressed = 0n;
try {
  await agent.start();
  await agent.waitForPolicies(['bench-fw']);
  const pid = agent.pid!;
  const suppressedBefore = BigInt((await agent.status()).stats.kernelEventsSuppressed!);

  const measure = async (withFlood: boolean): Promise<Sample> => {
    const flood = withFlood
      ? lab.runInPod(FLOOD_POD.pod, ['python3', '-c', FLOOD_SCRIPT, String(FLOOD_SECONDS), ATTACKER.ipv4], { timeoutMs: 120_000 })
      : null;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [cpuStart, wallStart] = [cpuSeconds(pid), performance.now()];
    let peakRss = rssMiB(pid);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(pid))), 200);
    const dns = await loadInPod(lab, ['dns', 'api.openai.com', lab.addresses.dnsProxy.ipv4, String(QUERIES)]);
    clearInterval(sampler);
    const agentCores = (cpuSeconds(pid) - cpuStart) / ((performance.now() - wallStart) / 1000);
    let floodAttemptsPerSecond = 0;
    if (flood) {
      const result = JSON.parse((await flood).stdout) as FloodResult;
      if (result.notDenied !== 0) throw new Error(`flood attempts not denied: ${JSON.stringify(result)}`);
      floodAttemptsPerSecond = result.attempts / result.seconds;
    }
    return { dnsP50us: dns.p50us!, dnsP99us: dns.p99us!, agentCores, agentPeakRssMiB: peakRss, floodAttemptsPerSecond };
  };
  for (let round = 0; round < ROUNDS * 2; round++) {
    const floodFirst = round % 2 === 1;
    for (const withFlood of floodFirst ? [true, false] : [false, true]) (withFlood ? flooded : quiet).push(await measure(withFlood));
  }
  suppressed = BigInt((await agent.status()).stats.kernelEventsSuppressed!) - suppressedBefore;
} finally {
  await agent.teardown().catch(() => undefined);
  await lab.destroy();
}
const summary = (samples: Sample[]) => ({
  dnsP50us: median(samples.map((s) => s.dnsP50us)),
  dnsP99us: median(samples.map((s) => s.dnsP99us)),
  agentCores: median(samples.map((s) => s.agentCores)),
  agentPeakRssMiB: Math.max(...samples.map((s) => s.agentPeakRssMiB)),
  floodAttemptsPerSecond: median(samples.map((s) => s.floodAttemptsPerSecond)),
});
const base = summary(quiet);
const flood = summary(flooded);
const report = {
  date: new Date().toISOString(),
  rounds: ROUNDS,
  queries: QUERIES,
  floodSeconds: FLOOD_SECONDS,
  noFlood: base,
  flood,
  eventsSuppressedByKernel: suppressed.toString(),
  samples: { noFlood: quiet, flood: flooded },
  ratios: { dnsP50: flood.dnsP50us / base.dnsP50us, dnsP99: flood.dnsP99us / base.dnsP99us },
};
console.log(JSON.stringify(report, null, 2));
console.log(
  `flood: ${flood.floodAttemptsPerSecond.toFixed(0)} denied connects/s from one workload; ${suppressed} events suppressed by the kernel rate limit\n` +
    `agent CPU: ${flood.agentCores.toFixed(2)} cores during the flood (goal <= 1), ${base.agentCores.toFixed(2)} without; peak RSS ${flood.agentPeakRssMiB.toFixed(0)} MiB (${base.agentPeakRssMiB.toFixed(0)} MiB without)\n` +
    `DNS p50 of the other workload: ${base.dnsP50us.toFixed(0)} us without, ${flood.dnsP50us.toFixed(0)} us during the flood, ratio ${report.ratios.dnsP50.toFixed(2)} (goal <= 1.5)\n` +
    `DNS p99: ${base.dnsP99us.toFixed(0)} us without, ${flood.dnsP99us.toFixed(0)} us during, ratio ${report.ratios.dnsP99.toFixed(2)}`,
);

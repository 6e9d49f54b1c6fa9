// Benchmarks for the core datapath, reported as ratios against a baseline measured in the same run:
//   - connect rate of one workload enforced (agent running, policy allowing the destination) vs the same
//     workload unenforced (no agent, no programs attached);
//   - DNS lookup latency through the agent's proxy (steered by the kernel) vs straight to the resolver.
// Rounds alternate unenforced/enforced so drift on the machine hits both sides. Run: make bench
import { randomBytes } from 'node:crypto';
import { WORKLOAD, allowOpenAiPolicy, loadInPod, median } from './common.js';
import { Lab, LAB_ADDRESSES, DEFAULT_LAB_HOSTS } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 3000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 2000);
/** Each round measures both sides twice, once in each order. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const PLAIN_PORT = 8443;

interface Sample {
  connectsPerSecond: number;
  dnsP50us: number;
  dnsP99us: number;
}

async function measure(lab: Lab): Promise<Sample> {
  // The plain port: its server only writes a line, so the client's connect path is what is measured.
  const connect = await loadInPod(lab, ['connect', OPENAI.ipv4, String(PLAIN_PORT), String(CONNECTS)]);
  const dns = await loadInPod(lab, ['dns', 'api.openai.com', LAB_ADDRESSES.resolver.ipv4, String(QUERIES)]);
  return { connectsPerSecond: connect.perSecond!, dnsP50us: dns.p50us!, dnsP99us: dns.p99us! };
}

const lab = await Lab.create({ prefix: `egbn${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod] });
const agent = new LabAgent(lab, { workloads: [WORKLOAD], mode: 'enforce' });
agent.writePolicy('bench.yaml', allowOpenAiPolicy('bench-fw', PLAIN_PORT));
const unenforced: Sample[] = [];
const enforced: Sample[] = [];
try {
  const measureEnforced = async () => {
    await agent.start();
    await agent.waitForPolicies(['bench-fw']);
    await agent.waitFor('api.openai.com to be learned', (s) => s.workloads.some((w) => w.learned.some((l) => l.ip === OPENAI.ipv4)));
    enforced.push(await measure(lab));
    await agent.teardown();
  };
  // Even rounds measure unenforced first, odd rounds enforced first: order effects cancel out.
  for (let round = 0; round < ROUNDS * 2; round++) {
    if (round % 2 === 0) {
      unenforced.push(await measure(lab));
      await measureEnforced();
    } else {
      await measureEnforced();
      unenforced.push(await measure(lab));
    }
  }
} finally {
  await agent.teardown().catch(() => undefined);
  await lab.destroy();
}
const summary = (samples: Sample[]) => ({
  connectsPerSecond: median(samples.map((s) => s.connectsPerSecond)),
  dnsP50us: median(samples.map((s) => s.dnsP50us)),
  dnsP99us: median(samples.map((s) => s.dnsP99us)),
});
const base = summary(unenforced);
const enf = summary(enforced);
const report = {
  date: new Date().toISOString(),
  rounds: ROUNDS,
  connects: CONNECTS,
  queries: QUERIES,
  unenforced: base,
  enforced: enf,
  samples: { unenforced, enforced },
  ratios: {
    connectRate: enf.connectsPerSecond / base.connectsPerSecond,
    dnsP50: enf.dnsP50us / base.dnsP50us,
    dnsP99: enf.dnsP99us / base.dnsP99us,
  },
};
console.log(JSON.stringify(report, null, 2));
console.log(
  `connect rate: ${base.connectsPerSecond.toFixed(0)}/s unenforced, ${enf.connectsPerSecond.toFixed(0)}/s enforced, ratio ${report.ratios.connectRate.toFixed(3)}\n` +
    `DNS p50: ${base.dnsP50us.toFixed(0)} us direct, ${enf.dnsP50us.toFixed(0)} us via proxy, ratio ${report.ratios.dnsP50.toFixed(2)}\n` +
    `DNS p99: ${base.dnsP99us.toFixed(0)} us direct, ${enf.dnsP99us.toFixed(0)} us via proxy, ratio ${report.ratios.dnsP99.toFixed(2)}`,
);

// TLS figures for the SNI check and the packet-layer backstop, as ratios in one run: one enforced workload, the same
// policy, with the cgroup skb (SNI) and tc (backstop) programs attached vs detached (config `enforcement`), rounds
// alternating so machine drift hits both sides.
//   - throughput of one allowed TLS flow (upload to the lab's TLS sink);
//   - connect rate of allowed TLS flows (full verified handshakes).
// BENCH_MODE=discovery measures what reading evidence costs instead: discovery mode, no policy (every flow is a
// default permit whose first flight the skb program reads for its evidence event), `enforcement.tls` on vs off with
// the backstop attached on both sides.
// Run: make bench (or node dist/bench/tls.js); BENCH_ROUNDS, BENCH_MIB, BENCH_HANDSHAKES, BENCH_MODE.
import { randomBytes } from 'node:crypto';
import { WORKLOAD, allowOpenAiPolicy, loadInPod, median, saveResult } from './common.js';
import { DEFAULT_LAB_HOSTS, LAB_TLS_PORT, LAB_TLS_SINK_PORT, Lab } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';

/** Each round measures both sides twice, once in each order. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const MIB = Number(process.env.BENCH_MIB ?? 256);
const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 500);
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const DISCOVERY = process.env.BENCH_MODE === 'discovery';

interface Sample {
  mebibytesPerSecond: number;
  handshakesPerSecond: number;
}

async function measure(lab: Lab): Promise<Sample> {
  const upload = await loadInPod(lab, ['tls-upload', OPENAI.ipv4, String(LAB_TLS_SINK_PORT), OPENAI.name, String(MIB)]);
  const connect = await loadInPod(lab, ['tls-connect', OPENAI.ipv4, String(LAB_TLS_PORT), OPENAI.name, String(HANDSHAKES)]);
  return { mebibytesPerSecond: upload.mebibytesPerSecond!, handshakesPerSecond: connect.perSecond! };
}

async function setPrograms(agent: LabAgent, on: boolean): Promise<void> {
  agent.editConfig((config) => (config.enforcement = { tls: on, packet: DISCOVERY || on }));
  // The agent applies the edit on its next reload; give the watcher a moment and confirm it is still healthy.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await agent.status();
}

const lab = await Lab.create({ prefix: `egbt${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod] });
const agent = new LabAgent(lab, { workloads: [WORKLOAD], mode: DISCOVERY ? 'discovery' : 'enforce' });
if (!DISCOVERY) agent.writePolicy('bench.yaml', allowOpenAiPolicy('bench-tls-fw', LAB_TLS_PORT, LAB_TLS_SINK_PORT));
const withPrograms: Sample[] = [];
const withoutPrograms: Sample[] = [];
try {
  await agent.start(60_000); // a loaded machine can take longer than the default to start it
  if (!DISCOVERY) {
    await agent.waitForPolicies(['bench-tls-fw']);
    await agent.waitFor('api.openai.com to be learned', (s) => s.workloads.some((w) => w.learned.some((l) => l.ip === OPENAI.ipv4)));
  }
  // Even rounds measure without the programs first, odd rounds with them first: order effects cancel out.
  for (let round = 0; round < ROUNDS * 2; round++) {
    for (const on of round % 2 === 0 ? [false, true] : [true, false]) {
      await setPrograms(agent, on);
      (on ? withPrograms : withoutPrograms).push(await measure(lab));
    }
  }
} finally {
  try {
    await agent.teardown();
  } finally {
    await lab.destroy();
  }
}
const summary = (samples: Sample[]) => ({
  mebibytesPerSecond: median(samples.map((s) => s.mebibytesPerSecond)),
  handshakesPerSecond: median(samples.map((s) => s.handshakesPerSecond)),
});
const off = summary(withoutPrograms);
const on = summary(withPrograms);
const report = {
  date: new Date().toISOString(),
  mode: DISCOVERY
    ? 'discovery: evidence reading (enforcement.tls) on vs off, backstop on both sides'
    : 'enforce: SNI check and backstop on vs off',
  rounds: ROUNDS,
  mebibytes: MIB,
  handshakes: HANDSHAKES,
  withoutSniAndTc: off,
  withSniAndTc: on,
  samples: { withoutSniAndTc: withoutPrograms, withSniAndTc: withPrograms },
  ratios: {
    throughput: on.mebibytesPerSecond / off.mebibytesPerSecond,
    tlsConnectRate: on.handshakesPerSecond / off.handshakesPerSecond,
  },
};
saveResult(DISCOVERY ? 'tls-evidence' : 'tls', report);
console.log(JSON.stringify(report, null, 2));
const withLabel = DISCOVERY ? 'with evidence reading' : 'with SNI+tc';
console.log(
  `TLS throughput, one flow: ${off.mebibytesPerSecond.toFixed(1)} MiB/s without, ${on.mebibytesPerSecond.toFixed(1)} MiB/s ${withLabel}, ratio ${report.ratios.throughput.toFixed(3)}\n` +
    `TLS connect rate: ${off.handshakesPerSecond.toFixed(0)}/s without, ${on.handshakesPerSecond.toFixed(0)}/s ${withLabel}, ratio ${report.ratios.tlsConnectRate.toFixed(3)}`,
);

// TLS figures for the SNI check and the packet-layer backstop, as ratios in one run: one enforced workload, the same
// policy, with the cgroup skb (SNI) and tc (backstop) programs attached vs detached (config `enforcement`), rounds
// alternating so machine drift hits both sides.
//   - throughput of one allowed TLS flow (upload to the lab's TLS sink);
//   - connect rate of allowed TLS flows (full verified handshakes).
// In enforce mode a third side is the alternative users would pick instead: Debian's Squid (squid-openssl) in the node
// netns as a peek-and-splice SNI allowlist of the same name, the pod's TLS ports redirected to it (nat PREROUTING),
// the agent's skb and tc programs detached meanwhile; the client's handshake then ends at the real server.
// BENCH_MODE=discovery measures what reading evidence costs instead: discovery mode, no policy (every flow is a
// default permit whose first flight the skb program reads for its evidence event), `enforcement.tls` on vs off with
// the backstop attached on both sides.
// Run: make bench (or node dist/bench/tls.js); BENCH_ROUNDS, BENCH_MIB, BENCH_HANDSHAKES, BENCH_MODE, BENCH_SQUID=0.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKLOAD, allowOpenAiPolicy, loadInPod, median, saveResult } from './common.js';
import { DEFAULT_LAB_HOSTS, LAB_ADDRESSES, LAB_TLS_PORT, LAB_TLS_SINK_PORT, Lab } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';
import { mustRun } from '../lab/exec.js';
import { waitUntil } from '../test/support/wait.js';

/** Each round measures both sides twice, once in each order. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const MIB = Number(process.env.BENCH_MIB ?? 256);
const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 500);
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const DISCOVERY = process.env.BENCH_MODE === 'discovery';
const SQUID = !DISCOVERY && process.env.BENCH_SQUID !== '0';
const SQUID_PORT = 3130;

interface Sample {
  mebibytesPerSecond: number;
  handshakesPerSecond: number;
}

/** Handshakes only through Squid: its splice ends the tunnel at the client's half-close, so the sink's count of the
 * upload, sent after it, never comes back. */
async function measureHandshakes(lab: Lab): Promise<number> {
  const connect = await loadInPod(lab, ['tls-connect', OPENAI.ipv4, String(LAB_TLS_PORT), OPENAI.name, String(HANDSHAKES)]);
  return connect.perSecond!;
}

async function measure(lab: Lab): Promise<Sample> {
  const upload = await loadInPod(lab, ['tls-upload', OPENAI.ipv4, String(LAB_TLS_SINK_PORT), OPENAI.name, String(MIB)]);
  const connect = await loadInPod(lab, ['tls-connect', OPENAI.ipv4, String(LAB_TLS_PORT), OPENAI.name, String(HANDSHAKES)]);
  return { mebibytesPerSecond: upload.mebibytesPerSecond!, handshakesPerSecond: connect.perSecond! };
}

/** Squid in the node netns: peek at the ClientHello, splice the allowed name to the address the client asked for,
 * end anything else. It needs a certificate for its port even though it never terminates TLS here. */
async function startSquid(lab: Lab): Promise<void> {
  const dir = join(lab.workDir, 'squid');
  await mustRun(['mkdir', '-p', dir]);
  await mustRun([
    'openssl',
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=egbench-squid',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]);
  await mustRun(['chmod', '-R', 'a+rX', dir]);
  const conf = join(dir, 'squid.conf');
  writeFileSync(
    conf,
    `http_port 127.0.0.1:3128
https_port ${SQUID_PORT} intercept ssl-bump generate-host-certificates=off tls-cert=${join(dir, 'cert.pem')} tls-key=${join(dir, 'key.pem')}
acl step1 at_step SslBump1
acl allowed ssl::server_name ${OPENAI.name}
ssl_bump peek step1
ssl_bump splice allowed
ssl_bump terminate all
http_access allow all
cache deny all
dns_nameservers ${LAB_ADDRESSES.resolver.ipv4}
pid_filename ${join(dir, 'squid.pid')}
cache_log ${join(dir, 'cache.log')}
access_log none
coredump_dir ${dir}
shutdown_lifetime 0 seconds
pinger_enable off
`,
  );
  lab.spawnInNode(['squid', '-N', '-f', conf]);
  await waitUntil(
    'squid to listen',
    async () => (await lab.runInNode(['ss', '-Hltn', `sport = :${SQUID_PORT}`])).stdout.trim() !== '',
    60_000,
  );
}

/**
 * Squid is an allowlist, not a pass-through: another name to the same address (which the agent's connect hook permits,
 * its SNI check being detached on this side) gets a handshake straight through (calibration), none through Squid.
 */
async function squidRefusesOtherNames(lab: Lab): Promise<void> {
  const other = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!.name;
  const handshake = () =>
    loadInPod(lab, ['tls-connect', OPENAI.ipv4, String(LAB_TLS_PORT), other, '1']).then(
      () => true,
      () => false,
    );
  if (!(await handshake())) throw new Error(`calibration: ${other} at ${OPENAI.ipv4} got no handshake without Squid`);
  await redirectToSquid(lab, true);
  try {
    if (await handshake()) throw new Error(`squid spliced ${other}, which its allowlist does not name`);
  } finally {
    await redirectToSquid(lab, false);
  }
}

/** The pod's TLS ports go to Squid (on), or straight through (off). */
async function redirectToSquid(lab: Lab, on: boolean): Promise<void> {
  const pod = lab.pod(WORKLOAD.pod);
  for (const port of [LAB_TLS_PORT, LAB_TLS_SINK_PORT]) {
    const rule = ['PREROUTING', '-s', pod.ipv4, '-p', 'tcp', '--dport', String(port), '-j', 'REDIRECT', '--to-ports', String(SQUID_PORT)];
    const result = await lab.runInNode(['iptables', '-t', 'nat', on ? '-A' : '-D', ...rule]);
    if (result.code !== 0) throw new Error(`iptables ${on ? 'add' : 'delete'} redirect: ${result.stderr}`);
  }
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
const throughSquid: number[] = [];
try {
  await agent.start(60_000); // a loaded machine can take longer than the default to start it
  if (!DISCOVERY) {
    await agent.waitForPolicies(['bench-tls-fw']);
    await agent.waitFor('api.openai.com to be learned', (s) => s.workloads.some((w) => w.learned.some((l) => l.ip === OPENAI.ipv4)));
  }
  if (SQUID) await startSquid(lab);
  const sides = SQUID ? ['without', 'with', 'squid'] : ['without', 'with'];
  // Rounds alternate the order of the sides: order effects cancel out.
  for (let round = 0; round < ROUNDS * 2; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      await setPrograms(agent, side === 'with');
      if (side !== 'squid') {
        (side === 'with' ? withPrograms : withoutPrograms).push(await measure(lab));
        continue;
      }
      if (throughSquid.length === 0) await squidRefusesOtherNames(lab);
      await redirectToSquid(lab, true);
      try {
        throughSquid.push(await measureHandshakes(lab));
      } finally {
        await redirectToSquid(lab, false);
      }
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
  squid: throughSquid.length > 0 ? { handshakesPerSecond: median(throughSquid) } : null,
  samples: { withoutSniAndTc: withoutPrograms, withSniAndTc: withPrograms, squid: throughSquid },
  ratios: {
    throughput: on.mebibytesPerSecond / off.mebibytesPerSecond,
    tlsConnectRate: on.handshakesPerSecond / off.handshakesPerSecond,
    squidTlsConnectRate: throughSquid.length > 0 ? median(throughSquid) / off.handshakesPerSecond : null,
  },
};
saveResult(DISCOVERY ? 'tls-evidence' : 'tls', report);
console.log(JSON.stringify(report, null, 2));
const withLabel = DISCOVERY ? 'with evidence reading' : 'with SNI+tc';
console.log(
  `TLS throughput, one flow: ${off.mebibytesPerSecond.toFixed(1)} MiB/s without, ${on.mebibytesPerSecond.toFixed(1)} MiB/s ${withLabel}, ratio ${report.ratios.throughput.toFixed(3)}\n` +
    `TLS connect rate: ${off.handshakesPerSecond.toFixed(0)}/s without, ${on.handshakesPerSecond.toFixed(0)}/s ${withLabel}, ratio ${report.ratios.tlsConnectRate.toFixed(3)}`,
);

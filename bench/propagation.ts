// Policy propagation in host mode: a policy file written → the new rules enforced in the kernel, as the workload sees
// it. A prober in the pod (bench/load.ts verdict-watch) connects to one destination back to back and prints the
// monotonic time of every verdict change (EPERM from the connect hook, or connected); the bench rewrites the agent's
// policy file alternately with and without the rule that permits that destination, and each edit's propagation is
// the time from just before the write to the prober's first attempt with the new verdict. Both times are
// CLOCK_MONOTONIC of this machine (process.hrtime). The baseline in the same run is the prober's own resolution: the
// spacing of its attempts, by which any figure may be late. Goal (issue 10): p99 ≤ 50 ms.
//   node dist/bench/propagation.js   (root; BENCH_EDITS=40)
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { WORKLOAD, median, percentile, saveResult } from './common.js';
import { DEFAULT_LAB_HOSTS, Lab } from '../lab/lab.js';
import { LabAgent } from '../lab/lab-agent.js';
import { Lines } from '../test/support/lines.js';
import { waitUntil } from '../test/support/wait.js';

const EDITS = Number(process.env.BENCH_EDITS ?? 40);
const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const PORT = 8443;
const POLICY = 'bench-propagation';
const LOAD_SCRIPT = fileURLToPath(new URL('./load.js', import.meta.url));

/** The workload's policy: deny-all, after a rule permitting the probed destination when `permit`. */
function policy(permit: boolean, edit: number): string {
  const allow = `    - name: allow-probed
      action: permit
      protocol: tcp
      port: ${PORT}
      selector: { matchLabels: { app: ${WORKLOAD.labels.app} } }
      destinationSmartGroups: [{ name: probed }]
`;
  // The edit number in a comment: every write is a change of the file, even when its rules repeat an earlier one.
  return `# edit ${edit}
apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: ${POLICY}, namespace: ${WORKLOAD.namespace} }
spec:
  smartGroups:
    - name: probed
      selectors: [{ cidr: ${OPENAI.ipv4}/32 }]
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
  rules:
${permit ? allow : ''}    - name: deny-all
      action: deny
      selector: { matchLabels: { app: ${WORKLOAD.labels.app} } }
      destinationSmartGroups: [{ name: any-destination }]
`;
}

interface Change {
  t: bigint;
  allowed: boolean;
}

const lab = await Lab.create({ prefix: `egbp${randomBytes(2).toString('hex')}`, pods: [WORKLOAD.pod] });
const agent = new LabAgent(lab, { workloads: [WORKLOAD], mode: 'enforce' });
const propagationMs: number[] = [];
let resolution: { attempts: number; gapP50us: number; gapP99us: number } | null = null;
try {
  agent.writePolicy('bench.yaml', policy(true, 0));
  await agent.start(120_000);
  await agent.waitForPolicies([POLICY], 120_000);
  const prober = lab.spawnInPod(WORKLOAD.pod, [process.execPath, LOAD_SCRIPT, 'verdict-watch', OPENAI.ipv4, String(PORT)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const changes: Change[] = [];
  const lines = new Lines(prober, (line) => {
    const parsed = JSON.parse(line) as {
      t?: string;
      allowed?: boolean;
      kind?: string;
      attempts: number;
      gapP50us: number;
      gapP99us: number;
    };
    if (parsed.kind === 'verdict-watch') resolution = parsed;
    else changes.push({ t: BigInt(parsed.t!), allowed: parsed.allowed! });
  });
  try {
    await waitUntil('the prober to connect', () => changes.at(-1)?.allowed === true, 30_000);
    for (let edit = 1; edit <= EDITS; edit++) {
      const permit = edit % 2 === 0;
      const written = process.hrtime.bigint();
      agent.writePolicy('bench.yaml', policy(permit, edit));
      const arrived = () => changes.find((c) => c.t > written && c.allowed === permit);
      await waitUntil(`edit ${edit} (${permit ? 'permit' : 'deny'}) to reach the prober`, () => arrived() !== undefined, 30_000);
      propagationMs.push(Number(arrived()!.t - written) / 1e6);
      // The next edit starts from a settled state: the agent reports this generation reconciled.
      await agent.waitForPolicies([POLICY], 30_000);
    }
  } finally {
    prober.stdin!.end();
    await waitUntil('the prober to report its resolution', () => resolution !== null || lines.child.exitCode !== null, 30_000);
    if (prober.exitCode === null) prober.kill();
  }
} finally {
  await agent.teardown().catch(() => undefined);
  await lab.destroy();
}

const sorted = [...propagationMs].sort((a, b) => a - b);
const report = {
  date: new Date().toISOString(),
  edits: EDITS,
  command: 'node dist/bench/propagation.js (policy file rewritten, permit and deny alternating; load verdict-watch in the pod)',
  propagationMs: { p50: median(sorted), p99: percentile(sorted, 99), max: sorted.at(-1)! },
  proberResolutionUs: resolution,
  samplesMs: propagationMs,
};
saveResult('propagation', report);
console.log(JSON.stringify(report, null, 2));

// One workload cannot hurt another (issue 7, item 11), judged where it counts: an attacker workload holds the DNS
// proxy's TCP connections, and the victim's lookup must still reach the real resolver (its query log). Each run is
// calibrated in the same test: with the per-workload share as large as the node's (the old behaviour) the attack
// starves the victim, so the bounded run that answers the victim proves the bound, not a weak attack.
import * as assert from 'node:assert/strict';
import { afterAll, beforeAll, describe, test } from 'vitest';

import { Lab, LAB_ADDRESSES, DEFAULT_LAB_HOSTS } from '../../lab/lab.js';
import { LabAgent, type LabWorkload } from '../../lab/lab-agent.js';
import type { DnsProbeResult } from '../../lab/probe-result.js';
import { Lines } from '../support/lines.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';

const LOOKUP_HOST = DEFAULT_LAB_HOSTS.find((host) => host.name === 'webhook.site')!;
const ATTACKER: LabWorkload = { pod: 'attacker', namespace: 'fair', name: 'attacker', labels: { app: 'fair' } };
const VICTIM: LabWorkload = { pod: 'victim', namespace: 'fair', name: 'victim', labels: { app: 'fair' } };
const POLICY_NAME = 'fair-fw';

/** Both workloads may look up and reach *.webhook.site over TLS; nothing else. */
const policy = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: ${POLICY_NAME}
  namespace: fair
spec:
  smartGroups:
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
  webGroups:
    - name: lookups
      domains: ["*.${LOOKUP_HOST.name}"]
  rules:
    - name: allow-lookups
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: fair } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: lookups }]
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: fair } }
      destinationSmartGroups: [{ name: any-destination }]
`;

/** The DNS proxy's node-wide TCP slots in this test (small, so the attack is quick). */
const NODE_SLOTS = 8;
/** The per-workload share in the bounded run. */
const WORKLOAD_SLOTS = 3;
/** Connections the attacker opens: more than the node has. */
const ATTACK_CONNECTIONS = NODE_SLOTS + 4;

/**
 * Opens EG_ARGS.count DNS-over-TCP connections to EG_ARGS.dst:53 and keeps them: each announces a 65535-byte query
 * and trickles one byte of it every second, so the proxy sees neither an idle connection nor a query. Prints
 * {"open": n} whenever the number still open changes (the proxy closes what it refuses); exits when stdin closes.
 */
const HOLD_SCRIPT = String.raw`
import json, os, select, socket, sys
a = json.loads(os.environ['EG_ARGS'])
fam = socket.AF_INET6 if ':' in a['dst'] else socket.AF_INET
held = []
for _ in range(a['count']):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect((a['dst'], 53))
    s.sendall(b'\xff\xff')
    held.append(s)
reported = None
while True:
    if len(held) != reported:
        reported = len(held)
        print(json.dumps({'open': reported}), flush=True)
    ready, _, _ = select.select([sys.stdin] + held, [], [], 1)
    if sys.stdin in ready:
        break
    for s in list(held):
        try:
            if s in ready and s.recv(64) == b'':
                raise ConnectionResetError()
            s.send(b'\0')
        except OSError:
            held.remove(s)
            s.close()`;

describe('one workload cannot starve another of DNS over TCP', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('fa'), pods: [ATTACKER.pod, VICTIM.pod], wildcardDomains: [LOOKUP_HOST.name] });
    agent = new LabAgent(lab, { workloads: [ATTACKER, VICTIM], mode: 'enforce' });
    agent.writePolicy('fair.yaml', policy);
  }, 60_000);

  afterAll(async () => {
    try {
      await agent?.teardown();
    } finally {
      await lab?.destroy();
    }
  });

  /** (Re)start the agent with these DNS-over-TCP caps: the proxy takes its settings at start. */
  async function runAgent(perWorkload: number): Promise<void> {
    await agent.stop();
    agent.editConfig((config) =>
      Object.assign(config.dns as object, { maxTcpConnections: NODE_SLOTS, maxTcpConnectionsPerWorkload: perWorkload }),
    );
    await agent.start();
    await agent.waitForPolicies([POLICY_NAME]);
  }

  /** The attacker's connections to the resolver (steered to the proxy), held until the returned function is called. */
  async function holdConnections(family: 4 | 6, expectOpen: number): Promise<() => Promise<void>> {
    const resolver = family === 4 ? LAB_ADDRESSES.resolver.ipv4 : LAB_ADDRESSES.resolver.ipv6;
    const child = lab.spawnInPod(ATTACKER.pod, ['python3', '-c', HOLD_SCRIPT], {
      env: { ...process.env, EG_ARGS: JSON.stringify({ dst: resolver, count: ATTACK_CONNECTIONS }) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const { lines } = new Lines(child);
    let errors = '';
    child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    const release = async () => {
      child.stdin!.end();
      assert.equal(await exited, 0, 'the attacker exited cleanly');
    };
    try {
      const open = () => (lines.length === 0 ? null : (JSON.parse(lines.at(-1)!) as { open: number }).open);
      await waitUntil(`the attacker to hold ${expectOpen} connections`, () => open() === expectOpen);
    } catch (error) {
      child.kill();
      throw new Error(`${(error as Error).message}; it reported ${lines.join(' ')}; stderr: ${errors}`);
    }
    return release;
  }

  /** The victim's lookup over TCP, addressed to the resolver (steered to the proxy), and whether the resolver saw it. */
  async function victimLookup(family: 4 | 6, name: string): Promise<DnsProbeResult> {
    const resolver = family === 4 ? LAB_ADDRESSES.resolver.ipv4 : LAB_ADDRESSES.resolver.ipv6;
    const type = family === 4 ? 'A' : 'AAAA';
    return (await lab.probe(VICTIM.pod, [
      'dns',
      name,
      '--server',
      resolver,
      '--tcp',
      '--type',
      type,
      '--timeout-ms',
      '3000',
    ])) as DnsProbeResult;
  }

  const stat = async (name: string) => Number((await agent.status()).stats[`dns.${name}`]);
  const resolverSaw = async (name: string) => (await lab.resolverQueryLog()).filter((query) => query.name === name);

  for (const family of [4, 6] as const) {
    test(`IPv${family}: the attacker keeps its share of the proxy's TCP slots and no more; the victim is answered`, async () => {
      // Calibration: the per-workload share equals the node's (the old behaviour). The attacker takes every slot,
      // the proxy closes the rest at accept, and the victim's lookup never reaches the resolver.
      await runAgent(NODE_SLOTS);
      const starvedName = `starved-v${family}.${LOOKUP_HOST.name}`;
      let release = await holdConnections(family, NODE_SLOTS);
      try {
        await waitUntil(
          'the proxy to refuse the excess at the node cap',
          async () => (await stat('tcpConnectionsRejected')) === ATTACK_CONNECTIONS - NODE_SLOTS,
        );
        const starved = await victimLookup(family, starvedName);
        assert.equal(starved.ok, false, `the attack works without a per-workload share: ${JSON.stringify(starved)}`);
        assert.deepEqual(await resolverSaw(starvedName), [], 'the resolver never saw the starved lookup');
        // The proxy's counters reach status once a second (the proxy runs in a worker thread).
        await waitUntil(
          'the victim to be counted as refused at the node cap',
          async () => (await stat('tcpConnectionsRejected')) === ATTACK_CONNECTIONS - NODE_SLOTS + 1,
        );
      } finally {
        await release();
      }

      // Bounded: the attacker holds its share, every connection past it is refused and counted against it, and
      // the victim's lookup is answered by the resolver, through the proxy.
      await runAgent(WORKLOAD_SLOTS);
      const answeredName = `answered-v${family}.${LOOKUP_HOST.name}`;
      release = await holdConnections(family, WORKLOAD_SLOTS);
      try {
        await waitUntil(
          'the proxy to refuse the excess at the workload cap',
          async () => (await stat('tcpConnectionsRejectedPerWorkload')) === ATTACK_CONNECTIONS - WORKLOAD_SLOTS,
        );
        const answered = await victimLookup(family, answeredName);
        assert.equal(answered.ok, true, JSON.stringify(answered));
        assert.equal(answered.rcode, 'NOERROR');
        assert.deepEqual(
          answered.answers.map((answer) => answer.data),
          [family === 4 ? LOOKUP_HOST.ipv4 : LOOKUP_HOST.ipv6],
        );
        await waitUntil("the resolver to log the victim's lookup", async () => (await resolverSaw(answeredName)).length > 0);
        const seen = await resolverSaw(answeredName);
        assert.equal(seen.length, 1, `the resolver saw the victim's lookup once: ${JSON.stringify(seen)}`);
        const victim = lab.pod(VICTIM.pod);
        assert.ok(![victim.ipv4, victim.ipv6].includes(seen[0]!.from), `it came through the proxy, not from the pod: ${seen[0]!.from}`);
        assert.equal(await stat('tcpConnectionsRejectedPerWorkload'), ATTACK_CONNECTIONS - WORKLOAD_SLOTS, 'only the attacker was refused');
        assert.equal(await stat('tcpConnectionsRejected'), 0, 'the node cap was never reached');
      } finally {
        await release();
      }
    }, 120_000);
  }
});

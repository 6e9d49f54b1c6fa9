// Rule ids in the kernel (issue 7, item 10): two workloads whose rules' names collide under the 32-bit name hash (a
// pair found the way the original attack found one) each keep their own SNI domain set in the kernel. Under the old
// hash ids the later rule's domains replaced the other's: one workload's allowed flow broke and a name only the
// other may reach passed on its learned address. Judged on the lab server's record of every ClientHello it got.
import assert from 'node:assert/strict';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { TlsProbeResult } from '../../lab/probe-result.js';
import { ruleIdFor } from '../../src/policy/rule-ids.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { collidingRules } from '../support/rule-ids.js';

const [RULE_A, RULE_B] = collidingRules('team', 'pa', 'pb');
const hostAddress = (name: string, family: 4 | 6) => {
  const host = DEFAULT_LAB_HOSTS.find((h) => h.name === name)!;
  return family === 4 ? host.ipv4 : host.ipv6;
};

/** Workload `app` may reach `*.<zone>` on 443, nothing else (enforce mode: the default denies). */
const webPolicy = (policy: string, rule: string, app: string, zone: string) => `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: ${policy}, namespace: team }
spec:
  smartGroups:
    - name: anywhere
      selectors: [{ cidr: 0.0.0.0/0 }, { cidr: "::/0" }]
  webGroups:
    - name: zone
      domains: ["*.${zone}"]
  rules:
    - name: ${rule}
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: ${app} } }
      destinationSmartGroups: [{ name: anywhere }]
      webGroups: [{ name: zone }]
`;

/** Each workload's own zone, and the other's (its forbidden names). */
const PODS = [
  { pod: 'one', zone: 'attacker.example', other: 'webhook.site' },
  { pod: 'two', zone: 'webhook.site', other: 'attacker.example' },
] as const;

describe('colliding rule names keep their own SNI domain sets in the kernel', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({
      prefix: uniquePrefix('ri'),
      pods: PODS.map((p) => p.pod),
      wildcardDomains: ['attacker.example', 'webhook.site'],
    });
    agent = new LabAgent(lab, {
      workloads: PODS.map(({ pod }) => ({ pod, namespace: 'team', name: pod, labels: { app: pod } })),
      mode: 'enforce',
      dns: { minTtlSeconds: 0 },
    });
    agent.writePolicy('pa.yaml', webPolicy('pa', RULE_A, 'one', 'attacker.example'));
    agent.writePolicy('pb.yaml', webPolicy('pb', RULE_B, 'two', 'webhook.site'));
  });

  afterAll(() => teardownAgentLab(agent, lab));

  const tls = async (pod: string, target: string, sni: string, family: 4 | 6) => {
    const result = await lab.probe(pod, ['tls', target, '443', '--sni', sni, '--family', String(family), '--ca', lab.caPath]);
    assert.equal(result.kind, 'tls');
    return result as TlsProbeResult;
  };
  const helloFrom = (pod: string, sni: string) => (r: ServerRecord) =>
    (r.remote === lab.pod(pod).ipv4 || r.remote === lab.pod(pod).ipv6) && r.sni === sni;

  test('the names collide under the 32-bit hash', () => {
    assert.equal(ruleIdFor('team', 'pa', RULE_A), ruleIdFor('team', 'pb', RULE_B));
  });

  test("IPv4 and IPv6: each workload reaches its own names; the other workload's names on its learned address deliver nothing (calibrated)", async () => {
    // Calibration, nothing enforcing yet: a ClientHello naming the other zone reaches the server at each pod's address.
    for (const { pod, zone, other } of PODS) {
      for (const family of [4, 6] as const) {
        const sni = `calibration${family}-${pod}.${other}`;
        await tls(pod, hostAddress(zone, family), sni, family);
        await lab.waitForServerRecords(`${sni} unenforced`, helloFrom(pod, sni));
      }
    }
    await agent.start();
    const status = await agent.waitForPolicies(['pa', 'pb']);
    const inForce = PODS.map(({ pod }) => status.workloads.find((w) => w.key === `team/${pod}`)!.rules.map((r) => r.name));
    assert.deepEqual(inForce, [[RULE_A], [RULE_B]]);

    for (const family of [4, 6] as const) {
      for (const { pod, zone, other } of PODS) {
        // Allowed: the name resolves (its address is learned for this workload's rule) and the handshake completes.
        const allowed = `allowed${family}-${pod}.${zone}`;
        assert.equal((await tls(pod, allowed, allowed, family)).ok, true, `${pod} reaches ${allowed}`);
        await lab.waitForServerRecords(allowed, helloFrom(pod, allowed));
        // Forbidden: the other workload's name, sent to this workload's learned address.
        const forbidden = `forbidden${family}-${pod}.${other}`;
        const before = (await lab.serverLog()).length;
        assert.notEqual((await tls(pod, hostAddress(zone, family), forbidden, family)).ok, true);
        // A later allowed handshake from the same pod orders the server's log: whatever the forbidden one sent is in.
        const after = `after${family}-${pod}.${zone}`;
        assert.equal((await tls(pod, after, after, family)).ok, true);
        await lab.waitForServerRecords(after, helloFrom(pod, after));
        assert.deepEqual((await lab.serverLog()).slice(before).filter(helloFrom(pod, forbidden)), [], `${forbidden} never arrives`);
      }
    }
  });
});

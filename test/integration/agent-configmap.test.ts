// The agent's configuration file and policy folder mounted as Kubernetes ConfigMap volumes (issue 7, item 9): every
// key a symlink into `..data`, a new version published by swapping that one link. The real agent in host mode sees
// each swap: the mode flips from discovery to enforce, and a policy file set replaced by another defining the same
// objects (old files gone) applies as one change. Judged on the receiving side, the lab internet server's log.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { LabAgent, teardownAgentLab } from '../../lab/lab-agent.js';
import type { TcpProbeResult } from '../../lab/probe-result.js';
import { HTTPBIN, POLICY_NAME, POLICY_NAMESPACE, decisionPolicyFor } from '../support/decision-lab.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';

const OPENAI = DEFAULT_LAB_HOSTS.find((h) => h.name === 'api.openai.com')!;
const ONE = { pod: 'one', namespace: POLICY_NAMESPACE, name: 'one', labels: { app: 'obs' } };
const PORT = 8443;

describe('agent with its configuration and policies in ConfigMap volumes (real kernel)', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('cm'), pods: [ONE.pod] });
    agent = new LabAgent(lab, { workloads: [ONE], mode: 'discovery', aggregateWindowMs: 100, configMapVolumes: true });
    agent.replacePolicies({ 'old-name.yaml': decisionPolicyFor(HTTPBIN) });
    await agent.start();
    await agent.waitForPolicies([POLICY_NAME]);
  });

  afterAll(() => teardownAgentLab(agent, lab));

  const connect = async (host: { ipv4: string }) => (await lab.probe(ONE.pod, ['tcp', host.ipv4, String(PORT)])) as TcpProbeResult;
  const arrivals = async (host: { ipv4: string }) =>
    (await lab.serverLog()).filter((r) => r.proto === 'tcp' && r.local === host.ipv4 && r.remote === lab.pod(ONE.pod).ipv4).length;

  test('..data swaps flip discovery to enforce and replace the policy files; the new policy is what is enforced', async () => {
    // Calibration: under the first policy file the pod reaches httpbin.org; the server records it.
    assert.equal((await connect(HTTPBIN)).ok, true);
    await waitUntil('the first connection at the server', async () => (await arrivals(HTTPBIN)) > 0);
    const discoveryDigest = (await agent.status()).configDigest;

    // One swap of the policy volume: old-name.yaml gone, new-name.yaml defining the same object (now permitting
    // api.openai.com, not httpbin.org). Then one swap of the config volume: mode enforce.
    agent.replacePolicies({ 'new-name.yaml': decisionPolicyFor(OPENAI) });
    await agent.setMode('enforce');
    const expectedDigest = createHash('sha256').update(readFileSync(agent.configPath)).digest('hex');
    const status = await agent.waitFor('the new policy file in force', (s) =>
      s.policies.some((p) => p.name === POLICY_NAME && p.ruleset !== '' && p.lastReconciledGeneration === p.generation),
    );
    assert.notEqual(expectedDigest, discoveryDigest);
    assert.equal(status.configDigest, expectedDigest, 'status names the configuration in force');
    assert.equal(status.mode, 'enforce');
    assert.deepEqual(status.rejected, [], 'the same objects in a new file are not "already defined"');

    // What the new policy permits works; what only the old one permitted is refused and never arrives.
    const deniedBefore = await arrivals(HTTPBIN);
    const permittedBefore = await arrivals(OPENAI);
    assert.equal((await connect(HTTPBIN)).error, 'EPERM');
    assert.equal((await connect(OPENAI)).ok, true);
    // The server records a connection when it closes: once the permitted one (made after the denied) is there,
    // the denied one would be too had it arrived.
    await waitUntil('the permitted connection at the server', async () => (await arrivals(OPENAI)) > permittedBefore);
    assert.equal(await arrivals(HTTPBIN), deniedBefore, 'no denied connection arrived');
  });
});

// Containment by the control plane (issue 7, items 8-10), against the real agent, kernel and lab resolver. Every
// outcome is judged where the traffic would arrive: the lab server's log and the resolver's query log.

import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LAB_HOSTS, LAB_ADDRESSES, Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import type { DnsProbeResult, ProbeResult, TcpProbeResult, TlsProbeResult } from '../../lab/probe-result.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { FlowEvent } from '../../src/events/types.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { waitUntil } from '../support/wait.js';
import {
  addressToBytes,
  encodeAddrKey,
  encodeCgroupId,
  encodeDomainKey,
  encodeLearnedKeyBytes,
  encodeLearnedValue,
  encodeRuleCidrKey,
  encodeU32,
  encodeWorkload,
} from '../../src/datapath/abi.js';
import { pinPaths } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import type { CapacityMap } from '../../src/datapath/types.js';
import type { CapacityName } from '../../src/model/capacity.js';

const GOOD = { pod: 'good', namespace: 'team', name: 'good', labels: { app: 'good' } };
const BROKEN = { pod: 'broken', namespace: 'team', name: 'broken', labels: { app: 'broken' } };
const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;

const anyDestination = `
    - name: any-destination
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0`;

/** Permit api.openai.com and *.attacker.example on 443 and tcp/8443 to httpbin (both families), then deny the rest; `extraRules` more permits before the deny. */
function allowPolicy(app: string, extraRules = 0): string {
  const extra = Array.from(
    { length: extraRules },
    (_, i) => `    - name: extra-${i}
      action: permit
      protocol: tcp
      port: ${20000 + i}
      selector: { matchLabels: { app: ${app} } }
      destinationSmartGroups: [{ name: any-destination }]
`,
  ).join('');
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: ${app}-fw, namespace: team }
spec:
  smartGroups:${anyDestination}
    - name: httpbin
      selectors: [{ cidr: ${HTTPBIN.ipv4}/32 }, { cidr: "${HTTPBIN.ipv6}/128" }]
  webGroups:
    - name: approved
      domains: [api.openai.com, "*.attacker.example"]
  rules:
    - name: allow-approved
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: ${app} } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
    - name: allow-httpbin
      action: permit
      protocol: tcp
      port: 8443
      selector: { matchLabels: { app: ${app} } }
      destinationSmartGroups: [{ name: httpbin }]
${extra}    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: ${app} } }
      destinationSmartGroups: [{ name: any-destination }]
`;
}

function as<T extends ProbeResult>(kind: T['kind'], r: ProbeResult): T {
  assert.equal(r.kind, kind, JSON.stringify(r));
  return r as T;
}

/** The full-map fillers' rule id and workload id: no rule and no workload of this test has them. */
const FILLER_RULE_ID = 0xfffffff0;
const FILLER_WORKLOAD_ID = 0xfffffff0;
/** The filler's index-th address: fd00:eb:ff::/48, inside the lab's own range. */
const fillerAddress = (index: number) => `fd00:eb:ff::${(index >>> 16).toString(16)}:${(index & 0xffff).toString(16)}`;

const settle = () => new Promise((resolve) => setTimeout(resolve, 1500));

describe('containment by the control plane', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let agent: LabAgent;
  let ghostCgroup = '';

  beforeAll(async () => {
    // webhook.site's subdomains: names only a workload's own lookup learns (the full learned-address map test).
    lab = await Lab.create({
      prefix: uniquePrefix('cc'),
      pods: [GOOD.pod, BROKEN.pod],
      wildcardDomains: ['attacker.example', 'webhook.site'],
    });
    // Discovery mode: the default action permits, so a workload left unenrolled would reach everything.
    agent = new LabAgent(lab, { workloads: [GOOD, BROKEN], mode: 'discovery', dns: { minTtlSeconds: 0 }, aggregateWindowMs: 100 });
    agent.writePolicy('good.yaml', allowPolicy('good'));
    agent.writePolicy('broken.yaml', allowPolicy('broken'));
    ghostCgroup = join(lab.attachCgroup, 'ghost');
    await agent.start();
    await agent.waitForPolicies(['good-fw', 'broken-fw']);
  });

  afterAll(async () => {
    try {
      await agent?.teardown();
    } finally {
      if (ghostCgroup !== '' && existsSync(ghostCgroup)) rmdirSync(ghostCgroup);
      await lab?.destroy();
    }
  });

  const fromPod = (pod: string, port: number) => (r: ServerRecord) => r.remote === lab.pod(pod).ipv4 && r.port === port;
  /** Either of the pod's addresses: a leak over one family is seen as well as over the other. */
  const fromEither = (pod: string) => (r: { remote: string } | { from: string }) => {
    const source = 'remote' in r ? r.remote : r.from;
    return source === lab.pod(pod).ipv4 || source === lab.pod(pod).ipv6;
  };
  const tls = async (pod: string, name = 'api.openai.com') =>
    as<TlsProbeResult>('tls', await lab.probe(pod, ['tls', name, '443', '--ca', lab.caPath]));
  const tcp = async (pod: string, port: string) => as<TcpProbeResult>('tcp', await lab.probe(pod, ['tcp', HTTPBIN.ipv4, port]));
  const tcpTo = async (pod: string, address: string) => as<TcpProbeResult>('tcp', await lab.probe(pod, ['tcp', address, '8443']));
  /** The first event after the first `skip` ones that matches. */
  const waitForEvent = async (skip: number, predicate: (e: FlowEvent) => boolean): Promise<FlowEvent> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const found = agent.events().slice(skip).find(predicate);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error('no such event');
  };
  const uniqueName = (zone = 'attacker.example') => `fc-${randomBytes(4).toString('hex')}.${zone}`;
  const dns = async (pod: string, name: string) =>
    as<DnsProbeResult>('dns', await lab.probe(pod, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv4]));
  /** An AAAA lookup sent to the resolver's IPv6 address (steered to the proxy's IPv6 listener). */
  const dns6 = async (pod: string, name: string) =>
    as<DnsProbeResult>('dns', await lab.probe(pod, ['dns', name, '--server', LAB_ADDRESSES.resolver.ipv6, '--type', 'AAAA']));
  const answered = (r: DnsProbeResult) => r.ok && r.rcode === 'NOERROR' && r.answers.length > 0;

  /**
   * Calibration (the broken workload's traffic and lookups arrive, IPv4 and IPv6), then `breakIt` makes its enrolment
   * fail: it must be enrolled deny-all with DNS steered, the error (matching `error`) in status and its denials in the
   * events; zero connections from either of its addresses reach the server and zero lookups the resolver; the others
   * are untouched; `repair` restores its rules.
   */
  async function assertFailsClosed(breakIt: () => void, error: RegExp, repair: () => void): Promise<void> {
    const broken = lab.pod(BROKEN.pod);
    const serverCalibration = (await lab.serverLog()).length;
    assert.equal((await tls(BROKEN.pod)).ok, true);
    assert.equal((await tcp(BROKEN.pod, '8443')).ok, true);
    assert.equal((await tcpTo(BROKEN.pod, HTTPBIN.ipv6)).ok, true);
    const before = [uniqueName(), uniqueName()];
    assert.equal(answered(await dns(BROKEN.pod, before[0]!)), true);
    assert.equal(answered(await dns6(BROKEN.pod, before[1]!)), true);
    // Judged on this calibration's records only: earlier tests' connections from the same pod do not count.
    for (const source of [broken.ipv4, broken.ipv6])
      await waitUntil(`the broken pod's connection from ${source} before the failure`, async () =>
        (await lab.serverLog()).slice(serverCalibration).some((r) => r.remote === source && r.port === 8443),
      );
    const queried = await lab.resolverQueries();
    assert.ok(
      before.every((name) => queried.includes(name)),
      'calibration: its lookups, A over IPv4 and AAAA over IPv6, reach the resolver',
    );

    const eventsBefore = agent.events().length;
    breakIt();
    const status = await agent.waitFor('broken to fail closed', (s) => s.failures.some((f) => f.key === 'team/broken'));
    const failure = status.failures.find((f) => f.key === 'team/broken')!;
    assert.equal(failure.enforced, 'deny-all');
    assert.match(failure.error, error);
    const serverBefore = (await lab.serverLog()).length;
    const resolverBefore = (await lab.resolverQueryLog()).length;

    assert.notEqual((await tls(BROKEN.pod)).ok, true);
    assert.equal((await tcp(BROKEN.pod, '8443')).error, 'EPERM');
    assert.equal((await tcp(BROKEN.pod, '9443')).error, 'EPERM');
    assert.equal((await tcpTo(BROKEN.pod, HTTPBIN.ipv6)).error, 'EPERM');
    const after = [uniqueName(), uniqueName()];
    assert.equal(answered(await dns(BROKEN.pod, after[0]!)), false, 'the proxy denies every name');
    assert.equal(answered(await dns6(BROKEN.pod, after[1]!)), false, 'the proxy denies every name, AAAA over IPv6 too');
    await settle();
    const reached = (await lab.serverLog()).slice(serverBefore).filter(fromEither(BROKEN.pod));
    assert.deepEqual(reached, [], "zero connections from either of the failed workload's addresses reach the server");
    const looked = (await lab.resolverQueryLog()).slice(resolverBefore);
    assert.deepEqual(
      looked.filter((q) => after.includes(q.name) || fromEither(BROKEN.pod)(q)),
      [],
      'its lookups never reach the resolver, neither relayed nor sent from either of its addresses',
    );
    for (const destination of [HTTPBIN.ipv4, HTTPBIN.ipv6]) {
      const denial = await waitForEvent(
        eventsBefore,
        (e) => e.workload.name === BROKEN.name && e.verdict === 'denied' && e.destination.ip === destination,
      );
      assert.match(denial.rule, /^fail-closed/, `the denial to ${destination}`);
    }

    // The others are untouched; repairing restores the broken workload's rules.
    assert.equal((await tls(GOOD.pod)).ok, true);
    repair();
    await agent.waitFor('broken to get its rules', (s) => s.failures.length === 0);
    assert.equal((await tls(BROKEN.pod)).ok, true);
  }

  test('a workload whose rules the kernel cannot hold is enrolled deny-all with DNS steered (calibrated first)', async () => {
    await assertFailsClosed(
      () => agent.writePolicy('broken.yaml', allowPolicy('broken', 70)),
      /73 rules; the kernel evaluates at most 64/,
      () => agent.writePolicy('broken.yaml', allowPolicy('broken')),
    );
  });

  /** Changes the broken workload's entry in the agent's configuration file. */
  const editBroken = (change: (workload: Record<string, unknown>) => void) =>
    agent.editConfig((config) => change((config.workloads as Record<string, unknown>[]).find((w) => w.name === BROKEN.name)!));

  test('a workload whose backstop interface is missing is enrolled deny-all with DNS steered (calibrated first)', async () => {
    await assertFailsClosed(
      () => editBroken((w) => (w.interfaces = [`${lab.prefix}-gone`])),
      new RegExp(`interface ${lab.prefix}-gone not found`),
      () => editBroken((w) => (w.interfaces = [lab.pod(BROKEN.pod).nodeInterface])),
    );
  });

  test('a workload whose backstop interface has no addresses to judge sources by is enrolled deny-all (calibrated first)', async () => {
    const pod = lab.pod(BROKEN.pod);
    await assertFailsClosed(
      () => editBroken((w) => (w.addresses = [])),
      /need the workload's addresses/,
      () => editBroken((w) => (w.addresses = [pod.ipv4, pod.ipv6])),
    );
  });

  test('a workload whose policy names a domain valid for DNS but too long for the kernel is enrolled deny-all (calibrated first)', async () => {
    const label = 'a'.repeat(63);
    const tooLong = `${label}.${label}.${label}.${'b'.repeat(56)}.com`; // 252 characters: the kernel matches at most 251
    await assertFailsClosed(
      () =>
        agent.writePolicy(
          'broken.yaml',
          allowPolicy('broken').replace('domains: [api.openai.com,', `domains: [${tooLong}, api.openai.com,`),
        ),
      /has 252 characters; the kernel matches at most 251/,
      () => agent.writePolicy('broken.yaml', allowPolicy('broken')),
    );
  });

  /**
   * Stands in for other workloads filling a node-wide kernel map: real entries (`entry(index)`, under an owner no
   * workload has) written until the kernel refuses one for lack of room; `empty` removes them again.
   */
  function mapFiller(mapName: CapacityMap, entry: (index: number) => [key: Buffer, value: Buffer]) {
    const map = loadNative().BpfMap.openPinned(join(pinPaths(agent.pinDir).maps, mapName));
    const written: Buffer[] = [];
    return {
      fill(): void {
        for (let index = 0; ; index++) {
          const [key, value] = entry(index);
          try {
            map.update(key, value);
          } catch (error) {
            // A full hash map says E2BIG, a full LPM trie ENOSPC; anything else is this test's mistake.
            assert.match((error as Error).message, /Argument list too long|No space left/, `filling ${mapName}`);
            return;
          }
          written.push(key);
        }
      },
      empty(): void {
        for (const key of written.splice(0)) map.delete(key);
      },
      close(): void {
        this.empty();
        map.close();
      },
    };
  }

  /** Status reports the filled map's capacity nearly full before any enrolment meets it. */
  const CAPACITY_OF: Record<CapacityMap, CapacityName> = {
    eg_domains: 'domainPatterns',
    eg_rule_cidrs: 'ruleDestinations',
    eg_learned: 'learnedAddresses',
    eg_workloads: 'workloads',
    eg_workload_addrs: 'workloadAddresses',
    eg_interfaces: 'interfaces',
  };
  async function assertReportedFull(mapName: CapacityMap): Promise<void> {
    const capacity = (await agent.status()).capacity[CAPACITY_OF[mapName]];
    assert.equal(capacity.nearlyFull, true, `${mapName}: ${JSON.stringify(capacity)}`);
    assert.ok(capacity.used! >= capacity.max - 8, `${mapName} counted with the other writers' entries: ${JSON.stringify(capacity)}`);
  }

  /** Calibrated fail-closed check with `mapName` filled by `mapFiller` just before `change` needs one more entry of it. */
  async function assertFullMapFailsClosed(
    mapName: CapacityMap,
    entry: (index: number) => [key: Buffer, value: Buffer],
    change: () => void,
    repair: () => void,
  ): Promise<void> {
    const filler = mapFiller(mapName, entry);
    try {
      filler.fill();
      await assertReportedFull(mapName);
      await assertFailsClosed(
        change,
        // The kernel keeps 15 characters of a map's name.
        new RegExp(`its rules cannot be enforced: bpf_map_update_elem\\(${mapName.slice(0, 15)}\\)`),
        () => {
          filler.empty();
          repair();
        },
      );
    } finally {
      filler.close();
    }
  }

  test('a workload whose domains meet a full kernel map is enrolled deny-all with DNS steered (calibrated first)', async () => {
    const moreDomains = Array.from({ length: 4 }, (_, i) => `full-${i}.example`).join(', ');
    await assertFullMapFailsClosed(
      'eg_domains',
      (index) => [encodeDomainKey(FILLER_RULE_ID, { kind: 'exact', name: `filler-${index}.example` })!, Buffer.from([1])],
      () =>
        agent.writePolicy(
          'broken.yaml',
          allowPolicy('broken').replace('domains: [api.openai.com,', `domains: [${moreDomains}, api.openai.com,`),
        ),
      () => agent.writePolicy('broken.yaml', allowPolicy('broken')),
    );
  });

  test('a workload whose rule destinations meet a full kernel map is enrolled deny-all with DNS steered (calibrated first)', async () => {
    // Four more destinations than its current rules: more than the slot being rewritten gives back.
    const moreCidrs = Array.from({ length: 4 }, (_, i) => `, { cidr: "${fillerAddress(0xffff00 + i)}/128" }`).join('');
    await assertFullMapFailsClosed(
      'eg_rule_cidrs',
      (index) => [
        encodeRuleCidrKey(FILLER_WORKLOAD_ID, 0, { family: 6, address: fillerAddress(index), prefix: 128 }),
        encodeU32(FILLER_RULE_ID),
      ],
      () =>
        agent.writePolicy(
          'broken.yaml',
          allowPolicy('broken').replace(`{ cidr: ${HTTPBIN.ipv4}/32 }`, `{ cidr: ${HTTPBIN.ipv4}/32 }${moreCidrs}`),
        ),
      () => agent.writePolicy('broken.yaml', allowPolicy('broken')),
    );
  });

  test('a workload whose source addresses meet a full kernel map is enrolled deny-all with DNS steered (calibrated first)', async () => {
    const pod = lab.pod(BROKEN.pod);
    await assertFullMapFailsClosed(
      'eg_workload_addrs',
      (index) => [encodeAddrKey(FILLER_WORKLOAD_ID, fillerAddress(index)), Buffer.from([1])],
      () => editBroken((w) => (w.addresses = [pod.ipv4, pod.ipv6, fillerAddress(0xffff00)])),
      () => editBroken((w) => (w.addresses = [pod.ipv4, pod.ipv6])),
    );
  });

  test('a workload whose backstop interfaces meet a full kernel map is enrolled deny-all with DNS steered (calibrated first)', async () => {
    const pod = lab.pod(BROKEN.pod);
    const extra = `${lab.prefix}-cap`;
    assert.equal((await lab.runInNode(['ip', 'link', 'add', extra, 'type', 'veth', 'peer', 'name', `${extra}2`])).code, 0);
    try {
      await assertFullMapFailsClosed(
        'eg_interfaces',
        (index) => [encodeU32(0x40000000 + index), encodeU32(FILLER_WORKLOAD_ID)],
        () => editBroken((w) => (w.interfaces = [pod.nodeInterface, extra])),
        () => editBroken((w) => (w.interfaces = [pod.nodeInterface])),
      );
    } finally {
      await lab.runInNode(['ip', 'link', 'del', extra]);
    }
  });

  test('a full learned-address map fails closed: a name not learned yet is answered SERVFAIL, its address stays denied (calibrated first)', async () => {
    // A wildcard: the agent resolves exact names itself, so only a workload's own lookup learns these.
    const WEBHOOK = DEFAULT_LAB_HOSTS.find((h) => h.name === 'webhook.site')!;
    const withWebhook = (app: string) =>
      allowPolicy(app).replace('domains: [api.openai.com,', 'domains: ["*.webhook.site", api.openai.com,');
    const connect = async (pod: string) => as<TcpProbeResult>('tcp', await lab.probe(pod, ['tcp', WEBHOOK.ipv4, '443']));
    agent.writePolicy('good.yaml', withWebhook('good'));
    agent.writePolicy('broken.yaml', withWebhook('broken'));
    await agent.waitFor('*.webhook.site permitted for both', (s) =>
      [GOOD, BROKEN].every((w) => s.workloads.find((x) => x.key === `team/${w.name}`)?.allowedNames.includes('*.webhook.site')),
    );
    // Calibration: a workload with the same rules reaches it by name while the map has room.
    const calibration = uniqueName('webhook.site');
    await tls(GOOD.pod, calibration);
    await lab.waitForServerRecords('the good pod at webhook.site', (r) => fromEither(GOOD.pod)(r) && r.sni === calibration);
    const filler = mapFiller('eg_learned', (index) => [
      encodeLearnedKeyBytes(FILLER_WORKLOAD_ID, FILLER_RULE_ID, addressToBytes(fillerAddress(index))),
      encodeLearnedValue(2n ** 63n),
    ]);
    try {
      const eventsBefore = agent.events().length;
      filler.fill();
      await assertReportedFull('eg_learned');
      const name = uniqueName('webhook.site');
      const refused = await dns(BROKEN.pod, name);
      assert.equal(refused.rcode, 'SERVFAIL', 'no address is released that the kernel could not learn');
      const event = await waitForEvent(eventsBefore, (e) => e.dns?.query === name);
      assert.match(event.reason ?? '', /could not install learned addresses: bpf_map_update_elem\(eg_learned\)/);
      const serverBefore = (await lab.serverLog()).length;
      assert.equal((await connect(BROKEN.pod)).error, 'EPERM');
      await settle();
      const reached = (await lab.serverLog()).slice(serverBefore).filter(fromEither(BROKEN.pod));
      assert.deepEqual(reached, [], 'zero connections to the address it could not learn');
      // What is already learned stays in force, for this workload and the others.
      assert.equal((await tls(BROKEN.pod)).ok, true);
      const kept = uniqueName('webhook.site');
      await tls(GOOD.pod, kept);
      await lab.waitForServerRecords('the good pod at webhook.site, full', (r) => fromEither(GOOD.pod)(r) && r.sni === kept);
    } finally {
      filler.close();
      agent.writePolicy('good.yaml', allowPolicy('good'));
      agent.writePolicy('broken.yaml', allowPolicy('broken'));
    }
    await agent.waitFor('*.webhook.site withdrawn', (s) => !s.workloads.some((w) => w.allowedNames.includes('*.webhook.site')));
  });

  test('a workload that finds the workload map full is reported NOT enforced; the others keep working', async () => {
    const lateCgroup = join(lab.attachCgroup, 'late');
    mkdirSync(lateCgroup);
    const filler = mapFiller('eg_workloads', (index) => [
      encodeCgroupId(0xffff000000000000n + BigInt(index)),
      encodeWorkload({ workloadId: FILLER_WORKLOAD_ID, ruleCount: 0, slot: 0, flags: 0 }),
    ]);
    const late = { namespace: 'team', name: 'late', cgroup: lateCgroup, labels: { app: 'late' }, addresses: ['198.18.0.251'] };
    try {
      filler.fill();
      await assertReportedFull('eg_workloads');
      agent.editConfig((config) => (config.workloads as Record<string, unknown>[]).push(late));
      const status = await agent.waitFor('late reported', (s) => s.failures.some((f) => f.key === 'team/late'));
      const failure = status.failures.find((f) => f.key === 'team/late')!;
      assert.equal(failure.enforced, 'none');
      assert.match(failure.error, /bpf_map_update_elem\(eg_workloads\)/);
      await waitUntil('the agent logs it NOT enforced', () => /"workload":"team\/late"[^\n]*workload NOT enforced/.test(agent.log()));
      assert.equal((await tls(GOOD.pod)).ok, true);
      // Room comes with a change (another workload leaving, say): the next pass enrols it.
      filler.empty();
      agent.editConfig((config) => {
        (config.workloads as Record<string, unknown>[]).find((w) => w.name === 'late')!.labels = { app: 'late2' };
      });
      await agent.waitFor(
        'late enrolled once there is room',
        (s) => s.workloads.some((w) => w.key === 'team/late') && s.failures.length === 0,
      );
    } finally {
      filler.close();
      agent.editConfig((config) => (config.workloads = (config.workloads as Record<string, unknown>[]).filter((w) => w.name !== 'late')));
      await agent.waitFor('late gone', (s) => !s.workloads.some((w) => w.key === 'team/late'));
      rmdirSync(lateCgroup);
    }
  });

  test('an agent whose workload cgroup vanished while it was down starts, enforces the others and reports it', async () => {
    mkdirSync(ghostCgroup);
    agent.editConfig((config) => {
      (config.workloads as Record<string, unknown>[]).push({
        namespace: 'team',
        name: 'ghost',
        cgroup: ghostCgroup,
        labels: { app: 'ghost' },
        addresses: ['198.18.0.250'],
      });
      (config.baseline as Record<string, unknown>).mode = 'enforce';
    });
    await agent.waitFor('ghost enrolled', (s) => s.workloads.some((w) => w.key === 'team/ghost') && s.mode === 'enforce');
    await agent.stop();
    rmdirSync(ghostCgroup);
    await agent.start();
    const status = await agent.waitFor('ghost reported', (s) => s.failures.some((f) => f.key === 'team/ghost'));
    assert.equal(status.failures.find((f) => f.key === 'team/ghost')?.enforced, 'none');
    assert.match(agent.log(), /workload team\/ghost: cgroup path .*ghost does not exist/);
    // Everything else is enforced: allowed traffic passes, the rest is denied and never reaches the server.
    assert.equal((await tls(GOOD.pod)).ok, true);
    const serverBefore = (await lab.serverLog()).length;
    assert.equal((await tcp(GOOD.pod, '9443')).error, 'EPERM');
    const name = uniqueName('unlisted.example');
    assert.equal(answered(await dns(GOOD.pod, name)), false);
    await settle();
    assert.deepEqual((await lab.serverLog()).slice(serverBefore).filter(fromPod(GOOD.pod, 9443)), []);
    assert.equal((await lab.resolverQueries()).includes(name), false);
  });

  test('config edits by rename-replace keep being applied (sed -i, editors); status shows the digest in force', async () => {
    const sha = () => createHash('sha256').update(readFileSync(agent.configPath)).digest('hex');
    const replaceMode = (from: string, to: string) => {
      const tmp = `${agent.configPath}.tmp`;
      writeFileSync(tmp, readFileSync(agent.configPath, 'utf8').replace(`mode: ${from}`, `mode: ${to}`));
      renameSync(tmp, agent.configPath);
    };
    for (const [from, to] of [
      ['enforce', 'discovery'],
      ['discovery', 'enforce'],
      ['enforce', 'discovery'],
      ['discovery', 'enforce'],
    ] as const) {
      replaceMode(from, to);
      const digest = sha();
      const status = await agent.waitFor(`mode ${to} after a rename-replace`, (s) => s.mode === to && s.configDigest === digest);
      assert.equal(status.configDigest, digest);
    }
  });

  test('0.0.0.0/0 in a deny rule covers IPv6 and is attributed to it; ::/0 in a permit never matches IPv4', async () => {
    const v6Permit = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: broken-fw, namespace: team }
spec:
  smartGroups:
    - name: v6-any
      selectors: [{ cidr: "::/0" }]
  rules:
    - name: allow-v6
      action: permit
      protocol: tcp
      port: 8443
      selector: { matchLabels: { app: broken } }
      destinationSmartGroups: [{ name: v6-any }]
`;
    const translatorDenyAll = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: broken-fw, namespace: team }
spec:
  smartGroups:
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
  rules:
    - name: deny-all-external
      action: deny
      protocol: any
      selector: { matchLabels: { app: broken } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;
    const generation = async () => (await agent.status()).policies.find((p) => p.name === 'broken-fw')?.generation ?? 0;
    const v6 = () => tcpTo(BROKEN.pod, HTTPBIN.ipv6);
    await agent.setMode('enforce');
    let before = await generation();
    agent.writePolicy('broken.yaml', v6Permit);
    await agent.waitFor('the ::/0 permit', (s) =>
      s.policies.some((p) => p.name === 'broken-fw' && p.generation > before && p.ruleset !== ''),
    );
    // ::/0 permits IPv6 (it reaches the server) and not IPv4: enforce mode's default denies it, nothing arrives.
    assert.equal((await v6()).ok, true);
    await lab.waitForServerRecords('IPv6 from the broken pod', (r) => r.remote === lab.pod(BROKEN.pod).ipv6 && r.port === 8443);
    let mark = (await lab.serverLog()).length;
    let events = agent.events().length;
    assert.equal((await tcp(BROKEN.pod, '8443')).error, 'EPERM');
    await settle();
    assert.deepEqual((await lab.serverLog()).slice(mark).filter(fromPod(BROKEN.pod, 8443)), []);
    const v4Denial = await waitForEvent(
      events,
      (e) => e.workload.name === BROKEN.name && e.destination.ip === HTTPBIN.ipv4 && e.verdict === 'denied',
    );
    assert.equal(v4Denial.rule, 'default-action', 'IPv4 is not matched by ::/0');

    // Translator's deny-all (0.0.0.0/0 only): IPv6 is denied by the rule and attributed to it, in discovery mode (where
    // the default would permit it) and in enforce mode (where the default would deny it too, so only the event's rule
    // tells the two apart).
    await agent.setMode('discovery');
    before = await generation();
    agent.writePolicy('broken.yaml', translatorDenyAll);
    await agent.waitFor('the deny-all', (s) => s.policies.some((p) => p.name === 'broken-fw' && p.generation > before && p.ruleset !== ''));
    for (const mode of ['discovery', 'enforce'] as const) {
      await agent.setMode(mode);
      mark = (await lab.serverLog()).length;
      events = agent.events().length;
      assert.equal((await v6()).error, 'EPERM', mode);
      await settle();
      assert.deepEqual(
        (await lab.serverLog()).slice(mark).filter((r) => r.remote === lab.pod(BROKEN.pod).ipv6),
        [],
        `${mode}: zero IPv6 connections reach the server`,
      );
      const v6Denial = await waitForEvent(
        events,
        (e) => e.workload.name === BROKEN.name && e.destination.ip === HTTPBIN.ipv6 && e.verdict === 'denied',
      );
      assert.deepEqual([v6Denial.tier, v6Denial.rule], [2, 'deny-all-external'], `${mode}: the IPv6 denial names the policy's rule`);
    }
  });

  test('deny *.attacker.example, then permit api.attacker.example: denied at DNS and at connect, IPv4 and IPv6 (calibrated first)', async () => {
    const xPolicy = (withDeny: boolean) => `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: broken-fw, namespace: team }
spec:
  smartGroups:${anyDestination}
  webGroups:
    - name: attacker-any
      domains: ["*.attacker.example"]
    - name: approved
      domains: [api.attacker.example, api.openai.com]
  rules:
${
  withDeny
    ? `    - name: deny-attacker
      action: deny
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: broken } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: attacker-any }]
`
    : ''
}    - name: allow-approved
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: broken } }
      destinationSmartGroups: [{ name: any-destination }]
      webGroups: [{ name: approved }]
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: broken } }
      destinationSmartGroups: [{ name: any-destination }]
`;
    const attacker = DEFAULT_LAB_HOSTS.find((h) => h.name === 'attacker.example')!;
    const apply = async (text: string) => {
      const before = (await agent.status()).policies.find((p) => p.name === 'broken-fw')?.generation ?? 0;
      agent.writePolicy('broken.yaml', text);
      await agent.waitFor('broken-fw', (s) => s.policies.some((p) => p.name === 'broken-fw' && p.generation > before && p.ruleset !== ''));
    };
    const families = [4, 6] as const;
    const viaName = async (family: 4 | 6) =>
      as<TlsProbeResult>(
        'tls',
        await lab.probe(BROKEN.pod, ['tls', 'api.attacker.example', '443', '--family', String(family), '--ca', lab.caPath]),
      );
    const viaAddress = async (family: 4 | 6) =>
      as<TlsProbeResult>(
        'tls',
        await lab.probe(BROKEN.pod, [
          'tls',
          family === 4 ? attacker.ipv4 : attacker.ipv6,
          '443',
          '--sni',
          'api.attacker.example',
          '--ca',
          lab.caPath,
        ]),
      );
    const fromBroken = (family: 4 | 6) => (r: ServerRecord) =>
      r.remote === (family === 4 ? lab.pod(BROKEN.pod).ipv4 : lab.pod(BROKEN.pod).ipv6) && r.sni === 'api.attacker.example';

    // Calibration: without the deny rule the permit reaches api.attacker.example by name, over both families.
    await apply(xPolicy(false));
    for (const family of families) {
      assert.equal((await viaName(family)).ok, true);
      await lab.waitForServerRecords(`api.attacker.example from the broken pod over IPv${family}`, fromBroken(family));
    }

    await apply(xPolicy(true));
    const mark = (await lab.serverLog()).length;
    const lookup = await dns(BROKEN.pod, 'api.attacker.example');
    assert.equal(answered(lookup), false, `the name is denied: ${JSON.stringify(lookup)}`);
    for (const family of families) {
      assert.notEqual((await viaName(family)).ok, true);
      assert.notEqual((await viaAddress(family)).ok, true, 'its address, learned for the permit before, does not help');
    }
    await settle();
    const arrived = (await lab.serverLog()).slice(mark);
    for (const family of families)
      assert.deepEqual(
        arrived.filter(fromBroken(family)),
        [],
        `zero connections for api.attacker.example reach the server over IPv${family}`,
      );
    assert.equal((await tls(BROKEN.pod)).ok, true, 'allowed traffic keeps working');
  });
});

// The containment lab on its own (no BPF): pods reach the lab internet over IPv4/IPv6, TCP/UDP, through a real
// resolver; destroy() and a failed create() leave nothing behind.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findCgroup2Mount } from '../../src/datapath/mounts.js';
import { mustRun } from '../../src/lab/exec.js';
import { Lab } from '../../src/lab/lab.js';
import type { DnsProbeResult, LoopTcpProbeResult, TcpProbeResult, UdpProbeResult } from '../../src/lab/probe-result.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

function labNetns(prefix: string): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns').filter((name) => name.startsWith(`${prefix}-`)) : [];
}

/** PIDs of live processes whose command line mentions the prefix (dnsmasq logs, server config live under it). */
function processesMentioning(prefix: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(`egressguard-lab-${prefix}-`)) found.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

async function waitForComm(pid: number, comm: string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`process ${pid} never became ${comm}`);
}

describe('containment lab', { skip: privilegedSkip() }, () => {
  const prefix = uniquePrefix('lb');
  let lab: Lab;

  before(async () => {
    lab = await Lab.create({ prefix, pods: ['alpha', 'beta'] });
  });
  after(async () => {
    await lab?.destroy();
  });

  test('pods reach internet hosts over TCP by name, IPv4 and IPv6', async () => {
    for (const family of ['4', '6']) {
      const result = (await lab.probe('alpha', ['tcp', 'api.openai.com', '443', '--family', family])) as TcpProbeResult;
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.firstLine, 'hello from api.openai.com');
      assert.equal(result.address, family === '4' ? '198.18.100.10' : 'fd00:eb:100::10');
    }
    const direct = (await lab.probe('beta', ['tcp', 'fd00:eb:100::20', '8443'])) as TcpProbeResult;
    assert.equal(direct.firstLine, 'hello from httpbin.org');
  });

  test('pods get UDP echoes over IPv4 and IPv6', async () => {
    for (const target of ['198.18.100.30', 'fd00:eb:100::30']) {
      const result = (await lab.probe('beta', ['udp', target, '9999'])) as UdpProbeResult;
      assert.equal(result.ok, true, JSON.stringify(result));
    }
  });

  test('DNS goes to the real resolver, which logs the query; unknown names are NXDOMAIN', async () => {
    const answer = (await lab.probe('alpha', ['dns', 'webhook.site', '--server', '198.18.100.53'])) as DnsProbeResult;
    assert.equal(answer.rcode, 'NOERROR');
    assert.deepEqual(
      answer.answers.map((a) => a.data),
      ['198.18.100.30'],
    );
    assert.equal(answer.replyFrom, '198.18.100.53');
    const overTcp = (await lab.probe('alpha', [
      'dns',
      'webhook.site',
      '--server',
      'fd00:eb:100::53',
      '--tcp',
      '--type',
      'AAAA',
    ])) as DnsProbeResult;
    assert.deepEqual(
      overTcp.answers.map((a) => a.data),
      ['fd00:eb:100::30'],
    );
    const tunnel = (await lab.probe('beta', ['dns', 'abc123.attacker.example', '--server', '198.18.100.99'])) as DnsProbeResult;
    assert.deepEqual(
      tunnel.answers.map((a) => a.data),
      ['198.18.100.66'],
    );
    const unknown = (await lab.probe('beta', ['tcp', 'unknown.example', '443'])) as TcpProbeResult;
    assert.equal(unknown.error, 'ENOTFOUND');

    const primary = await lab.resolverQueries('primary');
    assert.ok(primary.includes('webhook.site'));
    assert.ok(primary.includes('unknown.example'));
    assert.deepEqual(await lab.resolverQueries('alternate'), ['abc123.attacker.example']);
  });

  test('pod processes run in the pod cgroup with the pod resolv.conf', async () => {
    const result = await lab.runInPod('beta', ['sh', '-c', 'cat /proc/self/cgroup /etc/resolv.conf']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^0::/${prefix}/beta$`, 'm'));
    assert.match(result.stdout, /^nameserver 198\.18\.100\.53$/m);
  });

  test('the node netns forwards and holds the DNS proxy addresses; the host netns is untouched', async () => {
    const forwarding = await lab.runInNode(['cat', '/proc/sys/net/ipv4/ip_forward']);
    assert.equal(forwarding.stdout.trim(), '1');
    const addresses = await mustRun(['ip', '-n', lab.nodeNetns, 'addr', 'show', 'dev', 'lo']);
    assert.match(addresses, /198\.18\.0\.53\/32/);
    assert.match(addresses, /fd00:eb::53\/128/);
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '0');
  });

  test('loop-tcp counts successes', async () => {
    const result = (await lab.probe('alpha', ['loop-tcp', '198.18.100.20', '80', '--count', '3'])) as LoopTcpProbeResult;
    assert.deepEqual([result.attempts, result.successes, result.failures], [3, 3, {}]);
  });

  test('destroy removes netns, cgroups, processes and files, and is idempotent', async () => {
    const sleeper = lab.spawnInPod('alpha', ['sleep', '600']);
    const workDir = lab.workDir;
    // The tracked PID is the program itself (nsenter, unshare and sh exec into it), so tests can kill -9 it.
    await waitForComm(sleeper.pid as number, 'sleep');
    assert.ok(processesMentioning(prefix).length > 0);
    await lab.destroy();
    await lab.destroy();
    assert.deepEqual(labNetns(prefix), []);
    assert.equal(existsSync(lab.attachCgroup), false);
    assert.equal(existsSync(workDir), false);
    assert.deepEqual(processesMentioning(prefix), []);
    assert.notEqual(sleeper.exitCode ?? sleeper.signalCode, null);
  });
});

describe('containment lab create failure', { skip: privilegedSkip() }, () => {
  test('a failure half-way through create removes what it made and nothing else', async () => {
    const prefix = uniquePrefix('lf');
    const squatter = `${prefix}-p1`;
    await mustRun(['ip', 'netns', 'add', squatter]);
    try {
      await assert.rejects(Lab.create({ prefix, pods: ['one', 'two'] }), new RegExp(`netns add ${squatter}`));
      assert.deepEqual(labNetns(prefix), [squatter]);
      assert.equal(existsSync(`${findCgroup2Mount() ?? '/nonexistent'}/${prefix}`), false);
      assert.deepEqual(processesMentioning(prefix), []);
    } finally {
      await mustRun(['ip', 'netns', 'delete', squatter]);
    }
  });

  test('bad options are rejected before anything is created', async () => {
    await assert.rejects(Lab.create({ prefix: 'Bad_Prefix', pods: ['a'] }), /lab prefix "Bad_Prefix" must match/);
    await assert.rejects(
      Lab.create({
        prefix: uniquePrefix('lo'),
        pods: ['a'],
        hosts: [{ name: 'x.example', ipv4: '10.0.0.1', ipv6: 'fd00:eb:100::1', ttl: 5 }],
      }),
      /ipv4 10\.0\.0\.1 must be in 198\.18\.100\.0\/24/,
    );
  });

  test('cleanupStale removes a crashed lab matching the pattern, and nothing else', async () => {
    const prefix = uniquePrefix('ls');
    const bystander = `${uniquePrefix('lb')}-node`;
    const cgroup = join(findCgroup2Mount() ?? '/nonexistent', prefix);
    const leftover = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      await mustRun(['ip', 'netns', 'add', `${prefix}-node`]);
      await mustRun(['ip', 'netns', 'add', bystander]);
      mkdirSync(join(cgroup, 'pod'), { recursive: true });
      writeFileSync(join(cgroup, 'pod', 'cgroup.procs'), String(leftover.pid));
      const workDir = mkdtempSync(join(tmpdir(), `egressguard-lab-${prefix}-`));
      const exited = once(leftover, 'exit');

      const removed = await Lab.cleanupStale(new RegExp(`^${prefix}$`));

      assert.deepEqual(removed.sort(), [`cgroup ${cgroup}`, `dir ${workDir}`, `netns ${prefix}-node`]);
      await exited;
      assert.deepEqual(labNetns(prefix), []);
      assert.equal(existsSync(cgroup), false);
      assert.deepEqual(labNetns(bystander.replace(/-node$/, '')), [bystander]);
    } finally {
      leftover.kill('SIGKILL');
      await mustRun(['ip', 'netns', 'delete', bystander]).catch(() => undefined);
      await Lab.cleanupStale(new RegExp(`^${prefix}$`));
    }
  });
});

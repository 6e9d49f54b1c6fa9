// The containment lab on its own (no BPF): pods reach the lab internet over IPv4/IPv6, TCP/UDP, through a real
// resolver; destroy() and a failed create() leave nothing behind. The TLS and below-the-socket probes are proven to
// reach the far end here, so that with BPF loaded a missing server record means "dropped".
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { findCgroup2Mount } from '../../src/datapath/mounts.js';
import { mustRun } from '../../lab/exec.js';
import { LAB_UNLISTED_TLS_NAME } from '../../lab/certs.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import { LAB_TLS_PORT, Lab, type LabOptions } from '../../lab/lab.js';
import type {
  DnsProbeResult,
  LoopTcpProbeResult,
  ProbeResult,
  ProbeResultOfKind,
  TcpProbeResult,
  UdpProbeResult,
} from '../../lab/probe-result.js';
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

  beforeAll(async () => {
    lab = await Lab.create({ prefix, pods: ['alpha', 'beta'] });
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  test('pods reach internet hosts over TCP by name, IPv4 and IPv6', async () => {
    for (const family of ['4', '6']) {
      const result = (await lab.probe('alpha', ['tcp', 'api.openai.com', '8443', '--family', family])) as TcpProbeResult;
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
    const unknown = (await lab.probe('beta', ['tcp', 'unknown.example', '8443'])) as TcpProbeResult;
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

function ofKind<K extends ProbeResult['kind']>(kind: K, result: ProbeResult): ProbeResultOfKind<K> {
  assert.equal(result.kind, kind, JSON.stringify(result));
  return result as ProbeResultOfKind<K>;
}

describe('lab TLS and packet-layer probes, without BPF', { skip: privilegedSkip() }, () => {
  const prefix = uniquePrefix('lt');
  const tlsPort = String(LAB_TLS_PORT);
  const OPENAI = { v4: '198.18.100.10', v6: 'fd00:eb:100::10' };
  const HTTPBIN = { v4: '198.18.100.20', v6: 'fd00:eb:100::20' };
  let lab: Lab;

  beforeAll(async () => {
    lab = await Lab.create({ prefix, pods: ['alpha'] });
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  const probe = (args: string[]): Promise<ProbeResult> => lab.probe('alpha', args);
  /** The server's record of the connection or datagram the probe made from `sourcePort`. */
  const recordFrom = async (sourcePort: number | undefined): Promise<ServerRecord> => {
    assert.ok(sourcePort !== undefined, 'the probe reported no source port');
    const [record] = await lab.waitForServerRecords(`record from port ${sourcePort}`, (r) => r.remotePort === sourcePort);
    return record as ServerRecord;
  };

  test('real TLS handshakes, verified against the lab CA, with and without SNI, over IPv4 and IPv6', async () => {
    for (const family of ['4', '6'] as const) {
      const named = ofKind('tls', await probe(['tls', 'api.openai.com', tlsPort, '--family', family, '--ca', lab.caPath]));
      assert.equal(named.ok, true, JSON.stringify(named));
      assert.equal(named.firstLine, 'tls hello from api.openai.com sni=api.openai.com');
      const namedRecord = await recordFrom(named.sourcePort);
      assert.deepEqual(
        [namedRecord.proto, namedRecord.sni, namedRecord.handshake, namedRecord.clientHello],
        ['tls', 'api.openai.com', true, true],
      );
      assert.equal(namedRecord.local, family === '4' ? OPENAI.v4 : OPENAI.v6);

      const address = family === '4' ? HTTPBIN.v4 : HTTPBIN.v6;
      const bare = ofKind('tls', await probe(['tls', address, tlsPort, '--no-sni', '--ca', lab.caPath]));
      assert.equal(bare.ok, true, JSON.stringify(bare));
      assert.equal(bare.servername, null);
      assert.equal(bare.firstLine, 'tls hello from httpbin.org sni=none');
      const bareRecord = await recordFrom(bare.sourcePort);
      // The server parsed the ClientHello itself: there really was no server_name extension on the wire.
      assert.deepEqual([bareRecord.clientHello, bareRecord.sni, bareRecord.handshake], [true, null, true]);
    }
  });

  test('a fronted name that no resolver knows still completes a verified handshake on any host', async () => {
    const fronted = ofKind('tls', await probe(['tls', OPENAI.v6, tlsPort, '--sni', LAB_UNLISTED_TLS_NAME, '--ca', lab.caPath]));
    assert.equal(fronted.ok, true, JSON.stringify(fronted));
    assert.equal(fronted.firstLine, `tls hello from api.openai.com sni=${LAB_UNLISTED_TLS_NAME}`);
    const wrongName = ofKind('tls', await probe(['tls', OPENAI.v4, tlsPort, '--sni', 'nowhere.invalid', '--ca', lab.caPath]));
    assert.equal(wrongName.ok, false);
    assert.equal(wrongName.error, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  test('hand-built ClientHellos split into 1, 2 and 3 segments get a ServerHello from the real server', async () => {
    for (const split of ['1', '2', '3']) {
      for (const target of [OPENAI.v4, OPENAI.v6]) {
        const hello = ofKind('hello', await probe(['hello', target, tlsPort, '--sni', 'api.openai.com', '--split', split, '--grease']));
        assert.equal(hello.serverHello, true, JSON.stringify(hello));
        const record = await recordFrom(hello.sourcePort);
        assert.deepEqual([record.clientHello, record.sni, record.bytesReceived], [true, 'api.openai.com', hello.bytesSent]);
        assert.equal(record.reads, Number(split), 'each write should arrive as its own segment');
      }
    }
  });

  test('ECH-style, padded and TLS 1.2 hellos are answered; TLS 1.0 gets an alert; plain HTTP gets no ServerHello', async () => {
    const ech = ofKind('hello', await probe(['hello', OPENAI.v4, tlsPort, '--sni', 'api.openai.com', '--ech']));
    assert.equal(ech.serverHello, true, JSON.stringify(ech));
    assert.deepEqual([(await recordFrom(ech.sourcePort)).ech, (await recordFrom(ech.sourcePort)).sni], [true, 'api.openai.com']);
    const padded = ofKind(
      'hello',
      await probe(['hello', OPENAI.v6, tlsPort, '--sni', 'api.openai.com', '--tls-version', '1.2', '--pad', '4000']),
    );
    assert.equal(padded.serverHello, true, JSON.stringify(padded));
    assert.ok(padded.bytesSent > 4000);
    const old = ofKind('hello', await probe(['hello', OPENAI.v4, tlsPort, '--sni', 'api.openai.com', '--tls-version', '1.0']));
    assert.deepEqual([old.serverHello, old.alert], [false, true]);
    const http = ofKind('hello', await probe(['hello', OPENAI.v4, tlsPort, '--plain-http']));
    assert.equal(http.connected, true);
    assert.equal(http.serverHello, false);
    const httpRecord = await recordFrom(http.sourcePort);
    assert.deepEqual([httpRecord.clientHello, httpRecord.handshake, httpRecord.bytesReceived], [false, false, http.bytesSent]);
  });

  test('a UDP datagram sent on an AF_PACKET socket arrives, over IPv4 and IPv6', async () => {
    for (const target of [OPENAI.v4, OPENAI.v6]) {
      const sent = ofKind('packet', await probe(['packet', target, '9999']));
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const record = await recordFrom(sent.sourcePort);
      assert.deepEqual([record.proto, record.local, record.remote, record.bytesReceived], ['udp', target, sent.source, sent.payloadBytes]);
      assert.equal(sent.source, target === OPENAI.v4 ? lab.pod('alpha').ipv4 : lab.pod('alpha').ipv6);
    }
  });

  test('raw-socket datagrams arrive, from the pod address and from a forged one (nothing blocks them yet)', async () => {
    for (const [target, forged] of [
      [HTTPBIN.v4, '198.18.77.7'],
      [HTTPBIN.v6, 'fd00:eb:77::7'],
    ] as const) {
      const own = ofKind('raw-udp', await probe(['raw-udp', target, '9999']));
      assert.equal(own.ok, true, JSON.stringify(own));
      assert.equal((await recordFrom(own.sourcePort)).remote, own.source);
      const spoofed = ofKind('raw-udp', await probe(['raw-udp', target, '9999', '--src', forged]));
      assert.equal(spoofed.source, forged);
      assert.equal((await recordFrom(spoofed.sourcePort)).remote, forged);
    }
  });

  test('ICMP and ICMPv6 echoes are answered, over raw and over unprivileged ping sockets', async () => {
    for (const target of [OPENAI.v4, OPENAI.v6]) {
      for (const method of [[], ['--ping-socket']]) {
        const ping = ofKind('ping', await probe(['ping', target, '--count', '2', ...method]));
        assert.deepEqual([ping.sent, ping.received, ping.error], [2, 2, undefined], JSON.stringify(ping));
      }
    }
  });

  test('IP fragments reassemble at the receiver into one datagram; a lone first fragment delivers nothing', async () => {
    for (const target of [HTTPBIN.v4, HTTPBIN.v6]) {
      const whole = ofKind('fragments', await probe(['fragments', target, '9999']));
      assert.equal(whole.ok, true, JSON.stringify(whole));
      assert.ok(whole.sent > 1);
      const records = await lab.waitForServerRecords('reassembled datagram', (r) => r.remotePort === whole.sourcePort);
      assert.deepEqual(
        records.map((r) => r.bytesReceived),
        [whole.payloadBytes],
      );
      const partial = ofKind('fragments', await probe(['fragments', target, '9999', '--first-only']));
      assert.deepEqual([partial.ok, partial.sent], [true, 1]);
      // A later datagram from the same pod is logged, yet the incomplete one never is.
      const marker = ofKind('raw-udp', await probe(['raw-udp', target, '9999']));
      await recordFrom(marker.sourcePort);
      assert.deepEqual(
        (await lab.serverLog()).filter((r) => r.remotePort === partial.sourcePort),
        [],
      );
    }
  });

  test('probe usage errors are reported, not guessed around', async () => {
    await assert.rejects(probe(['tls', OPENAI.v4, tlsPort, '--sni', 'a.example', '--no-sni']), /--sni and --no-sni exclude each other/);
    await assert.rejects(probe(['hello', OPENAI.v4, tlsPort, '--split', '9']), /--split must be an integer in 1\.\.4/);
    await assert.rejects(probe(['raw-udp', OPENAI.v4, '9999', '--src', 'fd00:eb:77::7']), /must be the same IP family/);
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

describe('lab network without services (the datapath tests use it)', { skip: privilegedSkip() }, () => {
  const prefix = uniquePrefix('ln');
  let lab: Lab;

  beforeAll(async () => {
    lab = await Lab.create({
      prefix,
      pods: ['solo'],
      hosts: [],
      unnamedHosts: [7],
      services: false,
      extraCgroups: ['solo/child', 'other'],
    });
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  test('no resolver, internet server or CA runs; unnamed hosts and extra cgroups exist', async () => {
    assert.deepEqual(processesMentioning(prefix), []);
    assert.throws(() => lab.caPath, /services: false/);
    const addresses = await mustRun(['ip', '-n', lab.inetNetns, 'addr', 'show', 'dev', 'lo']);
    assert.match(addresses, /198\.18\.100\.7\/32/);
    assert.match(addresses, /fd00:eb:100::7\/128/);
    assert.equal(lab.inet(7, 6), 'fd00:eb:100::7');
    for (const relative of ['solo/child', 'other']) assert.ok(existsSync(join(lab.attachCgroup, relative)), relative);
  });

  test('a served script in inet answers a pod script run in a chosen cgroup, over IPv4 and IPv6', async () => {
    await lab.serve(`require('net').createServer((s) => s.end('ok')).listen({ port: 80, host: '::' }, () => console.log('ready'));`);
    const script = `
      const a = JSON.parse(process.env.EG_ARGS);
      const cgroup = require('fs').readFileSync('/proc/self/cgroup', 'utf8').split('\\n').find((line) => line.startsWith('0::'));
      const s = require('net').connect({ host: a.host, port: 80 });
      let data = '';
      s.on('data', (c) => (data += c));
      s.on('end', () => console.log(JSON.stringify({ data, cgroup })));
      s.on('error', (e) => console.log(JSON.stringify({ error: e.code, cgroup })));`;
    for (const family of [4, 6] as const) {
      const result = await lab.runScriptInPod<{ data?: string; cgroup: string }>(
        'solo',
        script,
        { host: lab.inet(7, family) },
        {
          cgroup: join(lab.attachCgroup, 'solo/child'),
        },
      );
      assert.deepEqual(result, { data: 'ok', cgroup: `0::/${prefix}/solo/child` });
    }
  });

  test('bad unnamed hosts and extra cgroups are rejected before anything is created', async () => {
    const create = (options: Partial<LabOptions>): Promise<Lab> =>
      Lab.create({ prefix: uniquePrefix('lo'), pods: ['a'], hosts: [], services: false, ...options });
    await assert.rejects(create({ unnamedHosts: [53] }), /unnamed lab host 53 must be 1-254 and not a resolver address/);
    await assert.rejects(create({ unnamedHosts: [300] }), /unnamed lab host 300 must be 1-254/);
    await assert.rejects(create({ extraCgroups: ['../escape'] }), /extra cgroup "\.\.\/escape" must be a relative path/);
  });

  test('destroy removes what a datapath left pinned, the cgroups and the netns', async () => {
    mkdirSync(join(lab.pinDir, 'maps'), { recursive: true });
    await lab.destroy();
    assert.equal(existsSync(lab.pinDir), false);
    assert.equal(existsSync(lab.attachCgroup), false);
    assert.deepEqual(labNetns(prefix), []);
  });
});

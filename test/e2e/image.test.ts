// The agent image, built for real from the Dockerfile (no registry: Debian's dockerd of our own, bases made with
// debootstrap, `docker build --network=none`), then run against the netns lab the way the chart runs it: the node's
// network namespace, bpffs and cgroup2 from the host, every capability dropped but the chart's, read-only root
// filesystem. It must enforce: the allowed destination is reached, the denied one receives zero connections
// (judged on the lab server, after a calibration run shows it would be reached), IPv4 and IPv6.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DEFAULT_LAB_HOSTS, Lab } from '../../lab/lab.js';
import { LabAgent } from '../../lab/lab-agent.js';
import type { ServerRecord } from '../../lab/internet-server.js';
import type { TcpProbeResult } from '../../lab/probe-result.js';
import { findCgroup2Mount } from '../../src/datapath/mounts.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { ScratchDocker, npmCache, stageBuildContext } from './image-helpers.js';

const IMAGE = 'egressguard:e2e';
const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
const WEBHOOK = DEFAULT_LAB_HOSTS.find((h) => h.name === 'webhook.site')!;
const POD = { pod: 'mcp', namespace: 'obot-mcp', name: 'ms1img', labels: { app: 'ms1img' } };
const PORT = '8443';

/**
 * The effective capabilities the chart grants (charts/egressguard/templates/daemonset.yaml, interfaceDiscovery:
 * route), by bit: NET_BIND_SERVICE 10, NET_ADMIN 12, PERFMON 38, BPF 39.
 */
const CHART_CAPABILITIES = { CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12, CAP_PERFMON: 38, CAP_BPF: 39 };
/** containerd's default set (oci.defaultUnixCaps), dropped but for what the chart keeps. */
const CONTAINERD_DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const POLICY = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: image-policy, namespace: obot-mcp }
spec:
  smartGroups:
    - name: httpbin
      selectors: [{ cidr: ${HTTPBIN.ipv4}/32 }, { cidr: "${HTTPBIN.ipv6}/128" }]
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
  rules:
    - name: allow-httpbin
      action: permit
      protocol: tcp
      port: ${PORT}
      selector: { matchLabels: { app: ms1img } }
      destinationSmartGroups: [{ name: httpbin }]
    - name: deny-all-external
      action: deny
      protocol: any
      selector: { matchLabels: { app: ms1img } }
      destinationSmartGroups: [{ name: any-destination }]
      logging: true
`;

describe('agent image', { skip: privilegedSkip() }, () => {
  let lab: Lab;
  let docker: ScratchDocker;
  let agent: LabAgent | null = null;
  /** The image's reference in containerd. */
  let imageRef: string;
  /** `ctr run` flags of the chart's DaemonSet, for this lab (host paths mounted where the host has them). */
  let runFlags: string[];
  let containers = 0;
  /** argv running the image as the chart's agent container; `command` replaces the entrypoint. */
  const inImage = (command: string[]) => docker.ctrArgv(['run', ...runFlags, imageRef, `${lab.prefix}-${++containers}`, ...command]);

  beforeAll(async () => {
    lab = await Lab.create({ prefix: uniquePrefix('im'), pods: [POD.pod] });
    // Short: containerd's sockets live here (108-byte limit).
    docker = new ScratchDocker(mkdtempSync('/var/tmp/eg-image-'));
    const daemonLog = openSync(join(lab.workDir, 'docker.log'), 'a');
    try {
      // In the lab's node namespace: `--network host` containers then share it, as the chart's hostNetwork pod does.
      await docker.start((argv) => lab.spawnInNode(argv, { stdio: ['ignore', daemonLog, daemonLog] }));
    } finally {
      closeSync(daemonLog);
    }
    docker.makeBaseImages();
    const context = join(docker.dir, 'context');
    mkdirSync(context);
    stageBuildContext(context, npmCache());
    docker.docker(
      ['build', '--network=none', '--build-arg', 'NPM_CI_FLAGS=--offline --cache /src/.npm-cache', '-t', IMAGE, context],
      1_800_000,
    );
    imageRef = docker.importToContainerd(IMAGE);
    const cgroup2 = findCgroup2Mount()!;
    const keep = Object.keys(CHART_CAPABILITIES);
    const bind = (path: string) => `--mount=type=bind,src=${path},dst=${path},options=rbind:rw`;
    runFlags = [
      '--rm',
      // The node's network namespace: containerd runs in the lab's node namespace, as the chart's hostNetwork pod.
      '--net-host',
      '--read-only',
      // The runtime's default seccomp profile (the chart's RuntimeDefault).
      '--seccomp',
      ...CONTAINERD_DEFAULT_CAPABILITIES.filter((c) => !keep.includes(c)).map((c) => `--cap-drop=${c}`),
      ...keep.map((c) => `--cap-add=${c}`),
      '--mount=type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev',
      bind('/sys/fs/bpf'),
      // The host's cgroup2 tree where the chart mounts it, over the runtime's own cgroup mount.
      `--mount=type=bind,src=${cgroup2},dst=/sys/fs/cgroup,options=rbind:rw`,
      // The lab agent's config, policies, control socket and events (paths as on the host).
      bind(lab.workDir),
    ];
  }, 2_400_000);

  // Stopping dockerd and removing its layers takes a while on a loaded machine.
  afterAll(async () => {
    try {
      await agent?.teardown();
    } finally {
      try {
        await docker?.stop();
      } finally {
        await lab?.destroy();
      }
    }
  }, 600_000);

  const connect = async (ip: string) => (await lab.probe(POD.pod, ['tcp', ip, PORT])) as TcpProbeResult;
  const recordsFrom = async (host: string): Promise<ServerRecord[]> =>
    (await lab.serverLog()).filter((r) => r.host === host && [lab.pod(POD.pod).ipv4, lab.pod(POD.pod).ipv6].includes(r.remote));

  test('the image is built from the Dockerfile; its size is reported', () => {
    const size = Number(docker.docker(['image', 'inspect', '--format', '{{.Size}}', IMAGE]).trim());
    console.log(`egressguard image ${IMAGE}: ${(size / 1e6).toFixed(1)} MB`);
    assert.ok(size > 0);
    // The runtime stage holds no build tool and no development module.
    const inside = docker.docker([
      'run',
      '--rm',
      '--network=none',
      '--entrypoint',
      'sh',
      IMAGE,
      '-c',
      'command -v clang make tsc npm; ls /app/node_modules',
    ]);
    assert.doesNotMatch(inside, /clang|make|tsc|\bnpm\b/);
    assert.doesNotMatch(inside, /typescript|vitest|eslint|@aws-cdk/);
    assert.match(docker.docker(['run', '--rm', '--network=none', IMAGE, 'version']), /^egressguard \d+\.\d+\.\d+/m);
    assert.equal(docker.docker(['image', 'inspect', '--format', '{{.Config.User}}', IMAGE]).trim(), '0:0');
  });

  test("the agent's container holds exactly the chart's capabilities", async () => {
    const result = await lab.runInNode(inImage(['sh', '-c', 'grep -E "^Cap(Eff|Bnd):" /proc/self/status']), { timeoutMs: 60_000 });
    assert.equal(result.code, 0, result.stderr);
    const expected = Object.values(CHART_CAPABILITIES).reduce((mask, bit) => mask | (1n << BigInt(bit)), 0n);
    for (const line of result.stdout.trim().split('\n')) assert.equal(BigInt(`0x${line.split(/\s+/)[1]}`), expected, line);
  });

  test('calibration: without the agent, the pod reaches both destinations (IPv4 and IPv6)', async () => {
    for (const ip of [WEBHOOK.ipv4, WEBHOOK.ipv6, HTTPBIN.ipv4, HTTPBIN.ipv6]) assert.equal((await connect(ip)).ok, true, ip);
    await lab.waitForServerRecords(
      'calibration connections to webhook.site',
      (r) => r.host === WEBHOOK.name && r.remote === lab.pod(POD.pod).ipv6,
    );
  });

  test('run from the image with the chart capabilities, the agent enforces: allowed passes, denied gets zero bytes', async () => {
    agent = new LabAgent(lab, { workloads: [POD], mode: 'enforce', agentCommand: inImage(['node', '/app/dist/src/cli/main.js']) });
    // cgroup paths relative to the cgroup2 mount, which the container has at /sys/fs/cgroup.
    const cgroup2 = findCgroup2Mount()!;
    agent.editConfig((config) => {
      config.attachCgroup = relative(cgroup2, config.attachCgroup as string);
      for (const workload of config.workloads as { cgroup: string }[]) workload.cgroup = relative(cgroup2, workload.cgroup);
    });
    agent.writePolicy('image-policy.yaml', POLICY);
    await agent.start(120_000);
    await agent.waitForPolicies(['image-policy']);
    const deniedBefore = (await recordsFrom(WEBHOOK.name)).length;

    for (const ip of [HTTPBIN.ipv4, HTTPBIN.ipv6]) assert.equal((await connect(ip)).ok, true, `allowed ${ip}`);
    await lab.waitForServerRecords(
      'the allowed connection over IPv6',
      (r) => r.host === HTTPBIN.name && r.remote === lab.pod(POD.pod).ipv6,
    );
    for (const ip of [WEBHOOK.ipv4, WEBHOOK.ipv6]) assert.equal((await connect(ip)).error, 'EPERM', `denied ${ip}`);

    // The allowed records above were written after any denied one could have been: none arrived.
    assert.equal((await recordsFrom(WEBHOOK.name)).length, deniedBefore, 'the denied destination received nothing');
    await agent.waitFor('the deny events', () =>
      agent!.events().some((e) => e.verdict === 'denied' && e.destination.ip === WEBHOOK.ipv6 && e.rule === 'deny-all-external'),
    );
  });

  test("stopping the container keeps enforcement (a rolling update); the image's teardown leaves the node clean", async () => {
    await agent!.stop();
    assert.equal((await connect(WEBHOOK.ipv4)).error, 'EPERM', 'the pinned programs keep denying');
    const teardown = await lab.runInNode(inImage(['egressguard', 'teardown', '--pin-dir', lab.pinDir]), { timeoutMs: 60_000 });
    assert.equal(teardown.code, 0, teardown.stderr);
    assert.match(teardown.stdout, /enforcement has ended and this node carries no egressguard state/);
    assert.equal((await connect(WEBHOOK.ipv4)).ok, true);
  });
});

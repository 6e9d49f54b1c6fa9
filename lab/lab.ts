// A containment lab on one host, built from network namespaces and cgroups, for the integration tests, the benchmarks
// and `egressguard demo`. Every name carries the caller's prefix; only 198.18.0.0/15 and fd00:eb::/32 are used; the
// host's own network namespace is never configured (interfaces are created directly inside the lab's namespaces).
//
//   pod netns <prefix>-p<i>  --veth-->  node netns <prefix>-node  --veth-->  inet netns <prefix>-inet
//   eth0 198.18.(10+i).2              forwarding on, DNS proxy        dnsmasq (resolver + alternate),
//                                      addresses on its lo            test servers on every host address (lo)
//
// With `services: false` the lab is the network alone (namespaces, veths, cgroups, pins, cleanup): the datapath tests
// load the programs themselves and start their own servers in inet with serve().
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { destroyPinned } from '../src/datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../src/datapath/mounts.js';
import { loadNative } from '../src/datapath/native.js';
import { createLabPki, type LabPki } from './certs.js';
import { collect, mustRun, run, type RunResult } from './exec.js';
import type { InternetServerConfig, ServerRecord } from './internet-server.js';
import type { ProbeResult } from './probe-result.js';

export interface LabHost {
  /** FQDN the lab resolvers answer for. */
  name: string;
  /** Must be inside 198.18.100.0/24. */
  ipv4: string;
  /** Must be inside fd00:eb:100::/64. */
  ipv6: string;
  /** TTL of the resolvers' answers, seconds. */
  ttl: number;
}

export const DEFAULT_LAB_HOSTS: readonly LabHost[] = [
  { name: 'api.openai.com', ipv4: '198.18.100.10', ipv6: 'fd00:eb:100::10', ttl: 60 },
  { name: 'httpbin.org', ipv4: '198.18.100.20', ipv6: 'fd00:eb:100::20', ttl: 60 },
  { name: 'webhook.site', ipv4: '198.18.100.30', ipv6: 'fd00:eb:100::30', ttl: 60 },
  { name: 'attacker.example', ipv4: '198.18.100.66', ipv6: 'fd00:eb:100::66', ttl: 60 },
];

/** Fixed lab addresses. The DNS proxy addresses live in the node netns, the resolvers in inet. */
/** Under each wildcard domain, the zone the lab resolvers never answer (names that stay in flight). */
export const LAB_UNANSWERED_LABEL = 'unanswered';

export const LAB_ADDRESSES = {
  dnsProxy: { ipv4: '198.18.0.53', ipv6: 'fd00:eb::53' },
  resolver: { ipv4: '198.18.100.53', ipv6: 'fd00:eb:100::53' },
  alternateResolver: { ipv4: '198.18.100.99', ipv6: 'fd00:eb:100::99' },
} as const;

export const LAB_TCP_PORTS: readonly number[] = [80, 8443];
export const LAB_UDP_PORTS: readonly number[] = [443, 9999];
/** Real TLS (certificate chosen by SNI, lab CA) on every host address. */
export const LAB_TLS_PORT = 443;
/** TLS that swallows what the client sends and reports the byte count: for throughput benchmarks. */
export const LAB_TLS_SINK_PORT = 4444;

export interface LabOptions {
  /** Unique, short: [a-z][a-z0-9]{1,9} (interface names must stay within 15 characters). */
  prefix: string;
  /** Pod names, [a-z0-9-], at most 90 pods (Lab.addPod adds more later). Pod i gets 198.18.(10+i).2 and fd00:eb:(10+i)::2. */
  pods: string[];
  hosts?: readonly LabHost[];
  /**
   * Host names (from `hosts`) whose every subdomain resolves to that host's addresses, except the subdomains of
   * `${LAB_UNANSWERED_LABEL}.<name>`, which the resolvers forward to a dead port and never answer. Default:
   * attacker.example when present.
   */
  wildcardDomains?: string[];
  /** Internet addresses without a name (see Lab.inet): 198.18.100.<n> and fd00:eb:100::<n> for each n. */
  unnamedHosts?: number[];
  /** Resolvers, the internet server and the lab CA (default true). Without them the lab is the network alone. */
  services?: boolean;
  /** More cgroups under the attach cgroup, relative to it and parents first (e.g. `<pod>/container`, `other`). */
  extraCgroups?: string[];
}

export interface LabPod {
  name: string;
  index: number;
  netns: string;
  netnsPath: string;
  /** cgroup v2 directory of the pod (a child of Lab.attachCgroup, unless given to Lab.addPod). */
  cgroupPath: string;
  ipv4: string;
  ipv6: string;
  /** Node-side end of the pod's veth: the pod's default gateway. */
  gatewayIpv4: string;
  gatewayIpv6: string;
  /** Name of the node-side veth interface (in the node netns). */
  nodeInterface: string;
  resolvConfPath: string;
  hostsPath: string;
}

export interface LabSpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** Default 'ignore': an unread pipe would eventually block a chatty program such as the agent. */
  stdio?: StdioOptions;
  /** Pods only: the cgroup directory to run in instead of the pod's own (e.g. one of LabOptions.extraCgroups). */
  cgroup?: string;
}

export interface LabRunOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Pods only: as LabSpawnOptions.cgroup. */
  cgroup?: string;
}

export interface ResolverQuery {
  resolver: 'primary' | 'alternate';
  type: string;
  name: string;
  from: string;
}

type ResolverRole = ResolverQuery['resolver'];

const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,9}$/;
const POD_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const HOST_NAME_PATTERN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
const MAX_PODS = 90;
const WORKDIR_PREFIX = 'egressguard-lab-';
const NETNS_DIR = '/run/netns';
const LAB_NETNS_PATTERN = /^([a-z][a-z0-9]{1,9})-(node|inet|p\d{1,2})$/;
const HERE = fileURLToPath(new URL('.', import.meta.url));
const INTERNET_SERVER_SCRIPT = join(HERE, 'internet-server.js');
export const PROBE_SCRIPT = join(HERE, 'probe.js');

// Runs inside the pod's own mount namespace: point the resolver and hosts files at the pod's copies, join the pod's
// cgroup, then become the requested program (same PID throughout, so the PID we track is the program's).
const POD_ENTRY_SCRIPT = 'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && echo $$ > "$3" && shift 3 && exec "$@"';

/** Address <host> of the lab internet's 198.18.100.0/24 and fd00:eb:100::/64 (the named hosts use the same scheme). */
function internetAddress(host: number, family: 4 | 6): string {
  return family === 4 ? `198.18.100.${host}` : `fd00:eb:100::${host}`;
}

interface ValidatedOptions {
  hosts: LabHost[];
  wildcardDomains: string[];
  unnamedHosts: number[];
  extraCgroups: string[];
}

function validateOptions(options: LabOptions): ValidatedOptions {
  if (!PREFIX_PATTERN.test(options.prefix)) {
    throw new Error(`lab prefix "${options.prefix}" must match ${PREFIX_PATTERN} (interface names are limited to 15 characters)`);
  }
  if (options.pods.length > MAX_PODS) {
    throw new Error(`a lab has at most ${MAX_PODS} pods, got ${options.pods.length}`);
  }
  const seenPods = new Set<string>();
  for (const pod of options.pods) {
    if (!POD_NAME_PATTERN.test(pod)) throw new Error(`pod name "${pod}" must be lowercase letters, digits and '-' (at most 63)`);
    if (seenPods.has(pod)) throw new Error(`pod name "${pod}" is used twice`);
    seenPods.add(pod);
  }
  const inetV4 = new BlockList();
  inetV4.addSubnet('198.18.100.0', 24, 'ipv4');
  const inetV6 = new BlockList();
  inetV6.addSubnet('fd00:eb:100::', 64, 'ipv6');
  const reserved = new BlockList();
  for (const role of [LAB_ADDRESSES.resolver, LAB_ADDRESSES.alternateResolver]) {
    reserved.addAddress(role.ipv4, 'ipv4');
    reserved.addAddress(role.ipv6, 'ipv6');
  }
  const hosts = [...(options.hosts ?? DEFAULT_LAB_HOSTS)];
  const seenAddresses = new Set<string>();
  for (const host of hosts) {
    if (!HOST_NAME_PATTERN.test(host.name)) throw new Error(`lab host name "${host.name}" is not a lowercase FQDN`);
    if (!isIPv4(host.ipv4) || !inetV4.check(host.ipv4, 'ipv4') || reserved.check(host.ipv4, 'ipv4')) {
      throw new Error(`lab host ${host.name}: ipv4 ${host.ipv4} must be in 198.18.100.0/24 and not a resolver address`);
    }
    if (!isIPv6(host.ipv6) || !inetV6.check(host.ipv6, 'ipv6') || reserved.check(host.ipv6, 'ipv6')) {
      throw new Error(`lab host ${host.name}: ipv6 ${host.ipv6} must be in fd00:eb:100::/64 and not a resolver address`);
    }
    if (!Number.isInteger(host.ttl) || host.ttl < 0) throw new Error(`lab host ${host.name}: ttl must be a non-negative integer`);
    for (const address of [host.ipv4, host.ipv6]) {
      if (seenAddresses.has(address)) throw new Error(`lab host ${host.name}: address ${address} is used twice`);
      seenAddresses.add(address);
    }
  }
  const hostNames = new Set(hosts.map((host) => host.name));
  const wildcardDomains = options.wildcardDomains ?? (hostNames.has('attacker.example') ? ['attacker.example'] : []);
  for (const domain of wildcardDomains) {
    if (!hostNames.has(domain)) throw new Error(`wildcard domain "${domain}" must be one of the lab hosts`);
  }
  const unnamedHosts = [...(options.unnamedHosts ?? [])];
  for (const host of unnamedHosts) {
    const address = Number.isInteger(host) && host >= 1 && host <= 254 ? internetAddress(host, 4) : null;
    if (address === null || reserved.check(address, 'ipv4'))
      throw new Error(`unnamed lab host ${host} must be 1-254 and not a resolver address`);
    if (seenAddresses.has(address)) throw new Error(`unnamed lab host ${host}: address ${address} is used twice`);
    seenAddresses.add(address);
  }
  const extraCgroups = [...(options.extraCgroups ?? [])];
  for (const cgroup of extraCgroups) {
    if (!/^[a-z0-9-]+(\/[a-z0-9-]+)*$/.test(cgroup)) throw new Error(`extra cgroup "${cgroup}" must be a relative path of [a-z0-9-] names`);
  }
  return { hosts, wildcardDomains, unnamedHosts, extraCgroups };
}

function cgroup2Root(): string {
  const mount = findCgroup2Mount();
  if (mount === null) throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts): the lab needs cgroup v2');
  return mount;
}

function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

function ipIn(netns: string, args: string): Promise<string> {
  return mustRun(['ip', '-n', netns, ...args.split(' ')]);
}

/** Set sysctls of one netns (the writer's netns decides which /proc/sys/net it changes: never the host's here). */
function sysctlIn(netns: string, settings: string[]): Promise<string> {
  return mustRun(['nsenter', `--net=${netnsPath(netns)}`, '--', 'sysctl', '-qw', ...settings]);
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** SIGKILL every PID in a newline-separated list (cgroup.procs, `ip netns pids`); vanished ones are fine. */
function killListedPids(list: string): void {
  for (const pid of list.split('\n').map(Number)) {
    if (!(pid > 0)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Kill every process still in a netns we own (e.g. dnsmasq's TCP children): they can only be ours. */
async function killNetnsProcesses(netns: string): Promise<void> {
  killListedPids((await run(['ip', 'netns', 'pids', netns])).stdout);
}

/** Remove a cgroup directory, killing what still runs in it first (retrying while the killed tasks leave). */
export async function removeCgroup(path: string): Promise<void> {
  if (!existsSync(path)) return;
  // Everything left in a lab cgroup was started inside the lab: end it so the directory can go.
  if (existsSync(join(path, 'cgroup.kill'))) await writeFile(join(path, 'cgroup.kill'), '1');
  else killListedPids(await readFile(join(path, 'cgroup.procs'), 'utf8'));
  // A killed task leaves the cgroup asynchronously: retry EBUSY for a short while.
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(path);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function waitForLine(child: ChildProcess, expected: string, what: string, timeoutMs = 10_000): Promise<void> {
  let output = '';
  let errors = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not print "${expected}" within ${timeoutMs} ms: ${errors}`)), timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (output.split('\n').includes(expected)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready: ${errors.trim()}`));
    });
  });
}

export class Lab {
  readonly nodeNetns: string;
  readonly inetNetns: string;
  /** cgroup v2 directory the agent attaches to; every pod cgroup is a child of it. */
  readonly attachCgroup: string;
  /** Where the lab's datapath (the agent's, or a test's own) pins its programs and maps; destroy() removes what is left. */
  readonly pinDir: string;
  readonly pods: LabPod[] = [];
  readonly addresses = LAB_ADDRESSES;
  private readonly createdNetns: string[] = [];
  private readonly createdCgroups: string[] = [];
  private readonly processes = new Set<ChildProcess>();
  private workDirPath: string | null = null;
  private nextPodIndex = 0;
  private pki: LabPki | null = null;
  private teardown: Promise<void> | null = null;

  private constructor(
    readonly prefix: string,
    readonly hosts: readonly LabHost[],
    private readonly wildcardDomains: readonly string[],
    private readonly unnamedHosts: readonly number[],
    cgroup2Mount: string,
  ) {
    this.nodeNetns = `${prefix}-node`;
    this.inetNetns = `${prefix}-inet`;
    this.attachCgroup = join(cgroup2Mount, prefix);
    this.pinDir = join(ensureBpffs(), `egressguard-${prefix}`);
  }

  /** Build the lab. On any failure everything created so far is removed before the error is rethrown. */
  static async create(options: LabOptions): Promise<Lab> {
    const { hosts, wildcardDomains, unnamedHosts, extraCgroups } = validateOptions(options);
    const lab = new Lab(options.prefix, hosts, wildcardDomains, unnamedHosts, cgroup2Root());
    for (const name of [lab.nodeNetns, lab.inetNetns]) {
      if (existsSync(netnsPath(name))) throw new Error(`network namespace ${name} already exists: pick another lab prefix`);
    }
    if (existsSync(lab.attachCgroup)) throw new Error(`cgroup ${lab.attachCgroup} already exists: pick another lab prefix`);
    if (existsSync(lab.pinDir)) throw new Error(`pin directory ${lab.pinDir} already exists: pick another lab prefix`);
    const services = options.services ?? true;
    try {
      lab.workDirPath = await mkdtemp(join(tmpdir(), `${WORKDIR_PREFIX}${lab.prefix}-`));
      if (services) lab.pki = await createLabPki(lab.workDirPath, hosts);
      await lab.buildNode();
      await lab.buildInternet();
      if (services) {
        await lab.startResolvers();
        await lab.startInternetServer();
      }
      await lab.addCgroup(lab.attachCgroup);
      for (const [index, name] of options.pods.entries()) await lab.buildPod(name, index);
      for (const relative of extraCgroups) await lab.addCgroup(join(lab.attachCgroup, relative));
      return lab;
    } catch (error) {
      await lab.destroy().catch((cleanupError: unknown) => {
        throw new AggregateError([error, cleanupError], `lab create failed and cleanup failed too: ${String(error)}`);
      });
      throw error;
    }
  }

  /**
   * Remove leftovers of crashed runs whose prefix matches `prefixPattern` (tested against the bare prefix): netns
   * named <prefix>-node|inet|p<N>, the cgroup <cgroup2>/<prefix> and its children, temp dirs. Processes are only
   * killed for prefixes that still have a lab netns or temp dir; other matching cgroups are removed only when empty.
   */
  static async cleanupStale(prefixPattern: RegExp): Promise<string[]> {
    const removed: string[] = [];
    const matches = (prefix: string): boolean => PREFIX_PATTERN.test(prefix) && prefixPattern.test(prefix);
    const labPrefixes = new Set<string>();
    const netnsNames = existsSync(NETNS_DIR) ? await readdir(NETNS_DIR) : [];
    for (const name of netnsNames) {
      const prefix = LAB_NETNS_PATTERN.exec(name)?.[1];
      if (prefix === undefined || !matches(prefix)) continue;
      labPrefixes.add(prefix);
      await killNetnsProcesses(name);
      await mustRun(['ip', 'netns', 'delete', name]);
      removed.push(`netns ${name}`);
    }
    for (const entry of await readdir(tmpdir())) {
      const prefix = entry.startsWith(WORKDIR_PREFIX) ? entry.slice(WORKDIR_PREFIX.length).split('-')[0] : undefined;
      if (prefix === undefined || !matches(prefix)) continue;
      labPrefixes.add(prefix);
      await rm(join(tmpdir(), entry), { recursive: true, force: true });
      removed.push(`dir ${join(tmpdir(), entry)}`);
    }
    const cgroup2Mount = cgroup2Root();
    for (const entry of await readdir(cgroup2Mount, { withFileTypes: true })) {
      if (!entry.isDirectory() || !matches(entry.name)) continue;
      const root = join(cgroup2Mount, entry.name);
      const children = (await readdir(root, { withFileTypes: true })).filter((child) => child.isDirectory());
      const paths = [...children.map((child) => join(root, child.name)), root];
      try {
        if (labPrefixes.has(entry.name)) for (const path of paths) await removeCgroup(path);
        else for (const path of paths) await rmdir(path);
        removed.push(`cgroup ${root}`);
      } catch {
        // A matching cgroup that is not provably ours and still in use stays untouched.
      }
    }
    return removed;
  }

  get workDir(): string {
    if (this.workDirPath === null) throw new Error('lab has no work directory (destroyed?)');
    return this.workDirPath;
  }

  /** PEM file of the lab CA that signed every lab server certificate (pass to `probe tls --ca`). */
  get caPath(): string {
    if (this.pki === null) throw new Error('lab has no CA (created with services: false, or destroyed)');
    return this.pki.caPath;
  }

  /** Address <host> of the lab internet (a named host's or one of LabOptions.unnamedHosts). */
  inet(host: number, family: 4 | 6): string {
    return internetAddress(host, family);
  }

  private get serverLogPath(): string {
    return join(this.workDir, 'server-log.jsonl');
  }

  /** Everything the lab internet server has recorded so far (see ServerRecord), oldest first. */
  async serverLog(): Promise<ServerRecord[]> {
    const text = await readFile(this.serverLogPath, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as ServerRecord);
  }

  /**
   * Wait until the server log holds a record matching `predicate` and return the matches. TCP/TLS records are written
   * when the connection closes, which can lag the client's view by a moment; use serverLog() to assert absence.
   */
  async waitForServerRecords(what: string, predicate: (record: ServerRecord) => boolean, timeoutMs = 10_000): Promise<ServerRecord[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const matches = (await this.serverLog()).filter(predicate);
      if (matches.length > 0) return matches;
      if (Date.now() > deadline) throw new Error(`the lab server recorded no ${what} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  pod(name: string): LabPod {
    const pod = this.pods.find((candidate) => candidate.name === name);
    if (pod === undefined) throw new Error(`no pod "${name}" in lab ${this.prefix} (pods: ${this.pods.map((p) => p.name).join(', ')})`);
    return pod;
  }

  /**
   * Start argv inside the pod: its netns, its cgroup, and a private mount namespace where /etc/resolv.conf and
   * /etc/hosts are the pod's files. The returned child's PID is the program's own PID.
   */
  spawnInPod(pod: LabPod | string, argv: readonly string[], options: LabSpawnOptions = {}): ChildProcess {
    const target = typeof pod === 'string' ? this.pod(pod) : pod;
    return this.spawnTracked(
      [
        'nsenter',
        `--net=${target.netnsPath}`,
        '--',
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        POD_ENTRY_SCRIPT,
        'sh',
        target.resolvConfPath,
        target.hostsPath,
        join(options.cgroup ?? target.cgroupPath, 'cgroup.procs'),
        ...argv,
      ],
      options,
    );
  }

  runInPod(pod: LabPod | string, argv: readonly string[], options: LabRunOptions = {}): Promise<RunResult> {
    const child = this.spawnInPod(pod, argv, { env: options.env, cgroup: options.cgroup, stdio: ['pipe', 'pipe', 'pipe'] });
    return collect(child, options.timeoutMs ?? 10_000, options.input);
  }

  /** Run a Node script (`node -e`) in the pod with EG_ARGS set to `args` as JSON, and parse the JSON it prints. */
  async runScriptInPod<T>(pod: LabPod | string, script: string, args: unknown, options: { cgroup?: string } = {}): Promise<T> {
    const env = { ...process.env, EG_ARGS: JSON.stringify(args) };
    const result = await this.runInPod(pod, [process.execPath, '-e', script], { env, cgroup: options.cgroup });
    try {
      return JSON.parse(result.stdout) as T;
    } catch {
      throw new Error(
        `pod script printed ${JSON.stringify(result.stdout)} (exit ${result.code ?? result.signal}); stderr: ${result.stderr}`,
      );
    }
  }

  /** Start a Node script (`node -e`) in inet with extra environment; resolves once it prints a line "ready". */
  async serve(script: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
    const child = this.spawnInInternet([process.execPath, '-e', script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForLine(child, 'ready', 'lab internet script');
    return child;
  }

  /** Start argv in the inet netns (where the lab's servers live), with the host's mounts and cgroup. */
  spawnInInternet(argv: readonly string[], options: LabSpawnOptions = {}): ChildProcess {
    return this.spawnTracked(['nsenter', `--net=${netnsPath(this.inetNetns)}`, '--', ...argv], options);
  }

  /** Start argv in the node netns (where the agent lives), with the host's mounts and cgroup. */
  spawnInNode(argv: readonly string[], options: LabSpawnOptions = {}): ChildProcess {
    return this.spawnTracked(['nsenter', `--net=${netnsPath(this.nodeNetns)}`, '--', ...argv], options);
  }

  runInNode(argv: readonly string[], options: LabRunOptions = {}): Promise<RunResult> {
    const child = this.spawnInNode(argv, { env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
    return collect(child, options.timeoutMs ?? 10_000, options.input);
  }

  /** Run the probe CLI (lab/probe.ts) inside a pod and parse its JSON line. */
  async probe(pod: LabPod | string, args: readonly string[], timeoutMs = 15_000): Promise<ProbeResult> {
    const result = await this.runInPod(pod, [process.execPath, PROBE_SCRIPT, ...args], { timeoutMs });
    const line = result.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as ProbeResult;
    } catch {
      throw new Error(`probe ${args.join(' ')} printed no JSON (exit ${result.code ?? result.signal}): ${result.stderr.trim()}`);
    }
  }

  /** Every query that reached a lab resolver, in order, parsed from dnsmasq's query log. */
  async resolverQueryLog(): Promise<ResolverQuery[]> {
    const queries: ResolverQuery[] = [];
    for (const resolver of ['primary', 'alternate'] as const) {
      const text = await readFile(this.resolverLogPath(resolver), 'utf8').catch(() => '');
      for (const match of text.matchAll(/ query\[([A-Za-z0-9]+)\] (\S+) from (\S+)/g)) {
        queries.push({ resolver, type: match[1] as string, name: match[2] as string, from: match[3] as string });
      }
    }
    return queries;
  }

  /** Names queried at the lab resolvers (both, unless one is named). */
  async resolverQueries(resolver?: ResolverRole): Promise<string[]> {
    const log = await this.resolverQueryLog();
    return log.filter((query) => resolver === undefined || query.resolver === resolver).map((query) => query.name);
  }

  /** Kill the lab's processes, delete its netns and cgroups, remove its files. Idempotent; safe after a failed create. */
  destroy(): Promise<void> {
    this.teardown ??= this.removeEverything();
    return this.teardown;
  }

  private async removeEverything(): Promise<void> {
    const failures: unknown[] = [];
    const attempt = async (step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (error) {
        failures.push(error);
      }
    };
    await Promise.all([...this.processes].map((child) => attempt(() => killAndWait(child))));
    // Pins left by a datapath that was not torn down: detach its programs (tc filters live in the node netns) first.
    if (existsSync(this.pinDir)) await attempt(async () => void destroyPinned(loadNative(), this.pinDir, netnsPath(this.nodeNetns)));
    for (const path of [...this.createdCgroups].reverse()) await attempt(() => removeCgroup(path));
    for (const name of [...this.createdNetns].reverse()) {
      await attempt(async () => {
        await killNetnsProcesses(name);
        await mustRun(['ip', 'netns', 'delete', name]);
      });
    }
    if (this.workDirPath !== null) {
      const path = this.workDirPath;
      await attempt(() => rm(path, { recursive: true, force: true }));
      this.workDirPath = null;
    }
    if (failures.length > 0) throw new AggregateError(failures, `lab ${this.prefix}: cleanup incomplete`);
  }

  private spawnTracked(argv: readonly string[], options: LabSpawnOptions): ChildProcess {
    if (this.teardown !== null) throw new Error(`lab ${this.prefix} is destroyed`);
    const [command, ...args] = argv as [string, ...string[]];
    // Lab programs trust the lab CA (Node reads NODE_EXTRA_CA_CERTS), whatever the caller's environment says.
    const env = { ...(options.env ?? process.env), NODE_EXTRA_CA_CERTS: this.pki?.caPath };
    const child = spawn(command, args, { env, stdio: options.stdio ?? 'ignore' });
    this.processes.add(child);
    child.once('exit', () => this.processes.delete(child));
    child.once('error', () => this.processes.delete(child));
    return child;
  }

  /** Create a cgroup (parents first) that destroy() removes, killing what still runs in it. */
  async addCgroup(path: string): Promise<void> {
    await mkdir(path);
    this.createdCgroups.push(path);
  }

  private async addNetns(name: string, extraSysctls: string[]): Promise<void> {
    await mustRun(['ip', 'netns', 'add', name]);
    this.createdNetns.push(name);
    // No DAD: addresses are usable the moment they are added.
    await sysctlIn(name, ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', ...extraSysctls]);
    await ipIn(name, 'link set lo up');
  }

  private async buildNode(): Promise<void> {
    await this.addNetns(this.nodeNetns, ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // Local addresses go on lo: no dependency on the dummy module (often absent on minimal kernels).
    await ipIn(this.nodeNetns, `addr add ${LAB_ADDRESSES.dnsProxy.ipv4}/32 dev lo`);
    await ipIn(this.nodeNetns, `addr add ${LAB_ADDRESSES.dnsProxy.ipv6}/128 dev lo nodad`);
  }

  private async buildInternet(): Promise<void> {
    await this.addNetns(this.inetNetns, []);
    const nodeSide = `${this.prefix}-wan`;
    const inetSide = `${this.prefix}-gw`;
    await ipIn(this.nodeNetns, `link add ${nodeSide} type veth peer name ${inetSide} netns ${this.inetNetns}`);
    await ipIn(this.nodeNetns, `addr add 198.18.2.1/24 dev ${nodeSide}`);
    await ipIn(this.nodeNetns, `addr add fd00:eb:2::1/64 dev ${nodeSide} nodad`);
    await ipIn(this.nodeNetns, `link set ${nodeSide} up`);
    await ipIn(this.inetNetns, `addr add 198.18.2.2/24 dev ${inetSide}`);
    await ipIn(this.inetNetns, `addr add fd00:eb:2::2/64 dev ${inetSide} nodad`);
    await ipIn(this.inetNetns, `link set ${inetSide} up`);
    await ipIn(this.nodeNetns, `route add 198.18.100.0/24 via 198.18.2.2 dev ${nodeSide}`);
    await ipIn(this.nodeNetns, `-6 route add fd00:eb:100::/64 via fd00:eb:2::2 dev ${nodeSide}`);
    await ipIn(this.inetNetns, `route add 198.18.0.0/15 via 198.18.2.1 dev ${inetSide}`);
    await ipIn(this.inetNetns, `-6 route add fd00:eb::/32 via fd00:eb:2::1 dev ${inetSide}`);
    const unnamedV4 = this.unnamedHosts.map((host) => internetAddress(host, 4));
    const unnamedV6 = this.unnamedHosts.map((host) => internetAddress(host, 6));
    const v4 = [...this.hosts.map((host) => host.ipv4), ...unnamedV4, LAB_ADDRESSES.resolver.ipv4, LAB_ADDRESSES.alternateResolver.ipv4];
    const v6 = [...this.hosts.map((host) => host.ipv6), ...unnamedV6, LAB_ADDRESSES.resolver.ipv6, LAB_ADDRESSES.alternateResolver.ipv6];
    for (const address of v4) await ipIn(this.inetNetns, `addr add ${address}/32 dev lo`);
    for (const address of v6) await ipIn(this.inetNetns, `addr add ${address}/128 dev lo nodad`);
  }

  private resolverLogPath(resolver: ResolverRole): string {
    return join(this.workDir, `dnsmasq-${resolver}.log`);
  }

  /** Two real dnsmasq instances in inet, authoritative for the lab hosts, logging every query they receive. */
  private async startResolvers(): Promise<void> {
    const records = this.hosts.map((host) => `--host-record=${host.name},${host.ipv4},${host.ipv6},${host.ttl}`);
    const wildcardOptions = this.wildcardDomains.flatMap((domain) => {
      const host = this.hosts.find((candidate) => candidate.name === domain) as LabHost;
      // Nothing listens on port 9 of the resolvers' namespace: forwarded there, a query is never answered.
      const unanswered = `--server=/${LAB_UNANSWERED_LABEL}.${domain}/127.0.0.1#9`;
      return [`--address=/${domain}/${host.ipv4}`, `--address=/${domain}/${host.ipv6}`, unanswered];
    });
    const wildcardTtls = this.hosts.filter((host) => this.wildcardDomains.includes(host.name)).map((host) => host.ttl);
    if (wildcardTtls.length > 0) wildcardOptions.push(`--local-ttl=${Math.min(...wildcardTtls)}`);
    for (const resolver of ['primary', 'alternate'] as const) {
      const addresses = resolver === 'primary' ? LAB_ADDRESSES.resolver : LAB_ADDRESSES.alternateResolver;
      const logPath = this.resolverLogPath(resolver);
      const child = this.spawnInInternet(
        [
          '/usr/sbin/dnsmasq',
          '--keep-in-foreground',
          '--conf-file=/dev/null',
          '--no-resolv',
          '--no-hosts',
          '--bind-interfaces',
          `--listen-address=${addresses.ipv4},${addresses.ipv6}`,
          '--port=53',
          '--user=root',
          '--pid-file',
          '--log-queries',
          // Authoritative for everything: names that are not lab hosts get NXDOMAIN, as from a real resolver.
          '--local=/#/',
          `--log-facility=${logPath}`,
          ...records,
          ...wildcardOptions,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      await this.waitForResolver(child, logPath, resolver);
    }
  }

  private async waitForResolver(child: ChildProcess, logPath: string, resolver: ResolverRole): Promise<void> {
    let errors = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
    for (let attempt = 0; attempt < 250; attempt++) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`dnsmasq (${resolver} resolver) exited (${child.exitCode ?? child.signalCode}): ${errors.trim()}`);
      }
      // dnsmasq logs "started" once its sockets are bound.
      if ((await readFile(logPath, 'utf8').catch(() => '')).includes('started, version')) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`dnsmasq (${resolver} resolver) did not start within 5 s: ${errors.trim()}`);
  }

  private async startInternetServer(): Promise<void> {
    const config: InternetServerConfig = {
      hosts: this.hosts.map((host) => ({ name: host.name, addresses: [host.ipv4, host.ipv6] })),
      tcpPorts: [...LAB_TCP_PORTS],
      udpPorts: [...LAB_UDP_PORTS],
      tls: { port: LAB_TLS_PORT, sinkPort: LAB_TLS_SINK_PORT, certificates: [...(this.pki as LabPki).certificates.values()] },
      logPath: this.serverLogPath,
    };
    const configPath = join(this.workDir, 'internet-server.json');
    await writeFile(configPath, JSON.stringify(config));
    const child = this.spawnInInternet([process.execPath, INTERNET_SERVER_SCRIPT, configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForLine(child, 'ready', 'lab internet server');
  }

  /**
   * Static neighbour entries on both ends of a pod's veth: no ARP/NDP is ever needed between pod and node, so a
   * packet-socket probe knows the gateway MAC up front and enforcement tests never depend on neighbour discovery.
   */
  private async pinNeighbours(pod: LabPod): Promise<void> {
    const macOf = async (netns: string, device: string): Promise<string> => {
      const [link] = JSON.parse(await ipIn(netns, `-j link show dev ${device}`)) as { address: string }[];
      if (link === undefined) throw new Error(`no link ${device} in ${netns}`);
      return link.address;
    };
    const gatewayMac = await macOf(this.nodeNetns, pod.nodeInterface);
    const podMac = await macOf(pod.netns, 'eth0');
    for (const gateway of [pod.gatewayIpv4, pod.gatewayIpv6]) {
      await ipIn(pod.netns, `neigh replace ${gateway} lladdr ${gatewayMac} dev eth0 nud permanent`);
    }
    for (const address of [pod.ipv4, pod.ipv6]) {
      await ipIn(this.nodeNetns, `neigh replace ${address} lladdr ${podMac} dev ${pod.nodeInterface} nud permanent`);
    }
  }

  /**
   * Add a pod to a running lab, laid out as those of LabOptions.pods. With `cgroupPath` the pod's programs run in that
   * cgroup, which the caller creates (Lab.addCgroup) when it chooses: the Kubernetes harness lays cgroups out as kubelet.
   */
  async addPod(name: string, options: { cgroupPath?: string } = {}): Promise<LabPod> {
    if (!POD_NAME_PATTERN.test(name)) throw new Error(`pod name "${name}" must be lowercase letters, digits and '-' (at most 63)`);
    if (this.pods.some((pod) => pod.name === name)) throw new Error(`pod name "${name}" is used twice`);
    if (this.nextPodIndex >= MAX_PODS) throw new Error(`lab ${this.prefix} has used all ${MAX_PODS} pod addresses`);
    return this.buildPod(name, this.nextPodIndex, options.cgroupPath);
  }

  /** Remove a pod's network as a CNI DEL does: its processes end, its netns and veth pair go. Its cgroup stays. */
  async removePod(name: string): Promise<void> {
    const pod = this.pod(name);
    await killNetnsProcesses(pod.netns);
    await mustRun(['ip', 'netns', 'delete', pod.netns]);
    this.createdNetns.splice(this.createdNetns.indexOf(pod.netns), 1);
    this.pods.splice(this.pods.indexOf(pod), 1);
  }

  private async buildPod(name: string, index: number, cgroupPath?: string): Promise<LabPod> {
    this.nextPodIndex = index + 1;
    const subnet = 10 + index;
    const pod: LabPod = {
      name,
      index,
      netns: `${this.prefix}-p${index}`,
      netnsPath: netnsPath(`${this.prefix}-p${index}`),
      cgroupPath: cgroupPath ?? join(this.attachCgroup, name),
      ipv4: `198.18.${subnet}.2`,
      ipv6: `fd00:eb:${subnet}::2`,
      gatewayIpv4: `198.18.${subnet}.1`,
      gatewayIpv6: `fd00:eb:${subnet}::1`,
      nodeInterface: `${this.prefix}-p${index}`,
      resolvConfPath: join(this.workDir, `${name}.resolv.conf`),
      hostsPath: join(this.workDir, `${name}.hosts`),
    };
    // Any group may open ICMP datagram ("ping") sockets, so tests can send echoes without a raw socket.
    await this.addNetns(pod.netns, ['net.ipv4.ping_group_range=0 2147483647']);
    await ipIn(this.nodeNetns, `link add ${pod.nodeInterface} type veth peer name eth0 netns ${pod.netns}`);
    await ipIn(this.nodeNetns, `addr add ${pod.gatewayIpv4}/24 dev ${pod.nodeInterface}`);
    await ipIn(this.nodeNetns, `addr add ${pod.gatewayIpv6}/64 dev ${pod.nodeInterface} nodad`);
    await ipIn(this.nodeNetns, `link set ${pod.nodeInterface} up`);
    await ipIn(pod.netns, `addr add ${pod.ipv4}/24 dev eth0`);
    await ipIn(pod.netns, `addr add ${pod.ipv6}/64 dev eth0 nodad`);
    await ipIn(pod.netns, 'link set eth0 up');
    await ipIn(pod.netns, `route add default via ${pod.gatewayIpv4} dev eth0`);
    await ipIn(pod.netns, `-6 route add default via ${pod.gatewayIpv6} dev eth0`);
    await this.pinNeighbours(pod);
    if (cgroupPath === undefined) await this.addCgroup(pod.cgroupPath);
    // Short resolver timeouts keep a blocked lookup from stalling a test for the glibc default of 5 s x 2.
    await writeFile(pod.resolvConfPath, `nameserver ${LAB_ADDRESSES.resolver.ipv4}\noptions timeout:2 attempts:1\n`);
    await writeFile(pod.hostsPath, `127.0.0.1 localhost\n::1 localhost\n${pod.ipv4} ${name}\n${pod.ipv6} ${name}\n`);
    this.pods.push(pod);
    return pod;
  }
}

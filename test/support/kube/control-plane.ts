// A real Kubernetes control plane for the tests: etcd and kube-apiserver (built from their Go modules by
// test/e2e/kube/build-control-plane.sh), TLS from a fresh CA, a service-account issuer, RBAC and the Node authorizer
// on, the default admission plugins. Everything listens only inside a network namespace the test owns (its own
// `<prefix>-cp`, or a lab's node netns where the agent runs), on loopback or 198.18.1.1; the host netns is never
// configured. The test process reaches the API server through a Unix socket forwarded by a relay inside that netns;
// the agent reaches it directly, through a second relay that can cut or stall its connections (relay.ts).
//
//   test process --unix socket--> relay --> kube-apiserver 198.18.1.1:6443 --> etcd 127.0.0.1:2379
//   agent (netns) --> fault relay 198.18.1.1:6444 ----^
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:https';
import { CoreV1Api, KubeConfig, type ApiType, type DispatcherOptions, type User } from '@kubernetes/client-node';
import { collect, mustRun, run } from '../../../lab/exec.js';
import { KubeClient } from '../../../src/k8s/api.js';
import { createControlPlanePki, type ControlPlanePki } from './pki.js';
import type { RelayCommand, RelayConfig } from './relay.js';

export interface ControlPlaneOptions {
  /** Unique, [a-z][a-z0-9]{1,9}: names the netns (`<prefix>-cp`) and the work directory. */
  prefix: string;
  /** Run inside this existing netns (e.g. Lab.nodeNetns) instead of a netns of our own; it must not use 198.18.1.1. */
  netns?: string;
  /**
   * The API server's watch cache (default on, as in every cluster). With it off, watches and lists go to etcd, so an
   * etcd compaction turns an old resourceVersion into 410 Gone at once; with it on, 410 comes when the cache's window
   * has moved past the version.
   */
  watchCache?: boolean;
  /** More kube-apiserver flags (`--name=value`), after the harness's own. */
  apiServerArgs?: string[];
}

export interface ControlPlaneBinaries {
  kubeApiServer: string;
  etcd: string;
}

/** Where the API server listens inside the netns, and where the fault relay in front of it listens. */
export const API_SERVER_ADDRESS = '198.18.1.1';
export const API_SERVER_PORT = 6443;
export const FAULT_PROXY_PORT = 6444;
/** Dual-stack service ranges inside the lab's 198.18.0.0/15 and fd00:eb::/32: virtual IPs, never routed. */
export const SERVICE_CIDRS = ['198.19.0.0/16', 'fd00:eb:5e::/112'] as const;
/** The `kubernetes` Service's cluster IPs: the first address of each range. */
export const KUBERNETES_SERVICE_IPS = ['198.19.0.1', 'fd00:eb:5e::1'] as const;
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,9}$/;
const NETNS_DIR = '/run/netns';
const OWN_NETNS_PATTERN = /^([a-z][a-z0-9]{1,9})-cp$/;
const WORKDIR_PREFIX = 'egressguard-kube-';
const ETCD_CLIENT_URL = 'http://127.0.0.1:2379';
const ETCD_PEER_URL = 'http://127.0.0.1:2380';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const RELAY_SCRIPT = join(HERE, 'relay.js');
/** The repository root, from dist/test/support/kube. */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const BUILD_SCRIPT = join(REPO_ROOT, 'test/e2e/kube/build-control-plane.sh');
/** A fresh machine builds both binaries once (minutes on 2 cores); the caller's hook timeout must allow for it. */
export const BUILD_TIMEOUT_MS = 60 * 60_000;

function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Build (or find in the cache) kube-apiserver and etcd; the script locks, so parallel callers build once. */
export async function controlPlaneBinaries(): Promise<ControlPlaneBinaries> {
  const built = await run(['bash', BUILD_SCRIPT, 'kube-apiserver', 'etcd'], BUILD_TIMEOUT_MS);
  if (built.code !== 0) throw new Error(`${BUILD_SCRIPT} failed (${built.code ?? built.signal}): ${built.stderr.trim()}`);
  const [kubeDir, etcdDir] = (await mustRun(['bash', BUILD_SCRIPT, '--print-dir'])).trim().split(' ') as [string, string];
  return { kubeApiServer: join(kubeDir, 'kube-apiserver'), etcd: join(etcdDir, 'etcd') };
}

/**
 * A KubeConfig whose every request (API calls and watches) goes over a Unix socket instead of TCP: the client builds
 * its connection options as usual (CA, client certificate) and its own undici connects to `socketPath` with them.
 */
class UnixSocketKubeConfig extends KubeConfig {
  constructor(private readonly socketPath: string) {
    super();
  }

  override createDispatcherOptions(...args: Parameters<KubeConfig['createDispatcherOptions']>): DispatcherOptions {
    const options = super.createDispatcherOptions(...args);
    if (options.type !== 'agent') throw new Error(`the control plane's client config has no TLS options (${options.type})`);
    // undici's connector takes `socketPath` beside the TLS options (client-node's type lists only the latter).
    const connect: typeof options.connect & { socketPath: string } = { ...options.connect, socketPath: this.socketPath };
    return { ...options, connect };
  }
}

interface Managed {
  name: 'etcd' | 'kube-apiserver';
  argv: string[];
  child: ChildProcess | null;
}

export class ControlPlane {
  readonly netns: string;
  readonly apiServerUrl = `https://${API_SERVER_ADDRESS}:${API_SERVER_PORT}`;
  /** The agent's endpoint: the fault relay in front of the API server (see fault()). */
  readonly agentServerUrl = `https://${API_SERVER_ADDRESS}:${FAULT_PROXY_PORT}`;
  private readonly ownsNetns: boolean;
  private createdNetns = false;
  private addedAddress = false;
  private workDirPath: string | null = null;
  private pkiFiles: ControlPlanePki | null = null;
  private readonly relays = new Set<ChildProcess>();
  private readonly etcd: Managed = { name: 'etcd', argv: [], child: null };
  private readonly apiServer: Managed = { name: 'kube-apiserver', argv: [], child: null };
  private teardown: Promise<void> | null = null;

  private constructor(
    readonly prefix: string,
    netns: string | undefined,
  ) {
    this.ownsNetns = netns === undefined;
    this.netns = netns ?? `${prefix}-cp`;
  }

  /** Start etcd and kube-apiserver and wait until /readyz says ok. On failure everything created is removed. */
  static async start(options: ControlPlaneOptions): Promise<ControlPlane> {
    if (!PREFIX_PATTERN.test(options.prefix)) throw new Error(`control plane prefix "${options.prefix}" must match ${PREFIX_PATTERN}`);
    const plane = new ControlPlane(options.prefix, options.netns);
    if (plane.ownsNetns && existsSync(netnsPath(plane.netns))) {
      throw new Error(`network namespace ${plane.netns} already exists: pick another prefix`);
    }
    if (!plane.ownsNetns && !existsSync(netnsPath(plane.netns))) throw new Error(`network namespace ${plane.netns} does not exist`);
    try {
      const binaries = await controlPlaneBinaries();
      plane.workDirPath = await mkdtemp(join(tmpdir(), `${WORKDIR_PREFIX}${plane.prefix}-`));
      await plane.prepareNetns();
      plane.pkiFiles = await createControlPlanePki(plane.workDir, {
        serverIps: [API_SERVER_ADDRESS, '127.0.0.1', ...KUBERNETES_SERVICE_IPS],
      });
      plane.etcd.argv = plane.etcdArgv(binaries.etcd);
      plane.apiServer.argv = plane.apiServerArgv(binaries.kubeApiServer, options);
      await plane.startEtcd();
      await plane.startRelay({ listen: { path: plane.adminSocketPath }, target: { host: API_SERVER_ADDRESS, port: API_SERVER_PORT } });
      await plane.startRelay({
        listen: { host: API_SERVER_ADDRESS, port: FAULT_PROXY_PORT },
        target: { host: API_SERVER_ADDRESS, port: API_SERVER_PORT },
        control: plane.faultControlPath,
      });
      await plane.startApiServer();
      return plane;
    } catch (error) {
      await plane.destroy().catch((cleanupError: unknown) => {
        throw new AggregateError([error, cleanupError], `control plane start failed and cleanup failed too: ${String(error)}`);
      });
      throw error;
    }
  }

  /** Remove what crashed runs left: own netns `<prefix>-cp` (and the processes in them) and work directories. */
  static async cleanupStale(prefixPattern: RegExp): Promise<string[]> {
    const removed: string[] = [];
    for (const name of existsSync(NETNS_DIR) ? await readdir(NETNS_DIR) : []) {
      const prefix = OWN_NETNS_PATTERN.exec(name)?.[1];
      if (prefix === undefined || !prefixPattern.test(prefix)) continue;
      killPids((await run(['ip', 'netns', 'pids', name])).stdout);
      await mustRun(['ip', 'netns', 'delete', name]);
      removed.push(`netns ${name}`);
    }
    for (const entry of await readdir(tmpdir())) {
      const prefix = entry.startsWith(WORKDIR_PREFIX) ? entry.slice(WORKDIR_PREFIX.length).split('-')[0] : undefined;
      if (prefix === undefined || !prefixPattern.test(prefix)) continue;
      await rm(join(tmpdir(), entry), { recursive: true, force: true });
      removed.push(`dir ${join(tmpdir(), entry)}`);
    }
    return removed;
  }

  get workDir(): string {
    if (this.workDirPath === null) throw new Error(`control plane ${this.prefix} has no work directory (destroyed?)`);
    return this.workDirPath;
  }

  get pki(): ControlPlanePki {
    if (this.pkiFiles === null) throw new Error(`control plane ${this.prefix} has no PKI yet`);
    return this.pkiFiles;
  }

  /** The cluster CA (PEM path) that signed the API server's certificate. */
  get caPath(): string {
    return this.pki.caPath;
  }

  get netnsPath(): string {
    return netnsPath(this.netns);
  }

  /** Unix socket (in the work directory) forwarded to the API server: the test process's way in. */
  get adminSocketPath(): string {
    return join(this.workDir, 'apiserver.sock');
  }

  private get faultControlPath(): string {
    return join(this.workDir, 'fault.sock');
  }

  /** Log file of etcd or kube-apiserver (stdout and stderr), for a failing test's message. */
  logPath(name: Managed['name']): string {
    return join(this.workDir, `${name}.log`);
  }

  /** An admin (system:masters) KubeConfig for @kubernetes/client-node, over the Unix socket. */
  adminKubeConfig(): KubeConfig {
    return this.unixSocketKubeConfig({ name: 'admin', certFile: this.pki.adminCertPath, keyFile: this.pki.adminKeyPath });
  }

  /** A KubeConfig over the Unix socket that authenticates with a bearer token only (see serviceAccountToken). */
  tokenKubeConfig(token: string): KubeConfig {
    return this.unixSocketKubeConfig({ name: 'token', token });
  }

  /**
   * The agent's own client (src/k8s/api.ts) over the Unix socket, as the admin or with a bearer token: for the
   * agent's components run inside the test process. `Client` lets a test observe each request (a subclass).
   */
  agentClient(credentials: { token: string } | 'admin', Client: typeof KubeClient = KubeClient): KubeClient {
    if (this.teardown !== null) throw new Error(`control plane ${this.prefix} is destroyed`);
    return new Client({
      server: this.apiServerUrl,
      ca: readFileSync(this.pki.caPath),
      rejectUnauthorized: true,
      socketPath: this.adminSocketPath,
      ...(credentials === 'admin'
        ? { cert: readFileSync(this.pki.adminCertPath), key: readFileSync(this.pki.adminKeyPath) }
        : { token: () => credentials.token }),
    });
  }

  /** An admin API client of the given class, e.g. `plane.admin(CoreV1Api)`. */
  admin<T extends ApiType>(apiClass: new (config: never) => T): T {
    return this.adminKubeConfig().makeApiClient(apiClass as never);
  }

  /** A bound token for a ServiceAccount through the TokenRequest API (the SA must exist). */
  async serviceAccountToken(namespace: string, name: string, expirationSeconds = 3600): Promise<string> {
    const response = await this.admin(CoreV1Api).createNamespacedServiceAccountToken({
      namespace,
      name,
      body: { spec: { audiences: [SERVICE_ACCOUNT_ISSUER], expirationSeconds } },
    });
    const token = response.status?.token;
    if (token === undefined || token === '') throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
    return token;
  }

  /**
   * Write a kubeconfig and return its path: authenticated with `token` (as a pod's service account is) or as the
   * admin (client certificate, for tools such as helm and kubectl). The server is the fault relay unless `direct`;
   * only a process inside the netns can reach either.
   */
  async writeKubeconfig(fileName: string, credentials: { token: string } | 'admin', options: { direct?: boolean } = {}): Promise<string> {
    const path = join(this.workDir, fileName);
    const server = options.direct === true ? this.apiServerUrl : this.agentServerUrl;
    const user =
      credentials === 'admin'
        ? { 'client-certificate': this.pki.adminCertPath, 'client-key': this.pki.adminKeyPath }
        : { token: credentials.token };
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: this.prefix, cluster: { server, 'certificate-authority': this.pki.caPath } }],
      users: [{ name: 'user', user }],
      contexts: [{ name: this.prefix, context: { cluster: this.prefix, user: 'user' } }],
      'current-context': this.prefix,
    };
    await writeFile(path, JSON.stringify(config, null, 2), { mode: 0o600 });
    return path;
  }

  /**
   * The files kubelet projects into a pod for its ServiceAccount (token, ca.crt, namespace) in a directory of the work
   * directory, and the environment a pod gets, pointing at the fault relay: the agent's in-cluster configuration.
   */
  async serviceAccountFiles(namespace: string, name: string): Promise<{ dir: string; env: Record<string, string> }> {
    const dir = join(this.workDir, `serviceaccount-${namespace}-${name}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'token'), await this.serviceAccountToken(namespace, name), { mode: 0o600 });
    await writeFile(join(dir, 'ca.crt'), await readFile(this.pki.caPath));
    await writeFile(join(dir, 'namespace'), namespace);
    return { dir, env: { KUBERNETES_SERVICE_HOST: API_SERVER_ADDRESS, KUBERNETES_SERVICE_PORT: String(FAULT_PROXY_PORT) } };
  }

  /** Steer the fault relay between the agent and the API server (see relay.ts); returns the connections it had open. */
  async fault(command: RelayCommand): Promise<number> {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(this.faultControlPath);
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.on('end', () => resolve(text.trim()));
      socket.on('error', reject);
      socket.end(`${command}\n`);
    });
    const match = /^ok (\d+)$/.exec(answer);
    if (match === null) throw new Error(`fault relay refused "${command}": ${answer}`);
    return Number(match[1]);
  }

  /** Stop the API server (SIGTERM, then SIGKILL after 10 s); etcd keeps running. */
  stopApiServer(): Promise<void> {
    return this.stopManaged(this.apiServer);
  }

  /** Start the API server again with the same flags and data, and wait until it is ready. */
  async startApiServer(): Promise<void> {
    await this.startManaged(this.apiServer);
    await this.waitReady();
  }

  async restartApiServer(): Promise<void> {
    await this.stopApiServer();
    await this.startApiServer();
  }

  /** Freeze the API server (SIGSTOP): its sockets stay open and answer nothing, as a hung server does. */
  pauseApiServer(): void {
    this.signal(this.apiServer, 'SIGSTOP');
  }

  resumeApiServer(): void {
    this.signal(this.apiServer, 'SIGCONT');
  }

  /** Restart etcd on the same data directory (the API server reconnects by itself). */
  async restartEtcd(): Promise<void> {
    await this.stopManaged(this.etcd);
    await this.startEtcd();
  }

  /**
   * Compact etcd's history up to its current revision (physically), so that every older resourceVersion is gone:
   * the API server answers such a watch or list with 410 Gone. Returns the compacted revision.
   */
  async compact(): Promise<number> {
    const range = (await this.etcdCall('/v3/kv/range', { key: Buffer.from('/').toString('base64'), limit: 1 })) as {
      header?: { revision?: string };
    };
    const revision = Number(range.header?.revision);
    if (!(revision > 0)) throw new Error(`etcd reported no revision: ${JSON.stringify(range)}`);
    await this.etcdCall('/v3/kv/compaction', { revision: String(revision), physical: true });
    return revision;
  }

  /** GET an API path as admin over the Unix socket; status and body text (e.g. `/readyz?verbose`). */
  async adminGet(path: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
    const [ca, cert, key] = await Promise.all(
      [this.pki.caPath, this.pki.adminCertPath, this.pki.adminKeyPath].map((file) => readFile(file)),
    );
    return new Promise((resolve, reject) => {
      // `host` only names the server for the certificate check: the connection is the socket.
      const get = request(
        { socketPath: this.adminSocketPath, host: API_SERVER_ADDRESS, path, ca, cert, key, timeout: timeoutMs },
        (response) => {
          let body = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          response.on('error', reject);
        },
      );
      get.on('timeout', () => get.destroy(new Error(`GET ${path}: timeout after ${timeoutMs} ms`)));
      get.on('error', reject);
      get.end();
    });
  }

  private unixSocketKubeConfig(user: User): KubeConfig {
    if (this.teardown !== null) throw new Error(`control plane ${this.prefix} is destroyed`);
    const config = new UnixSocketKubeConfig(this.adminSocketPath);
    config.loadFromOptions({
      clusters: [{ name: this.prefix, server: this.apiServerUrl, caFile: this.pki.caPath, skipTLSVerify: false }],
      users: [user],
      contexts: [{ name: this.prefix, cluster: this.prefix, user: user.name }],
      currentContext: this.prefix,
    });
    return config;
  }

  /** Stop every process (by PID), remove the address or netns we added, the work directory. Idempotent. */
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
    for (const managed of [this.apiServer, this.etcd]) {
      await attempt(async () => {
        if (managed.child !== null) await killAndWait(managed.child);
        managed.child = null;
      });
    }
    await Promise.all([...this.relays].map((child) => attempt(() => killAndWait(child))));
    if (this.createdNetns) {
      await attempt(async () => {
        killPids((await run(['ip', 'netns', 'pids', this.netns])).stdout);
        await mustRun(['ip', 'netns', 'delete', this.netns]);
      });
    } else if (this.addedAddress && existsSync(this.netnsPath)) {
      await attempt(async () => void (await mustRun(['ip', '-n', this.netns, 'addr', 'del', `${API_SERVER_ADDRESS}/32`, 'dev', 'lo'])));
    }
    if (this.workDirPath !== null) {
      const path = this.workDirPath;
      await attempt(() => rm(path, { recursive: true, force: true }));
      this.workDirPath = null;
    }
    if (failures.length > 0) throw new AggregateError(failures, `control plane ${this.prefix}: cleanup incomplete`);
  }

  private async prepareNetns(): Promise<void> {
    if (this.ownsNetns) {
      await mustRun(['ip', 'netns', 'add', this.netns]);
      this.createdNetns = true;
      await mustRun(['ip', '-n', this.netns, 'link', 'set', 'lo', 'up']);
    }
    await mustRun(['ip', '-n', this.netns, 'addr', 'add', `${API_SERVER_ADDRESS}/32`, 'dev', 'lo']);
    this.addedAddress = true;
  }

  private etcdArgv(binary: string): string[] {
    return [
      binary,
      '--name=egressguard-test',
      `--data-dir=${join(this.workDir, 'etcd')}`,
      `--listen-client-urls=${ETCD_CLIENT_URL}`,
      `--advertise-client-urls=${ETCD_CLIENT_URL}`,
      `--listen-peer-urls=${ETCD_PEER_URL}`,
      `--initial-advertise-peer-urls=${ETCD_PEER_URL}`,
      `--initial-cluster=egressguard-test=${ETCD_PEER_URL}`,
      '--listen-metrics-urls=',
      '--log-level=warn',
      // A test cluster on tmpfs-like scratch: durability across a host crash is not wanted, speed is.
      '--unsafe-no-fsync',
    ];
  }

  private apiServerArgv(binary: string, options: ControlPlaneOptions): string[] {
    const pki = this.pki;
    return [
      binary,
      `--etcd-servers=${ETCD_CLIENT_URL}`,
      `--bind-address=${API_SERVER_ADDRESS}`,
      `--advertise-address=${API_SERVER_ADDRESS}`,
      `--secure-port=${API_SERVER_PORT}`,
      `--tls-cert-file=${pki.serverCertPath}`,
      `--tls-private-key-file=${pki.serverKeyPath}`,
      `--client-ca-file=${pki.caPath}`,
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-account-key-file=${pki.serviceAccountPublicKeyPath}`,
      `--service-account-signing-key-file=${pki.serviceAccountKeyPath}`,
      `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-cluster-ip-range=${SERVICE_CIDRS.join(',')}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true',
      '--profiling=false',
      `--cert-dir=${join(this.workDir, 'apiserver-certs')}`,
      `--watch-cache=${options.watchCache ?? true}`,
      ...(options.apiServerArgs ?? []),
    ];
  }

  private async startEtcd(): Promise<void> {
    await this.startManaged(this.etcd);
    for (let attempt = 0; ; attempt++) {
      const health = await this.etcdCall('/health', null).catch((error: unknown) => error);
      if (typeof health === 'object' && health !== null && (health as { health?: string }).health === 'true') return;
      if (this.etcd.child === null || attempt >= 150) {
        throw new Error(`etcd is not healthy (${String(health)}); log: ${await this.logTail('etcd')}`);
      }
      await sleep(200);
    }
  }

  private async waitReady(): Promise<void> {
    let last = '';
    for (let attempt = 0; attempt < 300; attempt++) {
      if (this.apiServer.child === null) break;
      const ready = await this.adminGet('/readyz').catch((error: unknown) => ({ status: 0, body: String(error) }));
      if (ready.status === 200) return;
      last = `${ready.status} ${ready.body}`;
      await sleep(200);
    }
    throw new Error(`kube-apiserver is not ready (${last.slice(0, 400)}); log: ${await this.logTail('kube-apiserver')}`);
  }

  private async startManaged(managed: Managed): Promise<void> {
    if (this.teardown !== null) throw new Error(`control plane ${this.prefix} is destroyed`);
    if (managed.child !== null) throw new Error(`${managed.name} is already running`);
    await mkdir(this.workDir, { recursive: true });
    const log = openSync(this.logPath(managed.name), 'a');
    try {
      // nsenter execs the program: the child's PID is the program's own, so signals reach it directly.
      const child = spawn('nsenter', [`--net=${this.netnsPath}`, '--', ...managed.argv], { stdio: ['ignore', log, log] });
      managed.child = child;
      child.once('exit', () => {
        if (managed.child === child) managed.child = null;
      });
      await once(child, 'spawn');
    } finally {
      closeSync(log);
    }
  }

  private async stopManaged(managed: Managed): Promise<void> {
    const child = managed.child;
    if (child === null) return;
    const exited = once(child, 'exit');
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    managed.child = null;
  }

  private signal(managed: Managed, signal: NodeJS.Signals): void {
    if (managed.child === null) throw new Error(`${managed.name} is not running`);
    managed.child.kill(signal);
  }

  private async startRelay(config: RelayConfig): Promise<void> {
    const configPath = join(this.workDir, `relay-${this.relays.size}.json`);
    await writeFile(configPath, JSON.stringify(config));
    const child = spawn('nsenter', [`--net=${this.netnsPath}`, '--', process.execPath, RELAY_SCRIPT, configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.relays.add(child);
    child.once('exit', () => this.relays.delete(child));
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    for (let attempt = 0; !output.split('\n').includes('ready'); attempt++) {
      if (child.exitCode !== null || attempt >= 100) throw new Error(`relay ${JSON.stringify(config.listen)} did not start: ${output}`);
      await sleep(50);
    }
  }

  /** POST (or GET when body is null) to etcd's HTTP gateway from inside the netns; returns the parsed JSON answer. */
  private async etcdCall(path: string, body: unknown): Promise<unknown> {
    const script = `
      const [url, body] = JSON.parse(process.env.EG_ETCD_CALL);
      const init = body === null ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
      fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
        .then(async (response) => { const text = await response.text(); if (!response.ok) throw new Error(response.status + ' ' + text); process.stdout.write(text); })
        .catch((error) => { process.stderr.write(String(error)); process.exit(1); });`;
    const child = spawn('nsenter', [`--net=${this.netnsPath}`, '--', process.execPath, '-e', script], {
      env: { ...process.env, EG_ETCD_CALL: JSON.stringify([`${ETCD_CLIENT_URL}${path}`, body]) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const result = await collect(child, 10_000);
    if (result.code !== 0) throw new Error(`etcd ${path}: ${result.stderr.trim()}`);
    return JSON.parse(result.stdout) as unknown;
  }

  private async logTail(name: Managed['name']): Promise<string> {
    const text = await readFile(this.logPath(name), 'utf8').catch(() => '');
    return text.split('\n').slice(-30).join('\n');
  }
}

function killPids(list: string): void {
  for (const pid of list.split('\n').map(Number)) {
    if (!(pid > 0)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

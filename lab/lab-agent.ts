// Runs the real agent (`egressguard run`) inside a lab's node namespace with a config generated from the lab,
// for the demo, the integration tests and the benchmarks. Nothing here is a test double: it is the CLI binary.

import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { controlRequest } from '../src/agent/control.js';
import type { AgentStatus } from '../src/agent/agent.js';
import type { FlowEvent } from '../src/events/types.js';
import { ConfigMapVolume } from './configmap-volume.js';
import { LAB_ADDRESSES, type Lab } from './lab.js';

export const CLI_SCRIPT = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const CONFIG_KEY = 'egressguard.yaml';
const DNS_HOLDER_SCRIPT = fileURLToPath(new URL('../../scripts/egressguard-dns-holder.py', import.meta.url));

export interface LabWorkload {
  pod: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** How the agent learns the pod's host-side interface: declared by name (default) or found from its netns. */
  interface?: 'declared' | 'from-netns';
}

export interface LabAgentOptions {
  workloads: LabWorkload[];
  /** Kubernetes mode: this `kubernetes:` section replaces `workloads` (which must then be empty). */
  kubernetes?: Record<string, unknown>;
  /** More environment for the agent process (e.g. KUBERNETES_SERVICE_HOST/PORT). */
  env?: NodeJS.ProcessEnv;
  mode: 'enforce' | 'discovery';
  /** Extra config merged into `dns` (minTtlSeconds, graceSeconds, deniedRcode, ...). */
  dns?: Record<string, unknown>;
  baselinePermits?: { name: string; cidr: string; protocol?: string; port?: number; endPort?: number; log?: boolean }[];
  denyEch?: boolean;
  enforcement?: { tls?: boolean; packet?: boolean };
  aggregateWindowMs?: number;
  /** Extra arguments for node before the agent's script (e.g. `--cpu-prof` for a benchmark's profile). */
  nodeArgs?: string[];
  /** Run the agent under scripts/egressguard-dns-holder.py, which keeps the DNS sockets open and restarts it. */
  dnsSocketHolder?: boolean;
  /** How the agent is started, before `run --config FILE` (default: this checkout's CLI; the image test: docker run). */
  agentCommand?: readonly string[];
  /** Config file and policy folder mounted as Kubernetes ConfigMap volumes (lab/configmap-volume.ts), edited by `..data` swaps. */
  configMapVolumes?: boolean;
}

export class LabAgent {
  readonly dir: string;
  readonly configPath: string;
  readonly policiesDir: string;
  readonly eventsPath: string;
  readonly logPath: string;
  readonly socketPath: string;
  readonly pinDir: string;
  private process: ChildProcess | null = null;
  private config: Record<string, unknown>;
  private readonly dnsSocketHolder: boolean;
  private readonly env: NodeJS.ProcessEnv;
  private readonly agentCommand: readonly string[];
  private readonly configVolume: ConfigMapVolume | null;
  private readonly policyVolume: ConfigMapVolume | null;
  /** The policy files written (file name -> text): a ConfigMap volume publishes them all at each change. */
  private policyFiles: Record<string, string> = {};

  constructor(
    private readonly lab: Lab,
    options: LabAgentOptions,
  ) {
    if (options.kubernetes && options.workloads.length > 0) throw new Error('LabAgent: give workloads or kubernetes, not both');
    this.env = { ...process.env, ...options.env };
    this.dir = join(lab.workDir, 'agent');
    this.policiesDir = join(this.dir, 'policies');
    mkdirSync(this.policiesDir, { recursive: true });
    this.configVolume = options.configMapVolumes ? new ConfigMapVolume(join(this.dir, 'config')) : null;
    this.policyVolume = options.configMapVolumes ? new ConfigMapVolume(this.policiesDir) : null;
    this.configPath = this.configVolume?.path(CONFIG_KEY) ?? join(this.dir, CONFIG_KEY);
    this.eventsPath = join(this.dir, 'events.jsonl');
    this.logPath = join(this.dir, 'agent.log');
    this.socketPath = join(this.dir, 'agent.sock');
    this.pinDir = lab.pinDir;
    this.dnsSocketHolder = options.dnsSocketHolder ?? false;
    this.agentCommand = options.agentCommand ?? [process.execPath, ...(options.nodeArgs ?? []), CLI_SCRIPT];
    this.config = {
      node: `${lab.prefix}-node`,
      attachCgroup: lab.attachCgroup,
      pinDir: this.pinDir,
      controlSocket: this.socketPath,
      ...(options.kubernetes ? { kubernetes: options.kubernetes } : {}),
      workloads: options.workloads.map((w) => {
        const pod = lab.pod(w.pod);
        const network = w.interface === 'from-netns' ? { netns: pod.netnsPath } : { interfaces: [pod.nodeInterface] };
        return {
          namespace: w.namespace,
          name: w.name,
          cgroup: pod.cgroupPath,
          labels: w.labels,
          addresses: [pod.ipv4, pod.ipv6],
          ...network,
        };
      }),
      policies: [this.policiesDir],
      baseline: {
        mode: options.mode,
        permits: options.baselinePermits ?? [],
        dnsNames: ['cluster.local'],
        denyEch: options.denyEch ?? false,
      },
      ...(options.enforcement ? { enforcement: options.enforcement } : {}),
      dns: {
        listen: [LAB_ADDRESSES.dnsProxy.ipv4, LAB_ADDRESSES.dnsProxy.ipv6],
        port: 53,
        upstreams: [LAB_ADDRESSES.resolver.ipv4],
        ...options.dns,
      },
      events: { sinks: [{ type: 'jsonl', path: this.eventsPath }], aggregateWindowMs: options.aggregateWindowMs ?? 1000 },
    };
    if (options.kubernetes) delete this.config.workloads;
    this.writeConfig();
  }

  private writeConfig(): void {
    this.writeRawConfig(stringify(this.config));
  }

  /** Start the agent and wait until it answers on its control socket. */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.process) throw new Error('the lab agent is already running');
    const log = openSync(this.logPath, 'a');
    try {
      const agent = [...this.agentCommand, 'run', '--config', this.configPath];
      const { ipv4, ipv6 } = LAB_ADDRESSES.dnsProxy;
      const holder = ['python3', DNS_HOLDER_SCRIPT, '--listen', ipv4, '--listen', ipv6, '--port', '53', '--'];
      this.process = this.lab.spawnInNode(this.dnsSocketHolder ? [...holder, ...agent] : agent, {
        stdio: ['ignore', log, log],
        env: this.env,
      });
    } finally {
      closeSync(log);
    }
    const child = this.process;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        this.process = null;
        throw new Error(`the agent exited during start (${child.exitCode ?? child.signalCode}); its log:\n${this.log()}`);
      }
      try {
        await this.status();
        return;
      } catch (error) {
        if (Date.now() > deadline)
          throw new Error(`the agent did not answer within ${timeoutMs} ms: ${(error as Error).message}\n${this.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** The process started: the agent, or with dnsSocketHolder the holder. */
  get pid(): number | null {
    return this.process?.pid ?? null;
  }

  /** The agent's own PID (with dnsSocketHolder: the holder's current child; null while it has none). */
  agentPid(): number | null {
    const pid = this.pid;
    if (pid === null || !this.dnsSocketHolder) return pid;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return children === '' ? null : Number(children.split(' ')[0]);
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  async status(): Promise<AgentStatus> {
    const reply = await controlRequest(this.socketPath, { command: 'status' });
    if (typeof reply.error === 'string') throw new Error(reply.error);
    return reply.status as AgentStatus;
  }

  /** Wait until `predicate` holds for the agent's status (e.g. a policy reached the kernel). */
  async waitFor(what: string, predicate: (status: AgentStatus) => boolean, timeoutMs = 15_000): Promise<AgentStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: AgentStatus | null = null;
    while (Date.now() < deadline) {
      try {
        last = await this.status();
        if (predicate(last)) return last;
      } catch {
        // Not answering yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last)}\n${this.log()}`);
  }

  /** Wait until every named policy is in the kernel at its current generation (the lab's `status.ruleset` wait). */
  waitForPolicies(names: string[], timeoutMs?: number): Promise<AgentStatus> {
    return this.waitFor(
      `policies ${names.join(', ')} to be enforced`,
      (s) => names.every((n) => s.policies.some((p) => p.name === n && p.ruleset !== '' && p.lastReconciledGeneration === p.generation)),
      timeoutMs,
    );
  }

  writePolicy(fileName: string, yaml: string): void {
    if (this.policyVolume) {
      this.replacePolicies({ ...this.policyFiles, [fileName]: yaml });
      return;
    }
    writeFileSync(join(this.policiesDir, fileName), yaml);
    this.policyFiles[fileName] = yaml;
  }

  /** Make `files` (file name -> text) the whole policy folder: one `..data` swap on a ConfigMap volume. */
  replacePolicies(files: Record<string, string>): void {
    if (this.policyVolume) {
      this.policyVolume.publish(files);
    } else {
      for (const [fileName, yaml] of Object.entries(files)) writeFileSync(join(this.policiesDir, fileName), yaml);
      for (const fileName of Object.keys(this.policyFiles))
        if (!Object.hasOwn(files, fileName)) rmSync(join(this.policiesDir, fileName), { force: true });
    }
    this.policyFiles = { ...files };
  }

  /** Switch between discovery (default permit + log) and enforce (default deny), and wait until the agent applied it. */
  async setMode(mode: 'enforce' | 'discovery'): Promise<void> {
    this.editConfig((config) => ((config.baseline as Record<string, unknown>).mode = mode));
    await this.waitFor(`mode ${mode}`, (s) => s.mode === mode);
  }

  /** Change the config file the agent watches (the agent applies valid edits live). */
  editConfig(change: (config: Record<string, unknown>) => void): void {
    change(this.config);
    this.writeConfig();
  }

  /** Write arbitrary text as the config file (to test how the agent treats a broken edit). */
  writeRawConfig(text: string): void {
    if (this.configVolume) this.configVolume.publish({ [CONFIG_KEY]: text });
    else writeFileSync(this.configPath, text);
  }

  events(): FlowEvent[] {
    if (!existsSync(this.eventsPath)) return [];
    return readFileSync(this.eventsPath, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"kind":"flow"'))
      .map((line) => JSON.parse(line) as FlowEvent);
  }

  /** The events file once `predicate` holds for it (events are written after the aggregation window). */
  async eventsUntil(what: string, predicate: (events: FlowEvent[]) => boolean, timeoutMs = 10_000): Promise<FlowEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.events();
      if (predicate(events)) return events;
      if (Date.now() > deadline)
        throw new Error(
          `no events for ${what} within ${timeoutMs} ms; the last ones:\n${events
            .slice(-10)
            .map((e) => JSON.stringify(e))
            .join('\n')}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The first event matching `predicate`, once the events file holds one. */
  async eventMatching(what: string, predicate: (event: FlowEvent) => boolean, timeoutMs?: number): Promise<FlowEvent> {
    const events = await this.eventsUntil(what, (all) => all.some(predicate), timeoutMs);
    return events.find(predicate)!;
  }

  /** Stop the agent: SIGTERM (orderly) or SIGKILL (crash). Pinned programs keep enforcing either way. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.process;
    this.process = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  /** Stop the agent and end enforcement: detach programs and remove pins. */
  async teardown(): Promise<void> {
    await this.stop();
    if (!existsSync(this.pinDir)) return;
    const result = await this.lab.runInNode([process.execPath, CLI_SCRIPT, 'teardown', '--config', this.configPath], { timeoutMs: 20_000 });
    if (result.code !== 0) {
      // Still leave nothing behind: removing the pins drops the last references to links and maps.
      rmSync(this.pinDir, { recursive: true, force: true });
      throw new Error(`egressguard teardown failed: ${result.stderr}`);
    }
  }
}

/** A test's afterAll: stops the agent and removes its node state, then the lab, even when the first step fails. */
export async function teardownAgentLab(agent: LabAgent | null | undefined, lab: Lab | null | undefined): Promise<void> {
  try {
    await agent?.teardown();
  } finally {
    await lab?.destroy();
  }
}

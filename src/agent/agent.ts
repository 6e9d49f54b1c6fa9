// The host-mode agent's composition root: the only file that knows every module. It builds the datapath, the event
// pipeline and its sinks, the workload and policy sources, the reconciler, the DNS proxy and the control socket,
// and wires them together.

import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig, type AgentConfig } from './config.js';
import { ControlServer } from './control.js';
import { LearnedAddresses } from './learned.js';
import { Reconciler } from './reconciler.js';
import { agentStatus, type AgentStatus } from './status.js';
import { findCgroup2Mount, ensureBpffs } from '../datapath/mounts.js';
import { openDatapath } from '../datapath/datapath.js';
import type { Datapath } from '../datapath/types.js';
import { DnsProxy } from '../dns/proxy.js';
import { NameRefresher } from '../dns/resolver.js';
import { Enricher } from '../events/enrich.js';
import { EventPipeline } from '../events/pipeline.js';
import { JsonLinesSink } from '../events/jsonl.js';
import { hostWorkloadHost } from '../identity/host.js';
import { workloadKey } from '../identity/registry.js';
import { decideName } from '../policy/dns-decision.js';
import { PolicyStore } from '../policy/store.js';
import { ConfigWorkloadSource, checkWorkloadCgroups } from '../sources/config-workloads.js';
import { PolicyFileSource } from '../sources/policy-files.js';
import { DebouncedWatch } from '../sources/watch.js';

export type { AgentStatus, PolicyStatus, WorkloadStatus } from './status.js';

/** The object file the build produces, relative to this compiled module (dist/src/agent). */
export const defaultObjectPath = new URL('../../../bpf/egressguard.bpf.o', import.meta.url).pathname;

export interface AgentOptions {
  configPath: string;
  log: Logger;
  objectPath?: string;
}

export class Agent {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly store: PolicyStore;
  private readonly reconciler: Reconciler;
  private readonly workloadSource: ConfigWorkloadSource;
  private readonly learned: LearnedAddresses;
  private readonly policySource: PolicyFileSource;
  private proxy: DnsProxy | null = null;
  private refresher: NameRefresher | null = null;
  private control: ControlServer | null = null;
  private configWatch: DebouncedWatch | null = null;
  private lastKernelLoss = 0n;

  private constructor(
    private readonly options: AgentOptions,
    private readonly cgroup2Mount: string,
    private readonly datapath: Datapath,
    private readonly pipeline: EventPipeline,
    private config: AgentConfig,
  ) {
    const log = options.log;
    this.store = new PolicyStore({ defaultNamespace: config.policyNamespace });
    const packet = config.enforcement.packet;
    this.reconciler = new Reconciler({ datapath, policies: this.store, host: hostWorkloadHost, log, packet });
    this.workloadSource = new ConfigWorkloadSource(config.workloads);
    this.learned = new LearnedAddresses(datapath, config.dns);
    this.policySource = new PolicyFileSource(config.policies, log);
  }

  static async start(options: AgentOptions): Promise<Agent> {
    const cgroup2Mount = findCgroup2Mount();
    if (cgroup2Mount === null)
      throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts): egressguard identifies workloads by cgroup v2');
    const config = loadConfig(options.configPath, cgroup2Mount);
    checkWorkloadCgroups(config);
    const bpffs = ensureBpffs();
    const datapath = openDatapath({
      objectPath: options.objectPath ?? defaultObjectPath,
      pinDir: config.pinDir ?? join(bpffs, 'egressguard'),
      attachCgroup: config.attachCgroup ?? cgroup2Mount,
    });
    const pipeline = new EventPipeline({ windowMs: config.events.aggregateWindowMs });
    for (const sink of config.events.sinks) pipeline.addSink(new JsonLinesSink({ path: sink.path }));
    const agent = new Agent(options, cgroup2Mount, datapath, pipeline, config);
    try {
      await agent.begin();
    } catch (error) {
      await agent.stop();
      throw error;
    }
    return agent;
  }

  private async begin(): Promise<void> {
    const { log } = this.options;
    const { datapath, pipeline, reconciler, config, learned: sink } = this;
    const enricher = new Enricher({
      node: () => this.config.node,
      workloads: reconciler.registry,
      ruleLabel: (ruleId) => reconciler.ruleLabel(ruleId),
      dnsListen: config.dns.listen,
    });
    datapath.onEvent((event) => pipeline.push(enricher.fromKernel(event)));
    if (datapath.adopted) log.info('adopted the pinned datapath of an earlier agent; enforcement continued meanwhile');
    this.applySettings();
    const store = this.store;
    await this.policySource.start({
      apply: (file, text) => store.applyFile(file, text),
      remove: (file) => void store.removeFile(file),
      commit: () => this.guarded(() => reconciler.syncPolicies()),
    });
    await this.workloadSource.start((workloads) => this.guarded(() => reconciler.setWorkloads(workloads)));
    const dns = config.dns;
    if (dns.listen.length > 0) {
      const { listen, port, upstreams, deniedRcode, minTtlSeconds, maxIpsPerName } = dns;
      this.proxy = new DnsProxy({
        listen,
        port,
        upstreams,
        deniedRcode,
        minTtlSeconds,
        maxIpsPerName,
        oracle: {
          workloadFor: (ip) => {
            const w = reconciler.registry.byAddress(ip);
            return w ? { key: workloadKey(w), workloadId: w.workloadId } : null;
          },
          decide: (w, qname) => decideName(reconciler.rulesFor(w.key), qname, this.config.baseline),
        },
        sink,
        onEvent: (e) => pipeline.push(enricher.fromDns(e)),
      });
      await this.proxy.start();
      const refresher = new NameRefresher({ upstreams, minTtlSeconds, maxIpsPerName, sink });
      this.refresher = refresher;
      reconciler.onApplied(() => refresher.setNames(reconciler.exactNames()));
      refresher.setNames(reconciler.exactNames());
    }
    this.configWatch = new DebouncedWatch([config.file], () => this.reload(), log);
    this.timers.push(setInterval(() => this.housekeeping(), 2000));
    this.control = new ControlServer(config.controlSocket, { status: () => this.status(), reload: () => this.reload() });
    await this.control.start();
    process.on('SIGHUP', this.onSighup);
    log.info({ workloads: reconciler.registry.all().length, mode: config.baseline.mode }, 'egressguard agent running');
  }

  private readonly onSighup = (): void => this.reload();

  /** Reached from file watchers, SIGHUP and the control socket: report, keep running, keep enforcing. */
  private guarded(step: () => void): void {
    try {
      step();
    } catch (error) {
      this.options.log.error({ err: error }, 'reconciling failed; the kernel keeps its current state');
    }
  }

  private applySettings(): void {
    const { baseline, dns, enforcement } = this.config;
    this.datapath.configure({
      defaultAction: baseline.mode === 'enforce' ? 'deny' : 'permit',
      dnsProxy: {
        ipv4: dns.listen.find((a) => !a.includes(':')) ?? null,
        ipv6: dns.listen.find((a) => a.includes(':')) ?? null,
        port: dns.port,
      },
      denyEch: baseline.denyEch,
      features: enforcement,
      maxLearnedPerWorkload: dns.maxIpsPerWorkload,
    });
    this.reconciler.setBaseline(baseline.denyList, baseline.permits);
  }

  private housekeeping(): void {
    const removed = this.learned.expire();
    if (removed > 0) this.options.log.debug({ removed }, 'expired learned addresses removed');
    const lost = this.datapath.stats().eventsLost;
    if (lost > this.lastKernelLoss) {
      this.pipeline.reportKernelLoss(Number(lost - this.lastKernelLoss));
      this.lastKernelLoss = lost;
    }
  }

  /** Re-read the configuration and the policies; an invalid configuration keeps the last good one. */
  reload(): void {
    const { log } = this.options;
    try {
      const next = loadConfig(this.options.configPath, this.cgroup2Mount);
      if (JSON.stringify(next.dns) !== JSON.stringify(this.config.dns)) log.warn('dns settings changed: restart the agent to apply them');
      this.config = { ...next, dns: this.config.dns };
      this.applySettings();
    } catch (error) {
      log.error({ err: error }, 'configuration rejected; the last good configuration stays in force');
    }
    this.guarded(() => {
      this.reconciler.setPacketEnforcement(this.config.enforcement.packet);
      this.policySource.setPaths(this.config.policies);
      this.workloadSource.update(this.config.workloads);
    });
  }

  status(): AgentStatus {
    const { config, datapath, reconciler } = this;
    const [rejected, pipeline, dns] = [this.policySource.rejected(), this.pipeline.stats(), this.proxy?.stats() ?? null];
    return agentStatus({ config, datapath, reconciler, rejected, pipeline, dns });
  }

  /** Stop the agent. Pinned programs and maps stay in the kernel and keep enforcing until `teardown`. */
  async stop(): Promise<void> {
    process.off('SIGHUP', this.onSighup);
    for (const t of this.timers) clearInterval(t);
    this.configWatch?.close();
    await this.policySource.stop();
    await this.workloadSource.stop();
    await this.refresher?.stop();
    await this.proxy?.stop();
    await this.control?.stop();
    this.datapath.close();
    await this.pipeline.close();
  }
}

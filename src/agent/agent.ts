// The agent's composition root: the only file that knows every module. It builds the datapath, the event pipeline
// and its sinks, the workload and policy sources (host mode's or Kubernetes mode's: modeSources), the reconciler,
// the DNS proxy and the control socket, and wires them together.

import { existsSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfigFile, type AgentConfig } from './config.js';
import { ControlServer } from './control.js';
import { RolloutCounter } from '../discover/rollout.js';
import { liveSnapshot } from '../discover/ruleset.js';
import { LearnedAddresses } from './learned.js';
import { modeSources } from './mode.js';
import { Reconciler } from './reconciler.js';
import { agentStatus, type AgentStatus } from './status.js';
import { findCgroup2Mount, ensureBpffs } from '../datapath/mounts.js';
import { EG_MAX_FLOWS, EG_MAX_LEARNED, EG_MAX_WORKLOADS } from '../datapath/abi.js';
import { openDatapath, pinPaths } from '../datapath/datapath.js';
import { loadNative } from '../datapath/native.js';
import { inheritedDnsSockets } from '../dns/activation.js';
import type { DnsPolicySnapshot } from './dns-policy.js';
import { DnsProxyHost } from './dns-proxy-host.js';
import { NameRefresher } from '../dns/resolver.js';
import { Enricher } from '../events/enrich.js';
import { DecisionHistory } from '../events/history.js';
import { EventPipeline } from '../events/pipeline.js';
import type { FlowEvent } from '../events/types.js';
import { workloadKey } from '../identity/registry.js';
import { AgentMetrics } from '../metrics/metrics.js';
import { MetricsServer, type Readiness } from '../metrics/server.js';
import { PolicyStore } from '../policy/store.js';
import { missingWorkloadCgroups } from '../sources/config-workloads.js';
import { PathWatch } from '../sources/watch.js';
import { createSinks, sinkStats } from '../sinks/registry.js';

export type { AgentStatus, KubernetesStatus, PolicyStatus, WorkloadStatus } from './status.js';

/** The object file the build produces, relative to this compiled module (dist/src/agent). */
export const defaultObjectPath = new URL('../../../bpf/egressguard.bpf.o', import.meta.url).pathname;
/** Housekeeping runs (every 2 s) between two sweeps of the approved-flow table (one pass over it: every 30 s). */
const APPROVAL_SWEEP_EVERY = 15;

export interface AgentOptions {
  configPath: string;
  log: Logger;
  objectPath?: string;
}

export interface Agent {
  status(): AgentStatus;
  /** Re-read the configuration and the policies; an invalid configuration keeps the last good one. */
  reload(): void;
  /** Stop the agent. Pinned programs and maps stay in the kernel and keep enforcing until `teardown`. */
  stop(): Promise<void>;
}

/**
 * Ready means enforcing: the programs are attached (their pinned links exist; `teardown` removes them) and the agent
 * knows its workloads (Kubernetes mode: the node's pods listed, or the set a previous agent kept), so it answers their
 * DNS: a rolling update moves on only then.
 */
function readiness(status: AgentStatus, pinDir: string, workloadsKnown: boolean): Readiness {
  if (!existsSync(pinPaths(pinDir).links))
    return { ready: false, detail: `not enforcing: no programs are pinned under ${pinDir} (torn down?); restart the agent` };
  if (!workloadsKnown) return { ready: false, detail: "not ready: the workloads are not known yet (the node's pods are not listed)" };
  const withoutRules = status.failures.length > 0 ? ` (${status.failures.length} without their own rules, see status)` : '';
  return {
    ready: true,
    detail: `enforcing (${status.mode}): ${status.workloads.length} workload(s)${withoutRules}, ${status.policies.length} policy(ies)`,
  };
}

export async function startAgent(options: AgentOptions): Promise<Agent> {
  const { configPath, log } = options;
  const cgroup2Mount = findCgroup2Mount();
  if (cgroup2Mount === null)
    throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts): egressguard identifies workloads by cgroup v2');
  const loaded = loadConfigFile(configPath, cgroup2Mount);
  let config: AgentConfig = loaded.config;
  const sources = await modeSources(config, {
    cgroup2Mount,
    log,
    isEnrolled: (key) => reconciler.registry.byKey(key) !== null,
    baselineChanged: () => {
      config = { ...config, baseline: sources.baseline() ?? config.baseline };
      guarded(applySettings);
    },
  });
  /** SHA-256 of the configuration text in force (status: configDigest). */
  let configDigest = loaded.digest;
  for (const problem of missingWorkloadCgroups(config)) log.error(`${problem}; starting without it (see status: failures)`);
  const pinDir = config.pinDir ?? join(ensureBpffs(), 'egressguard');
  const datapath = openDatapath({
    objectPath: options.objectPath ?? defaultObjectPath,
    pinDir,
    attachCgroup: config.attachCgroup ?? cgroup2Mount,
    features: config.enforcement,
  });
  const sinks = createSinks(config.events.sinks, { node: config.node, log });
  const pipeline = new EventPipeline({ windowMs: config.events.aggregateWindowMs, sinks });
  // In memory and never blocked by a destination: `egressguard observe` works while every sink is down.
  const history = new DecisionHistory();
  pipeline.addSink(history);

  const store = new PolicyStore({ defaultNamespace: config.policyNamespace }, sources.resolver);
  const packet = config.enforcement.packet;
  const reconciler = new Reconciler({ datapath, policies: store, host: sources.host, log, packet });
  const workloadSource = sources.workloads;
  reconciler.onApplied((policies) => sources.enforcementChanged(reconciler, policies));
  const policySource = sources.policies;
  const learned = new LearnedAddresses(datapath, config.dns);
  const enricher = new Enricher({
    node: () => config.node,
    workloads: reconciler.registry,
    ruleLabel: (ruleId) => reconciler.ruleLabel(ruleId),
    dnsListen: config.dns.listen,
  });
  let proxy: DnsProxyHost | null = null;
  let refresher: NameRefresher | null = null;
  let configWatch: PathWatch | null = null;
  let control: ControlServer | null = null;
  const metrics = new AgentMetrics({
    kernel: () => datapath.stats(),
    flood: () => {
      const { eventsSuppressed, eventsDroppedByReader } = datapath.stats();
      return { suppressedByRateLimit: eventsSuppressed, droppedByReader: eventsDroppedByReader };
    },
    pipeline: () => pipeline.stats(),
    sinks: () => sinkStats(sinks),
    dns: () => proxy?.stats() ?? null,
    learned: () => ({ entries: datapath.learned().length, capacity: EG_MAX_LEARNED }),
    approvedFlows: () => ({
      entries: [...datapath.approvedFlows().values()].reduce((sum, flows) => sum + flows.held, 0),
      capacity: EG_MAX_FLOWS,
    }),
    workloads: () => ({ enrolled: reconciler.registry.all().length, capacity: EG_MAX_WORKLOADS }),
    policiesRejected: () => policySource.rejected().length,
    kernelFeatures: () => datapath.kernelFeatures,
  });
  sources.registerMetrics(metrics.registry, () => reconciler.failures());
  let metricsServer: MetricsServer | null = null;
  const rollout = new RolloutCounter();
  /** Every decision enters the pipeline here: counted once for the metrics, then aggregated for the sinks. */
  const decide = (event: FlowEvent) => {
    metrics.observeFlow(event);
    rollout.observe(event);
    pipeline.push(event);
  };
  const startedMs = Date.now();
  /** Modification times of the policy files applied since the last commit: the start of their propagation. */
  const pendingPolicyChanges: number[] = [];
  let lastKernelLoss = 0n;
  let lastKernelMalformed = 0n;

  /** Reached from file watchers, SIGHUP and the control socket: report, keep running, keep enforcing. */
  const guarded = (step: () => void): boolean => {
    const started = performance.now();
    try {
      step();
      metrics.observeReconcile((performance.now() - started) / 1000, 'ok');
      return true;
    } catch (error) {
      metrics.observeReconcile((performance.now() - started) / 1000, 'failed');
      log.error({ err: error }, 'reconciling failed; the kernel keeps its current state');
      return false;
    }
  };
  /** A file edited while the agent runs: from its modification time to now, when its rules are in the kernel. */
  const notePolicyChange = (file: string) => {
    try {
      const changedMs = statSync(file).mtimeMs;
      if (changedMs >= startedMs) pendingPolicyChanges.push(changedMs);
    } catch {
      // Gone again already: nothing to time.
    }
  };
  const commitPolicies = () => {
    const enforced = guarded(() => reconciler.syncPolicies());
    const now = Date.now();
    if (enforced) for (const changedMs of pendingPolicyChanges) metrics.observePropagation((now - changedMs) / 1000);
    pendingPolicyChanges.length = 0;
  };
  const applySettings = () => {
    const { baseline, dns, enforcement } = config;
    const proxyFamily = (v6: boolean) => dns.listen.find((a) => a.includes(':') === v6) ?? null;
    datapath.configure({
      defaultAction: baseline.mode === 'enforce' ? 'deny' : 'permit',
      dnsProxy: { ipv4: proxyFamily(false), ipv6: proxyFamily(true), port: dns.port },
      denyEch: baseline.denyEch,
      features: enforcement,
      maxLearnedPerWorkload: dns.maxIpsPerWorkload,
    });
    reconciler.setBaseline(baseline.denyList, baseline.permits);
    proxy?.setPolicy(dnsPolicy());
  };
  /** Set by the workload source's first report (Kubernetes mode: the kept set, or the first pod list). */
  let workloadsKnown = false;
  /** What the DNS proxy worker decides from: every workload's addresses and rules in force, and the baseline. */
  const dnsPolicy = (): DnsPolicySnapshot => ({
    workloadsKnown,
    workloads: reconciler.registry.all().map((w) => {
      const key = workloadKey(w);
      return { key, workloadId: w.workloadId, addresses: w.addresses, rules: reconciler.rulesFor(key) };
    }),
    baseline: { dnsNames: config.baseline.dnsNames, mode: config.baseline.mode },
  });
  let housekeepingRuns = 0;
  const housekeeping = () => {
    if (++housekeepingRuns % APPROVAL_SWEEP_EVERY === 0) datapath.sweepApprovals(process.hrtime.bigint());
    const removed = learned.expire();
    if (removed > 0) log.debug({ removed }, 'expired learned addresses removed');
    const { eventsLost, eventsDroppedByReader, eventsMalformed: malformed } = datapath.stats();
    const lost = eventsLost + eventsDroppedByReader;
    if (lost > lastKernelLoss) pipeline.reportKernelLoss(Number(lost - lastKernelLoss));
    if (malformed > lastKernelMalformed) pipeline.reportMalformedKernelEvents(Number(malformed - lastKernelMalformed));
    [lastKernelLoss, lastKernelMalformed] = [lost, malformed];
  };
  const reload = () => {
    try {
      const { config: next, digest } = loadConfigFile(configPath, cgroup2Mount);
      if (JSON.stringify(next.dns) !== JSON.stringify(config.dns)) log.warn('dns settings changed: restart the agent to apply them');
      if (JSON.stringify(next.metrics) !== JSON.stringify(config.metrics))
        log.warn('metrics settings changed: restart the agent to apply them');
      config = { ...next, dns: config.dns, metrics: config.metrics, baseline: sources.baseline() ?? next.baseline };
      configDigest = digest;
      applySettings();
      log.info({ configDigest, mode: config.baseline.mode }, 'configuration applied');
    } catch (error) {
      log.error({ err: error }, 'configuration rejected; the last good configuration stays in force');
    }
    guarded(() => {
      reconciler.setPacketEnforcement(config.enforcement.packet);
      sources.reload(config);
    });
  };
  const timer = setInterval(housekeeping, 2000);
  const agent: Agent = {
    status: () => {
      const [rejected, stats, dns] = [policySource.rejected(), pipeline.stats(), proxy?.stats() ?? null];
      return agentStatus({
        config,
        configDigest,
        kernelRelease: release(),
        datapath,
        reconciler,
        rejected,
        pipeline: stats,
        sinks: sinkStats(sinks),
        dns,
        rollout: (key) => rollout.of(key),
        kubernetes: sources.kubernetes(),
      });
    },
    reload,
    async stop() {
      process.off('SIGHUP', reload);
      clearInterval(timer);
      configWatch?.close();
      await policySource.stop();
      await workloadSource.stop();
      await refresher?.stop();
      await proxy?.stop();
      await control?.stop();
      await metricsServer?.stop();
      datapath.close();
      await pipeline.close();
    },
  };

  try {
    datapath.onEvent((event) => {
      const flow = enricher.fromKernel(event);
      // The suppressed events came before this one: their notice is due no later than this event's window.
      if (event.suppressed > 0) pipeline.reportSuppressed(flow.workload, event.suppressed);
      decide(flow);
    });
    if (datapath.adopted) log.info('adopted the pinned datapath of an earlier agent; enforcement continued meanwhile');
    applySettings();
    await policySource.start({
      apply: (changes) => {
        for (const [file, text] of changes) if (text !== null) notePolicyChange(file);
        return store.applyFiles(changes);
      },
      commit: commitPolicies,
    });
    await workloadSource.start((workloads) => {
      const first = !workloadsKnown;
      workloadsKnown = true;
      guarded(() => reconciler.setWorkloads(workloads));
      if (first) {
        // The proxy stops leaving unknown sources unanswered once it hears the workloads are known, changed or not.
        proxy?.setPolicy(dnsPolicy());
        log.info({ workloads: workloads.length }, 'workloads known: ready');
      }
      sources.workloadsApplied(reconciler.failures());
    });
    const { listen, port, upstreams, deniedRcode, maxIpsPerName } = config.dns;
    const { maxTcpConnections, maxTcpConnectionsPerWorkload, maxInflightQueries, maxInflightQueriesPerWorkload } = config.dns;
    const lifetime = config.dns;
    if (listen.length > 0) {
      const { minTtlSeconds, maxTtlSeconds, graceSeconds } = config.dns;
      const host = new DnsProxyHost({
        settings: {
          listen,
          port,
          upstreams,
          deniedRcode,
          lifetime: { minTtlSeconds, maxTtlSeconds, graceSeconds },
          maxTcpConnections,
          maxTcpConnectionsPerWorkload,
          maxInflightQueries,
          maxInflightQueriesPerWorkload,
        },
        workers: config.dns.workers,
        maxIpsPerName,
        policy: dnsPolicy(),
        learn: (workloadId, ruleIds, ips, ttlSeconds, name) => {
          // Named before the answer is released: the workload's first connect to it is reported with the name.
          enricher.fromWorkloadLookup(workloadId, name, ips);
          return learned.learnUntil(workloadId, ruleIds, ips, ttlSeconds);
        },
        onEvents: (events) => {
          for (const e of events) decide(enricher.fromDns(e));
        },
        onWorkerExit: (reason, restartInMs) => log.error({ restartInMs }, `${reason}; queries wait in the sockets until it is restarted`),
        sockets: loadNative(),
        // Sockets a holder keeps open across restarts (systemd socket activation or scripts/egressguard-dns-holder.py).
        inherited: inheritedDnsSockets(process.env, process.pid),
      });
      proxy = host;
      reconciler.onApplied(() => host.setPolicy(dnsPolicy()));
      await host.start();
      // The agent's own lookups name the addresses they teach, so events say how a name was learned.
      const names = new NameRefresher({
        upstreams,
        lifetime,
        maxIpsPerName,
        sink: {
          learn: (workloadId, ruleIds, ips, ttlSeconds, name) => {
            enricher.fromAgentLookup(workloadId, name, ips);
            return learned.learn(workloadId, ruleIds, ips, ttlSeconds);
          },
        },
      });
      refresher = names;
      reconciler.onApplied(() => names.setNames(reconciler.exactNames()));
      names.setNames(reconciler.exactNames());
    }
    configWatch = new PathWatch(configPath, reload, log);
    const ruleset = () => liveSnapshot(`agent ${config.controlSocket}`, config, reconciler.enrolled(), (id) => datapath.learned(id));
    control = new ControlServer(config.controlSocket, { status: agent.status, ruleset, reload, history });
    await control.start();
    if (config.metrics) {
      metricsServer = new MetricsServer(config.metrics.listen, metrics, () => readiness(agent.status(), pinDir, workloadsKnown));
      await metricsServer.start();
    }
    process.on('SIGHUP', reload);
  } catch (error) {
    await agent.stop();
    throw error;
  }
  log.info({ workloads: reconciler.registry.all().length, mode: config.baseline.mode }, 'egressguard agent running');
  return agent;
}

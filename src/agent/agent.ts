// The host-mode agent: wires configuration, policies, the kernel datapath, the DNS proxy and the event
// pipeline together, and keeps them in step as files change.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig, type AgentConfig, type BaselineEntryConfig, type WorkloadConfig } from './config.js';
import { ControlServer } from './control.js';
import { findCgroup2Mount, ensureBpffs } from '../datapath/mounts.js';
import { openDatapath } from '../datapath/datapath.js';
import { ruleIdFor } from '../policy/rule-ids.js';
import type { CidrEntry, Datapath, KernelEvent, KernelRule } from '../datapath/types.js';
import { PolicyStore } from '../policy/store.js';
import { compileForWorkload } from '../policy/compile.js';
import { dnsDecision, normalizeDomain } from '../policy/domains.js';
import type { CompiledRule, DomainPattern, PolicyDiagnostic } from '../policy/types.js';
import { formatDiagnostic } from '../policy/lint.js';
import { manifestFilesIn } from '../policy/manifest-files.js';
import { DnsProxy } from '../dns/proxy.js';
import { kernelLifetimeSeconds } from '../dns/lifetime.js';
import { NameRefresher } from '../dns/resolver.js';
import type { DnsDecision, DnsDecisionEvent, DnsWorkload } from '../dns/types.js';
import { EventPipeline } from '../events/pipeline.js';
import { createSinks, sinkStats, type DeliveredSink } from '../sinks/registry.js';
import type { FlowEvent, Tier } from '../events/types.js';
import { hostInterfacesOf } from '../identity/interfaces.js';
import { WorkloadRegistry, identityOf, workloadKey, type Workload } from '../identity/registry.js';
import { isIpv6Address } from '../model/ip.js';

/** The object file the build produces, relative to this compiled module (dist/src/agent). */
export const defaultObjectPath = new URL('../../../bpf/egressguard.bpf.o', import.meta.url).pathname;
const protocolNames: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };
/** Addresses whose DNS name is kept to name destinations in events. */
const NAMES_REMEMBERED = 65_536;

interface RuleLabel {
  tier: Tier;
  name: string;
  policy: FlowEvent['policy'];
}

export interface PolicyStatus {
  namespace: string;
  name: string;
  file: string;
  generation: number;
  /** Non-empty once the policy's rules are in the kernel (mirrors the FirewallPolicy status field the lab waits on). */
  ruleset: string;
  lastReconciledGeneration: number;
  workloads: string[];
  notEnforced: string[];
}

export interface WorkloadStatus {
  key: string;
  labels: Record<string, string>;
  addresses: string[];
  cgroup: string;
  workloadId: number;
  /** Names the workload may reach through permit rules (exact, `*.suffix` or `*`), in rule order. */
  allowedNames: string[];
  rules: {
    policy: string;
    name: string;
    action: string;
    protocol: string;
    ports: string;
    destinations: string[];
    domains: string[] | null;
    watch: boolean;
    notEnforced: string[];
  }[];
  learned: { ip: string; rule: string; expiresInSeconds: number }[];
}

export interface AgentStatus {
  node: string;
  mode: AgentConfig['baseline']['mode'];
  enforcement: AgentConfig['enforcement'];
  adopted: boolean;
  policies: PolicyStatus[];
  rejected: { file: string; messages: string[] }[];
  workloads: WorkloadStatus[];
  stats: Record<string, number | string>;
}

export interface AgentOptions {
  configPath: string;
  log: Logger;
  objectPath?: string;
}

function cidrEntry(group: string, entry: BaselineEntryConfig): CidrEntry {
  return {
    ruleId: ruleIdFor('baseline', group, entry.name),
    cidr: entry.cidr,
    protocol: entry.protocol,
    portLow: entry.portLow,
    portHigh: entry.portHigh,
    log: entry.log,
  };
}

function kernelRule(rule: CompiledRule): KernelRule {
  return {
    ruleId: rule.ruleId,
    action: rule.action,
    protocol: rule.protocol,
    portLow: rule.portLow,
    portHigh: rule.portHigh,
    cidrs: rule.cidrs,
    anyDestination: rule.anyDestination,
    web: rule.domains !== null,
    anyName: rule.domains?.some((d) => d.kind === 'any') ?? false,
    watch: rule.watch,
    log: rule.logging,
    tlsRequired: rule.tlsRequired,
    domains: rule.domains,
  };
}

/** The workload's host-side interfaces: declared, or found from its network namespace. */
function hostInterfaces(w: WorkloadConfig): string[] {
  if (w.interfaces.length > 0) return w.interfaces;
  return w.netns === null ? [] : hostInterfacesOf(w.netns);
}

export class Agent {
  private config: AgentConfig;
  private readonly registry = new WorkloadRegistry();
  private readonly store: PolicyStore;
  private readonly rulesByWorkload = new Map<string, CompiledRule[]>();
  private readonly ruleLabels = new Map<number, RuleLabel>();
  private readonly fileDigests = new Map<string, string>();
  private readonly rejected = new Map<string, string[]>();
  private readonly policyStatus = new Map<string, PolicyStatus>();
  /** Last name each address was learned for, per workload and node-wide, to name destinations in events. */
  private readonly namesByAddress = new Map<string, string>();
  private readonly watchers: FSWatcher[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private reloadTimer: NodeJS.Timeout | null = null;
  private lastKernelLoss = 0n;
  private lastKernelMalformed = 0n;
  private proxy: DnsProxy | null = null;
  private refresher: NameRefresher | null = null;
  private control: ControlServer | null = null;

  private constructor(
    private readonly options: AgentOptions,
    private readonly cgroup2Mount: string,
    private readonly datapath: Datapath,
    private readonly pipeline: EventPipeline,
    private readonly sinks: DeliveredSink[],
    config: AgentConfig,
  ) {
    this.config = config;
    this.store = new PolicyStore({ defaultNamespace: config.policyNamespace });
  }

  static async start(options: AgentOptions): Promise<Agent> {
    const cgroup2Mount = findCgroup2Mount();
    if (cgroup2Mount === null)
      throw new Error('no cgroup2 filesystem is mounted (see /proc/mounts): egressguard identifies workloads by cgroup v2');
    const config = loadConfig(options.configPath, cgroup2Mount);
    for (const w of config.workloads) {
      if (!existsSync(w.cgroup))
        throw new Error(
          `workload ${workloadKey(w)}: cgroup path ${w.cgroup} does not exist; create it or fix workloads[].cgroup in ${config.file}`,
        );
    }
    const bpffs = ensureBpffs();
    const datapath = openDatapath({
      objectPath: options.objectPath ?? defaultObjectPath,
      pinDir: config.pinDir ?? join(bpffs, 'egressguard'),
      attachCgroup: config.attachCgroup ?? cgroup2Mount,
      features: config.enforcement,
    });
    const sinks = createSinks(config.events.sinks, { node: config.node, log: options.log });
    const pipeline = new EventPipeline({ windowMs: config.events.aggregateWindowMs, sinks });
    const agent = new Agent(options, cgroup2Mount, datapath, pipeline, sinks, config);
    try {
      await agent.begin();
    } catch (error) {
      await agent.stop();
      throw error;
    }
    return agent;
  }

  private get log(): Logger {
    return this.options.log;
  }

  private async begin(): Promise<void> {
    this.datapath.onEvent((event) => this.onKernelEvent(event));
    if (this.datapath.adopted) this.log.info('adopted the pinned datapath of an earlier agent; enforcement continued meanwhile');
    this.applyDatapathSettings();
    this.loadPolicies();
    this.reconcile();
    const dns = this.config.dns;
    if (dns.listen.length > 0) {
      const learn = (workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number) =>
        this.learn(workloadId, ruleIds, ips, ttlSeconds);
      this.proxy = new DnsProxy({
        listen: dns.listen,
        port: dns.port,
        upstreams: dns.upstreams,
        deniedRcode: dns.deniedRcode,
        lifetime: dns,
        maxIpsPerName: dns.maxIpsPerName,
        oracle: {
          workloadFor: (ip) => {
            const w = this.registry.byAddress(ip);
            return w ? { key: workloadKey(w), workloadId: w.workloadId } : null;
          },
          decide: (w, qname) => this.decideName(w, qname),
        },
        sink: { learn },
        onEvent: (e) => this.onDnsEvent(e),
      });
      await this.proxy.start();
      this.refresher = new NameRefresher({
        upstreams: dns.upstreams,
        lifetime: dns,
        maxIpsPerName: dns.maxIpsPerName,
        sink: { learn },
      });
      this.refreshOwnNames();
    }
    this.watchFiles();
    this.timers.push(setInterval(() => this.housekeeping(), 2000));
    this.control = new ControlServer(this.config.controlSocket, {
      status: () => this.status(),
      reload: () => this.reload(),
    });
    await this.control.start();
    process.on('SIGHUP', this.onSighup);
    this.log.info({ workloads: this.registry.all().length, mode: this.config.baseline.mode }, 'egressguard agent running');
  }

  private readonly onSighup = (): void => {
    this.reload();
  };

  private applyDatapathSettings(): void {
    const { baseline, dns } = this.config;
    const v4 = dns.listen.find((a) => !a.includes(':')) ?? null;
    const v6 = dns.listen.find((a) => a.includes(':')) ?? null;
    this.datapath.configure({
      defaultAction: baseline.mode === 'enforce' ? 'deny' : 'permit',
      dnsProxy: { ipv4: v4, ipv6: v6, port: dns.port },
      denyEch: baseline.denyEch,
      features: this.config.enforcement,
      maxLearnedPerWorkload: dns.maxIpsPerWorkload,
    });
    this.datapath.setDenyList(baseline.denyList.map((e) => cidrEntry('deny-list', e)));
    this.datapath.setBaseline(baseline.permits.map((e) => cidrEntry('permits', e)));
    this.ruleLabels.clear();
    for (const e of baseline.denyList)
      this.ruleLabels.set(ruleIdFor('baseline', 'deny-list', e.name), { tier: 0, name: e.name, policy: null });
    for (const e of baseline.permits)
      this.ruleLabels.set(ruleIdFor('baseline', 'permits', e.name), { tier: 1, name: e.name, policy: null });
  }

  /** Read every policy file; a file with errors keeps its previous objects in force. */
  private loadPolicies(): void {
    const seen = new Set<string>();
    for (const root of this.config.policies) {
      if (!existsSync(root)) this.log.warn({ path: root }, 'policy path does not exist (yet); watching for it');
      for (const file of existsSync(root) ? manifestFilesIn(root) : []) {
        seen.add(file);
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (error) {
          this.log.error({ file, err: error }, 'cannot read policy file; previous objects stay in force');
          continue;
        }
        const digest = createHash('sha256').update(text).digest('hex');
        if (this.fileDigests.get(file) === digest) continue;
        this.fileDigests.set(file, digest);
        const diagnostics: PolicyDiagnostic[] = this.store.applyFile(file, text);
        const errors = diagnostics.filter((d) => d.severity === 'error');
        for (const d of diagnostics)
          (d.severity === 'error' ? this.log.error.bind(this.log) : this.log.warn.bind(this.log))(formatDiagnostic(d));
        if (errors.length > 0) {
          this.rejected.set(file, errors.map(formatDiagnostic));
          this.log.error({ file }, 'policy file rejected; the last good version stays in force');
        } else {
          this.rejected.delete(file);
        }
      }
    }
    for (const file of [...this.fileDigests.keys()]) {
      if (seen.has(file)) continue;
      this.fileDigests.delete(file);
      this.rejected.delete(file);
      this.store.removeFile(file);
      this.log.info({ file }, 'policy file removed; its objects are withdrawn');
    }
  }

  /** Compile every workload's rules and push them to the kernel. */
  private reconcile(): void {
    const policies = this.store.policies();
    const workloads: Workload[] = [];
    const selectedBy = new Map<string, Set<string>>();
    for (const w of this.config.workloads) {
      const key = workloadKey(w);
      const compiled = compileForWorkload(policies, { namespace: w.namespace, labels: w.labels });
      const active = compiled.filter((r) => r.active);
      let interfaces: string[] = [];
      try {
        if (this.config.enforcement.packet) interfaces = hostInterfaces(w);
      } catch (error) {
        // Socket-level enforcement does not depend on it: enrol the workload, say what is missing.
        this.log.error({ workload: key, err: error }, 'packet-layer backstop not attached for workload');
      }
      let workloadId: number;
      let cgroupId: bigint;
      try {
        cgroupId = statSync(w.cgroup, { bigint: true }).ino;
        const network = this.config.enforcement.packet ? { interfaces, addresses: w.addresses } : undefined;
        workloadId = this.datapath.setWorkload(w.cgroup, active.map(kernelRule), network);
      } catch (error) {
        this.log.error({ workload: key, err: error }, 'cannot enforce rules for workload; its previous rules stay in force');
        const previous = this.registry.byKey(key);
        if (previous) workloads.push(previous);
        continue;
      }
      this.rulesByWorkload.set(key, compiled);
      for (const rule of compiled) {
        this.ruleLabels.set(rule.ruleId, { tier: 2, name: rule.name, policy: rule.policy });
        const policyKey = `${rule.policy.namespace}/${rule.policy.name}`;
        if (!selectedBy.has(policyKey)) selectedBy.set(policyKey, new Set());
        selectedBy.get(policyKey)!.add(key);
      }
      workloads.push({ ...w, cgroupPath: w.cgroup, cgroupId, workloadId });
    }
    // Withdraw what the kernel enforces beyond the configuration: workloads removed from it, including while no
    // agent was running (adopted state), and cgroups that no longer exist.
    const configured = new Set(
      this.config.workloads.flatMap((w) => (existsSync(w.cgroup) ? [statSync(w.cgroup, { bigint: true }).ino] : [])),
    );
    for (const cgroupId of this.datapath.workloads().keys()) {
      if (configured.has(cgroupId)) continue;
      this.datapath.removeWorkload(cgroupId);
      const previous = this.registry.all().find((w) => w.cgroupId === cgroupId);
      if (previous) this.rulesByWorkload.delete(workloadKey(previous));
      this.log.info(
        { workload: previous ? workloadKey(previous) : `cgroup id ${cgroupId}` },
        'workload not in the configuration; no longer enforced',
      );
    }
    this.registry.replace(workloads);
    this.policyStatus.clear();
    for (const entry of this.store.entries()) {
      const key = `${entry.policy.namespace}/${entry.policy.name}`;
      const rules = [...this.rulesByWorkload.values()].flat().filter((r) => `${r.policy.namespace}/${r.policy.name}` === key);
      this.policyStatus.set(key, {
        namespace: entry.policy.namespace,
        name: entry.policy.name,
        file: entry.file,
        generation: entry.policy.generation,
        ruleset: createHash('sha256')
          .update(JSON.stringify(rules.map(kernelRuleDigest)))
          .digest('hex')
          .slice(0, 16),
        lastReconciledGeneration: entry.policy.generation,
        workloads: [...(selectedBy.get(key) ?? [])].sort(),
        notEnforced: [...new Set([...entry.warnings, ...rules.flatMap((r) => r.notEnforced.map((n) => `rule ${r.name}: ${n}`))])],
      });
    }
    this.refreshOwnNames();
  }

  /** Exact names of every webGroup rule are resolved by the agent itself, so their addresses are known before any workload asks. */
  private refreshOwnNames(): void {
    if (!this.refresher) return;
    const names: { workloadId: number; ruleIds: number[]; name: string }[] = [];
    for (const w of this.registry.all()) {
      const byName = new Map<string, number[]>();
      for (const rule of this.rulesByWorkload.get(workloadKey(w)) ?? []) {
        if (!rule.active) continue;
        for (const d of rule.domains ?? []) {
          if (d.kind !== 'exact') continue;
          byName.set(d.name, [...(byName.get(d.name) ?? []), rule.ruleId]);
        }
      }
      for (const [name, ruleIds] of byName) names.push({ workloadId: w.workloadId, ruleIds, name });
    }
    this.refresher.setNames(names);
  }

  private decideName(dnsWorkload: DnsWorkload, qname: string): DnsDecision {
    const name = normalizeDomain(qname);
    const rules = this.rulesByWorkload.get(dnsWorkload.key) ?? [];
    const decision = dnsDecision(rules, name);
    // A `*` rule accepts any address in the kernel: learning for it would only fill the map.
    const learnFor = decision.learnFor.filter((r) => !r.domains?.some((d) => d.kind === 'any')).map((r) => r.ruleId);
    const baselineSuffix = this.config.baseline.dnsNames.find((s) => name === s || name.endsWith(`.${s}`));
    if (baselineSuffix !== undefined)
      return { verdict: 'permitted', tier: 1, ruleName: `baseline-dns:${baselineSuffix}`, policy: null, learnFor };
    if (decision.action !== 'default' && decision.rule)
      return {
        verdict: decision.action === 'permit' ? 'permitted' : 'denied',
        tier: 2,
        ruleName: decision.rule.name,
        policy: decision.rule.policy,
        learnFor,
      };
    const enforce = this.config.baseline.mode === 'enforce';
    return { verdict: enforce ? 'denied' : 'permitted', tier: 3, ruleName: 'default-action', policy: null, learnFor };
  }

  private learn(workloadId: number, ruleIds: number[], ips: string[], ttlSeconds: number): void {
    if (ruleIds.length === 0 || ips.length === 0) return;
    const lifetime = BigInt(kernelLifetimeSeconds(ttlSeconds, this.config.dns)) * 1_000_000_000n;
    const expiresAtNs = process.hrtime.bigint() + lifetime;
    this.datapath.learn(ruleIds.flatMap((ruleId) => ips.map((ip) => ({ workloadId, ruleId, ip, expiresAtNs }))));
  }

  private onDnsEvent(e: DnsDecisionEvent): void {
    const w = e.workloadKey ? this.registry.byKey(e.workloadKey) : null;
    for (const ip of e.answers) {
      this.rememberName(ip, e.query);
      if (w) this.rememberName(`${w.workloadId}|${ip}`, e.query);
    }
    this.pipeline.push({
      time: e.time,
      node: this.config.node,
      workload: w ? identityOf(w) : { namespace: '', name: '(unknown source)', labels: {}, podIps: [e.sourceIp], cgroupId: '' },
      // The proxy cannot see which resolver the workload addressed (the kernel rewrote it); report the proxy it reached.
      destination: { ip: this.proxyAddressFor(e.sourceIp), port: 53, protocol: e.transport, family: e.sourceIp.includes(':') ? 6 : 4 },
      fqdn: e.query,
      fqdnSource: 'dns',
      layer: 'dns',
      verdict: e.verdict,
      tier: e.tier,
      policy: e.policy,
      rule: e.ruleName,
      ...(e.reason ? { reason: e.reason } : {}),
      count: 1,
      dns: { query: e.query, type: e.qtype, rcode: e.rcode, answers: e.answers },
      eventId: '',
    });
  }

  /** Bounded: workloads decide how many names they look up. The oldest entries go first. */
  private rememberName(key: string, name: string): void {
    this.namesByAddress.delete(key);
    this.namesByAddress.set(key, name);
    if (this.namesByAddress.size > NAMES_REMEMBERED) this.namesByAddress.delete(this.namesByAddress.keys().next().value!);
  }

  private proxyAddressFor(sourceIp: string): string {
    const wantV6 = isIpv6Address(sourceIp);
    return this.config.dns.listen.find((a) => a.includes(':') === wantV6) ?? this.config.dns.listen[0] ?? '';
  }

  private onKernelEvent(event: KernelEvent): void {
    const w = this.registry.byId(event.workloadId);
    const label: RuleLabel =
      event.tier === 3
        ? { tier: 3, name: 'default-action', policy: null }
        : (this.ruleLabels.get(event.ruleId) ?? { tier: event.tier, name: `rule#${event.ruleId}`, policy: null });
    const learnedName = this.namesByAddress.get(`${event.workloadId}|${event.ip}`) ?? this.namesByAddress.get(event.ip) ?? null;
    const fqdn = event.sni ?? learnedName;
    this.pipeline.push({
      time: new Date().toISOString(),
      node: this.config.node,
      workload: w ? identityOf(w) : { namespace: '', name: '(unenrolled)', labels: {}, podIps: [], cgroupId: event.cgroupId.toString() },
      process: { pid: event.pid, comm: event.comm },
      destination: {
        ip: event.ip,
        port: event.port,
        protocol: protocolNames[event.protocol] ?? String(event.protocol),
        family: event.family,
      },
      fqdn,
      fqdnSource: event.sni ? 'sni' : fqdn ? 'dns' : 'none',
      layer: event.layer,
      verdict: event.verdict,
      tier: event.tier,
      policy: label.policy,
      rule: label.name,
      count: 1,
      eventId: '',
    });
  }

  private housekeeping(): void {
    const removed = this.datapath.expireLearned(process.hrtime.bigint());
    if (removed > 0) this.log.debug({ removed }, 'expired learned addresses removed');
    const { eventsLost: lost, eventsMalformed: malformed } = this.datapath.stats();
    if (lost > this.lastKernelLoss) {
      this.pipeline.reportKernelLoss(Number(lost - this.lastKernelLoss));
      this.lastKernelLoss = lost;
    }
    if (malformed > this.lastKernelMalformed) {
      this.pipeline.reportMalformedKernelEvents(Number(malformed - this.lastKernelMalformed));
      this.lastKernelMalformed = malformed;
    }
  }

  private watchFiles(): void {
    const targets = new Set<string>([this.config.file]);
    for (const p of this.config.policies) targets.add(existsSync(p) && statSync(p).isDirectory() ? p : join(p, '..'));
    for (const target of targets) {
      try {
        this.watchers.push(watch(target, () => this.scheduleReload()));
      } catch (error) {
        this.log.warn({ path: target, err: error }, 'cannot watch; send SIGHUP to apply changes');
      }
    }
  }

  private scheduleReload(): void {
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.reload();
    }, 150);
  }

  /** Re-read the configuration and the policies; an invalid configuration keeps the last good one. */
  reload(): void {
    try {
      const next = loadConfig(this.options.configPath, this.cgroup2Mount);
      if (JSON.stringify(next.dns) !== JSON.stringify(this.config.dns))
        this.log.warn('dns settings changed: restart the agent to apply them');
      this.config = { ...next, dns: this.config.dns };
      this.applyDatapathSettings();
    } catch (error) {
      this.log.error({ err: error }, 'configuration rejected; the last good configuration stays in force');
    }
    try {
      this.loadPolicies();
      this.reconcile();
    } catch (error) {
      // Reached from file watchers, SIGHUP and the control socket: report, keep running, keep enforcing.
      this.log.error({ err: error }, 'reconciling failed; the kernel keeps its current state');
    }
  }

  status(): AgentStatus {
    const now = process.hrtime.bigint();
    const ruleName = (ruleId: number) => {
      const label = this.ruleLabels.get(ruleId);
      return label ? (label.policy ? `${label.policy.namespace}/${label.policy.name}:${label.name}` : label.name) : `rule#${ruleId}`;
    };
    const workloads = this.registry.all().map((w): WorkloadStatus => ({
      key: workloadKey(w),
      labels: w.labels,
      addresses: w.addresses,
      cgroup: w.cgroupPath,
      workloadId: w.workloadId,
      allowedNames: [
        ...new Set(
          (this.rulesByWorkload.get(workloadKey(w)) ?? [])
            .filter((r) => r.active && r.action === 'permit' && !r.watch)
            .flatMap((r) => (r.domains ?? []).map(patternText)),
        ),
      ],
      rules: (this.rulesByWorkload.get(workloadKey(w)) ?? []).map((r) => ({
        policy: `${r.policy.namespace}/${r.policy.name}`,
        name: r.name,
        action: r.action,
        protocol: r.protocol,
        ports:
          r.portLow === 0 && r.portHigh === 65535 ? 'any' : r.portLow === r.portHigh ? String(r.portLow) : `${r.portLow}-${r.portHigh}`,
        destinations: r.anyDestination ? ['any'] : r.cidrs.map((c) => `${c.address}/${c.prefix}`),
        domains: r.domains?.map(patternText) ?? null,
        watch: r.watch,
        notEnforced: r.active ? r.notEnforced : ['inactive: ' + r.notEnforced.join('; ')],
      })),
      learned: this.datapath.learned(w.workloadId).map((l) => ({
        ip: l.ip,
        rule: ruleName(l.ruleId),
        expiresInSeconds: Math.max(0, Math.round(Number(l.expiresAtNs - now) / 1e9)),
      })),
    }));
    const kernel = this.datapath.stats();
    const pipeline = this.pipeline.stats();
    return {
      node: this.config.node,
      mode: this.config.baseline.mode,
      enforcement: this.config.enforcement,
      adopted: this.datapath.adopted,
      policies: [...this.policyStatus.values()],
      rejected: [...this.rejected].map(([file, messages]) => ({ file, messages })),
      workloads,
      stats: {
        ...pipeline,
        ...sinkStats(this.sinks),
        kernelEventsLost: kernel.eventsLost.toString(),
        kernelEventsMalformed: kernel.eventsMalformed.toString(),
        decisionsPermitted: kernel.decisionsPermitted.toString(),
        decisionsDenied: kernel.decisionsDenied.toString(),
        dnsSteered: kernel.dnsSteered.toString(),
        ...(this.proxy ? Object.fromEntries(Object.entries(this.proxy.stats()).map(([k, v]) => [`dns.${k}`, v])) : {}),
      },
    };
  }

  /** Stop the agent. Pinned programs and maps stay in the kernel and keep enforcing until `teardown`. */
  async stop(): Promise<void> {
    process.off('SIGHUP', this.onSighup);
    for (const t of this.timers) clearInterval(t);
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    for (const w of this.watchers) w.close();
    await this.refresher?.stop();
    await this.proxy?.stop();
    await this.control?.stop();
    this.datapath.close();
    await this.pipeline.close();
  }
}

function patternText(pattern: DomainPattern): string {
  return pattern.kind === 'exact' ? pattern.name : pattern.kind === 'wildcard' ? `*.${pattern.suffix}` : '*';
}

function kernelRuleDigest(rule: CompiledRule): unknown {
  return { ...kernelRule(rule), policy: rule.policy };
}

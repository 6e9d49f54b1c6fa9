// Kubernetes mode's policy side as the composition root uses it: the EgressBaseline (posture and enforced
// namespaces), the FirewallPolicy/WebgroupPolicy source, this node's report, and the Lease-elected status writer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { PolicyEnforcement } from '../agent/reconciler.js';
import type { PolicySink, PolicySource } from '../policy/source.js';
import type { KubeClient } from './api.js';
import { BaselineSource, DEFAULT_BASELINE_NAME, type BaselineState } from './baseline.js';
import { readKeptPolicies, writeKeptPolicies, type KeptCopy, type KeptPolicySet } from './kept-policies.js';
import { KubePolicySource } from './policy-source.js';
import { LeaderElector, NodeReportBuilder, NodeReporter, PolicyStatusWriter, type LeaseTiming } from './status-writer.js';

/** The namespace the agent runs in (its Leases live there): the service account's namespace file, else POD_NAMESPACE. */
export function agentNamespace(serviceAccountDir: string, env: NodeJS.ProcessEnv = process.env): string {
  try {
    const text = readFileSync(join(serviceAccountDir, 'namespace'), 'utf8').trim();
    if (text !== '') return text;
  } catch {
    // Outside a pod: the environment says.
  }
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  throw new Error(
    `the agent's namespace is unknown: no ${join(serviceAccountDir, 'namespace')} and no POD_NAMESPACE (set it from metadata.namespace)`,
  );
}

export interface PolicyPlaneOptions {
  client: KubeClient;
  node: string;
  /** Where the node reports and the status Lease live. */
  agentNamespace: string;
  /** The configuration's namespaces: enforced only while no valid EgressBaseline was ever read (fail closed). */
  fallbackNamespaces: readonly string[];
  baselineName?: string;
  log: Logger;
  /** The posture changed (and once at start): apply mode, tiers 0/1 and the enforced namespaces. */
  onBaseline: (state: BaselineState) => void;
  timing?: LeaseTiming;
  /**
   * Where the last listed policies and baseline are kept for a restarted agent (kept-policies.ts); null: none kept,
   * and a start with the API server down waits for it.
   */
  keptFile: string | null;
}

/** What Kubernetes mode adds to `egressguard status`. */
export interface PolicyPlaneStatus {
  baseline: { name: string; inForce: BaselineState['source']; problems: string[]; warnings: string[] };
  namespaces: string[];
  policies: {
    synced: boolean;
    problems: string[];
    rejected: number;
    /** Until the first full list: the copy kept by an earlier agent that is in force, and when it was written. */
    kept: { writtenAt: string; policies: number } | null;
  };
  report: { current: boolean; lastError: string | null };
  statusWriter: { leader: boolean; written: number; conflicts: number; failed: number; events: number };
}

export class PolicyPlane implements PolicySource {
  readonly policies: KubePolicySource;
  private readonly baseline: BaselineSource;
  private readonly reporter: NodeReporter;
  private readonly elector: LeaderElector;
  private readonly writer: PolicyStatusWriter;
  private namespaces: string[];
  private readonly baselineName: string;
  private enforcement: (policyKey: string) => PolicyEnforcement | undefined = () => undefined;
  private readonly report: NodeReportBuilder;
  /** A report was handed to the reporter (the first one is, changed or not: the Lease says the node is there). */
  private reported = false;
  private saveScheduled = false;
  private savedText = '';

  constructor(private readonly options: PolicyPlaneOptions) {
    const { client, node, log, timing } = options;
    this.baselineName = options.baselineName ?? DEFAULT_BASELINE_NAME;
    this.namespaces = [...options.fallbackNamespaces];
    this.baseline = new BaselineSource({
      client,
      name: this.baselineName,
      fallbackNamespaces: options.fallbackNamespaces,
      log,
      onChange: (state) => this.baselineChanged(state),
      onListed: () => this.scheduleSave(),
    });
    this.policies = new KubePolicySource({ client, namespaces: this.namespaces, log });
    this.report = new NodeReportBuilder(
      node,
      (key) => this.enforcement(key),
      (ns, name) => this.policies.acceptedGeneration(ns, name),
    );
    // A batch may move a policy's accepted generation without changing its rules (the same spec under a new
    // generation): the reconciler has no pass for it, the report does.
    this.policies.onChange((policyKeys) => {
      this.scheduleSave();
      this.enforcementChanged(policyKeys);
    });
    this.reporter = new NodeReporter({ client, namespace: options.agentNamespace, node, log, ...(timing ? { timing } : {}) });
    this.writer = new PolicyStatusWriter({
      client,
      namespace: options.agentNamespace,
      node,
      namespaces: this.namespaces,
      policies: this.policies,
      baseline: this.baseline,
      log,
      ...(timing ? { timing } : {}),
    });
    this.elector = new LeaderElector({
      client,
      namespace: options.agentNamespace,
      identity: `${node}_${process.pid}`,
      log,
      ...(timing ? { timing } : {}),
      onStarted: () => void this.writer.start(),
      onStopped: () => void this.writer.stop(),
    });
  }

  /** The resolver the policy store reports `selector.service` findings with. */
  get resolver() {
    return this.policies.resolver;
  }

  /**
   * The EgressBaseline first (it names the namespaces), then the policies; then report and campaign. With the API
   * server unreachable, a valid kept copy stands in for both until they are listed.
   */
  async start(sink: PolicySink): Promise<void> {
    const kept = this.readKept();
    await this.baseline.start(undefined, kept ? { ...kept.set.baseline, writtenAt: kept.writtenAt } : undefined);
    await this.policies.start(sink, kept ? { kept: { writtenAt: kept.writtenAt, policies: kept.set.policies } } : {});
    // The copy is written once both sides are listed, whichever is last, even when the lists change nothing.
    void this.policies.listed.then(() => this.scheduleSave());
    this.reporter.start();
    this.elector.start();
  }

  /** Resolves once the store holds a policy set: listed, or the kept copy while the API server is away. */
  get policiesReady(): Promise<void> {
    return this.policies.ready;
  }

  private readKept(): KeptCopy | null {
    const path = this.options.keptFile;
    if (path === null) return null;
    const read = readKeptPolicies(path);
    if (read === null) return null;
    if (!read.ok) {
      this.options.log.error(
        { path, reason: read.reason },
        'the kept policies are rejected; a start with the API server down waits for it to list them',
      );
      return null;
    }
    return read.copy;
  }

  /** Keep what the API server listed for a restarted agent (never the kept copy itself, never a partial list). */
  private scheduleSave(): void {
    if (this.options.keptFile === null || this.saveScheduled) return;
    this.saveScheduled = true;
    setImmediate(() => {
      this.saveScheduled = false;
      const path = this.options.keptFile;
      const baseline = this.baseline.keptBaseline();
      if (path === null || baseline === null || !this.policies.synced()) return;
      const set: KeptPolicySet = { baseline, policies: this.policies.keptPolicies() };
      const text = JSON.stringify(set);
      if (text === this.savedText) return;
      try {
        writeKeptPolicies(path, set);
        this.savedText = text;
      } catch (error) {
        this.options.log.warn({ path, err: error }, 'cannot keep the policies for a restart');
      }
    });
  }

  /** What the reconciler enforces per policy (Reconciler.enforcement): read for this node's report. */
  reportFrom(enforcement: (policyKey: string) => PolicyEnforcement | undefined): void {
    this.enforcement = enforcement;
  }

  /** The kernel changed for these policies (`namespace/name`): report what this node now enforces. */
  enforcementChanged(policyKeys: Iterable<string>): void {
    if (!this.report.refresh(policyKeys) && this.reported) return;
    this.reported = true;
    void this.reporter.update(this.report.report());
  }

  /** The enforced namespaces in force. */
  enforcedNamespaces(): string[] {
    return [...this.namespaces];
  }

  /** Objects whose newest generation was rejected (their last good generation stays in force). */
  rejected(): { file: string; messages: string[] }[] {
    return this.policies
      .verdicts()
      .flatMap((v) => (v.rejected ? [{ file: `${v.kind} ${v.namespace}/${v.name}`, messages: v.rejected.messages }] : []));
  }

  status(): PolicyPlaneStatus {
    const state = this.baseline.state();
    return {
      baseline: { name: this.baselineName, inForce: state.source, problems: state.problems, warnings: state.result.warnings },
      namespaces: this.enforcedNamespaces(),
      policies: {
        synced: this.policies.synced(),
        problems: this.policies.problems(),
        rejected: this.rejected().length,
        kept: this.policies.restored(),
      },
      report: { current: this.reporter.current, lastError: this.reporter.lastError },
      statusWriter: { leader: this.elector.isLeader, ...this.writer.stats },
    };
  }

  async stop(): Promise<void> {
    await this.elector.stop();
    await this.writer.stop();
    await this.reporter.stop();
    await this.policies.stop();
    await this.baseline.stop();
  }

  private baselineChanged(state: BaselineState): void {
    const namespaces = state.result.namespaces;
    if (namespaces.join('\n') !== this.namespaces.join('\n')) {
      this.namespaces = [...namespaces];
      void this.policies.setNamespaces(namespaces);
      void this.writer.setNamespaces(namespaces);
    }
    this.scheduleSave();
    this.options.onBaseline(state);
  }
}

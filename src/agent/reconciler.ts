// The reconciler keeps the kernel's per-workload rules equal to what the accepted policies say about the workloads
// the sources report, and does only the work a change needs: a policy change recompiles the workloads that policy
// selects (before or after the change), a workload change that workload. It also keeps what status and events read
// back: per-policy status, per-workload rules in force, rule labels.

import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BaselineEntryConfig } from './config.js';
import type { PolicyStatus } from './status.js';
import { RuleIdAllocator } from '../policy/rule-ids.js';
import type { CidrEntry, Datapath, KernelRule, WorkloadNetwork } from '../datapath/types.js';
import type { RuleLabel } from '../events/enrich.js';
import { WorkloadRegistry, workloadKey, type Workload } from '../identity/registry.js';
import type { WorkloadHost, WorkloadSpec } from '../identity/source.js';
import { compilePolicyForWorkload, policySelects } from '../policy/compile.js';
import { shadowedByDeny } from '../policy/domains.js';
import type { PolicyStore } from '../policy/store.js';
import type { CompiledRule } from '../policy/types.js';
import type { ValidatedPolicy } from '../policy/validate.js';

/** The compiler as the reconciler uses it. Every call to the policy compiler is here. */
export interface ReconcileCompiler {
  /** True when some rule of `policy` selects the workload (same namespace). */
  selects(policy: ValidatedPolicy, workload: WorkloadSpec): boolean;
  /** The rules of `policy` that apply to the workload, in evaluation order. */
  compile(policy: ValidatedPolicy, workload: WorkloadSpec): CompiledRule[];
}

export const policyCompiler: ReconcileCompiler = {
  selects: (policy, w) => policySelects(policy, w),
  compile: (policy, w) => compilePolicyForWorkload(policy, w),
};

export interface ReconcilerOptions {
  datapath: Datapath;
  /**
   * The accepted policies (the PolicyStore): a sync reads what changed since the last one from its journal (the whole
   * set only the first time), so one change costs the same at 10,000 policies as at 10; status reads entries() for
   * their files and warnings.
   */
  policies: Pick<PolicyStore, 'revision' | 'changesSince' | 'objects' | 'get' | 'entries'>;
  host: WorkloadHost;
  log: Logger;
  /** Attach the packet-layer backstop to workloads (config enforcement.packet). */
  packet: boolean;
  compiler?: ReconcileCompiler;
}

interface WorkloadState {
  spec: WorkloadSpec;
  /** The spec as JSON: an unchanged spec (and cgroup) is not enrolled again. */
  specText: string;
  cgroupId: bigint | null;
  /** The workload as enrolled in the kernel; null until an enrolment succeeded. */
  enrolled: Workload | null;
  /** The rules in force, per selecting policy key (`namespace/name`). */
  byPolicy: Map<string, CompiledRule[]>;
  /** The rules in force, in evaluation order (policies by name, rules in array order). */
  rules: CompiledRule[];
  /** The last enrolment failed or lacked its backstop interfaces: recompiled and enrolled again on every pass. */
  retry: boolean;
  /** Why the workload's own rules are not in force (it is enrolled fail-closed, or not at all); null when they are. */
  error: string | null;
}

/** What the kernel enforces of one accepted FirewallPolicy on this node. */
export interface PolicyEnforcement {
  /** Digest of the policy's rules in force for its workloads ('' until a pass compiled it). */
  ruleset: string;
  /** Keys (`namespace/name`) of the workloads whose rules in force include the policy's, sorted. */
  workloads: string[];
  /** Parts of its rules not enforced, one line each. */
  ruleNotEnforced: string[];
}

/** A workload that cannot be enforced as its policies say, and what it gets instead. */
export interface WorkloadFailure {
  key: string;
  cgroup: string;
  error: string;
  /** 'deny-all': enrolled with the fail-closed rule alone (DNS still steered); 'none': not enrolled at all. */
  enforced: 'deny-all' | 'none';
}

/**
 * Reserved id of the rule a workload gets when its own rules cannot be enforced: policy rule ids are allocated from
 * FIRST_ALLOCATED_RULE_ID (see RuleIdAllocator), so it never collides with one.
 */
export const FAIL_CLOSED_RULE_ID = 1;

/** Deny everything (tier 0 and tier 1 still come first): what a workload gets when its own rules cannot be enforced. */
function failClosedRule(spec: WorkloadSpec): CompiledRule {
  return {
    ruleId: FAIL_CLOSED_RULE_ID,
    policy: { namespace: spec.namespace, name: 'egressguard-fail-closed', generation: 0 },
    name: 'fail-closed',
    action: 'deny',
    protocol: 'any',
    portLow: 0,
    portHigh: 65535,
    cidrs: [],
    anyDestination: true,
    domains: null,
    watch: false,
    logging: true,
    tlsRequired: false,
    notEnforced: [],
    active: true,
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function policyKeyOf(policy: { namespace: string; name: string }): string {
  return `${policy.namespace}/${policy.name}`;
}

function cidrEntry(ruleId: number, entry: BaselineEntryConfig): CidrEntry {
  return {
    ruleId,
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

/** The workload's rules in evaluation order: policies in name order (one namespace), rules in array order. */
function assemble(byPolicy: Map<string, CompiledRule[]>): CompiledRule[] {
  return [...byPolicy.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).flatMap((key) => byPolicy.get(key)!);
}

export class Reconciler {
  private readonly compiler: ReconcileCompiler;
  private packet: boolean;
  /** Workloads in source order. */
  private workloads = new Map<string, WorkloadState>();
  private readonly workloadsByNamespace = new Map<string, Set<string>>();
  /** Accepted policies as last synced. */
  private readonly policies = new Map<string, ValidatedPolicy>();
  private readonly policiesByNamespace = new Map<string, Map<string, ValidatedPolicy>>();
  /** Workloads whose rules in force include each policy's. */
  private readonly selected = new Map<string, Set<string>>();
  private readonly policyResults = new Map<string, { ruleset: string; ruleNotEnforced: string[] }>();
  private readonly tier2Labels = new Map<number, { label: RuleLabel; uses: number }>();
  private baselineLabels = new Map<number, RuleLabel>();
  /** Kernel rule ids, collision-free on the node (see RuleIdAllocator). */
  private readonly ruleIds = new RuleIdAllocator();
  private baselineNames: (readonly [string, string])[] = [];
  private readonly registryView = new WorkloadRegistry();
  private readonly listeners: Array<(policies: ReadonlySet<string>) => void> = [];
  /** The store's revision at the last sync (null before the first, which reads the whole set). */
  private policiesRevision: number | null = null;

  constructor(private readonly options: ReconcilerOptions) {
    this.compiler = options.compiler ?? policyCompiler;
    this.packet = options.packet;
  }

  private get log(): Logger {
    return this.options.log;
  }

  /** Enrolled workloads by key, id and address (read by the DNS proxy and the enricher). */
  get registry(): WorkloadRegistry {
    return this.registryView;
  }

  /**
   * Called after every pass that changed what the kernel enforces, with the policies (`namespace/name`) whose rules in
   * force, workloads or acceptance moved: what a report of this node's enforcement needs to read again.
   */
  onApplied(listener: (policies: ReadonlySet<string>) => void): void {
    this.listeners.push(listener);
  }

  /** Tier 0 (deny list) and tier 1 (baseline permits): pushed as a whole, labelled for events. */
  setBaseline(denyList: BaselineEntryConfig[], permits: BaselineEntryConfig[]): void {
    // Baseline ids come from the same allocator under the namespace "" (no Kubernetes namespace is empty).
    const groups = [
      { group: 'deny-list', entries: denyList, tier: 0 as const },
      { group: 'permits', entries: permits, tier: 1 as const },
    ];
    const previous = this.baselineNames;
    this.baselineNames = groups.flatMap(({ group, entries }) => entries.map((e) => [group, e.name] as const));
    const ids = groups.map(({ group, entries }) => entries.map((e) => this.ruleIds.idFor('', group, e.name)));
    this.options.datapath.setDenyList(denyList.map((e, i) => cidrEntry(ids[0]![i]!, e)));
    this.options.datapath.setBaseline(permits.map((e, i) => cidrEntry(ids[1]![i]!, e)));
    this.baselineLabels = new Map<number, RuleLabel>();
    groups.forEach(({ entries, tier }, g) =>
      entries.forEach((e, i) => this.baselineLabels.set(ids[g]![i]!, { tier, name: e.name, policy: null })),
    );
    const kept = new Set(this.baselineNames.map(([group, name]) => `${group}/${name}`));
    for (const [group, name] of previous) if (!kept.has(`${group}/${name}`)) this.ruleIds.release('', group, name);
  }

  /** Turn the backstop on or off for every workload (they are enrolled again when it changes). */
  setPacketEnforcement(packet: boolean): void {
    if (packet === this.packet) return;
    this.packet = packet;
    for (const state of this.workloads.values()) state.retry = true;
    this.pass(new Set(), new Set());
  }

  /** The full set of workloads from the source: new and changed ones are enrolled, the kernel's others withdrawn. */
  setWorkloads(specs: readonly WorkloadSpec[]): void {
    const previous = this.workloads;
    const next = new Map<string, WorkloadState>();
    const configuredCgroups = new Set<bigint>();
    for (const spec of specs) {
      const key = workloadKey(spec);
      const specText = JSON.stringify(spec);
      let cgroupId: bigint | null = null;
      try {
        cgroupId = this.options.host.cgroupIdOf(spec.cgroupPath);
        configuredCgroups.add(cgroupId);
      } catch {
        // Enrolment reports it below.
      }
      const state = previous.get(key);
      if (state && state.specText === specText && state.cgroupId === cgroupId && !state.retry) {
        next.set(key, state);
        continue;
      }
      next.set(
        key,
        state
          ? { ...state, spec, specText, retry: true }
          : { spec, specText, cgroupId: null, enrolled: null, byPolicy: new Map(), rules: [], retry: true, error: null },
      );
    }
    const touchedPolicies = new Set<string>();
    for (const [key, state] of previous) {
      if (next.has(key)) continue;
      this.forget(key, state, touchedPolicies);
    }
    this.workloads = next;
    this.workloadsByNamespace.clear();
    for (const [key, state] of next) {
      const keys = this.workloadsByNamespace.get(state.spec.namespace) ?? new Set<string>();
      keys.add(key);
      this.workloadsByNamespace.set(state.spec.namespace, keys);
    }
    // Withdraw what the kernel enforces beyond the source: workloads it no longer reports, including while no agent
    // was running (adopted state), and cgroups that no longer exist.
    const datapath = this.options.datapath;
    const withdrawn: string[] = [];
    for (const cgroupId of datapath.workloads().keys()) {
      if (configuredCgroups.has(cgroupId)) continue;
      datapath.removeWorkload(cgroupId);
      const known = [...previous.values()].find((s) => s.enrolled?.cgroupId === cgroupId);
      withdrawn.push(known ? workloadKey(known.spec) : `cgroup id ${cgroupId}`);
    }
    for (const workload of withdrawn) this.log.info({ workload }, 'workload not in the configuration; no longer enforced');
    // Removed workloads leave the registry even when no policy selected them.
    if (!this.pass(new Set(), touchedPolicies)) this.refreshRegistry();
  }

  /** The policy store changed: recompile the workloads of the policies whose generation moved (or that came or went). */
  syncPolicies(): void {
    const store = this.options.policies;
    const journal = store.changesSince(this.policiesRevision);
    this.policiesRevision = store.revision;
    /** The accepted FirewallPolicy now, per key to look at: what the journal names, or the whole set. */
    const current = new Map<string, ValidatedPolicy | undefined>();
    if (journal === null) {
      for (const key of this.policies.keys()) current.set(key, undefined);
      for (const object of store.objects()) if (object.kind === 'FirewallPolicy') current.set(policyKeyOf(object), object);
    } else {
      for (const object of journal) {
        if (object.kind === 'FirewallPolicy') current.set(policyKeyOf(object), store.get(object.namespace, object.name));
      }
    }
    const changed = new Set<string>();
    const previous = new Map<string, ValidatedPolicy>();
    for (const [key, policy] of current) {
      const old = this.policies.get(key);
      if (policy) this.policies.set(key, policy);
      else this.policies.delete(key);
      if (old?.generation === policy?.generation) continue;
      changed.add(key);
      if (old) previous.set(key, old);
    }
    const next = this.policies;
    for (const key of changed) {
      const namespace = (next.get(key) ?? previous.get(key))!.namespace;
      const index = this.policiesByNamespace.get(namespace) ?? new Map<string, ValidatedPolicy>();
      const policy = next.get(key);
      if (policy) index.set(key, policy);
      else index.delete(key);
      if (index.size > 0) this.policiesByNamespace.set(namespace, index);
      else this.policiesByNamespace.delete(namespace);
      if (!policy) this.policyResults.delete(key);
    }
    // Ids for new rules before the pass, ids of rules gone after it: an id is never one rule in the kernel while
    // another is still there under it. Sorted, so a restart with the same set allocates the same ids.
    const released: [string, string, string][] = [];
    for (const key of [...changed].sort()) {
      const policy = next.get(key);
      const names = new Set(policy?.rules.map((r) => r.name) ?? []);
      const old = previous.get(key);
      for (const rule of old?.rules ?? []) if (!names.has(rule.name)) released.push([old!.namespace, old!.name, rule.name]);
      for (const name of names) this.ruleIds.idFor(policy!.namespace, policy!.name, name);
    }
    this.pass(changed, new Set(changed));
    for (const [namespace, policyName, ruleName] of released) this.ruleIds.release(namespace, policyName, ruleName);
  }

  /**
   * One pass: workloads marked for retry are compiled whole; the others selected by a changed policy (before or
   * after) have that policy's rules recompiled. Then policy status is refreshed for every policy whose rules moved.
   * Returns false when nothing was enrolled and no policy's rules moved.
   */
  private pass(changedPolicies: ReadonlySet<string>, touchedPolicies: Set<string>): boolean {
    let enrolments = 0;
    const byChange = new Map<string, Set<string>>();
    for (const policyKey of changedPolicies) {
      const policy = this.policies.get(policyKey);
      const affected = new Set(this.selected.get(policyKey) ?? []);
      if (policy) {
        for (const key of this.workloadsByNamespace.get(policy.namespace) ?? []) {
          if (this.compiler.selects(policy, this.workloads.get(key)!.spec)) affected.add(key);
        }
      }
      for (const key of affected) {
        const keys = byChange.get(key) ?? new Set<string>();
        keys.add(policyKey);
        byChange.set(key, keys);
      }
    }
    for (const [key, state] of this.workloads) {
      const policyKeys = byChange.get(key);
      if (!state.retry && policyKeys === undefined) continue;
      const byPolicy = state.retry ? this.compileWhole(state.spec) : this.recompile(state, policyKeys!);
      this.enrol(key, state, byPolicy, touchedPolicies);
      enrolments++;
    }
    for (const policyKey of touchedPolicies) this.refreshPolicyResult(policyKey);
    if (enrolments === 0 && touchedPolicies.size === 0) return false;
    this.refreshRegistry();
    for (const listener of this.listeners) listener(touchedPolicies);
    return true;
  }

  private refreshRegistry(): void {
    this.registryView.replace([...this.workloads.values()].flatMap((s) => (s.enrolled ? [s.enrolled] : [])));
  }

  private compileWhole(spec: WorkloadSpec): Map<string, CompiledRule[]> {
    const byPolicy = new Map<string, CompiledRule[]>();
    for (const [policyKey, policy] of this.policiesByNamespace.get(spec.namespace) ?? []) {
      if (!this.compiler.selects(policy, spec)) continue;
      const rules = this.compileWithIds(policy, spec);
      if (rules.length > 0) byPolicy.set(policyKey, rules);
    }
    return byPolicy;
  }

  /** The compiler's rules with their allocated ids (the compiler's own are the preferred hash ids). */
  private compileWithIds(policy: ValidatedPolicy, spec: WorkloadSpec): CompiledRule[] {
    return this.compiler
      .compile(policy, spec)
      .map((rule) => ({ ...rule, ruleId: this.ruleIds.idFor(rule.policy.namespace, rule.policy.name, rule.name) }));
  }

  private recompile(state: WorkloadState, policyKeys: ReadonlySet<string>): Map<string, CompiledRule[]> {
    const byPolicy = new Map(state.byPolicy);
    for (const policyKey of policyKeys) {
      byPolicy.delete(policyKey);
      const policy = this.policies.get(policyKey);
      if (!policy || !this.compiler.selects(policy, state.spec)) continue;
      const rules = this.compileWithIds(policy, state.spec);
      if (rules.length > 0) byPolicy.set(policyKey, rules);
    }
    return byPolicy;
  }

  /**
   * Push the workload's rules. When they cannot be enforced (no cgroup, backstop interfaces missing or without
   * addresses, more rules or domains than the kernel holds, a full map) the workload fails closed: it is enrolled with
   * the deny-all rule alone (its DNS still steered to the proxy, which then denies every name), the error goes to the
   * log and to status, and it is retried on every pass.
   */
  private enrol(key: string, state: WorkloadState, byPolicy: Map<string, CompiledRule[]>, touchedPolicies: Set<string>): void {
    const { spec } = state;
    const rules = assemble(byPolicy);
    let cgroupId: bigint;
    try {
      cgroupId = this.options.host.cgroupIdOf(spec.cgroupPath);
    } catch (error) {
      this.fail(key, state, `cgroup ${spec.cgroupPath} cannot be enrolled: ${messageOf(error)}`, null, touchedPolicies);
      return;
    }
    let network: WorkloadNetwork | undefined;
    try {
      if (this.packet) network = { interfaces: this.options.host.interfacesOf(spec), addresses: spec.addresses };
    } catch (error) {
      this.fail(key, state, `packet-layer backstop cannot be attached: ${messageOf(error)}`, { cgroupId }, touchedPolicies);
      return;
    }
    let workloadId: number;
    try {
      workloadId = this.options.datapath.setWorkload(spec.cgroupPath, rules.filter((r) => r.active).map(kernelRule), network);
    } catch (error) {
      this.fail(key, state, `its rules cannot be enforced: ${messageOf(error)}`, { cgroupId, network }, touchedPolicies);
      return;
    }
    this.replaceRules(key, state, byPolicy, rules, touchedPolicies);
    this.markEnrolled(state, cgroupId, workloadId);
    state.retry = false;
    state.error = null;
  }

  /**
   * The workload's own rules cannot be enforced: enrol it deny-all (with its backstop when that much works, else at
   * the socket layer alone) and retry on every pass. `enrolment` is null when not even its cgroup can be enrolled.
   */
  private fail(
    key: string,
    state: WorkloadState,
    error: string,
    enrolment: { cgroupId: bigint; network?: WorkloadNetwork } | null,
    touchedPolicies: Set<string>,
  ): void {
    const { spec } = state;
    state.retry = true;
    state.error = error;
    const denyAll = failClosedRule(spec);
    let workloadId: number | null = null;
    if (enrolment !== null) {
      const attempts = enrolment.network === undefined ? [undefined] : [enrolment.network, undefined];
      for (const network of attempts) {
        try {
          workloadId = this.options.datapath.setWorkload(spec.cgroupPath, [kernelRule(denyAll)], network);
          break;
        } catch (retryError) {
          state.error = `${error}; deny-all ${network ? 'with' : 'without'} backstop failed too: ${messageOf(retryError)}`;
        }
      }
    }
    if (workloadId === null) {
      // Nothing of it is in the kernel that this agent could vouch for: its rules leave DNS decisions too.
      this.replaceRules(key, state, new Map(), [], touchedPolicies);
      state.enrolled = null;
      this.log.error({ workload: key, err: state.error }, 'workload NOT enforced: it cannot be enrolled at all');
      return;
    }
    this.replaceRules(key, state, new Map(), [denyAll], touchedPolicies);
    this.markEnrolled(state, enrolment!.cgroupId, workloadId);
    this.log.error(
      { workload: key, err: state.error },
      'workload enrolled fail-closed (deny-all, DNS steered) until its rules can be enforced',
    );
  }

  private markEnrolled(state: WorkloadState, cgroupId: bigint, workloadId: number): void {
    const { spec } = state;
    state.cgroupId = cgroupId;
    state.enrolled = {
      namespace: spec.namespace,
      name: spec.name,
      labels: spec.labels,
      addresses: spec.addresses,
      cgroupPath: spec.cgroupPath,
      cgroupId,
      workloadId,
    };
  }

  /** Workloads whose own rules are not in force, and what they get instead (status and the agent log). */
  failures(): WorkloadFailure[] {
    return [...this.workloads].flatMap(([key, state]) =>
      state.error === null
        ? []
        : [
            {
              key,
              cgroup: state.spec.cgroupPath,
              error: state.error,
              enforced: state.enrolled ? ('deny-all' as const) : ('none' as const),
            },
          ],
    );
  }

  /** A workload the source no longer reports: its rules leave the indexes (the kernel side is the sweep's). */
  private forget(key: string, state: WorkloadState, touchedPolicies: Set<string>): void {
    this.replaceRules(key, state, new Map(), [], touchedPolicies);
  }

  private replaceRules(
    key: string,
    state: WorkloadState,
    byPolicy: Map<string, CompiledRule[]>,
    rules: CompiledRule[],
    touchedPolicies: Set<string>,
  ): void {
    for (const policyKey of state.byPolicy.keys()) {
      this.selected.get(policyKey)?.delete(key);
      touchedPolicies.add(policyKey);
    }
    for (const rule of state.rules) {
      const use = this.tier2Labels.get(rule.ruleId);
      if (use && --use.uses === 0) this.tier2Labels.delete(rule.ruleId);
    }
    for (const policyKey of byPolicy.keys()) {
      const keys = this.selected.get(policyKey) ?? new Set<string>();
      keys.add(key);
      this.selected.set(policyKey, keys);
      touchedPolicies.add(policyKey);
    }
    for (const rule of rules) {
      const use = this.tier2Labels.get(rule.ruleId);
      this.tier2Labels.set(rule.ruleId, { label: { tier: 2, name: rule.name, policy: rule.policy }, uses: (use?.uses ?? 0) + 1 });
    }
    state.byPolicy = byPolicy;
    state.rules = rules;
  }

  private refreshPolicyResult(policyKey: string): void {
    if (!this.policies.has(policyKey)) {
      this.policyResults.delete(policyKey);
      if (this.selected.get(policyKey)?.size === 0) this.selected.delete(policyKey);
      return;
    }
    const workloads = [...(this.selected.get(policyKey) ?? [])].sort();
    const rules = workloads.flatMap((key) => this.workloads.get(key)?.byPolicy.get(policyKey) ?? []);
    this.policyResults.set(policyKey, {
      ruleset: createHash('sha256')
        .update(JSON.stringify(rules.map((rule) => ({ ...kernelRule(rule), policy: rule.policy }))))
        .digest('hex')
        .slice(0, 16),
      ruleNotEnforced: rules.flatMap((r) => r.notEnforced.map((n) => `rule ${r.name}: ${n}`)),
    });
  }

  /** The rules in force for a workload (by key), in evaluation order; empty when none or not enrolled. */
  rulesFor(key: string): CompiledRule[] {
    return this.workloads.get(key)?.rules ?? [];
  }

  /** Enrolled workloads in source order, with their rules in force. */
  enrolled(): { workload: Workload; rules: CompiledRule[] }[] {
    return [...this.workloads.values()].flatMap((s) => (s.enrolled ? [{ workload: s.enrolled, rules: s.rules }] : []));
  }

  /** The label events carry for a rule id of any tier but 3. */
  ruleLabel(ruleId: number): RuleLabel | undefined {
    if (ruleId === FAIL_CLOSED_RULE_ID) return { tier: 2, name: 'fail-closed (its rules cannot be enforced: see status)', policy: null };
    return this.tier2Labels.get(ruleId)?.label ?? this.baselineLabels.get(ruleId);
  }

  /** What the kernel enforces of an accepted FirewallPolicy (`namespace/name`); undefined when none is accepted. */
  enforcement(policyKey: string): PolicyEnforcement | undefined {
    if (!this.policies.has(policyKey)) return undefined;
    const result = this.policyResults.get(policyKey) ?? { ruleset: '', ruleNotEnforced: [] };
    return { ...result, workloads: [...(this.selected.get(policyKey) ?? [])].sort() };
  }

  /** Every accepted FirewallPolicy, in (namespace, name) order, with what reached the kernel for it. */
  policyStatus(): PolicyStatus[] {
    return this.options.policies.entries().flatMap((entry) => {
      const policyKey = policyKeyOf(entry.policy);
      const policy = this.policies.get(policyKey);
      const enforcement = this.enforcement(policyKey);
      if (!policy || !enforcement) return [];
      return [
        {
          namespace: policy.namespace,
          name: policy.name,
          file: entry.file,
          generation: policy.generation,
          ruleset: enforcement.ruleset,
          lastReconciledGeneration: policy.generation,
          workloads: enforcement.workloads,
          notEnforced: [...new Set([...entry.warnings, ...enforcement.ruleNotEnforced])],
        },
      ];
    });
  }

  /** Exact names of every active webGroup rule, per workload: the agent resolves them itself, before any workload asks. */
  exactNames(): { workloadId: number; ruleIds: number[]; name: string }[] {
    const names: { workloadId: number; ruleIds: number[]; name: string }[] = [];
    for (const { workload, rules } of this.enrolled()) {
      const byName = new Map<string, number[]>();
      for (const [index, rule] of rules.entries()) {
        if (!rule.active) continue;
        for (const d of rule.domains ?? []) {
          if (d.kind !== 'exact' || shadowedByDeny(rules.slice(0, index), rule, d.name)) continue;
          byName.set(d.name, [...(byName.get(d.name) ?? []), rule.ruleId]);
        }
      }
      for (const [name, ruleIds] of byName) names.push({ workloadId: workload.workloadId, ruleIds, name });
    }
    return names;
  }
}

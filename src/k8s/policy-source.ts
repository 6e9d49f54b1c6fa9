// Kubernetes mode's policy source: FirewallPolicy and WebgroupPolicy objects (networking.aviatrix.com/v1alpha1) in
// the enforced namespaces, read through informers and handed to the policy store one object per source id. The store
// keeps the last good version of an object whose new generation is invalid; this source remembers which generation
// that is (status reports it) and why the newer one was rejected.
//
// `selector.service` is resolved here, through the Service's selector: the rule is handed to the store with that
// selector as its matchLabels, so a Service created, deleted or re-labelled changes the policies that name it, and the
// reconciler re-selects their pods like for any policy change. A Service that does not exist or has no selector leaves
// the rule selecting no pod, reported as not enforced (never widened to the whole namespace).
import { createHash } from 'node:crypto';
import type { V1Service } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { hostModeResolver, type DestinationResolver } from '../policy/destination-resolver.js';
import { FIREWALL_POLICY_KIND, POLICY_API_VERSION, WEBGROUP_POLICY_KIND, type FirewallPolicySpec } from '../policy/manifest.js';
import type { PolicySink, PolicySource } from '../policy/source.js';
import type { PolicyDiagnostic } from '../policy/types.js';
import type { KubeClient, KubeObject, Wire } from './api.js';
import type { KeptPolicy } from './kept-policies.js';
import { policyKey, type PolicyVerdict } from './status.js';
import { WatchedCollection } from './watched.js';

export const POLICY_GROUP = 'networking.aviatrix.com';
export const POLICY_VERSION = 'v1alpha1';
export const POLICY_KINDS = [
  { kind: FIREWALL_POLICY_KIND, plural: 'firewallpolicies' },
  { kind: WEBGROUP_POLICY_KIND, plural: 'webgrouppolicies' },
] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number]['kind'];

/** A FirewallPolicy or WebgroupPolicy as the API server returns it. */
export interface PolicyObject extends KubeObject {
  spec?: unknown;
  status?: Record<string, unknown>;
}

/** An object's manifest as the store receives it, and the Services it names. */
interface Prepared {
  object: PolicyObject;
  services: string[];
  manifest: Record<string, unknown>;
  text: string;
}

/** What this source knows about one object: the generation in force and why a newer one was rejected. */
interface ObjectState {
  kind: PolicyKind;
  namespace: string;
  name: string;
  /** metadata.generation of the newest version seen. */
  generation: number;
  accepted: (NonNullable<PolicyVerdict['accepted']> & { selectors: Record<string, string>[] }) | null;
  rejected: PolicyVerdict['rejected'];
  /** Services its rules select by: a change to one of them re-applies the object. */
  services: string[];
}

/** The one-line form of a diagnostic on an API object: the object is already named by where it is shown. */
export function diagnosticLine(d: PolicyDiagnostic): string {
  const field = d.location.field !== undefined ? `${d.location.field} ` : '';
  return `${field}${d.message}${d.fix !== undefined ? ` (fix: ${d.fix})` : ''}`;
}

function sourceIdOf(kind: PolicyKind, namespace: string, name: string): string {
  return `kubernetes:${kind}/${namespace}/${name}`;
}

type Service = Wire<V1Service>;

/** A Service's selector when it selects pods; null for a Service without one (endpoints managed by hand). */
function selectorOf(service: Service | undefined): Record<string, string> | null {
  const selector = service?.spec?.selector;
  return selector && Object.keys(selector).length > 0 ? { ...selector } : null;
}

/**
 * The manifest the store receives for an API object: metadata cut to what validation reads (annotations such as
 * kubectl's last-applied copy are not policy), status dropped, and each `selector.service` whose Service selects pods
 * replaced by that selector. Returns the services the object names, resolved or not.
 */
export function manifestFor(
  object: PolicyObject,
  kind: PolicyKind,
  serviceSelector: (namespace: string, name: string) => Record<string, string> | null,
): { manifest: Record<string, unknown>; services: string[] } {
  const namespace = object.metadata?.namespace ?? '';
  const services = new Set<string>();
  let spec = object.spec;
  if (kind === FIREWALL_POLICY_KIND && typeof spec === 'object' && spec !== null && Array.isArray((spec as FirewallPolicySpec).rules)) {
    const rules = (spec as FirewallPolicySpec).rules.map((rule) => {
      const service = rule?.selector?.service;
      if (typeof service !== 'string' || rule.selector.matchLabels !== undefined) return rule;
      services.add(service);
      const matchLabels = serviceSelector(namespace, service);
      return matchLabels === null ? rule : { ...rule, selector: { matchLabels } };
    });
    spec = { ...(spec as FirewallPolicySpec), rules };
  }
  const { name, labels } = object.metadata ?? {};
  return {
    manifest: { apiVersion: object.apiVersion, kind: object.kind, metadata: { name, namespace, ...(labels ? { labels } : {}) }, spec },
    services: [...services],
  };
}

/**
 * The source's core, without the API: objects arrive (add, update, delete) and Services change; a burst becomes one
 * store transaction; each object's verdict (generation in force, rejected generation) is remembered. KubePolicySource
 * feeds it from informers; tests and the bench feed it directly.
 */
export class PolicyObjects {
  private readonly states = new Map<string, ObjectState>();
  /** The manifest text last handed to the store per source id: status-only updates (ours) are not applied again. */
  private readonly applied = new Map<string, string>();
  /** The newest version of each object (what a Service change re-applies). */
  private readonly latest = new Map<string, { kind: PolicyKind; object: PolicyObject }>();
  /** Source ids to hand to the store on the next flush: the object's newest version, or null when it is gone. */
  private readonly pending = new Map<string, { kind: PolicyKind; object: PolicyObject | null }>();
  /** The accepted version of each object, as the store received it (what a restarted agent's copy holds). */
  private readonly kept = new Map<string, KeptPolicy>();
  private flushScheduled = false;
  private sink: PolicySink | null = null;
  private readonly listeners: Array<(policyKeys: ReadonlySet<string>) => void> = [];

  constructor(
    /** The selector of a Service (null: no such Service, or it has none). */
    private readonly serviceSelector: (namespace: string, name: string) => Record<string, string> | null,
    private readonly log: Logger,
  ) {}

  /** Where accepted objects go; changes before this wait in the batch. */
  connect(sink: PolicySink | null): void {
    this.sink = sink;
  }

  /** Called after each batch the store received, with the FirewallPolicies (`namespace/name`) in it. */
  onChange(listener: (policyKeys: ReadonlySet<string>) => void): void {
    this.listeners.push(listener);
  }

  /** An object added, updated (object) or deleted (null); `seen` names it either way. */
  changed(kind: PolicyKind, object: PolicyObject | null, seen: PolicyObject): void {
    const namespace = seen.metadata?.namespace;
    const name = seen.metadata?.name;
    if (!namespace || !name) return;
    // The informer's path fixes group and version; an object claiming another never reaches the compiler.
    if (object !== null && (object.apiVersion !== POLICY_API_VERSION || object.kind !== kind)) {
      this.log.warn({ namespace, name, apiVersion: object.apiVersion, kind: object.kind }, `ignored: not ${POLICY_API_VERSION} ${kind}`);
      return;
    }
    const id = sourceIdOf(kind, namespace, name);
    if (object === null) this.latest.delete(id);
    else this.latest.set(id, { kind, object });
    this.pending.set(id, { kind, object });
    this.scheduleFlush();
  }

  /** Every object of a namespace is gone (no longer enforced). */
  forgetNamespace(namespace: string): void {
    for (const [id, { kind, object }] of this.latest) {
      if (object.metadata?.namespace !== namespace) continue;
      this.latest.delete(id);
      this.pending.set(id, { kind, object: null });
    }
    this.scheduleFlush();
  }

  /** A Service was added, changed or deleted: the objects naming it are applied again. */
  serviceChanged(namespace: string, service: string): void {
    let any = false;
    for (const [id, state] of this.states) {
      if (state.namespace !== namespace || !state.services.includes(service)) continue;
      const latest = this.latest.get(id);
      if (!latest) continue;
      this.pending.set(id, latest);
      any = true;
    }
    if (any) {
      this.log.debug({ service: `${namespace}/${service}` }, 'service changed; re-selecting the policies that name it');
      this.scheduleFlush();
    }
  }

  /** Every object's verdict: the generation in force, the rejected one, what is not enforced. */
  verdicts(): (PolicyVerdict & { selectors: Record<string, string>[] })[] {
    return [...this.states.values()].map((state) => ({
      kind: state.kind,
      namespace: state.namespace,
      name: state.name,
      generation: state.generation,
      accepted: state.accepted,
      rejected: state.rejected,
      selectors: state.accepted?.selectors ?? [],
    }));
  }

  /** The accepted (in force) generation of a FirewallPolicy, for the node report; undefined when none. */
  acceptedGeneration(namespace: string, name: string): number | undefined {
    return this.states.get(sourceIdOf(FIREWALL_POLICY_KIND, namespace, name))?.accepted?.generation;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A burst (a re-list, a GitOps sync) arrives in one turn of the event loop: one transaction for all of it.
    setImmediate(() => this.flush());
  }

  /** Hands the batch to the store as one transaction and commits it. */
  flush(): void {
    this.flushScheduled = false;
    if (!this.sink || this.pending.size === 0) return;
    const batch = new Map<string, { kind: PolicyKind; prepared: Prepared | null }>();
    for (const [id, { kind, object }] of this.pending) {
      if (object === null) {
        if (this.applied.has(id)) batch.set(id, { kind, prepared: null });
        continue;
      }
      const { manifest, services } = manifestFor(object, kind, this.serviceSelector);
      const text = JSON.stringify(manifest);
      const state = this.states.get(id);
      if (this.applied.get(id) === text && state?.generation === (object.metadata?.generation ?? 0)) continue;
      batch.set(id, { kind, prepared: { object, services, manifest, text } });
    }
    this.pending.clear();
    this.applyBatch(batch);
  }

  /**
   * At a start with the API server unreachable: the accepted objects an earlier agent kept (kept-policies.ts), as one
   * transaction. They stand until the first full list, which replaces them (dropUnlisted withdraws those gone).
   */
  restore(kept: readonly KeptPolicy[]): void {
    const batch = new Map<string, { kind: PolicyKind; prepared: Prepared | null }>();
    for (const { kind, generation, manifest, services } of kept) {
      const metadata = (manifest.metadata ?? {}) as { name?: string; namespace?: string };
      if (!metadata.name || !metadata.namespace) continue;
      const object: PolicyObject = { ...manifest, metadata: { ...metadata, generation } };
      batch.set(sourceIdOf(kind, metadata.namespace, metadata.name), {
        kind,
        prepared: { object, services, manifest, text: JSON.stringify(manifest) },
      });
    }
    this.applyBatch(batch);
  }

  /** After a full list: objects handed to the store that the API server no longer has (kept ones deleted meanwhile). */
  dropUnlisted(): void {
    for (const [id, { kind }] of this.kept) if (!this.latest.has(id) && !this.pending.has(id)) this.pending.set(id, { kind, object: null });
    this.scheduleFlush();
  }

  /** The accepted objects, for the copy a restarted agent starts from. */
  keptPolicies(): KeptPolicy[] {
    return [...this.kept.values()];
  }

  private applyBatch(batch: ReadonlyMap<string, { kind: PolicyKind; prepared: Prepared | null }>): void {
    const sink = this.sink;
    if (!sink || batch.size === 0) return;
    const changes = new Map<string, string | null>();
    for (const [id, { prepared }] of batch) changes.set(id, prepared?.text ?? null);
    const results = sink.apply(changes);
    const policyKeys = new Set<string>();
    for (const [id, { kind, prepared }] of batch) {
      const state = this.states.get(id);
      const object = prepared?.object.metadata ?? state;
      if (kind === FIREWALL_POLICY_KIND && object?.namespace && object.name)
        policyKeys.add(policyKey({ namespace: object.namespace, name: object.name }));
      if (prepared === null) {
        this.states.delete(id);
        this.applied.delete(id);
        this.kept.delete(id);
        continue;
      }
      this.applied.set(id, prepared.text);
      this.record(id, kind, prepared, results.get(id) ?? []);
    }
    sink.commit();
    for (const listener of this.listeners) listener(policyKeys);
  }

  private record(id: string, kind: PolicyKind, { object, services, manifest }: Prepared, diagnostics: PolicyDiagnostic[]): void {
    const namespace = object.metadata!.namespace!;
    const name = object.metadata!.name!;
    const generation = object.metadata?.generation ?? 0;
    const previous = this.states.get(id);
    const errors = diagnostics.filter((d) => d.severity === 'error');
    const state: ObjectState = previous ?? { kind, namespace, name, generation, accepted: null, rejected: null, services };
    state.generation = generation;
    state.services = services;
    if (errors.length > 0) {
      state.rejected = { generation, messages: errors.map(diagnosticLine) };
      this.log.error(
        { object: `${kind} ${policyKey(state)}`, generation, errors: state.rejected.messages },
        'policy rejected; the last good generation stays in force',
      );
    } else {
      const spec = (manifest.spec ?? {}) as Partial<FirewallPolicySpec>;
      state.rejected = null;
      this.kept.set(id, { kind, generation, manifest, services });
      state.accepted = {
        generation,
        ruleset: createHash('sha256').update(JSON.stringify(manifest.spec)).digest('hex').slice(0, 16),
        notEnforced: diagnostics.filter((d) => d.severity === 'warning').map(diagnosticLine),
        smartGroups: (spec.smartGroups ?? []).map((g) => g.name),
        webGroups: (spec.webGroups ?? []).map((g) => g.name),
        selectors: (spec.rules ?? []).flatMap((rule) => (rule.selector?.matchLabels ? [rule.selector.matchLabels] : [])),
      };
    }
    this.states.set(id, state);
  }
}

export interface KubePolicySourceOptions {
  client: KubeClient;
  /** Namespaces whose policies are enforced (the baseline's enforcedNamespaces). */
  namespaces: readonly string[];
  log: Logger;
}

export class KubePolicySource implements PolicySource {
  private namespaces: string[];
  private readonly collections = new Map<string, WatchedCollection<PolicyObject>>();
  private readonly serviceCollections = new Map<string, WatchedCollection<Service>>();
  private readonly objects: PolicyObjects;
  private sink: PolicySink | null = null;
  /** The store receives objects (after the first lists). */
  private connected = false;
  private readonly log: Logger;
  private readonly client: KubeClient;

  constructor(options: KubePolicySourceOptions) {
    this.namespaces = [...options.namespaces];
    this.log = options.log;
    this.client = options.client;
    this.objects = new PolicyObjects(
      (namespace, name) => selectorOf(this.serviceCollections.get(namespace)?.get(name, namespace)),
      this.log,
    );
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.listed = new Promise((resolve) => (this.markListed = resolve));
  }

  /** The accepted objects, for the copy a restarted agent starts from (meaningful once synced()). */
  keptPolicies(): KeptPolicy[] {
    return this.objects.keptPolicies();
  }

  /** Resolves `selector.service` names for the compiler's findings (the rules already carry the selectors). */
  readonly resolver: DestinationResolver = {
    resolve: (selector, namespace) => hostModeResolver.resolve(selector, namespace),
    resolveService: (service, namespace) => {
      const collection = this.serviceCollections.get(namespace);
      const found = collection?.get(service, namespace);
      if (found === undefined) return { unsupported: `names no Service in namespace ${namespace}` };
      const selector = selectorOf(found);
      return selector === null ? { unsupported: `names a Service without a pod selector` } : { matchLabels: selector };
    },
  };

  /**
   * Lists every enforced namespace, then hands the objects to the store as one transaction: a restarted agent never
   * enforces half a policy set, and while the API server cannot be reached nothing is committed (the kernel keeps
   * its state). Resolves after the first lists, or after `startTimeoutMs` when they are still failing (retried).
   * With `kept` (the accepted objects an earlier agent kept), a first list that fails restores those at once instead.
   */
  async start(
    sink: PolicySink,
    options: { startTimeoutMs?: number; kept?: { writtenAt: string; policies: readonly KeptPolicy[] } } = {},
  ): Promise<void> {
    const { startTimeoutMs = 10_000, kept } = options;
    this.sink = sink;
    for (const namespace of this.namespaces) this.watchNamespace(namespace);
    await Promise.all(this.allCollections().map((c) => c.whenSynced(startTimeoutMs, { orFailed: kept !== undefined })));
    if (kept !== undefined && !this.synced() && this.sink !== null) {
      this.restoredFrom = { writtenAt: kept.writtenAt, policies: kept.policies.length };
      this.log.warn(
        { writtenAt: kept.writtenAt, policies: kept.policies.length, problems: this.problems() },
        'the API server cannot be listed: enforcing the policies kept by the previous agent until it can',
      );
      this.objects.connect(this.sink);
      this.objects.restore(kept.policies);
      this.markReady();
    }
    this.connectWhenSynced();
  }

  /** Resolves once the store holds a policy set: the listed one, or the kept copy while the API server is away. */
  readonly ready: Promise<void>;
  private markReady: () => void = () => {};
  /** Resolves once the store holds the listed policy set (never for the kept copy alone). */
  readonly listed: Promise<void>;
  private markListed: () => void = () => {};
  /** The kept copy in force until the first full list; null otherwise. */
  private restoredFrom: { writtenAt: string; policies: number } | null = null;

  /** The kept copy the policies came from while not listed yet (null once listed, or when none was used). */
  restored(): { writtenAt: string; policies: number } | null {
    return this.synced() ? null : this.restoredFrom;
  }

  private allCollections(): WatchedCollection<KubeObject>[] {
    return [...this.collections.values(), ...this.serviceCollections.values()] as unknown as WatchedCollection<KubeObject>[];
  }

  /** The store receives objects once every collection of the start has been listed. */
  private connectWhenSynced(): void {
    if (this.connected || this.sink === null || !this.synced()) return;
    this.connected = true;
    this.objects.connect(this.sink);
    if (this.restoredFrom !== null) {
      this.log.info({ writtenAt: this.restoredFrom.writtenAt }, 'policies listed: the kept copy is replaced');
      this.objects.dropUnlisted();
    }
    this.objects.flush();
    this.markReady();
    this.markListed();
  }

  /** True once every watched collection has been listed: before that, committing would withdraw policies. */
  synced(): boolean {
    return this.sink !== null && this.allCollections().every((c) => c.synced);
  }

  /** Watch errors since the collections were last in sync (empty while every watch runs). */
  problems(): string[] {
    return [...this.collections.entries(), ...this.serviceCollections.entries()].flatMap(([where, c]) =>
      c.lastError !== null ? [`${where}: ${c.lastError}`] : [],
    );
  }

  /** Called after each batch the store received (status and events read verdicts()), with its FirewallPolicies. */
  onChange(listener: (policyKeys: ReadonlySet<string>) => void): void {
    this.objects.onChange(listener);
  }

  /** The enforced namespaces changed (the baseline): watch the new ones, withdraw the policies of the others. */
  async setNamespaces(namespaces: readonly string[]): Promise<void> {
    if (this.sink === null) {
      // Not started: start() watches these.
      this.namespaces = [...new Set(namespaces)];
      return;
    }
    const next = new Set(namespaces);
    for (const namespace of this.namespaces) {
      if (next.has(namespace)) continue;
      for (const { plural } of POLICY_KINDS) {
        const path = this.policyPath(namespace, plural);
        await this.collections.get(path)?.stop();
        this.collections.delete(path);
      }
      await this.serviceCollections.get(namespace)?.stop();
      this.serviceCollections.delete(namespace);
      this.objects.forgetNamespace(namespace);
    }
    const added = [...next].filter((namespace) => !this.namespaces.includes(namespace));
    this.namespaces = [...next];
    for (const namespace of added) this.watchNamespace(namespace);
  }

  verdicts(): ReturnType<PolicyObjects['verdicts']> {
    return this.objects.verdicts();
  }

  acceptedGeneration(namespace: string, name: string): number | undefined {
    return this.objects.acceptedGeneration(namespace, name);
  }

  /** The object as the API server last sent it (its status included), for the status writer. */
  current(kind: PolicyKind, namespace: string, name: string): PolicyObject | undefined {
    const plural = POLICY_KINDS.find((k) => k.kind === kind)!.plural;
    return this.collections.get(this.policyPath(namespace, plural))?.get(name, namespace);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.collections.values(), ...this.serviceCollections.values()].map((c) => c.stop()));
    this.collections.clear();
    this.serviceCollections.clear();
    this.objects.connect(null);
    this.sink = null;
    this.connected = false;
  }

  private policyPath(namespace: string, plural: string): string {
    return `/apis/${POLICY_GROUP}/${POLICY_VERSION}/namespaces/${namespace}/${plural}`;
  }

  private watchNamespace(namespace: string): void {
    const services = new WatchedCollection<Service>({
      client: this.client,
      path: `/api/v1/namespaces/${namespace}/services`,
      log: this.log,
      onChange: (_type, service) => this.objects.serviceChanged(namespace, service.metadata?.name ?? ''),
      onSettled: () => this.connectWhenSynced(),
    });
    this.serviceCollections.set(namespace, services);
    services.start();
    for (const { kind, plural } of POLICY_KINDS) {
      const path = this.policyPath(namespace, plural);
      const collection = new WatchedCollection<PolicyObject>({
        client: this.client,
        path,
        log: this.log,
        onChange: (type, object) => this.objects.changed(kind, type === 'delete' ? null : object, object),
        onSettled: () => this.connectWhenSynced(),
      });
      this.collections.set(path, collection);
      collection.start();
    }
  }
}

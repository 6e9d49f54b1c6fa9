// The node posture in Kubernetes mode comes from one cluster-scoped EgressBaseline (egressguard.io/v1alpha1): mode
// (and so the default action), enforced namespaces, tier-0 deny list, tier-1 permits. Tier 1 includes the cluster's
// own infrastructure, detected from its objects unless the baseline gives it:
//   pod CIDRs       nodes' spec.podCIDRs
//   service CIDRs   ServiceCIDR objects (networking.k8s.io/v1); without them, the kubernetes and kube-dns ClusterIPs
//   node addresses  nodes' InternalIP addresses
//   cluster DNS     kube-system/kube-dns ClusterIPs
//   API server      the kubernetes Service's ClusterIPs and its EndpointSlices' addresses
//
// A missing or invalid baseline never loosens anything: the last good one stays in force, and with none ever read the
// agent runs FAIL_CLOSED_BASELINE (enforce mode, detected infrastructure only, no named permits) over the namespaces
// of its own configuration, and says so (agent status, log, the object's Valid condition and an Event).
import { isIP } from 'node:net';
import type { V1EndpointSlice, V1Node, V1Service, V1ServiceCIDR } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { cidrEntries, type AgentConfig, type BaselineEntryConfig, type Mode, type RawCidrEntry } from '../agent/config.js';
import { formatCidr } from '../policy/cidr.js';
import { apiStatusOf, type KubeClient, type KubeObject, type Wire } from './api.js';
import type { KeptPolicySet } from './kept-policies.js';
import { WatchedCollection } from './watched.js';

export const BASELINE_GROUP = 'egressguard.io';
export const BASELINE_VERSION = 'v1alpha1';
export const BASELINE_PLURAL = 'egressbaselines';
export const BASELINE_API_VERSION = `${BASELINE_GROUP}/${BASELINE_VERSION}`;
export const DEFAULT_BASELINE_NAME = 'default';
export const DEFAULT_DNS_NAMES = ['cluster.local'];

/** The infrastructure items of tier 1, in the order their entries are named (a CIDR named twice keeps the first). */
export const INFRASTRUCTURE_ITEMS = ['apiServer', 'clusterDNS', 'nodeAddresses', 'serviceCIDRs', 'podCIDRs'] as const;
export type InfrastructureItem = (typeof INFRASTRUCTURE_ITEMS)[number];

const ENTRY_PREFIX: Record<InfrastructureItem, string> = {
  apiServer: 'api-server',
  clusterDNS: 'cluster-dns',
  nodeAddresses: 'node',
  serviceCIDRs: 'cluster-services',
  podCIDRs: 'cluster-pods',
};

export interface EgressBaselineSpec {
  mode: Mode;
  enforcedNamespaces: string[];
  infrastructure?: { detect?: boolean } & Partial<Record<InfrastructureItem, string[]>>;
  permits?: RawCidrEntry[];
  denyList?: { name: string; cidr: string }[];
  dnsNames?: string[];
  denyEch?: boolean;
}

export interface EgressBaselineObject extends KubeObject {
  spec?: EgressBaselineSpec;
  status?: Record<string, unknown>;
}

/** What the cluster's objects say about its infrastructure; `missing` names what could not be detected and why. */
export interface DetectedInfrastructure {
  values: Record<InfrastructureItem, string[]>;
  missing: string[];
}

/** The cluster objects detection reads. `serviceCIDRs` is null when the API server does not serve them. */
export interface ClusterObjects {
  nodes: readonly Wire<V1Node>[];
  kubernetesService: Wire<V1Service> | undefined;
  kubeDnsService: Wire<V1Service> | undefined;
  apiEndpointSlices: readonly Wire<V1EndpointSlice>[];
  serviceCIDRs: readonly Wire<V1ServiceCIDR>[] | null;
}

function clusterIPs(service: Wire<V1Service> | undefined): string[] {
  const ips = service?.spec?.clusterIPs ?? (service?.spec?.clusterIP ? [service.spec.clusterIP] : []);
  return ips.filter((ip) => isIP(ip) !== 0);
}

const unique = (values: Iterable<string>) => [...new Set(values)];

export function detectInfrastructure(objects: ClusterObjects): DetectedInfrastructure {
  const missing: string[] = [];
  const podCIDRs = unique(objects.nodes.flatMap((node) => node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : [])));
  if (podCIDRs.length === 0)
    missing.push('podCIDRs: no node has spec.podCIDRs (a CNI that assigns pod addresses itself): give infrastructure.podCIDRs');
  const nodeAddresses = unique(
    objects.nodes.flatMap((node) =>
      (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP' && isIP(a.address) !== 0).map((a) => a.address),
    ),
  );
  if (nodeAddresses.length === 0) missing.push('nodeAddresses: no node reports an InternalIP address');
  let serviceCIDRs = unique((objects.serviceCIDRs ?? []).flatMap((s) => s.spec?.cidrs ?? []));
  if (serviceCIDRs.length === 0) {
    serviceCIDRs = unique([...clusterIPs(objects.kubernetesService), ...clusterIPs(objects.kubeDnsService)]);
    missing.push(
      `serviceCIDRs: ${objects.serviceCIDRs === null ? 'the API server serves no ServiceCIDR objects' : 'no ServiceCIDR object lists a range'}; ` +
        'only the kubernetes and kube-dns ClusterIPs are permitted: give infrastructure.serviceCIDRs (the --service-cluster-ip-range)',
    );
  }
  const clusterDNS = clusterIPs(objects.kubeDnsService);
  if (clusterDNS.length === 0) missing.push('clusterDNS: the Service kube-system/kube-dns does not exist or has no ClusterIP');
  const apiServer = unique([
    ...clusterIPs(objects.kubernetesService),
    ...objects.apiEndpointSlices
      .flatMap((slice) => (slice.endpoints ?? []).flatMap((e) => e.addresses ?? []))
      .filter((ip) => isIP(ip) !== 0),
  ]);
  if (apiServer.length === 0) missing.push('apiServer: neither the kubernetes Service nor its EndpointSlices name an address');
  return { values: { podCIDRs, serviceCIDRs, nodeAddresses, clusterDNS, apiServer }, missing };
}

/** One entry of the effective posture, as the baseline's status shows it. */
export interface EffectiveEntry {
  name: string;
  cidr: string;
  protocol: string;
  ports: string;
  /** detected, spec (an infrastructure list given), permits or denyList. */
  source: string;
}

export interface EffectiveBaseline {
  mode: Mode;
  defaultAction: 'deny' | 'permit';
  enforcedNamespaces: string[];
  permits: EffectiveEntry[];
  denyList: EffectiveEntry[];
  dnsNames: string[];
}

export type BaselineResult =
  | {
      ok: true;
      baseline: AgentConfig['baseline'];
      namespaces: string[];
      effective: EffectiveBaseline;
      /** Infrastructure that could not be detected (the baseline is in force without it). */
      warnings: string[];
    }
  | { ok: false; problems: string[] };

function effectiveEntry(entry: BaselineEntryConfig, source: string): EffectiveEntry {
  const ports =
    entry.portLow === 0 && entry.portHigh === 65535
      ? 'any'
      : entry.portLow === entry.portHigh
        ? String(entry.portLow)
        : `${entry.portLow}-${entry.portHigh}`;
  return { name: entry.name, cidr: formatCidr(entry.cidr), protocol: entry.protocol, ports, source };
}

/**
 * The agent's baseline from the object's spec and what was detected. Every problem names the field; any problem
 * rejects the whole object (the caller keeps the last good one).
 */
export function baselineFromSpec(spec: EgressBaselineSpec | undefined, detected: DetectedInfrastructure): BaselineResult {
  if (spec === undefined || typeof spec !== 'object') return { ok: false, problems: ['spec: missing'] };
  const problems: string[] = [];
  if (spec.mode !== 'enforce' && spec.mode !== 'discovery')
    problems.push(`spec.mode: must be "enforce" or "discovery", not ${JSON.stringify(spec.mode)}`);
  const namespaces = Array.isArray(spec.enforcedNamespaces) ? unique(spec.enforcedNamespaces) : [];
  if (namespaces.length === 0) problems.push('spec.enforcedNamespaces: name at least one namespace');
  const infrastructure = spec.infrastructure ?? {};
  const detect = infrastructure.detect !== false;
  const sources = new Map<string, string>();
  const seen = new Set<string>();
  const infraRaw: RawCidrEntry[] = [];
  const warnings: string[] = [];
  for (const item of INFRASTRUCTURE_ITEMS) {
    const raw = infrastructure[item];
    if (raw !== undefined && !Array.isArray(raw)) problems.push(`spec.infrastructure.${item}: must be a list`);
    const given = Array.isArray(raw) ? raw : undefined;
    const values = given ?? (detect ? detected.values[item] : []);
    if (given === undefined && detect) warnings.push(...detected.missing.filter((m) => m.startsWith(`${item}:`)));
    values.forEach((value, index) => {
      if (typeof value !== 'string') {
        problems.push(`spec.infrastructure.${item}[${index}]: must be a string (an address or CIDR)`);
        return;
      }
      const name = `${ENTRY_PREFIX[item]}:${value}`;
      if (seen.has(value)) return;
      seen.add(value);
      sources.set(name, given ? 'spec' : 'detected');
      infraRaw.push({ name, cidr: value, protocol: 'any' });
    });
  }
  const notLists = (['permits', 'denyList', 'dnsNames'] as const).filter(
    (field) => spec[field] !== undefined && !Array.isArray(spec[field]),
  );
  if (notLists.length > 0) return { ok: false, problems: [...problems, ...notLists.map((field) => `spec.${field}: must be a list`)] };
  // One validation for all tier-1 entries: names unique, CIDRs valid, no entry hiding part of another.
  const permits = cidrEntries([...infraRaw, ...(spec.permits ?? [])], 'spec.infrastructure/permits', problems);
  const denyList = cidrEntries(spec.denyList ?? [], 'spec.denyList', problems);
  const dnsNames = (spec.dnsNames ?? DEFAULT_DNS_NAMES).map((name) => name.toLowerCase().replace(/\.$/, ''));
  if (problems.length > 0) return { ok: false, problems };
  const mode = spec.mode;
  return {
    ok: true,
    baseline: { mode, permits, denyList, dnsNames, denyEch: spec.denyEch ?? false },
    namespaces,
    effective: {
      mode,
      defaultAction: mode === 'enforce' ? 'deny' : 'permit',
      enforcedNamespaces: namespaces,
      permits: permits.map((entry) => effectiveEntry(entry, sources.get(entry.name) ?? 'permits')),
      denyList: denyList.map((entry) => effectiveEntry(entry, 'denyList')),
      dnsNames,
    },
    warnings,
  };
}

/**
 * With no valid baseline ever read: enforce mode, the detected infrastructure only, the configured namespaces. Never
 * discovery mode and never a named permit nobody wrote.
 */
export function failClosedBaseline(detected: DetectedInfrastructure, namespaces: readonly string[]): Extract<BaselineResult, { ok: true }> {
  const result = baselineFromSpec({ mode: 'enforce', enforcedNamespaces: [...namespaces], infrastructure: { detect: true } }, detected);
  if (result.ok) return result;
  // Detected values that do not validate (cannot happen with API server data, but never trusted): no tier 1 at all.
  const bare = baselineFromSpec({ mode: 'enforce', enforcedNamespaces: [...namespaces], infrastructure: { detect: false } }, detected);
  if (!bare.ok) throw new Error(`no fail-closed baseline for namespaces ${namespaces.join(', ')}: ${bare.problems.join('; ')}`);
  return bare;
}

/** The posture in force and where it came from. */
export interface BaselineState {
  result: Extract<BaselineResult, { ok: true }>;
  /**
   * ok: from the object; missing / invalid: the last good one, or the fail-closed baseline when there is none; kept:
   * the copy an earlier agent kept, while the API server cannot be listed (kept-policies.ts).
   */
  source: 'object' | 'last-good' | 'fail-closed' | 'kept';
  /** Why the object is not in force (missing, or its problems); empty when it is. */
  problems: string[];
  /** metadata.generation of the object (0 when missing). */
  generation: number;
}

export interface BaselineSourceOptions {
  client: KubeClient;
  name?: string;
  /** The agent configuration's namespaces: used only while no valid baseline was ever read. */
  fallbackNamespaces: readonly string[];
  log: Logger;
  onChange: (state: BaselineState) => void;
  /**
   * Every collection has been listed (again): what a restarted agent's copy needs (keptBaseline). The posture may not
   * change with it (a collection listed empty reports no object), so onChange alone would not say so.
   */
  onListed?: () => void;
}

/** Watches the EgressBaseline and the objects detection reads; reports the posture whenever it changes. */
export class BaselineSource {
  private readonly collections: WatchedCollection<KubeObject>[] = [];
  private baselines!: WatchedCollection<EgressBaselineObject>;
  private nodes!: WatchedCollection<Wire<V1Node>>;
  private services!: WatchedCollection<Wire<V1Service>>;
  private dnsServices!: WatchedCollection<Wire<V1Service>>;
  private slices!: WatchedCollection<Wire<V1EndpointSlice>>;
  private serviceCIDRs: WatchedCollection<Wire<V1ServiceCIDR>> | null = null;
  private lastGoodSpec: EgressBaselineSpec | null = null;
  private lastText = '';
  private current: BaselineState | null = null;
  /** The copy an earlier agent kept: in force until every collection is listed. */
  private kept: (KeptPolicySet['baseline'] & { writtenAt: string }) | null = null;
  private scheduled = false;
  /** Every collection was listed at the last settled burst (onListed fires when this becomes true). */
  private wasListed = false;
  private readonly name: string;

  constructor(private readonly options: BaselineSourceOptions) {
    this.name = options.name ?? DEFAULT_BASELINE_NAME;
  }

  /**
   * Lists the baseline and what detection reads, then evaluates. With `kept`, a list that fails ends the wait at once
   * and the kept copy is in force until every collection is listed.
   */
  async start(startTimeoutMs = 10_000, kept?: KeptPolicySet['baseline'] & { writtenAt: string }): Promise<BaselineState> {
    const { client, log } = this.options;
    const onChange = () => this.schedule();
    // Evaluated after every list too: the last collection to list may bring no object, yet ends the kept copy's term.
    const onSettled = () => {
      this.schedule();
      const listed = this.listed();
      if (listed && !this.wasListed) this.options.onListed?.();
      this.wasListed = listed;
    };
    const watch = <T extends KubeObject>(path: string, labelSelector?: string) => {
      const collection = new WatchedCollection<T>({
        client,
        path,
        log,
        onChange,
        onSettled,
        ...(labelSelector ? { labelSelector } : {}),
      });
      this.collections.push(collection as unknown as WatchedCollection<KubeObject>);
      return collection;
    };
    this.baselines = watch(`/apis/${BASELINE_GROUP}/${BASELINE_VERSION}/${BASELINE_PLURAL}`);
    this.nodes = watch('/api/v1/nodes');
    this.services = watch('/api/v1/namespaces/default/services');
    this.dnsServices = watch('/api/v1/namespaces/kube-system/services');
    this.slices = watch('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', 'kubernetes.io/service-name=kubernetes');
    // ServiceCIDR is served from Kubernetes 1.33 (GA): an older server answers 404 and detection falls back.
    const serviceCIDRs = '/apis/networking.k8s.io/v1/servicecidrs';
    const probe = await Promise.race([
      client.list(serviceCIDRs, { limit: 1 }).then(
        () => 'served',
        (error: unknown) => (apiStatusOf(error) === 404 ? 'not served' : 'unknown'),
      ),
      new Promise<string>((resolve) => setTimeout(() => resolve('unknown'), startTimeoutMs).unref()),
    ]);
    if (probe === 'not served') log.info('the API server serves no ServiceCIDR objects; service CIDRs are not detected');
    else this.serviceCIDRs = watch(serviceCIDRs);
    for (const collection of this.collections) collection.start();
    // Until the baseline and detection are listed, the posture is unknown: wait, then evaluate (fail-closed if the API
    // server is still unreachable; the posture follows as soon as the lists succeed).
    await Promise.all(this.collections.map((c) => c.whenSynced(startTimeoutMs, { orFailed: kept !== undefined })));
    if (kept !== undefined && !this.listed()) {
      this.kept = kept;
      if (kept.spec !== null) this.lastGoodSpec = kept.spec;
    }
    return this.evaluate();
  }

  /** Every collection has been listed: the posture is the API server's. */
  private listed(): boolean {
    return this.collections.every((c) => c.synced);
  }

  /** What a restarted agent's copy keeps: the last valid spec and what was detected; null until listed. */
  keptBaseline(): KeptPolicySet['baseline'] | null {
    return this.listed() ? { spec: this.lastGoodSpec, detected: this.detected() } : null;
  }

  /** The posture in force (after start). */
  state(): BaselineState {
    return this.current ?? this.evaluate();
  }

  /** The baseline object as the API server last sent it (for the status writer). */
  object(): EgressBaselineObject | undefined {
    return this.baselines.get(this.name);
  }

  async stop(): Promise<void> {
    await Promise.all(this.collections.map((c) => c.stop()));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.evaluate();
    });
  }

  private detected(): DetectedInfrastructure {
    return detectInfrastructure({
      nodes: this.nodes.list(),
      kubernetesService: this.services.get('kubernetes', 'default'),
      kubeDnsService: this.dnsServices.get('kube-dns', 'kube-system'),
      apiEndpointSlices: this.slices.list(),
      serviceCIDRs: this.serviceCIDRs ? this.serviceCIDRs.list() : null,
    });
  }

  private evaluate(): BaselineState {
    if (this.kept !== null && this.listed()) {
      this.options.log.info({ writtenAt: this.kept.writtenAt }, 'EgressBaseline listed: the kept copy is replaced');
      this.kept = null;
    }
    if (this.kept !== null) return this.settle(this.keptState(this.kept));
    const detected = this.detected();
    const object = this.object();
    const generation = object?.metadata?.generation ?? 0;
    let state: BaselineState;
    const result = object ? baselineFromSpec(object.spec, detected) : null;
    if (result?.ok) {
      this.lastGoodSpec = object!.spec!;
      state = { result, source: 'object', problems: [], generation };
    } else {
      const problems = result ? result.problems : [`EgressBaseline ${this.name} does not exist`];
      // The last good spec, evaluated against what is detected now (a node added still gets its tier-1 permit).
      const kept = this.lastGoodSpec ? baselineFromSpec(this.lastGoodSpec, detected) : null;
      state = kept?.ok
        ? { result: kept, source: 'last-good', problems, generation }
        : { result: failClosedBaseline(detected, this.options.fallbackNamespaces), source: 'fail-closed', problems, generation };
    }
    return this.settle(state);
  }

  /** The kept copy's posture (its spec, else fail-closed), against the infrastructure detected when it was kept. */
  private keptState(kept: KeptPolicySet['baseline'] & { writtenAt: string }): BaselineState {
    const result = kept.spec !== null ? baselineFromSpec(kept.spec, kept.detected) : null;
    const problems = [`the API server cannot be listed: the copy kept at ${kept.writtenAt} is in force`];
    return {
      result: result?.ok ? result : failClosedBaseline(kept.detected, this.options.fallbackNamespaces),
      source: result?.ok ? 'kept' : 'fail-closed',
      problems,
      generation: 0,
    };
  }

  /** Makes the state current and reports it when the posture changed. */
  private settle(state: BaselineState): BaselineState {
    this.current = state;
    const text = JSON.stringify([state.result.effective, state.result.baseline.denyEch, state.source, state.problems]);
    if (text !== this.lastText) {
      this.lastText = text;
      if (state.problems.length > 0)
        this.options.log.error({ baseline: this.name, problems: state.problems, inForce: state.source }, 'EgressBaseline not in force');
      this.options.onChange(state);
    }
    return state;
  }
}

/** The baseline's status as the elected agent writes it: what is in force, and whether the object is. */
export function desiredBaselineStatus(
  state: BaselineState,
  previous: { conditions?: { type: string; status: string; lastTransitionTime?: string }[] } | undefined,
  now: Date,
): { observedGeneration: number; effective: EffectiveBaseline; conditions: Record<string, unknown>[] } {
  const valid = state.source === 'object';
  const inForce =
    state.source === 'last-good'
      ? 'the last valid version stays in force'
      : state.source === 'kept'
        ? "the copy kept on the node is in force (the agent's lists are not complete)"
        : "the fail-closed baseline is in force (enforce mode, detected infrastructure only, the agent configuration's namespaces)";
  const status = valid ? 'True' : 'False';
  const before = previous?.conditions?.find((c) => c.type === 'Valid');
  const warnings = state.result.warnings;
  return {
    observedGeneration: state.generation,
    effective: state.result.effective,
    conditions: [
      {
        type: 'Valid',
        status,
        observedGeneration: state.generation,
        lastTransitionTime: before?.status === status && before.lastTransitionTime ? before.lastTransitionTime : now.toISOString(),
        reason: valid ? (warnings.length > 0 ? 'ValidPartlyDetected' : 'Valid') : 'Invalid',
        message: (valid ? warnings : [inForce, ...state.problems]).join('; ').slice(0, 1024),
      },
    ],
  };
}

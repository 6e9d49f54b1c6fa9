// Agent configuration: what to enforce, where, and where events go. Host mode lists its workloads; a `kubernetes:`
// section selects Kubernetes mode, where the workloads are the node's pods.
// Every error names the file and the field, and says what to write instead.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { cidrContains, formatCidr, parseCidr } from '../policy/cidr.js';
import type { Cidr, RuleProtocol } from '../policy/types.js';
import { sinkConfigSchema, type SinkConfig } from '../sinks/registry.js';

export type Mode = 'enforce' | 'discovery';

export interface WorkloadConfig {
  namespace: string;
  name: string;
  /** Absolute path of the workload's cgroup v2 directory (resolved against the cgroup2 mount when relative). */
  cgroup: string;
  labels: Record<string, string>;
  addresses: string[];
  /** Host-side interfaces (in the agent's network namespace) for the packet-layer backstop. */
  interfaces: string[];
  /** The workload's network namespace (a path such as /run/netns/NAME or /proc/PID/ns/net), to find `interfaces`. */
  netns: string | null;
}

export type CgroupDriver = 'systemd' | 'cgroupfs';

/** Kubernetes mode: the workloads are this node's pods, read from the API server. */
export interface KubernetesConfig {
  /** This node's name (spec.nodeName of its pods): `kubernetes.nodeName`, else the NODE_NAME environment variable. */
  nodeName: string;
  /** A kubeconfig file; null: the in-cluster service account (`serviceAccountDir`, KUBERNETES_SERVICE_HOST/PORT). */
  kubeconfig: string | null;
  /** Token, CA and namespace files of the in-cluster service account. */
  serviceAccountDir: string;
  /** Namespaces whose pods are enforced; pods elsewhere are not enrolled. */
  namespaces: string[];
  /** The kubelet's cgroup driver; null: decided from the name of the pod cgroup root (`*.slice`: systemd). */
  cgroupDriver: CgroupDriver | null;
  /** The kubelet's pod cgroup root (kubepods.slice, kubepods), absolute; null: whichever of the two exists. */
  cgroupRoot: string | null;
  /** How long an announced pod may lack its cgroup before it is reported as not enforced. */
  podCgroupTimeoutSeconds: number;
  /** Where the last reported pods are kept for a restarted agent (tmpfs); null: not kept. */
  stateFile: string | null;
}

export interface BaselineEntryConfig {
  name: string;
  cidr: Cidr;
  protocol: RuleProtocol;
  portLow: number;
  portHigh: number;
  log: boolean;
}

export interface AgentConfig {
  file: string;
  node: string;
  /** cgroup v2 directory the programs attach to; null = the cgroup2 mount's root. */
  attachCgroup: string | null;
  /** Pin directory under bpffs; null = `<bpffs>/egressguard`. */
  pinDir: string | null;
  controlSocket: string;
  /** Host mode's workloads; empty in Kubernetes mode. */
  workloads: WorkloadConfig[];
  /** Kubernetes mode's settings; null in host mode. */
  kubernetes: KubernetesConfig | null;
  /** Policy files or folders, absolute. */
  policies: string[];
  policyNamespace: string;
  baseline: {
    mode: Mode;
    permits: BaselineEntryConfig[];
    denyList: BaselineEntryConfig[];
    /** DNS suffixes always answered (cluster-internal names); their flows still need a tier-1 or tier-2 permit. */
    dnsNames: string[];
    /** Deny TLS ClientHellos that carry Encrypted Client Hello (the outer SNI would decide otherwise). */
    denyEch: boolean;
  };
  /** Which enforcement layers run: TLS SNI checks (cgroup skb) and the packet-layer backstop (tc). */
  enforcement: { tls: boolean; packet: boolean };
  dns: {
    listen: string[];
    port: number;
    upstreams: { ip: string; port: number }[];
    deniedRcode: 'NXDOMAIN' | 'REFUSED';
    minTtlSeconds: number;
    maxTtlSeconds: number;
    graceSeconds: number;
    maxIpsPerName: number;
    maxIpsPerWorkload: number;
    /** DNS-over-TCP connections the proxy holds at once (node-wide); more are closed at accept. */
    maxTcpConnections: number;
    /** ... of those, what one workload may hold, so one workload cannot take the others' slots. */
    maxTcpConnectionsPerWorkload: number;
    /** DNS queries the proxy serves at once (node-wide); more are dropped and the clients retry. */
    maxInflightQueries: number;
    /** ... of those, what one workload may have in flight, so names that resolve slowly cannot take the others' slots. */
    maxInflightQueriesPerWorkload: number;
    /** Worker threads serving the proxy's sockets; the caps above hold over all of them. */
    workers: number;
  };
  events: {
    /** Each entry validated against its type's schema in the sink registry (src/sinks/registry.ts). */
    sinks: SinkConfig[];
    aggregateWindowMs: number;
  };
  /** The Prometheus endpoint (src/metrics); null when metrics.enabled is false. */
  metrics: { listen: { host: string; port: number } } | null;
}

/**
 * Every default of the agent configuration. Components take explicit values (no `?? 5` inside them), so this
 * table is the one place a default is decided.
 */
export const CONFIG_DEFAULTS = {
  controlSocket: '/run/egressguard/agent.sock',
  workloadNamespace: 'default',
  policyNamespace: 'default',
  mode: 'enforce',
  denyEch: false,
  enforcement: { tls: true, packet: true },
  dns: {
    port: 53,
    upstreamPort: 53,
    deniedRcode: 'NXDOMAIN',
    minTtlSeconds: 5,
    maxTtlSeconds: 3600,
    graceSeconds: 30,
    maxIpsPerName: 64,
    maxIpsPerWorkload: 4096,
    maxTcpConnections: 256,
    maxTcpConnectionsPerWorkload: 16,
    maxInflightQueries: 4096,
    maxInflightQueriesPerWorkload: 256,
    // Two: the second answers while the first waits for a core (at 2,000 q/s on a loaded 2-core machine, p99 23 -> 8 ms;
    // docs/benchmarks-notes.md, "Fourth pass"). Past the cores a worker only adds wake-ups (each wakes for every datagram).
    workers: Math.min(2, availableParallelism()),
  },
  events: { sinks: [{ type: 'jsonl', path: '-' }], aggregateWindowMs: 1000 },
  // Loopback: the metrics name namespaces, policies and rules; expose them wider on purpose only.
  metrics: { enabled: true, listen: '127.0.0.1:9469' },
  kubernetes: {
    serviceAccountDir: '/var/run/secrets/kubernetes.io/serviceaccount',
    podCgroupTimeoutSeconds: 30,
    stateFile: '/run/egressguard/kubernetes-pods.json',
  },
} as const satisfies {
  controlSocket: string;
  workloadNamespace: string;
  policyNamespace: string;
  mode: Mode;
  denyEch: boolean;
  enforcement: AgentConfig['enforcement'];
  dns: Omit<AgentConfig['dns'], 'listen' | 'upstreams'> & { upstreamPort: number };
  events: { sinks: readonly SinkConfig[]; aggregateWindowMs: number };
  metrics: { enabled: boolean; listen: string };
  kubernetes: Pick<KubernetesConfig, 'serviceAccountDir' | 'podCgroupTimeoutSeconds'> & { stateFile: string };
};

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const cidrEntrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'cidr'],
  properties: {
    name: { type: 'string', minLength: 1 },
    cidr: { type: 'string' },
    protocol: { enum: ['tcp', 'udp', 'icmp', 'any'] },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    endPort: { type: 'integer', minimum: 1, maximum: 65535 },
    log: { type: 'boolean' },
  },
} as const;

// Deny-list entries (threat feeds) deny whole addresses: no protocol or port to narrow them.
const denyEntrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'cidr'],
  properties: { name: { type: 'string', minLength: 1 }, cidr: { type: 'string' } },
} as const;

// RFC 1123 label: what Kubernetes accepts as a namespace name.
const NAMESPACE_PATTERN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';

const schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    node: { type: 'string', minLength: 1 },
    attachCgroup: { type: 'string', minLength: 1 },
    pinDir: { type: 'string', minLength: 1 },
    controlSocket: { type: 'string', minLength: 1 },
    workloads: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'cgroup'],
        properties: {
          namespace: { type: 'string', minLength: 1 },
          name: { type: 'string', minLength: 1 },
          cgroup: { type: 'string', minLength: 1 },
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          addresses: { type: 'array', items: { type: 'string' } },
          interfaces: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 15 } },
          netns: { type: 'string', minLength: 1 },
        },
      },
    },
    policies: { type: 'array', items: { type: 'string', minLength: 1 } },
    policyNamespace: { type: 'string', minLength: 1 },
    baseline: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['enforce', 'discovery'] },
        permits: { type: 'array', items: cidrEntrySchema },
        denyList: { type: 'array', items: denyEntrySchema },
        dnsNames: { type: 'array', items: { type: 'string', minLength: 1 } },
        denyEch: { type: 'boolean' },
      },
    },
    enforcement: {
      type: 'object',
      additionalProperties: false,
      properties: { tls: { type: 'boolean' }, packet: { type: 'boolean' } },
    },
    dns: {
      type: 'object',
      additionalProperties: false,
      properties: {
        listen: { type: 'array', minItems: 1, items: { type: 'string' } },
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        upstreams: { type: 'array', minItems: 1, items: { type: 'string' } },
        deniedRcode: { enum: ['NXDOMAIN', 'REFUSED'] },
        minTtlSeconds: { type: 'integer', minimum: 0, maximum: 86400 },
        maxTtlSeconds: { type: 'integer', minimum: 1, maximum: 604800 },
        graceSeconds: { type: 'integer', minimum: 0, maximum: 86400 },
        maxIpsPerName: { type: 'integer', minimum: 1, maximum: 4096 },
        maxIpsPerWorkload: { type: 'integer', minimum: 1, maximum: 65536 },
        maxTcpConnections: { type: 'integer', minimum: 1, maximum: 65536 },
        maxTcpConnectionsPerWorkload: { type: 'integer', minimum: 1, maximum: 65536 },
        maxInflightQueries: { type: 'integer', minimum: 1, maximum: 65536 },
        maxInflightQueriesPerWorkload: { type: 'integer', minimum: 1, maximum: 65536 },
        workers: { type: 'integer', minimum: 1, maximum: 64 },
      },
    },
    events: {
      type: 'object',
      additionalProperties: false,
      properties: {
        sinks: { type: 'array', items: sinkConfigSchema() },
        // The pipeline needs a window of at least 1 ms (0 was accepted here and then failed at start).
        aggregateWindowMs: { type: 'integer', minimum: 1, maximum: 600000 },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' }, listen: { type: 'string', minLength: 1 } },
    },
    kubernetes: {
      type: 'object',
      additionalProperties: false,
      properties: {
        nodeName: { type: 'string', minLength: 1 },
        kubeconfig: { type: 'string', minLength: 1 },
        serviceAccountDir: { type: 'string', minLength: 1 },
        namespaces: { type: 'array', uniqueItems: true, items: { type: 'string', pattern: NAMESPACE_PATTERN } },
        cgroupDriver: { enum: ['auto', 'systemd', 'cgroupfs'] },
        cgroupRoot: { type: 'string', minLength: 1 },
        podCgroupTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
        stateFile: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }] },
      },
    },
  },
} as const;

export type RawCidrEntry = { name: string; cidr: string; protocol?: RuleProtocol; port?: number; endPort?: number; log?: boolean };

/** The file's shape once the schema accepted it. */
interface RawConfig {
  node?: string;
  attachCgroup?: string;
  pinDir?: string;
  controlSocket?: string;
  workloads?: {
    namespace?: string;
    name: string;
    cgroup: string;
    labels?: Record<string, string>;
    addresses?: string[];
    interfaces?: string[];
    netns?: string;
  }[];
  policies?: string[];
  policyNamespace?: string;
  baseline?: { mode?: Mode; permits?: RawCidrEntry[]; denyList?: RawCidrEntry[]; dnsNames?: string[]; denyEch?: boolean };
  enforcement?: { tls?: boolean; packet?: boolean };
  dns?: {
    listen?: string[];
    port?: number;
    upstreams?: string[];
    deniedRcode?: 'NXDOMAIN' | 'REFUSED';
    minTtlSeconds?: number;
    maxTtlSeconds?: number;
    graceSeconds?: number;
    maxIpsPerName?: number;
    maxIpsPerWorkload?: number;
    maxTcpConnections?: number;
    maxTcpConnectionsPerWorkload?: number;
    maxInflightQueries?: number;
    maxInflightQueriesPerWorkload?: number;
    workers?: number;
  };
  events?: { sinks?: SinkConfig[]; aggregateWindowMs?: number };
  metrics?: { enabled?: boolean; listen?: string };
  kubernetes?: {
    nodeName?: string;
    kubeconfig?: string;
    serviceAccountDir?: string;
    namespaces?: string[];
    cgroupDriver?: 'auto' | CgroupDriver;
    cgroupRoot?: string;
    podCgroupTimeoutSeconds?: number;
    stateFile?: string | null;
  };
}

const validate = new Ajv({ allErrors: true, verbose: true }).compile(schema);

function describeSchemaError(error: ErrorObject): string {
  const field =
    error.instancePath
      .replace(/^\//, '')
      .replace(/\/(\d+)/g, '[$1]')
      .replace(/\//g, '.') || '(top level)';
  switch (error.keyword) {
    case 'additionalProperties': {
      const extra = (error.params as { additionalProperty: string }).additionalProperty;
      return `${field === '(top level)' ? '' : `${field}.`}${extra}: unknown field; remove it or check its spelling`;
    }
    case 'required':
      return `${field}: missing required field "${(error.params as { missingProperty: string }).missingProperty}"`;
    case 'pattern':
      if (error.schema === NAMESPACE_PATTERN)
        return `${field}: "${String(error.data)}" is not a namespace name (lower-case letters, digits and "-", at most 63)`;
      return `${field}: ${error.message ?? 'is invalid'}`;
    case 'uniqueItems':
      return `${field}: lists an entry twice`;
    case 'enum':
      return `${field}: must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${field}: ${error.message ?? 'is invalid'}`;
  }
}

function parseHostPort(text: string, defaultPort: number): { ip: string; port: number } | null {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) return isIP(bracketed[1]!) === 6 ? { ip: bracketed[1]!, port: Number(bracketed[2] ?? defaultPort) } : null;
  if (isIP(text) !== 0) return { ip: text, port: defaultPort };
  const v4 = /^([\d.]+):(\d+)$/.exec(text);
  if (v4 && isIP(v4[1]!) === 4) return { ip: v4[1]!, port: Number(v4[2]) };
  return null;
}

export function cidrEntries(raw: RawCidrEntry[] | undefined, field: string, problems: string[]): BaselineEntryConfig[] {
  const entries: BaselineEntryConfig[] = [];
  const seen = new Set<string>();
  (raw ?? []).forEach((entry, index) => {
    const where = `${field}[${index}]`;
    const cidr = parseCidr(entry.cidr);
    if (typeof cidr === 'string') {
      problems.push(`${where}.cidr: ${cidr}`);
      return;
    }
    if (seen.has(entry.name)) problems.push(`${where}.name: "${entry.name}" is used twice in ${field}; names must be unique`);
    seen.add(entry.name);
    if (entry.endPort !== undefined && entry.port === undefined) problems.push(`${where}.endPort: needs "port" as well`);
    if (entry.endPort !== undefined && entry.port !== undefined && entry.endPort < entry.port)
      problems.push(`${where}.endPort: ${entry.endPort} is below port ${entry.port}`);
    entries.push({
      name: entry.name,
      cidr,
      protocol: entry.protocol ?? 'any',
      portLow: entry.port ?? 0,
      portHigh: entry.endPort ?? entry.port ?? 65535,
      log: entry.log ?? false,
    });
  });
  // The kernel consults only the longest matching prefix: an entry inside another with other protocols or ports
  // would hide the outer one for the addresses it covers.
  entries.forEach((inner, i) =>
    entries.forEach((outer, j) => {
      if (i === j || inner.cidr.family !== outer.cidr.family || inner.cidr.prefix < outer.cidr.prefix) return;
      if (!cidrContains(outer.cidr, inner.cidr.address)) return;
      if (inner.cidr.prefix === outer.cidr.prefix && j < i) return;
      const same = inner.protocol === outer.protocol && inner.portLow === outer.portLow && inner.portHigh === outer.portHigh;
      if (inner.cidr.prefix === outer.cidr.prefix)
        problems.push(`${field}: "${inner.name}" and "${outer.name}" both name ${formatCidr(inner.cidr)}; merge them into one entry`);
      else if (!same)
        problems.push(
          `${field}: "${inner.name}" (${formatCidr(inner.cidr)}) lies inside "${outer.name}" (${formatCidr(outer.cidr)}) with other protocol or ports; ` +
            'only the narrower entry would apply to its addresses: give both the same protocol and ports, or split the outer one',
        );
    }),
  );
  return entries;
}

/** The `kubernetes:` section, or null in host mode (the section is absent). */
function kubernetesSection(
  raw: RawConfig,
  base: string,
  underCgroup: (path: string) => string,
  env: NodeJS.ProcessEnv,
  problems: string[],
): KubernetesConfig | null {
  const k = raw.kubernetes;
  if (k === undefined) {
    if (raw.workloads === undefined)
      problems.push("workloads: missing; list the workloads to enforce, or add a kubernetes: section to enforce this node's pods");
    return null;
  }
  if (raw.workloads !== undefined)
    problems.push("workloads: not used in Kubernetes mode (the workloads are the node's pods); remove it or the kubernetes: section");
  const nodeName = k.nodeName ?? env.NODE_NAME ?? '';
  if (nodeName === '')
    problems.push("kubernetes.nodeName: missing; set it, or NODE_NAME in the environment (the downward API's spec.nodeName)");
  const cgroupDriver = k.cgroupDriver === undefined || k.cgroupDriver === 'auto' ? null : k.cgroupDriver;
  const cgroupRoot = k.cgroupRoot === undefined ? null : underCgroup(k.cgroupRoot);
  if (cgroupRoot !== null && cgroupDriver !== null && cgroupRoot.endsWith('.slice') !== (cgroupDriver === 'systemd'))
    problems.push(
      `kubernetes.cgroupRoot: ${cgroupRoot} does not fit cgroupDriver ${cgroupDriver} (the systemd driver's root is a *.slice); fix one of them`,
    );
  return {
    nodeName,
    kubeconfig: k.kubeconfig === undefined ? null : resolve(base, k.kubeconfig),
    serviceAccountDir: resolve(base, k.serviceAccountDir ?? CONFIG_DEFAULTS.kubernetes.serviceAccountDir),
    namespaces: k.namespaces ?? [],
    cgroupDriver,
    cgroupRoot,
    podCgroupTimeoutSeconds: k.podCgroupTimeoutSeconds ?? CONFIG_DEFAULTS.kubernetes.podCgroupTimeoutSeconds,
    stateFile: k.stateFile === null ? null : resolve(base, k.stateFile ?? CONFIG_DEFAULTS.kubernetes.stateFile),
  };
}

/**
 * Parse and validate a config file's text. `cgroup2Mount` resolves relative cgroup paths; `env` supplies NODE_NAME in
 * Kubernetes mode.
 */
export function parseConfig(file: string, text: string, cgroup2Mount: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new ConfigError(file, [`not valid YAML: ${(error as Error).message}`]);
  }
  // An `if` error only says its `then` failed (events.sinks: the entry's own errors follow it): leave it out.
  if (!validate(parsed))
    throw new ConfigError(file, (validate.errors ?? []).filter((error) => error.keyword !== 'if').map(describeSchemaError));
  const raw = parsed as RawConfig;
  const problems: string[] = [];
  const base = dirname(resolve(file));
  const underCgroup = (path: string) => (isAbsolute(path) ? path : resolve(cgroup2Mount, path));

  const kubernetes = kubernetesSection(raw, base, underCgroup, env, problems);
  const workloads: WorkloadConfig[] = (raw.workloads ?? []).map((w, index) => {
    const addresses = w.addresses ?? [];
    addresses.forEach((address, a) => {
      if (isIP(address) === 0) problems.push(`workloads[${index}].addresses[${a}]: "${address}" is not an IPv4 or IPv6 address`);
    });
    return {
      namespace: w.namespace ?? CONFIG_DEFAULTS.workloadNamespace,
      name: w.name,
      cgroup: underCgroup(w.cgroup),
      labels: { ...(w.labels ?? {}) },
      addresses,
      interfaces: w.interfaces ?? [],
      netns: w.netns ?? null,
    };
  });
  const byKey = new Map<string, number>();
  const byAddress = new Map<string, string>();
  const byCgroup = new Map<string, string>();
  workloads.forEach((w, index) => {
    const key = `${w.namespace}/${w.name}`;
    if (byKey.has(key)) problems.push(`workloads[${index}]: ${key} is declared twice`);
    byKey.set(key, index);
    const cgroupOwner = byCgroup.get(w.cgroup);
    if (cgroupOwner) problems.push(`workloads[${index}].cgroup: ${w.cgroup} is already the cgroup of ${cgroupOwner}`);
    byCgroup.set(w.cgroup, key);
    for (const address of w.addresses) {
      const owner = byAddress.get(address);
      if (owner)
        problems.push(
          `workloads[${index}].addresses: ${address} already belongs to ${owner}; the DNS proxy identifies workloads by address`,
        );
      byAddress.set(address, key);
    }
  });

  const dns = raw.dns ?? {};
  const port = dns.port ?? CONFIG_DEFAULTS.dns.port;
  const listen = dns.listen ?? [];
  listen.forEach((address, index) => {
    if (isIP(address) === 0) problems.push(`dns.listen[${index}]: "${address}" is not an IP address`);
  });
  const families = listen.map((address) => isIP(address));
  if (families.filter((f) => f === 4).length > 1 || families.filter((f) => f === 6).length > 1)
    problems.push('dns.listen: give at most one IPv4 and one IPv6 address');
  const upstreams = (dns.upstreams ?? []).flatMap((text, index) => {
    const parsed = parseHostPort(text, CONFIG_DEFAULTS.dns.upstreamPort);
    if (!parsed) problems.push(`dns.upstreams[${index}]: "${text}" is not IP, IP:port or [IPv6]:port`);
    return parsed ? [parsed] : [];
  });
  if ((workloads.length > 0 || kubernetes !== null) && listen.length === 0)
    problems.push('dns.listen: enrolled workloads need the DNS proxy; give the address(es) it listens on, reachable from the workloads');
  if (listen.length > 0 && upstreams.length === 0)
    problems.push('dns.upstreams: give the trusted resolver the proxy forwards allowed queries to');
  const minTtlSeconds = dns.minTtlSeconds ?? CONFIG_DEFAULTS.dns.minTtlSeconds;
  const maxTtlSeconds = dns.maxTtlSeconds ?? CONFIG_DEFAULTS.dns.maxTtlSeconds;
  if (minTtlSeconds > maxTtlSeconds) problems.push('dns.minTtlSeconds: must not exceed dns.maxTtlSeconds');
  const maxTcpConnections = dns.maxTcpConnections ?? CONFIG_DEFAULTS.dns.maxTcpConnections;
  const maxTcpConnectionsPerWorkload = dns.maxTcpConnectionsPerWorkload ?? CONFIG_DEFAULTS.dns.maxTcpConnectionsPerWorkload;
  if (maxTcpConnectionsPerWorkload > maxTcpConnections)
    problems.push(
      `dns.maxTcpConnectionsPerWorkload: ${maxTcpConnectionsPerWorkload} must not exceed dns.maxTcpConnections (${maxTcpConnections})`,
    );
  const maxInflightQueries = dns.maxInflightQueries ?? CONFIG_DEFAULTS.dns.maxInflightQueries;
  const maxInflightQueriesPerWorkload = dns.maxInflightQueriesPerWorkload ?? CONFIG_DEFAULTS.dns.maxInflightQueriesPerWorkload;
  if (maxInflightQueriesPerWorkload > maxInflightQueries)
    problems.push(
      `dns.maxInflightQueriesPerWorkload: ${maxInflightQueriesPerWorkload} must not exceed dns.maxInflightQueries (${maxInflightQueries})`,
    );

  const metricsEnabled = raw.metrics?.enabled ?? CONFIG_DEFAULTS.metrics.enabled;
  const metricsListenText = raw.metrics?.listen ?? CONFIG_DEFAULTS.metrics.listen;
  const metricsListen = parseHostPort(metricsListenText, 0);
  if (metricsEnabled && (metricsListen === null || metricsListen.port === 0 || metricsListen.port > 65535))
    problems.push(`metrics.listen: "${metricsListenText}" is not IP:port or [IPv6]:port with a port from 1 to 65535`);

  const baseline = raw.baseline ?? {};
  const config: AgentConfig = {
    file: resolve(file),
    node: raw.node ?? hostname(),
    attachCgroup: raw.attachCgroup ? underCgroup(raw.attachCgroup) : null,
    pinDir: raw.pinDir ?? null,
    controlSocket: raw.controlSocket ?? CONFIG_DEFAULTS.controlSocket,
    workloads,
    kubernetes,
    policies: (raw.policies ?? []).map((p) => resolve(base, p)),
    policyNamespace: raw.policyNamespace ?? CONFIG_DEFAULTS.policyNamespace,
    baseline: {
      mode: baseline.mode ?? CONFIG_DEFAULTS.mode,
      permits: cidrEntries(baseline.permits, 'baseline.permits', problems),
      denyList: cidrEntries(baseline.denyList, 'baseline.denyList', problems),
      dnsNames: (baseline.dnsNames ?? []).map((name) => name.toLowerCase().replace(/\.$/, '')),
      denyEch: baseline.denyEch ?? CONFIG_DEFAULTS.denyEch,
    },
    enforcement: {
      tls: raw.enforcement?.tls ?? CONFIG_DEFAULTS.enforcement.tls,
      packet: raw.enforcement?.packet ?? CONFIG_DEFAULTS.enforcement.packet,
    },
    dns: {
      listen,
      port,
      upstreams,
      deniedRcode: dns.deniedRcode ?? CONFIG_DEFAULTS.dns.deniedRcode,
      minTtlSeconds,
      maxTtlSeconds,
      graceSeconds: dns.graceSeconds ?? CONFIG_DEFAULTS.dns.graceSeconds,
      maxIpsPerName: dns.maxIpsPerName ?? CONFIG_DEFAULTS.dns.maxIpsPerName,
      maxIpsPerWorkload: dns.maxIpsPerWorkload ?? CONFIG_DEFAULTS.dns.maxIpsPerWorkload,
      maxTcpConnections,
      maxTcpConnectionsPerWorkload,
      maxInflightQueries,
      maxInflightQueriesPerWorkload,
      workers: dns.workers ?? CONFIG_DEFAULTS.dns.workers,
    },
    events: {
      sinks: raw.events?.sinks ?? CONFIG_DEFAULTS.events.sinks.map((sink) => ({ ...sink })),
      aggregateWindowMs: raw.events?.aggregateWindowMs ?? CONFIG_DEFAULTS.events.aggregateWindowMs,
    },
    metrics: metricsEnabled && metricsListen ? { listen: { host: metricsListen.ip, port: metricsListen.port } } : null,
  };
  if (problems.length > 0) throw new ConfigError(file, problems);
  return config;
}

export function loadConfig(file: string, cgroup2Mount: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfigFile(file, cgroup2Mount, env).config;
}

/** The configuration and the SHA-256 (hex) of the text it was parsed from: status shows which version is in force. */
export function loadConfigFile(
  file: string,
  cgroup2Mount: string,
  env: NodeJS.ProcessEnv = process.env,
): { config: AgentConfig; digest: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [`cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
  }
  return { config: parseConfig(file, text, cgroup2Mount, env), digest: createHash('sha256').update(text).digest('hex') };
}

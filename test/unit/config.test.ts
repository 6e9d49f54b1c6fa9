import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { CONFIG_DEFAULTS, ConfigError, parseConfig } from '../../src/agent/config.js';

const cgroupMount = '/sys/fs/cgroup/unified';

function problems(text: string): string[] {
  try {
    parseConfig('/etc/egressguard/egressguard.yaml', text, cgroupMount);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail('the configuration was accepted');
}

const minimal = `
workloads:
  - name: ms1kbsng-xyz
    namespace: obot-mcp
    cgroup: obot/ms1kbsng
    labels: { app: ms1kbsng }
    addresses: [198.18.10.2, "fd00:eb:10::2"]
policies: [./policies]
dns:
  listen: [198.18.0.53]
  upstreams: ["198.18.100.53", "[fd00:eb:100::53]:5353"]
`;

describe('agent configuration', () => {
  test('defaults and path resolution', () => {
    const config = parseConfig('/etc/egressguard/egressguard.yaml', minimal, cgroupMount);
    assert.equal(config.workloads[0]!.cgroup, '/sys/fs/cgroup/unified/obot/ms1kbsng');
    assert.deepEqual(config.policies, ['/etc/egressguard/policies']);
    assert.equal(config.baseline.mode, 'enforce');
    assert.deepEqual(config.dns.upstreams, [
      { ip: '198.18.100.53', port: 53 },
      { ip: 'fd00:eb:100::53', port: 5353 },
    ]);
    assert.equal(config.dns.deniedRcode, 'NXDOMAIN');
    assert.deepEqual(config.events.sinks, [{ type: 'jsonl', path: '-' }]);
  });

  test('every tunable left out takes its value from the one defaults table', () => {
    const config = parseConfig('/etc/egressguard/egressguard.yaml', minimal, cgroupMount);
    const { upstreamPort, ...dnsDefaults } = CONFIG_DEFAULTS.dns;
    assert.deepEqual(
      { ...config.dns, listen: undefined, upstreams: undefined },
      { ...dnsDefaults, listen: undefined, upstreams: undefined },
    );
    assert.equal(config.dns.upstreams[0]?.port, upstreamPort);
    assert.deepEqual(config.enforcement, CONFIG_DEFAULTS.enforcement);
    assert.equal(config.events.aggregateWindowMs, CONFIG_DEFAULTS.events.aggregateWindowMs);
    assert.deepEqual(
      [config.controlSocket, config.policyNamespace, config.baseline.mode, config.baseline.denyEch],
      [CONFIG_DEFAULTS.controlSocket, CONFIG_DEFAULTS.policyNamespace, CONFIG_DEFAULTS.mode, CONFIG_DEFAULTS.denyEch],
    );
    const workload = parseConfig('c.yaml', minimal.replace('    namespace: obot-mcp\n', ''), cgroupMount).workloads[0];
    assert.equal(workload?.namespace, CONFIG_DEFAULTS.workloadNamespace);
  });

  test('an explicit value wins over its default, and the defaults table is not shared with a parsed config', () => {
    const config = parseConfig('c.yaml', minimal.replace('dns:\n', 'dns:\n  maxTtlSeconds: 900\n  graceSeconds: 0\n'), cgroupMount);
    assert.equal(config.dns.maxTtlSeconds, 900);
    assert.equal(config.dns.graceSeconds, 0);
    assert.equal(parseConfig('c.yaml', minimal.replace('dns:\n', 'dns:\n  workers: 3\n'), cgroupMount).dns.workers, 3);
    config.events.sinks.push({ type: 'jsonl', path: '/tmp/x' });
    assert.equal(CONFIG_DEFAULTS.events.sinks.length, 1);
  });

  test('baseline entries are parsed into CIDRs and port ranges', () => {
    const config = parseConfig(
      'c.yaml',
      `${minimal}baseline:
  mode: discovery
  permits:
    - { name: cluster-dns, cidr: 10.96.0.10, protocol: udp, port: 53 }
    - { name: pods, cidr: 10.244.0.0/16, port: 1000, endPort: 2000, log: true }
`,
      cgroupMount,
    );
    assert.equal(config.baseline.mode, 'discovery');
    assert.deepEqual(config.baseline.permits[0], {
      name: 'cluster-dns',
      cidr: { family: 4, address: '10.96.0.10', prefix: 32 },
      protocol: 'udp',
      portLow: 53,
      portHigh: 53,
      log: false,
    });
    assert.equal(config.baseline.permits[1]!.portHigh, 2000);
  });

  test('each mistake is named by its field', () => {
    assert.deepEqual(problems(`${minimal}bogus: 1\n`), ['bogus: unknown field; remove it or check its spelling']);
    assert.match(problems(minimal.replace('cgroup: obot/ms1kbsng', 'cgrop: obot/ms1kbsng')).join('\n'), /workloads\[0\]/);
    assert.match(problems(`${minimal}baseline: { mode: enforcing }\n`).join('\n'), /baseline\.mode: must be one of "enforce", "discovery"/);
    assert.match(
      problems(minimal.replace('198.18.10.2', '198.18.10.300')).join('\n'),
      /workloads\[0\]\.addresses\[0\]: "198\.18\.10\.300" is not an IPv4 or IPv6 address/,
    );
    assert.match(
      problems(`${minimal}baseline:\n  permits:\n    - { name: x, cidr: 10.0.0.0/33 }\n`).join('\n'),
      /baseline\.permits\[0\]\.cidr: prefix length "\/33" must be a whole number from 0 to 32/,
    );
    assert.match(
      problems(`${minimal}baseline:\n  permits:\n    - { name: x, cidr: 10.0.0.0/8, endPort: 5 }\n`).join('\n'),
      /endPort: needs "port"/,
    );
    assert.match(problems(minimal.replace('"198.18.100.53", ', '"resolver.local", ')).join('\n'), /dns\.upstreams\[0\]/);
    assert.match(problems(minimal.replace('dns:\n', 'dns:\n  workers: 0\n')).join('\n'), /dns\.workers/);
    assert.match(problems('workloads: [\n').join('\n'), /not valid YAML/);
  });

  test('baseline entries that the longest-prefix lookup would let hide each other are rejected', () => {
    const nested = problems(`${minimal}baseline:
  permits:
    - { name: cluster, cidr: 10.0.0.0/8 }
    - { name: dns, cidr: 10.96.0.10/32, protocol: udp, port: 53 }
`).join('\n');
    assert.match(nested, /"dns" \(10\.96\.0\.10\/32\) lies inside "cluster" \(10\.0\.0\.0\/8\) with other protocol or ports/);
    // The same protocol and ports nested are fine; so are disjoint entries.
    parseConfig(
      'c.yaml',
      `${minimal}baseline:\n  permits:\n    - { name: a, cidr: 10.0.0.0/8 }\n    - { name: b, cidr: 10.1.0.0/16 }\n    - { name: c, cidr: 192.0.2.0/24, port: 53 }\n`,
      cgroupMount,
    );
    // Deny-list entries deny whole addresses: ports are refused with the field named.
    assert.match(
      problems(`${minimal}baseline:\n  denyList:\n    - { name: feed, cidr: 203.0.113.0/24, port: 22 }\n`).join('\n'),
      /baseline\.denyList\[0\]\.port: unknown field/,
    );
  });

  test('learned-address lifetimes are bounded both ways', () => {
    const config = parseConfig('c.yaml', minimal, cgroupMount);
    assert.equal(config.dns.maxTtlSeconds, 3600);
    assert.match(
      problems(minimal.replace('dns:\n', 'dns:\n  minTtlSeconds: 600\n  maxTtlSeconds: 60\n')).join('\n'),
      /dns\.minTtlSeconds: must not exceed dns\.maxTtlSeconds/,
    );
  });

  const shareCaps = [
    ['DNS-over-TCP connection', 'maxTcpConnections', 'maxTcpConnectionsPerWorkload'],
    ['DNS in-flight query', 'maxInflightQueries', 'maxInflightQueriesPerWorkload'],
  ] as const;
  for (const [what, node, share] of shareCaps) {
    test(`${what} caps: defaults, limits, and no workload share larger than the node-wide cap`, () => {
      const withDns = (lines: string) => minimal.replace('dns:\n', `dns:\n${lines}`);
      const defaults = parseConfig('c.yaml', minimal, cgroupMount).dns;
      assert.deepEqual([defaults[node], defaults[share]], [CONFIG_DEFAULTS.dns[node], CONFIG_DEFAULTS.dns[share]]);
      const set = parseConfig('c.yaml', withDns(`  ${node}: 64\n  ${share}: 64\n`), cgroupMount);
      assert.deepEqual([set.dns[node], set.dns[share]], [64, 64]);
      assert.deepEqual(problems(withDns(`  ${node}: 8\n  ${share}: 9\n`)), [`dns.${share}: 9 must not exceed dns.${node} (8)`]);
      // Below the default share without raising it: named the same way.
      const belowShare = CONFIG_DEFAULTS.dns[share] - 1;
      assert.deepEqual(problems(withDns(`  ${node}: ${belowShare}\n`)), [
        `dns.${share}: ${CONFIG_DEFAULTS.dns[share]} must not exceed dns.${node} (${belowShare})`,
      ]);
      assert.match(problems(withDns(`  ${share}: 0\n`)).join('\n'), new RegExp(`dns\\.${share}`));
      assert.match(problems(withDns(`  ${node}: many\n`)).join('\n'), new RegExp(`dns\\.${node}`));
    });
  }

  test('two workloads may not share an address, a cgroup or a name', () => {
    const twice = minimal.replace(
      'policies:',
      `  - name: ms1kbsng-xyz
    namespace: obot-mcp
    cgroup: obot/ms1kbsng
    addresses: [198.18.10.2]
policies:`,
    );
    const found = problems(twice).join('\n');
    assert.match(found, /obot-mcp\/ms1kbsng-xyz is declared twice/);
    assert.match(found, /already the cgroup of obot-mcp\/ms1kbsng-xyz/);
    assert.match(found, /198\.18\.10\.2 already belongs to obot-mcp\/ms1kbsng-xyz/);
  });

  test('enrolled workloads need a DNS proxy address and an upstream', () => {
    assert.match(problems(minimal.replace(/dns:[\s\S]*$/, '')).join('\n'), /dns\.listen: enrolled workloads need the DNS proxy/);
  });
});

// The `metrics` section of the agent configuration: on by default on loopback, off on request, bad addresses named.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/agent/config.js';

const base = `
workloads: []
`;

function parse(extra: string) {
  return parseConfig('/etc/egressguard/egressguard.yaml', base + extra, '/sys/fs/cgroup');
}

describe('metrics configuration', () => {
  test('defaults to 127.0.0.1:9469', () => {
    assert.deepEqual(parse('').metrics, { listen: { host: '127.0.0.1', port: 9469 } });
  });

  test('an IPv6 listen address and a disabled endpoint', () => {
    assert.deepEqual(parse('metrics: { listen: "[::1]:9100" }').metrics, { listen: { host: '::1', port: 9100 } });
    assert.equal(parse('metrics: { enabled: false }').metrics, null);
  });

  test('an address without a port, a bad port or an unknown field is a specific error', () => {
    for (const [text, message] of [
      ['metrics: { listen: "127.0.0.1" }', /metrics\.listen: "127\.0\.0\.1" is not IP:port/],
      ['metrics: { listen: "127.0.0.1:70000" }', /metrics\.listen: "127\.0\.0\.1:70000"/],
      ['metrics: { listen: "localhost:9469" }', /metrics\.listen: "localhost:9469"/],
      ['metrics: { port: 9469 }', /metrics\.port: unknown field/],
    ] as const) {
      assert.throws(
        () => parse(text),
        (error: unknown) => error instanceof ConfigError && error.problems.some((p) => message.test(p)),
        text,
      );
    }
  });
});

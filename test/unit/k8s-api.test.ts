// The agent's own API client: what it writes for the API server to parse, and how it reads a refusal.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError, apiStatusOf, KubeClient, microTime } from '../../src/k8s/api.js';
import { describeApiError } from '../../src/k8s/informer.js';

describe('API client', () => {
  test('a MicroTime has exactly six fractional digits (the API server rejects three)', () => {
    assert.equal(microTime(new Date('2026-12-02T17:30:01.234Z')), '2026-12-02T17:30:01.234000Z');
    assert.match(microTime(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  test("a refusal carries the HTTP status and the Status object's message", () => {
    const status = { kind: 'Status', code: 403, message: 'leases.coordination.k8s.io is forbidden' };
    const error = new ApiError(403, JSON.stringify(status), 'PUT /apis/coordination.k8s.io/v1/namespaces/x/leases/y');
    assert.equal(
      error.message,
      'PUT /apis/coordination.k8s.io/v1/namespaces/x/leases/y: HTTP 403: leases.coordination.k8s.io is forbidden',
    );
    assert.equal(apiStatusOf(error), 403);
    assert.match(describeApiError(error), /^403 Forbidden: the agent's ClusterRole lacks list\/watch here: leases/);
    assert.equal(new ApiError(502, 'Bad Gateway', 'GET /api/v1/pods').message, 'GET /api/v1/pods: HTTP 502: Bad Gateway');
    // A socket error has a string code: no HTTP status.
    assert.equal(apiStatusOf(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), undefined);
  });

  test('only https servers', () => {
    assert.throws(() => new KubeClient({ server: 'http://198.18.0.1:8080', rejectUnauthorized: true }), /only https:\/\/ is supported/);
  });

  test('a call the server never answers is ended after requestTimeoutMs and its connection closed', async () => {
    // A server that accepts and never sends a byte (a black-holed path), on a Unix socket: no IP traffic at all.
    const dir = mkdtempSync(join(tmpdir(), 'egk8s-api-'));
    const path = join(dir, 'apiserver.sock');
    let serverSideClosed!: () => void;
    const closed = new Promise<void>((resolve) => (serverSideClosed = resolve));
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.on('close', serverSideClosed);
      socket.resume(); // Reads (and drops) what the client sends, so the client's close is seen.
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const client = new KubeClient({
      server: 'https://198.18.0.1:6443',
      rejectUnauthorized: false,
      socketPath: path,
      requestTimeoutMs: 200,
    });
    try {
      await assert.rejects(
        client.get('/api/v1/pods?fieldSelector=x'),
        /^Error: GET \/api\/v1\/pods: no answer from the API server within 0\.2 s$/,
      );
      await closed;
    } finally {
      client.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

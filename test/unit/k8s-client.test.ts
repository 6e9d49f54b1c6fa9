// How the agent reaches the API server: a kubeconfig file, or the pod's service account (token re-read on rotation).
import { describe, test, beforeAll, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeConfigFor, ServiceAccountTokenAuth } from '../../src/k8s/client.js';

describe('API server client', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'egk8s-client-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('in-cluster: API address from the environment (IPv6 in brackets), token and CA from the service-account folder', async () => {
    const sa = join(dir, 'serviceaccount');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 'token-one\n');
    writeFileSync(join(sa, 'ca.crt'), 'not checked here');
    const { kubeConfig, endpoint } = kubeConfigFor(
      { kubeconfig: null, serviceAccountDir: sa },
      { KUBERNETES_SERVICE_HOST: 'fd00:eb::1', KUBERNETES_SERVICE_PORT: '443' },
    );
    assert.equal(endpoint.server, 'https://[fd00:eb::1]:443');
    assert.equal(endpoint.credentials, `service account ${sa}`);
    assert.equal(kubeConfig.getCurrentCluster()?.caFile, join(sa, 'ca.crt'));
    const options: { headers?: Record<string, unknown> } = {};
    await kubeConfig.applyToHTTPSOptions(options);
    assert.equal(options.headers?.Authorization, 'Bearer token-one');
  });

  test('in-cluster: each missing piece is named', () => {
    const sa = join(dir, 'empty');
    assert.throws(
      () => kubeConfigFor({ kubeconfig: null, serviceAccountDir: sa }, {}),
      /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: outside a pod, give kubernetes\.kubeconfig/,
    );
    assert.throws(
      () =>
        kubeConfigFor(
          { kubeconfig: null, serviceAccountDir: sa },
          { KUBERNETES_SERVICE_HOST: '198.18.0.1', KUBERNETES_SERVICE_PORT: '6443' },
        ),
      new RegExp(`${join(sa, 'token')} is missing: mount the service-account token`),
    );
  });

  test('a rotated token is used from the next request on', () => {
    const auth = new ServiceAccountTokenAuth();
    const token = join(dir, 'rotating-token');
    writeFileSync(token, 'first');
    assert.equal(auth.token(token), 'first');
    // The kubelet swaps the projected file (a new inode behind the same path).
    writeFileSync(`${token}.new`, 'second\n');
    renameSync(`${token}.new`, token);
    assert.equal(auth.token(token), 'second');
    writeFileSync(token, '');
    assert.throws(() => auth.token(token), /service-account token .* is empty/);
    rmSync(token);
    assert.throws(() => auth.token(token), /service-account token .* cannot be read: ENOENT/);
  });

  test('kubeconfig file: its current cluster; an unreadable file is named', () => {
    const file = join(dir, 'kubeconfig');
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: c, cluster: { server: "https://198.18.0.1:6443", certificate-authority: ca.crt } }]',
        'users: [{ name: u, user: { token: t } }]',
        'contexts: [{ name: x, context: { cluster: c, user: u } }]',
        'current-context: x',
      ].join('\n'),
    );
    const { kubeConfig, endpoint } = kubeConfigFor({ kubeconfig: file, serviceAccountDir: '/nonexistent' }, {});
    assert.deepEqual(endpoint, { server: 'https://198.18.0.1:6443', credentials: `kubeconfig ${file}` });
    assert.equal(kubeConfig.getCurrentCluster()?.caFile, join(dir, 'ca.crt'));
    assert.throws(
      () => kubeConfigFor({ kubeconfig: join(dir, 'missing'), serviceAccountDir: '/x' }, {}),
      /kubernetes\.kubeconfig .*missing: cannot be loaded/,
    );
  });
});

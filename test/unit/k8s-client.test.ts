// How the agent reaches the API server: a kubeconfig file, or the pod's service account (token re-read on rotation).
import { describe, test, beforeAll, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeClientFor, ServiceAccountTokenAuth } from '../../src/k8s/client.js';

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
    writeFileSync(join(sa, 'ca.crt'), 'the CA, not checked here');
    const { client, endpoint } = kubeClientFor(
      { kubeconfig: null, serviceAccountDir: sa },
      { KUBERNETES_SERVICE_HOST: 'fd00:eb::1', KUBERNETES_SERVICE_PORT: '443' },
    );
    assert.equal(endpoint.server, 'https://[fd00:eb::1]:443');
    assert.equal(endpoint.credentials, `service account ${sa}`);
    assert.equal(client.connection.ca?.toString(), 'the CA, not checked here');
    assert.equal(client.connection.rejectUnauthorized, true);
    assert.equal(client.connection.token?.(), 'token-one');
    client.close();
  });

  test('in-cluster: each missing piece is named', () => {
    const sa = join(dir, 'empty');
    assert.throws(
      () => kubeClientFor({ kubeconfig: null, serviceAccountDir: sa }, {}),
      /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: outside a pod, give kubernetes\.kubeconfig/,
    );
    assert.throws(
      () =>
        kubeClientFor(
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
    writeFileSync(join(dir, 'ca.crt'), 'the CA');
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
    const { client, endpoint } = kubeClientFor({ kubeconfig: file, serviceAccountDir: '/nonexistent' }, {});
    assert.deepEqual(endpoint, { server: 'https://198.18.0.1:6443', credentials: `kubeconfig ${file}` });
    // A relative path is relative to the kubeconfig's folder.
    assert.equal(client.connection.ca?.toString(), 'the CA');
    assert.equal(client.connection.token?.(), 't');
    client.close();
    assert.throws(
      () => kubeClientFor({ kubeconfig: join(dir, 'missing'), serviceAccountDir: '/x' }, {}),
      /kubernetes\.kubeconfig .*missing: cannot be loaded/,
    );
  });

  test('kubeconfig file: client certificate data, insecure-skip-tls-verify; what the agent cannot use is named', () => {
    const file = join(dir, 'kubeconfig-cert');
    const write = (user: string, cluster = 'server: "https://198.18.0.1:6443", insecure-skip-tls-verify: true') =>
      writeFileSync(
        file,
        [
          `clusters: [{ name: c, cluster: { ${cluster} } }]`,
          `users: [{ name: u, user: { ${user} } }]`,
          'contexts: [{ name: x, context: { cluster: c, user: u } }]',
          'current-context: x',
        ].join('\n'),
      );
    const base64 = (text: string) => Buffer.from(text).toString('base64');
    write(`client-certificate-data: ${base64('cert')}, client-key-data: ${base64('key')}`);
    const { client } = kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {});
    assert.equal(client.connection.cert?.toString(), 'cert');
    assert.equal(client.connection.key?.toString(), 'key');
    assert.equal(client.connection.rejectUnauthorized, false);
    assert.equal(client.connection.token, undefined);
    client.close();
    write(`client-certificate-data: ${base64('cert')}`);
    assert.throws(
      () => kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {}),
      /user needs both client-certificate and client-key/,
    );
    write('exec: { command: aws }');
    assert.throws(
      () => kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {}),
      /users\[u\]\.user\.exec is not supported by the agent/,
    );
    write('token: t', 'server: "https://198.18.0.1:6443", certificate-authority: missing-ca.crt');
    assert.throws(
      () => kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {}),
      /certificate-authority .*missing-ca\.crt cannot be read: ENOENT/,
    );
    // As client-go: a CA with insecure-skip-tls-verify is refused; a context's missing user is not anonymous.
    write('token: t', `server: "https://198.18.0.1:6443", insecure-skip-tls-verify: true, certificate-authority-data: ${base64('ca')}`);
    assert.throws(
      () => kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {}),
      /clusters\[c\]\.cluster sets both a certificate authority and insecure-skip-tls-verify/,
    );
    writeFileSync(
      file,
      [
        'clusters: [{ name: c, cluster: { server: "https://198.18.0.1:6443" } }]',
        'users: [{ name: u, user: { token: t } }]',
        'contexts: [{ name: x, context: { cluster: c, user: someone-else } }]',
        'current-context: x',
      ].join('\n'),
    );
    assert.throws(
      () => kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {}),
      /users has no entry named someone-else \(context x\)/,
    );
  });

  test('kubeconfig file: tokenFile wins over an inline token and is read again when it rotates; TLS verification off is said', () => {
    const file = join(dir, 'kubeconfig-token-file');
    const tokenFile = join(dir, 'rotating-token');
    writeFileSync(tokenFile, 'first');
    writeFileSync(
      file,
      [
        'clusters: [{ name: c, cluster: { server: "https://198.18.0.1:6443", insecure-skip-tls-verify: true } }]',
        `users: [{ name: u, user: { token: inline, tokenFile: ${tokenFile} } }]`,
        'contexts: [{ name: x, context: { cluster: c, user: u } }]',
        'current-context: x',
      ].join('\n'),
    );
    const { client, endpoint } = kubeClientFor({ kubeconfig: file, serviceAccountDir: '/x' }, {});
    assert.equal(client.connection.token?.(), 'first');
    writeFileSync(tokenFile, 'second');
    assert.equal(client.connection.token?.(), 'second');
    assert.match(endpoint.credentials, /TLS verification off: insecure-skip-tls-verify/);
    client.close();
  });
});

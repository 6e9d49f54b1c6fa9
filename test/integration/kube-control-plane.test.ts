// The control-plane harness against the real etcd and kube-apiserver: CRDs and objects round-trip through the real
// server, RBAC binds a ServiceAccount's TokenRequest token, the fault relay cuts and stalls the agent's path, the API
// server survives stop/start, SIGSTOP and an etcd restart with its data, and an etcd compaction turns an old
// resourceVersion into 410 Gone.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  Watch,
  type KubernetesObject,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { collect } from '../../lab/exec.js';
import { privilegedSkip, uniquePrefix } from '../support/privileged.js';
import { BUILD_TIMEOUT_MS, ControlPlane } from '../support/kube/control-plane.js';

const GROUP = 'test.egressguard.io';
const NAMESPACE = 'kcp-test';

const widgetCrd: V1CustomResourceDefinition = {
  metadata: { name: `widgets.${GROUP}` },
  spec: {
    group: GROUP,
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    scope: 'Namespaced',
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: { size: { type: 'integer', minimum: 1 }, color: { type: 'string', _enum: ['red', 'blue'] } },
              },
              status: { type: 'object', properties: { seen: { type: 'boolean' } } },
            },
          },
        },
      },
    ],
  },
};

/**
 * An HTTPS GET from inside the netns (where the agent runs) through the fault relay, with a bearer token. Prints one
 * line per stage: "status <code>" on the response headers, "end" when the body ends, "timeout" when nothing arrived
 * within timeoutMs of silence, "error <code>" when the connection broke.
 */
const NETNS_GET_SCRIPT = `
  const https = require('node:https');
  const fs = require('node:fs');
  const [url, ca, token, timeout] = JSON.parse(process.env.EG_ARGS);
  const request = https.get(url, { ca: fs.readFileSync(ca), headers: { authorization: 'Bearer ' + token }, timeout }, (response) => {
    console.log('status ' + response.statusCode);
    response.resume();
    response.on('end', () => console.log('end'));
    response.on('error', (error) => console.log('error ' + error.code));
  });
  request.on('timeout', () => { console.log('timeout'); request.destroy(); });
  request.on('error', (error) => console.log('error ' + error.code));`;

function spawnGetInNetns(plane: ControlPlane, path: string, token: string, timeoutMs: number): ChildProcess {
  return spawn('nsenter', [`--net=${plane.netnsPath}`, '--', process.execPath, '-e', NETNS_GET_SCRIPT], {
    env: { ...process.env, EG_ARGS: JSON.stringify([`${plane.agentServerUrl}${path}`, plane.caPath, token, timeoutMs]) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The first line of a short GET from the netns: "status <code>", "timeout" or "error <code>". */
async function getFromNetns(plane: ControlPlane, path: string, token: string, timeoutMs: number): Promise<string> {
  const result = await collect(spawnGetInNetns(plane, path, token, timeoutMs), timeoutMs + 5_000);
  return result.stdout.trim().split('\n')[0] || `exit ${result.code}: ${result.stderr}`;
}

describe('kube control plane (real etcd and kube-apiserver)', { skip: privilegedSkip() }, () => {
  let plane: ControlPlane;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    await ControlPlane.cleanupStale(/^egkc[0-9a-f]{4}$/);
    // Configmaps bypass the watch cache, so the compaction test sees etcd's own 410; everything else is cached as usual.
    plane = await ControlPlane.start({ prefix: uniquePrefix('kc'), apiServerArgs: ['--watch-cache-sizes=configmaps#0'] });
    core = plane.admin(CoreV1Api);
    custom = plane.admin(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await plane?.destroy();
  });

  test('a CRD is established and its objects are validated, stored and read back (status subresource too)', async () => {
    await plane.admin(ApiextensionsV1Api).createCustomResourceDefinition({ body: widgetCrd });
    for (let attempt = 0; ; attempt++) {
      const crd = await plane.admin(ApiextensionsV1Api).readCustomResourceDefinition({ name: `widgets.${GROUP}` });
      if (crd.status?.conditions?.some((condition) => condition.type === 'Established' && condition.status === 'True')) break;
      expect(attempt).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const target = { group: GROUP, version: 'v1', namespace: NAMESPACE, plural: 'widgets' };
    await custom.createNamespacedCustomObject({
      ...target,
      body: { apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'one' }, spec: { size: 3, color: 'red' } },
    });
    const read = (await custom.getNamespacedCustomObject({ ...target, name: 'one' })) as KubernetesObject & { spec: unknown };
    expect(read.spec).toEqual({ size: 3, color: 'red' });
    expect(read.metadata?.generation).toBe(1);

    await expect(
      custom.createNamespacedCustomObject({
        ...target,
        body: { apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'bad' }, spec: { size: 0, color: 'green' } },
      }),
    ).rejects.toMatchObject({ code: 422 });

    const withStatus = { ...read, status: { seen: true } };
    await custom.replaceNamespacedCustomObjectStatus({ ...target, name: 'one', body: withStatus });
    const after = (await custom.getNamespacedCustomObject({ ...target, name: 'one' })) as KubernetesObject & { status: unknown };
    expect(after.status).toEqual({ seen: true });
    // A status write does not bump the generation; a stale resourceVersion is refused with 409.
    expect(after.metadata?.generation).toBe(1);
    await expect(custom.replaceNamespacedCustomObjectStatus({ ...target, name: 'one', body: withStatus })).rejects.toMatchObject({
      code: 409,
    });
  });

  test('a ServiceAccount token (TokenRequest) is authorized by RBAC exactly as bound, also through the relay in the netns', async () => {
    const rbac = plane.admin(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: 'reader' } } });
    await rbac.createNamespacedRole({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'read-configmaps' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'reader-reads-configmaps' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-configmaps' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NAMESPACE }],
      },
    });
    const token = await plane.serviceAccountToken(NAMESPACE, 'reader');
    const asReader = plane.tokenKubeConfig(token).makeApiClient(CoreV1Api);
    await expect(asReader.listNamespacedConfigMap({ namespace: NAMESPACE })).resolves.toHaveProperty('items');
    await expect(asReader.listNamespacedSecret({ namespace: NAMESPACE })).rejects.toMatchObject({ code: 403 });
    await expect(asReader.listNamespacedConfigMap({ namespace: 'default' })).rejects.toMatchObject({ code: 403 });

    const path = `/api/v1/namespaces/${NAMESPACE}/configmaps`;
    expect(await getFromNetns(plane, path, token, 5_000)).toBe('status 200');
    expect(await getFromNetns(plane, `/api/v1/namespaces/${NAMESPACE}/secrets`, token, 5_000)).toBe('status 403');
    expect(await getFromNetns(plane, path, 'not-a-token', 5_000)).toBe('status 401');
  });

  test('the fault relay refuses, stalls and heals the agent path while the admin path is untouched', async () => {
    const token = await plane.serviceAccountToken(NAMESPACE, 'reader');
    const path = `/api/v1/namespaces/${NAMESPACE}/configmaps`;
    await plane.fault('refuse');
    expect(await getFromNetns(plane, path, token, 3_000)).toMatch(/^error (ECONNRESET|EPIPE)$/);
    expect((await plane.adminGet('/readyz')).status).toBe(200);
    await plane.fault('stall');
    expect(await getFromNetns(plane, path, token, 2_000)).toBe('timeout');
    await plane.fault('pass');
    expect(await getFromNetns(plane, path, token, 5_000)).toBe('status 200');

    // `drop` resets a long-lived watch through the relay: the client sees its connection break, and reconnects.
    const watch = spawnGetInNetns(plane, `${path}?watch=true`, token, 60_000);
    const watched = collect(watch, 30_000);
    let output = '';
    watch.stdout?.on('data', (chunk: string) => (output += chunk));
    for (let attempt = 0; !output.includes('status 200'); attempt++) {
      expect(attempt).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await plane.fault('drop')).toBeGreaterThanOrEqual(1);
    const [headers, ...after] = (await watched).stdout.trim().split('\n');
    expect(headers).toBe('status 200');
    expect(after.length).toBeGreaterThan(0);
    for (const line of after) expect(line).toMatch(/^(error ECONNRESET|end)$/);
    expect(await getFromNetns(plane, path, token, 5_000)).toBe('status 200');
  });

  test('the API server stops, freezes (SIGSTOP) and restarts; etcd restarts; the data stays', async () => {
    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: 'kept' }, data: { a: '1' } } });
    await plane.stopApiServer();
    await expect(plane.adminGet('/readyz', 2_000)).rejects.toThrow();
    await plane.startApiServer();
    expect((await core.readNamespacedConfigMap({ namespace: NAMESPACE, name: 'kept' })).data).toEqual({ a: '1' });

    plane.pauseApiServer();
    await expect(plane.adminGet('/readyz', 1_000)).rejects.toThrow(/timeout/i);
    plane.resumeApiServer();
    expect((await plane.adminGet('/readyz')).status).toBe(200);

    await plane.restartEtcd();
    for (let attempt = 0; ; attempt++) {
      const answer = await core.readNamespacedConfigMap({ namespace: NAMESPACE, name: 'kept' }).catch(() => null);
      if (answer !== null) {
        expect(answer.data).toEqual({ a: '1' });
        break;
      }
      expect(attempt).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  test('an etcd compaction makes a watch from an older resourceVersion end with 410 Gone', async () => {
    const before = await core.listNamespacedConfigMap({ namespace: NAMESPACE });
    const oldVersion = before.metadata?.resourceVersion as string;
    for (let index = 0; index < 5; index++) {
      await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: `burst-${index}` } } });
    }
    expect(await plane.compact()).toBeGreaterThan(Number(oldVersion));
    const events: { type: string; code?: number }[] = [];
    await new Promise<void>((resolve, reject) => {
      void new Watch(plane.adminKubeConfig())
        .watch(
          `/api/v1/namespaces/${NAMESPACE}/configmaps`,
          { resourceVersion: oldVersion },
          (type, object: { code?: number }) => events.push({ type, code: object.code }),
          (error) => (error === null || error === undefined ? resolve() : reject(error as Error)),
        )
        .catch(reject);
    });
    expect(events).toContainEqual({ type: 'ERROR', code: 410 });
    // A list at the current version still works: a client re-lists and watches from there.
    const relisted = await core.listNamespacedConfigMap({ namespace: NAMESPACE });
    expect(relisted.items.map((item) => item.metadata?.name)).toEqual(expect.arrayContaining(['burst-0', 'burst-4', 'kept']));
  });
});

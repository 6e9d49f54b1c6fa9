// The one place that decides how the agent reaches the API server: a kubeconfig file when the configuration names
// one, else the pod's service account (its token file, CA and the KUBERNETES_SERVICE_HOST/PORT the kubelet sets).

import { readFileSync, statSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { KubeConfig, type User } from '@kubernetes/client-node';
import type { KubernetesConfig } from '../agent/config.js';

/** The auth provider name under which the service-account token file is read (ours, not the library's `tokenFile`). */
const TOKEN_PROVIDER = 'egressguard-service-account';

/**
 * A bound service-account token rotates: the kubelet rewrites the projected file well before the old token expires.
 * The file is read again whenever its identity or modification time changes (one stat per request), so a rotation
 * applies to the next request, not a minute later as with the client's own token-file provider.
 */
export class ServiceAccountTokenAuth {
  private cached: { stamp: string; token: string } | null = null;

  isAuthProvider(user: User): boolean {
    return user.authProvider?.name === TOKEN_PROVIDER;
  }

  async applyAuthentication(user: User, opts: { headers?: Record<string, unknown> }): Promise<void> {
    const path = (user.authProvider?.config as { path?: string } | undefined)?.path;
    if (path === undefined) throw new Error(`auth provider ${TOKEN_PROVIDER} needs config.path`);
    opts.headers ??= {};
    opts.headers.Authorization = `Bearer ${this.token(path)}`;
  }

  /** The token in `path`, read again when the file changed. */
  token(path: string): string {
    let stamp: string;
    try {
      const stat = statSync(path, { bigint: true });
      stamp = `${stat.dev}:${stat.ino}:${stat.mtimeNs}:${stat.size}`;
    } catch (error) {
      throw new Error(`service-account token ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    if (this.cached?.stamp !== stamp) {
      const token = readFileSync(path, 'utf8').trim();
      if (token === '') throw new Error(`service-account token ${path} is empty`);
      this.cached = { stamp, token };
    }
    return this.cached.token;
  }
}

/** Which credentials a KubeConfig was built from: status and the start log say so. */
export interface ApiEndpoint {
  server: string;
  /** `kubeconfig <path>` or `service account <dir>`. */
  credentials: string;
}

/**
 * The KubeConfig the agent's informers and writers use. In-cluster: the token, CA and namespace files in
 * `serviceAccountDir` and the API address from KUBERNETES_SERVICE_HOST/PORT; missing pieces are named.
 */
export function kubeConfigFor(
  settings: Pick<KubernetesConfig, 'kubeconfig' | 'serviceAccountDir'>,
  env: NodeJS.ProcessEnv = process.env,
): { kubeConfig: KubeConfig; endpoint: ApiEndpoint } {
  const kubeConfig = new KubeConfig();
  if (settings.kubeconfig !== null) {
    try {
      kubeConfig.loadFromFile(settings.kubeconfig);
    } catch (error) {
      throw new Error(`kubernetes.kubeconfig ${settings.kubeconfig}: cannot be loaded: ${(error as Error).message}`);
    }
    const cluster = kubeConfig.getCurrentCluster();
    if (cluster === null)
      throw new Error(`kubernetes.kubeconfig ${settings.kubeconfig}: its current context names no cluster; set current-context`);
    return { kubeConfig, endpoint: { server: cluster.server, credentials: `kubeconfig ${settings.kubeconfig}` } };
  }
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new Error(
      'KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: outside a pod, give kubernetes.kubeconfig in the configuration',
    );
  const dir = settings.serviceAccountDir;
  const tokenFile = join(dir, 'token');
  const caFile = join(dir, 'ca.crt');
  for (const file of [tokenFile, caFile]) {
    try {
      statSync(file);
    } catch {
      throw new Error(
        `${file} is missing: mount the service-account token (automountServiceAccountToken) or set kubernetes.serviceAccountDir`,
      );
    }
  }
  const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  kubeConfig.addAuthenticator(new ServiceAccountTokenAuth());
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'in-cluster', server, caFile, skipTLSVerify: false }],
    users: [{ name: 'service-account', authProvider: { name: TOKEN_PROVIDER, config: { path: tokenFile } } }],
    contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'service-account' }],
    currentContext: 'in-cluster',
  });
  return { kubeConfig, endpoint: { server, credentials: `service account ${dir}` } };
}

// The one place that decides how the agent reaches the API server: a kubeconfig file when the configuration names
// one, else the pod's service account (its token file, CA and the KUBERNETES_SERVICE_HOST/PORT the kubelet sets).
//
// A kubeconfig gives the server, its CA (file or data, or insecure-skip-tls-verify), tls-server-name, and a bearer
// token (token or tokenFile) or a client certificate (file or data). Exec plugins, auth providers, basic auth and
// proxy-url are refused by name: the agent is meant to run in the cluster, and a kubeconfig for it is written for it.

import { readFileSync, statSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { KubernetesConfig } from '../agent/config.js';
import { KubeClient, type ApiConnection } from './api.js';

/**
 * A bound service-account token rotates: the kubelet rewrites the projected file well before the old token expires.
 * The file is read again whenever its identity or modification time changes (one stat per request), so a rotation
 * applies to the next request.
 */
export class ServiceAccountTokenAuth {
  private cached: { stamp: string; token: string } | null = null;

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

/** Which credentials the client was built from: status and the start log say so. */
export interface ApiEndpoint {
  server: string;
  /** `kubeconfig <path>` or `service account <dir>`. */
  credentials: string;
}

interface NamedEntry<T> {
  name?: string;
  cluster?: T;
  user?: T;
  context?: T;
}

interface KubeconfigCluster {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
  'proxy-url'?: string;
}

interface KubeconfigUser {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  exec?: unknown;
  'auth-provider'?: unknown;
  username?: string;
}

interface Kubeconfig {
  clusters?: NamedEntry<KubeconfigCluster>[];
  users?: NamedEntry<KubeconfigUser>[];
  contexts?: NamedEntry<{ cluster?: string; user?: string }>[];
  'current-context'?: string;
}

/** The connection a kubeconfig file describes (its current context); relative paths are relative to the file. */
export function connectionFromKubeconfig(path: string): ApiConnection {
  const fail = (problem: string) => new Error(`kubernetes.kubeconfig ${path}: ${problem}`);
  let config: Kubeconfig;
  try {
    config = parseYaml(readFileSync(path, 'utf8')) as Kubeconfig;
  } catch (error) {
    throw fail(`cannot be loaded: ${(error as Error).message}`);
  }
  if (config === null || typeof config !== 'object') throw fail('cannot be loaded: not a kubeconfig object');
  const current = config['current-context'];
  if (!current) throw fail('names no current-context; set current-context');
  const context = config.contexts?.find((c) => c.name === current)?.context;
  if (!context) throw fail(`contexts has no entry named ${current} (current-context)`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster?.server)
    throw fail(`its current context names no cluster with a server (cluster ${context.cluster ?? 'unset'}); set current-context`);
  // As client-go: a context naming a user the file does not have is an error, not an anonymous client.
  const named = context.user === undefined ? undefined : config.users?.find((u) => u.name === context.user);
  if (context.user !== undefined && named === undefined) throw fail(`users has no entry named ${context.user} (context ${current})`);
  const user = named?.user ?? {};
  for (const field of ['exec', 'auth-provider', 'username'] as const)
    if (user[field] !== undefined)
      throw fail(`users[${context.user}].user.${field} is not supported by the agent: use token, tokenFile or a client certificate`);
  if (cluster['proxy-url'] !== undefined) throw fail(`clusters[${context.cluster}].cluster.proxy-url is not supported by the agent`);
  const file = (name: string | undefined) => (name === undefined || isAbsolute(name) ? name : join(dirname(path), name));
  const pem = (field: string, name: string | undefined, data: string | undefined): Buffer | undefined => {
    try {
      return data !== undefined ? Buffer.from(data, 'base64') : name === undefined ? undefined : readFileSync(file(name)!);
    } catch (error) {
      throw fail(`${field} ${file(name)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  const ca = pem('certificate-authority', cluster['certificate-authority'], cluster['certificate-authority-data']);
  const insecure = cluster['insecure-skip-tls-verify'] === true;
  if (insecure && ca !== undefined)
    throw fail(`clusters[${context.cluster}].cluster sets both a certificate authority and insecure-skip-tls-verify: keep one`);
  const cert = pem('client-certificate', user['client-certificate'], user['client-certificate-data']);
  const key = pem('client-key', user['client-key'], user['client-key-data']);
  if ((cert === undefined) !== (key === undefined)) throw fail(`users[${context.user}].user needs both client-certificate and client-key`);
  const tokenFile = file(user.tokenFile);
  const tokenAuth = new ServiceAccountTokenAuth();
  // As client-go: tokenFile, re-read when it rotates, wins over an inline token.
  const token = tokenFile === undefined ? user.token : undefined;
  return {
    server: cluster.server,
    rejectUnauthorized: !insecure,
    ...(ca ? { ca } : {}),
    ...(cert && key ? { cert, key } : {}),
    ...(cluster['tls-server-name'] ? { servername: cluster['tls-server-name'] } : {}),
    ...(token !== undefined ? { token: () => token } : tokenFile !== undefined ? { token: () => tokenAuth.token(tokenFile) } : {}),
  };
}

/**
 * The client the agent's informers and writers use. In-cluster: the token, CA and namespace files in
 * `serviceAccountDir` and the API address from KUBERNETES_SERVICE_HOST/PORT; missing pieces are named.
 */
export function kubeClientFor(
  settings: Pick<KubernetesConfig, 'kubeconfig' | 'serviceAccountDir'>,
  env: NodeJS.ProcessEnv = process.env,
): { client: KubeClient; endpoint: ApiEndpoint } {
  if (settings.kubeconfig !== null) {
    const connection = connectionFromKubeconfig(settings.kubeconfig);
    return {
      client: new KubeClient(connection),
      endpoint: {
        server: connection.server,
        credentials: `kubeconfig ${settings.kubeconfig}${connection.rejectUnauthorized ? '' : ' (TLS verification off: insecure-skip-tls-verify)'}`,
      },
    };
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
  const tokenAuth = new ServiceAccountTokenAuth();
  const client = new KubeClient({ server, ca: readFileSync(caFile), rejectUnauthorized: true, token: () => tokenAuth.token(tokenFile) });
  return { client, endpoint: { server, credentials: `service account ${dir}` } };
}

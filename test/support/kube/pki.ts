// The control plane's PKI, made with the openssl CLI as kubeadm lays it out: one cluster CA, the API server's serving
// certificate (the in-cluster names, the service IPs and the address it listens on), a client certificate in the
// system:masters group for the test's admin client, and the service-account signing key pair (ES256).
import { join } from 'node:path';
import { mustRun } from '../../../lab/exec.js';

export interface ControlPlanePki {
  caPath: string;
  caKeyPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  adminCertPath: string;
  adminKeyPath: string;
  serviceAccountKeyPath: string;
  serviceAccountPublicKeyPath: string;
}

export interface PkiSubjects {
  /** IP SANs of the serving certificate: where clients reach the API server (and the kubernetes Service IPs). */
  serverIps: readonly string[];
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const DAYS = ['-days', '7'];
/** Every name a pod may use for the API server through cluster DNS. */
const SERVER_NAMES = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'];

export async function createControlPlanePki(dir: string, subjects: PkiSubjects): Promise<ControlPlanePki> {
  const path = (name: string): string => join(dir, name);
  const pki: ControlPlanePki = {
    caPath: path('ca.pem'),
    caKeyPath: path('ca.key'),
    serverCertPath: path('apiserver.pem'),
    serverKeyPath: path('apiserver.key'),
    adminCertPath: path('admin.pem'),
    adminKeyPath: path('admin.key'),
    serviceAccountKeyPath: path('sa.key'),
    serviceAccountPublicKeyPath: path('sa.pub'),
  };
  await mustRun([
    'openssl',
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    pki.caKeyPath,
    '-out',
    pki.caPath,
    ...DAYS,
    '-subj',
    '/CN=egressguard-test-kubernetes-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const signed = (certPath: string, keyPath: string, subject: string, extensions: string[]): Promise<string> =>
    mustRun([
      'openssl',
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      keyPath,
      '-out',
      certPath,
      ...DAYS,
      '-CA',
      pki.caPath,
      '-CAkey',
      pki.caKeyPath,
      '-subj',
      subject,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      ...extensions.flatMap((extension) => ['-addext', extension]),
    ]);
  const subjectAltName = [...SERVER_NAMES.map((name) => `DNS:${name}`), ...subjects.serverIps.map((ip) => `IP:${ip}`)].join(',');
  await Promise.all([
    signed(pki.serverCertPath, pki.serverKeyPath, '/CN=kube-apiserver', [
      `subjectAltName=${subjectAltName}`,
      'extendedKeyUsage=serverAuth',
    ]),
    // The API server maps O to groups: system:masters bypasses RBAC, as kubeadm's admin.conf does.
    signed(pki.adminCertPath, pki.adminKeyPath, '/O=system:masters/CN=egressguard-test-admin', ['extendedKeyUsage=clientAuth']),
    (async () => {
      await mustRun(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', pki.serviceAccountKeyPath]);
      await mustRun(['openssl', 'pkey', '-in', pki.serviceAccountKeyPath, '-pubout', '-out', pki.serviceAccountPublicKeyPath]);
    })(),
  ]);
  return pki;
}

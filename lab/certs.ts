// The lab's own PKI, made with the openssl CLI at lab creation: one CA, one ECDSA P-256 server certificate per lab
// host (SANs: the name, *.name and the host's IPs) and one for a name that is not a lab host, so a test can complete a
// real handshake for a "fronted" name that no resolver knows.
import { join } from 'node:path';
import { mustRun } from './exec.js';

/** A TLS name served by every lab host but resolved by no lab resolver (domain-fronting tests). */
export const LAB_UNLISTED_TLS_NAME = 'unlisted.example';

export interface LabCertificate {
  /** Names the certificate is for (DNS SANs); the first is its subject CN. */
  names: string[];
  certPath: string;
  keyPath: string;
}

export interface LabPki {
  caPath: string;
  /** Keyed by the certificate's first name (a lab host name or LAB_UNLISTED_TLS_NAME). */
  certificates: Map<string, LabCertificate>;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export async function createLabPki(dir: string, hosts: readonly { name: string; ipv4: string; ipv6: string }[]): Promise<LabPki> {
  const caPath = join(dir, 'ca.pem');
  const caKeyPath = join(dir, 'ca.key');
  await mustRun([
    'openssl',
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    caKeyPath,
    '-out',
    caPath,
    '-days',
    '7',
    '-subj',
    '/CN=egressguard lab CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const wanted = [
    ...hosts.map((host) => ({ names: [host.name, `*.${host.name}`], ips: [host.ipv4, host.ipv6] })),
    { names: [LAB_UNLISTED_TLS_NAME], ips: [] },
  ];
  // Each `req -x509 -CA` call signs directly with the CA: one process per certificate, run in parallel.
  const certificates = await Promise.all(
    wanted.map(async ({ names, ips }, index): Promise<LabCertificate> => {
      const base = join(dir, `server-${index}`);
      const subjectAltName = [...names.map((name) => `DNS:${name}`), ...ips.map((ip) => `IP:${ip}`)].join(',');
      await mustRun([
        'openssl',
        'req',
        '-x509',
        ...EC_KEY,
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.pem`,
        '-days',
        '7',
        '-CA',
        caPath,
        '-CAkey',
        caKeyPath,
        '-subj',
        `/CN=${names[0] as string}`,
        '-addext',
        `subjectAltName=${subjectAltName}`,
        '-addext',
        'extendedKeyUsage=serverAuth',
        '-addext',
        'basicConstraints=critical,CA:FALSE',
      ]);
      return { names, certPath: `${base}.pem`, keyPath: `${base}.key` };
    }),
  );
  return { caPath, certificates: new Map(certificates.map((cert) => [cert.names[0] as string, cert])) };
}

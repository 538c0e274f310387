// Throwaway certificates for TLS tests, made with the `openssl` command (Debian package `openssl`):
// a CA, a server certificate for 127.0.0.1 and a client certificate it signed, and a client
// certificate from another CA, which the first one's holders must refuse. EC P-256 keys: fast to make.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface CertFiles {
  dir: string;
  /** The CA that signed `server` and `client`. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  client: { cert: string; key: string };
  /** Another CA, and a client certificate it signed. */
  otherCaCert: string;
  otherClient: { cert: string; key: string };
  /** The files' contents, for TLS options in the test process. */
  pem: { ca: Buffer; otherCa: Buffer; serverCert: Buffer; serverKey: Buffer; client: { cert: Buffer; key: Buffer }; otherClient: { cert: Buffer; key: Buffer } };
  cleanup(): Promise<void>;
}

const OPENSSL_TIMEOUT_MS = 15_000;

const CONFIG = `
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
# etcd also presents its server certificate as a client (its own HTTP gateway dials its gRPC side).
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
`;

/** Throws with the install hint when there is no `openssl` to run. */
export function requireOpenssl(): void {
  const r = spawnSync('openssl', ['version'], { timeout: OPENSSL_TIMEOUT_MS });
  if (r.error || r.status !== 0) {
    throw new Error(`the TLS tests need the openssl command (Debian package "openssl"): ${r.error?.message ?? r.stderr.toString()}`);
  }
}

function openssl(dir: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd: dir, timeout: OPENSSL_TIMEOUT_MS }, (err, _stdout, stderr) =>
      err ? reject(new Error(`openssl ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(),
    );
  });
}

const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
let serial = Date.now();

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, ['req', '-x509', '-new', ...NEW_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`, '-config', 'openssl.cnf', '-extensions', 'ca']);
}

async function makeLeaf(dir: string, name: string, ca: string, section: 'server' | 'client', cn: string): Promise<void> {
  await openssl(dir, ['req', '-new', ...NEW_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`, '-config', 'openssl.cnf']);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(serial++),
    '-days', '2', '-out', `${name}.crt`, '-extfile', 'openssl.cnf', '-extensions', section,
  ]);
}

export async function makeCerts(): Promise<CertFiles> {
  requireOpenssl();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gw-tls-'));
  try {
    await writeFile(path.join(dir, 'openssl.cnf'), CONFIG);
    await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'other-ca')]);
    await Promise.all([
      makeLeaf(dir, 'server', 'ca', 'server', '127.0.0.1'),
      makeLeaf(dir, 'client', 'ca', 'client', 'gateway-test-client'),
      makeLeaf(dir, 'other-client', 'other-ca', 'client', 'stranger'),
    ]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const file = (name: string): string => path.join(dir, name);
  const read = (name: string): Promise<Buffer> => readFile(file(name));
  const [ca, otherCa, serverCert, serverKey, clientCert, clientKey, otherCert, otherKey] = await Promise.all(
    ['ca.crt', 'other-ca.crt', 'server.crt', 'server.key', 'client.crt', 'client.key', 'other-client.crt', 'other-client.key'].map(read),
  );
  return {
    dir,
    caCert: file('ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    client: { cert: file('client.crt'), key: file('client.key') },
    otherCaCert: file('other-ca.crt'),
    otherClient: { cert: file('other-client.crt'), key: file('other-client.key') },
    pem: { ca, otherCa, serverCert, serverKey, client: { cert: clientCert, key: clientKey }, otherClient: { cert: otherCert, key: otherKey } },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

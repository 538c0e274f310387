// Access control by TLS client certificate: a client whose certificate (signed by the configured CA)
// carries a known subject is that client, without any token.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildGateway, type Gateway } from '../../src/boot/gateway';
import { EtcdClient } from '../../src/etcd/client';
import { AccessPolicy } from '../../src/core/security/access';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { makeCerts, type CertFiles } from '../support/certs';
import { b64 } from '../support/gateway';

describe('access control by client certificate', () => {
  let etcd: TestEtcd;
  let certs: CertFiles;
  let client: EtcdClient;
  let gateway: Gateway;
  let server: https.Server;
  let policy: AccessPolicy;
  let port = 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-access-mtls-'));

  before(async () => {
    [etcd, certs] = await Promise.all([startTestEtcd(), makeCerts()]);
    const file = path.join(dir, 'access.yaml');
    fs.writeFileSync(file, 'clients:\n  - name: svc\n    cert_subject: "CN=gateway-test-client"\n    grants:\n      - { prefix: "app/", rights: [read, write] }\n');
    policy = new AccessPolicy(file, { info: () => undefined, error: () => undefined });
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 3000 });
    gateway = buildGateway({ etcd: client, maxBodyBytes: 1 << 20, access: policy });
    // Certificates are asked for but not required at the handshake, so a client without one reaches
    // the gateway and gets its 401.
    server = https.createServer({ cert: certs.pem.serverCert, key: certs.pem.serverKey, ca: certs.pem.ca, requestCert: true, rejectUnauthorized: false }, gateway.handler);
    gateway.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    gateway?.close();
    policy?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    client?.close();
    await etcd?.cleanup();
    await certs?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function post(p: string, body: object, tls: { cert?: Buffer; key?: Buffer }): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: p, method: 'POST', ca: certs.pem.ca, ...tls, timeout: 5000 }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  it('identifies a client by its certificate subject and applies its grants', async () => {
    const mine = { cert: certs.pem.client.cert, key: certs.pem.client.key };
    assert.equal((await post('/v3/kv/put', { key: b64('app/a'), value: b64('1') }, mine)).status, 200);
    const read = await post('/v3/kv/range', { key: b64('app/a') }, mine);
    assert.equal(read.body.kvs[0].value, b64('1'));
    const refused = await post('/v3/kv/range', { key: b64('other') }, mine);
    assert.equal(refused.status, 403);
    assert.match(refused.body.message, /client "svc" may not read key "other"/);
  });

  it('answers 401 without a certificate, and with one from another CA', async () => {
    const none = await post('/v3/kv/range', { key: b64('app/a') }, {});
    assert.equal(none.status, 401);
    const stranger = await post('/v3/kv/range', { key: b64('app/a') }, { cert: certs.pem.otherClient.cert, key: certs.pem.otherClient.key });
    assert.equal(stranger.status, 401);
  });
});

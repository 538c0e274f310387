// TLS on both sides of the gateway, with certificates made by openssl for the test: the gateway
// (`node dist/src/main.js`, as deployed) serves HTTPS and WSS, asks for client certificates when given
// a client CA and refuses at the handshake those it cannot verify; it reaches an etcd that itself
// requires client certificates (unary calls, watches, v3lock over the same channel, /version); a
// gateway without a client certificate answers 503 at once; bad TLS settings are config errors.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { buildGateway, DEFAULT_STREAM_SETTINGS } from '../../src/boot/gateway';
import { EtcdClient } from '../../src/etcd/client';
import { findEtcdBinary, freePort, startEtcd, type EtcdProcess } from '../../src/embedded-etcd/process';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { makeCerts, type CertFiles } from '../support/certs';
import { b64 } from '../support/gateway';
import { waitFor, within } from '../support/waiting';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const REQUEST_TIMEOUT_MS = 5_000;

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any
interface TlsClient {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** One request with its own connection (no agent: nothing lingers); rejects on any TLS or socket error. */
function request(url: string, body?: object, client: TlsClient = {}, method = body === undefined ? 'GET' : 'POST'): Promise<{ status: number; body: Json; text: string }> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = send(u, { method, agent: false, ...client, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('error', reject);
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** A WebSocket (ws:// or wss:// with the client's TLS options) collecting parsed messages. */
async function openSocket(url: string, client: TlsClient = {}): Promise<{ send(m: object): void; take(n: number): Promise<Json[]>; close(): void }> {
  const ws = new WebSocket(url, { ...client, handshakeTimeout: REQUEST_TIMEOUT_MS });
  const messages: Json[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
  await within(REQUEST_TIMEOUT_MS, `WebSocket ${url} to open`, new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }));
  return {
    send: (m) => ws.send(JSON.stringify(m)),
    take: (n) => waitFor(`${n} messages on ${url}`, () => messages.length >= n && messages.slice(0, n), REQUEST_TIMEOUT_MS),
    close: () => ws.terminate(),
  };
}

/** Opens a TLS connection, sends one HTTP request and reports how far it got. */
function tryHandshake(port: number, client: TlsClient & { maxVersion?: tls.SecureVersion }): Promise<{ secureConnect: boolean; answered: boolean; error?: string }> {
  return within(REQUEST_TIMEOUT_MS, 'TLS attempt', new Promise((resolve) => {
    let secureConnect = false;
    let answered = false;
    const socket = tls.connect({ host: '127.0.0.1', port, ...client }, () => {
      secureConnect = true;
      socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    });
    socket.on('data', () => (answered = true));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ secureConnect, answered, error: err.code ?? err.message }));
    socket.on('close', () => resolve({ secureConnect, answered }));
  }));
}

/** `node dist/src/main.js` with only the given settings; resolves with its base URL once it listens. */
async function startMain(env: Record<string, string>): Promise<{ child: ChildProcess; base: string; output(): string; stop(): Promise<void> }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(ETCD_|TLS_)/.test(k)));
  const child = spawn(process.execPath, ['dist/src/main.js'], {
    cwd: ROOT,
    env: { ...inherited, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = exited(child, 20_000);
  exit.catch(() => undefined);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit.catch(() => undefined);
  };
  try {
    const base = await waitFor('the gateway to listen', () => child.exitCode === null && /listening on (\S+)/.exec(out)?.[1], 20_000);
    await waitFor('the start-up message', () => out.includes('Swagger UI:'), 5_000);
    return { child, base, output: () => out, stop };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${out}`, { cause: err });
  }
}

function exited(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error('did not exit in time')), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** An etcd serving clients over TLS only and requiring client certificates signed by the test CA. The
 *  harness checks health over plain HTTP, so this starts it without that check and polls /health over
 *  HTTPS with the client certificate. */
async function startTlsEtcd(certs: CertFiles): Promise<{ url: string; etcd: EtcdProcess; cleanup(): Promise<void> }> {
  const bin = findEtcdBinary();
  if (!bin) throw new Error('the TLS tests need a real etcd, and none was found');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-tls-'));
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const url = `https://127.0.0.1:${clientPort}`;
  const etcd = await startEtcd({
    bin,
    dataDir,
    clientPort,
    peerPort,
    waitHealthy: false,
    // Later flags win: the client URLs become https://.
    extraArgs: [
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--cert-file', certs.serverCert,
      '--key-file', certs.serverKey,
      '--trusted-ca-file', certs.caCert,
      '--client-cert-auth',
    ],
  });
  const cleanup = async (): Promise<void> => {
    try {
      await etcd.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    }
  };
  try {
    await waitFor(
      'the TLS etcd to be healthy',
      async () => (await request(`${url}/health`, undefined, { ca: certs.pem.ca, ...certs.pem.client })).body?.health === 'true',
      20_000,
      100,
    );
  } catch (err) {
    await cleanup();
    throw new Error(`${(err as Error).message}\n${etcd.logs()}`, { cause: err });
  }
  return { url, etcd, cleanup };
}

let certs: CertFiles;
before(async () => {
  certs = await makeCerts();
});
after(async () => {
  await certs?.cleanup();
});

describe('the gateway over HTTPS', () => {
  let etcd: TestEtcd;
  let gw: Awaited<ReturnType<typeof startMain>>;
  let port: number;
  let trusted: TlsClient;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startMain({ ETCD_ENDPOINTS: etcd.clientUrl, TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverKey });
    port = Number(new URL(gw.base).port);
    trusted = { ca: certs.pem.ca };
  });
  after(async () => {
    await gw?.stop();
    await etcd?.cleanup();
  });

  it('prints https:// URLs and answers a put and a range with the CA trusted', async () => {
    assert.match(gw.base, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(gw.output(), new RegExp(`API: +${gw.base}/v3/`));
    assert.match(gw.output(), new RegExp(`Swagger UI: ${gw.base}/docs/`));
    assert.equal((await request(`${gw.base}/v3/kv/put`, { key: b64('tls/a'), value: b64('1') }, trusted)).status, 200);
    const range = await request(`${gw.base}/v3/kv/range`, { key: b64('tls/a') }, trusted);
    assert.equal(range.status, 200, range.text);
    assert.equal(range.body.kvs[0].value, b64('1'));
  });

  it('is refused by a client that does not trust its CA, and does not speak plain HTTP on the port', async () => {
    await assert.rejects(request(`${gw.base}/healthz`), (e: NodeJS.ErrnoException) => e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    await assert.rejects(request(`${gw.base}/healthz`, undefined, { ca: certs.pem.otherCa }), (e: NodeJS.ErrnoException) => e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    await assert.rejects(request(`http://127.0.0.1:${port}/healthz`));
  });

  it('serves a WebSocket watch over wss://', async () => {
    const ws = await openSocket(`${gw.base.replace(/^https/, 'wss')}/v3/watch`, trusted);
    try {
      ws.send({ create_request: { key: b64('tls/w') } });
      assert.equal((await ws.take(1))[0].result.created, true);
      assert.equal((await request(`${gw.base}/v3/kv/put`, { key: b64('tls/w'), value: b64('over wss') }, trusted)).status, 200);
      const [, event] = await ws.take(2);
      assert.equal(event.result.events[0].kv.value, b64('over wss'));
    } finally {
      ws.close();
    }
  });
});

describe('the gateway with TLS_CLIENT_CA_FILE (mutual TLS)', () => {
  let etcd: TestEtcd;
  let gw: Awaited<ReturnType<typeof startMain>>;
  let port: number;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startMain({
      ETCD_ENDPOINTS: etcd.clientUrl,
      TLS_CERT_FILE: certs.serverCert,
      TLS_KEY_FILE: certs.serverKey,
      TLS_CLIENT_CA_FILE: certs.caCert,
    });
    port = Number(new URL(gw.base).port);
  });
  after(async () => {
    await gw?.stop();
    await etcd?.cleanup();
  });

  it('refuses a client without a certificate during the handshake', async () => {
    // TLS 1.2: the handshake itself fails, the client never gets to send a request.
    const tls12 = await tryHandshake(port, { ca: certs.pem.ca, maxVersion: 'TLSv1.2' });
    assert.equal(tls12.secureConnect, false, JSON.stringify(tls12));
    assert.equal(tls12.answered, false);
    assert.match(tls12.error ?? '', /HANDSHAKE_FAILURE|ECONNRESET/, JSON.stringify(tls12));
    // TLS 1.3: the client finishes its side first; the server's alert ends the connection unanswered.
    const tls13 = await tryHandshake(port, { ca: certs.pem.ca });
    assert.equal(tls13.answered, false, JSON.stringify(tls13));
    assert.match(tls13.error ?? 'closed', /CERTIFICATE_REQUIRED|ECONNRESET|closed/, JSON.stringify(tls13));
    await assert.rejects(request(`${gw.base}/v3/kv/range`, { key: b64('x') }, { ca: certs.pem.ca }));
  });

  it('refuses a client whose certificate another CA signed', async () => {
    const stranger = { ca: certs.pem.ca, ...certs.pem.otherClient };
    const tls12 = await tryHandshake(port, { ...stranger, maxVersion: 'TLSv1.2' });
    assert.equal(tls12.secureConnect, false, JSON.stringify(tls12));
    assert.match(tls12.error ?? '', /UNKNOWN_CA|ECONNRESET/, JSON.stringify(tls12));
    // TLS 1.3: the server's alert may arrive as an error or just as the end of the connection.
    const tls13 = await tryHandshake(port, stranger);
    assert.equal(tls13.answered, false, JSON.stringify(tls13));
    assert.match(tls13.error ?? 'closed', /UNKNOWN_CA|ECONNRESET|closed/, JSON.stringify(tls13));
    await assert.rejects(request(`${gw.base}/v3/kv/range`, { key: b64('x') }, stranger));
  });

  it('serves a client with a certificate the CA signed, over HTTPS and wss://', async () => {
    const client = { ca: certs.pem.ca, ...certs.pem.client };
    assert.equal((await request(`${gw.base}/v3/kv/put`, { key: b64('mtls/a'), value: b64('2') }, client)).status, 200);
    const range = await request(`${gw.base}/v3/kv/range`, { key: b64('mtls/a') }, client);
    assert.equal(range.status, 200, range.text);
    assert.equal(range.body.kvs[0].value, b64('2'));
    const ws = await openSocket(`${gw.base.replace(/^https/, 'wss')}/v3/watch`, client);
    try {
      ws.send({ create_request: { key: b64('mtls/a'), start_revision: range.body.kvs[0].mod_revision } });
      const [created, event] = await ws.take(2);
      assert.equal(created.result.created, true);
      assert.equal(event.result.events[0].kv.value, b64('2'));
    } finally {
      ws.close();
    }
    await assert.rejects(openSocket(`${gw.base.replace(/^https/, 'wss')}/v3/watch`, { ca: certs.pem.ca }));
  });
});

describe('TLS to etcd (etcd with --client-cert-auth)', () => {
  let etcd: Awaited<ReturnType<typeof startTlsEtcd>>;
  let gw: Awaited<ReturnType<typeof startMain>>;
  before(async () => {
    etcd = await startTlsEtcd(certs);
    gw = await startMain({ ETCD_ENDPOINTS: etcd.url, ETCD_CA_FILE: certs.caCert, ETCD_CERT_FILE: certs.client.cert, ETCD_KEY_FILE: certs.client.key });
  });
  after(async () => {
    await gw?.stop();
    await etcd?.cleanup();
  });

  it('puts and reads through the gateway, which says it talks to the https:// endpoint', async () => {
    assert.match(gw.output(), new RegExp(`etcd: +${etcd.url}`));
    assert.equal((await request(`${gw.base}/v3/kv/put`, { key: b64('etls/a'), value: b64('3') })).status, 200);
    const range = await request(`${gw.base}/v3/kv/range`, { key: b64('etls/a') });
    assert.equal(range.status, 200, range.text);
    assert.equal(range.body.kvs[0].value, b64('3'));
    const version = await request(`${gw.base}/version`);
    assert.equal(version.status, 200, version.text);
    assert.match(version.body.etcdserver, /^3\./);
    assert.match(version.body.etcdcluster, /^3\.\d+\.0$/);
  });

  it('watches over the TLS channel', async () => {
    const ws = await openSocket(`${gw.base.replace(/^http/, 'ws')}/v3/watch`);
    try {
      ws.send({ create_request: { key: b64('etls/w') } });
      assert.equal((await ws.take(1))[0].result.created, true);
      assert.equal((await request(`${gw.base}/v3/kv/put`, { key: b64('etls/w'), value: b64('seen') })).status, 200);
      const [, event] = await ws.take(2);
      assert.equal(event.result.events[0].kv.value, b64('seen'));
    } finally {
      ws.close();
    }
  });

  it('locks and unlocks with v3lock, which rides the same TLS channel', async () => {
    const lease = await request(`${gw.base}/v3/lease/grant`, { TTL: 30 });
    assert.equal(lease.status, 200, lease.text);
    const lock = await request(`${gw.base}/v3/lock/lock`, { name: b64('etls/lock'), lease: lease.body.ID });
    assert.equal(lock.status, 200, lock.text);
    assert.equal(Buffer.from(lock.body.key, 'base64').toString(), `etls/lock/${BigInt(lease.body.ID).toString(16)}`);
    const unlock = await request(`${gw.base}/v3/lock/unlock`, { key: lock.body.key });
    assert.equal(unlock.status, 200, unlock.text);
  });

  it("reads etcd's HTTP /version with the same CA and client certificate (EtcdClient.httpJson)", async () => {
    const client = new EtcdClient({ endpoints: [etcd.url], requestTimeoutMs: REQUEST_TIMEOUT_MS, tls: { ca: certs.pem.ca, ...certs.pem.client } });
    try {
      assert.equal(client.secure, true);
      const version = (await client.httpJson('/version', REQUEST_TIMEOUT_MS)) as { etcdserver: string; etcdcluster: string };
      assert.match(version.etcdcluster, /^3\.\d+\.0$/);
    } finally {
      client.close();
    }
    const noCert = new EtcdClient({ endpoints: [etcd.url], requestTimeoutMs: REQUEST_TIMEOUT_MS, tls: { ca: certs.pem.ca } });
    try {
      await assert.rejects(noCert.httpJson('/version', REQUEST_TIMEOUT_MS));
    } finally {
      noCert.close();
    }
  });

  it('answers 503 at once when the gateway has no client certificate for etcd', async () => {
    const client = new EtcdClient({ endpoints: [etcd.url], requestTimeoutMs: REQUEST_TIMEOUT_MS, tls: { ca: certs.pem.ca } });
    const gateway = buildGateway({ etcd: client, maxBodyBytes: 1 << 20, streams: DEFAULT_STREAM_SETTINGS });
    const server = http.createServer(gateway.handler);
    gateway.attach(server);
    try {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const round of [1, 2]) {
        const started = Date.now();
        const range = await request(`${base}/v3/kv/range`, { key: b64('etls/a') });
        const ms = Date.now() - started;
        assert.equal(range.status, 503, `round ${round}: ${range.text}`);
        assert.ok(ms < REQUEST_TIMEOUT_MS / 2, `round ${round}: answered after ${ms} ms, not at once`);
      }
    } finally {
      gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      client.close();
    }
  });
});

describe('TLS settings are checked at start', () => {
  async function refused(env: Record<string, string>): Promise<string> {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(ETCD_|TLS_)/.test(k)));
    const child = spawn(process.execPath, ['dist/src/main.js'], {
      cwd: ROOT,
      env: { ...inherited, HOST: '127.0.0.1', PORT: '0', ETCD_ENDPOINTS: 'https://127.0.0.1:1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    try {
      assert.equal(await exited(child, 10_000), 2, out);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    return out;
  }

  it('refuses incomplete, missing, unreadable or unusable TLS files with a message naming the setting', async () => {
    const missing = path.join(certs.dir, 'nope.pem');
    const cases: [Record<string, string>, RegExp][] = [
      [{ TLS_CERT_FILE: certs.serverCert }, /TLS_CERT_FILE is set but TLS_KEY_FILE is not/],
      [{ TLS_KEY_FILE: certs.serverKey }, /TLS_KEY_FILE is set but TLS_CERT_FILE is not/],
      [{ TLS_CERT_FILE: missing, TLS_KEY_FILE: certs.serverKey }, new RegExp(`TLS_CERT_FILE: cannot read "${missing}": no such file`)],
      [{ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.dir }, /TLS_KEY_FILE: cannot read ".*": is a directory/],
      [{ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverCert }, /TLS_KEY_FILE: ".*server\.crt" holds no PEM private key/],
      [{ TLS_CERT_FILE: certs.serverKey, TLS_KEY_FILE: certs.serverKey }, /TLS_CERT_FILE: ".*server\.key" holds no PEM certificate/],
      [{ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.client.key }, /TLS_CERT_FILE\/TLS_KEY_FILE: .* are not a usable certificate and key/],
      [{ TLS_CLIENT_CA_FILE: certs.caCert }, /TLS_CLIENT_CA_FILE is set but TLS_CERT_FILE and TLS_KEY_FILE are not/],
      [{ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverKey, TLS_CLIENT_CA_FILE: missing }, new RegExp(`TLS_CLIENT_CA_FILE: cannot read "${missing}"`)],
      [{ ETCD_CERT_FILE: certs.client.cert }, /ETCD_CERT_FILE is set but ETCD_KEY_FILE is not/],
      [{ ETCD_KEY_FILE: certs.client.key }, /ETCD_KEY_FILE is set but ETCD_CERT_FILE is not/],
      [{ ETCD_CA_FILE: missing }, new RegExp(`ETCD_CA_FILE: cannot read "${missing}": no such file`)],
      [{ ETCD_CERT_FILE: missing, ETCD_KEY_FILE: certs.client.key }, new RegExp(`ETCD_CERT_FILE: cannot read "${missing}"`)],
      [{ ETCD_CA_FILE: certs.caCert, ETCD_ENDPOINTS: 'http://127.0.0.1:2379' }, /ETCD_CA_FILE: set for etcd, but ETCD_ENDPOINTS are http:\/\//],
    ];
    const outputs = await Promise.all(cases.map(([env]) => refused(env)));
    cases.forEach(([env, message], i) => assert.match(outputs[i], message, JSON.stringify(env)));
  });
});

// /v1/ follows the same rules as /v3/: access control by prefix and right (a listing of a parent
// prefix is refused unless the client may read all of it), the rate limit, CORS (with /v1/'s methods
// and headers), metrics by operation and one log line per request that never holds a key or value.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { assertProblem, v1Client } from '../support/v1';
import { AccessPolicy } from '../../src/core/security/access';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

const sha = (token: string): string => crypto.createHash('sha256').update(token).digest('hex');
const as = (token: string): { headers: Record<string, string> } => ({ headers: { authorization: `Bearer ${token}` } });

const ACCESS = [
  'clients:',
  '  - name: app',
  `    token_sha256: ${sha('app-token')}`,
  '    grants:',
  '      - { prefix: "app/", rights: [read, write, watch] }',
  '      - { prefix: "jobs/", rights: [lock] }',
  '  - name: writer',
  `    token_sha256: ${sha('writer-token')}`,
  '    grants:',
  '      - { prefix: "drop/", rights: [write] }',
  '  - name: ops',
  `    token_sha256: ${sha('ops-token')}`,
  '    grants:',
  '      - { prefix: "", rights: [read, write, watch, lease, lock, election, admin] }',
  '',
].join('\n');

describe('/v1/ access control', () => {
  let dir: string;
  let policy: AccessPolicy;
  let gw: GatewayFixture;
  let v1: ReturnType<typeof v1Client>;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-v1-access-'));
    fs.writeFileSync(path.join(dir, 'access.yaml'), ACCESS);
    policy = new AccessPolicy(path.join(dir, 'access.yaml'), { info: () => undefined, error: () => undefined });
    gw = await startGateway({ access: policy });
    v1 = v1Client(gw.url);
    assert.equal((await v1.put('/v1/kv/app/a', '1', as('ops-token'))).status, 201);
    assert.equal((await v1.put('/v1/kv/secret', 's', as('ops-token'))).status, 201);
  });
  after(async () => {
    policy.close();
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 401 as a problem without a valid gateway token', async () => {
    const none = await v1.get('/v1/kv/app/a');
    assertProblem(none, 401, /gateway token/);
    assert.equal(none.body.code, 16);
    assertProblem(await v1.get('/v1/kv/app/a', as('wrong')), 401, /invalid gateway token/);
  });

  it('lets a client read and write inside its prefix and refuses outside it with 403 naming the prefixes', async () => {
    assert.equal((await v1.get('/v1/kv/app/a', as('app-token'))).text, '1');
    assert.equal((await v1.put('/v1/kv/app/b', '2', as('app-token'))).status, 201);
    const outside = await v1.get('/v1/kv/secret', as('app-token'));
    assertProblem(outside, 403, /client "app" may not read key "secret" \(its read prefixes: "app\/"\)/);
    assert.equal(outside.body.code, 7);
    assertProblem(await v1.put('/v1/kv/secret', 'x', as('app-token')), 403, /may not write/);
    assertProblem(await v1.del('/v1/kv/secret', as('app-token')), 403, /may not write/);
    assertProblem(await v1.del('/v1/kv/s?prefix', as('app-token')), 403, /may not write/);
    assert.equal((await v1.get('/v1/kv/secret', as('ops-token'))).text, 's');
    // The cluster's members and status are the admin right's, as /v3/cluster/ and /v3/maintenance/.
    assertProblem(await v1.get('/v1/cluster', as('app-token')), 403, /admin/);
    assert.equal((await v1.get('/v1/cluster', as('ops-token'))).status, 200);
  });

  it('lists a prefix the client may read, and refuses a listing of a parent prefix (never a silent subset)', async () => {
    const own = await v1.get('/v1/kv/app/?list', as('app-token'));
    assert.deepEqual(own.body.kvs.map((kv: { key: string }) => kv.key), ['app/a', 'app/b']);
    assertProblem(await v1.get('/v1/kv/?list', as('app-token')), 403, /may not read every key/);
    assertProblem(await v1.get('/v1/kv/ap?list', as('app-token')), 403, /may not read keys/);
    assert.ok((await v1.get('/v1/kv/?list&keys_only', as('ops-token'))).body.count >= 3);
  });

  it('needs read for conditions and ?prev, watch for ?wait, lease for ?ttl and leases, lock for locks', async () => {
    assert.equal((await v1.put('/v1/kv/drop/x', 'v', as('writer-token'))).status, 201, 'a write-only client may PUT');
    assertProblem(await v1.put('/v1/kv/drop/x', 'v', { headers: { ...as('writer-token').headers, 'if-match': '*' } }), 403, /may not read key "drop\/x"/);
    assertProblem(await v1.put('/v1/kv/drop/x?prev', 'v', as('writer-token')), 403, /may not read/);
    assertProblem(await v1.get('/v1/kv/drop/x?wait&timeout=1s', as('writer-token')), 403, /may not read/);
    assertProblem(await v1.put('/v1/kv/app/t?ttl=30', 'v', as('app-token')), 403, /may not lease leases/);
    assertProblem(await v1.post('/v1/leases?ttl=30', undefined, as('app-token')), 403, /lease/);
    assertProblem(await v1.get('/v1/leases', as('app-token')), 403, /lease/);
    assertProblem(await v1.post('/v1/locks/other?wait=0', undefined, as('app-token')), 403, /may not lock/);
    assertProblem(await v1.post('/v1/locks/jobs/x?wait=0', undefined, as('app-token')), 403, /may not lease/);
    const lease = await v1.post('/v1/leases?ttl=30', undefined, as('ops-token'));
    const lock = await v1.post(`/v1/locks/jobs/x?wait=0&lease=${lease.body.lease}`, undefined, as('app-token'));
    assert.equal(lock.status, 201, 'a lock on a lease of its own needs only the lock right');
    assertProblem(await v1.del(`/v1/locks/other?lease=${lease.body.lease}`, as('app-token')), 403, /may not lock/);
    assert.equal((await v1.del(`/v1/locks/jobs/x?key=${encodeURIComponent(lock.body.key)}`, as('app-token'))).status, 204);
    const waited = await v1.get('/v1/kv/app/a?wait&after=1&timeout=5s', as('app-token'));
    assert.equal(waited.text, '1');
  });
});

describe('/v1/ rate limit, CORS, metrics and logs', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(() => etcd.cleanup());

  it('answers 429 as a problem with Retry-After past the rate', async () => {
    const gw = await startGateway({ etcd, rateLimit: { rate: 2, burst: 3 } });
    try {
      const v1 = v1Client(gw.url);
      const statuses: number[] = [];
      let limited;
      for (let i = 0; i < 6; i++) {
        const answer = await v1.get('/v1/kv/rl');
        statuses.push(answer.status);
        if (answer.status === 429) limited = answer;
      }
      assert.ok(limited, `statuses ${statuses.join(',')}`);
      assertProblem(limited, 429, /.+/);
      assert.match(String(limited.headers['retry-after']), /^\d+$/);
    } finally {
      await gw.close();
    }
  });

  it('counts a waiting read against MAX_WATCH_CONNECTIONS: past it, 429', async () => {
    const gw = await startGateway({ etcd, streams: { maxWatchConnections: 1 } });
    try {
      const v1 = v1Client(gw.url);
      const now = await v1.put('/v1/kv/limit/a', 'x');
      const waiting = v1.get(`/v1/kv/limit/a?wait&after=${now.body.revision}&timeout=30s`);
      for (let i = 0; i < 100 && gw.gateway.hub.stats().connections === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assertProblem(await v1.get(`/v1/kv/limit/a?wait&after=${now.body.revision}&timeout=30s`), 429, /too many watch connections \(limit 1\)/);
      await v1.put('/v1/kv/limit/a', 'y');
      assert.equal((await waiting).text, 'y');
      // A gateway that stops answers a waiting read at once, so its server can close.
      const pending = v1.get(`/v1/kv/limit/a?wait&timeout=60s`);
      for (let i = 0; i < 100 && gw.gateway.hub.stats().connections === 0; i++) await new Promise((r) => setTimeout(r, 20));
      gw.gateway.close();
      assert.equal((await pending).status, 304);
    } finally {
      await gw.close();
    }
  });

  it('answers a CORS preflight for PUT with If-Match, and exposes ETag and the X-Etcd headers', async () => {
    const gw = await startGateway({ etcd, corsOrigins: ['https://app.example'] });
    try {
      const v1 = v1Client(gw.url);
      const preflight = await v1.send('OPTIONS', '/v1/kv/x', {
        headers: { origin: 'https://app.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'if-match' },
        unchecked: true,
      });
      assert.equal(preflight.status, 204);
      assert.match(String(preflight.headers['access-control-allow-methods']), /PUT/);
      assert.match(String(preflight.headers['access-control-allow-methods']), /DELETE/);
      assert.match(String(preflight.headers['access-control-allow-headers']), /if-match/);
      await v1.put('/v1/kv/cors', 'v');
      const got = await v1.get('/v1/kv/cors', { headers: { origin: 'https://app.example' } });
      assert.equal(got.headers['access-control-allow-origin'], 'https://app.example');
      assert.match(String(got.headers['access-control-expose-headers']), /ETag, X-Etcd-Revision/);
      // /v3/ answers as before.
      const v3 = await v1.send('OPTIONS', '/v3/kv/range', { headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' }, unchecked: true });
      assert.equal(v3.headers['access-control-allow-methods'], 'POST, GET, OPTIONS');
    } finally {
      await gw.close();
    }
  });

  it('counts requests by operation and logs one line each, never a key or a value', async () => {
    let logged = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const gw = await startGateway({ etcd, logger: pino({ level: 'info' }, sink) });
    try {
      const v1 = v1Client(gw.url);
      await v1.put('/v1/kv/secret-key-name', 'secret-value-text', { headers: { 'x-request-id': 'v1-put-1' } });
      await v1.get('/v1/kv/secret-key-name');
      await v1.get('/v1/kv/secret-key-name?list');
      await v1.get('/v1/kv/nothing-here');
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      assert.match(metrics, /gateway_http_requests_total\{route="V1_KvPut",method="PUT",status="201"\} 1/);
      assert.match(metrics, /gateway_http_requests_total\{route="V1_KvGet",method="GET",status="200"\} 2/);
      assert.match(metrics, /gateway_http_requests_total\{route="V1_KvGet",method="GET",status="404"\} 1/);
      assert.ok(!metrics.includes('secret-key-name'), 'no key in a label');
      await new Promise((r) => setTimeout(r, 100));
      const lines = logged.trim().split('\n').map((l) => JSON.parse(l));
      const put = lines.find((l) => l.reqId === 'v1-put-1');
      assert.deepEqual([put.route, put.method, put.status], ['V1_KvPut', 'PUT', 201]);
      assert.ok(!logged.includes('secret-key-name') && !logged.includes('secret-value-text'), 'no key or value in a log line');
    } finally {
      await gw.close();
    }
  });
});

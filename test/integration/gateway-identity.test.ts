// The gateway's own etcd user (ETCD_USERNAME / ETCD_PASSWORD) serves requests that carry no token;
// a request with its own token runs as that user; an expired gateway token is renewed once, never in
// a loop; when etcd forgot the token (--auth-token-ttl) many waiting requests share one sign-in;
// attempt, sign-in and the call sent again share one deadline.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { EtcdClient } from '../../src/etcd/client';
import { GatewayError, GrpcCode } from '../../src/core/errors';
import { grpcAnswer, startRawPeer } from '../support/h2-peer';
import { sleep } from '../support/waiting';

/** gateway_etcd_request_duration_seconds_count for Auth.Authenticate, from the gateway's /metrics. */
async function signIns(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(/^gateway_etcd_request_duration_seconds_count\{([^}]*)\} (\d+)/gm)) {
    if (m[1].includes('service="Auth"') && m[1].includes('method="Authenticate"')) total += Number(m[2]);
  }
  return total;
}

describe("the gateway's own etcd identity", () => {
  let etcd: TestEtcd;
  let plain: GatewayFixture;
  before(async () => {
    etcd = await startTestEtcd();
    plain = await startGateway({ etcd });
    for (const [path, body] of [
      ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
      ['/v3/auth/user/grant', { user: 'root', role: 'root' }],
      ['/v3/auth/user/add', { name: 'gw', password: 'gwpw' }],
      ['/v3/auth/role/add', { name: 'app' }],
      ['/v3/auth/role/grant', { name: 'app', perm: { permType: 'READWRITE', key: b64('app/'), range_end: b64('app0') } }],
      ['/v3/auth/user/grant', { user: 'gw', role: 'app' }],
      ['/v3/auth/enable', {}],
    ] as const) {
      const answer = await plain.post(path, body);
      assert.equal(answer.status, 200, `${path}: ${answer.text}`);
    }
  });
  after(async () => {
    await plain.close();
    await etcd.cleanup();
  });

  it('without its own user, a request without a token gets etcd\'s refusal', async () => {
    const answer = await plain.post('/v3/kv/range', { key: b64('app/a') });
    assert.equal(answer.status, 400);
    assert.equal(answer.body.message, 'etcdserver: user name is empty');
  });

  it('with ETCD_USERNAME, requests without a token run as that user, with its permissions', async () => {
    const client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 3000, username: 'gw', password: 'gwpw' });
    await client.signIn();
    const gw = await startGateway({ etcd, client });
    try {
      assert.equal((await gw.post('/v3/kv/put', { key: b64('app/a'), value: b64('1') })).status, 200);
      const denied = await gw.post('/v3/kv/put', { key: b64('other'), value: b64('1') });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.message, 'etcdserver: permission denied');
      // A client's own token wins over the gateway's user: root may write anywhere.
      const root = await send(gw.url, '/v3/auth/authenticate', { name: 'root', password: 'rootpw' });
      const asRoot = await gw.post('/v3/kv/put', { key: b64('other'), value: b64('1') }, { headers: { Authorization: root.body.token } });
      assert.equal(asRoot.status, 200, asRoot.text);
      // A bad token of the client's own is refused at once, not replaced by the gateway's user.
      const started = Date.now();
      const bad = await gw.post('/v3/kv/range', { key: b64('app/a') }, { headers: { Authorization: 'bogus.1' } });
      assert.equal(bad.status, 401);
      assert.ok(Date.now() - started < 2000);
    } finally {
      await gw.close();
    }
  });

  it('signs in again once when etcd no longer accepts the gateway token', async () => {
    const client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 3000, username: 'gw', password: 'gwpw' });
    await client.signIn();
    const gw = await startGateway({ etcd, client });
    try {
      const before = client.defaultMetadata()?.get('token')[0];
      assert.ok(before, 'signed in');
      // Changing the user's password makes etcd revoke its tokens.
      const root = await send(gw.url, '/v3/auth/authenticate', { name: 'root', password: 'rootpw' });
      const changed = await gw.post('/v3/auth/user/changepw', { name: 'gw', password: 'gwpw' }, { headers: { Authorization: root.body.token } });
      assert.equal(changed.status, 200, changed.text);
      const answer = await gw.post('/v3/kv/range', { key: b64('app/a') });
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body.kvs[0].value, b64('1'));
      assert.notEqual(client.defaultMetadata()?.get('token')[0], before, 'a new token was obtained');
    } finally {
      await gw.close();
    }
  });
});

describe('many requests finding the gateway token dead', () => {
  let etcd: TestEtcd;
  before(async () => {
    // etcd forgets a simple token unused for --auth-token-ttl seconds. (A restart does not kill them:
    // etcd replays the sign-ins in its log.)
    etcd = await startTestEtcd({ extraArgs: ['--auth-token-ttl', '2'] });
    const admin = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 5000 });
    try {
      await admin.unary('Auth', 'UserAdd', { name: 'root', password: 'rootpw' }, { idempotent: false });
      await admin.unary('Auth', 'UserGrantRole', { user: 'root', role: 'root' }, { idempotent: false });
      await admin.unary('Auth', 'AuthEnable', {}, { idempotent: false });
    } finally {
      admin.close();
    }
  });
  after(async () => {
    await etcd.cleanup();
  });

  it('300 waiting requests share one sign-in, and all are answered', async () => {
    const client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 10_000, username: 'root', password: 'rootpw' });
    const gw = await startGateway({ etcd, client });
    try {
      assert.equal((await gw.post('/v3/kv/put', { key: b64('a'), value: b64('1') })).status, 200);
      const before = await signIns(gw.url);
      assert.ok(before >= 1, `${before} sign-ins before`);
      await sleep(4000);
      const answers = await Promise.all(Array.from({ length: 300 }, () => send(gw.url, '/v3/kv/range', { key: b64('a') })));
      const statuses = answers.map((a) => a.status);
      assert.deepEqual([...new Set(statuses)], [200], `statuses: ${statuses.join(' ')}`);
      const after = await signIns(gw.url);
      assert.ok(after - before >= 1 && after - before <= 2, `${after - before} sign-ins for 300 requests`);
    } finally {
      await gw.close();
    }
  });
});

describe('one deadline for a request with the gateway\'s own identity', () => {
  it('attempt, sign-in and the call sent again together end at the request\'s deadline', async () => {
    // Each answer takes 700 ms: the token is refused, a sign-in, the call again (2.1 s in all).
    let authenticates = 0;
    const peer = await startRawPeer(({ socket, id, headers }) => {
      const method = headers[':path'];
      setTimeout(() => {
        if (socket.destroyed) return;
        if (method.endsWith('/Authenticate')) {
          authenticates++;
          socket.write(grpcAnswer(id, Buffer.from([0x12, 0x03, 0x74, 0x6f, 0x6b]))); // AuthenticateResponse{token: "tok"}
        } else if (headers.token === 'tok') socket.write(grpcAnswer(id, Buffer.alloc(0)));
        else socket.write(grpcAnswer(id, Buffer.alloc(0), String(GrpcCode.UNAUTHENTICATED), 'etcdserver: invalid auth token'));
      }, 700);
    });
    const client = new EtcdClient({ endpoints: [peer.url], requestTimeoutMs: 1500, username: 'u', password: 'p' });
    try {
      const calls = Array.from({ length: 20 }, () =>
        client.unary('KV', 'Range', { key: Buffer.from('a') }, { idempotent: true }).then(
          () => 'ok',
          (e: GatewayError) => e.code,
        ),
      );
      const outcomes = await Promise.all(calls);
      assert.deepEqual([...new Set(outcomes)], [GrpcCode.DEADLINE_EXCEEDED]);
      assert.equal(authenticates, 1, 'one sign-in for 20 requests');
    } finally {
      client.close();
      await peer.close();
    }
  });
});

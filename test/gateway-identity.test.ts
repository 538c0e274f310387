// The gateway's own etcd user (ETCD_USERNAME / ETCD_PASSWORD) serves requests that carry no token;
// a request with its own token runs as that user; an expired gateway token is renewed once, never in
// a loop.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, send, startGateway, type GatewayFixture } from './helpers/gateway';
import { startTestEtcd, type TestEtcd } from './harness/etcd';
import { EtcdClient } from '../src/etcd/client';

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

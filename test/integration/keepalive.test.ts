// Keepalives share one etcd stream whatever the number of clients, and a WebSocket's answers keep
// the order of its requests, refusals included.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { wsWatch } from '../support/watch-clients';

describe('lease keepalive', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
    for (const id of [77, 78]) assert.equal((await gw.post('/v3/lease/grant', { TTL: 30, ID: id })).status, 200);
  });
  after(() => gw.close());

  it('renews for 50 concurrent HTTP clients over one etcd stream', async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => gw.post('/v3/lease/keepalive', { ID: i % 2 ? 77 : 78 })));
    for (const a of answers) {
      assert.equal(a.status, 200, a.text);
      assert.equal(a.body.result.TTL, '30');
    }
    assert.equal(gw.gateway.keepalive.streamCount, 1);
    assert.ok(gw.gateway.keepalive.renewals >= 50);
  });

  it('answers WebSocket renewals in request order, a refusal in its place', async () => {
    const ws = await wsWatch(gw.wsUrl, '/v3/lease/keepalive');
    try {
      ws.send({ ID: 77 });
      ws.send({ ID: '78' });
      ws.send('{bad');
      ws.send({ ID: 12345 });
      const [a, b, refused, unknown] = await ws.take(4);
      assert.equal(a.result.ID, '77');
      assert.equal(b.result.ID, '78');
      assert.deepEqual(refused, { error: { grpc_code: 3, http_code: 400, message: "message is not valid JSON: unexpected character 'b' at offset 1", http_status: 'Bad Request' } });
      assert.equal(unknown.result.ID, '12345');
      assert.equal(unknown.result.TTL, undefined, 'an unknown lease has no TTL (0 is omitted)');
    } finally {
      ws.close();
    }
  });
});

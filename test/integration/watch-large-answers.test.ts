// A single answer larger than the send buffer (a catch-up of a big revision) is not a slow consumer:
// only data still waiting from earlier answers is. Regression test for a reader that kept up being
// cut off because one answer alone was over the limit.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { httpWatch, wsWatch } from '../support/watch-clients';

describe('answers larger than the send buffer', () => {
  let gw: GatewayFixture;
  let first = '';
  before(async () => {
    gw = await startGateway({ streams: { sendBufferBytes: 64 * 1024 } });
    // One revision of 100 keys with 2 KiB values: one ~270 KB answer to a watch replaying it.
    const value = b64('v'.repeat(2048));
    const success = Array.from({ length: 100 }, (_, i) => ({ request_put: { key: b64(`big/${String(i).padStart(3, '0')}`), value } }));
    const txn = await gw.post('/v3/kv/txn', { success });
    assert.equal(txn.status, 200);
    first = txn.body.header.revision;
    await gw.post('/v3/kv/put', { key: b64('big/zz'), value: b64('after') });
  });
  after(() => gw.close());

  it('delivers a catch-up over an HTTP stream to a reader that keeps up', async () => {
    const watch = await httpWatch(gw.url, JSON.stringify({ create_request: { key: b64('big/'), range_end: b64('big0'), start_revision: first } }));
    try {
      const messages = await watch.take(2, 10_000);
      assert.equal(messages[0].result.created, true);
      const events = messages.slice(1).flatMap((m) => m.result?.events ?? []);
      assert.equal(events.length, 101, JSON.stringify(messages.slice(1).map((m) => Object.keys(m))));
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!watch.messages.some((m) => m.error), 'not cut off');
    } finally {
      watch.close();
    }
  });

  it('delivers a fragmented catch-up over a WebSocket, fragments together', async () => {
    const w = await wsWatch(gw.wsUrl);
    try {
      w.send({ create_request: { key: b64('big/'), range_end: b64('big0'), start_revision: first, fragment: true } });
      const [created, batch] = await w.take(2, 10_000);
      assert.equal(created.result.created, true);
      assert.equal(batch.result.events.length, 101);
      await gw.post('/v3/kv/put', { key: b64('big/zz'), value: b64('live') });
      const [, , live] = await w.take(3, 10_000);
      assert.equal(live.result.events[0].kv.value, b64('live'));
    } finally {
      w.close();
    }
  });
});

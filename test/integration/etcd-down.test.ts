// When etcd is down the gateway answers promptly with 503/504 in JSON, never hangs, and serves again
// by itself once etcd is back.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { freePort } from '../../src/embedded-etcd/process';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

describe('etcd unavailable', () => {
  it('answers 503 quickly when no etcd listens at the endpoint', async () => {
    const port = await freePort();
    const fakeEtcd = { clientUrl: `http://127.0.0.1:${port}`, cleanup: async () => undefined } as unknown as TestEtcd;
    const gw = await startGateway({ etcd: fakeEtcd, requestTimeoutMs: 3000 });
    try {
      for (const [path, body] of [['/v3/kv/range', { key: b64('a') }], ['/v3/kv/put', { key: b64('a'), value: b64('b') }]] as const) {
        const started = Date.now();
        const answer = await gw.post(path, body);
        assert.equal(answer.status, 503, answer.text);
        assert.equal(answer.body.code, 14);
        assert.match(answer.body.message, /^etcd unavailable: /);
        assert.ok(Date.now() - started < 3000, 'answered within the deadline');
      }
      const health = await gw.post('/health', undefined, { method: 'GET' });
      assert.equal(health.status, 503);
      assert.equal(health.body.health, 'false');
    } finally {
      await gw.close();
    }
  });

  describe('etcd stopped and started again', () => {
    let etcd: TestEtcd;
    let gw: GatewayFixture;
    before(async () => {
      etcd = await startTestEtcd();
      gw = await startGateway({ etcd, requestTimeoutMs: 2000 });
    });
    after(async () => {
      await gw.close();
      await etcd.cleanup();
    });

    it('fails fast while etcd is down, and recovers without help', async () => {
      const ok = await gw.post('/v3/kv/put', { key: b64('d/a'), value: b64('1') });
      assert.equal(ok.status, 200);
      await etcd.stop();
      const started = Date.now();
      const down = await gw.post('/v3/kv/range', { key: b64('d/a') });
      assert.ok([503, 504].includes(down.status), down.text);
      assert.ok(Date.now() - started <= 2500, `answered in ${Date.now() - started} ms`);
      await etcd.restart();
      // Recovery is bounded: the channel reconnects within its 2 s maximum backoff.
      const deadline = Date.now() + 10_000;
      let answer = await gw.post('/v3/kv/range', { key: b64('d/a') });
      while (answer.status !== 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        answer = await gw.post('/v3/kv/range', { key: b64('d/a') });
      }
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body.kvs[0].value, b64('1'));
    });
  });
});

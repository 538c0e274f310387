// CORS is off unless origins are configured, and then serves exactly those; a per-client token bucket
// answers 429 with Retry-After past its rate.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

describe('CORS and rate limits', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(() => etcd.cleanup());

  it('sends no CORS headers when no origin is configured', async () => {
    const gw = await startGateway({ etcd });
    try {
      const answer = await gw.post('/v3/kv/range', { key: b64('a') }, { headers: { Origin: 'https://app.example' } });
      assert.equal(answer.headers.get('access-control-allow-origin'), null);
      const preflight = await send(gw.url, '/v3/kv/range', undefined, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
      assert.equal(preflight.status, 405);
    } finally {
      await gw.close();
    }
  });

  describe('with an allow-list', () => {
    let gw: GatewayFixture;
    before(async () => {
      gw = await startGateway({ etcd, corsOrigins: ['https://app.example'] });
    });
    after(() => gw.close());

    it('answers an allowed origin\'s preflight and requests with its headers', async () => {
      const preflight = await send(gw.url, '/v3/kv/put', undefined, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example');
      assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
      assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /content-type/);
      const put = await gw.post('/v3/kv/put', { key: b64('cors'), value: b64('v') }, { headers: { Origin: 'https://app.example' } });
      assert.equal(put.status, 200);
      assert.equal(put.headers.get('access-control-allow-origin'), 'https://app.example');
      assert.equal(put.headers.get('vary'), 'Origin');
      const version = await send(gw.url, '/version', undefined, { method: 'GET', headers: { Origin: 'https://app.example' } });
      assert.equal(version.headers.get('access-control-allow-origin'), 'https://app.example', 'the gateway endpoints too');
    });

    it('refuses another origin\'s preflight and gives its requests no CORS headers', async () => {
      const preflight = await send(gw.url, '/v3/kv/put', undefined, {
        method: 'OPTIONS',
        headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
      });
      assert.equal(preflight.status, 403);
      assert.deepEqual(preflight.body, {
        error: 'origin https://evil.example is not allowed (CORS_ORIGINS)',
        message: 'origin https://evil.example is not allowed (CORS_ORIGINS)',
        code: 7,
      });
      const put = await gw.post('/v3/kv/range', { key: b64('cors') }, { headers: { Origin: 'https://evil.example' } });
      assert.equal(put.headers.get('access-control-allow-origin'), null);
    });

    it('leaves same-origin pages alone: Swagger UI works without CORS', async () => {
      const docs = await send(gw.url, '/docs/', undefined, { method: 'GET' });
      assert.equal(docs.status, 200);
      const tryItOut = await gw.post('/v3/kv/range', { key: b64('cors') }, { headers: { Origin: gw.url } });
      assert.equal(tryItOut.status, 200);
    });
  });

  it('limits each client to its rate, with Retry-After, and lets it go on afterwards', async () => {
    const gw = await startGateway({ etcd, rateLimit: { rate: 5, burst: 5 } });
    try {
      const answers = [];
      for (let i = 0; i < 8; i++) answers.push(await gw.post('/v3/kv/range', { key: b64('rl') }));
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 429, 429, 429]);
      const limited = answers[5];
      assert.equal(limited.headers.get('retry-after'), '1');
      assert.deepEqual(limited.body, { error: 'gateway: rate limit of 5 requests/s exceeded', message: 'gateway: rate limit of 5 requests/s exceeded', code: 8 });
      // Probes and metrics are never limited.
      assert.equal((await send(gw.url, '/healthz', undefined, { method: 'GET' })).status, 200);
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await gw.post('/v3/kv/range', { key: b64('rl') })).status, 200);
    } finally {
      await gw.close();
    }
  });
});

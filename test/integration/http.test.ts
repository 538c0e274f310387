// The HTTP surface: prefixes, methods, unknown paths, the gateway's own endpoints and the docs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import YAML from 'yaml';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { rawExchange } from '../support/raw-http';

describe('HTTP surface', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('serves every API route under /v3/, /v3beta/ and /v3alpha/', async () => {
    for (const prefix of ['/v3', '/v3beta', '/v3alpha']) {
      const put = await gw.post(`${prefix}/kv/put`, { key: b64(`p${prefix}`), value: b64('v') });
      assert.equal(put.status, 200, `${prefix}: ${put.text}`);
      const range = await gw.post(`${prefix}/kv/range`, { key: b64(`p${prefix}`) });
      assert.equal(range.body.kvs[0].value, b64('v'));
    }
  });

  it('serves a request whose target is in absolute form (http://host/v3/...), as HTTP/1.1 requires', async () => {
    await gw.post('/v3/kv/put', { key: b64('absolute'), value: b64('form') });
    const body = JSON.stringify({ key: b64('absolute') });
    const port = Number(new URL(gw.url).port);
    const out = await rawExchange(port, [`POST http://127.0.0.1:${port}/v3beta/kv/range?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`], {
      timeoutMs: 5_000,
      untilAnswer: true,
    });
    assert.equal(out.answer?.status, 200, out.data.toString());
    assert.equal(JSON.parse(out.answer!.body.toString()).kvs[0].value, b64('form'));
  });

  it('answers other methods on API routes with 405 in JSON, naming POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const agent = request(gw.server);
      const res = await agent[method.toLowerCase() as 'get' | 'put' | 'delete' | 'patch']('/v3/kv/range');
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'POST');
      assert.deepEqual(res.body, {
        error: `method ${method} is not allowed on /v3/kv/range: use POST`,
        message: `method ${method} is not allowed on /v3/kv/range: use POST`,
        code: 12,
      });
    }
    const post = await request(gw.server).post('/version');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET');
  });

  it('answers unknown paths with 404 in JSON', async () => {
    for (const path of ['/v3/kv/nope', '/v3/', '/v3/kv/range/', '/v4/kv/range', '/nothing']) {
      const res = await request(gw.server).post(path).send('{}');
      assert.equal(res.status, 404, path);
      assert.equal(res.type, 'application/json');
      assert.deepEqual(res.body, { error: `no such route: POST ${path}`, message: `no such route: POST ${path}`, code: 5 });
    }
  });

  it('ignores query strings, as etcd does', async () => {
    const res = await request(gw.server).post('/v3/kv/range?key=Zm9v').send('{}');
    assert.equal(res.status, 400);
    assert.equal(res.body.message, 'etcdserver: key is not provided');
  });

  it('reports the etcd server, cluster and gateway versions at /version', async () => {
    const ours = await request(gw.server).get('/version');
    const theirs = (await fetch(`${gw.etcd.clientUrl}/version`).then((r) => r.json())) as Record<string, string>;
    assert.equal(ours.status, 200);
    assert.deepEqual(ours.body, { ...theirs, gateway: '0.1.0' });
  });

  it('reports health as etcd does at /health', async () => {
    const res = await request(gw.server).get('/health');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { health: 'true' });
  });

  it('publishes the contract at /openapi.json and /openapi.yaml, and Swagger UI at /docs', async () => {
    const json = await request(gw.server).get('/openapi.json');
    assert.equal(json.status, 200);
    assert.equal(json.body.openapi, '3.1.0');
    assert.ok(json.body.paths['/v3/kv/txn']);
    const yaml = await request(gw.server).get('/openapi.yaml');
    assert.deepEqual(YAML.parse(yaml.text), json.body);
    const docs = await request(gw.server).get('/docs/');
    assert.equal(docs.status, 200);
    assert.match(docs.text, /swagger-ui/i);
    const init = await request(gw.server).get('/docs/swagger-ui-init.js');
    assert.equal(init.status, 200);
    // "Try it out" sends requests to the server the spec names: this very gateway.
    assert.match(init.text, /"url": "\/"/);
    // The gateway's address opens the console (when it is on, the default: test/console.test.ts checks
    // that / goes to Swagger UI with UI=off).
    const root = await request(gw.server).get('/');
    assert.equal(root.status, 302);
    assert.equal(root.headers.location, '/ui/');
  });
});

// Small holes at the edges (issue 22, item 7): a HEAD on a watch, framing of Swagger UI, a weak
// If-Match, and a JSON body with a key twice — on /v3/ (through Node and through the fast lane), on
// WebSocket messages and on /v1/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import type { Browser } from 'playwright-core';
import { rawAnswer } from '../support/raw-http';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { launchBrowser, openPage } from '../support/browser';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const raw = (port: number, request: string, timeoutMs = 3000): Promise<string> => rawAnswer(port, request, { timeoutMs });

describe('edges', () => {
  let gw: GatewayFixture;
  let port: number;
  before(async () => {
    gw = await startGateway();
    port = Number(new URL(gw.url).port);
  });
  after(() => gw.close());

  it('answers HEAD /v1/watch/{key} with 405 and Allow: GET, holding no watch', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => raw(port, 'HEAD /v1/watch/head/x HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n')),
    );
    for (const a of answers) {
      assert.match(a, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
      assert.match(a, /\r\nAllow: GET\r\n/i);
      assert.match(a, /\r\nContent-Type: application\/problem\+json/i);
      assert.equal(a.slice(a.indexOf('\r\n\r\n') + 4), '', 'a HEAD answer has no body');
    }
    assert.equal(gw.gateway.hub.stats().connections, 0);
    // GET still watches.
    const ctl = new AbortController();
    const get = await fetch(new URL('/v1/watch/head/x', gw.url), { signal: ctl.signal });
    assert.equal(get.status, 200);
    ctl.abort();
  });

  it('keeps /docs from being framed: CSP frame-ancestors \'none\' and X-Frame-Options DENY', async () => {
    for (const path of ['/docs/', '/docs/swagger-ui-init.js', '/docs/swagger-ui.css']) {
      const answer = await send(gw.url, path, undefined, { method: 'GET' });
      assert.equal(answer.status, 200, path);
      assert.match(answer.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
      assert.match(answer.headers.get('content-security-policy') ?? '', /script-src 'self'(;|$)/, path);
      assert.equal(answer.headers.get('x-frame-options'), 'DENY', path);
    }
  });

  it('refuses a weak If-Match (RFC 9110: If-Match compares strongly) with 400 naming the header', async () => {
    const put = await send(gw.url, '/v1/kv/weak/x', 'v1', { method: 'PUT' });
    assert.ok(put.status === 201 || put.status === 200, put.text);
    const etag = put.headers.get('etag') ?? '';
    const weak = await send(gw.url, '/v1/kv/weak/x', 'v2', { method: 'PUT', headers: { 'If-Match': `W/${etag}` } });
    assert.equal(weak.status, 400, weak.text);
    assert.equal(weak.headers.get('content-type'), 'application/problem+json');
    assert.match(weak.body.detail, /^header If-Match: a weak entity tag .* If-Match uses the strong comparison/);
    const del = await send(gw.url, '/v1/kv/weak/x', undefined, { method: 'DELETE', headers: { 'If-Match': `W/${etag}` } });
    assert.equal(del.status, 400);
    // Nothing was written; the strong tag still matches, and If-None-Match still compares weakly.
    assert.equal((await send(gw.url, '/v1/kv/weak/x', undefined, { method: 'GET' })).text, 'v1');
    assert.equal((await send(gw.url, '/v1/kv/weak/x', undefined, { method: 'GET', headers: { 'If-None-Match': `W/${etag}` } })).status, 304);
    assert.equal((await send(gw.url, '/v1/kv/weak/x', 'v3', { method: 'PUT', headers: { 'If-Match': etag } })).status, 200);
  });

  describe('a JSON body with a key twice is refused with 400 naming it', () => {
    it('on /v3/ through Node\'s server', async () => {
      // A chunked body is left to Node by the fast lane.
      const handedOver = gw.gateway.laneStats()?.handedOver ?? 0;
      const body = '{"TTL":30,"TTL":40}';
      const answer = await raw(port, `POST /v3/lease/grant HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.deepEqual(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), {
        error: '/TTL: duplicate key (a key may appear only once in an object)',
        message: '/TTL: duplicate key (a key may appear only once in an object)',
        code: 3,
      });
      assert.ok((gw.gateway.laneStats()?.handedOver ?? 0) > handedOver, 'Node\'s server answered it');
      const nested = await send(gw.url, '/v3/kv/txn', JSON.stringify({ success: [{ request_put: { key: b64('a') } }] }).replace('"key":', '"key":"YQ==","key":'));
      assert.equal(nested.status, 400);
      assert.equal(nested.body.message, '/success/0/request_put/key: duplicate key (a key may appear only once in an object)');
    });

    it('on /v3/ through the fast lane', async () => {
      const served = gw.gateway.laneStats()?.served ?? 0;
      const answer = await raw(port, 'POST /v3/lease/grant HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{"TTL":30,"TTL":40}', 1000);
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).message, '/TTL: duplicate key (a key may appear only once in an object)');
      assert.ok((gw.gateway.laneStats()?.served ?? 0) > served, 'the fast lane answered it');
      const leases = await send(gw.url, '/v3/lease/leases', {});
      assert.deepEqual(leases.body.leases ?? [], [], 'no lease was granted');
    });

    it('on /v3/ streams: a watch body and a WebSocket message', async () => {
      const body = await send(gw.url, '/v3/watch', '{"create_request":{"key":"YQ==","key":"Yg=="}}');
      assert.equal(body.status, 400);
      assert.equal(body.body.message, '/create_request/key: duplicate key (a key may appear only once in an object)');
      const ws = new WebSocket(`${gw.wsUrl}/v3/watch`);
      await new Promise((r) => ws.once('open', r));
      const reply = new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString())));
      ws.send('{"create_request":{"key":"YQ==","range_end":"Yg==","range_end":"AA=="}}');
      assert.deepEqual(JSON.parse(await reply), {
        error: { grpc_code: 3, http_code: 400, message: '/create_request/range_end: duplicate key (a key may appear only once in an object)', http_status: 'Bad Request' },
      });
      await sleep(100);
      assert.equal(gw.gateway.hub.stats().watches, 0);
      ws.close();
    });

    it('on /v1/ JSON bodies', async () => {
      const answer = await send(gw.url, '/v1/leases', '{"ttl":30,"ttl":40}', { headers: { 'Content-Type': 'application/json' } });
      assert.equal(answer.status, 400);
      assert.equal(answer.headers.get('content-type'), 'application/problem+json');
      assert.match(answer.body.detail, /\/ttl: duplicate key/);
    });
  });
});

describe('Swagger UI under its CSP, in a browser', () => {
  let gw: GatewayFixture;
  let browser: Browser;
  before(async () => {
    [gw, browser] = await Promise.all([startGateway(), launchBrowser()]);
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('renders the operations and runs "Try it out", with no CSP violation; a framing page gets nothing', async () => {
    await send(gw.url, '/v3/kv/put', { key: b64('docs/k'), value: b64('v') });
    const { page, problems } = await openPage(browser, `${gw.url}/docs/`);
    await page.locator('.opblock').first().waitFor();
    assert.ok((await page.locator('.opblock').count()) > 10, 'the operations are listed');
    // Run POST /v3/kv/range from the page.
    const op = page.locator('#operations-KV-KV_Range');
    await op.locator('.opblock-summary').click();
    await op.locator('textarea.body-param__text').fill(JSON.stringify({ key: b64('docs/k') }));
    const answered = page.waitForResponse((r) => r.url().endsWith('/v3/kv/range'));
    await op.locator('button.execute').click();
    const response = await answered;
    assert.equal(response.status(), 200);
    await op.locator('.live-responses-table .response-col_status').first().waitFor();
    assert.match(await op.locator('.live-responses-table').innerText(), /200/);
    assert.deepEqual(problems, []);
    // A page of another origin framing /docs gets a blocked frame.
    const framer = await browser.newPage();
    const refused: string[] = [];
    framer.on('console', (m) => refused.push(m.text()));
    await framer.setContent(`<iframe src="${gw.url}/docs/"></iframe>`);
    await sleep(1000);
    const frame = framer.frames().find((f) => f !== framer.mainFrame());
    const framedText = frame ? await frame.evaluate(() => (globalThis as unknown as { document: { body: { innerText: string } | null } }).document.body?.innerText ?? '').catch(() => '') : '';
    assert.doesNotMatch(framedText, /etcd/i, 'nothing of Swagger UI inside the frame');
    await framer.close();
    await page.context().close();
  });
});

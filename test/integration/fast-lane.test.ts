// The fast lane (src/protocol/http1/lane.ts) against a real etcd: it serves plain unary POSTs itself and gives
// everything else, with the connection, to Node's HTTP server. These tests check what the lane must
// keep from Node: answers in request order when pipelined, bodies split over packets, the hand-over in
// the middle of a connection (bytes read ahead included), backpressure, the client going away, the
// keep-alive and read timeouts, Connection: close, half-closed clients and shutdown.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { Conn, post, rawExchange } from '../support/raw-http';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Releases the lock held with `holder`, then checks every answer on `c`: status and X-Request-Id, in order. */
async function releaseThenAnswers(gw: GatewayFixture, c: Conn, holder: string, expected: Array<[number, string]>): Promise<void> {
  await gw.post('/v3/lease/revoke', { ID: holder });
  await c.waitAnswers(expected.length);
  assert.deepEqual(
    c.answers().map((a) => [a.status, a.headers['x-request-id']]),
    expected,
  );
}

/** A lock on a fresh name held with one lease, and a second lease to wait for it with. */
async function heldLock(gw: GatewayFixture, label: string): Promise<{ name: string; holder: string; waiter: string }> {
  const name = b64(`${label}-${Date.now()}`);
  const holder = (await gw.post('/v3/lease/grant', { TTL: 30 })).body.ID as string;
  const waiter = (await gw.post('/v3/lease/grant', { TTL: 30 })).body.ID as string;
  assert.equal((await gw.post('/v3/lock/lock', { name, lease: holder })).status, 200);
  return { name, holder, waiter };
}

describe('fast lane', () => {
  let gw: GatewayFixture;
  let port: number;
  const conns: Conn[] = [];
  const connect = async (): Promise<Conn> => {
    const c = new Conn(port);
    conns.push(c);
    await new Promise((r) => c.socket.once('connect', r));
    return c;
  };
  const served = (): number => gw.gateway.laneStats()?.served ?? -1;
  const handedOver = (): number => gw.gateway.laneStats()?.handedOver ?? -1;

  before(async () => {
    gw = await startGateway({ lockWaitMs: 10_000 });
    port = Number(new URL(gw.url).port);
    await gw.post('/v3/kv/put', { key: b64('lane/a'), value: b64('1') });
  });
  after(async () => {
    for (const c of conns) c.close();
    await gw.close();
  });

  it('serves a plain POST itself, with the headers and body Node would send', async () => {
    const c = await connect();
    const before = served();
    // The same request twice: by the lane, then (chunked, so Node parses it) by Node's server.
    c.send(post('/v3/kv/range', { key: b64('lane/a') }, ['X-Request-Id: lane-1']));
    await c.waitAnswers(1);
    assert.equal(served(), before + 1);
    const body = JSON.stringify({ key: b64('lane/a') });
    c.send(`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Request-Id: node-1\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
    await c.waitAnswers(2);
    assert.equal(served(), before + 1, 'the chunked request is Node’s');
    const [lane, node] = c.answers();
    assert.equal(lane.status, 200);
    assert.equal(lane.body, node.body);
    assert.deepEqual(lane.names, node.names, 'the same headers in the same order');
    for (const name of ['content-type', 'connection', 'keep-alive']) assert.equal(lane.headers[name], node.headers[name], name);
    assert.equal(lane.headers['x-request-id'], 'lane-1');
    assert.equal(node.headers['x-request-id'], 'node-1');
    assert.match(lane.headers.date, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  });

  it('serves /v1/ key reads and writes itself, each answer as Node’s server writes it, byte for byte', async () => {
    const put = await fetch(`${gw.url}/v1/kv/lane/v1`, { method: 'PUT', body: 'raw value' });
    assert.equal(put.status, 201);
    await fetch(`${gw.url}/v1/kv/lane/bin%ff`, { method: 'PUT', body: Buffer.from([0, 1, 255]) });
    const rev = JSON.parse(await put.text()).mod_revision as number;
    const get = (target: string, extra: string[] = []): string => [`GET ${target} HTTP/1.1`, 'Host: x', ...extra, '', ''].join('\r\n');
    const write = (method: string, target: string, body: string, extra: string[] = []): string =>
      [`${method} ${target} HTTP/1.1`, 'Host: x', ...extra, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
    // Answers that do not change the store, so the same requests give the same answers twice.
    const requests = [
      get('/v1/kv/lane/v1'),
      get('/v1/kv/lane/v1', ['Accept: application/json']),
      get('/v1/kv/lane/v1', [`If-None-Match: "${rev}"`]),
      get('/v1/kv/lane/bin%ff'),
      get('/v1/kv/lane/missing'),
      get('/v1/kv/lane/?list&keys_only'),
      get('/v1/kv/lane/v1?bogus=1'),
      write('PUT', '/v1/kv/lane/v1', 'x', ['If-Match: "1"']),
      write('PUT', '/v1/kv/lane/v1', 'x', ['If-None-Match: *']),
      write('DELETE', '/v1/kv/lane/missing', ''),
      write('DELETE', '/v1/kv/lane/v1', '', ['If-Match: "1"']),
    ];
    const c = await connect();
    const before = served();
    c.send(requests.join(''));
    await c.waitAnswers(requests.length);
    assert.equal(served(), before + requests.length, 'the lane served every one');
    // A GET the lane does not serve hands the connection to Node: the same requests again, by Node.
    c.send(get('/healthz'));
    await c.waitAnswers(requests.length + 1);
    c.send(requests.join(''));
    await c.waitAnswers(2 * requests.length + 1);
    assert.equal(served(), before + requests.length, 'the second round is Node’s');
    const all = c.answers();
    const lane = all.slice(0, requests.length);
    const node = all.slice(requests.length + 1);
    const statuses = lane.map((a) => a.status);
    assert.deepEqual(statuses, [200, 200, 304, 200, 404, 200, 400, 412, 412, 404, 412]);
    lane.forEach((a, i) => {
      const b = node[i];
      const what = requests[i].split('\r\n')[0];
      assert.equal(a.status, b.status, what);
      assert.deepEqual(a.names, b.names, `${what}: the same headers in the same order`);
      for (const name of a.names) if (name !== 'date' && name !== 'x-request-id') assert.equal(a.headers[name], b.headers[name], `${what}: ${name}`);
      assert.equal(a.body, b.body, what);
    });
    assert.equal(lane[0].body, 'raw value');
    assert.equal(lane[3].headers['content-type'], 'application/octet-stream');
    // A blocking read (?wait) holds its connection for minutes: it is Node's.
    const waiting = await connect();
    const beforeWait = served();
    waiting.send(get(`/v1/kv/lane/v1?wait&after=${rev}&timeout=1`));
    await waiting.waitAnswers(1, 10_000);
    assert.equal(waiting.answers()[0].status, 304);
    assert.equal(served(), beforeWait, '?wait is Node’s');
  });

  it('answers the same as etcd’s gateway, errors included', async () => {
    const requests: Array<[string, object | string]> = [
      ['/v3/kv/range', { key: b64('lane/a') }],
      ['/v3/kv/range', { key: b64('lane/'), range_end: b64('lane0'), keys_only: true }],
      ['/v3/kv/range', '{"key": '],
      ['/v3/kv/put', { key: b64('lane/b'), value: b64('2'), prev_kv: true }],
      ['/v3/kv/deleterange', { key: b64('lane/b'), prev_kv: true }],
      ['/v3/lease/timetolive', { ID: '1' }],
    ];
    for (const [path, body] of requests) {
      const before = served();
      const ours = await gw.post(path, body);
      assert.equal(served(), before + 1, `${path} went through the lane`);
      const theirs = await gw.etcdPost(path, body);
      assert.equal(ours.status, theirs.status, `${path} ${JSON.stringify(body)}: ${ours.text} vs ${theirs.text}`);
      if (ours.status === 200) {
        const strip = (v: { header?: object }): object => ({ ...v, header: undefined });
        // Revisions move between the two calls for writes; reads of an unchanged key must agree.
        if (path === '/v3/kv/range') assert.deepEqual(strip(ours.body), strip(theirs.body));
      } else {
        assert.equal(ours.body.code, theirs.body.code);
      }
    }
  });

  it('answers pipelined requests in order, a slow one holding back the fast ones behind it', async () => {
    const { name, holder, waiter } = await heldLock(gw, 'lane-lock');
    const c = await connect();
    c.send(
      post('/v3/lock/lock', { name, lease: waiter }, ['X-Request-Id: p1']) +
        post('/v3/kv/range', { key: b64('lane/a') }, ['X-Request-Id: p2']) +
        post('/v3/kv/put', { key: b64('lane/c'), value: b64('3') }, ['X-Request-Id: p3']),
    );
    await sleep(300);
    assert.equal(c.answers().length, 0, 'nothing is answered before the lock is');
    // The put behind the lock ran anyway (requests run concurrently; only answers wait their turn).
    assert.equal((await gw.post('/v3/kv/range', { key: b64('lane/c') })).body.count, '1');
    await releaseThenAnswers(gw, c, holder, [
      [200, 'p1'],
      [200, 'p2'],
      [200, 'p3'],
    ]);
    await gw.post('/v3/lease/revoke', { ID: waiter });
  });

  it('serves a request whose head and body arrive in pieces', async () => {
    const before = served();
    const text = post('/v3/kv/range', { key: b64('lane/a') });
    const c = await connect();
    for (const piece of [text.slice(0, 7), text.slice(7, 40), text.slice(40, -5), text.slice(-5)]) {
      c.send(piece);
      await sleep(30);
    }
    await c.waitAnswers(1);
    assert.equal(c.answers()[0].status, 200);
    assert.equal(JSON.parse(c.answers()[0].body).count, '1');
    assert.equal(served(), before + 1);
  });

  it('hands the connection to Node mid-stream, with the requests read ahead, answers still in order', async () => {
    const { name, holder, waiter } = await heldLock(gw, 'lane-lock2');
    const handed = handedOver();
    const gz = zlib.gzipSync(JSON.stringify({ key: b64('lane/a') }));
    const c = await connect();
    // Lane, lane (waits for the lock), then a gzip body (Node's), then plain ones (Node's too now).
    c.send(
      post('/v3/kv/range', { key: b64('lane/a') }, ['X-Request-Id: h1']) +
        post('/v3/lock/lock', { name, lease: waiter }, ['X-Request-Id: h2']),
    );
    c.send(
      Buffer.concat([
        Buffer.from(`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Request-Id: h3\r\nContent-Encoding: gzip\r\nContent-Length: ${gz.length}\r\n\r\n`),
        gz,
        Buffer.from(post('/v3/kv/range', { key: b64('lane/a') }, ['X-Request-Id: h4']) + post('/v3/kv/range', '{"key": 1}', ['X-Request-Id: h5'])),
      ]),
    );
    await c.waitAnswers(1);
    await sleep(200);
    assert.equal(c.answers().length, 1, 'the gzip request waits for the lock before it, as Node would');
    await releaseThenAnswers(gw, c, holder, [
      [200, 'h1'],
      [200, 'h2'],
      [200, 'h3'],
      [200, 'h4'],
      [400, 'h5'],
    ]);
    assert.equal(c.answers()[2].body, c.answers()[0].body.replace(/"revision":"\d+"/, c.answers()[2].body.match(/"revision":"\d+"/)![0]));
    assert.equal(handedOver(), handed + 1);
    // And the connection goes on working under Node.
    c.send(post('/v3/kv/range', { key: b64('lane/a') }, ['X-Request-Id: h6']));
    await c.waitAnswers(6);
    assert.equal(c.answers()[5].headers['x-request-id'], 'h6');
    await gw.post('/v3/lease/revoke', { ID: waiter });
  });

  it('leaves to Node what it does not serve: other methods, Expect, duplicate or malformed headers, HTTP/1.0', async () => {
    const body = JSON.stringify({ key: b64('lane/a') });
    const cases: Array<[string, string | RegExp, number]> = [
      ['GET /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n', 'GET', 405],
      [`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'Expect', 200],
      [`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'two Content-Lengths', 400],
      [`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-A : b\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'space before the colon', 400],
      [`POST /v3/kv/range HTTP/1.0\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 'HTTP/1.0', 200],
      [`POST /v3/kv/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`, 'unknown route', 404],
      [`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`, 'CL and TE', 400],
    ];
    for (const [request, what, status] of cases) {
      const before = served();
      const out = await rawExchange(port, [request], { timeoutMs: 5000, untilAnswer: true });
      assert.equal(out.answer?.status, status, `${String(what)}: ${out.data.toString('latin1').slice(0, 400)}`);
      assert.match(out.answer?.headers['content-type'] ?? '', /^application\/json/, String(what));
      assert.equal(served(), before, `${String(what)} is Node's`);
    }
  });

  it('stops reading a client that sends without reading, and serves it all once it reads', async () => {
    const c = await connect();
    c.socket.pause();
    const n = 200;
    let batch = '';
    for (let i = 0; i < n; i++) batch += post('/v3/kv/range', { key: b64('lane/a') }, [`X-Request-Id: b${i}`]);
    c.send(batch);
    await sleep(500);
    c.socket.resume();
    await c.waitAnswers(n, 15_000);
    assert.deepEqual(
      c.answers().map((a) => a.headers['x-request-id']),
      Array.from({ length: n }, (_, i) => `b${i}`),
    );
  });

  it('cancels the etcd call of a client that goes away and counts its request as 499', async () => {
    const { name, holder, waiter } = await heldLock(gw, 'lane-lock3');
    const count = async (): Promise<number> => {
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      return Number(/gateway_http_requests_total\{[^}]*route="Lock_Lock"[^}]*status="499"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await count();
    const c = await connect();
    c.send(post('/v3/lock/lock', { name, lease: waiter }));
    await sleep(200);
    c.close();
    await sleep(200);
    assert.equal(await count(), before + 1);
    // The wait was cancelled in etcd: releasing the holder leaves no lock key of the waiter behind.
    await gw.post('/v3/lease/revoke', { ID: holder });
    await sleep(300);
    const keys = await gw.post('/v3/kv/range', { key: name, range_end: b64(`${Buffer.from(name, 'base64').toString()}0`) });
    assert.equal(keys.body.count ?? '0', '0', JSON.stringify(keys.body));
    await gw.post('/v3/lease/revoke', { ID: waiter });
  });

  it('closes after answering a Connection: close request; a client that ends its side gets what Node gives it', async () => {
    const c = await connect();
    c.send(post('/v3/kv/range', { key: b64('lane/a') }, ['Connection: close']));
    await c.waitClosed();
    assert.equal(c.answers().length, 1);
    assert.equal(c.answers()[0].headers.connection, 'close');

    // A client that ends its side abandons what it asked, as with Node's server (httpAllowHalfOpen off):
    // the same outcome from the lane and from Node (a chunked body).
    const body = JSON.stringify({ key: b64('lane/a') });
    const chunked = `POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    for (const request of [post('/v3/kv/range', { key: b64('lane/a') }), chunked]) {
      const out = await rawExchange(port, [request, 'end'], { timeoutMs: 5000 });
      assert.equal(out.closedByServer, true);
      assert.equal(out.answer, undefined, out.data.toString());
      // Ending after the answer came is an ordinary close.
      const later = await rawExchange(port, [request, { delayMs: 300 }, 'end'], { timeoutMs: 5000 });
      assert.equal(later.answer?.status, 200);
      assert.equal(later.closedByServer, true);
    }
  });
});

describe('fast lane timeouts and shutdown', () => {
  it('answers a request received too slowly with 408, and ends idle keep-alive connections', async () => {
    const gw = await startGateway();
    try {
      gw.server.headersTimeout = 300;
      gw.server.requestTimeout = 600;
      gw.server.keepAliveTimeout = 300;
      const port = Number(new URL(gw.url).port);
      const slowHead = await rawExchange(port, ['POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n'], { timeoutMs: 5000 });
      assert.equal(slowHead.answer?.status, 408, slowHead.data.toString());
      assert.match(JSON.parse(slowHead.answer!.body.toString()).error, /not received in time/);
      const slowBody = await rawExchange(port, ['POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"key"'], { timeoutMs: 5000 });
      assert.equal(slowBody.answer?.status, 408);
      assert.ok(slowBody.ms >= 600, `cut at ${slowBody.ms} ms`);
      const idle = await rawExchange(port, [post('/v3/kv/range', { key: b64('x') })], { timeoutMs: 5000 });
      assert.equal(idle.answer?.status, 200);
      assert.equal(idle.closedByServer, true);
      assert.ok(idle.ms >= 300, `closed after ${idle.ms} ms`);
      assert.equal(gw.gateway.laneStats()?.handedOver, 0, 'all of it was the lane’s');
    } finally {
      await gw.close();
    }
  });

  it('at shutdown closes idle connections at once and busy ones after their answer', async () => {
    const gw = await startGateway({ lockWaitMs: 10_000 });
    const port = Number(new URL(gw.url).port);
    const { name, holder, waiter } = await heldLock(gw, 'lane-stop');
    const idle = new Conn(port);
    const busy = new Conn(port);
    try {
      idle.send(post('/v3/kv/range', { key: b64('x') }));
      await idle.waitAnswers(1);
      busy.send(post('/v3/lock/lock', { name, lease: waiter }));
      await sleep(200);
      const closed = new Promise<void>((resolve) => gw.server.close(() => resolve()));
      await idle.waitClosed();
      assert.equal(busy.closed, false, 'the busy connection stays until it is answered');
      await gw.client.unary('Lease', 'LeaseRevoke', { ID: holder }, { idempotent: false });
      await busy.waitClosed();
      assert.equal(busy.answers().length, 1);
      assert.equal(busy.answers()[0].status, 200);
      assert.equal(busy.answers()[0].headers.connection, 'close');
      await closed;
    } finally {
      idle.close();
      busy.close();
      gw.gateway.close();
      gw.client.close();
      await gw.etcd.cleanup();
    }
  });
});

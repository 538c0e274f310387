// What one client may take: streams pay the rate limit like any request (a WebSocket upgrade, each of
// its messages, each request of a watch or keepalive body), and each client is capped in open streams,
// watches and keepalives in flight. Small numbers, a real etcd; a client under the caps is not refused.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { WebSocket } from 'ws';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An upgrade's outcome: the open socket, or the refusal's status, headers and JSON body. */
type Upgrade = { ws: WebSocket } | { status: number; headers: http.IncomingHttpHeaders; body: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

function upgrade(url: string): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
    });
    ws.once('error', reject);
  });
}

async function openSocket(url: string): Promise<WebSocket> {
  const u = await upgrade(url);
  if (!('ws' in u)) throw new Error(`upgrade refused: ${u.status} ${JSON.stringify(u.body)}`);
  return u.ws;
}

/** The next `n` messages of a socket, parsed. */
function messages(ws: WebSocket, n: number, timeoutMs = 5000): Promise<any[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const got: unknown[] = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages: ${JSON.stringify(got)}`)), timeoutMs);
    const on = (data: Buffer): void => {
      got.push(JSON.parse(data.toString()));
      if (got.length === n) {
        clearTimeout(timer);
        ws.off('message', on);
        resolve(got);
      }
    };
    ws.on('message', on);
  });
}

function closed(ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve();
  return new Promise((r) => ws.once('close', () => r()));
}

/** An SSE watch's answer head (the stream is left open: the caller destroys `req`). */
function openSse(base: string, path: string): Promise<{ status: number; body: Promise<string>; req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(path, base), { headers: { Accept: 'text/event-stream' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      const body = new Promise<string>((r) => {
        res.on('end', () => r(text));
        res.on('close', () => r(text));
      });
      resolve({ status: res.statusCode ?? 0, body, req });
    });
    req.on('error', reject);
  });
}

describe('per-client rate limit on streams', () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startGateway({ etcd, rateLimit: { rate: 5, burst: 5 } });
  });
  after(async () => {
    await gw.close();
    await etcd.cleanup();
  });
  /** A full bucket again (5 tokens at 5/s). */
  const refill = (): Promise<void> => sleep(1100);

  it('counts each WebSocket upgrade: past the rate, 429 with Retry-After before the 101', async () => {
    await refill();
    const outcomes: Upgrade[] = [];
    for (let i = 0; i < 7; i++) outcomes.push(await upgrade(`${gw.wsUrl}/v3/${['watch', 'lease/keepalive', 'election/observe'][i % 3]}`));
    const opened = outcomes.filter((o) => 'ws' in o).length;
    assert.equal(opened, 5, 'the first five upgrades (the burst) are accepted');
    const refused = outcomes.slice(5) as Array<{ status: number; headers: http.IncomingHttpHeaders; body: { code: number; message: string } }>;
    for (const r of refused) {
      assert.equal(r.status, 429);
      assert.equal(r.headers['retry-after'], '1');
      assert.deepEqual(r.body, { error: 'gateway: rate limit of 5 requests/s exceeded', message: 'gateway: rate limit of 5 requests/s exceeded', code: 8 });
    }
    for (const o of outcomes) if ('ws' in o) o.ws.close();
  });

  it('counts each WebSocket message: one over the rate is answered with an error and not served', async () => {
    await refill();
    const ws = await openSocket(`${gw.wsUrl}/v3/watch`);
    // 1 token for the upgrade, 4 left: four creates are served, the next two refused.
    for (let i = 1; i <= 6; i++) ws.send(JSON.stringify({ create_request: { key: b64(`rl/${i}`), watch_id: i } }));
    const answers = await messages(ws, 6);
    const created = answers.filter((a) => a.result?.created);
    const refused = answers.filter((a) => a.error);
    assert.equal(created.length, 4, JSON.stringify(answers));
    assert.deepEqual(created.map((a) => a.result.watch_id).sort(), ['1', '2', '3', '4']);
    assert.equal(refused.length, 2);
    for (const r of refused) assert.deepEqual(r.error, { grpc_code: 8, http_code: 429, message: 'gateway: rate limit of 5 requests/s exceeded', http_status: 'Too Many Requests' });
    assert.equal(gw.gateway.hub.stats().watches, 4, 'the refused creates made no watch');
    // After a second, the socket (still open) is served again.
    await refill();
    ws.send(JSON.stringify({ create_request: { key: b64('rl/7'), watch_id: 7 } }));
    const [later] = await messages(ws, 1);
    assert.equal(later.result?.created, true);
    ws.close();
    await closed(ws);
  });

  it('counts each ID of a keepalive body, and each request of a watch body', async () => {
    await refill();
    const lease = await gw.post('/v3/lease/grant', { TTL: 30 });
    const id = lease.body.ID as string;
    // The grant took 1 token: 4 left, fewer than a body of 5 renewals needs.
    const five = await send(gw.url, '/v3/lease/keepalive', Array(5).fill(JSON.stringify({ ID: id })).join('\n'));
    assert.equal(five.status, 429, five.text);
    assert.equal(five.headers.get('retry-after'), '1');
    await refill();
    const ok = await send(gw.url, '/v3/lease/keepalive', Array(4).fill(JSON.stringify({ ID: id })).join('\n'));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.text.trim().split('\n').length, 4);
    await refill();
    // More renewals than the burst can never be within the rate: refused whole, without Retry-After.
    const many = await send(gw.url, '/v3/lease/keepalive', Array(60).fill(JSON.stringify({ ID: id })).join(''));
    assert.equal(many.status, 429);
    assert.equal(many.headers.get('retry-after'), null);
    assert.match(many.body.message, /the body holds more requests than the burst of 5 \(RATE_LIMIT_BURST\)/);
    await refill();
    const watches = await gw.post('/v3/watch', Array.from({ length: 6 }, (_, i) => JSON.stringify({ create_request: { key: b64(`rlw/${i}`) } })).join(''));
    assert.equal(watches.status, 429, watches.text);
    assert.equal(gw.gateway.hub.stats().connections, 0, 'no watch was opened');
  });

  it('counts each /v1/ watch stream', async () => {
    await refill();
    const streams = [];
    for (let i = 0; i < 6; i++) streams.push(await openSse(gw.url, `/v1/watch/rlsse/${i}`));
    assert.deepEqual(streams.map((s) => s.status), [200, 200, 200, 200, 200, 429]);
    for (const s of streams) s.req.destroy();
  });

  it('serves a client that keeps under its rate, streams included', async () => {
    await refill();
    const ws = await openSocket(`${gw.wsUrl}/v3/lease/keepalive`);
    const lease = await gw.post('/v3/lease/grant', { TTL: 30 });
    const answers: unknown[] = [];
    ws.on('message', (d: Buffer) => answers.push(JSON.parse(d.toString())));
    // 4 a second for 2.5 s, mixing socket messages and HTTP requests.
    for (let i = 0; i < 10; i++) {
      if (i % 2) ws.send(JSON.stringify({ ID: lease.body.ID }));
      else assert.equal((await gw.post('/v3/kv/put', { key: b64('rl/ok'), value: b64(String(i)) })).status, 200);
      await sleep(250);
    }
    await sleep(200);
    assert.equal(answers.length, 5);
    for (const a of answers) assert.ok((a as { result?: unknown }).result, JSON.stringify(a));
    ws.close();
    await closed(ws);
  });
});

describe('per-client caps', () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await gw?.close();
    await etcd.cleanup();
  });
  /** A gateway of its own for each cap, so that one test's streams closing late never count in another's. */
  const gatewayWith = async (streams: { maxStreamsPerClient?: number; maxWatchesPerClient?: number; maxKeepalivesPerClient?: number }): Promise<void> => {
    await gw?.close();
    gw = await startGateway({ etcd, streams });
  };

  it('caps open streams across WebSockets, HTTP streams and /v1/ watches (MAX_STREAMS_PER_CLIENT)', async () => {
    await gatewayWith({ maxStreamsPerClient: 3 });
    const ws = await openSocket(`${gw.wsUrl}/v3/lease/keepalive`);
    const sse = await openSse(gw.url, '/v1/watch/cap/a');
    assert.equal(sse.status, 200);
    const observe = http.request(new URL('/v3/watch', gw.url), { method: 'POST' });
    observe.on('error', () => undefined);
    observe.write(JSON.stringify({ create_request: { key: b64('cap/b') } }));
    await sleep(200);
    const message = 'gateway: too many open streams for this client (limit 3 per client, MAX_STREAMS_PER_CLIENT)';
    const refusedWs = await upgrade(`${gw.wsUrl}/v3/watch`);
    assert.ok(!('ws' in refusedWs));
    assert.equal(refusedWs.status, 429);
    assert.equal(refusedWs.body.message, message);
    const refusedSse = await openSse(gw.url, '/v1/watch/cap/c');
    assert.equal(refusedSse.status, 429);
    assert.equal(JSON.parse(await refusedSse.body).detail, message);
    const refusedHttp = await gw.post('/v3/watch', { create_request: { key: b64('cap/d') } });
    assert.equal(refusedHttp.status, 429);
    assert.equal(refusedHttp.body.message, message);
    // Unary requests are not streams.
    assert.equal((await gw.post('/v3/kv/range', { key: b64('cap') })).status, 200);
    // One closed, one more may open.
    ws.close();
    await closed(ws);
    await sleep(100);
    const again = await openSocket(`${gw.wsUrl}/v3/watch`);
    again.close();
    sse.req.destroy();
    observe.destroy();
    await closed(again);
    await sleep(200);
  });

  it('caps watches across all of a client\'s connections (MAX_WATCHES_PER_CLIENT)', async () => {
    await gatewayWith({ maxWatchesPerClient: 3 });
    const reason = 'gateway: too many watches for this client (limit 3 per client, MAX_WATCHES_PER_CLIENT)';
    const a = await openSocket(`${gw.wsUrl}/v3/watch`);
    const b = await openSocket(`${gw.wsUrl}/v3/watch`);
    for (let i = 1; i <= 2; i++) a.send(JSON.stringify({ create_request: { key: b64(`w/${i}`), watch_id: i } }));
    assert.deepEqual((await messages(a, 2)).map((m) => m.result.created), [true, true]);
    b.send(JSON.stringify({ create_request: { key: b64('w/3'), watch_id: 3 } }));
    b.send(JSON.stringify({ create_request: { key: b64('w/4'), watch_id: 4 } }));
    const [third, fourth] = await messages(b, 2);
    assert.equal(third.result.created, true);
    assert.equal(third.result.canceled, undefined);
    assert.equal(fourth.result.canceled, true);
    assert.equal(fourth.result.cancel_reason, reason);
    assert.equal(gw.gateway.hub.stats().watches, 3);
    // A /v1/ watch and an HTTP watch body over the cap: 429 before any stream.
    const sse = await openSse(gw.url, '/v1/watch/w/5');
    assert.equal(sse.status, 429);
    assert.equal(JSON.parse(await sse.body).detail, reason);
    const body = await gw.post('/v3/watch', { create_request: { key: b64('w/6') } });
    assert.equal(body.status, 429);
    assert.equal(body.body.message, reason);
    // A cancel gives one back.
    a.send(JSON.stringify({ cancel_request: { watch_id: 1 } }));
    assert.equal((await messages(a, 1))[0].result.canceled, true);
    b.send(JSON.stringify({ create_request: { key: b64('w/7'), watch_id: 7 } }));
    const [seventh] = await messages(b, 1);
    assert.equal(seventh.result.created, true);
    assert.equal(seventh.result.canceled, undefined);
    // Connections closed: all given back.
    a.close();
    b.close();
    await Promise.all([closed(a), closed(b)]);
    await sleep(100);
    assert.equal(gw.gateway.hub.stats().watches, 0);
    const fresh = await gw.post('/v3/watch', [1, 2, 3].map((i) => JSON.stringify({ create_request: { key: b64(`w/f${i}`) } })).join(''), { signal: AbortSignal.timeout(300) }).catch((e: Error) => e);
    assert.ok(fresh instanceof Error && fresh.name === 'TimeoutError', 'three creates in one body are within the cap: the stream opens and stays open');
  });

  it('caps keepalives in flight: a body with more IDs than MAX_KEEPALIVES_PER_CLIENT is refused', async () => {
    await gatewayWith({ maxKeepalivesPerClient: 3 });
    const lease = await gw.post('/v3/lease/grant', { TTL: 30 });
    const body = (n: number): string => Array(n).fill(JSON.stringify({ ID: lease.body.ID })).join('\n');
    const over = await gw.post('/v3/lease/keepalive', body(4));
    assert.equal(over.status, 429);
    assert.equal(over.body.message, 'gateway: too many keepalives in flight for this client (limit 3 per client, MAX_KEEPALIVES_PER_CLIENT)');
    const within = await send(gw.url, '/v3/lease/keepalive', body(3));
    assert.equal(within.status, 200, within.text);
    assert.equal(within.text.trim().split('\n').length, 3);
    // On a WebSocket: renewals sent at once beyond the cap get the error, in their place.
    const ws = await openSocket(`${gw.wsUrl}/v3/lease/keepalive`);
    for (let i = 0; i < 10; i++) ws.send(JSON.stringify({ ID: lease.body.ID }));
    const answers = await messages(ws, 10);
    const refused = answers.filter((a) => a.error);
    assert.ok(answers.filter((a) => a.result).length >= 3, JSON.stringify(answers));
    assert.ok(refused.length >= 1, 'ten renewals at once: some over the cap');
    for (const r of refused) assert.match(r.error.message, /MAX_KEEPALIVES_PER_CLIENT/);
    ws.close();
    await closed(ws);
  });
});

describe('caps follow the access-control identity', () => {
  it('counts two clients from one address apart', async () => {
    // Covered by the same key as the rate limit: see app.ts clientOf. Two tokens, one address.
    const { AccessPolicy } = await import('../../src/core/security/access');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const crypto = await import('node:crypto');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caps-'));
    const file = path.join(dir, 'access.yaml');
    const sha = (t: string): string => crypto.createHash('sha256').update(t).digest('hex');
    fs.writeFileSync(file, `clients:\n  - name: a\n    token_sha256: ${sha('tok-a')}\n    grants: [{ prefix: "", rights: [watch, read] }]\n  - name: b\n    token_sha256: ${sha('tok-b')}\n    grants: [{ prefix: "", rights: [watch, read] }]\n`);
    const access = new AccessPolicy(file, { info: () => undefined, error: () => undefined });
    const gw = await startGateway({ access, streams: { maxStreamsPerClient: 1 } });
    try {
      const open = (token: string): Promise<Upgrade> => new Promise((resolve, reject) => {
        const ws = new WebSocket(`${gw.wsUrl}/v3/watch`, { headers: { Authorization: `Bearer ${token}` } });
        ws.once('open', () => resolve({ ws }));
        ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: undefined }));
        ws.once('error', reject);
      });
      const a1 = await open('tok-a');
      const b1 = await open('tok-b');
      const a2 = await open('tok-a');
      assert.ok('ws' in a1 && 'ws' in b1, 'each client gets its own stream');
      assert.ok(!('ws' in a2) && a2.status === 429, 'a second one for the same client is refused');
      for (const u of [a1, b1]) if ('ws' in u) u.ws.close();
    } finally {
      await gw.close();
      access.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a resumed watch that never reads', () => {
  it('is cut off like any slow consumer, though nothing more is sent after its catch-up', async () => {
    const gw = await startGateway({ streams: { sendBufferBytes: 64 * 1024, watchHeartbeatMs: 60_000 } });
    try {
      // ~6 MB of history in 30 revisions: one catch-up answer from etcd, far over the 64 KB buffer.
      const value = b64('x'.repeat(16_000));
      for (let t = 0; t < 30; t++) {
        const success = Array.from({ length: 10 }, (_, i) => ({ request_put: { key: b64(`hist/${t}/${i}`), value } }));
        assert.equal((await gw.post('/v3/kv/txn', { success })).status, 200);
      }
      const stalled = ['text/event-stream', 'application/x-ndjson'].map((accept) =>
        http.get(new URL('/v1/watch/hist/?prefix&start_revision=1', gw.url), { headers: { Accept: accept } }, (res) => res.pause()),
      );
      for (const s of stalled) s.on('error', () => undefined);
      // A client that reads gets the whole catch-up, and is not cut off.
      const reader = await fetch(new URL('/v1/watch/hist/?prefix&start_revision=1', gw.url));
      const body = reader.body!.getReader();
      let text = '';
      while ((text.match(/"type":"put"/g) ?? []).length < 300) {
        const { value: chunk, done } = await body.read();
        assert.ok(!done, 'the reading client was cut off');
        text += Buffer.from(chunk).toString();
      }
      const deadline = Date.now() + 6_000;
      while (gw.gateway.hub.stats().connections > 1 && Date.now() < deadline) await sleep(100);
      assert.equal(gw.gateway.hub.stats().connections, 1, 'both stalled streams (SSE and NDJSON) are cut off; the reader stays');
      await body.cancel();
      for (const s of stalled) s.destroy();
    } finally {
      await gw.close();
    }
  });
});

describe('a /v3/ watch resumed over a WebSocket or HTTP that never reads', () => {
  it('is cut off too', async () => {
    const gw = await startGateway({ streams: { sendBufferBytes: 64 * 1024 } });
    try {
      const value = b64('y'.repeat(16_000));
      for (let t = 0; t < 30; t++) {
        const success = Array.from({ length: 10 }, (_, i) => ({ request_put: { key: b64(`h3/${t}/${i}`), value } }));
        assert.equal((await gw.post('/v3/kv/txn', { success })).status, 200);
      }
      const create = JSON.stringify({ create_request: { key: b64('h3/'), range_end: b64('h30'), start_revision: 1 } });
      const ws = await openSocket(`${gw.wsUrl}/v3/watch`);
      // A socket that reads nothing: its TCP stream is paused under ws.
      (ws as unknown as { _socket: { pause(): void } })._socket.pause();
      ws.send(create);
      const httpWatch = http.request(new URL('/v3/watch', gw.url), { method: 'POST' }, (res) => res.pause());
      httpWatch.on('error', () => undefined);
      httpWatch.end(create);
      await sleep(500);
      assert.equal(gw.gateway.hub.stats().connections, 2);
      const deadline = Date.now() + 6_000;
      while (gw.gateway.hub.stats().connections > 0 && Date.now() < deadline) await sleep(100);
      assert.equal(gw.gateway.hub.stats().connections, 0, 'both are cut off');
      ws.terminate();
      httpWatch.destroy();
    } finally {
      await gw.close();
    }
  });
});

describe('a blocking /v1/ read (?wait)', () => {
  it('counts as one of its client\'s streams while it waits', async () => {
    const gw = await startGateway({ streams: { maxStreamsPerClient: 2 } });
    try {
      const waits = [1, 2].map(() => {
        const ctl = new AbortController();
        return { ctl, done: fetch(new URL('/v1/kv/wait/x?wait&timeout=30s', gw.url), { signal: ctl.signal }).catch(() => undefined) };
      });
      await sleep(300);
      const third = await send(gw.url, '/v1/kv/wait/x?wait&timeout=1s', undefined, { method: 'GET' });
      assert.equal(third.status, 429);
      assert.match(third.body.detail, /MAX_STREAMS_PER_CLIENT/);
      // A plain read is no stream.
      assert.equal((await send(gw.url, '/v1/kv/wait/x', undefined, { method: 'GET' })).status, 404);
      for (const w of waits) w.ctl.abort();
      await Promise.all(waits.map((w) => w.done));
      await sleep(200);
      const after = await send(gw.url, '/v1/kv/wait/x?wait&timeout=100ms', undefined, { method: 'GET' });
      assert.notEqual(after.status, 429, after.text);
    } finally {
      await gw.close();
    }
  });
});

describe('a call that waits by design (a lock, a campaign)', () => {
  it('counts as one of its client\'s streams while it waits, on /v3/ and /v1/', async () => {
    const gw = await startGateway({ streams: { maxStreamsPerClient: 2 } });
    try {
      const holder = await gw.post('/v3/lock/lock', { name: b64('capped') });
      assert.equal(holder.status, 200, holder.text);
      const waiting = [
        fetch(new URL('/v3/lock/lock', gw.url), { method: 'POST', body: JSON.stringify({ name: b64('capped') }) }),
        fetch(new URL('/v1/locks/capped?wait=30s', gw.url), { method: 'POST' }),
      ];
      await sleep(300);
      for (const [path, body] of [['/v3/lock/lock', { name: b64('capped') }], ['/v3/election/campaign', { name: b64('capped-el'), value: b64('v') }]] as const) {
        const third = await gw.post(path, body);
        assert.equal(third.status, 429, `${path}: ${third.text}`);
        assert.match(third.body.message, /MAX_STREAMS_PER_CLIENT/);
      }
      const v1third = await send(gw.url, '/v1/locks/capped?wait=0', undefined, { method: 'POST' });
      assert.equal(v1third.status, 429, v1third.text);
      // A call that does not wait is no stream.
      assert.equal((await gw.post('/v3/kv/range', { key: b64('capped') })).status, 200);
      // The holder lets go: both waiters get the lock in turn and end, and their places come back.
      assert.equal((await gw.post('/v3/lock/unlock', { key: holder.body.key })).status, 200);
      const first = await Promise.race(waiting.map((w) => w.then(async (r) => ({ r, body: (await r.json()) as { key?: string } }))));
      assert.ok(first.r.status === 200 || first.r.status === 201, String(first.r.status));
      const unlock = first.r.status === 200 ? gw.post('/v3/lock/unlock', { key: first.body.key }) : send(gw.url, `/v1/locks/capped?key=${first.body.key}`, undefined, { method: 'DELETE' });
      assert.ok([200, 204].includes((await unlock).status));
      const settled = await Promise.all(waiting);
      assert.ok(settled.every((r) => r.status === 200 || r.status === 201), settled.map((r) => r.status).join(','));
      await sleep(200);
      const after = await gw.post('/v3/election/campaign', { name: b64('capped-el'), value: b64('v') });
      assert.equal(after.status, 200, after.text);
    } finally {
      await gw.close();
    }
  });
});

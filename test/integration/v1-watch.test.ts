// GET /v1/watch/{key}: Server-Sent Events and NDJSON against a real etcd. Events and their /v1/ shape,
// resume ids that are exact inside a txn's events (raw clients and the `eventsource` package, which
// reconnects by itself), refusals as problems, compaction before and during a stream, progress,
// heartbeats, access control, slow consumers, and every revision exactly once across etcd restarts.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventSource } from 'eventsource';
import { b64, spec, startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import { assertExactlyHistory, etcdHistory, waitFor, waitForAsync } from '../support/watch-history';
import { assertV1Message, eventIds, V1Watch, type V1Message } from '../support/v1-watch';
import { PYTHON, runProcess } from '../support/python';
import { AccessPolicy } from '../../src/core/security/access';

async function put(gw: GatewayFixture, key: string, value: string): Promise<number> {
  const answer = await gw.post('/v3/kv/put', { key: b64(key), value: b64(value) });
  assert.equal(answer.status, 200, answer.text);
  return Number(answer.body.header.revision);
}

/** One txn writing every key (one revision, many events); returns the revision. */
async function txn(gw: GatewayFixture, keys: string[], value: string): Promise<number> {
  const answer = await gw.post('/v3/kv/txn', { success: keys.map((k) => ({ request_put: { key: b64(k), value: b64(value) } })) });
  assert.equal(answer.status, 200, answer.text);
  return Number(answer.body.header.revision);
}

async function compact(gw: GatewayFixture, revision: number): Promise<void> {
  const answer = await gw.etcdPost('/v3/kv/compaction', { revision: String(revision), physical: true });
  assert.equal(answer.status, 200, answer.text);
}

function assertProblem(answer: { status?: number; contentType?: string; body: string }, status: number, detail: RegExp): void {
  assert.equal(answer.status, status, answer.body);
  assert.equal(answer.contentType, 'application/problem+json');
  const p = JSON.parse(answer.body) as { detail: string; status: number };
  const validate = spec().validator('Problem');
  assert.ok(validate(p), `${answer.body} does not match Problem: ${JSON.stringify(validate.errors)}`);
  assert.equal(p.status, status);
  assert.match(p.detail, detail);
}

async function refused(gw: GatewayFixture, pathAndQuery: string, status: number, detail: RegExp, headers?: Record<string, string>): Promise<void> {
  const w = new V1Watch(`refused ${pathAndQuery}`, gw.url, pathAndQuery, { headers });
  await w.waitForStatus();
  await waitFor(() => w.ended, 5_000, () => `${pathAndQuery}: the refusal's end`);
  assertProblem(w, status, detail);
}

describe('GET /v1/watch/{key}', { timeout: 180_000 }, () => {
  let gw: GatewayFixture;

  before(async () => {
    gw = await startGateway({ streams: { watchHeartbeatMs: 200 } });
  });
  after(() => gw.close());

  it('NDJSON (no Accept): a progress at the creation revision, then puts and deletes in /v1/ form with ids', async () => {
    await put(gw, 'nd/a', 'before');
    const w = new V1Watch('ndjson', gw.url, 'nd/?prefix&prev_kv');
    const first = await w.waitForMessage((m) => m.type === 'progress', 10_000, 'the first progress');
    assert.equal(w.contentType, 'application/x-ndjson');
    const r1 = await put(gw, 'nd/a', 'one');
    const r2 = await txn(gw, ['nd/b', 'nd/c'], 'two');
    const del = await gw.post('/v3/kv/deleterange', { key: b64('nd/a') });
    const r3 = Number(del.body.header.revision);
    await put(gw, 'other', 'not watched');
    await w.waitForEvents(4);
    w.close();
    assert.equal(first.id, String(r1 - 1), 'the progress names the revision the watch was created at');
    assert.equal(w.messages[0], first, 'the progress comes first');
    assert.deepEqual(eventIds(w), [`${r1}.0`, `${r2}.0`, `${r2}.1`, `${r3}.0`]);
    const [p, b, c, d] = w.messages.slice(1);
    assert.deepEqual(p, {
      type: 'put', id: `${r1}.0`, key: 'nd/a', value: 'one', create_revision: r1 - 1, mod_revision: r1, version: 2,
      prev: { key: 'nd/a', value: 'before', create_revision: r1 - 1, mod_revision: r1 - 1, version: 1 },
    });
    assert.equal(b.key, 'nd/b');
    assert.equal(c.key, 'nd/c');
    assert.equal(d.type, 'delete');
    assert.equal(d.key, 'nd/a');
    assert.equal(d.mod_revision, r3);
    assert.equal(d.prev?.value, 'one');
  });

  it('SSE: event names, ids, retry and heartbeat comments; keys that are not UTF-8 as key_base64', async () => {
    const w = new V1Watch('sse', gw.url, 'bin%00%ff?prefix', { sse: true });
    await w.waitForMessage((m) => m.type === 'progress');
    assert.match(w.contentType ?? '', /^text\/event-stream/);
    const key = Buffer.from([0x62, 0x69, 0x6e, 0x00, 0xff, 0x01]);
    const answer = await gw.post('/v3/kv/put', { key: key.toString('base64'), value: b64('v') });
    await w.waitForEvents(1);
    await waitFor(() => (w.sse?.comments ?? 0) >= 1, 10_000, () => 'a heartbeat comment');
    w.close();
    assert.equal(w.sse?.retry, 1000);
    assert.ok(w.body.startsWith('retry: 1000\n\n'), w.body.slice(0, 100));
    assert.match(w.body, /\n: heartbeat\n\n/);
    const event = w.messages[1];
    assert.equal(event.key_base64, key.toString('base64'));
    assert.equal(event.key, undefined);
    assert.equal(event.id, `${answer.body.header.revision}.0`);
  });

  it('filters=noput and start_revision replay the history', async () => {
    const r1 = await put(gw, 'f/a', '1');
    await put(gw, 'f/b', '2');
    const rDel = Number((await gw.post('/v3/kv/deleterange', { key: b64('f/a') })).body.header.revision);
    const w = new V1Watch('filters', gw.url, `f/?prefix&filters=noput&start_revision=${r1}`);
    await w.waitForEvents(1);
    await put(gw, 'f/c', '3');
    const rDel2 = Number((await gw.post('/v3/kv/deleterange', { key: b64('f/b') })).body.header.revision);
    await w.waitForEvents(2);
    w.close();
    assert.deepEqual(eventIds(w), [`${rDel}.0`, `${rDel2}.0`]);
    assert.ok(!w.messages.some((m) => m.type === 'progress'), 'a watch with a start revision does not open with a progress');
  });

  it("resumes exactly inside a txn's events: Last-Event-ID, ?last_event_id, and the header over the query", async () => {
    const keys = ['t/1', 't/2', 't/3', 't/4'];
    const rev = await txn(gw, keys, 'x');
    const after = await put(gw, 't/5', 'y');
    const cases: Array<{ headers?: Record<string, string>; query: string; expected: string[] }> = [
      { headers: { 'Last-Event-ID': `${rev}.0` }, query: '', expected: [`${rev}.1`, `${rev}.2`, `${rev}.3`, `${after}.0`] },
      { query: `&last_event_id=${rev}.2`, expected: [`${rev}.3`, `${after}.0`] },
      { headers: { 'Last-Event-ID': `${rev}.3` }, query: `&last_event_id=${rev}.0&start_revision=1`, expected: [`${after}.0`] },
      { query: `&last_event_id=${rev}`, expected: [`${after}.0`] },
    ];
    for (const c of cases) {
      for (const sse of [false, true]) {
        const w = new V1Watch(`resume ${c.query} ${JSON.stringify(c.headers)}`, gw.url, `t/?prefix${c.query}`, { sse, headers: c.headers });
        await w.waitForEvents(c.expected.length);
        w.close();
        assert.deepEqual(eventIds(w), c.expected, w.name);
        assert.equal(w.messages[0].type, 'put', 'a resumed stream begins with what comes after the id');
      }
    }
  });

  it('a connection dropped in the middle of a txn resumes with the rest of that txn, nothing twice', async () => {
    const first = new V1Watch('before the drop', gw.url, 'mid/?prefix', { sse: true });
    await first.waitForMessage((m) => m.type === 'progress');
    const rev = await txn(gw, ['mid/a', 'mid/b', 'mid/c'], '1');
    await first.waitForEvents(1);
    // The client has the txn's first event only: as if the connection broke right after it.
    first.close();
    const seen = first.messages.filter((m) => m.type === 'put').slice(0, 1);
    assert.equal(seen[0].id, `${rev}.0`);
    const more = await put(gw, 'mid/d', '2');
    const second = new V1Watch('after the drop', gw.url, 'mid/?prefix', { sse: true, headers: { 'Last-Event-ID': seen[0].id ?? '' } });
    await second.waitForEvents(3);
    second.close();
    assert.deepEqual([...seen.map((m) => m.key), ...second.messages.map((m) => m.key)], ['mid/a', 'mid/b', 'mid/c', 'mid/d']);
    assert.deepEqual(eventIds(second), [`${rev}.1`, `${rev}.2`, `${more}.0`]);
  });

  it('watchers of one prefix share one etcd watch and its framing; each, resumed ones too, gets exact ids', async () => {
    const from = (n: number, sse: boolean): V1Watch => new V1Watch(`shared ${n} ${sse ? 'SSE' : 'NDJSON'}`, gw.url, 'shr/?prefix', { sse });
    const fromNow = [from(0, false), from(1, false), from(2, true), from(3, true)];
    for (const w of fromNow) await w.waitForMessage((m) => m.type === 'progress');
    assert.equal(gw.gateway.hub.stats().etcdWatches, 1, 'four watches of one prefix are one etcd watch');
    const t1 = await txn(gw, ['shr/a', 'shr/b', 'shr/c'], '1');
    const p1 = await put(gw, 'shr/d', '2');
    // One resumes inside the txn: it catches up on its own etcd watch, then joins the shared one.
    const resumed = new V1Watch('shared, resumed at .0', gw.url, 'shr/?prefix', { sse: true, headers: { 'Last-Event-ID': `${t1}.0` } });
    await resumed.waitForEvents(3);
    const t2 = await txn(gw, ['shr/a', 'shr/e'], '3');
    const p2 = await put(gw, 'shr/f', '4');
    const expected = [`${t1}.0`, `${t1}.1`, `${t1}.2`, `${p1}.0`, `${t2}.0`, `${t2}.1`, `${p2}.0`];
    for (const w of fromNow) await w.waitForEvents(expected.length);
    await resumed.waitForEvents(expected.length - 1);
    await waitFor(() => gw.gateway.hub.stats().etcdWatches === 1, 5_000, () => 'the catch-up watch ends once the resumed client is on the shared one');
    for (const w of [...fromNow, resumed]) w.close();
    for (const w of fromNow) assert.deepEqual(eventIds(w), expected, w.name);
    assert.deepEqual(eventIds(resumed), expected.slice(1), resumed.name);
    const events = (w: V1Watch): V1Message[] => w.messages.filter((m) => m.type !== 'progress');
    for (const w of [...fromNow.slice(1), resumed]) assert.deepEqual(events(w).slice(-6), events(fromNow[0]).slice(-6), `${w.name}: the same messages`);
    for (const m of events(fromNow[0])) assertV1Message(m);
  });

  it('the eventsource package reconnects by itself after a cut and gets exactly the missed events, once', async () => {
    const proxy: TcpProxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(gw.url).port) });
    const got: Array<{ type: string; id: string; data: V1Message }> = [];
    const es = new EventSource(`${proxy.url}/v1/watch/es/?prefix`);
    const listen = (type: string): void =>
      es.addEventListener(type, (e) => {
        const data = JSON.parse(e.data) as V1Message;
        assertV1Message(data);
        got.push({ type, id: e.lastEventId, data });
      });
    ['put', 'delete', 'progress'].forEach(listen);
    let opens = 0;
    es.addEventListener('open', () => opens++);
    try {
      await waitFor(() => got.length >= 1, 10_000, () => 'the first progress');
      const r1 = await put(gw, 'es/a', '1');
      await waitFor(() => got.length >= 2, 10_000, () => 'the first put');
      // Cut, and keep the client out while three changes (one a txn) happen.
      proxy.pause();
      proxy.cutAll();
      const r2 = await put(gw, 'es/b', '2');
      const r3 = await txn(gw, ['es/c', 'es/d'], '3');
      proxy.resume();
      const r4 = await put(gw, 'es/e', '4');
      await waitFor(() => got.filter((g) => g.type === 'put').length >= 5, 20_000, () => `the missed events (got ${JSON.stringify(got.map((g) => g.id))})`);
      assert.ok(opens >= 2, 'it reconnected');
      assert.deepEqual(
        got.filter((g) => g.type === 'put').map((g) => g.id),
        [`${r1}.0`, `${r2}.0`, `${r3}.0`, `${r3}.1`, `${r4}.0`],
      );
    } finally {
      es.close();
      await proxy.close();
    }
  });

  it('refuses bad requests with a problem naming the parameter or header', async () => {
    await refused(gw, 'k?bogus=1', 400, /query parameter "bogus": unknown for V1_Watch/);
    await refused(gw, 'k?prefix=yes', 400, /query parameter prefix: must be true, false or empty/);
    await refused(gw, 'k?start_revision=0', 400, /query parameter start_revision: must be between 1/);
    await refused(gw, 'k?start_revision=abc', 400, /query parameter start_revision: must be a revision/);
    await refused(gw, 'k?last_event_id=1.x', 400, /query parameter last_event_id: must be an event id/);
    await refused(gw, 'k', 400, /header Last-Event-ID: must be an event id/, { 'Last-Event-ID': 'abc' });
    await refused(gw, 'k?filters=noput,nope', 400, /query parameter filters: "nope" is not a filter/);
    await refused(gw, 'k?progress=0', 400, /query parameter progress: must be a whole number of seconds/);
    await refused(gw, 'k?prefix&prefix', 400, /query parameter prefix: given more than once/);
    await refused(gw, '', 400, /key: the path names no key/);
    await refused(gw, 'a%zz', 400, /path parameter key: "%" must be followed by two hex digits/);
    const post = await fetch(`${gw.url}/v1/watch/k`, { method: 'POST' });
    assertProblem({ status: post.status, contentType: post.headers.get('content-type') ?? '', body: await post.text() }, 405, /use GET/);
    assert.equal(post.headers.get('allow'), 'GET');
  });

  it('a compacted start or resume revision is a 410 naming the compact revision, before any stream', async () => {
    const r1 = await put(gw, 'cmp/a', '1');
    const r2 = await put(gw, 'cmp/a', '2');
    await compact(gw, r2);
    await refused(gw, `cmp/?prefix&start_revision=${r1}`, 410, new RegExp(`revision ${r1} has been compacted`));
    const w = new V1Watch('410 body', gw.url, `cmp/?prefix`, { headers: { 'Last-Event-ID': `${r1}.0` } });
    await waitFor(() => w.ended, 10_000, () => 'the 410');
    assert.equal(JSON.parse(w.body).compact_revision, r2);
    // The compact revision itself is still there.
    const ok = new V1Watch('at the compact revision', gw.url, `cmp/?prefix&start_revision=${r2}`);
    await ok.waitForEvents(1);
    ok.close();
    assert.deepEqual(eventIds(ok), [`${r2}.0`]);
  });

  it('compaction while an EventSource is disconnected: its reconnect gets a 410 and it stops', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(gw.url).port) });
    const es = new EventSource(`${proxy.url}/v1/watch/gone/?prefix`);
    const ids: string[] = [];
    const errors: Array<{ code?: number }> = [];
    let started = false;
    es.addEventListener('progress', () => (started = true));
    es.addEventListener('put', (e) => ids.push(e.lastEventId));
    es.addEventListener('error', (e) => errors.push(e as unknown as { code?: number }));
    try {
      await waitFor(() => started, 10_000, () => 'the watch to start');
      await put(gw, 'gone/a', '1');
      await waitFor(() => ids.length >= 1, 10_000, () => 'the first event');
      proxy.pause();
      proxy.cutAll();
      await put(gw, 'gone/a', '2');
      const head = await put(gw, 'gone/a', '3');
      await compact(gw, head);
      proxy.resume();
      await waitFor(() => es.readyState === EventSource.CLOSED, 20_000, () => `the EventSource to give up (errors ${JSON.stringify(errors)})`);
      assert.ok(errors.some((e) => e.code === 410), JSON.stringify(errors));
      assert.equal(ids.length, 1, 'nothing after the compaction point was delivered');
    } finally {
      es.close();
      await proxy.close();
    }
  });

  it('?progress: while nothing changes, a progress event carries the current revision', async () => {
    const rev = await put(gw, 'prog/a', '1');
    const w = new V1Watch('progress', gw.url, `prog/?prefix&progress=1&start_revision=${rev}`, { sse: true });
    await w.waitForEvents(1);
    const head = await put(gw, 'elsewhere/x', 'moves the revision');
    const p = await w.waitForMessage((m) => m.type === 'progress' && (m.revision ?? 0) >= head, 20_000, `a progress at ${head} or later`);
    w.close();
    assert.equal(p.id, String(p.revision));
    // Resuming from a progress id starts after it: nothing is replayed.
    const resumed = new V1Watch('from the progress id', gw.url, `prog/?prefix&last_event_id=${p.id}`);
    const next = await put(gw, 'prog/a', '2');
    await resumed.waitForEvents(1);
    resumed.close();
    assert.deepEqual(eventIds(resumed), [`${next}.0`]);
  });
});

describe('GET /v1/watch/{key}: access control and limits', { timeout: 120_000 }, () => {
  let gw: GatewayFixture;
  let dir: string;
  let policy: AccessPolicy;
  const sha = (token: string): string => crypto.createHash('sha256').update(token).digest('hex');

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-v1-watch-'));
    const file = path.join(dir, 'access.yaml');
    fs.writeFileSync(
      file,
      ['clients:', '  - name: app', `    token_sha256: ${sha('app-token')}`, '    grants:', '      - { prefix: "app/", rights: [watch] }', ''].join('\n'),
    );
    policy = new AccessPolicy(file, { info: () => undefined, error: () => undefined });
    gw = await startGateway({ access: policy, streams: { sendBufferBytes: 1024 } });
  });
  after(async () => {
    // The policy watches its file for changes: left open, it keeps the test process alive.
    policy.close();
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('needs the watch right on the whole prefix: 401 without a token, 403 outside the grant', async () => {
    await refused(gw, 'app/?prefix', 401, /gateway token/);
    await refused(gw, '?prefix', 403, /may not watch/, { Authorization: 'Bearer app-token' });
    await refused(gw, 'app?prefix', 403, /may not watch/, { Authorization: 'Bearer app-token' });
    const ok = new V1Watch('granted', gw.url, 'app/x?prefix', { headers: { Authorization: 'Bearer app-token' } });
    await ok.waitForMessage((m) => m.type === 'progress');
    ok.close();
  });

  it('cuts off a consumer that does not read, with an error message last', async () => {
    const w = new V1Watch('slow', gw.url, 'app/slow/?prefix', { headers: { Authorization: 'Bearer app-token' } });
    await w.waitForMessage((m) => m.type === 'progress');
    // The client stops reading. On loopback the kernel takes a few MB from a peer that does not read
    // before anything stays in the gateway's own buffer (1 KiB here): ~10 MB of events go past both.
    const socket = (w as unknown as { req: { socket: { pause(): void; resume(): void } } }).req.socket;
    socket.pause();
    const big = 'x'.repeat(32 * 1024);
    let cut = false;
    for (let i = 0; i < 300 && !cut; i++) {
      const answer = await gw.etcdPost('/v3/kv/put', { key: b64('app/slow/a'), value: b64(big) });
      assert.equal(answer.status, 200, answer.text);
      if (i % 10 === 9) cut = (await gw.post('/stats', undefined, { method: 'GET' })).body.watch.connections === 0;
    }
    assert.ok(cut, 'the gateway let go of the slow consumer');
    socket.resume();
    await waitFor(() => w.ended, 20_000, () => 'the end of the stream');
    const last = w.messages[w.messages.length - 1];
    assert.equal(last.type, 'error');
    assert.match(String(last.detail), /watch consumer too slow/);
    assert.ok(w.events.length < 300, 'it did not get everything');
  });
});

describe('GET /v1/watch/{key}: compacted while the gateway was cut off from etcd', { timeout: 120_000 }, () => {
  let etcd: TestEtcd;
  let proxy: TcpProxy;
  let gw: GatewayFixture;

  before(async () => {
    etcd = await startTestEtcd();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
    gw = await startGateway({ etcd, endpoints: [proxy.url] });
  });
  after(async () => {
    await gw.close();
    await proxy.close();
    await etcd.cleanup();
  });

  it('a running stream gets a compacted event naming the compact revision, then ends; an EventSource then stops at the 410', async () => {
    const raw = new V1Watch('raw', gw.url, 'lost/?prefix', { sse: true });
    const es = new EventSource(`${gw.url}/v1/watch/lost/?prefix`);
    const esEvents: string[] = [];
    let esError: { code?: number } | undefined;
    es.addEventListener('put', (e) => esEvents.push(e.lastEventId));
    es.addEventListener('compacted', (e) => esEvents.push(`compacted ${JSON.parse(e.data).compact_revision}`));
    es.addEventListener('error', (e) => (esError = e as unknown as { code?: number }));
    let started = false;
    es.addEventListener('progress', () => (started = true));
    try {
      await raw.waitForMessage((m) => m.type === 'progress');
      await waitFor(() => started, 10_000, () => 'the EventSource watch to start');
      const first = Number((await gw.post('/v3/kv/put', { key: b64('lost/a'), value: b64('1') })).body.header.revision);
      await raw.waitForEvents(1);
      await waitFor(() => esEvents.length >= 1, 10_000, () => 'the EventSource to get the first event');
      // The gateway loses etcd; meanwhile the key changes and the history is compacted.
      proxy.pause();
      proxy.cutAll();
      await gw.etcdPost('/v3/kv/put', { key: b64('lost/a'), value: b64('2') });
      const head = Number((await gw.etcdPost('/v3/kv/put', { key: b64('lost/a'), value: b64('3') })).body.header.revision);
      await compact(gw, head);
      proxy.resume();
      const m = await raw.waitForMessage((x) => x.type === 'compacted', 30_000, 'the compacted message');
      await waitFor(() => raw.ended, 10_000, () => 'the end after the compacted message');
      assert.equal(m.compact_revision, head);
      assert.equal(raw.messages[raw.messages.length - 1], m, 'nothing after the compacted message');
      assert.deepEqual(eventIds(raw), [`${first}.0`]);
      await waitFor(() => es.readyState === EventSource.CLOSED, 20_000, () => `the EventSource to stop (${JSON.stringify(esEvents)})`);
      assert.deepEqual(esEvents, [`${first}.0`, `compacted ${head}`]);
      assert.equal(esError?.code, 410, 'its reconnect was refused with 410');
    } finally {
      raw.close();
      es.close();
    }
  });
});

describe('GET /v1/watch/{key}: etcd killed and restarted under a writer', { timeout: 180_000 }, () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;

  before(async () => {
    etcd = await startTestEtcd();
    gw = await startGateway({ etcd });
  });
  after(async () => {
    await gw.close();
    await etcd.cleanup();
  });

  it('SSE and NDJSON watchers get etcd history exactly once, in order', async () => {
    const sse = new V1Watch('sse', gw.url, 'kill/?prefix', { sse: true });
    const nd = new V1Watch('ndjson', gw.url, 'kill/?prefix');
    await sse.waitForMessage((m) => m.type === 'progress');
    const created = Number((await nd.waitForMessage((m) => m.type === 'progress')).revision);
    let writes = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        const keys = i % 10 === 0 ? [`kill/${i}a`, `kill/${i}b`] : [`kill/${i}`];
        const answer = await gw.post('/v3/kv/txn', { success: keys.map((k) => ({ request_put: { key: b64(k), value: b64(String(i)) } })) }).catch(() => undefined);
        if (answer?.status === 200) writes++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitFor(() => writes >= 20, 20_000, () => 'writes before the kill');
    etcd.kill('SIGKILL');
    await etcd.waitExit();
    await etcd.restart();
    await waitForAsync(async () => writes >= 60, 30_000, () => `writes after the restart (${writes})`);
    stop = true;
    await writer;
    const head = Number((await gw.post('/v3/kv/range', { key: b64('kill/') })).body.header.revision);
    const truth = await etcdHistory(etcd, 'kill/', created + 1, head);
    await waitFor(() => sse.lastRev() >= truth[truth.length - 1].rev && nd.lastRev() >= truth[truth.length - 1].rev, 30_000, () => 'both watchers at the head');
    sse.close();
    nd.close();
    assertExactlyHistory(sse, truth, head);
    assertExactlyHistory(nd, truth, head);
    assert.ok(truth.length >= 60);
  });
});

describe('GET /v1/watch/{key}: Python requests, stream=True and iter_lines()', { timeout: 60_000 }, () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('reads the NDJSON events line by line', async () => {
    const first = await put(gw, 'py/a', 'one');
    const rev = await txn(gw, ['py/b', 'py/c'], 'two');
    const script = [
      'import json, sys, requests',
      'url = sys.argv[1]',
      'with requests.get(url, params={"prefix": "", "start_revision": sys.argv[2]}, stream=True, timeout=30) as answer:',
      '    answer.raise_for_status()',
      '    print(answer.headers["Content-Type"])',
      '    seen = 0',
      '    for line in answer.iter_lines():',
      '        event = json.loads(line)',
      '        print(event["type"], event["id"], event["key"], event["value"])',
      '        seen += 1',
      '        if seen == 3:',
      '            break',
    ].join('\n');
    const res = await runProcess(PYTHON, ['-c', script, `${gw.url}/v1/watch/py/`, String(first)], 30_000);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.stdout.trim().split('\n'), ['application/x-ndjson', `put ${first}.0 py/a one`, `put ${rev}.0 py/b two`, `put ${rev}.1 py/c two`]);
  });
});

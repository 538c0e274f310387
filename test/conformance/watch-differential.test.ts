// Watch through this gateway and through etcd's own gateway, on two fresh etcds given the same writes:
// the HTTP streams and the WebSocket sessions must carry the same messages, apart from the header's
// cluster and member identity. Plus the framing etcd3gw relies on, and the refusals where this
// gateway is stricter than etcd's.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { assertSameAnswer, b64, send, startDifferentialPair, startGateway, type GatewayFixture } from '../support/gateway';
import { httpWatch, wsWatch } from '../support/watch-clients';
import type { TestEtcd } from '../support/etcd';

type Write = [path: string, body: object];
const put = (key: string, value: string): Write => ['/v3/kv/put', { key: b64(key), value: b64(value) }];
const del = (key: string): Write => ['/v3/kv/deleterange', { key: b64(key) }];
const prefix = (p: string) => ({ key: b64(p), range_end: b64(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1)) });

describe('watch answers are identical to etcd gateway answers', () => {
  let reference: TestEtcd;
  let gw: GatewayFixture;
  let close: () => Promise<void>;
  before(async () => {
    ({ reference, gw, close } = await startDifferentialPair());
  });
  after(() => close?.());

  async function write(writes: Write[]): Promise<void> {
    for (const [path, body] of writes) {
      const [a, b] = await Promise.all([send(reference.clientUrl, path, body), gw.post(path, body)]);
      assert.equal(a.status, b.status, `${path}: ${b.text}`);
    }
  }

  const same = assertSameAnswer;

  /** etcd orders the messages of one watch, not the interleaving of several: compare per watch_id. */
  function samePerWatch(theirs: any[], ours: any[], what: string): void { // eslint-disable-line @typescript-eslint/no-explicit-any
    const byWatch = (list: any[]) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const groups = new Map<string, unknown[]>();
      for (const m of list) {
        const id = String(m.result?.watch_id ?? '0');
        groups.set(id, [...(groups.get(id) ?? []), m]);
      }
      return Object.fromEntries([...groups.entries()].sort(([a], [b]) => a.localeCompare(b)));
    };
    same([byWatch(theirs)], [byWatch(ours)], what);
  }

  /** Both sides watch with `body`; after `initial` messages the writes happen; `total` messages are compared. */
  async function httpScenario(name: string, requests: object[], initial: number, writes: Write[], total: number): Promise<void> {
    const body = requests.map((r) => JSON.stringify(r)).join('\n');
    const [theirs, ours] = await Promise.all([httpWatch(reference.clientUrl, body), httpWatch(gw.url, body)]);
    try {
      assert.equal(ours.status, 200);
      await Promise.all([theirs.take(initial), ours.take(initial)]);
      await write(writes);
      const [t, o] = await Promise.all([theirs.take(total), ours.take(total)]);
      same(t.slice(0, initial), o.slice(0, initial), `${name}: answers to the requests`);
      samePerWatch(t, o, name);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(ours.messages.length, theirs.messages.length, `${name}: no extra messages`);
    } finally {
      theirs.close();
      ours.close();
    }
  }

  it('streams a prefix: created, puts (no type), deletes (key and mod_revision only)', () =>
    httpScenario('prefix', [{ create_request: prefix('w/') }], 1, [put('w/a', '1'), put('w/b', '2'), put('w/a', '3'), del('w/a'), put('x', 'outside')], 5));

  it('sends prev_kv, filters by name and by number', () =>
    httpScenario(
      'prev_kv and filters',
      [
        { create_request: { ...prefix('f/'), prev_kv: true } },
        { create_request: { ...prefix('f/'), filters: ['NOPUT'] } },
        { create_request: { ...prefix('f/'), filters: [1] } },
        { create_request: { ...prefix('f/'), filters: ['NOPUT', 'NODELETE'] } },
      ],
      4,
      [put('f/a', '1'), put('f/a', '2'), del('f/a')],
      4 + 3 + 1 + 2,
    ));

  it('replays history from a past revision in one message, and waits for a future one', async () => {
    await write([put('h/a', '1'), put('h/b', '2'), del('h/a')]);
    const range = await gw.post('/v3/kv/range', { key: b64('h/b') });
    const now = BigInt(range.body.header.revision);
    await httpScenario('history', [{ create_request: { ...prefix('h/'), start_revision: String(now - 2n) } }], 2, [], 2);
    await httpScenario('future', [{ create_request: { ...prefix('h/'), start_revision: String(now + 2n) } }], 1, [put('h/c', '1'), put('h/d', '2'), put('h/e', '3')], 3);
  });

  it('numbers watches 0, 1, ... and answers a progress request with watch_id -1', () =>
    httpScenario('ids and progress', [{ create_request: prefix('p/') }, { createRequest: { key: b64('p/a') } }, { progress_request: {} }], 3, [put('p/a', '1')], 5));

  it('cancels a watch created in the same body, and ignores a cancel of an unknown watch', () =>
    httpScenario('create and cancel', [{ create_request: prefix('c/') }, { cancel_request: { watch_id: 0 } }, { cancel_request: { watch_id: 77 } }, { create_request: prefix('c/') }], 3, [put('c/a', '1')], 4));

  // The second and third creates share the first one's etcd watch in the gateway (one joins it before it
  // exists, one after a cancel); the answers keep etcd's order all the same.
  it('answers identical watches created, canceled and created again in one body in etcd\'s order', () =>
    httpScenario(
      'shared create and cancel',
      [{ create_request: prefix('sc/') }, { create_request: prefix('sc/') }, { cancel_request: { watch_id: 0 } }, { create_request: prefix('sc/') }, { progress_request: {} }],
      5,
      [put('sc/a', '1'), del('sc/a')],
      9,
    ));

  it('takes client-chosen watch IDs and refuses a duplicate as etcd does', () =>
    httpScenario('chosen ids', [{ create_request: { ...prefix('i/'), watch_id: 42 } }, { create_request: { key: b64('i/a'), watch_id: '42' } }, { create_request: { key: b64('i/a') } }], 3, [put('i/a', '1')], 5));

  it('accepts a create without a key', () => httpScenario('no key', [{ create_request: {} }], 1, [], 1));

  it('cancels a watch whose start revision was compacted, with compact_revision', async () => {
    await write([put('k/a', '1'), put('k/a', '2'), put('k/a', '3')]);
    const range = await gw.post('/v3/kv/range', { key: b64('k/a') });
    const now = BigInt(range.body.header.revision);
    await write([['/v3/kv/compaction', { revision: String(now - 1n) }]]);
    await httpScenario('compacted', [{ create_request: { key: b64('k/a'), start_revision: String(now - 2n) } }], 2, [], 2);
  });

  it('carries an interactive WebSocket session the same way', async () => {
    const [theirs, ours] = await Promise.all([wsWatch(reference.clientUrl.replace('http', 'ws')), wsWatch(gw.wsUrl)]);
    const both = (m: object): void => {
      theirs.send(m);
      ours.send(m);
    };
    const expect = async (n: number, what: string): Promise<void> => {
      const [t, o] = await Promise.all([theirs.take(n), ours.take(n)]);
      same(t, o, what);
    };
    try {
      both({ create_request: { key: b64('ws/a') } });
      await expect(1, 'create a');
      await write([put('ws/a', '1')]);
      await expect(2, 'event a');
      both({ create_request: { key: b64('ws/b'), prev_kv: true } });
      await expect(3, 'create b');
      both({ progress_request: {} });
      await expect(4, 'progress');
      both({ cancel_request: { watch_id: 0 } });
      await expect(5, 'cancel a');
      await write([put('ws/a', '2'), put('ws/b', '1'), put('ws/b', '2')]);
      await expect(7, 'events b only');
      both({ create_request: { key: b64('ws/'), range_end: 'AA==', start_revision: 1, watch_id: 9 } });
      await expect(9, 'history from 1 with a chosen id');
    } finally {
      theirs.close();
      ours.close();
    }
  });

  it('answers under /v3beta/ and /v3alpha/ too, over HTTP and WebSocket', async () => {
    for (const p of ['/v3beta/watch', '/v3alpha/watch']) {
      const h = await httpWatch(gw.url, JSON.stringify({ create_request: { key: b64('a') } }), p);
      assert.equal((await h.take(1))[0].result.created, true);
      h.close();
      const w = await wsWatch(gw.wsUrl, p);
      w.send({ create_request: { key: b64('a') } });
      assert.equal((await w.take(1))[0].result.created, true);
      w.close();
    }
  });
});

describe('watch framing and refusals', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('sends every message as its own HTTP chunk, one JSON line each (etcd3gw parses chunk by chunk)', async () => {
    const port = Number(new URL(gw.url).port);
    const socket = net.connect(port, '127.0.0.1');
    const body = JSON.stringify({ create_request: prefix('fr/') });
    socket.write(`POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    let raw = '';
    socket.on('data', (d) => (raw += d.toString('latin1')));
    const waitFor = async (pred: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 30));
    };
    await waitFor(() => raw.includes('"created":true'));
    await gw.post('/v3/kv/put', { key: b64('fr/a'), value: b64('1') });
    await gw.post('/v3/kv/put', { key: b64('fr/b'), value: b64('2') });
    await waitFor(() => (raw.match(/"events"/g) ?? []).length === 2);
    socket.destroy();
    const [head, chunked] = raw.split('\r\n\r\n', 2).length === 2 ? [raw.slice(0, raw.indexOf('\r\n\r\n')), raw.slice(raw.indexOf('\r\n\r\n') + 4)] : ['', ''];
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.match(head, /Transfer-Encoding: chunked/i);
    assert.match(head, /Content-Type: application\/json/i);
    const chunks: string[] = [];
    let rest = chunked;
    while (rest.length) {
      const eol = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, eol), 16);
      chunks.push(rest.slice(eol + 2, eol + 2 + size));
      rest = rest.slice(eol + 2 + size + 2);
    }
    assert.equal(chunks.length, 3, JSON.stringify(chunks));
    for (const c of chunks) {
      assert.ok(c.endsWith('\n') && !c.slice(0, -1).includes('\n'), `one line per chunk: ${JSON.stringify(c)}`);
      assert.ok(JSON.parse(c).result);
    }
  });

  it('refuses a bad HTTP watch body with 400 naming the field, before anything is watched', async () => {
    const cases: [string, string][] = [
      [JSON.stringify({ create_request: { key: 'Zm9' } }), '/create_request/key: illegal base64 data at input byte 0 (bytes are base64 in /v3/: the text "Zm9" is "Wm05"; the /v1/ API takes raw keys and values) (checked as a create)'],
      [`${JSON.stringify({ create_request: { key: 'YQ==' } })}\n{"create_request":{"filters":["NOPE"]}}`, 'request 2: /create_request/filters/0: must be one of NOPUT, NODELETE, 0, 1 (checked as a create)'],
      ['{"create_request":{"key":"YQ=="}} {bad', 'request body is not valid JSON: unexpected character \'b\' at offset 35'],
      [JSON.stringify({ create_request: { key: 'YQ==' }, cancel_request: { watch_id: 1 } }), '(body): must be exactly one of: create; cancel; progress'],
      [JSON.stringify({ create_request: { key: 'YQ==', bogus: 1 } }), '/create_request/bogus: unknown field (checked as a create)'],
    ];
    for (const [body, message] of cases) {
      const answer = await gw.post('/v3/watch', body);
      assert.equal(answer.status, 400, answer.text);
      assert.deepEqual(answer.body, { error: message, message, code: 3 });
    }
    const stats = await gw.post('/stats', undefined, { method: 'GET' });
    assert.equal(stats.body.watch.watches, 0);
  });

  it('answers a bad WebSocket message with an error on the socket and keeps the other watches', async () => {
    const w = await wsWatch(gw.wsUrl);
    try {
      w.send({ create_request: { key: b64('bad/a') } });
      await w.take(1);
      w.send('{not json');
      w.send({ create_request: { key: b64('bad/a'), sort_order: 'DESCEND' } });
      w.send({ cancel_request: { watch_id: 'zero' } });
      const errors = (await w.take(4)).slice(1);
      assert.deepEqual(errors.map((e) => e.error), [
        { grpc_code: 3, http_code: 400, message: "message is not valid JSON: unexpected character 'n' at offset 1", http_status: 'Bad Request' },
        { grpc_code: 3, http_code: 400, message: '/create_request/sort_order: unknown field (checked as a create)', http_status: 'Bad Request' },
        { grpc_code: 3, http_code: 400, message: '/cancel_request/watch_id: must be a decimal integer (checked as a cancel)', http_status: 'Bad Request' },
      ]);
      await gw.post('/v3/kv/put', { key: b64('bad/a'), value: b64('still here') });
      const [event] = (await w.take(5)).slice(4);
      assert.equal(event.result.events[0].kv.value, b64('still here'));
    } finally {
      w.close();
    }
  });

  it('refuses WebSockets on paths other than watch', async () => {
    await assert.rejects(wsWatch(gw.wsUrl, '/v3/kv/range'), /Unexpected server response: 404/);
  });
});

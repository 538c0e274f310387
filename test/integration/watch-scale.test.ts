// Watch at scale, against a real etcd: many WebSocket and HTTP-stream watchers multiplexed onto a few etcd
// streams, no leaked etcd watchers after clients leave, a slow consumer cut off without hurting the
// others, the per-connection and per-gateway limits, and idle peers dropped by ping/pong.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import type { StreamSettings } from '../../src/boot/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

interface WatchEvent {
  type?: string;
  kv: { key: string; mod_revision: string; value?: string };
}
interface WatchResult {
  header?: { revision?: string };
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  events?: WatchEvent[];
}
interface Message {
  result?: WatchResult;
  error?: { grpc_code: number; message: string };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
/** range_end that makes `prefix` a prefix watch (prefix with its last byte incremented). */
function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix);
  buf[buf.length - 1]++;
  return buf.toString('base64');
}
const prefixWatch = (prefix: string): object => ({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix) } });

/** Polls `probe` until `done` holds for its value; bounded in time, fails with the last value seen. */
async function waitFor<T>(what: string, probe: () => T | Promise<T>, done: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (done(last)) return last;
    await sleep(50);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface WatchStats {
  connections: number;
  watches: number;
  etcdWatches: number;
  etcdStreams: number;
  eventsDelivered: number;
  resumes: number;
}
async function stats(gw: GatewayFixture): Promise<WatchStats> {
  const res = await fetch(`${gw.url}/stats`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.status, 200);
  return ((await res.json()) as { watch: WatchStats }).watch;
}

/** The watch gauges etcd itself publishes: gRPC watch streams and watchers. */
async function etcdWatchMetrics(etcd: TestEtcd): Promise<{ streams: number; watchers: number }> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const read = (name: string): number => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    assert.ok(m, `etcd /metrics has no ${name}`);
    return Number(m[1]);
  };
  return { streams: read('etcd_debugging_mvcc_watch_stream_total'), watchers: read('etcd_debugging_mvcc_watcher_total') };
}

async function put(gw: GatewayFixture, key: string, value: string): Promise<string> {
  const res = await gw.post('/v3/kv/put', { key: b64(key), value: b64(value) });
  assert.equal(res.status, 200, res.text);
  return res.body.header.revision as string;
}

/** Every socket a test opened, so a failing test still leaves none behind. */
const openSockets = new Set<{ terminate(): void }>();

/** One WebSocket client of /v3/watch that records every message. */
class WsWatcher {
  readonly messages: Message[] = [];
  closed?: { code: number; reason: string };
  private waiters: Array<() => void> = [];

  private constructor(
    readonly ws: WebSocket,
    keepValues: boolean,
  ) {
    openSockets.add(ws);
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as Message;
      if (!keepValues) for (const e of msg.result?.events ?? []) delete e.kv.value;
      this.messages.push(msg);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      openSockets.delete(ws);
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
  }

  static open(wsUrl: string, opts: { keepValues?: boolean; timeoutMs?: number } = {}): Promise<WsWatcher> {
    const ws = new WebSocket(`${wsUrl}/v3/watch`, { perMessageDeflate: false });
    const watcher = new WsWatcher(ws, opts.keepValues ?? true);
    return withTimeout(
      new Promise<WsWatcher>((resolve, reject) => {
        ws.once('open', () => resolve(watcher));
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      }),
      opts.timeoutMs ?? 10_000,
      'WebSocket open',
    ).catch((err) => {
      ws.terminate();
      throw err;
    });
  }

  /** Opens a socket, sends one create and waits for its `created` answer. */
  static async watch(wsUrl: string, create: object, keepValues = true): Promise<WsWatcher> {
    const w = await WsWatcher.open(wsUrl, { keepValues });
    w.send(create);
    await w.until('created answer', (ms) => ms.some((m) => m.result?.created === true));
    return w;
  }

  send(request: object): void {
    this.ws.send(JSON.stringify(request));
  }

  get events(): WatchEvent[] {
    return this.messages.flatMap((m) => m.result?.events ?? []);
  }

  /** Waits (bounded) until the messages so far satisfy `pred`. */
  until(what: string, pred: (ms: Message[]) => boolean, timeoutMs = 10_000): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        const check = (): boolean => {
          if (pred(this.messages)) resolve();
          else if (this.closed) reject(new Error(`socket closed (${this.closed.code} ${this.closed.reason}) before ${what}`));
          else return false;
          return true;
        };
        if (check()) return;
        const waiter = (): void => {
          if (check()) this.waiters = this.waiters.filter((w) => w !== waiter);
        };
        this.waiters.push(waiter);
      }),
      timeoutMs,
      what,
    );
  }

  closedWith(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return withTimeout(
      new Promise((resolve) => {
        const check = (): void => {
          if (this.closed) resolve(this.closed);
        };
        this.waiters.push(check);
        check();
      }),
      timeoutMs,
      'WebSocket close',
    );
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** A WebSocket client by hand: completes the handshake, then only reads, never answering a ping. */
async function rawWebSocket(httpUrl: string): Promise<{ socket: net.Socket; pings: () => number; closed: Promise<void> }> {
  const { hostname, port } = new URL(httpUrl);
  const socket = net.connect(Number(port), hostname);
  openSockets.add({ terminate: () => socket.destroy() });
  const key = randomBytes(16).toString('base64');
  let buf = Buffer.alloc(0);
  let handshakeDone = false;
  let pings = 0;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const handshake = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!handshakeDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        if (!head.startsWith('HTTP/1.1 101') || !head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
          reject(new Error(`handshake refused: ${head}`));
          return;
        }
        handshakeDone = true;
        resolve();
      }
      // Server frames are unmasked: count pings (opcode 9), skip everything else.
      while (buf.length >= 2) {
        let len = buf[1] & 0x7f;
        let offset = 2;
        if (len === 126) {
          if (buf.length < 4) break;
          len = buf.readUInt16BE(2);
          offset = 4;
        } else if (len === 127) {
          if (buf.length < 10) break;
          len = Number(buf.readBigUInt64BE(2));
          offset = 10;
        }
        if (buf.length < offset + len) break;
        if ((buf[0] & 0x0f) === 0x9) pings++;
        buf = buf.subarray(offset + len);
      }
    });
    socket.write(
      `GET /v3/watch HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  });
  await withTimeout(handshake, 5_000, 'raw WebSocket handshake');
  return { socket, pings: () => pings, closed };
}

/** A client-to-server (masked) text frame. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  assert.ok(payload.length < 65_536);
  const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

/** An HTTP-stream watch (POST /v3/watch) read up to its `created` line; aborting the fetch ends it. */
async function httpWatch(gw: GatewayFixture, create: object): Promise<{ abort(): void; first: Message }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  try {
    const res = await fetch(`${gw.url}/v3/watch`, { method: 'POST', body: JSON.stringify(create), signal: ac.signal });
    assert.equal(res.status, 200);
    assert.ok(res.body);
    const reader = res.body.getReader();
    let text = '';
    for (let reads = 0; !text.includes('\n'); reads++) {
      assert.ok(reads < 100, 'no complete first line');
      const { value, done } = await reader.read();
      assert.ok(!done, 'stream ended before the created line');
      text += Buffer.from(value).toString('utf8');
    }
    const first = JSON.parse(text.slice(0, text.indexOf('\n'))) as Message;
    const abort = (): void => {
      ac.abort();
      reader.cancel().catch(() => undefined);
    };
    openSockets.add({ terminate: abort });
    return { abort, first };
  } finally {
    clearTimeout(timer);
  }
}

describe('watch at scale', { timeout: 85_000 }, () => {
  let etcd: TestEtcd;
  /** etcd's watch gauges before any gateway of this file existed (this etcd serves only this file). */
  let initial: { streams: number; watchers: number };
  const gateways: GatewayFixture[] = [];
  const gateway = async (streams: Partial<StreamSettings> = {}): Promise<GatewayFixture> => {
    const gw = await startGateway({ etcd, streams });
    gateways.push(gw);
    return gw;
  };
  /** Ends every client socket still open and checks that the gateway and etcd forgot them all. */
  const settle = async (gw: GatewayFixture): Promise<void> => {
    for (const s of openSockets) s.terminate();
    openSockets.clear();
    await waitFor('gateway stats back to zero', () => stats(gw), (st) => st.connections === 0 && st.watches === 0, 5_000);
    await waitFor('etcd watchers back to baseline', () => etcdWatchMetrics(etcd), (m) => m.watchers === initial.watchers, 5_000);
  };

  before(async () => {
    etcd = await startTestEtcd();
    initial = await etcdWatchMetrics(etcd);
  });
  after(async () => {
    for (const s of openSockets) s.terminate();
    for (const gw of gateways) await gw.close();
    await etcd?.cleanup();
  });

  describe('1,000 WebSockets on one prefix', () => {
    let gw: GatewayFixture;
    let baseline: { streams: number; watchers: number };
    let watchers: WsWatcher[] = [];
    const N = 1_000;

    before(async () => {
      gw = await gateway();
      baseline = await etcdWatchMetrics(etcd);
    });
    after(() => settle(gw));

    test('every connection gets all 20 events in order, all 1,000 on one shared etcd watch', { timeout: 40_000 }, async () => {
      watchers = await mapLimit(
        Array.from({ length: N }, (_, i) => i),
        100,
        () => WsWatcher.watch(gw.wsUrl, prefixWatch('s/')),
      );
      const s = await stats(gw);
      assert.equal(s.connections, N);
      assert.equal(s.watches, N);
      assert.ok(s.etcdStreams >= 1 && s.etcdStreams <= 4, `etcdStreams ${s.etcdStreams}`);
      assert.equal(s.etcdWatches, 1, 'identical watches share one etcd watch');
      // etcd's own view: a handful of gRPC watch streams, and one watcher for the 1,000 identical watches.
      const m = await etcdWatchMetrics(etcd);
      assert.ok(m.streams - baseline.streams <= 4, `etcd watch streams ${m.streams} (baseline ${baseline.streams})`);
      assert.equal(m.watchers - baseline.watchers, 1, `etcd watchers ${m.watchers} (baseline ${baseline.watchers})`);

      const revisions: string[] = [];
      for (let i = 0; i < 20; i++) revisions.push(await put(gw, `s/${String(i).padStart(2, '0')}`, `v${i}`));
      const expected = revisions.map((rev, i) => ({ key: `s/${String(i).padStart(2, '0')}`, rev }));
      await waitFor(
        'all 1000 connections to receive 20 events',
        () => watchers.filter((w) => w.events.length < 20).length,
        (missing) => missing === 0,
        20_000,
      );
      for (const w of watchers) {
        assert.equal(w.messages.filter((msg) => msg.error).length, 0);
        const got = w.events.map((e) => ({ key: unb64(e.kv.key), rev: e.kv.mod_revision }));
        assert.deepEqual(got, expected);
      }
      assert.equal((await stats(gw)).eventsDelivered - s.eventsDelivered, 20 * N);
    });

    test('closing every socket cancels its etcd watch: no connection, watch or etcd watcher left', { timeout: 30_000 }, async () => {
      assert.equal(watchers.length, N, 'needs the sockets of the previous test');
      for (const w of watchers) w.ws.close();
      await waitFor('gateway stats back to zero', () => stats(gw), (s) => s.connections === 0 && s.watches === 0);
      await waitFor('etcd watchers back to baseline', () => etcdWatchMetrics(etcd), (m) => m.watchers === baseline.watchers);
      await waitFor('etcd watch streams back to baseline', () => etcdWatchMetrics(etcd), (m) => m.streams <= baseline.streams);
      assert.equal((await stats(gw)).etcdStreams, 0);
      assert.ok(watchers.every((w) => w.closed !== undefined));
    });

    test('200 HTTP-stream watches, aborted, leave nothing behind', { timeout: 30_000 }, async () => {
      const H = 200;
      const streams = await mapLimit(
        Array.from({ length: H }, (_, i) => i),
        50,
        () => httpWatch(gw, prefixWatch('h/')),
      );
      for (const st of streams) assert.equal(st.first.result?.created, true);
      const s = await stats(gw);
      assert.equal(s.connections, H);
      assert.equal(s.watches, H);
      assert.ok(s.etcdStreams <= 4);
      const m = await etcdWatchMetrics(etcd);
      assert.ok(m.streams - baseline.streams <= 4);
      assert.equal(m.watchers - baseline.watchers, 1, 'the 200 identical watches share one etcd watcher');
      for (const st of streams) st.abort();
      await waitFor('gateway stats back to zero', () => stats(gw), (st) => st.connections === 0 && st.watches === 0);
      await waitFor('etcd watchers back to baseline', () => etcdWatchMetrics(etcd), (mm) => mm.watchers === baseline.watchers);
      await waitFor('etcd watch streams back to baseline', () => etcdWatchMetrics(etcd), (mm) => mm.streams <= baseline.streams);
    });
  });

  test('a slow consumer is cut off (1008) while 10 others receive everything', { timeout: 40_000 }, async (t) => {
    const gw = await gateway({ sendBufferBytes: 64 * 1024 });
    try {
      const slow = await WsWatcher.watch(gw.wsUrl, prefixWatch('big/'), false);
      const normal = await Promise.all(Array.from({ length: 10 }, () => WsWatcher.watch(gw.wsUrl, prefixWatch('big/'), false)));
      const before = await stats(gw);
      assert.equal(before.connections, 11);
      assert.equal(before.etcdWatches, 1, 'the 11 identical watches share one etcd watch');
      // The slow client stops reading. On loopback the kernel takes ~4 MB from a peer that does not read
      // before anything stays in the gateway's own buffer, so 300 × 16 KiB values (~6.5 MB of JSON per
      // client, ~22 KB per message) are needed to go past the 64 KiB limit.
      const rawSocket = (slow.ws as unknown as { _socket: net.Socket })._socket;
      rawSocket.pause();

      const PUTS = 300;
      const rssBefore = process.memoryUsage().rss;
      let rssMax = rssBefore;
      const sampler = setInterval(() => {
        rssMax = Math.max(rssMax, process.memoryUsage().rss);
      }, 20);
      try {
        const value = 'x'.repeat(16 * 1024);
        const revisions: string[] = [];
        for (let i = 0; i < PUTS; i++) revisions.push(await put(gw, `big/${String(i).padStart(3, '0')}`, `${i}:${value}`));
        await waitFor(`10 normal clients to receive all ${PUTS} events`, () => normal.map((w) => w.events.length), (n) => n.every((x) => x >= PUTS), 20_000);
        for (const w of normal) {
          assert.equal(w.closed, undefined, 'a normal consumer was closed');
          assert.deepEqual(
            w.events.map((e) => e.kv.mod_revision),
            revisions,
          );
        }
        // Server side: the slow one is gone, its watch canceled, while the 10 others stay.
        const s = await waitFor('the slow consumer to be cut off', () => stats(gw), (st) => st.connections === 10, 10_000);
        assert.equal(s.watches, 10);
        await waitFor('etcd watchers: the one the 10 normal ones share', () => etcdWatchMetrics(etcd), (m) => m.watchers === initial.watchers + 1, 5_000);
      } finally {
        clearInterval(sampler);
      }
      const growth = rssMax - rssBefore;
      assert.ok(growth < 100 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);

      // Reading again, it finds a gap-free prefix of the events, then the close frame with the reason.
      rawSocket.resume();
      const closed = await slow.closedWith(8_000);
      assert.equal(closed.code, 1008, `closed with ${closed.code} ${closed.reason}`);
      assert.match(closed.reason, /too slow/);
      const got = slow.events.map((e) => unb64(e.kv.key));
      assert.ok(got.length < PUTS, `the slow consumer got all ${got.length} events`);
      t.diagnostic(`RSS growth ${(growth / 1048576).toFixed(1)} MiB; the slow consumer got ${got.length} of ${PUTS} events before 1008`);
      assert.deepEqual(
        got,
        got.map((_, i) => `big/${String(i).padStart(3, '0')}`),
      );
    } finally {
      await settle(gw);
    }
  });

  test('maxWatchesPerConnection: the 4th create is refused, the other 3 watches go on', { timeout: 20_000 }, async () => {
    const gw = await gateway({ maxWatchesPerConnection: 3 });
    try {
      const w = await WsWatcher.open(gw.wsUrl);
      const keys = ['lim/a', 'lim/b', 'lim/c', 'lim/d'];
      // One create at a time (see the next test for pipelined creates).
      for (const [i, k] of keys.entries()) {
        w.send({ create_request: { key: b64(k) } });
        await w.until(`create answer ${i + 1}`, (ms) => ms.filter((m) => m.result?.created).length === i + 1);
      }
      const creates = w.messages.filter((m) => m.result?.created).map((m) => m.result as WatchResult);
      assert.deepEqual(
        creates.slice(0, 3).map((r) => [r.watch_id, r.canceled]),
        [
          [undefined, undefined],
          ['1', undefined],
          ['2', undefined],
        ],
      );
      const refused = creates[3];
      assert.equal(refused.watch_id, '-1');
      assert.equal(refused.canceled, true);
      assert.match(refused.cancel_reason ?? '', /limit/);
      assert.equal((await stats(gw)).watches, 3);

      for (const k of keys) await put(gw, k, 'v');
      await w.until('events of the 3 watches', (ms) => ms.filter((m) => m.result?.events).length >= 3);
      await sleep(200);
      const events = w.messages.filter((m) => m.result?.events).map((m) => [m.result?.watch_id, unb64(m.result?.events?.[0].kv.key ?? '')]);
      assert.deepEqual(events, [
        [undefined, 'lim/a'],
        ['1', 'lim/b'],
        ['2', 'lim/c'],
      ]);
      assert.equal(w.closed, undefined);
    } finally {
      await settle(gw);
    }
  });

  // A client that lets the server pick watch IDs can only match `created` answers to its creates by
  // order (etcd answers them in order; clientv3 relies on it): the refusal, decided at once, must not
  // overtake the created answers of earlier creates still waiting for etcd.
  test(
    'maxWatchesPerConnection: pipelined creates are answered in request order',
    { timeout: 20_000 },
    async () => {
      const gw = await gateway({ maxWatchesPerConnection: 3 });
      try {
        const w = await WsWatcher.open(gw.wsUrl);
        for (const k of ['o/a', 'o/b', 'o/c', 'o/d']) w.send({ create_request: { key: b64(k) } });
        await w.until('4 create answers', (ms) => ms.filter((m) => m.result?.created).length === 4);
        const ids = w.messages.filter((m) => m.result?.created).map((m) => m.result?.watch_id ?? '0');
        assert.deepEqual(ids, ['0', '1', '2', '-1']);
      } finally {
        await settle(gw);
      }
    },
  );

  test('maxWatchConnections: a 3rd WebSocket gets 503 with a JSON body, a 3rd HTTP watch 429', { timeout: 20_000 }, async () => {
    const gw = await gateway({ maxWatchConnections: 2 });
    try {
      const first = await WsWatcher.watch(gw.wsUrl, prefixWatch('c/'));
      await WsWatcher.watch(gw.wsUrl, prefixWatch('c/'));

      const refused = await withTimeout(
        new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
          const ws = new WebSocket(`${gw.wsUrl}/v3/watch`);
          openSockets.add(ws);
          ws.once('open', () => reject(new Error('3rd WebSocket was accepted')));
          ws.once('error', () => undefined);
          ws.once('unexpected-response', (_req, res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
            res.on('error', reject);
          });
        }),
        5_000,
        '3rd WebSocket upgrade',
      );
      assert.equal(refused.status, 503);
      assert.match(refused.type, /application\/json/);
      const body = JSON.parse(refused.body) as { message: string; code: number };
      assert.equal(body.code, 8);
      assert.match(body.message, /too many watch connections/);

      const http = await fetch(`${gw.url}/v3/watch`, { method: 'POST', body: JSON.stringify(prefixWatch('c/')), signal: AbortSignal.timeout(5_000) });
      assert.equal(http.status, 429);
      assert.match(((await http.json()) as { message: string }).message, /too many watch connections/);
      assert.equal((await stats(gw)).connections, 2);

      // A freed slot is usable again.
      first.ws.close();
      await waitFor('one connection left', () => stats(gw), (s) => s.connections === 1);
      await WsWatcher.watch(gw.wsUrl, prefixWatch('c/'));
    } finally {
      await settle(gw);
    }
  });

  test('pingIntervalMs: a peer that never answers pings is dropped within ~1 s, a live one stays', { timeout: 20_000 }, async () => {
    const gw = await gateway({ pingIntervalMs: 200 });
    try {
      const live = await WsWatcher.watch(gw.wsUrl, prefixWatch('p/'));
      const idle = await rawWebSocket(gw.url);
      // Another prefix than the live one's, so each has an etcd watcher of its own to count.
      idle.socket.write(maskedTextFrame(JSON.stringify(prefixWatch('q/'))));
      await waitFor('2 connections with a watch each', () => stats(gw), (s) => s.connections === 2 && s.watches === 2, 5_000);
      await waitFor('2 etcd watchers', () => etcdWatchMetrics(etcd), (m) => m.watchers === initial.watchers + 2, 5_000);
      const t0 = Date.now();
      await waitFor('the idle peer to be dropped', () => stats(gw), (s) => s.connections === 1 && s.watches === 1, 1_500);
      await withTimeout(idle.closed, 1_000, 'idle socket closed by the gateway');
      assert.ok(Date.now() - t0 < 1_500);
      assert.ok(idle.pings() >= 1, 'the gateway never pinged');
      await waitFor('etcd watchers: only the live one', () => etcdWatchMetrics(etcd), (m) => m.watchers === initial.watchers + 1, 5_000);
      // The live client answers pings (ws does so by itself) and is still served after several intervals.
      await sleep(1_000);
      assert.equal(live.closed, undefined);
      const rev = await put(gw, 'p/x', 'v');
      await live.until('event after the pings', () => live.events.some((e) => e.kv.mod_revision === rev), 5_000);
    } finally {
      await settle(gw);
    }
  });
});

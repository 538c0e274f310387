// A short soak of the HTTP/1 front door (issue 14): hostile clients — half-open senders, backed-up
// pipelines, junk heads, floods after Connection: close, heads too large with a body behind them,
// clients resetting mid-answer — run for HOSTILE_MS beside a normal client, against the gateway as its
// own process, with the fast lane and with HTTP_FAST_LANE=off. The normal client must be served all the
// while (every answer a 200), and afterwards the gateway's open connections
// (gateway_open_connections), its open file descriptors and its memory (RSS and heap after a full GC)
// must come back to where they were before. It is in the test suite, bounded (about 25 s a lane), so
// that a leak on the front door fails `npm test`; `npm run soak` is the long run of normal traffic.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readdir } from 'node:fs/promises';
import { sleep } from '../bench/setup';
import { startTestEtcd, type TestEtcd } from './harness/etcd';
import { startChildGateway, type ChildGateway } from './helpers/child-gateway';
import { post } from './helpers/raw-http';

const HOSTILE_MS = 12_000;
const HOSTILE_WORKERS = 12;
/** Growth allowed after the run: RSS keeps pages the allocator freed, the heap should not. */
const RSS_SLACK = 32 * 1024 * 1024;
const HEAP_SLACK = 8 * 1024 * 1024;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Opens a connection, runs `script` on it, and resolves when the gateway closes it or after `capMs`
 *  (then it is reset): every hostile connection ends, whatever the gateway does. */
function hostile(port: number, capMs: number, script: (socket: net.Socket) => void): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const timer = setTimeout(() => socket.resetAndDestroy(), capMs);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('end', () => socket.destroy());
    socket.once('connect', () => script(socket));
  });
}

const CLIENT_HELLO = Buffer.from('16030100a5010000a10303' + '00'.repeat(32) + '000020c02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035c012000a0100', 'hex');

/** The hostile kinds, each one connection's worth. */
function kinds(port: number, bigKey: string): Array<() => Promise<void>> {
  const range = post('/v3/kv/range', { key: bigKey });
  return [
    // Half-open senders: a partial head, or a head and part of a body, then silence.
    () => hostile(port, 8_000, (s) => s.write('POST /v3/kv/range HTTP/1.1\r\nHost: a\r\n')),
    () => hostile(port, 8_000, (s) => s.write('POST /v3/kv/put HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"key":')),
    // A backed-up pipeline: 40 ranges of a 256 KiB value, read nothing, then more bytes, then a reset.
    () =>
      hostile(port, 8_000, (s) => {
        s.pause();
        s.write(range.repeat(39) + post('/v3/kv/range', { key: bigKey }, ['Connection: close']));
        setTimeout(() => s.write('more'), 500);
        setTimeout(() => s.resetAndDestroy(), 1_500);
      }),
    // The same, read slowly to the end, then closed.
    () =>
      hostile(port, 8_000, (s) => {
        s.pause();
        s.write(range.repeat(9) + post('/v3/kv/range', { key: bigKey }, ['Connection: close']));
        setTimeout(() => {
          s.write('more');
          s.resume();
        }, 700);
      }),
    // Junk heads.
    () => hostile(port, 8_000, (s) => s.write(CLIENT_HELLO)),
    () => hostile(port, 8_000, (s) => s.write('POST /v3/kv/range HTTP/1.1\nHost: a\nContent-Length: 2\n\n{}')),
    () => hostile(port, 8_000, (s) => s.write(Buffer.from([0, 255, 19, 55, 128, 10, 13, 10, 13, 10]))),
    // A flood after Connection: close.
    () =>
      hostile(port, 8_000, (s) => {
        s.write('POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 18\r\n\r\n{"key":"YXBwL3g="}');
        const chunk = Buffer.alloc(64 * 1024, 'x');
        const pump = (): void => {
          while (!s.destroyed && s.write(chunk));
          if (!s.destroyed) s.once('drain', pump);
        };
        pump();
      }),
    // A head too large, with a body behind it.
    () =>
      hostile(port, 8_000, (s) => {
        s.write(`POST /v3/kv/put HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(5000)}\r\nContent-Length: 1048576\r\n\r\n`);
        s.write(Buffer.alloc(1024 * 1024, '{'));
      }),
    // Garbage after a request on Node's path, and a half-close after a request.
    () => hostile(port, 8_000, (s) => s.write('GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n')),
    () => hostile(port, 8_000, (s) => s.end(range)),
  ];
}

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

async function openConnections(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: { connection: 'close' } })).text();
  return Number(/^gateway_open_connections (\d+)/m.exec(text)?.[1] ?? NaN);
}

for (const lane of ['on', 'off'] as const) {
  describe(`hostile clients beside normal traffic, HTTP_FAST_LANE=${lane}`, () => {
    let etcd: TestEtcd;
    let gw: ChildGateway;
    before(async () => {
      etcd = await startTestEtcd();
      gw = await startChildGateway(etcd.clientUrl, {
        HTTP_FAST_LANE: lane,
        HEADERS_TIMEOUT_MS: '1000',
        REQUEST_READ_TIMEOUT_MS: '2000',
        KEEPALIVE_TIMEOUT_MS: '1000',
        MAX_HEADER_BYTES: '4096',
        MAX_CONNECTIONS: '500',
      });
    });
    after(async () => {
      await gw?.stop(15_000);
      await etcd?.cleanup();
    });

    it('serves the normal client throughout, and comes back to its connections, fds and memory', { timeout: 90_000 }, async (t) => {
      const port = Number(new URL(gw.url).port);
      const bigKey = b64('soak/big');
      assert.equal((await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: bigKey, value: Buffer.alloc(256 * 1024, 'v').toString('base64') }) })).status, 200);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 2, timeout: 500 });
      const normal = (path: string, body: object): Promise<number> =>
        new Promise((resolve, reject) => {
          const text = JSON.stringify(body);
          const req = http.request(`${gw.url}${path}`, { method: 'POST', agent, headers: { 'Content-Length': Buffer.byteLength(text) }, timeout: 10_000 }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('timeout', () => req.destroy(new Error(`${path}: no answer within 10 s`)));
          req.on('error', reject);
          req.end(text);
        });
      // Warm-up, so that the baseline holds what normal traffic needs.
      for (let i = 0; i < 50; i++) assert.equal(await normal('/v3/kv/put', { key: b64(`soak/n/${i}`), value: b64('x') }), 200);
      agent.destroy();
      await sleep(1_500);
      const base = { connections: await openConnections(gw.url), fds: await openFds(gw.pid), memory: await gw.heapAfterGc() };

      const until = Date.now() + HOSTILE_MS;
      const statuses = new Map<number, number>();
      let hostileConnections = 0;
      const normalLoop = (async () => {
        for (let i = 0; Date.now() < until; i++) {
          for (const status of [await normal('/v3/kv/put', { key: b64(`soak/n/${i % 50}`), value: b64(String(i)) }), await normal('/v3/kv/range', { key: b64('soak/n/'), range_end: b64('soak/n0'), count_only: true })]) {
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
          await sleep(20);
        }
      })();
      const all = kinds(port, bigKey);
      const workers = Array.from({ length: HOSTILE_WORKERS }, async (_, w) => {
        for (let i = w; Date.now() < until; i++) {
          hostileConnections++;
          await all[i % all.length]();
        }
      });
      await Promise.all([normalLoop, ...workers]);
      agent.destroy();
      assert.deepEqual([...statuses.keys()], [200], `normal client: ${JSON.stringify([...statuses])}`);
      assert.equal(gw.exit(), undefined, 'the gateway exited');

      // Back to the baseline: connections within 10 s, then fds and memory.
      const deadline = Date.now() + 10_000;
      let connections = await openConnections(gw.url);
      while (connections > base.connections && Date.now() < deadline) {
        await sleep(200);
        connections = await openConnections(gw.url);
      }
      const fds = await openFds(gw.pid);
      const memory = await gw.heapAfterGc();
      t.diagnostic(
        `${hostileConnections} hostile connections, ${statuses.get(200)} normal requests; connections ${base.connections} -> ${connections}, fds ${base.fds} -> ${fds}, ` +
          `RSS ${(base.memory.rss / 2 ** 20).toFixed(1)} -> ${(memory.rss / 2 ** 20).toFixed(1)} MiB, heap ${(base.memory.heapUsed / 2 ** 20).toFixed(1)} -> ${(memory.heapUsed / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.equal(connections, base.connections, 'gateway_open_connections back to its baseline');
      assert.ok(fds <= base.fds, `open fds: ${base.fds} before, ${fds} after`);
      assert.ok(memory.heapUsed - base.memory.heapUsed < HEAP_SLACK, `heap after GC: ${base.memory.heapUsed} -> ${memory.heapUsed}`);
      assert.ok(memory.rss - base.memory.rss < RSS_SLACK, `RSS: ${base.memory.rss} -> ${memory.rss}`);
    });
  });
}

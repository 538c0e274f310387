// The HTTP/1 front door against hostile clients (issue 14, items 1–7), on raw sockets with the bytes
// the issue gives, against the gateway as main.ts builds it — once with the fast lane and once with
// HTTP_FAST_LANE=off, so that both paths are held to the same rules:
// - what a client sends after the gateway stopped reading is dropped, and the close that follows
//   lingers for a bounded number of bytes and time (RFC 9112 §9.6);
// - a connection ended while it was paused for backpressure still sees the client's end, so its fd and
//   its MAX_CONNECTIONS slot come back;
// - complete requests waiting behind MAX_PIPELINED answers are not a slow client;
// - Node's 400 for a malformed request waits for the answers owed before it, never lands inside one,
//   and is not sent at all after a request that asked to close;
// - input that can never be a request the lane serves is answered at once, not after a timeout;
// - a 431 reaches a client that is still sending its body;
// - two Host headers are a 400, and a tab after a Content-Length or a Connection option gets the same
//   answer on both paths.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readdir } from 'node:fs/promises';
import { sleep } from '../../bench/setup';
import { LINGER_BYTES } from '../../src/boot/http-server';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { Conn, answersIn, post, rawExchange } from '../support/raw-http';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
/** The request: a range that asks to close the connection. */
const RANGE_CLOSE = 'POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 18\r\n\r\n{"key":"YXBwL3g="}';
const MAX_CONNECTIONS = 20;
/** Long, so that a stop held up by a leaked connection shows. */
const SHUTDOWN_GRACE_MS = 30_000;
const MAX_HEADER_BYTES = 4096;
/** What the kernel's socket buffers may hold besides what a lingering close reads (loopback, both ends). */
const SOCKET_BUFFERS = 16 * 1024 * 1024;

/** Sends `first`, waits for the answer to it when `answered` (else floods at once), then, on a socket
 *  that keeps sending after the server's FIN, writes 64 KiB chunks until the server resets the
 *  connection, `capBytes` are sent or `capMs` pass. Resolves with the bytes the gateway let in after
 *  `first`, whether it cut the connection, and the answer to `first`. */
function flood(port: number, first: string, answered: boolean, capBytes: number, capMs: number): Promise<{ sent: number; cut: boolean; status?: number }> {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const received: Buffer[] = [];
    let sent = 0;
    let over = false;
    let started = false;
    const finish = (cut: boolean): void => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ sent, cut, status: answersIn(Buffer.concat(received))[0]?.status });
    };
    const timer = setTimeout(() => finish(false), capMs);
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    const pump = (): void => {
      while (!over && sent < capBytes) {
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (sent >= capBytes) finish(false);
    };
    const start = (): void => {
      if (started) return;
      started = true;
      pump();
    };
    socket.on('data', (d: Buffer) => {
      received.push(d);
      if (answered && answersIn(Buffer.concat(received)).length > 0) start();
    });
    socket.write(first);
    if (!answered) start();
  });
}

/** Answers counted in gateway_http_requests_total for `route` (any status). */
async function answeredCount(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: { connection: 'close' } })).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^gateway_http_requests_total\\{[^}]*route="${route}"[^}]*\\} (\\d+)`, 'gm'))) n += Number(m[1]);
  return n;
}

/** A lock held with one lease, and a second lease to wait for it with. */
async function heldLock(url: string, label: string): Promise<{ name: string; holder: string; waiter: string }> {
  const name = b64(label);
  const grant = async (): Promise<string> => ((await (await fetch(`${url}/v3/lease/grant`, { method: 'POST', body: '{"TTL":60}' })).json()) as { ID: string }).ID;
  const holder = await grant();
  const waiter = await grant();
  assert.equal((await fetch(`${url}/v3/lock/lock`, { method: 'POST', body: JSON.stringify({ name, lease: holder }) })).status, 200);
  return { name, holder, waiter };
}

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** gateway_open_connections, read on a connection of its own (which it counts). */
async function openConnections(url: string): Promise<number> {
  const out = await rawExchange(Number(new URL(url).port), ['GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'], { timeoutMs: 10_000, untilAnswer: true });
  const m = /^gateway_open_connections (\d+)/m.exec(out.answer?.body.toString() ?? '');
  assert.ok(m, `no gateway_open_connections in ${out.data.toString().slice(0, 300)}`);
  return Number(m[1]);
}

/** Waits (at most `ms`) until the gateway has `n` connections open besides the one asking. */
async function connectionsBackTo(url: string, n: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  let open = await openConnections(url);
  while (open > n + 1 && Date.now() < deadline) {
    await sleep(200);
    open = await openConnections(url);
  }
  return open - 1;
}

for (const lane of ['on', 'off'] as const) {
  describe(`HTTP/1 front door, HTTP_FAST_LANE=${lane}`, () => {
    let etcd: TestEtcd;
    /** No read timeouts: what is answered at once is not answered by a timeout. */
    let gw: ChildGateway;
    /** Short read timeouts, for the 408 and for requests kept waiting. */
    let quick: ChildGateway;
    let port: number;
    const conns: Conn[] = [];
    const connect = async (to = port): Promise<Conn> => {
      const c = new Conn(to);
      conns.push(c);
      await new Promise((r) => c.socket.once('connect', r));
      return c;
    };

    before(async () => {
      etcd = await startTestEtcd();
      [gw, quick] = await Promise.all([
        startChildGateway(etcd.clientUrl, {
          HTTP_FAST_LANE: lane,
          HEADERS_TIMEOUT_MS: '0',
          REQUEST_READ_TIMEOUT_MS: '0',
          MAX_CONNECTIONS: String(MAX_CONNECTIONS),
          MAX_HEADER_BYTES: String(MAX_HEADER_BYTES),
          SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
        }),
        startChildGateway(etcd.clientUrl, { HTTP_FAST_LANE: lane, HEADERS_TIMEOUT_MS: '1000', REQUEST_READ_TIMEOUT_MS: '2000', LOCK_WAIT_MS: '20000' }),
      ]);
      port = Number(new URL(gw.url).port);
      const put = await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64('app/x'), value: b64('1') }) });
      assert.equal(put.status, 200);
    });
    afterEach(() => {
      for (const c of conns.splice(0)) c.close();
    });
    after(async () => {
      await Promise.all([gw?.stop(15_000), quick?.stop(15_000)]);
      await etcd?.cleanup();
    });

    it('1. drops what a client sends after Connection: close, and closes within the lingering bounds', { timeout: 60_000 }, async () => {
      const rssBefore = (await gw.heapAfterGc()).rss;
      const { sent, cut, status } = await flood(port, RANGE_CLOSE, false, 256 * 1024 * 1024, 20_000);
      assert.equal(status, 200);
      assert.equal(cut, true, `the gateway took ${sent} bytes after Connection: close and kept the connection`);
      assert.ok(sent <= LINGER_BYTES + SOCKET_BUFFERS, `the gateway took ${sent} bytes after Connection: close`);
      const rssAfter = (await gw.heapAfterGc()).rss;
      assert.ok(rssAfter - rssBefore < 33 * 1024 * 1024, `RSS ${rssBefore} -> ${rssAfter}`);
    });

    it('1. after a 408, drops what the client still sends and closes', { timeout: 60_000 }, async () => {
      const { sent, cut, status } = await flood(Number(new URL(quick.url).port), 'POST /v3/kv/range HTTP/1.1\r\nHost: a\r\n', true, 256 * 1024 * 1024, 20_000);
      assert.equal(status, 408);
      assert.equal(cut, true, `the gateway took ${sent} bytes after its 408 and kept the connection`);
      assert.ok(sent <= LINGER_BYTES + SOCKET_BUFFERS, `the gateway took ${sent} bytes after its 408`);
    });

    it('2. gives back the connections it ended while they were paused for backpressure', { timeout: 180_000 }, async () => {
      const big = b64('front/big');
      assert.equal((await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: big, value: Buffer.alloc(1024 * 1024, 'v').toString('base64') }) })).status, 200);
      const baseline = await connectionsBackTo(gw.url, 0, 10_000);
      const fdsBefore = await openFds(gw.pid);
      const pipeline = post('/v3/kv/range', { key: big }).repeat(4) + post('/v3/kv/range', { key: big }, ['Connection: close']);
      // One slot is left for the metrics that tell when every answer has been written (and the lane,
      // the client not reading, has paused the connection). Node counts an answer only once the client
      // has taken it: with the lane off this waits its 5 s.
      const clients = MAX_CONNECTIONS - 1;
      const rangesBefore = await answeredCount(gw.url, 'KV_Range');
      let allWritten: Promise<void> | undefined;
      const written = async (): Promise<void> => {
        const deadline = Date.now() + 5_000;
        while ((await answeredCount(gw.url, 'KV_Range')) < rangesBefore + 5 * clients && Date.now() < deadline) await sleep(200);
      };
      const client = async (): Promise<number> => {
        const c = await connect();
        c.socket.pause();
        c.send(pipeline);
        await sleep(500);
        await (allWritten ??= written());
        c.send('abc');
        c.socket.resume();
        await c.until('5 answers or a close', () => c.answers().length === 5 || c.closed, 30_000);
        const n = c.answers().length;
        c.socket.end();
        return n;
      };
      const answered = await Promise.all(Array.from({ length: clients }, client));
      assert.deepEqual(answered, Array<number>(clients).fill(5));
      // Every slot comes back: as many clients as MAX_CONNECTIONS are served, none refused with 503.
      const open = await connectionsBackTo(gw.url, baseline, 10_000);
      assert.equal(open, baseline, `${open - baseline} connections still open in the gateway`);
      const fds = await openFds(gw.pid);
      assert.ok(fds <= fdsBefore, `file descriptors: ${fdsBefore} before, ${fds} after`);
      const next = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => rawExchange(port, [RANGE_CLOSE], { timeoutMs: 10_000, untilAnswer: true })));
      assert.deepEqual(
        next.map((n) => n.answer?.status),
        Array<number>(MAX_CONNECTIONS).fill(200),
      );
    });

    it('3. does not take requests queued behind MAX_PIPELINED answers for a slow client', { timeout: 60_000 }, async () => {
      const { name, holder, waiter } = await heldLock(quick.url, `front-lock-${lane}`);
      const c = await connect(Number(new URL(quick.url).port));
      c.send(post('/v3/lock/lock', { name, lease: waiter }) + post('/v3/kv/range', { key: b64('app/x') }).repeat(32));
      // Held for three times HEADERS_TIMEOUT_MS.
      await sleep(3_000);
      assert.equal(c.closed, false, 'the connection was closed while its requests waited');
      await fetch(`${quick.url}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: holder }) });
      await c.waitAnswers(33, 15_000);
      assert.deepEqual(
        c.answers().map((a) => a.status),
        Array<number>(33).fill(200),
      );
      await fetch(`${quick.url}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: waiter }) });
    });

    it('4. answers what it owes before the 400, and nothing after a request that asked to close', async () => {
      const c = await connect();
      const value = b64(`stored-${lane}`);
      c.send(`GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n${post('/v3/kv/put', { key: b64('front/put'), value }, ['Connection: close'])}x`);
      await c.waitClosed(10_000);
      assert.deepEqual(
        c.answers().map((a) => a.status),
        [200, 200],
        c.received().toString().slice(0, 1000),
      );
      assert.equal(c.answers()[1].headers.connection, 'close');
      assert.equal(answersIn(c.received()).length, 2, 'nothing after the answer to the request that asked to close');
      const stored = (await (await fetch(`${gw.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64('front/put') }) })).json()) as { kvs: Array<{ value: string }> };
      assert.equal(stored.kvs[0].value, value);
    });

    it('4. writes the 400 for garbage after the answer still owed before it', { timeout: 30_000 }, async () => {
      const { name, holder, waiter } = await heldLock(gw.url, `front-lock4-${lane}`);
      const c = await connect();
      // GET first, so that Node reads this connection with the lane on too.
      c.send(`GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n${post('/v3/lock/lock', { name, lease: waiter })}GARBAGE\r\n\r\n`);
      await sleep(500);
      assert.deepEqual(
        c.answers().map((a) => a.status),
        [200],
        'nothing past the healthz before the lock is answered',
      );
      await fetch(`${gw.url}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: holder }) });
      await c.waitClosed(10_000);
      assert.deepEqual(
        c.answers().map((a) => a.status),
        [200, 200, 400],
        c.received().toString().slice(0, 1000),
      );
      await fetch(`${gw.url}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: waiter }) });
    });

    it('4. never writes a status line into a watch stream', { timeout: 30_000 }, async () => {
      const c = await connect();
      const watch = JSON.stringify({ create_request: { key: b64('front/w') } });
      c.send(`POST /v3/watch HTTP/1.1\r\nHost: a\r\nContent-Length: ${watch.length}\r\n\r\n${watch}\x01\x02junk\r\n\r\n`);
      await c.until('the watch to be created', () => c.received().includes('"created":true'), 10_000);
      await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64('front/w'), value: b64('1') }) });
      await c.until('the event', () => c.received().includes('"events"'), 10_000);
      await sleep(300);
      const text = c.received().toString('latin1');
      assert.equal(text.indexOf('HTTP/1.1', 1), -1, `a status line inside the stream: ${text.slice(0, 1000)}`);
    });

    it('5. answers at once what can never be a request the lane serves', { timeout: 60_000 }, async () => {
      const clientHello = Buffer.from('16030100a5010000a10303' + '00'.repeat(32) + '000020c02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035c012000a0100', 'hex');
      const cases: Array<[string, string | Buffer]> = [
        ['bare LF line ends', 'POST /v3/kv/range HTTP/1.1\nHost: a\nContent-Length: 18\n\n{"key":"YXBwL3g="}'],
        ['a TLS ClientHello', clientHello],
        ['binary junk', Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80, 0x0a, 0x0d, 0x0a, 0x0d, 0x0a])],
        ['binary in the request target', Buffer.from('POST /v3/kv/\x00\x01range HTTP/1.1\r\nHost: a\r\n')],
      ];
      for (const [what, bytes] of cases) {
        // With no read timeouts, an answer can only come from the bytes themselves.
        const out = await rawExchange(port, [bytes], { timeoutMs: 10_000, untilAnswer: true });
        assert.equal(out.timedOut, false, `${what}: no answer`);
        assert.equal(out.answer?.status, 400, `${what}: ${out.data.toString('latin1').slice(0, 300)}`);
      }
    });

    it('6. lets a client still sending its body read the 431', { timeout: 180_000 }, async () => {
      // A body larger than MAX_BODY_BYTES, within what a lingering close reads.
      const size = LINGER_BYTES - 1024 * 1024;
      const head = `POST /v3/kv/put HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(MAX_HEADER_BYTES)}\r\nContent-Length: ${size}\r\n\r\n`;
      const body = Buffer.alloc(size, '{');
      const one = (): Promise<number | string> =>
        new Promise((resolve) => {
          const socket = net.connect(port, '127.0.0.1');
          const chunks: Buffer[] = [];
          const done = (v: number | string): void => {
            clearTimeout(timer);
            socket.destroy();
            resolve(v);
          };
          const timer = setTimeout(() => done('no answer'), 20_000);
          socket.on('data', (d: Buffer) => {
            chunks.push(d);
            const a = answersIn(Buffer.concat(chunks))[0];
            if (a) done(a.status);
          });
          socket.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
          socket.on('close', () => done('closed'));
          socket.write(head);
          socket.write(body);
        });
      const outcomes: Array<number | string> = [];
      const baseline = await connectionsBackTo(gw.url, 0, 10_000);
      for (let round = 0; round < 20; round++) {
        outcomes.push(...(await Promise.all(Array.from({ length: 5 }, one))));
        // Within MAX_CONNECTIONS: the closes of a round end before the next.
        await connectionsBackTo(gw.url, baseline, 10_000);
      }
      const lost = outcomes.filter((o) => o !== 431);
      assert.deepEqual(lost, [], `${lost.length} of ${outcomes.length} clients did not read the 431`);
    });

    it('7. refuses two Host headers, and treats a tab after a value alike on both paths', async () => {
      const body = '{"key":"YXBwL3g="}';
      const twoHosts = await rawExchange(port, [`POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 18\r\n\r\n${body}`], { timeoutMs: 10_000, untilAnswer: true });
      assert.equal(twoHosts.answer?.status, 400, twoHosts.data.toString());
      assert.match(JSON.parse(twoHosts.answer!.body.toString()).message, /Host/);
      // Node's parser refuses a Content-Length with a tab after it (llhttp), so the lane does too.
      const lengthTab = await rawExchange(port, [`POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nContent-Length: 18\t\r\n\r\n${body}`], { timeoutMs: 10_000, untilAnswer: true });
      assert.equal(lengthTab.answer?.status, 400, lengthTab.data.toString());
      // `close` with a tab after it is still the close option (RFC 9110 §5.5): answered, then closed.
      const closeTab = await rawExchange(port, [`POST /v3/kv/range HTTP/1.1\r\nHost: a\r\nConnection: close\t\r\nContent-Length: 18\r\n\r\n${body}`], { timeoutMs: 10_000 });
      assert.equal(closeTab.answer?.status, 200, closeTab.data.toString());
      assert.equal(closeTab.answer?.headers.connection, 'close');
      assert.equal(closeTab.closedByServer, true);
    });

    // Last: it stops the gateway.
    it('2. stops at SIGTERM without waiting out the grace period for a connection ended while paused', { timeout: 120_000 }, async () => {
      const big = b64('front/big');
      assert.equal((await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: big, value: Buffer.alloc(1024 * 1024, 'v').toString('base64') }) })).status, 200);
      const before = await answeredCount(gw.url, 'KV_Range');
      const c = await connect();
      c.socket.pause();
      c.send(post('/v3/kv/range', { key: big }).repeat(4) + post('/v3/kv/range', { key: big }, ['Connection: close']));
      const deadline = Date.now() + 5_000;
      while ((await answeredCount(gw.url, 'KV_Range')) < before + 5 && Date.now() < deadline) await sleep(100);
      c.send('abc');
      c.socket.resume();
      await c.until('5 answers or a close', () => c.answers().length === 5 || c.closed, 30_000);
      c.socket.end();
      await sleep(500);
      const started = Date.now();
      await gw.stop(SHUTDOWN_GRACE_MS * 2);
      const ms = Date.now() - started;
      assert.ok(ms < SHUTDOWN_GRACE_MS / 2, `stopped after ${ms} ms (grace period ${SHUTDOWN_GRACE_MS} ms)`);
    });
  });
}

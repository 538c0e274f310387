// Slowloris and idle connections: with short timeouts configured, the gateway (as main.ts builds it, in
// its own process) must close hundreds of idle connections, heads trickled byte by byte, bodies trickled
// slowly and idle keep-alive connections, each within its timeout plus a margin and not before it; a
// normal client must be served all the while; and the long-lived streams — an HTTP watch and a
// WebSocket watch — must not be cut by those timeouts, while events flow or while idle.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { sleep } from '../../bench/setup';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import { parseHttpAnswer, refusalProblem } from '../support/raw-http';

const HEADERS_TIMEOUT_MS = 2_000;
const REQUEST_READ_TIMEOUT_MS = 4_000;
const KEEPALIVE_TIMEOUT_MS = 2_000;
const PING_INTERVAL_MS = 1_000;
/** Closed at most this long after its timeout (two shared cores, other suites running). */
const MARGIN_MS = 8_000;
/** and not before 90 % of it (clocks of two processes, the server accepting a little later). */
const EARLY = 0.9;
const IDLE = 150;
const TRICKLE_HEAD = 150;
const TRICKLE_BODY = 100;
const KEEPALIVE_IDLE = 100;

const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface Closed {
  kind: string;
  /** From the moment the timeout started (connect, or the end of the answer for keep-alive). */
  ms: number;
  data: Buffer;
  closedByServer: boolean;
}

/** A hostile connection: `kind` decides what it sends; it trickles (a byte or a header line every
 *  250 ms) until the server closes it, or until `capMs`. */
function hostile(port: number, kind: 'idle' | 'trickle-head' | 'trickle-body' | 'keepalive-idle', capMs: number): Promise<Closed> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let started = 0;
    let timer: NodeJS.Timeout | undefined;
    let n = 0;
    let answered = false;
    const finish = (closedByServer: boolean): void => {
      clearInterval(timer);
      clearTimeout(cap);
      socket.destroy();
      resolve({ kind, ms: Date.now() - started, data: Buffer.concat(chunks), closedByServer });
    };
    const cap = setTimeout(() => finish(false), capMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // keep-alive: the timeout starts when the answer is complete.
      if (kind === 'keepalive-idle' && !answered && parseHttpAnswer(Buffer.concat(chunks), false)) {
        answered = true;
        started = Date.now();
      }
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      started = Date.now();
      if (kind === 'trickle-head') {
        socket.write('POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n');
        timer = setInterval(() => socket.write(`X-Slow-${n++}: y\r\n`), 250);
      } else if (kind === 'trickle-body') {
        socket.write('POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n{');
        timer = setInterval(() => socket.write(' '), 250);
      } else if (kind === 'keepalive-idle') {
        const body = JSON.stringify({ key: b64('slow/none') });
        socket.write(`POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      }
    });
  });
}

/** Revisions of the events a watch stream delivers (HTTP: lines of {"result": ...}). */
function httpWatch(url: string, prefix: string): { revisions: number[]; closed: () => boolean; close(): void; created: Promise<void> } {
  const revisions: number[] = [];
  let closed = false;
  let onCreated: () => void = () => undefined;
  const created = new Promise<void>((r) => (onCreated = r));
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  const body = JSON.stringify({ create_request: { key: b64(prefix), range_end: end.toString('base64') } });
  const req = http.request(`${url}/v3/watch`, { method: 'POST', agent: false }, (res) => {
    let buf = '';
    res.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const m = JSON.parse(l) as { result?: { created?: boolean; events?: Array<{ kv: { mod_revision: string } }> } };
        if (m.result?.created) onCreated();
        for (const e of m.result?.events ?? []) revisions.push(Number(e.kv.mod_revision));
      }
    });
    res.on('close', () => (closed = true));
  });
  req.on('error', () => (closed = true));
  req.end(body);
  return { revisions, closed: () => closed, close: () => req.destroy(), created };
}

function wsWatch(wsUrl: string, prefix: string): { revisions: number[]; closed: () => boolean; close(): void; created: Promise<void> } {
  const revisions: number[] = [];
  let closed = false;
  let onCreated: () => void = () => undefined;
  const created = new Promise<void>((r) => (onCreated = r));
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  const ws = new WebSocket(`${wsUrl}/v3/watch`);
  ws.on('open', () => ws.send(JSON.stringify({ create_request: { key: b64(prefix), range_end: end.toString('base64') } })));
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { result?: { created?: boolean; events?: Array<{ kv: { mod_revision: string } }> } };
    if (m.result?.created) onCreated();
    for (const e of m.result?.events ?? []) revisions.push(Number(e.kv.mod_revision));
  });
  ws.on('close', () => (closed = true));
  ws.on('error', () => (closed = true));
  return { revisions, closed: () => closed, close: () => ws.close(1000), created };
}

describe('slow and idle clients', () => {
  let etcd: TestEtcd;
  let gw: ChildGateway;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startChildGateway(etcd.clientUrl, {
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      REQUEST_READ_TIMEOUT_MS: String(REQUEST_READ_TIMEOUT_MS),
      KEEPALIVE_TIMEOUT_MS: String(KEEPALIVE_TIMEOUT_MS),
      WS_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      MAX_CONNECTIONS: '5000',
    });
  });
  after(async () => {
    await gw?.stop(15_000);
    await etcd?.cleanup();
  });

  it('closes idle and trickling connections by their timeouts, serves others meanwhile, and never cuts watch streams', { timeout: 120_000 }, async (t) => {
    const port = Number(new URL(gw.url).port);
    const prefix = 'slow/';
    const httpW = httpWatch(gw.url, prefix);
    const wsW = wsWatch(gw.wsUrl, prefix);
    await Promise.all([httpW.created, wsW.created].map((p, i) => Promise.race([p, sleep(15_000).then(() => assert.fail(`watch ${i} not created`))])));
    const streamsOpened = Date.now();

    // A normal client on its own keep-alive connections, every 100 ms a put (seen by the watches) and a
    // range, until the hostile connections are all gone.
    // One socket, dropped when idle for 1 s: before the gateway's keep-alive timeout could race a request.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, timeout: 1_000 });
    const post = (path: string, body: object): Promise<{ status: number; ms: number; json: Record<string, unknown> }> =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const text = JSON.stringify(body);
        const req = http.request(`${gw.url}${path}`, { method: 'POST', agent, headers: { 'Content-Length': Buffer.byteLength(text) }, timeout: 10_000 }, (res) => {
          let out = '';
          res.on('data', (d: Buffer) => (out += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Date.now() - t0, json: JSON.parse(out) as Record<string, unknown> }));
        });
        req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
        req.on('error', reject);
        req.end(text);
      });
    const written: number[] = [];
    const latencies: number[] = [];
    let hostileDone = false;
    let seq = 0;
    const normal = (async () => {
      const deadline = Date.now() + 60_000;
      while (!hostileDone && Date.now() < deadline) {
        const put = await post('/v3/kv/put', { key: b64(`${prefix}${seq++}`), value: b64('x') });
        assert.equal(put.status, 200, JSON.stringify(put.json));
        written.push(Number((put.json.header as { revision: string }).revision));
        const range = await post('/v3/kv/range', { key: b64(prefix), range_end: b64('slow0'), count_only: true });
        assert.equal(range.status, 200, JSON.stringify(range.json));
        latencies.push(put.ms, range.ms);
        await sleep(100);
      }
    })();
    normal.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled

    const cap = REQUEST_READ_TIMEOUT_MS + MARGIN_MS + 5_000;
    const kinds = [
      ...Array<'idle'>(IDLE).fill('idle'),
      ...Array<'trickle-head'>(TRICKLE_HEAD).fill('trickle-head'),
      ...Array<'trickle-body'>(TRICKLE_BODY).fill('trickle-body'),
      ...Array<'keepalive-idle'>(KEEPALIVE_IDLE).fill('keepalive-idle'),
    ];
    const closed = await Promise.all(kinds.map((k) => hostile(port, k, cap)));
    hostileDone = true;
    await normal;

    const timeoutOf: Record<string, number> = {
      idle: HEADERS_TIMEOUT_MS,
      'trickle-head': HEADERS_TIMEOUT_MS,
      'trickle-body': REQUEST_READ_TIMEOUT_MS,
      'keepalive-idle': KEEPALIVE_TIMEOUT_MS,
    };
    const problems: string[] = [];
    const spread: Record<string, { min: number; max: number }> = {};
    for (const c of closed) {
      const limit = timeoutOf[c.kind];
      const s = (spread[c.kind] ??= { min: Infinity, max: 0 });
      s.min = Math.min(s.min, c.ms);
      s.max = Math.max(s.max, c.ms);
      if (!c.closedByServer) problems.push(`${c.kind}: still open after ${c.ms} ms`);
      else if (c.ms > limit + MARGIN_MS) problems.push(`${c.kind}: closed after ${c.ms} ms (timeout ${limit} ms)`);
      else if (c.ms < EARLY * limit) problems.push(`${c.kind}: closed after ${c.ms} ms, before its timeout (${limit} ms)`);
      if (c.kind === 'keepalive-idle') {
        const a = parseHttpAnswer(c.data, true);
        if (a?.status !== 200 || c.data.length !== c.data.indexOf('\r\n\r\n') + 4 + a.body.length) problems.push(`keepalive-idle: got ${JSON.stringify(c.data.toString().slice(0, 200))}`);
      } else if (c.data.length > 0) {
        // What a cut-off request may get: a 408 in JSON.
        const a = parseHttpAnswer(c.data, true);
        const problem = a ? refusalProblem(a.status, a.headers['content-type'], a.body.toString()) : 'an incomplete answer';
        if (problem || a?.status !== 408) problems.push(`${c.kind}: ${problem ?? ''} ${JSON.stringify(c.data.toString().slice(0, 200))}`);
      }
    }
    for (const [kind, s] of Object.entries(spread)) t.diagnostic(`${kind}: closed after ${s.min}–${s.max} ms (timeout ${timeoutOf[kind]} ms)`);
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} connections not closed as they should be; close times: ${JSON.stringify(spread)}`);

    // The normal client was served throughout, with no request near a timeout.
    assert.ok(written.length >= 10, `only ${written.length} puts while the hostile connections were open`);
    assert.ok(Math.max(...latencies) < 5_000, `slowest normal request: ${Math.max(...latencies)} ms`);

    // The streams stay open past every timeout: now idle (no events) for longer than each of them.
    await sleep(Math.max(HEADERS_TIMEOUT_MS, REQUEST_READ_TIMEOUT_MS, KEEPALIVE_TIMEOUT_MS) + 1_000);
    const last = await post('/v3/kv/put', { key: b64(`${prefix}last`), value: b64('x') });
    written.push(Number((last.json.header as { revision: string }).revision));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && (httpW.revisions.length < written.length || wsW.revisions.length < written.length)) await sleep(50);
    const openFor = Date.now() - streamsOpened;
    assert.ok(openFor > REQUEST_READ_TIMEOUT_MS + KEEPALIVE_TIMEOUT_MS, `streams open for only ${openFor} ms`);
    assert.equal(httpW.closed(), false, 'the HTTP watch stream was closed');
    assert.equal(wsW.closed(), false, 'the WebSocket watch was closed');
    assert.deepEqual(httpW.revisions, written, 'HTTP watch: every write, once, in order');
    assert.deepEqual(wsW.revisions, written, 'WebSocket watch: every write, once, in order');
    t.diagnostic(`normal client: ${latencies.length} requests, slowest ${Math.max(...latencies)} ms; watch streams open ${openFor} ms, ${written.length} events each`);
    httpW.close();
    wsW.close();
    agent.destroy();
  });
});

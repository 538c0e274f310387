// Child process of bench/watch.ts, in one of two roles. A client opens its share of WebSocket watchers
// on one prefix and measures, for every event, the time since its put was sent (the value carries
// "<seq> <send time ms>"). The writer sends the puts at a fixed rate, straight to etcd over gRPC, from a
// process of its own so a busy gateway cannot delay the sends and hide its latency. Controlled over
// IPC; the parent's clock is the reference (the offset is measured by the parent). Kept apart from
// the gateway process so the gateway's memory figures hold no client state.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { EtcdClient } from '../src/etcd/client';
import { LatencyHistogram } from './histogram';
import { openSseWatcher, type SseWatcher } from './watch-sse';

export type ClientCommand =
  | { cmd: 'clock'; id: number }
  | { cmd: 'offset'; offsetMs: number }
  | { cmd: 'open'; id: number; url: string; count: number; prefix: string; concurrency: number; timeoutMs: number; keys: Keys; first: number; client: ClientKind }
  | { cmd: 'progress'; id: number }
  | { cmd: 'result'; id: number }
  | { cmd: 'reset'; id: number }
  | { cmd: 'write'; id: number; endpoint: string; prefix: string; rate: number; seconds: number; warmup: number; keys: Keys; watchers: number; from: number }
  | { cmd: 'close' };

/** `shared`: every watcher watches the prefix (one watch to share); `distinct`: watcher i watches the one
 *  key <prefix>m/<i> and put n goes to key n mod watchers (no two watchers alike). */
export type Keys = 'shared' | 'distinct';

/** `ws`: each watcher is a `ws` WebSocket; `lean`: a socket of this file's own (LeanSocket), which reads
 *  the same frames for less CPU, so that on a small machine the clients leave more of it to the server
 *  they measure. */
export type ClientKind = 'ws' | 'lean';

export interface WrittenReply {
  type: 'written';
  id: number;
  /** Measured puts acknowledged (warm-up puts, under <prefix>w/, are not counted; measured ones are under <prefix>m/). */
  ok: number;
  failed: number;
  /** Send times (parent clock, ms) of the first and last measured put. */
  firstSend: number;
  lastSend: number;
  /** How late the most delayed put left compared with its schedule. */
  maxLagMs: number;
}

export interface OpenedReply {
  type: 'opened';
  id: number;
  ok: number;
  failed: number;
  errors: string[];
  ms: number;
}
export interface ProgressReply {
  type: 'progress';
  id: number;
  events: number;
  closed: number;
}
export interface ResultReply {
  type: 'result';
  id: number;
  hist: ReturnType<LatencyHistogram['toJSON']>;
  events: number;
  /** Events of the watcher that received the fewest / the most. */
  minPerWatcher: number;
  maxPerWatcher: number;
  /** Events whose mod_revision was not above the previous one on the same socket. */
  disorder: number;
  /** Receive times (parent clock, ms) of the first and last event. */
  firstRecv: number;
  lastRecv: number;
  /** Sockets closed by the server during the run, by close code. */
  closes: Record<string, number>;
  /** `{"error":...}` or canceled answers received. */
  errors: number;
}

const now = (): number => performance.timeOrigin + performance.now();

interface Watcher {
  close(): void;
  terminate(): void;
  created: boolean;
  events: number;
  lastRevision: number;
}

const VALUE = '"value":"';
const MOD_REVISION = '"mod_revision":"';

let offsetMs = 0;
const watchers: Watcher[] = [];
let hist = new LatencyHistogram();
let totalEvents = 0;
let disorder = 0;
let errors = 0;
let firstRecv = 0;
let lastRecv = 0;
let closing = false;
const closes: Record<string, number> = {};

function reply(msg: OpenedReply | ProgressReply | ResultReply | WrittenReply | { type: 'clock'; id: number; now: number }): void {
  process.send?.(msg);
}

function onMessage(w: Watcher, s: string): void {
  const t = now() - offsetMs;
  if (!w.created) {
    if (s.includes('"created":true') && !s.includes('"canceled":true')) w.created = true;
    else errors++;
    return;
  }
  // A cheap scan instead of JSON.parse: keys and values are base64, so these markers cannot occur inside them.
  let i = s.indexOf(MOD_REVISION);
  if (i < 0) {
    if (s.includes('"error"') || s.includes('"canceled":true')) errors++;
    return;
  }
  for (; i >= 0; i = s.indexOf(MOD_REVISION, i + MOD_REVISION.length)) {
    const start = i + MOD_REVISION.length;
    const rev = Number(s.slice(start, s.indexOf('"', start)));
    if (rev <= w.lastRevision) disorder++;
    w.lastRevision = rev;
  }
  for (let j = s.indexOf(VALUE); j >= 0; j = s.indexOf(VALUE, j + VALUE.length)) {
    const start = j + VALUE.length;
    countEvent(w, Buffer.from(s.slice(start, s.indexOf('"', start)), 'base64').toString('latin1'), t);
  }
}

/** One event's latency from its value ("<seq> <send time>"). */
function countEvent(w: { events: number }, value: string, t: number): void {
  const space = value.indexOf(' ');
  // Warm-up puts (negative sequence numbers) are delivered but not measured.
  if (Number(value.slice(0, space)) < 0) return;
  hist.add(t - Number(value.slice(space + 1)));
  w.events++;
  totalEvents++;
  if (firstRecv === 0) firstRecv = t;
  lastRecv = t;
}

/** SSE watchers (GET /v1/watch/, an http:// URL), counted like the WebSocket ones. */
const sseWatchers: Array<{ watcher: SseWatcher; events: number; lastRevision: number }> = [];

async function openSse(url: string, timeoutMs: number): Promise<string | undefined> {
  const w = { watcher: { close: () => undefined } as SseWatcher, events: 0, lastRevision: 0 };
  const opened = await openSseWatcher(
    url,
    timeoutMs,
    (revision, value) => {
      if (revision <= w.lastRevision) disorder++;
      w.lastRevision = revision;
      countEvent(w, value, now() - offsetMs);
    },
    () => {
      if (!closing) closes.end = (closes.end ?? 0) + 1;
    },
  );
  if (typeof opened === 'string') return opened;
  w.watcher = opened;
  sseWatchers.push(w);
  return undefined;
}

/** The end of a watcher's opening, once: kept when created, cut when it failed or ran out of time. */
function settleOnce(w: Watcher, timeoutMs: number, resolve: (err?: string) => void): (err?: string) => void {
  let settled = false;
  const done = (err?: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (err) w.terminate();
    else watchers.push(w);
    resolve(err);
  };
  const timer = setTimeout(() => done('no created answer in time'), timeoutMs);
  return done;
}

function openOne(url: string, create: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    const w: Watcher = { close: () => ws.close(), terminate: () => ws.terminate(), created: false, events: 0, lastRevision: 0 };
    const done = settleOnce(w, timeoutMs, resolve);
    ws.on('open', () => ws.send(create));
    ws.on('message', (data) => {
      onMessage(w, data.toString());
      if (w.created) done();
    });
    ws.on('unexpected-response', (_req, res) => done(`upgrade refused: HTTP ${res.statusCode}`));
    ws.on('error', (err) => done(err.message));
    ws.on('close', (code) => {
      done(`closed ${code} before created`);
      if (!closing && w.created) closes[code] = (closes[code] ?? 0) + 1;
    });
  });
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A client frame (RFC 6455 §5.2: FIN, masked) with a payload under 64 KiB. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const head = payload.length < 126 ? 2 : 4;
  const frame = Buffer.allocUnsafe(head + 4 + payload.length);
  frame[0] = 0x80 | opcode;
  if (head === 2) frame[1] = 0x80 | payload.length;
  else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(payload.length, 2);
  }
  const mask = randomBytes(4);
  mask.copy(frame, head);
  for (let i = 0; i < payload.length; i++) frame[head + 4 + i] = payload[i] ^ mask[i & 3];
  return frame;
}

/** The least WebSocket client the bench needs: the opening handshake (its Sec-WebSocket-Accept
 *  checked), one text message sent, then the server's frames read straight off the socket's chunks:
 *  text frames to `onText` (as latin1: every byte the bench looks at is ASCII), pings answered, a close
 *  frame or a lost connection to `onClose` (1006 for the latter). A fragmented or oversized frame is
 *  reported as an error, not reassembled: the bench's watches ask for neither. */
class LeanSocket {
  private pending?: Buffer;
  private upgraded = false;
  private closed = false;
  private readonly socket: net.Socket;

  constructor(
    url: URL,
    first: string,
    private readonly onText: (text: string) => void,
    private readonly onClose: (code: number, reason: string) => void,
  ) {
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    this.socket = net.connect(Number(url.port), url.hostname, () => {
      this.socket.setNoDelay(true);
      this.socket.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('data', (chunk: Buffer) => {
      let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
      this.pending = undefined;
      if (!this.upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          this.pending = buf;
          return;
        }
        const head = buf.toString('latin1', 0, end);
        if (!/^HTTP\/1\.1 101 /.test(head) || !head.toLowerCase().includes(`\r\nsec-websocket-accept: ${accept.toLowerCase()}`)) {
          return this.fail(1002, `upgrade refused: ${head.split('\r\n')[0]}`);
        }
        this.upgraded = true;
        this.socket.write(maskedFrame(1, Buffer.from(first)));
        buf = buf.subarray(end + 4);
      }
      this.frames(buf);
    });
    this.socket.on('error', (err) => this.fail(1006, err.message));
    this.socket.on('close', () => this.fail(1006, 'connection lost'));
  }

  private frames(buf: Buffer): void {
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at];
      let len = buf[at + 1] & 0x7f;
      let head = 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        head = 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        const big = buf.readBigUInt64BE(at + 2);
        if (big > 64n * 1024n * 1024n) return this.fail(1009, 'frame over 64 MiB');
        len = Number(big);
        head = 10;
      }
      if (buf.length - at < head + len) break;
      const start = at + head;
      at = start + len;
      const opcode = b0 & 0x0f;
      if ((b0 & 0x80) === 0 || opcode === 0) return this.fail(1003, 'fragmented message');
      if (opcode === 1) this.onText(buf.toString('latin1', start, start + len));
      else if (opcode === 8) return this.fail(len >= 2 ? buf.readUInt16BE(start) : 1005, buf.toString('utf8', start + 2, start + len));
      else if (opcode === 9) this.socket.write(maskedFrame(10, buf.subarray(start, start + len)));
    }
    if (at < buf.length) this.pending = buf.subarray(at);
  }

  private fail(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.onClose(code, reason);
  }

  /** Sends a close frame and ends the connection. */
  close(): void {
    if (this.closed || !this.upgraded) return this.terminate();
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    this.socket.end(maskedFrame(8, code));
  }

  terminate(): void {
    this.socket.destroy();
  }
}

function openLean(url: string, create: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const w: Watcher = { close: () => socket.close(), terminate: () => socket.terminate(), created: false, events: 0, lastRevision: 0 };
    const done = settleOnce(w, timeoutMs, resolve);
    const socket = new LeanSocket(
      new URL(url),
      create,
      (text) => {
        onMessage(w, text);
        if (w.created) done();
      },
      (code, reason) => {
        done(`closed ${code} before created${reason ? `: ${reason}` : ''}`);
        if (!closing && w.created) closes[code] = (closes[code] ?? 0) + 1;
      },
    );
  });
}

async function open(cmd: Extract<ClientCommand, { cmd: 'open' }>): Promise<void> {
  const started = now();
  const deadline = started + cmd.timeoutMs;
  const key = Buffer.from(cmd.prefix);
  const end = Buffer.from(cmd.prefix);
  end[end.length - 1]++;
  const prefixCreate = JSON.stringify({ create_request: { key: key.toString('base64'), range_end: end.toString('base64') } });
  const createOf = (i: number): string =>
    cmd.keys === 'shared' ? prefixCreate : JSON.stringify({ create_request: { key: Buffer.from(`${cmd.prefix}m/${cmd.first + i}`).toString('base64') } });
  let next = 0;
  let ok = 0;
  let failed = 0;
  const errs = new Map<string, number>();
  const worker = async (): Promise<void> => {
    while (next < cmd.count && now() < deadline) {
      const i = next++;
      const timeout = Math.max(1, Math.min(30_000, deadline - now()));
      const err = cmd.url.startsWith('http')
        ? await openSse(cmd.url, timeout)
        : await (cmd.client === 'lean' ? openLean : openOne)(cmd.url, createOf(i), timeout);
      if (err) {
        failed++;
        errs.set(err, (errs.get(err) ?? 0) + 1);
      } else ok++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(cmd.concurrency, cmd.count) }, worker));
  failed += cmd.count - next;
  const errors = [...errs].map(([e, n]) => `${n}× ${e}`).slice(0, 5);
  reply({ type: 'opened', id: cmd.id, ok, failed, errors, ms: now() - started });
}

function result(id: number): ResultReply {
  let min = Infinity;
  let max = 0;
  for (const w of [...watchers, ...sseWatchers]) {
    min = Math.min(min, w.events);
    max = Math.max(max, w.events);
  }
  return {
    type: 'result',
    id,
    hist: hist.toJSON(),
    events: totalEvents,
    minPerWatcher: watchers.length + sseWatchers.length ? min : 0,
    maxPerWatcher: max,
    disorder,
    firstRecv,
    lastRecv,
    closes,
    errors,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Puts at a fixed rate, open loop: a slow put does not hold back the next one. The first `warmup`
 *  puts get negative sequence numbers. */
async function write(cmd: Extract<ClientCommand, { cmd: 'write' }>): Promise<void> {
  const etcd = new EtcdClient({ endpoints: [cmd.endpoint], requestTimeoutMs: 10_000 });
  const total = cmd.warmup + Math.max(1, Math.round(cmd.rate * cmd.seconds));
  const interval = 1000 / cmd.rate;
  const start = now() + 20;
  let ok = 0;
  let failed = 0;
  let firstSend = 0;
  let lastSend = 0;
  let maxLagMs = 0;
  let warmupFailed = 0;
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < total; i++) {
    const wait = start + i * interval - now();
    if (wait > 0) await sleep(wait);
    else maxLagMs = Math.max(maxLagMs, -wait);
    const seq = i - cmd.warmup;
    const sent = now() - offsetMs;
    if (seq === 0) firstSend = sent;
    lastSend = sent;
    // Distinct keys: the warm-up puts go to the watched keys too, so the path they warm is the measured one.
    const key = cmd.keys === 'distinct' ? `${cmd.prefix}m/${i % cmd.watchers}` : seq < 0 ? `${cmd.prefix}w/${i}` : `${cmd.prefix}m/${cmd.from + seq}`;
    const request = { key: Buffer.from(key), value: Buffer.from(`${seq} ${sent.toFixed(3)}`) };
    const p: Promise<void> = etcd
      .unary('KV', 'Put', request, { idempotent: false })
      .then(
        () => void (seq >= 0 && ok++),
        () => void (seq >= 0 ? failed++ : warmupFailed++),
      )
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  // Bounded by the request deadline.
  await Promise.all(inflight);
  etcd.close();
  if (warmupFailed) process.stderr.write(`[bench] ${warmupFailed} warm-up puts failed\n`);
  reply({ type: 'written', id: cmd.id, ok, failed, firstSend, lastSend, maxLagMs });
}

function closeAll(): void {
  closing = true;
  for (const w of watchers) w.close();
  for (const w of sseWatchers) w.watcher.close();
  // Bounded: whatever has not finished its closing handshake by then is cut.
  setTimeout(() => {
    for (const w of watchers) w.terminate();
    setTimeout(() => process.exit(0), 200);
  }, 3_000);
}

process.on('message', (m: ClientCommand) => {
  switch (m.cmd) {
    case 'clock':
      reply({ type: 'clock', id: m.id, now: now() });
      break;
    case 'offset':
      offsetMs = m.offsetMs;
      break;
    case 'open':
      void open(m);
      break;
    case 'progress':
      reply({ type: 'progress', id: m.id, events: totalEvents, closed: Object.values(closes).reduce((a, b) => a + b, 0) });
      break;
    case 'result':
      reply(result(m.id));
      break;
    case 'reset':
      // A new phase (another put rate) on the same watchers: its figures start from zero.
      hist = new LatencyHistogram();
      totalEvents = 0;
      firstRecv = 0;
      lastRecv = 0;
      for (const w of watchers) w.events = 0;
      reply({ type: 'progress', id: m.id, events: 0, closed: Object.values(closes).reduce((x, y) => x + y, 0) });
      break;
    case 'write':
      void write(m);
      break;
    case 'close':
      closeAll();
      break;
  }
});
// The parent is gone: nothing left to report to.
process.on('disconnect', () => process.exit(0));

// Unary gRPC calls to one etcd member over one HTTP/2 connection that this file frames itself (RFC 9113,
// with HPACK from ./hpack). A request is one HEADERS frame and one DATA frame, an answer is read whole
// and decoded with the same proto-loader serializers grpc-js would use, so handlers see identical
// objects. Profiling showed first grpc-js's per-call machinery, then node:http2's per-stream objects
// (a JS stream pair, an nghttp2 stream, an async resource, events) costing more than the rest of the
// gateway together; here a call is one plain object, and every frame written in one turn of the event
// loop leaves in one socket write. Streams (watch, keepalive, snapshot, observe) stay on grpc-js.
//
// What grpc-js did for us that this does itself:
// - deadline: `grpc-timeout` tells etcd, a timer cancels the stream here;
// - flow control: windows of 16 MiB each way we receive, etcd's windows respected when we send;
// - liveness: a member that stops answering (paused, cut off) is found by a PING when a call runs past
//   its deadline, and every 10 s while calls are open; no PONG within 5 s closes the connection, so the
//   calls on it fail as UNAVAILABLE and the client moves to another member;
// - GOAWAY and refused streams: a call etcd provably never saw is sent again (up to 3 times);
// - errors carry a gRPC code, etcd's message, and whether the request provably never reached etcd
//   (no connection, a refused stream, a stream above a GOAWAY's last id), which alone lets a write be
//   sent to another member.

import net from 'node:net';
import tls from 'node:tls';
import { GrpcCode } from '../errors';
import { HpackDecoder, HpackError, encodeHeaders } from './hpack';
import { IdTable } from '../id-table';

export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** What can cancel a call: an AbortSignal, or anything with its `aborted` and 'abort' listeners (the
 *  router's lighter per-request object). */
export interface Cancellation {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** Shaped like grpc-js's ServiceError, which the rest of the gateway reads. */
export interface UnaryError extends Error {
  code: number;
  details: string;
  /** The request never reached etcd: safe to send again elsewhere, even a write. */
  neverSent?: boolean;
}

export function unaryError(code: number, details: string, neverSent = false): UnaryError {
  return Object.assign(new Error(`${code} ${details}`), { code, details, neverSent });
}

const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;
/** etcd's gRPC server refuses PINGs closer together than 5 s (and closes the connection for it). */
const MIN_PING_GAP_MS = 5_000;
/** Client stream ids are odd 31-bit numbers: a connection carries at most ~1.07 billion requests. */
const LAST_STREAM_ID = 2 ** 31 - 1;
const STREAMS_PER_CONNECTION = 1_000_000_000;
/** A call etcd refused unseen (GOAWAY, REFUSED_STREAM) is sent again at most this many times. */
const TRANSPARENT_RETRIES = 3;
/** HTTP/2 flow-control windows we grant: large answers (a 100-key range, a big value) arrive without
 *  waiting; a window is topped up when half of it is used. */
const WINDOW_BYTES = 16 * 1024 * 1024;
const DEFAULT_WINDOW = 65_535;
/** Frames are gathered in slabs of this size and written once per turn of the event loop. */
const SLAB_BYTES = 64 * 1024;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

// Frame types, flags, settings and error codes (RFC 9113 section 6, 7).
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const NO_ERROR = 0x0;
const PROTOCOL_ERROR = 0x1;
const FLOW_CONTROL_ERROR = 0x3;
const FRAME_SIZE_ERROR = 0x6;
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;
const COMPRESSION_ERROR = 0x9;

/** grpc-timeout: at most 8 digits and a unit. */
function grpcTimeout(ms: number): string {
  return ms < 1e8 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

function grpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** HTTP/2 field values may not hold control characters (RFC 9113 8.2.1); etcd would reset the stream. */
const INVALID_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]|^[\t ]|[\t ]$/;

class ConnectionError extends Error {
  constructor(
    readonly h2Code: number,
    message: string,
  ) {
    super(message);
  }
}

/** One call in flight; a plain object, settled once. */
interface Call {
  id: number;
  readonly block: Buffer;
  /** The gRPC-framed request; `sent` bytes of it have gone out in DATA frames. */
  readonly body: Buffer;
  sent: number;
  sendWindow: number;
  /** The connection it was started on (its deadline and a cancel reset the stream there). */
  connection?: Connection;
  /** Times sent again after etcd refused it (GOAWAY, REFUSED_STREAM). */
  retries: number;
  chunks: Buffer[];
  size: number;
  recvUnacked: number;
  headersSeen: boolean;
  httpStatus: number;
  status: number;
  details: string;
  settled: boolean;
  timer?: NodeJS.Timeout;
  signal?: Cancellation;
  onAbort?: () => void;
  resolve: (answer: Buffer) => void;
  reject: (err: UnaryError) => void;
}

export class UnaryChannel {
  private connection?: Connection;
  private readonly host: string;
  private readonly port: number;
  private readonly authority: string;
  private readonly scheme: string;
  /** The constant part of each method's header block, encoded once. */
  private readonly blocks = new Map<string, Buffer>();

  constructor(
    endpoint: string,
    private readonly secure: boolean,
    private readonly tls?: TlsFiles,
  ) {
    const url = new URL(/^[a-z]+:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`);
    this.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = Number(url.port) || (secure ? 443 : 80);
    this.authority = url.host;
    this.scheme = secure ? 'https' : 'http';
  }

  /** Sends one framed request; resolves with the answer's message bytes. */
  call(path: string, message: Buffer, metadata: Record<string, string> | undefined, deadline: number, signal?: Cancellation): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(unaryError(GrpcCode.CANCELLED, 'Cancelled on client'));
        return;
      }
      const timeoutMs = Math.max(1, Math.ceil(deadline - Date.now()));
      let block: Buffer;
      try {
        block = this.headerBlock(path, timeoutMs, metadata);
      } catch (e) {
        reject(e as UnaryError);
        return;
      }
      const body = Buffer.allocUnsafe(5 + message.length);
      body[0] = 0;
      body.writeUInt32BE(message.length, 1);
      message.copy(body, 5);
      const call: Call = {
        id: 0,
        block,
        body,
        sent: 0,
        sendWindow: 0,
        retries: 0,
        chunks: [],
        size: 0,
        recvUnacked: 0,
        headersSeen: false,
        httpStatus: 0,
        status: -1,
        details: '',
        settled: false,
        resolve,
        reject,
      };
      call.timer = setTimeout(() => {
        this.settle(call, unaryError(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'));
        call.connection?.cancel(call);
        // No answer in time: is the member still there at all?
        call.connection?.ping();
      }, timeoutMs);
      if (signal) {
        call.signal = signal;
        call.onAbort = () => {
          this.settle(call, unaryError(GrpcCode.CANCELLED, 'Cancelled on client'));
          call.connection?.cancel(call);
        };
        signal.addEventListener('abort', call.onAbort);
      }
      this.current().start(call);
    });
  }

  close(): void {
    const c = this.connection;
    this.connection = undefined;
    c?.destroy(new Error('the gateway closed the connection'));
  }

  /** Settles a call once: resolves with its message or rejects with `err`. */
  settle(call: Call, err?: UnaryError): void {
    if (call.settled) return;
    call.settled = true;
    clearTimeout(call.timer);
    if (call.onAbort) call.signal?.removeEventListener('abort', call.onAbort);
    if (err) return call.reject(err);
    if (call.httpStatus !== 200 && call.status === -1) {
      return call.reject(unaryError(call.httpStatus === 503 ? GrpcCode.UNAVAILABLE : GrpcCode.UNKNOWN, `etcd answered HTTP ${call.httpStatus}`));
    }
    if (call.status === -1) return call.reject(unaryError(GrpcCode.INTERNAL, 'etcd ended the call without a gRPC status'));
    if (call.status !== GrpcCode.OK) return call.reject(unaryError(call.status, call.details));
    const body = call.chunks.length === 1 ? call.chunks[0] : Buffer.concat(call.chunks, call.size);
    if (body.length < 5) return call.reject(unaryError(GrpcCode.INTERNAL, 'etcd answered without a message'));
    const length = body.readUInt32BE(1);
    if (body[0] !== 0 || body.length < 5 + length) return call.reject(unaryError(GrpcCode.INTERNAL, 'etcd answered with a malformed message'));
    call.resolve(body.subarray(5, 5 + length));
  }

  /** A call etcd provably never saw is sent again (on a new connection after a GOAWAY), a few times at
   *  most; otherwise it fails. */
  retryOrFail(call: Call, err: UnaryError): void {
    if (call.settled) return;
    if (call.retries >= TRANSPARENT_RETRIES || !err.neverSent) return this.settle(call, err);
    call.retries++;
    call.id = 0;
    this.current().start(call);
  }

  /** The connection new calls go to (a new one after a failure, a GOAWAY or the stream ids ran out). */
  current(): Connection {
    if (this.connection && this.connection.accepting) return this.connection;
    const socket = this.secure
      ? tls.connect({
          host: this.host,
          port: this.port,
          ca: this.tls?.ca,
          cert: this.tls?.cert,
          key: this.tls?.key,
          ALPNProtocols: ['h2'],
          servername: net.isIP(this.host) ? undefined : this.host,
        })
      : net.connect({ host: this.host, port: this.port });
    const connection = new Connection(this, socket, this.secure);
    this.connection = connection;
    return connection;
  }

  /** Called by a connection that takes no more calls. */
  retired(connection: Connection): void {
    if (this.connection === connection) this.connection = undefined;
  }

  private headerBlock(path: string, timeoutMs: number, metadata: Record<string, string> | undefined): Buffer {
    let fixed = this.blocks.get(path);
    if (!fixed) {
      fixed = encodeHeaders([
        [':method', 'POST'],
        [':scheme', this.scheme],
        [':path', path],
        [':authority', this.authority],
        ['content-type', 'application/grpc'],
        ['te', 'trailers'],
      ]);
      this.blocks.set(path, fixed);
    }
    const fields: Array<[string, string]> = [['grpc-timeout', grpcTimeout(timeoutMs)]];
    if (metadata) {
      for (const name in metadata) {
        const value = metadata[name];
        if (INVALID_FIELD_VALUE.test(value) || !/^[a-z0-9_.-]+$/.test(name)) {
          throw unaryError(GrpcCode.INVALID_ARGUMENT, `metadata ${JSON.stringify(name)} cannot be sent to etcd`);
        }
        fields.push([name, value]);
      }
    }
    return Buffer.concat([fixed, encodeHeaders(fields)]);
  }
}

/** One HTTP/2 connection to the member: its frames, windows, calls and liveness. */
class Connection {
  /** New calls may start here (not failed, not draining after a GOAWAY, stream ids left). */
  accepting = true;
  private connected = false;
  /** etcd's SETTINGS arrived: the other end speaks HTTP/2. */
  private ready = false;
  private closed = false;
  private error?: Error;
  private goawayLastStreamId = LAST_STREAM_ID;
  /** Streams up to this id have had their HEADERS handed to the socket (once connected, etcd may
   *  have seen them). */
  private writtenUpTo = 0;
  private nextId = 1;
  /** By stream id; not a Map (see id-table.ts). */
  private readonly calls = new IdTable<Call>();
  /** Calls waiting for a stream slot (etcd's MAX_CONCURRENT_STREAMS). */
  private readonly waiting: Call[] = [];
  /** Calls with request bytes waiting for etcd's flow-control window. */
  private readonly blocked = new Set<Call>();
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = 16_384;
  private peerMaxStreams = Infinity;
  private recvUnacked = 0;
  private readonly decoder = new HpackDecoder();
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private slabStart = 0;
  private slabEnd = 0;
  private pendingWrites: Buffer[] = [];
  private flushScheduled = false;
  private leftover?: Buffer;
  /** A header block still waiting for CONTINUATION frames. */
  private headerStream = 0;
  private headerFlags = 0;
  private headerParts: Buffer[] = [];
  /** The call whose header block is being decoded (undefined: a stream we no longer track). */
  private decoding?: Call;
  private decodingTrailers = false;
  private lastPingAt = 0;
  private pingPayload?: Buffer;
  private pingDeadline?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private readonly onHeader = (name: string, value: string): void => this.header(name, value);

  constructor(
    private readonly channel: UnaryChannel,
    private readonly socket: net.Socket,
    secure: boolean,
  ) {
    socket.setNoDelay(true);
    // Open calls keep the process alive through their deadline timers; an idle connection does not.
    socket.unref();
    socket.once(secure ? 'secureConnect' : 'connect', () => (this.connected = true));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err: Error) => (this.error ??= err));
    socket.on('close', () => this.closedBySocket());
    // Preface, our settings (no push; 16 MiB stream windows) and the connection window raised to match.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(WINDOW_BYTES, 8);
    this.copyOut(PREFACE);
    this.frame(SETTINGS, 0, 0, settings);
    this.windowUpdate(0, WINDOW_BYTES - DEFAULT_WINDOW);
  }

  /** Starts a call: HEADERS now (or when a stream slot frees), DATA as etcd's windows allow. */
  start(call: Call): void {
    if (call.settled) return;
    call.connection = this;
    if (this.closed) {
      this.channel.retryOrFail(call, this.failure(call));
      return;
    }
    if (this.calls.size >= this.peerMaxStreams) {
      this.waiting.push(call);
      return;
    }
    // A fresh start (a call sent once more begins again from its first byte).
    call.sent = 0;
    call.chunks = [];
    call.size = 0;
    call.recvUnacked = 0;
    call.headersSeen = false;
    call.httpStatus = 0;
    call.status = -1;
    call.details = '';
    call.id = this.nextId;
    this.nextId += 2;
    if (this.nextId > LAST_STREAM_ID || (this.nextId - 1) / 2 >= STREAMS_PER_CONNECTION) this.retire();
    call.sendWindow = this.peerInitialWindow;
    this.calls.set(call.id, call);
    if (this.calls.size === 1) this.schedulePing();
    const block = call.block;
    if (block.length <= this.peerMaxFrame) {
      this.frame(HEADERS, END_HEADERS, call.id, block);
    } else {
      let at = 0;
      while (at < block.length) {
        const end = Math.min(block.length, at + this.peerMaxFrame);
        this.frame(at === 0 ? HEADERS : CONTINUATION, end === block.length ? END_HEADERS : 0, call.id, block, at, end);
        at = end;
      }
    }
    this.sendData(call);
  }

  /** Stops a call the caller gave up on (deadline, cancel): etcd is told with RST_STREAM(CANCEL). */
  cancel(call: Call): void {
    const queued = this.waiting.indexOf(call);
    if (queued >= 0) {
      this.waiting.splice(queued, 1);
      return;
    }
    if (call.id === 0 || this.calls.get(call.id) !== call) return;
    this.forget(call);
    if (!this.closed) this.rstStream(call.id, CANCEL);
  }

  /** A PING etcd must answer within PING_TIMEOUT_MS, else the connection is closed (its calls fail as
   *  UNAVAILABLE). Only while calls are open, and never closer together than etcd allows. */
  ping(): void {
    const now = Date.now();
    if (this.pingPayload || !this.ready || this.closed || this.calls.size === 0 || now - this.lastPingAt < MIN_PING_GAP_MS) return;
    this.lastPingAt = now;
    this.pingPayload = Buffer.allocUnsafe(8);
    this.pingPayload.writeDoubleBE(now);
    this.frame(PING, 0, 0, this.pingPayload);
    this.pingDeadline = setTimeout(() => {
      this.destroy(new Error(`etcd did not answer a PING within ${PING_TIMEOUT_MS} ms`));
    }, PING_TIMEOUT_MS);
    this.pingDeadline.unref();
  }

  destroy(err: Error): void {
    this.error ??= err;
    this.retire();
    this.socket.destroy();
    // 'close' follows and fails what is still open.
  }

  // ---- sending ------------------------------------------------------------------------------------

  private sendData(call: Call): void {
    const body = call.body;
    while (call.sent < body.length) {
      const n = Math.min(body.length - call.sent, this.peerMaxFrame, this.sendWindow, call.sendWindow);
      if (n <= 0) {
        this.blocked.add(call);
        return;
      }
      const end = call.sent + n;
      this.frame(DATA, end === body.length ? END_STREAM : 0, call.id, body, call.sent, end);
      call.sent = end;
      this.sendWindow -= n;
      call.sendWindow -= n;
    }
    this.blocked.delete(call);
  }

  private unblock(): void {
    for (const call of this.blocked) {
      if (this.sendWindow <= 0) return;
      this.sendData(call);
    }
  }

  private rstStream(id: number, code: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(code);
    this.frame(RST_STREAM, 0, id, payload);
  }

  private windowUpdate(id: number, increment: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(increment);
    this.frame(WINDOW_UPDATE, 0, id, payload);
  }

  /** Appends one frame to the current slab; the slab goes out in one write at the end of this turn. */
  private frame(type: number, flags: number, id: number, payload: Buffer, from = 0, to = payload.length): void {
    const length = to - from;
    this.reserve(9 + length);
    const slab = this.slab;
    let at = this.slabEnd;
    slab[at++] = length >>> 16;
    slab[at++] = (length >>> 8) & 0xff;
    slab[at++] = length & 0xff;
    slab[at++] = type;
    slab[at++] = flags;
    slab.writeUInt32BE(id, at);
    at += 4;
    payload.copy(slab, at, from, to);
    this.slabEnd = at + length;
    this.scheduleFlush();
  }

  private copyOut(source: Buffer): void {
    this.reserve(source.length);
    source.copy(this.slab, this.slabEnd);
    this.slabEnd += source.length;
    this.scheduleFlush();
  }

  private reserve(bytes: number): void {
    if (this.slabEnd + bytes <= this.slab.length) return;
    if (this.slabEnd > this.slabStart) this.pendingWrites.push(this.slab.subarray(this.slabStart, this.slabEnd));
    this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bytes));
    this.slabStart = this.slabEnd = 0;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.slabEnd > this.slabStart) {
      this.pendingWrites.push(this.slab.subarray(this.slabStart, this.slabEnd));
      // The written part of the slab is never touched again; the rest is used for the next frames.
      this.slabStart = this.slabEnd;
    }
    const writes = this.pendingWrites;
    if (writes.length === 0 || this.closed || this.socket.destroyed || this.socket.writableEnded) return;
    this.pendingWrites = [];
    this.socket.write(writes.length === 1 ? writes[0] : Buffer.concat(writes));
    this.writtenUpTo = this.nextId - 2;
  }

  // ---- receiving ----------------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    let buf = chunk;
    if (this.leftover) {
      buf = Buffer.concat([this.leftover, chunk]);
      this.leftover = undefined;
    }
    let at = 0;
    try {
      while (buf.length - at >= 9) {
        const length = (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2];
        if (buf.length - at < 9 + length) break;
        const type = buf[at + 3];
        const flags = buf[at + 4];
        const id = buf.readUInt32BE(at + 5) & 0x7fffffff;
        this.onFrame(type, flags, id, buf.subarray(at + 9, at + 9 + length));
        at += 9 + length;
        if (this.socket.destroyed) return;
      }
    } catch (e) {
      const err = e instanceof ConnectionError ? e : new ConnectionError(e instanceof HpackError ? COMPRESSION_ERROR : PROTOCOL_ERROR, (e as Error).message);
      this.goaway(err.h2Code);
      this.destroy(new Error(`etcd sent a malformed HTTP/2 frame: ${err.message}`));
      return;
    }
    if (at < buf.length) this.leftover = at === 0 ? buf : Buffer.from(buf.subarray(at));
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.headerStream !== 0 && type !== CONTINUATION) throw new ConnectionError(PROTOCOL_ERROR, 'header block interrupted');
    switch (type) {
      case DATA:
        return this.onData(flags, id, payload);
      case HEADERS:
        return this.onHeaders(flags, id, payload);
      case CONTINUATION:
        if (id === 0 || id !== this.headerStream) throw new ConnectionError(PROTOCOL_ERROR, 'unexpected CONTINUATION');
        this.headerParts.push(payload);
        if (flags & END_HEADERS) this.headerBlockDone();
        return;
      case RST_STREAM:
        if (payload.length !== 4) throw new ConnectionError(FRAME_SIZE_ERROR, 'RST_STREAM of the wrong size');
        return this.onReset(id, payload.readUInt32BE(0));
      case SETTINGS:
        return this.onSettings(flags, id, payload);
      case PING:
        if (payload.length !== 8 || id !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'malformed PING');
        if (flags & ACK) return this.onPong(payload);
        this.frame(PING, ACK, 0, payload);
        return;
      case GOAWAY:
        if (payload.length < 8 || id !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'malformed GOAWAY');
        return this.onGoaway(payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4), payload.subarray(8));
      case WINDOW_UPDATE:
        if (payload.length !== 4) throw new ConnectionError(FRAME_SIZE_ERROR, 'WINDOW_UPDATE of the wrong size');
        return this.onWindowUpdate(id, payload.readUInt32BE(0) & 0x7fffffff);
      case PUSH_PROMISE:
        throw new ConnectionError(PROTOCOL_ERROR, 'PUSH_PROMISE although push is disabled');
      default:
        return; // PRIORITY and unknown types are ignored
    }
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'DATA on stream 0');
    // Every DATA byte (padding included) counts against the windows, on known streams or not.
    this.recvUnacked += payload.length;
    if (this.recvUnacked >= WINDOW_BYTES / 2) {
      this.windowUpdate(0, this.recvUnacked);
      this.recvUnacked = 0;
    }
    const call = this.calls.get(id);
    if (!call) return;
    let data = payload;
    if (flags & PADDED) data = unpad(payload);
    if (data.length > 0) {
      call.chunks.push(data);
      call.size += data.length;
    }
    if (flags & END_STREAM) return this.complete(call);
    call.recvUnacked += payload.length;
    if (call.recvUnacked >= WINDOW_BYTES / 2) {
      this.windowUpdate(id, call.recvUnacked);
      call.recvUnacked = 0;
    }
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'HEADERS on stream 0');
    let fragment = payload;
    if (flags & PADDED) fragment = unpad(fragment);
    if (flags & PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      fragment = fragment.subarray(5);
    }
    this.headerStream = id;
    this.headerFlags = flags;
    this.headerParts.push(fragment);
    if (flags & END_HEADERS) this.headerBlockDone();
  }

  /** Decodes a whole header block (always, to keep HPACK's table in step) and applies it to its call. */
  private headerBlockDone(): void {
    const id = this.headerStream;
    const parts = this.headerParts;
    const block = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    this.headerStream = 0;
    this.headerParts = [];
    const call = this.calls.get(id);
    this.decoding = call;
    this.decodingTrailers = call?.headersSeen === true;
    this.decoder.decode(block, this.onHeader);
    this.decoding = undefined;
    if (!call) return;
    call.headersSeen = true;
    if (this.headerFlags & END_STREAM) this.complete(call);
  }

  private header(name: string, value: string): void {
    const call = this.decoding;
    if (!call) return;
    if (name === 'grpc-status') call.status = Number(value);
    else if (name === 'grpc-message') call.details = grpcMessage(value);
    else if (name === ':status' && !this.decodingTrailers) call.httpStatus = Number(value);
  }

  private onReset(id: number, code: number): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.forget(call);
    if (call.status !== -1) return this.channel.settle(call);
    if (code === REFUSED_STREAM) {
      return this.channel.retryOrFail(call, unaryError(GrpcCode.UNAVAILABLE, 'etcd refused the stream', true));
    }
    this.channel.settle(call, unaryError(GrpcCode.UNAVAILABLE, `etcd reset the call (HTTP/2 error ${code})`));
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'SETTINGS of the wrong size');
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (key === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > 0x7fffffff) throw new ConnectionError(FLOW_CONTROL_ERROR, 'initial window above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const call of this.calls.values()) call.sendWindow += delta;
      } else if (key === SETTINGS_MAX_FRAME_SIZE) {
        if (value < 16_384 || value > 16_777_215) throw new ConnectionError(PROTOCOL_ERROR, 'invalid MAX_FRAME_SIZE');
        this.peerMaxFrame = value;
      } else if (key === SETTINGS_MAX_CONCURRENT_STREAMS) {
        this.peerMaxStreams = value;
      }
    }
    this.frame(SETTINGS, ACK, 0, Buffer.alloc(0));
    this.ready = true;
    this.unblock();
    this.startWaiting();
  }

  private onPong(payload: Buffer): void {
    if (!this.pingPayload || !payload.equals(this.pingPayload)) return;
    this.pingPayload = undefined;
    clearTimeout(this.pingDeadline);
  }

  private onGoaway(lastStreamId: number, code: number, debug: Buffer): void {
    this.goawayLastStreamId = Math.min(this.goawayLastStreamId, lastStreamId);
    if (code !== NO_ERROR) this.error ??= new Error(`etcd sent GOAWAY (HTTP/2 error ${code}${debug.length ? `: ${debug.toString('latin1')}` : ''})`);
    this.retire();
    // Calls etcd will not process go once more on a new connection.
    for (const call of this.calls.values()) {
      if (call.id > this.goawayLastStreamId) {
        this.forget(call);
        this.channel.retryOrFail(call, unaryError(GrpcCode.UNAVAILABLE, 'etcd refused the stream (GOAWAY)', true));
      }
    }
    this.startWaiting();
    this.endIfIdle();
  }

  private onWindowUpdate(id: number, increment: number): void {
    if (increment === 0) throw new ConnectionError(PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
    if (id === 0) {
      this.sendWindow += increment;
      if (this.sendWindow > 0x7fffffff) throw new ConnectionError(FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.unblock();
    }
    const call = this.calls.get(id);
    if (!call) return;
    call.sendWindow += increment;
    if (this.blocked.has(call)) this.sendData(call);
  }

  private complete(call: Call): void {
    if (call.sent < call.body.length) this.rstStream(call.id, NO_ERROR); // etcd answered before reading it all
    this.forget(call);
    this.channel.settle(call);
  }

  private forget(call: Call): void {
    this.calls.delete(call.id);
    this.blocked.delete(call);
    this.startWaiting();
    this.endIfIdle();
  }

  private startWaiting(): void {
    while (this.waiting.length > 0 && this.calls.size < this.peerMaxStreams) {
      const call = this.waiting.shift() as Call;
      if (this.accepting) this.start(call);
      else this.channel.retryOrFail(call, unaryError(GrpcCode.UNAVAILABLE, 'etcd is closing the connection', true));
    }
  }

  // ---- lifetime -----------------------------------------------------------------------------------

  /** New calls go to a new connection; this one ends when its calls have. */
  private retire(): void {
    if (!this.accepting) return;
    this.accepting = false;
    this.channel.retired(this);
  }

  private endIfIdle(): void {
    if (!this.accepting && this.calls.size === 0 && this.waiting.length === 0 && !this.closed) {
      this.goaway(NO_ERROR);
      this.flush();
      this.socket.end();
    }
  }

  private goaway(code: number): void {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(code, 4);
    this.frame(GOAWAY, 0, 0, payload);
  }

  private schedulePing(): void {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      if (this.calls.size > 0 && !this.closed) {
        this.ping();
        this.schedulePing();
      }
    }, PING_INTERVAL_MS);
    this.pingTimer.unref();
  }

  private failure(call: Call): UnaryError {
    const neverSent = !this.connected || call.id === 0 || call.id > this.writtenUpTo || call.id > this.goawayLastStreamId;
    const why = this.error ? `: ${this.error.message}` : '';
    return unaryError(GrpcCode.UNAVAILABLE, neverSent ? `No connection established${why}` : `the connection to etcd closed during the call${why}`, neverSent);
  }

  private closedBySocket(): void {
    if (this.closed) return;
    this.closed = true;
    this.retire();
    clearTimeout(this.pingTimer);
    clearTimeout(this.pingDeadline);
    const calls = [...this.calls.values(), ...this.waiting];
    this.calls.clear();
    this.waiting.length = 0;
    this.blocked.clear();
    for (const call of calls) {
      // A call that never left this process may go once more; one etcd may have seen fails.
      const err = this.failure(call);
      if (err.neverSent && this.connected) this.channel.retryOrFail(call, err);
      else this.channel.settle(call, err);
    }
  }
}

function unpad(payload: Buffer): Buffer {
  if (payload.length < 1 || payload[0] >= payload.length) throw new ConnectionError(PROTOCOL_ERROR, 'padding longer than the frame');
  return payload.subarray(1, payload.length - payload[0]);
}

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
//   its deadline (sent before the call's reset, so etcd still has a stream open and counts no "ping
//   strike"), and every 10 s of traffic (with the next call when none is open); no PONG within 5 s
//   closes the connection, so the calls on it fail as UNAVAILABLE and the client moves to another
//   member; a connection whose SETTINGS never came is closed the same way;
// - limits on what etcd sends (RFC 9113): frames up to our 16 KiB SETTINGS_MAX_FRAME_SIZE, header
//   blocks and header lists up to MAX_HEADER_LIST_BYTES, DATA within the windows we granted, windows
//   it grants up to 2^31-1, and no flood of PINGs or SETTINGS while it reads nothing; a peer that
//   breaks one gets GOAWAY and is disconnected, never buffered;
// - GOAWAY and refused streams: a call etcd provably never saw is sent again (up to 3 times);
// - errors carry a gRPC code, etcd's message, and whether the request provably never reached etcd
//   (no connection, a refused stream, a stream above a GOAWAY's last id), which alone lets a write be
//   sent to another member.

import net from 'node:net';
import tls from 'node:tls';
import { GrpcCode } from '../core/errors';
import { HpackDecoder, HpackError, encodeHeaders } from '../protocol/http2/hpack';
import { IdTable } from '../protocol/id-table';

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
/** The largest frame we accept: we never raise SETTINGS_MAX_FRAME_SIZE from its initial value. */
const MAX_FRAME_BYTES = 16_384;
/** A header block (HEADERS + CONTINUATION) and its decoded header list (RFC 9113 6.5.2: names, values
 *  and 32 octets per field) may not pass this; advertised as SETTINGS_MAX_HEADER_LIST_SIZE. etcd's
 *  answers carry a few short fields; grpc-message is its longest. */
const MAX_HEADER_LIST_BYTES = 256 * 1024;
/** Bytes we may have queued unsent before a PING or SETTINGS that needs an answer is taken as a flood
 *  from a peer that does not read. */
const MAX_UNREAD_BYTES = 64 * 1024 * 1024;
/** How long a connection we closed for a protocol error still reads (and drops) what the peer sends. */
const GOAWAY_LINGER_MS = 1_000;
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
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;
const NO_ERROR = 0x0;
const PROTOCOL_ERROR = 0x1;
const FLOW_CONTROL_ERROR = 0x3;
const FRAME_SIZE_ERROR = 0x6;
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;
const COMPRESSION_ERROR = 0x9;
const ENHANCE_YOUR_CALM = 0xb;
/** RFC 7541 6.3: a dynamic table size update to 0, the first thing in a header block. */
const TABLE_SIZE_ZERO = Buffer.from([0x20]);
/** A grpc-status that is not a gRPC code (0-16). */
const INVALID_STATUS = -2;

/** grpc-timeout: at most 8 digits and a unit. */
function grpcTimeout(ms: number): string {
  return ms < 1e8 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

/** grpc-message is percent-encoded UTF-8; a malformed escape is kept as it is and the rest decoded
 *  (gRPC's PROTOCOL-HTTP2: never throw the message away). */
function grpcMessage(raw: string): string {
  if (!raw.includes('%')) return raw;
  const bytes = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length && isHex(raw.charCodeAt(i + 1)) && isHex(raw.charCodeAt(i + 2))) {
      bytes[n++] = parseInt(raw.slice(i + 1, i + 3), 16);
      i += 2;
    } else {
      bytes[n++] = c;
    }
  }
  return bytes.toString('utf8', 0, n);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** A grpc-status value: a code from 0 to 16, written plainly, or INVALID_STATUS. */
function grpcStatus(value: string): number {
  if (value === '0') return GrpcCode.OK; // nearly every answer, without the regular expression
  return /^(?:[1-9]|1[0-6])$/.test(value) ? Number(value) : INVALID_STATUS;
}

/** gRPC's HTTP-to-gRPC table (doc/http-grpc-status-mapping.md), for answers without a grpc-status. */
function codeFromHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcCode.INTERNAL;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

/** What an answer that ended without a grpc-status means. */
function withoutStatus(call: Call): UnaryError {
  if (call.httpStatus !== 200) return unaryError(codeFromHttpStatus(call.httpStatus), `etcd answered HTTP ${call.httpStatus} without a gRPC status`);
  // A TLS etcd that is stopping answers so through its HTTP server: with its gRPC server stopped, the
  // handler returns at once (an empty 200, no content-type), or a call it had begun ends without its
  // trailers; GOAWAY follows. gRPC's table says UNKNOWN for any 200 (grpc-go: INTERNAL for missing
  // trailers), both 500s to clients; this is a member going away, so UNAVAILABLE: a 503, and reads go
  // on to another member. A 200 with content that is not gRPC is someone else answering: UNKNOWN.
  if (call.grpcContent) return unaryError(GrpcCode.UNAVAILABLE, 'etcd ended the call without a gRPC status (as a stopping member does)');
  if (call.size === 0) return unaryError(GrpcCode.UNAVAILABLE, 'etcd answered HTTP 200 without gRPC content (as a stopping member does)');
  return unaryError(GrpcCode.UNKNOWN, 'etcd answered HTTP 200 with content that is not gRPC');
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
  /** content-type application/grpc: the answer came from a gRPC handler. */
  grpcContent: boolean;
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
        grpcContent: false,
        status: -1,
        details: '',
        settled: false,
        resolve,
        reject,
      };
      call.timer = setTimeout(() => {
        this.settle(call, unaryError(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'));
        // No answer in time: is the member still there at all? Asked before the reset, while the
        // call is still open on both ends, so the PING goes out even when it was the only call.
        call.connection?.ping();
        call.connection?.cancel(call);
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
    if (call.status === -1) return call.reject(withoutStatus(call));
    if (call.status === INVALID_STATUS) return call.reject(unaryError(GrpcCode.UNKNOWN, `etcd sent an invalid grpc-status${call.details ? `: ${call.details}` : ''}`));
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
  /** etcd acknowledged our SETTINGS: until then it may send 65,535 bytes per window, not 16 MiB. */
  private settingsAcked = false;
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
  private readonly openedAt = Date.now();
  private lastPingAt = 0;
  private pingPayload?: Buffer;
  private pingDeadline?: NodeJS.Timeout;
  /** Runs while the connection carries calls; a PING it finds no call open for goes with the next one. */
  private pingTimer?: NodeJS.Timeout;
  private pingDue = false;
  /** Bytes of the header block being received, and of its decoded header list. */
  private headerBlockBytes = 0;
  private headerListBytes = 0;
  /** etcd lowered SETTINGS_HEADER_TABLE_SIZE: the next header block starts with a size update. */
  private tableSizeUpdate = false;
  private tableSizeZero = false;
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
    // Preface, our settings (no push; 16 MiB stream windows; the header list limit) and the connection
    // window raised to match.
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(WINDOW_BYTES, 8);
    settings.writeUInt16BE(SETTINGS_MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(MAX_HEADER_LIST_BYTES, 14);
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
    call.grpcContent = false;
    call.status = -1;
    call.details = '';
    call.id = this.nextId;
    this.nextId += 2;
    if (this.nextId > LAST_STREAM_ID || (this.nextId - 1) / 2 >= STREAMS_PER_CONNECTION) this.retire();
    call.sendWindow = this.peerInitialWindow;
    this.calls.set(call.id, call);
    let block = call.block;
    if (this.tableSizeUpdate) {
      // Our encoder never uses the dynamic table: one update to 0 satisfies every later limit too.
      this.tableSizeUpdate = false;
      block = Buffer.concat([TABLE_SIZE_ZERO, block]);
    }
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
    if (this.pingTimer === undefined) {
      // A PING owed from an idle tick goes right after these HEADERS, while etcd has a stream open.
      if (this.pingDue) {
        this.pingDue = false;
        this.ping();
      }
      this.armPing();
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
   *  UNAVAILABLE). Only while calls are open, and never closer together than etcd allows. A connection
   *  that has not had etcd's SETTINGS within PING_TIMEOUT_MS is not waited for any longer. */
  ping(): void {
    const now = Date.now();
    if (this.closed) return;
    if (!this.ready) {
      if (now - this.openedAt >= PING_TIMEOUT_MS) this.destroy(new Error(`etcd did not start HTTP/2 within ${PING_TIMEOUT_MS} ms`));
      return;
    }
    if (this.pingPayload || this.calls.size === 0 || now - this.lastPingAt < MIN_PING_GAP_MS) return;
    this.lastPingAt = now;
    this.pingPayload = Buffer.allocUnsafe(8);
    this.pingPayload.writeDoubleBE(now);
    this.frame(PING, 0, 0, this.pingPayload);
    this.pingDeadline = setTimeout(() => {
      this.destroy(new Error(`etcd did not answer a PING within ${PING_TIMEOUT_MS} ms`));
    }, PING_TIMEOUT_MS);
    this.pingDeadline.unref();
  }

  /** A connection error (RFC 9113 5.4.1): GOAWAY with `h2Code`, the calls failed now, and the socket
   *  ended, then destroyed after GOAWAY_LINGER_MS (closing at once with unread input would send a TCP
   *  reset, which can destroy the GOAWAY before the peer reads it). */
  private breakOff(h2Code: number, message: string): void {
    this.error ??= new Error(message);
    this.goaway(h2Code);
    this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), GOAWAY_LINGER_MS).unref();
    this.leftover = undefined;
    this.headerParts = [];
    this.closedBySocket();
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
    if (this.closed) return; // lingering after a GOAWAY of ours: read and dropped
    let buf = chunk;
    if (this.leftover) {
      buf = Buffer.concat([this.leftover, chunk]);
      this.leftover = undefined;
    }
    let at = 0;
    try {
      while (buf.length - at >= 9) {
        const length = (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2];
        if (length > MAX_FRAME_BYTES) throw new ConnectionError(FRAME_SIZE_ERROR, `a frame of ${length} bytes, over SETTINGS_MAX_FRAME_SIZE`);
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
      this.breakOff(err.h2Code, `etcd broke HTTP/2: ${err.message}`);
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
        this.addHeaderFragment(payload);
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
        this.mustBeReading();
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
    this.mustBeOurStream(id, 'DATA');
    // Every DATA byte (padding included) counts against the windows, on known streams or not; what we
    // have not acknowledged yet is exactly what the window we granted has lost.
    // Windows are topped up as soon as half is used, so only a peer that ignores them, or one that
    // sends before it has taken our SETTINGS (the ACK comes first), can overrun them.
    const window = this.settingsAcked ? WINDOW_BYTES : DEFAULT_WINDOW;
    this.recvUnacked += payload.length;
    if (this.recvUnacked > window) throw new ConnectionError(FLOW_CONTROL_ERROR, 'DATA past the connection window');
    if (this.recvUnacked >= WINDOW_BYTES / 2) {
      this.windowUpdate(0, this.recvUnacked);
      this.recvUnacked = 0;
    }
    const call = this.calls.get(id);
    if (!call) return;
    call.recvUnacked += payload.length;
    if (call.recvUnacked > window) throw new ConnectionError(FLOW_CONTROL_ERROR, 'DATA past the stream window');
    let data = payload;
    if (flags & PADDED) data = unpad(payload);
    if (data.length > 0) {
      call.chunks.push(data);
      call.size += data.length;
    }
    if (flags & END_STREAM) return this.complete(call);
    if (call.recvUnacked >= WINDOW_BYTES / 2) {
      this.windowUpdate(id, call.recvUnacked);
      call.recvUnacked = 0;
    }
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    this.mustBeOurStream(id, 'HEADERS');
    let fragment = payload;
    if (flags & PADDED) fragment = unpad(fragment);
    if (flags & PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      fragment = fragment.subarray(5);
    }
    this.headerStream = id;
    this.headerFlags = flags;
    this.headerBlockBytes = 0;
    this.addHeaderFragment(fragment);
    if (flags & END_HEADERS) this.headerBlockDone();
  }

  /** Keeps a header block fragment, within MAX_HEADER_LIST_BYTES for the whole block. */
  private addHeaderFragment(fragment: Buffer): void {
    this.headerBlockBytes += fragment.length;
    if (this.headerBlockBytes > MAX_HEADER_LIST_BYTES) throw new ConnectionError(ENHANCE_YOUR_CALM, `a header block over ${MAX_HEADER_LIST_BYTES} bytes`);
    this.headerParts.push(fragment);
  }

  /** Streams etcd may send on: ours (odd, already opened); push is off, so it opens none. */
  private mustBeOurStream(id: number, type: string): void {
    if (id === 0 || (id & 1) === 0 || id >= this.nextId) throw new ConnectionError(PROTOCOL_ERROR, `${type} on stream ${id}, which we never opened`);
  }

  /** A peer that makes us answer (PING, SETTINGS) while it reads nothing is flooding us. */
  private mustBeReading(): void {
    if (this.socket.writableLength > MAX_UNREAD_BYTES) throw new ConnectionError(ENHANCE_YOUR_CALM, 'PING or SETTINGS while not reading our answers');
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
    this.headerListBytes = 0;
    this.decoder.decode(block, this.onHeader);
    this.decoding = undefined;
    if (!call) return;
    call.headersSeen = true;
    if (this.headerFlags & END_STREAM) this.complete(call);
  }

  private header(name: string, value: string): void {
    // HPACK can name a large table entry in one octet: the decoded size is limited as well.
    this.headerListBytes += name.length + value.length + 32;
    if (this.headerListBytes > MAX_HEADER_LIST_BYTES) throw new ConnectionError(ENHANCE_YOUR_CALM, `a header list over ${MAX_HEADER_LIST_BYTES} bytes`);
    const call = this.decoding;
    if (!call) return;
    if (name === 'grpc-status') call.status = grpcStatus(value);
    else if (name === 'grpc-message') call.details = grpcMessage(value);
    else if (this.decodingTrailers) return;
    else if (name === ':status') call.httpStatus = Number(value);
    else if (name === 'content-type') call.grpcContent = value.startsWith('application/grpc');
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
    if (flags & ACK) {
      this.settingsAcked = true;
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'SETTINGS of the wrong size');
    this.mustBeReading();
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (key === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > 0x7fffffff) throw new ConnectionError(FLOW_CONTROL_ERROR, 'initial window above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const call of this.calls.values()) {
          call.sendWindow += delta;
          if (call.sendWindow > 0x7fffffff) throw new ConnectionError(FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
        }
      } else if (key === SETTINGS_HEADER_TABLE_SIZE) {
        // RFC 7541 4.2: below the 4096 our encoder may assume, etcd must be told we use less.
        if (value < 4096 && !this.tableSizeZero) this.tableSizeUpdate = this.tableSizeZero = true;
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
    if (call.sendWindow > 0x7fffffff) throw new ConnectionError(FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
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

  /** Armed once and left running: re-arming it on every call would postpone it forever under
   *  sequential traffic. */
  private armPing(): void {
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      if (this.closed) return;
      if (this.calls.size === 0) {
        this.pingDue = true;
        return;
      }
      this.ping();
      this.armPing();
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

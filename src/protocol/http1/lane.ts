// The fast lane: plain-HTTP connections are read here first, and the requests that make up nearly all
// of the gateway's traffic (a POST to a unary API route, with a Content-Length body, nothing unusual in
// its head; and a GET, PUT or DELETE of a /v1/ key, its handler writing through a LaneResponse that
// stands in for Node's ServerResponse) are served without Node's HTTP machinery. Measured: Node's
// parser, IncomingMessage, ServerResponse and their events cost a gateway with nothing else to do
// about 15 % of its throughput (README, Performance).
//
// Anything else is handed to Node's own HTTP server, with the connection, for the rest of the
// connection's life: the first request that is not plainly one of these (another method or route, a
// chunked, compressed or oversized body, Expect, Upgrade, HTTP/1.0, a duplicate or malformed header, a
// head that is not strictly well-formed) and everything after it are parsed by Node, exactly as
// without the lane — refusals, 100-continue, WebSockets, streams and the limits tested there included.
// The lane itself only accepts what it can serve identically: a strict subset of HTTP/1.1.
//
// What the lane keeps from Node's server, read from the server's own settings: the head size limit
// (maxHeaderSize), the head and request read timeouts (408 in JSON), the keep-alive timeout,
// pipelining (answers in order, at most MAX_PIPELINED waiting), backpressure from slow readers, and a
// shutdown that answers what was received and then closes (closeIdleConnections / closeAllConnections).
//
// What it adds for hostile clients: once it stops taking requests on a connection (the client asked to
// close, a 408, shutdown) what arrives is dropped, not kept, and its end is a lingering close bounded
// in bytes and time (http-server.ts); input that cannot become a head the lane serves (a bare LF, a TLS
// ClientHello, binary) goes to Node at once, not after HEADERS_TIMEOUT_MS; and complete requests it
// leaves unread while MAX_PIPELINED answers are owed are not a slow client (their read timeouts start
// when it reads again).

import http, { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { GatewayError, fromGrpcError } from '../../core/errors';
import { Hangup, rawJsonResponse, type UnaryCall } from '../../api/router';
import type { RequestHead } from '../../core/context';
import { checkingIntervalMs, closeLingering, requestTimedOut } from '../../boot/http-server';
import { IdTable } from '../id-table';

/** A route the lane may serve: a unary API operation (a JSON POST, answered with the JSON `call` gives),
 *  or a /v1/ operation that writes its own answer (`serve`, given a request and a response of the
 *  lane's own that stand in for Node's: the same handler serves both paths). */
export type LaneRoute = { operationId: string; call: UnaryCall; serve?: undefined } | { operationId: string; serve: LaneServe; call?: undefined };

/** Serves one request through the parts of IncomingMessage and ServerResponse that LaneRequest and
 *  LaneResponse have. */
export type LaneServe = (req: IncomingMessage, res: ServerResponse) => void;

export interface LaneHooks {
  /** The unary API route at a request path (query string removed), if the lane may serve it. */
  route(path: string): LaneRoute | undefined;
  /** The route of a GET, PUT or DELETE (the /v1/ keys API), given the path and the query as sent, if
   *  the lane may serve it. */
  plainRoute?(method: string, path: string, search: string): LaneRoute | undefined;
  /** Whether Node must see this request (e.g. a browser's, when CORS is on). */
  leaveToNode(headers: IncomingHttpHeaders): boolean;
  /** The refusal of a request before its body is looked at (rate limit, who is asking), if any. */
  admit(head: RequestHead): { error: unknown; headers?: Record<string, string> } | undefined;
  /** Called once per request, answered or not (the client gone: 499). */
  record(operationId: string, method: string, status: number, seconds: number, id: string): void;
  maxBodyBytes: number;
}

/** Counts, for tests and the bench: requests the lane answered, connections it gave to Node. */
export interface LaneStats {
  served: number;
  handedOver: number;
}

/** Requests read ahead of their answers on one connection; past it the connection is not read. */
const MAX_PIPELINED = 32;
/** More headers than this: Node decides (its limit and the 431 are in checkRequests). */
const MAX_LANE_HEADERS = 64;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A header value the lane accepts: printable ASCII, spaces and tabs (obs-text and controls go to Node). */
const VALUE = /^[\t\x20-\x7e]*$/;
const TARGET = /^\/[\x21-\x7e]*$/;
const DIGITS = /^[0-9]{1,15}$/;
/** How the requests the lane serves begin. */
const HEAD_STARTS = ['POST /', 'GET /', 'PUT /', 'DELETE /'].map((s) => Buffer.from(s));
/** The status of an answer that is no answer: its connection is destroyed when its turn comes. */
const DESTROYED = -1;
/** A header value that could end a header line: never written by the lane. */
const LINE_BREAK = /[\r\n]/;

/** Whether `data`, the start of a head not yet complete, may still become one the lane serves: it
 *  begins as one does, and holds only printable ASCII, tabs and CR LF pairs. Anything else (a bare LF,
 *  a TLS ClientHello, binary) would be handed to Node once complete, which it may never be: it goes
 *  to Node now, and Node answers it at once. */
function mayBecomeLaneHead(data: Buffer): boolean {
  const begins = (start: Buffer): boolean => {
    const n = Math.min(data.length, start.length);
    return data.compare(start, 0, n, 0, n) === 0;
  };
  const known = HEAD_STARTS.find(begins);
  if (!known) return false;
  const start = Math.min(data.length, known.length);
  for (let i = start; i < data.length; i++) {
    const b = data[i];
    if (b === 13) {
      if (i + 1 < data.length && data[i + 1] !== 10) return false;
    } else if (b === 10) {
      if (data[i - 1] !== 13) return false;
    } else if ((b < 32 && b !== 9) || b > 126) return false;
  }
  return true;
}

/** One request read by the lane, until its answer is written. */
class Exchange {
  status = 0;
  text: string | Buffer = '';
  headers?: Record<string, string>;
  /** A /v1/ answer's header lines, before Date and Connection (servePlain). */
  plainHead?: string;
  readonly hangup = new Hangup();
  constructor(
    readonly operationId: string,
    readonly method: string,
    readonly id: string,
    readonly started: number,
  ) {}
}

/** The parts of Node's IncomingMessage that a /v1/ handler reads, for a request the lane has read
 *  whole: the body is `laneBody`, already here (readBody takes it from there). */
export class LaneRequest {
  readonly readableEnded = true;
  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    readonly socket: Socket,
    readonly laneBody: Buffer,
  ) {}
}

/** The parts of Node's ServerResponse that a /v1/ handler writes with (writeHead, then end), whose
 *  answer the lane writes in its turn; 'close' is emitted when the client goes before the answer. */
export class LaneResponse {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  readonly writableLength = 0;
  private headers: Record<string, string> = {};
  private onClose?: Array<() => void>;

  constructor(private readonly answered: (status: number, headers: Record<string, string>, body: string | Buffer) => void) {}

  writeHead(status: number, headers?: Record<string, string>): this {
    this.statusCode = status;
    if (headers) Object.assign(this.headers, headers);
    this.headersSent = true;
    return this;
  }

  setHeader(name: string, value: string | number): this {
    this.headers[name] = String(value);
    return this;
  }

  end(body?: string | Buffer): this {
    if (this.writableFinished) return this;
    this.headersSent = true;
    this.writableFinished = true;
    this.answered(this.statusCode, this.headers, body ?? '');
    return this;
  }

  on(event: string, listener: () => void): this {
    if (event === 'close') (this.onClose ??= []).push(listener);
    return this;
  }

  once(event: string, listener: () => void): this {
    return this.on(event, listener);
  }

  /** A response the handler cannot finish (a problem after the headers): the connection ends. */
  destroy(): this {
    this.writableFinished = true;
    this.answered(DESTROYED, {}, '');
    return this;
  }

  /** The client is gone: the handler's etcd calls are cancelled. */
  gone(): void {
    const listeners = this.onClose;
    this.onClose = undefined;
    for (const l of listeners ?? []) l();
  }
}

/** Date header text, made once a second as Node does. */
let dateText = '';
let dateSecond = -1;
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** The parsed head of a request the lane serves. */
interface Head {
  route: LaneRoute;
  method: string;
  /** The request target as sent (path and query). */
  target: string;
  headers: IncomingHttpHeaders;
  /** Bytes of the head, the blank line included. */
  size: number;
  bodySize: number;
  close: boolean;
}

export class FastLane {
  readonly stats: LaneStats = { served: 0, handedOver: 0 };
  /** By serial number; not a Set (see id-table.ts): without keep-alive there is one per request. */
  private readonly connections = new IdTable<LaneConnection>();
  private serial = 0;
  private sweeper?: NodeJS.Timeout;

  constructor(
    readonly server: http.Server,
    readonly hooks: LaneHooks,
    /** Node's own connection listener, which the lane hands connections to. */
    private readonly nodeListener: (socket: Socket) => void,
  ) {}

  /** Takes over the plain-HTTP connections of `server`: its own 'connection' listener is removed and
   *  called by the lane for the connections it hands over. Undefined for an https.Server (TLS sockets
   *  are Node's) or when Node's listener is not where Node puts it. */
  static install(server: http.Server, hooks: LaneHooks): FastLane | undefined {
    if (!(server instanceof http.Server)) return undefined;
    const listeners = server.listeners('connection');
    const node = listeners[0] as ((this: http.Server, socket: Socket) => void) | undefined;
    if (listeners.length !== 1 || node?.name !== 'connectionListener') return undefined;
    server.removeListener('connection', node);
    const lane = new FastLane(server, hooks, (socket) => node.call(server, socket));
    const closeIdle = server.closeIdleConnections.bind(server);
    const closeAll = server.closeAllConnections.bind(server);
    server.closeIdleConnections = () => {
      closeIdle();
      lane.closeIdle();
    };
    server.closeAllConnections = () => {
      closeAll();
      lane.closeAll();
    };
    server.once('close', () => clearInterval(lane.sweeper));
    return lane;
  }

  /** A new connection: read by the lane. */
  adopt(socket: Socket): void {
    const c = new LaneConnection(this, socket, ++this.serial);
    this.connections.set(c.id, c);
    this.sweeper ??= setInterval(() => this.sweep(), checkingIntervalMs({ headersTimeoutMs: this.server.headersTimeout, requestReadTimeoutMs: this.server.requestTimeout }));
    this.sweeper.unref();
  }

  forget(c: LaneConnection): void {
    this.connections.delete(c.id);
  }

  handOver(socket: Socket): void {
    this.stats.handedOver++;
    this.nodeListener(socket);
  }

  get stopping(): boolean {
    return !this.server.listening;
  }

  /** Keep-alive and read timeouts, checked every interval as Node checks its own. */
  private sweep(): void {
    const now = performance.now();
    const { headersTimeout, requestTimeout, keepAliveTimeout } = this.server;
    for (const c of this.connections.values()) c.check(now, headersTimeout, requestTimeout, keepAliveTimeout);
  }

  private closeIdle(): void {
    for (const c of this.connections.values()) c.closeIfIdle();
  }

  private closeAll(): void {
    for (const c of this.connections.values()) c.destroy();
  }
}

class LaneConnection {
  /** Bytes received and not yet taken as requests, in arrival order. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The head of the request being received, once it is complete. */
  private head?: Head;
  /** When the request being received began: its first byte, or the connection itself for the first
   *  request (Node's head timeout also counts from there). */
  private receivingSince = performance.now();
  /** No request read yet. */
  private fresh = true;
  private idleSince = performance.now();
  /** Requests read, in order; the front one's answer is written first. */
  private readonly waiting: Exchange[] = [];
  /** Node gets the connection once the answers still owed are written. */
  private handingOver = false;
  /** No more requests are read: the client asked to close, or ended its side, or the server stops. */
  private closing = false;
  private needDrain = false;
  /** Inside read(): an answer ready at once (a refusal) is written, and the loop goes on from there. */
  private reading = false;
  private paused = false;
  private done = false;

  private readonly onData = (chunk: Buffer): void => {
    // No more requests are taken: what the client still sends is not kept.
    if (this.closing) return;
    if (this.buffered === 0 && !this.fresh) this.receivingSince = performance.now();
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.read();
  };
  private readonly onEnd = (): void => {
    // The client sends no more. As Node's server does (httpAllowHalfOpen is off), the requests it is
    // owed answers for are abandoned, their etcd calls cancelled, and the connection ends.
    this.abandon();
    this.done = true;
    this.socket.end();
  };
  private readonly onDrain = (): void => {
    this.needDrain = false;
    this.flow();
  };
  private readonly onError = (): void => {
    this.socket.destroy();
  };
  private readonly onClose = (): void => {
    this.done = true;
    this.lane.forget(this);
    this.abandon();
  };

  constructor(
    private readonly lane: FastLane,
    private readonly socket: Socket,
    readonly id: number,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /** Answers never to be written: the client is gone; the etcd calls made for them are cancelled. */
  private abandon(): void {
    const now = performance.now();
    for (const ex of this.waiting) {
      ex.hangup.abort();
      this.lane.hooks.record(ex.operationId, ex.method, 499, (now - ex.started) / 1000, ex.id);
    }
    this.waiting.length = 0;
  }

  /** Takes every complete request from the bytes received. */
  private read(): void {
    if (this.lane.stopping) this.closing = true;
    this.reading = true;
    while (this.buffered > 0 && !this.handingOver && !this.closing && !this.done) {
      if (this.waiting.length >= MAX_PIPELINED) break;
      if (!this.head) {
        const data = this.joined();
        const end = data.indexOf('\r\n\r\n');
        // Heads near Node's size limit are Node's to measure (and refuse with 431): the lane takes
        // those of at most half of it.
        const limit = ((this.lane.server as { maxHeaderSize?: number }).maxHeaderSize ?? http.maxHeaderSize) / 2;
        if (end < 0 || end + 4 > limit) {
          // Not complete: wait, unless it is already longer than the lane takes or cannot be one it takes.
          if (end >= 0 || data.length > limit || !mayBecomeLaneHead(data)) this.startHandOver();
          break;
        }
        const head = this.parseHead(data, end + 4);
        if (!head) {
          this.startHandOver();
          break;
        }
        this.head = head;
      }
      const need = this.head.size + this.head.bodySize;
      if (this.buffered < need) break;
      const data = this.joined();
      const head = this.head;
      this.head = undefined;
      const body = data.subarray(head.size, need);
      if (data.length === need) {
        this.chunks = [];
        this.buffered = 0;
      } else {
        this.chunks = [data.subarray(need)];
        this.buffered = data.length - need;
        this.receivingSince = performance.now();
      }
      this.fresh = false;
      if (head.close) this.closing = true;
      this.serve(head, body);
    }
    if (this.closing) this.drop();
    this.reading = false;
    this.flow();
    this.finishIfDone();
  }

  /** Forgets the bytes received and not taken: no more requests are read on this connection. */
  private drop(): void {
    this.chunks = [];
    this.buffered = 0;
    this.head = undefined;
  }

  /** Ends the connection after `last`: a lingering close, which also reads again a socket paused for
   *  backpressure, so that the client's end or reset is seen and the socket closes. */
  private end(last?: string): void {
    this.done = true;
    this.drop();
    closeLingering(this.socket, last);
  }

  /** The bytes received as one buffer. */
  private joined(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0];
  }

  /** The head of a request the lane serves; undefined for any other (Node reads it). */
  private parseHead(data: Buffer, size: number): Head | undefined {
    const text = data.toString('latin1', 0, size - 4);
    const lineEnd = text.indexOf('\r\n');
    const requestLine = lineEnd < 0 ? text : text.slice(0, lineEnd);
    const space = requestLine.indexOf(' ');
    const method = requestLine.slice(0, space);
    if (!requestLine.endsWith(' HTTP/1.1')) return undefined;
    const target = requestLine.slice(space + 1, -9);
    if (!TARGET.test(target)) return undefined;
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    let route: LaneRoute | undefined;
    if (method === 'POST') route = this.lane.hooks.route(path);
    else if (method === 'GET' || method === 'PUT' || method === 'DELETE') route = this.lane.hooks.plainRoute?.(method, path, q < 0 ? '' : target.slice(q + 1));
    if (!route) return undefined;
    const headers: IncomingHttpHeaders = {};
    let count = 0;
    let at = lineEnd + 2;
    while (lineEnd >= 0 && at < text.length) {
      if (++count > MAX_LANE_HEADERS) return undefined;
      let next = text.indexOf('\r\n', at);
      if (next < 0) next = text.length;
      const colon = text.indexOf(':', at);
      if (colon < 0 || colon > next) return undefined;
      const name = text.slice(at, colon);
      if (!TOKEN.test(name)) return undefined;
      let from = colon + 1;
      let to = next;
      while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
      while (to > from && text.charCodeAt(to - 1) === 32) to--;
      // A tab ending a value is OWS (RFC 9110 §5.5), but Node's parser does not strip it where it
      // matters (`Content-Length: 18<TAB>` is a 400, `Connection: close<TAB>` not a close): such a head
      // is Node's, so that both paths follow one rule.
      if (to > from && text.charCodeAt(to - 1) === 9) return undefined;
      const value = text.slice(from, to);
      if (!VALUE.test(value)) return undefined;
      const key = name.toLowerCase();
      // A repeated header is Node's to combine or refuse. On a plain object, names such as
      // `constructor` or `__proto__` read as present too, so they go to Node as well.
      if (headers[key] !== undefined) return undefined;
      headers[key] = value;
      at = next + 2;
    }
    // A POST or PUT carries its body with a Content-Length; a GET or DELETE carries none (Node decides
    // about one that does).
    const length = headers['content-length'] ?? (method === 'GET' || method === 'DELETE' ? '0' : undefined);
    if (headers.host === undefined || length === undefined || !DIGITS.test(length)) return undefined;
    const bodySize = Number(length);
    if (bodySize > 0 && (method === 'GET' || method === 'DELETE')) return undefined;
    if (bodySize > this.lane.hooks.maxBodyBytes) return undefined;
    if (headers['transfer-encoding'] !== undefined || headers.expect !== undefined || headers.upgrade !== undefined) return undefined;
    const encoding = headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return undefined;
    const connection = headers.connection?.toLowerCase();
    if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close') return undefined;
    if (this.lane.hooks.leaveToNode(headers)) return undefined;
    return { route, method, target, headers, size, bodySize, close: connection === 'close' };
  }

  /** Runs one request; its answer is written when it and every one before it are ready. */
  private serve(head: Head, body: Buffer): void {
    const given = head.headers['x-request-id'];
    const id = (typeof given === 'string' && given.slice(0, 128)) || randomUUID();
    const ex = new Exchange(head.route.operationId, head.method, id, performance.now());
    this.waiting.push(ex);
    if (head.route.serve) return this.servePlain(head, head.route.serve, body, ex);
    const request: RequestHead = { headers: head.headers, socket: this.socket };
    let refused;
    try {
      refused = this.lane.hooks.admit(request);
    } catch (err) {
      refused = { error: err };
    }
    if (refused) return this.answerError(ex, refused.error, refused.headers);
    head.route.call(body, request, ex.hangup).then(
      (answer) => {
        try {
          ex.text = JSON.stringify(answer);
          ex.status = 200;
          this.flush();
        } catch (err) {
          this.answerError(ex, err);
        }
      },
      (err: unknown) => this.answerError(ex, err),
    );
  }

  /** A /v1/ request: its handler answers through a LaneResponse; its headers are written as given
   *  (Content-Length is the lane's, and 204 and 304 have no body). */
  private servePlain(head: Head, serve: LaneServe, body: Buffer, ex: Exchange): void {
    const res = new LaneResponse((status, headers, text) => {
      // The header lines as Node's server writes them for this handler: X-Request-Id (set before the
      // handler runs), then the handler's in its order, with the lane's own Content-Length.
      const bodyless = status === 204 || status === 304;
      ex.text = bodyless ? '' : text;
      const length = `Content-Length: ${typeof text === 'string' ? Buffer.byteLength(text) : text.length}\r\n`;
      let lines = `X-Request-Id: ${ex.id}\r\n`;
      let lengthWritten = bodyless;
      for (const name in headers) {
        const value = headers[name];
        if (name.toLowerCase() === 'content-length') {
          if (!lengthWritten) lines += length;
          lengthWritten = true;
        } else if (!LINE_BREAK.test(name) && !LINE_BREAK.test(value)) lines += `${name}: ${value}\r\n`;
      }
      ex.plainHead = lengthWritten ? lines : lines + length;
      // Set last: the answer is ready once it has a status.
      ex.status = status;
      this.flush();
    });
    ex.hangup.addEventListener('abort', () => res.gone());
    try {
      serve(new LaneRequest(head.method, head.target, head.headers, this.socket, body) as unknown as IncomingMessage, res as unknown as ServerResponse);
    } catch (err) {
      this.answerError(ex, err);
    }
  }

  private answerError(ex: Exchange, err: unknown, headers?: Record<string, string>): void {
    const e = err instanceof GatewayError ? err : fromGrpcError(err);
    ex.status = e.httpStatus;
    ex.text = JSON.stringify(e.body());
    ex.headers = headers;
    this.flush();
  }

  /** Writes the answers that are ready, in request order. */
  private flush(): void {
    if (this.done) return;
    const corked = this.waiting.length > 1 && this.waiting[1].status !== 0;
    if (corked) this.socket.cork();
    while (this.waiting.length > 0 && this.waiting[0].status !== 0) {
      const ex = this.waiting.shift()!;
      if (ex.status === DESTROYED) {
        // A handler that could not finish its answer: nothing more can be written on this connection.
        this.lane.hooks.record(ex.operationId, ex.method, 500, (performance.now() - ex.started) / 1000, ex.id);
        this.done = true;
        this.abandon();
        this.socket.destroy();
        return;
      }
      const last = this.waiting.length === 0 && (this.closing || this.lane.stopping) && !this.handingOver;
      let extra = '';
      if (ex.headers) for (const name in ex.headers) extra += `${name}: ${ex.headers[name]}\r\n`;
      const { keepAliveTimeout } = this.lane.server;
      const connection = last ? 'Connection: close\r\n' : `Connection: keep-alive\r\n${keepAliveTimeout ? `Keep-Alive: timeout=${Math.floor(keepAliveTimeout / 1000)}\r\n` : ''}`;
      const fields = ex.plainHead ?? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(ex.text as string)}\r\nX-Request-Id: ${ex.id}\r\n${extra}`;
      const head = `HTTP/1.1 ${ex.status} ${STATUS_CODES[ex.status] ?? ''}\r\n${fields}Date: ${httpDate()}\r\n${connection}\r\n`;
      let written: boolean;
      if (typeof ex.text === 'string') written = this.socket.write(head + ex.text);
      else {
        // A raw value: the head and the bytes leave in one write.
        if (!corked) this.socket.cork();
        this.socket.write(head);
        written = this.socket.write(ex.text);
        if (!corked) this.socket.uncork();
      }
      if (!written) this.needDrain = true;
      this.lane.stats.served++;
      this.lane.hooks.record(ex.operationId, ex.method, ex.status, (performance.now() - ex.started) / 1000, ex.id);
      if (last) this.closing = true;
    }
    if (corked) this.socket.uncork();
    if (this.waiting.length === 0) this.idleSince = performance.now();
    // Room in the pipeline again: take what was read meanwhile.
    if (this.reading) return;
    if (this.buffered > 0 && !this.needDrain) {
      // Read again after a pause: the time the bytes waited is not the client's.
      if (this.paused) this.receivingSince = performance.now();
      this.read();
    } else this.flow();
    this.finishIfDone();
  }

  /** Ends the connection, or gives it to Node, once nothing is owed; true when it did either. */
  private finishIfDone(): boolean {
    if (this.waiting.length > 0 || this.done) return false;
    if (this.handingOver) {
      this.handOver();
      return true;
    }
    if (this.closing || this.lane.stopping) {
      this.end();
      return true;
    }
    return false;
  }

  /** Reading stops while the client does not read its answers, while MAX_PIPELINED answers are owed,
   *  and while the connection waits to be handed over. */
  private flow(): void {
    if (this.done) return;
    const pause = this.needDrain || this.handingOver || this.waiting.length >= MAX_PIPELINED;
    if (pause === this.paused) return;
    this.paused = pause;
    if (pause) this.socket.pause();
    else {
      this.socket.resume();
      if (this.buffered > 0) {
        // The time it was not read is not the client's: the request being received starts again now.
        this.receivingSince = performance.now();
        this.read();
      }
    }
  }

  private startHandOver(): void {
    this.handingOver = true;
    this.head = undefined;
    if (!this.finishIfDone()) this.flow();
  }

  /** Node's server takes the connection. The bytes the lane read and did not serve are given to Node's
   *  parser as the socket's next 'data', before anything read later: Node reads the rest from the
   *  socket itself. */
  private handOver(): void {
    this.done = true;
    this.lane.forget(this);
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('drain', this.onDrain);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    const rest = this.buffered > 0 ? this.joined() : undefined;
    this.chunks = [];
    this.buffered = 0;
    this.lane.handOver(socket);
    if (rest) socket.emit('data', rest);
    socket.resume();
  }

  /** The sweeper's check: a request received too slowly gets 408; an idle keep-alive connection ends. */
  check(now: number, headersTimeout: number, requestTimeout: number, keepAliveTimeout: number): void {
    if (this.done || this.handingOver) return;
    if ((this.buffered > 0 || this.fresh) && !this.closing) {
      // Complete requests left unread while MAX_PIPELINED answers are owed are not a slow client.
      if (this.waiting.length >= MAX_PIPELINED) return;
      const age = now - this.receivingSince;
      const late = (!this.head && headersTimeout > 0 && age > headersTimeout) || (requestTimeout > 0 && age > requestTimeout);
      if (!late) return;
      // An answer still owed, or not yet read by the client, would be cut by the 408 or hold it back:
      // the connection just ends, as Node does then.
      if (this.waiting.length > 0 || this.needDrain) {
        this.done = true;
        this.socket.destroy();
      } else this.end(rawJsonResponse(requestTimedOut(headersTimeout, requestTimeout)));
      return;
    }
    if (this.waiting.length === 0 && keepAliveTimeout > 0 && now - this.idleSince > keepAliveTimeout) this.socket.destroy();
  }

  /** Shutdown: an idle connection is closed now, a busy one after the answers it owes. */
  closeIfIdle(): void {
    if (this.done || this.handingOver) return;
    // As Node's closeIdleConnections: a connection with no answer owed is idle, even while a request
    // is being received.
    if (this.waiting.length === 0) {
      this.done = true;
      this.socket.destroy();
      return;
    }
    this.closing = true;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

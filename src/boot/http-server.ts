// The HTTP(S) server's own defences against slow and broken clients, wired by main.ts around the app:
// - slowloris: a request head must arrive within HEADERS_TIMEOUT_MS and a whole request within
//   REQUEST_READ_TIMEOUT_MS, else 408 in JSON and the connection is closed; an idle keep-alive
//   connection is closed after KEEPALIVE_TIMEOUT_MS. Node applies the first two only while a request
//   is being received, so answers that stream for hours (HTTP watches, keepalives, observe, snapshots)
//   and upgraded WebSockets are never cut by them, and there is no socket inactivity timeout at all
//   (an idle watch is legitimate; WebSockets have their own ping check);
// - what Node itself would answer without a body (a missing Host, an unknown Expect, CONNECT) is
//   answered in JSON like every other refusal;
// - a request with more headers than Node keeps is refused: Node drops the headers past its count
//   silently, Content-Length and Transfer-Encoding included, and the body would then be read as empty —
//   the request would run as an empty message instead of the one sent; so is one with two Host headers
//   (RFC 9112 §3.2: Node keeps the first silently);
// - a connection the server ends is closed by lingering (RFC 9112 §9.6), so that the client can read the
//   last answer even while it is still sending, and what the client sends meanwhile is dropped;
// - what Node's parser refuses is answered after the answers still owed on that connection, in order.

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { GatewayError, GrpcCode } from '../core/errors';
import { rawJsonResponse, sendError } from '../api/router';

export interface ServerLimits {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestReadTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

/** How often Node looks for requests over their timeouts: a tenth of the shorter one, between 100 ms
 *  and 1 s (Node's default, 30 s, would let a 10 s timeout run to 40 s). */
export function checkingIntervalMs(limits: Pick<ServerLimits, 'headersTimeoutMs' | 'requestReadTimeoutMs'>): number {
  const set = [limits.headersTimeoutMs, limits.requestReadTimeoutMs].filter((t) => t > 0);
  if (set.length === 0) return 1_000;
  return Math.min(1_000, Math.max(100, Math.floor(Math.min(...set) / 10)));
}

/** Node keeps this many headers of a request (its default) and drops the rest. */
export const MAX_HEADERS = 2000;

/** Options for http.createServer / https.createServer. */
export function serverOptions(limits: ServerLimits): http.ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestReadTimeoutMs,
    connectionsCheckingInterval: checkingIntervalMs(limits),
    // Node's own refusal of a Host-less HTTP/1.1 request has no body; checkRequests() answers it instead.
    requireHostHeader: false,
  };
}

/** How many times a request names a header (`name` in lower case). */
function countHeader(rawHeaders: string[], name: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].length === name.length && rawHeaders[i].toLowerCase() === name) n++;
  return n;
}

/** The `close` option of a Connection header (RFC 9110 §7.6.1), its list items trimmed of OWS. */
const CLOSE_OPTION = /(?:^|,)[ \t]*close[ \t]*(?:,|$)/i;

/** Wraps the app: a request with MAX_HEADERS headers or more gets a 431, an HTTP/1.1 request without
 *  a Host header or with two a 400 (RFC 9112 §3.2), all in JSON and on a connection that then closes.
 *  A `Connection: close` that Node's parser does not take as one (a tab after it: llhttp strips only
 *  spaces when it matches the option) closes the connection too, as RFC 9110 §5.5 reads it and as the
 *  fast lane does. */
export function checkRequests(app: http.RequestListener): http.RequestListener {
  return (req, res) => {
    let refusal: GatewayError | undefined;
    if (req.rawHeaders.length >= 2 * MAX_HEADERS) {
      refusal = new GatewayError(GrpcCode.INVALID_ARGUMENT, `request has ${MAX_HEADERS} headers or more`, 431);
    } else if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      refusal = new GatewayError(GrpcCode.INVALID_ARGUMENT, 'HTTP/1.1 request without a Host header');
    } else if (countHeader(req.rawHeaders, 'host') > 1) {
      refusal = new GatewayError(GrpcCode.INVALID_ARGUMENT, 'request with more than one Host header');
    }
    if (!refusal) {
      const connection = req.headers.connection;
      if (res.shouldKeepAlive && connection !== undefined && CLOSE_OPTION.test(connection)) res.shouldKeepAlive = false;
      return app(req, res);
    }
    res.shouldKeepAlive = false;
    sendError(res, refusal);
  };
}

/** The 408 of a request not received in time (Node's timeouts, or the fast lane's). */
export function requestTimedOut(headersTimeoutMs: number, requestTimeoutMs: number): GatewayError {
  return new GatewayError(
    GrpcCode.CANCELLED,
    `request not received in time (HEADERS_TIMEOUT_MS ${headersTimeoutMs} ms for the head, REQUEST_READ_TIMEOUT_MS ${requestTimeoutMs} ms for all of it)`,
    408,
  );
}

/** Timeouts and JSON answers on the server. Call before the app attaches its own listeners, so a
 *  timed-out request gets its 408 here first (the app's clientError handler then finds the socket
 *  already ended and only destroys it). */
export function hardenServer(server: http.Server, limits: ServerLimits): void {
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxHeadersCount = MAX_HEADERS;
  // No inactivity timeout: streams may rightly be idle for a long time.
  server.setTimeout(0);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT' || !socket.writable) return;
    // A pipelined request timed out while an earlier answer is still being sent: an error written now
    // would land inside that answer, so the connection just ends (as Node itself does).
    if ((socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent) {
      socket.destroy();
      return;
    }
    closeLingering(socket, rawJsonResponse(requestTimedOut(limits.headersTimeoutMs, limits.requestReadTimeoutMs)));
  });
  // Without a listener Node answers an unknown Expect with an empty 417, and drops CONNECT silently.
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.shouldKeepAlive = false;
    sendError(res, new GatewayError(GrpcCode.FAILED_PRECONDITION, `unsupported Expect header: ${String(req.headers.expect).slice(0, 100)}`, 417));
  });
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end(rawJsonResponse(new GatewayError(GrpcCode.UNIMPLEMENTED, 'method CONNECT is not allowed: this is not a proxy', 405)));
  });
}

/** Lingering close (RFC 9112 §9.6): after the server's last answer, what the client still sends is read
 *  and dropped, for at most LINGER_BYTES (then no more is read) and LINGER_MS from the moment that answer
 *  is sent, and then the socket is destroyed. Closing at once with unread data would reset the connection, and a client still
 *  sending (a body behind a refused head) would often lose the answer to that reset. */
export const LINGER_MS = 2_000;
export const LINGER_BYTES = 4 * 1024 * 1024;

/** Connections being closed by closeLingering: nothing more is parsed or answered on them. */
const lingering = new WeakSet<Duplex>();

function isLingering(socket: Duplex): boolean {
  return lingering.has(socket);
}

/** Stops whoever reads `socket` (Node's parser, the fast lane) from seeing anything more: what arrives
 *  from now on is dropped; past LINGER_BYTES reading stops and the socket is destroyed LINGER_MS later.
 *  Once only. */
function dropInput(socket: Duplex): void {
  if (lingering.has(socket)) return;
  lingering.add(socket);
  const readers = socket.listeners('data') as Array<(chunk: Buffer) => void>;
  let dropped = 0;
  // Added before the others go: on a socket Node's parser reads straight from the handle, a 'data'
  // listener makes the parser give the handle back (and so stop reading it).
  socket.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped <= LINGER_BYTES || socket.isPaused()) return;
    // Enough read: reading stops, so TCP holds the client back, and the socket is destroyed LINGER_MS
    // later. Destroying it now would reset the connection while our answer may still sit unread in the
    // client's receive buffer, which a reset empties (as Go's server waits before its close).
    socket.pause();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  });
  for (const reader of readers) socket.removeListener('data', reader);
  socket.on('error', () => socket.destroy());
  socket.resume();
}

/** Sends `last` (if any), ends the connection (unless it is ended already) and lingers: the client's
 *  end, or LINGER_MS after our end was sent, closes the socket; past LINGER_BYTES it is no longer read. */
export function closeLingering(socket: Duplex, last?: string): void {
  dropInput(socket);
  let timer: NodeJS.Timeout | undefined;
  const linger = (): void => {
    timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
  };
  if (socket.writableFinished) linger();
  else socket.once('finish', linger);
  socket.once('close', () => clearTimeout(timer));
  if (!socket.writableEnded) socket.end(last);
}

/** Runs `then` once every answer owed on the connection has been written (or the connection is gone):
 *  Node answers pipelined requests one after another through socket._httpMessage. */
function whenAnswered(socket: Duplex, then: () => void): void {
  const res = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
  if (!res || socket.destroyed) return then();
  let called = false;
  const next = (): void => {
    if (called) return;
    called = true;
    // Node has moved to the next answer owed by the time 'finish' reaches this listener.
    if (socket.destroyed || (socket as { _httpMessage?: unknown })._httpMessage === res) return then();
    whenAnswered(socket, then);
  };
  res.once('finish', next);
  res.once('close', next);
}

/** Node's parser refused what came after the requests it read: a head over MAX_HEADER_BYTES (431),
 *  garbage or bad framing (400). Nothing more is read; the answers still owed on the connection are
 *  written first, in order, and the refusal after them — never inside one (a watch stream's chunked
 *  body), and not at all when the connection is already ending (the client asked to close: bytes
 *  after that request are ignored). Then the connection closes by lingering. */
export function refuseMalformed(err: NodeJS.ErrnoException, socket: Socket): void {
  if (isLingering(socket) || socket.destroyed) return;
  // Already ending (Node answered a request that asked to close): only what follows is dropped.
  if (!socket.writable) return closeLingering(socket);
  dropInput(socket);
  whenAnswered(socket, () => {
    if (socket.destroyed) return;
    if (!socket.writable || err.code === 'HPE_CLOSED_CONNECTION') return closeLingering(socket);
    const e =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new GatewayError(GrpcCode.INVALID_ARGUMENT, 'request head (request line and headers) is larger than MAX_HEADER_BYTES', 431)
        : new GatewayError(GrpcCode.INVALID_ARGUMENT, `malformed HTTP request: ${err.code ?? err.message}`);
    closeLingering(socket, rawJsonResponse(e));
  });
}

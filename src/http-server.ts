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
//   the request would run as an empty message instead of the one sent.

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError, GrpcCode } from './errors';
import { rawJsonResponse, sendError } from './api/router';

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

/** Wraps the app: a request with MAX_HEADERS headers or more gets a 431, an HTTP/1.1 request without
 *  a Host header a 400 (RFC 9112 §3.2), both in JSON and on a connection that then closes. */
export function checkRequests(app: http.RequestListener): http.RequestListener {
  return (req, res) => {
    let refusal: GatewayError | undefined;
    if (req.rawHeaders.length >= 2 * MAX_HEADERS) {
      refusal = new GatewayError(GrpcCode.INVALID_ARGUMENT, `request has ${MAX_HEADERS} headers or more`, 431);
    } else if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      refusal = new GatewayError(GrpcCode.INVALID_ARGUMENT, 'HTTP/1.1 request without a Host header');
    }
    if (!refusal) return app(req, res);
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
    socket.end(rawJsonResponse(requestTimedOut(limits.headersTimeoutMs, limits.requestReadTimeoutMs)));
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

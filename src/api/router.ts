// The route table follows openapi.yaml: every POST operation is served under /v3/, /v3beta/ and
// /v3alpha/ by one pipeline — read the body, parse it losslessly, validate it against the operation's
// schema, decode it, call etcd, encode the answer as etcd's gateway does.

import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import type { Readable } from 'node:stream';
import type { ApiSpec, Operation } from '../core/contract/spec';
import type { Cancellation } from '../etcd/unary-channel';
import { etcdMetadata, type Guard, type RequestContext, type RequestHead, type UnaryHandler } from '../core/context';
import type { EtcdClient } from '../etcd/client';
import { decode, encode, normalizeNames } from '../core/contract/codec';
import { parseJson, parseJsonSequence, DuplicateKeyError, JsonSyntaxError } from '../protocol/json/parse';
import { GatewayError, GrpcCode, invalidArgument, fromGrpcError } from '../core/errors';
import type { ObjectShape } from '../core/contract/shape';

/** Every API path is reachable under these prefixes; the spec lists the /v3/ form. */
export const API_PREFIXES = ['/v3', '/v3beta', '/v3alpha'] as const;
/** A path under one of API_PREFIXES; group 1 is the rest, from its slash. */
export const API_PREFIX = new RegExp(`^(?:${API_PREFIXES.join('|')})(/.*)$`);

export interface Route {
  operation: Operation;
  serve(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

/** The X-Request-Id of an API request, kept on its response until the headers are written: sendJson
 *  puts it in its header list and streams call stampRequestId. Setting it up front with setHeader made
 *  Node build a header object for every response and merge writeHead's headers into it, 2–5 µs a
 *  request; with a plain list and nothing set before, writeHead takes the list as it is. */
const REQUEST_ID = Symbol('X-Request-Id');
type WithRequestId = ServerResponse & { [REQUEST_ID]?: string };

/** Keeps an API request's id on its response, for sendJson or stampRequestId to write. */
export function keepRequestId(res: ServerResponse, id: string): void {
  (res as WithRequestId)[REQUEST_ID] = id;
}

/** Sets a kept X-Request-Id as an ordinary header, for answers whose headers are not written by sendJson. */
export function stampRequestId(res: ServerResponse): void {
  const id = (res as WithRequestId)[REQUEST_ID];
  if (id !== undefined && !res.headersSent) res.setHeader('X-Request-Id', id);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, extraHeaders?: Record<string, string>): void {
  const text = JSON.stringify(body);
  if (unreadBodies.has(res.req)) res.shouldKeepAlive = false;
  const headers = ['Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(text))];
  const id = (res as WithRequestId)[REQUEST_ID];
  if (id !== undefined) headers.push('X-Request-Id', id);
  if (extraHeaders) for (const name in extraHeaders) headers.push(name, extraHeaders[name]);
  res.writeHead(status, headers);
  res.end(text);
}

/** A whole HTTP/1.1 answer for a socket, for refusals made before there is a request to answer
 *  (a WebSocket upgrade, a connection over the limit, a head the parser refused). */
export function rawJsonResponse(err: GatewayError, headers?: Record<string, string>): string {
  const body = JSON.stringify(err.body());
  let extra = '';
  if (headers) for (const name in headers) extra += `${name}: ${headers[name]}\r\n`;
  return (
    `HTTP/1.1 ${err.httpStatus} ${STATUS_CODES[err.httpStatus] ?? ''}\r\nContent-Type: application/json\r\n${extra}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

export function sendError(res: ServerResponse, err: unknown, extraHeaders?: Record<string, string>): void {
  const e = err instanceof GatewayError ? err : fromGrpcError(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.httpStatus, e.body(), extraHeaders);
}

/** A body's JSON, parsed by `parse`; a syntax error is the client's: 400 naming it. */
function parsedBody<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    // A repeated key is well-formed JSON whose meaning parsers disagree on: refused, by its pointer.
    if (e instanceof DuplicateKeyError) throw invalidArgument(e.message);
    if (e instanceof JsonSyntaxError) throw invalidArgument(`request body is not valid JSON: ${e.message}`);
    throw e;
  }
}

/** A body that is empty or `null` is the empty message, as in etcd's gateway. */
export function parseBody(raw: Buffer): Record<string, unknown> {
  const text = raw.toString('utf8');
  if (text.trim() === '') return {};
  const value = parsedBody(() => parseJson(text));
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgument(`request body must be a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as Record<string, unknown>;
}

const BODY_TOO_LARGE = (limit: number): GatewayError =>
  new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `request body is larger than the limit of ${limit} bytes`, 413);

/** A compressed body is inflated (gzip, deflate), its inflated size held to the limit; others are refused. */
function bodySource(req: IncomingMessage): Readable {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding === 'identity') return req;
  if (encoding === 'gzip' || encoding === 'x-gzip') return req.pipe(zlib.createGunzip());
  if (encoding === 'deflate') return req.pipe(zlib.createInflate());
  throw new GatewayError(GrpcCode.INVALID_ARGUMENT, `unsupported Content-Encoding "${encoding}" (use gzip, deflate or none)`, 415);
}

/** Requests whose body readBody gave up on part-way: no more of it is read, so the next request on their
 *  connection could never be — their answer says `Connection: close`, and the connection is closed. */
const unreadBodies = new WeakSet<IncomingMessage>();

/** The whole request body, at most `maxBodyBytes`. The Content-Type is ignored, as etcd's gateway does
 *  (`curl -d` sends form encoding). A declared length over the limit is refused before any is read (Node
 *  reads and drops such a body after the answer).
 *
 *  A body refused part-way (over the limit once read or inflated, or not decodable) is rejected only once
 *  the rest of it has been read and dropped, up to `maxBodyBytes` more (wire) bytes: a body up to twice
 *  the limit leaves a connection that can carry the next request. A keep-alive answer with the
 *  rest left unread let a client that was done sending (the rest in socket buffers) reuse the connection
 *  while the server was still inside the old body: its next request was never read, and at
 *  REQUEST_READ_TIMEOUT_MS the gateway's 408 (`Connection: close`, with a body) became its answer — one
 *  a HEAD cannot even parse (HPE_CLOSED_CONNECTION). Past the drain limit the reading stops and the
 *  answer closes the connection. */
export function readBody(req: IncomingMessage, maxBodyBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBodyBytes) return Promise.reject(BODY_TOO_LARGE(maxBodyBytes));
  // A request the fast lane read whole carries its body (fast-lane.ts, LaneRequest).
  const read = (req as { laneBody?: Buffer }).laneBody;
  if (read) return Promise.resolve(read);
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    let source: Readable;
    try {
      source = bodySource(req);
    } catch (e) {
      return reject(e as Error);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      source.removeListener('data', onData);
      source.removeListener('end', onEnd);
      source.removeListener('error', onError);
      req.removeListener('error', onReqError);
      req.removeListener('close', onClose);
    };
    /** Stops collecting; `err` is the answer once the rest of the body is read and dropped. */
    const refuse = (err: GatewayError): void => {
      cleanup();
      if (source !== req) {
        req.unpipe();
        // What the decoder still holds is dropped, and whatever it would say about it too.
        source.on('error', () => undefined);
        source.destroy();
      }
      if (req.readableEnded) return reject(err);
      let dropped = 0;
      const done = (): void => {
        req.removeListener('data', drop);
        req.removeListener('end', done);
        req.removeListener('error', done);
        req.removeListener('close', done);
        if (!req.readableEnded) {
          req.pause();
          unreadBodies.add(req);
        }
        reject(err);
      };
      const drop = (chunk: Buffer): void => {
        dropped += chunk.length;
        if (dropped > maxBodyBytes) done();
      };
      req.on('data', drop);
      req.on('end', done);
      req.on('error', done);
      req.on('close', done);
      req.resume();
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBodyBytes) return refuse(BODY_TOO_LARGE(maxBodyBytes));
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const unreadable = (err: Error): GatewayError => invalidArgument(`request body could not be read: ${err.message}`);
    // The decoder's error (not gzip, truncated...): the connection is fine, the rest of the body is dropped.
    const onError = (err: Error): void => (source === req ? onReqError(err) : refuse(unreadable(err)));
    const onReqError = (err: Error): void => {
      cleanup();
      reject(unreadable(err));
    };
    const onClose = (): void => {
      if (req.readableEnded) return;
      cleanup();
      reject(new GatewayError(GrpcCode.CANCELLED, 'the client closed the connection before sending the whole body', 499));
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    if (source !== req) req.on('error', onReqError);
    req.on('close', onClose);
  });
}

/** A body of concatenated JSON values (streaming endpoints take several requests in one body). */
export async function readJsonSequence(req: IncomingMessage, maxBodyBytes: number): Promise<unknown[]> {
  const text = (await readBody(req, maxBodyBytes)).toString('utf8');
  return parsedBody(() => parseJsonSequence(text));
}

/** A unary operation's whole pipeline after the body is read: parse, validate, decode, check access,
 *  call etcd, encode. Resolves to the answer's JSON value; rejects with what the client is told. Node's
 *  requests (serve) and the fast lane's (src/protocol/http1/lane.ts) both run it. */
export type UnaryCall = (raw: Buffer, head: RequestHead, signal: Cancellation) => Promise<unknown>;

export interface UnaryRoute extends Route {
  call: UnaryCall;
}

export function unaryRoute(
  spec: ApiSpec,
  operation: Operation,
  handler: UnaryHandler,
  etcd: EtcdClient,
  maxBodyBytes: number,
  guard?: Guard,
  /** For a call that waits by design: takes one of its client's places (throws 429 when there is
   *  none) and returns its release, called once the call is over. */
  hold?: (head: RequestHead) => () => void,
): UnaryRoute {
  if (!operation.requestSchema || !operation.responseSchema) {
    throw new Error(`operation ${operation.operationId} needs request and response schemas`);
  }
  const requestName = operation.requestSchema;
  const requestShape: ObjectShape = spec.requestShape(requestName);
  const responseShape: ObjectShape = spec.shapes.objectComponent(operation.responseSchema);
  const call: UnaryCall = async (raw, head, signal) => {
    const body = parseBody(raw);
    normalizeNames(requestShape, body);
    spec.check(requestName, body);
    const ctx: RequestContext = { etcd, signal, metadata: etcdMetadata(head.headers) };
    const request = decode(requestShape, body);
    if (guard) {
      // The decoded request is what is checked and what is sent: nothing changes it in between.
      const admitted = guard(head, operation.operationId, request);
      if (admitted) await admitted;
      ctx.readable = (key) => guard.readable(head, key);
    }
    const release = hold?.(head);
    try {
      return encode(responseShape, await handler(request, ctx));
    } finally {
      release?.();
    }
  };
  return {
    operation,
    call,
    async serve(req, res) {
      const hangup = new Hangup();
      res.on('close', () => {
        if (!res.writableFinished) hangup.abort();
      });
      try {
        sendJson(res, 200, await call(await readBody(req, maxBodyBytes), req, hangup));
      } catch (err) {
        sendError(res, err);
      }
    },
  };
}

/** The HTTP client went away: a Cancellation for the etcd calls made on its behalf. An AbortController
 *  per request cost about 4 % of the gateway's CPU (an EventTarget, its symbols and a GC'd signal);
 *  this is a flag and, while a call waits, one listener. */
export class Hangup implements Cancellation {
  aborted = false;
  private listeners?: Array<() => void>;

  addEventListener(_type: 'abort', listener: () => void): void {
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const at = this.listeners?.indexOf(listener) ?? -1;
    if (at >= 0) this.listeners?.splice(at, 1);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }
}

export function notFound(req: IncomingMessage): GatewayError {
  return new GatewayError(GrpcCode.NOT_FOUND, `no such route: ${req.method} ${(req.url ?? '').split('?')[0]}`, 404);
}

export function methodNotAllowed(req: IncomingMessage, allowed: string): GatewayError {
  return new GatewayError(
    GrpcCode.UNIMPLEMENTED,
    `method ${req.method} is not allowed on ${(req.url ?? '').split('?')[0]}: use ${allowed}`,
    405,
  );
}

// The /v1/ route table follows openapi.yaml as the /v3/ one does: every operation under /v1/ is
// served by the handler of its operationId. Paths are templates: a parameter at the end of a template
// (`/v1/kv/{key}`) takes the whole rest of the path, slashes included, so any key is reachable; one in
// the middle (`/v1/leases/{id}/keepalive`) takes one segment. Errors are RFC 9457 problems.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import type { Operation } from '../../core/contract/spec';
import { etcdMetadata, type Guard } from '../../core/context';
import { Hangup } from '../router';
import type { EtcdClient } from '../../etcd/client';
import { GatewayError, GrpcCode } from '../../core/errors';
import { ProblemError, problem, problemFromError, sendProblem } from './problem';

const ETCD_TOO_LARGE = 'etcdserver: request is too large';

/** Where the /v1/ API lives; everything under it is this router's. */
export const V1_PREFIX = '/v1/';

/** What a /v1/ handler gets: the request, its path parameters (still percent-encoded) and query, and
 *  the shared core (etcd, credentials, the client's lifetime, access control). */
export interface V1Request {
  req: IncomingMessage;
  res: ServerResponse;
  operationId: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The query as sent (percent-encoded), for parameters that are bytes. */
  search: string;
  etcd: EtcdClient;
  metadata?: grpc.Metadata;
  signal: Hangup;
  /** Aborted when the gateway stops: requests that wait by design (?wait) answer at once. */
  closing: Hangup;
  guard?: Guard;
}

/** A /v1/ handler writes its own answer (raw bytes, JSON, 304...) and throws what the client is told. */
export type V1Handler = (r: V1Request) => Promise<void>;

interface Template {
  path: string;
  pattern: RegExp;
  names: string[];
  byMethod: Map<string, Route>;
}

interface Route {
  operationId: string;
  handler: V1Handler;
  /** The query parameters openapi.yaml lists for the operation: any other is a 400. */
  known: Set<string>;
  /** A stream (the watch): no HEAD, which would hold it open and never be answered. */
  stream: boolean;
}

/** A matched request: its operation (for metrics and logs) and how to serve it. */
export interface V1Match {
  operationId: string;
  serve(req: IncomingMessage, res: ServerResponse): void;
}

function compile(path: string): { pattern: RegExp; names: string[] } {
  const names: string[] = [];
  const parts = path.split(/(\{[^}]+\})/);
  let source = '';
  parts.forEach((part, i) => {
    const param = /^\{([^}]+)\}$/.exec(part);
    if (!param) return void (source += part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'));
    names.push(param[1]);
    source += i === parts.length - 2 && parts[parts.length - 1] === '' ? '(.*)' : '([^/]+)';
  });
  return { pattern: new RegExp(`^${source}$`), names };
}

export class V1Router {
  private readonly templates: Template[] = [];
  private readonly closing = new Hangup();

  constructor(
    operations: Operation[],
    handlers: Record<string, V1Handler>,
    private readonly deps: { etcd: EtcdClient; guard?: Guard },
  ) {
    const byPath = new Map<string, Template>();
    for (const op of operations) {
      const handler = handlers[op.operationId];
      if (!handler) throw new Error(`no handler for operation ${op.operationId}`);
      let t = byPath.get(op.path);
      if (!t) {
        t = { path: op.path, ...compile(op.path), byMethod: new Map() };
        byPath.set(op.path, t);
        this.templates.push(t);
      }
      t.byMethod.set(op.method.toUpperCase(), { operationId: op.operationId, handler, known: new Set(op.queryParameters), stream: op.stream !== undefined });
    }
    // The template with more literal text is tried first: `/v1/leases/{id}/keepalive` before
    // `/v1/leases/{id}`, whose trailing parameter would also match it.
    const literal = (t: Template): number => t.path.replace(/\{[^}]+\}/g, '').length;
    this.templates.sort((a, b) => literal(b) - literal(a));
  }

  /** The operation a request is for, and how to serve it: a path no template matches is a 404, a
   *  matching path with another method a 405 naming the methods it has (both counted as 'other'). */
  match(method: string, path: string, search: string): V1Match {
    for (const t of this.templates) {
      const m = t.pattern.exec(path);
      if (!m) continue;
      const route = t.byMethod.get(method === 'HEAD' ? 'GET' : method);
      if (route?.stream && method === 'HEAD') {
        // A stream's headers come with its first message, and it stays open: a HEAD would hold a watch
        // and never be answered.
        return {
          operationId: 'other',
          serve: (_req, res) => sendProblem(res, problem(405, `method HEAD is not allowed on ${path}: a watch is a stream, use GET`), { Allow: 'GET' }),
        };
      }
      if (!route) {
        const allow = [...t.byMethod.keys()].join(', ');
        return {
          operationId: 'other',
          serve: (_req, res) =>
            sendProblem(res, problem(405, `method ${method} is not allowed on ${path}: use ${allow}`), { Allow: allow }),
        };
      }
      const params: Record<string, string> = {};
      t.names.forEach((name, i) => (params[name] = m[i + 1]));
      return { operationId: route.operationId, serve: (req, res) => void this.serve(req, res, route, params, search) };
    }
    return { operationId: 'other', serve: (_req, res) => sendProblem(res, problem(404, `no such route: ${method} ${path}`)) };
  }

  /** The gateway stops: waiting reads answer now (304), so the server can close. */
  close(): void {
    this.closing.abort();
  }

  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    params: Record<string, string>,
    search: string,
  ): Promise<void> {
    const signal = new Hangup();
    res.on('close', () => {
      if (!res.writableFinished) signal.abort();
    });
    try {
      const metadata = etcdMetadata(req.headers);
      const query = new URLSearchParams(search);
      for (const name of query.keys()) {
        if (!route.known.has(name)) throw badRequest(`query parameter ${JSON.stringify(name.slice(0, 40))}: unknown for ${route.operationId} (it takes ${[...route.known].join(', ') || 'none'})`);
      }
      await route.handler({
        req,
        res,
        operationId: route.operationId,
        params,
        query,
        search,
        etcd: this.deps.etcd,
        metadata,
        signal,
        closing: this.closing,
        guard: this.deps.guard,
      });
    } catch (err) {
      if (err instanceof ProblemError) sendProblem(res, err.problem, err.headers);
      else if (err instanceof GatewayError && err.code === GrpcCode.RESOURCE_EXHAUSTED && err.message === ETCD_TOO_LARGE) {
        // etcd's --max-request-bytes, not a rate: the request is too large, not too frequent.
        sendProblem(res, problem(413, `${err.message}: etcd refuses requests over its --max-request-bytes`, { code: err.code }));
      } else sendProblem(res, problemFromError(err));
    }
  }
}

/** A client's mistake in a parameter or header: 400, naming it. */
export function badRequest(detail: string): GatewayError {
  return new GatewayError(GrpcCode.INVALID_ARGUMENT, detail);
}

/** Writes a whole answer; a HEAD gets the headers only. */
export function reply(r: V1Request, status: number, headers: Record<string, string>, body?: Buffer | string): void {
  // A string body goes out in one write with the headers (Node joins them); a Buffer takes a writev.
  if (body !== undefined) headers['Content-Length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
  r.res.writeHead(status, headers);
  if (body !== undefined && r.req.method !== 'HEAD') r.res.end(body);
  else r.res.end();
}

export function replyJson(r: V1Request, status: number, body: unknown, headers: Record<string, string> = {}): void {
  headers['Content-Type'] = 'application/json';
  reply(r, status, headers, JSON.stringify(body));
}

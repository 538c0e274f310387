// Builds the HTTP application from the contract, the configuration and an etcd handle, without
// listening, so tests build it in-process and main.ts only adds a socket and signals.

import express from 'express';
import swaggerUi from 'swagger-ui-express';
import { ApiSpec, type Operation } from '../core/contract/spec';
import { kvHandlers } from '../api/v3/kv';
import { leaseHandlers } from '../api/v3/lease';
import { clusterHandlers } from '../api/v3/cluster';
import { maintenanceHandlers } from '../api/v3/maintenance';
import { authHandlers } from '../api/v3/auth';
import { lockHandlers } from '../api/v3/lock';
import { keepAliveRoute, serverStreamRoute } from '../api/v3/stream-routes';
import { KeepAliveHub } from '../core/keepalive';
import { gatewayHandlers, type HttpHandler } from '../api/ops/handlers';
import type { Guard, RequestHead, UnaryHandler } from '../core/context';
import { API_PREFIX, API_PREFIXES, keepRequestId, methodNotAllowed, notFound, rawJsonResponse, sendError, unaryRoute, type Route } from '../api/router';
import { FastLane, type LaneRoute, type LaneStats } from '../protocol/http1/lane';
import { MessageCodec, watchRoute, type StreamLimits } from '../api/v3/watch';
import type { EtcdClient } from '../etcd/client';
import { WatchHub } from '../core/watch/hub';
import { attachWebSockets } from '../api/ws/websocket';
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { closeLingering, refuseMalformed } from './http-server';
import { GatewayError, GrpcCode } from '../core/errors';
import { randomUUID } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { Metrics } from '../core/observability/metrics';
import { cors } from './cors';
import { rateLimit } from '../core/security/rate-limit';
import { Admission } from '../core/admission';
import { accessGuard, type AccessPolicy } from '../core/security/access';
import { V1_PREFIX, V1Router, type V1Handler, type V1Match } from '../api/v1/router';
import { v1Handlers } from '../api/v1/handlers';
import { consoleRoutes } from '../api/ops/console';
import { problemFromError, sendProblem } from '../api/v1/problem';

export interface StreamSettings {
  watchStreams: number;
  maxWatchesPerConnection: number;
  maxWatchConnections: number;
  sendBufferBytes: number;
  pingIntervalMs: number;
  /** Interval of the comment line that keeps an idle SSE watch open through proxies. */
  watchHeartbeatMs: number;
  /** Per-client caps (admission.ts): open streams, watches, keepalives in flight. Absent or 0: none
   *  (main.ts always sets them, from the configuration's defaults). */
  maxStreamsPerClient?: number;
  maxWatchesPerClient?: number;
  maxKeepalivesPerClient?: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
  watchStreams: 4,
  maxWatchesPerConnection: 1000,
  maxWatchConnections: 10_000,
  sendBufferBytes: 4 * 1024 * 1024,
  pingIntervalMs: 30_000,
  watchHeartbeatMs: 15_000,
};

export interface AppOptions {
  etcd: EtcdClient;
  /** Request logs (one line per request: id, operation, status, duration; never keys, values or tokens). */
  logger?: Logger;
  maxBodyBytes: number;
  /** Longest wait of a lock or a campaign (default 60 s). */
  lockWaitMs?: number;
  /** Origins allowed from browsers; absent or empty: no CORS. */
  corsOrigins?: string[];
  /** Requests per second per client address on the API; absent or 0: no limit. */
  rateLimit?: { rate: number; burst: number };
  /** Gateway access control; absent: off. */
  access?: AccessPolicy;
  /** Open TCP connections accepted (default 10,000); past it: 503 and the connection is closed. */
  maxConnections?: number;
  /** Plain-HTTP connections read by the fast lane first (default); false: all of them by Node's server. */
  fastLane?: boolean;
  streams?: StreamSettings;
  spec?: ApiSpec;
  /** The web console under /ui/ (default on). */
  ui?: boolean;
}

export interface Gateway {
  /** The request listener for an HTTP(S) server: API routes directly, everything else through `app`. */
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  app: express.Express;
  hub: WatchHub;
  keepalive: KeepAliveHub;
  metrics: Metrics;
  /** Adds the WebSocket endpoints and the fast lane (plain HTTP) to the server the app is mounted on. */
  attach(server: http.Server): void;
  /** What the fast lane did, once attached to a plain-HTTP server (undefined otherwise). */
  laneStats(): LaneStats | undefined;
  /** Ends HTTP streams, answers /v1/ reads waiting for a change (304), closes WebSockets (1001) and
   *  every etcd stream; unary requests in flight go on. */
  close(): void;
}

type StreamRouteFactory = (op: Operation) => Route;

/** Swagger UI's page: its scripts, styles and requests from this origin only, no framing. Its page
 *  and the UI it renders use inline styles; images are its own and the data: icons of its stylesheet. */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "object-src 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The /v1/ operations the fast lane serves (fast-lane.ts): GET, PUT and DELETE of keys. */
const LANE_V1_OPERATIONS = new Set(['V1_KvGet', 'V1_KvPut', 'V1_KvDelete']);
const V1_KV_PREFIX = '/v1/kv/';

/** The path of a request target: origin form (`/v3/kv/range?x`), or absolute form
 *  (`http://host/v3/kv/range`), which HTTP/1.1 servers must accept too. */
function requestPath(target: string): string {
  if (!target.startsWith('/')) {
    try {
      return new URL(target).pathname;
    } catch {
      return target;
    }
  }
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/** The query of a request target, without its `?` ('' when there is none). */
function querySearch(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? '' : target.slice(q + 1);
}



/** Every handler by operationId; a test checks it against the operations of openapi.yaml. */
export function handlerTable(
  etcd: EtcdClient,
  streams: { hub: WatchHub; keepalive: KeepAliveHub; spec: ApiSpec; limits: StreamLimits; maxBodyBytes: number; metrics: Metrics; guard?: Guard; watchHeartbeatMs?: number; admission?: Admission },
  lockWaitMs = 60_000,
): { unary: Record<string, UnaryHandler>; stream: Record<string, StreamRouteFactory>; http: Record<string, HttpHandler>; v1: Record<string, V1Handler> } {
  const { hub, keepalive, spec, limits, maxBodyBytes, metrics, guard } = streams;
  const admission = streams.admission ?? new Admission({ clientOf: () => '' });
  const codec = (request: string, response: string): MessageCodec => new MessageCodec(spec, request, response);
  return {
    unary: { ...kvHandlers, ...leaseHandlers, ...clusterHandlers, ...maintenanceHandlers, ...authHandlers, ...lockHandlers(lockWaitMs) },
    stream: {
      Watch_Watch: (op) => watchRoute(op, hub, codec('WatchRequest', 'WatchResponse'), limits, maxBodyBytes, admission, guard),
      Lease_LeaseKeepAlive: (op) => keepAliveRoute(op, keepalive, codec('LeaseKeepAliveRequest', 'LeaseKeepAliveResponse'), maxBodyBytes, admission, guard),
      Maintenance_Snapshot: (op) => serverStreamRoute(op, etcd, 'Maintenance', 'Snapshot', codec('Empty', 'SnapshotResponse'), maxBodyBytes, guard),
      Election_Observe: (op) => serverStreamRoute(op, etcd, 'Election', 'Observe', codec('LeaderRequest', 'LeaderResponse'), maxBodyBytes, guard),
    },
    http: gatewayHandlers(etcd, hub, metrics),
    v1: v1Handlers({
      hub,
      keepalive,
      maxBodyBytes,
      lockWaitMs,
      limits,
      admission,
      maxWatchConnections: limits.maxConnections,
      watchHeartbeatMs: streams.watchHeartbeatMs ?? DEFAULT_STREAM_SETTINGS.watchHeartbeatMs,
    }),
  };
}

/** Calls that wait by design (for a lock, for leadership: up to LOCK_WAIT_MS), each holding a wait in
 *  etcd: they count as one of their client's streams while they wait (MAX_STREAMS_PER_CLIENT). */
const WAITING_CALLS = new Set(['Lock_Lock', 'Election_Campaign', 'V1_LockAcquire']);

export function buildGateway(opts: AppOptions): Gateway {
  const spec = opts.spec ?? new ApiSpec();
  const streams = opts.streams ?? DEFAULT_STREAM_SETTINGS;
  const hub = new WatchHub(opts.etcd, { streams: streams.watchStreams, maxWatchesPerConnection: streams.maxWatchesPerConnection });
  const keepalive = new KeepAliveHub(opts.etcd, opts.etcd.options.requestTimeoutMs);
  const limits = { maxConnections: streams.maxWatchConnections, sendBufferBytes: streams.sendBufferBytes };
  const metrics = new Metrics({ hub, keepalive });
  opts.etcd.observer = (service, method, code, seconds) => metrics.etcdCall(service, method, code, seconds);
  const guard = opts.access ? accessGuard(opts.access, opts.etcd) : undefined;
  // A client is its access-control identity when there is one, else its address: the key of its rate
  // and of every per-client cap.
  const clientOf = (req: RequestHead): string => {
    try {
      if (opts.access) return `client:${opts.access.clientOf(req).name}`;
    } catch {
      // unidentified: counted by address
    }
    return req.socket.remoteAddress ?? '';
  };
  const admission = new Admission({
    clientOf,
    rate: opts.rateLimit?.rate ? rateLimit(opts.rateLimit) : undefined,
    caps: { streams: streams.maxStreamsPerClient, watches: streams.maxWatchesPerClient, keepalives: streams.maxKeepalivesPerClient },
  });
  const limit = admission.rateLimited ? (req: RequestHead) => admission.charge(req) : undefined;
  const handlers = handlerTable(
    opts.etcd,
    { hub, keepalive, spec, limits, maxBodyBytes: opts.maxBodyBytes, metrics, guard, watchHeartbeatMs: streams.watchHeartbeatMs, admission },
    opts.lockWaitMs,
  );
  const log = opts.logger ?? pino({ level: 'silent' });
  const logRequests = log.isLevelEnabled('info');
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  // Streams still open are ended at shutdown; unary requests are left to finish.
  const openStreams = new Set<ServerResponse>();
  const routeOf = new Map<string, string>();
  for (const op of spec.operations) for (const p of [op.path, ...op.aliases]) routeOf.set(p, op.operationId);

  const corsCheck = opts.corsOrigins?.length ? cors(opts.corsOrigins) : undefined;

  const apiRoutes = new Map<string, Route>();
  /** The unary routes under every API prefix, for the fast lane. */
  const laneRoutes = new Map<string, LaneRoute>();
  for (const op of spec.operations) {
    if (op.method === 'post') {
      const stream = handlers.stream[op.operationId];
      const unary = handlers.unary[op.operationId];
      if (op.stream ? !stream : !unary) throw new Error(`no handler for operation ${op.operationId}`);
      if (op.stream) {
        const route = stream(op);
        for (const p of [op.path, ...op.aliases]) apiRoutes.set(p, route);
      } else {
        // A call that waits by design holds one of its client's streams while it waits, on either path.
        const hold = WAITING_CALLS.has(op.operationId) ? (head: RequestHead) => admission.openStream(head) : undefined;
        const route = unaryRoute(spec, op, unary, opts.etcd, opts.maxBodyBytes, guard, hold);
        const lane: LaneRoute = { operationId: op.operationId, call: route.call };
        for (const p of [op.path, ...op.aliases]) {
          apiRoutes.set(p, route);
          for (const prefix of API_PREFIXES) laneRoutes.set(`${prefix}${p.slice(3)}`, lane);
        }
      }
    } else {
      const handler = handlers.http[op.operationId];
      if (!handler) throw new Error(`no handler for operation ${op.operationId}`);
      app.get(op.path, (req, res) => void handler(req, res));
      app.all(op.path, (req, res) => sendError(res, methodNotAllowed(req, 'GET'), { Allow: 'GET' }));
    }
  }

  const v1 = new V1Router(spec.v1Operations, handlers.v1, { etcd: opts.etcd, guard });
  const v1Streams = new Set(spec.v1Operations.filter((op) => op.stream).map((op) => op.operationId));

  /** A /v1/ request: the same rate limit and identity check as /v3/, then its route's own checks. */
  const serveV1 = (req: IncomingMessage, res: ServerResponse, match: V1Match): void => {
    const limited = limit?.(req);
    if (limited) return sendProblem(res, problemFromError(limited.error), limited.headers);
    if (guard) {
      try {
        guard(req);
      } catch (err) {
        return sendProblem(res, problemFromError(err));
      }
    }
    // Streams (the watch) are ended at shutdown, so that an EventSource reconnects to another replica.
    const stream = v1Streams.has(match.operationId);
    // A blocking read (?wait) holds a watch for minutes as a stream does: it counts as one of its
    // client's streams too (its shutdown is its own: the router answers it 304).
    const url = req.url ?? '';
    const waits = WAITING_CALLS.has(match.operationId) || (match.operationId === 'V1_KvGet' && url.includes('wait') && new URLSearchParams(querySearch(url)).has('wait'));
    if (stream || waits) {
      let release;
      try {
        release = admission.openStream(req);
      } catch (err) {
        return sendProblem(res, problemFromError(err));
      }
      if (stream) openStreams.add(res);
      res.once('close', () => {
        openStreams.delete(res);
        release();
      });
    }
    match.serve(req, res);
  };

  /** An API request (a path under /v3/, /v3beta/ or /v3alpha/): served here, without express. */
  const serveApi = (req: IncomingMessage, res: ServerResponse, apiPath: string): void => {
    const limited = limit?.(req);
    if (limited) return sendError(res, limited.error, limited.headers);
    const route = apiRoutes.get(apiPath);
    if (!route) return sendError(res, notFound(req));
    if (req.method !== 'POST') return sendError(res, methodNotAllowed(req, 'POST'), { Allow: 'POST' });
    if (guard) {
      // Who is asking is settled before the body is even read: no detail reaches an unknown client.
      try {
        guard(req);
      } catch (err) {
        return sendError(res, err);
      }
    }
    if (route.operation.stream) {
      let release;
      try {
        release = admission.openStream(req);
      } catch (err) {
        return sendError(res, err);
      }
      openStreams.add(res);
      res.once('close', () => {
        openStreams.delete(res);
        release();
      });
    }
    void route.serve(req, res);
  };

  /** A request's metrics and log line, once answered (or its client gone: 499). */
  const record = (route: string, method: string, status: number, seconds: number, id: string): void => {
    metrics.request(route, method, status, seconds);
    if (logRequests) log.info({ reqId: id, method, route, status, ms: Math.round(seconds * 1e4) / 10 }, 'request');
  };

  // Every request: an id (the client's X-Request-Id or a new one), a log line and metrics when done;
  // then CORS, and the API routes (looked up in one map) or express for everything else.
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    const given = req.headers['x-request-id'];
    const id = (typeof given === 'string' && given.slice(0, 128)) || randomUUID();
    const path = requestPath(req.url ?? '/');
    const m = API_PREFIX.exec(path);
    const apiPath = m ? `/v3${m[1]}` : undefined;
    const v1Match = path.startsWith(V1_PREFIX) ? v1.match(req.method ?? '', path, querySearch(req.url ?? '')) : undefined;
    // API POSTs carry the id to where their headers are written (keepRequestId); everything else
    // (express's routes, CORS preflights, 405s) gets it as a header now.
    if (apiPath !== undefined && req.method === 'POST') keepRequestId(res, id);
    else res.setHeader('X-Request-Id', id);
    const route = v1Match?.operationId ?? routeOf.get(apiPath ?? path) ?? 'other';
    const method = req.method ?? '';
    let recorded = false;
    const done = (): void => {
      if (recorded) return;
      recorded = true;
      record(route, method, res.headersSent ? res.statusCode : 499, (performance.now() - started) / 1000, id);
    };
    res.once('finish', done);
    res.once('close', done);
    // Before any route, so that every answer gets its CORS headers and no API request escapes the limit.
    if (corsCheck?.(req, res, v1Match !== undefined)) return;
    if (apiPath !== undefined) serveApi(req, res, apiPath);
    else if (v1Match) serveV1(req, res, v1Match);
    else app(req, res);
  };

  app.get('/openapi.json', (_req, res) => {
    res.json(spec.doc);
  });
  app.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').send(spec.yamlText);
  });
  // Swagger UI runs requests with the caller's credentials ("Try it out"): never inside another site's
  // frame (clickjacking), and its scripts only from here.
  app.use('/docs', (_req, res, next) => {
    res.setHeader('Content-Security-Policy', DOCS_CSP);
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });
  app.use(
    '/docs',
    swaggerUi.serve,
    swaggerUi.setup(spec.doc, {
      customSiteTitle: 'etcd JSON gateway',
      // No validator badge: it would load an image from validator.swagger.io, which the CSP refuses.
      swaggerOptions: { tryItOutEnabled: true, displayRequestDuration: true, validatorUrl: null },
    }),
  );
  if (opts.ui !== false) app.use('/ui', consoleRoutes());
  // A person who opens the gateway's address gets the console; Swagger UI stays at /docs.
  const home = opts.ui !== false ? '/ui/' : '/docs/';
  app.get('/', (_req, res) => {
    res.redirect(home);
  });
  app.use((req, res) => sendError(res, notFound(req)));

  let sockets: { close(): void } | undefined;
  let fastLane: FastLane | undefined;
  return {
    handler,
    app,
    hub,
    keepalive,
    metrics,
    attach(server) {
      const maxConnections = opts.maxConnections ?? 10_000;
      let connections = 0;
      fastLane = opts.fastLane === false ? undefined : FastLane.install(server, {
        route: (path) => laneRoutes.get(path),
        leaveToNode: (headers) => corsCheck !== undefined && headers.origin !== undefined,
        admit: (req) => {
          const limited = limit?.(req);
          if (limited) return limited;
          guard?.(req);
          return undefined;
        },
        plainRoute: (method, path, search) => {
          // The /v1/ keys API's reads and writes of one key or prefix; a blocking read (?wait) is
          // Node's (it holds its connection open for minutes), and so is everything else.
          if (!path.startsWith(V1_KV_PREFIX) || (search !== '' && new URLSearchParams(search).has('wait'))) return undefined;
          const match = v1.match(method, path, search);
          if (!LANE_V1_OPERATIONS.has(match.operationId)) return undefined;
          return { operationId: match.operationId, serve: (req, res) => serveV1(req, res, match) };
        },
        record,
        maxBodyBytes: opts.maxBodyBytes,
      });
      server.on('connection', (socket: Socket) => {
        connections++;
        metrics.openConnections.inc();
        socket.once('close', () => {
          connections--;
          metrics.openConnections.dec();
        });
        if (connections > maxConnections) {
          const refusal = rawJsonResponse(new GatewayError(GrpcCode.UNAVAILABLE, `gateway: too many connections (limit ${maxConnections})`));
          // A TLS socket's bytes are read by TLS, not through 'data': it is only ended. Otherwise no
          // request on it is parsed (Node's parser is stopped when the lane is off).
          if (server instanceof tls.Server) socket.end(refusal);
          else closeLingering(socket, refusal);
          return;
        }
        fastLane?.adopt(socket);
      });
      // Requests the HTTP parser refuses (a head over MAX_HEADER_BYTES, garbage) get a JSON answer too,
      // after the answers owed on the connection.
      server.on('clientError', refuseMalformed);
      sockets = attachWebSockets(server, {
        metrics,
        guard,
        admission,
        etcd: opts.etcd,
        hub,
        keepalive,
        codecs: {
          watch: new MessageCodec(spec, 'WatchRequest', 'WatchResponse'),
          keepalive: new MessageCodec(spec, 'LeaseKeepAliveRequest', 'LeaseKeepAliveResponse'),
          observe: new MessageCodec(spec, 'LeaderRequest', 'LeaderResponse'),
        },
        ...limits,
        pingIntervalMs: streams.pingIntervalMs,
        maxMessageBytes: opts.maxBodyBytes,
      });
    },
    laneStats: () => fastLane?.stats,
    close() {
      v1.close();
      sockets?.close();
      for (const res of openStreams) res.end();
      keepalive.close();
    },
  };
}

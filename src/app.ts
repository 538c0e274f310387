// Builds the HTTP application from the contract, the configuration and an etcd handle, without
// listening, so tests build it in-process and main.ts only adds a socket and signals.

import express from 'express';
import swaggerUi from 'swagger-ui-express';
import { ApiSpec } from './api/openapi';
import { kvHandlers } from './api/kv';
import { gatewayHandlers, type HttpHandler } from './api/gateway';
import type { UnaryHandler } from './api/context';
import { API_PREFIX, methodNotAllowed, notFound, sendError, unaryRoute, type Route } from './api/router';
import { WatchCodec, watchRoute } from './api/watch';
import type { EtcdClient } from './etcd/client';
import { WatchHub } from './streams/watch-hub';
import { attachWebSockets } from './streams/websocket';
import type http from 'node:http';

export interface StreamSettings {
  watchStreams: number;
  maxWatchesPerConnection: number;
  maxWatchConnections: number;
  sendBufferBytes: number;
  pingIntervalMs: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
  watchStreams: 4,
  maxWatchesPerConnection: 1000,
  maxWatchConnections: 10_000,
  sendBufferBytes: 4 * 1024 * 1024,
  pingIntervalMs: 30_000,
};

export interface AppOptions {
  etcd: EtcdClient;
  maxBodyBytes: number;
  streams?: StreamSettings;
  spec?: ApiSpec;
}

export interface Gateway {
  app: express.Express;
  hub: WatchHub;
  /** Adds the WebSocket endpoints to the server the app is mounted on. */
  attach(server: http.Server): void;
  /** Closes WebSockets (1001) and every etcd stream. */
  close(): void;
}

/** Every handler by operationId; a test checks it against the operations of openapi.yaml. */
export function handlerTable(
  etcd: EtcdClient,
  hub: WatchHub,
): { unary: Record<string, UnaryHandler>; stream: string[]; http: Record<string, HttpHandler> } {
  return { unary: { ...kvHandlers }, stream: ['Watch_Watch'], http: gatewayHandlers(etcd, hub) };
}

export function buildGateway(opts: AppOptions): Gateway {
  const spec = opts.spec ?? new ApiSpec();
  const streams = opts.streams ?? DEFAULT_STREAM_SETTINGS;
  const hub = new WatchHub(opts.etcd, { streams: streams.watchStreams, maxWatchesPerConnection: streams.maxWatchesPerConnection });
  const codec = new WatchCodec(spec);
  const limits = { maxConnections: streams.maxWatchConnections, sendBufferBytes: streams.sendBufferBytes };
  const handlers = handlerTable(opts.etcd, hub);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  const apiRoutes = new Map<string, Route>();
  for (const op of spec.operations) {
    if (op.stream) {
      if (!handlers.stream.includes(op.operationId)) throw new Error(`no handler for operation ${op.operationId}`);
      apiRoutes.set(op.path, watchRoute(op, hub, codec, limits, opts.maxBodyBytes));
    } else if (op.method === 'post') {
      const handler = handlers.unary[op.operationId];
      if (!handler) throw new Error(`no handler for operation ${op.operationId}`);
      apiRoutes.set(op.path, unaryRoute(spec, op, handler, opts.etcd, opts.maxBodyBytes));
    } else {
      const handler = handlers.http[op.operationId];
      if (!handler) throw new Error(`no handler for operation ${op.operationId}`);
      app.get(op.path, (req, res) => void handler(req, res));
      app.all(op.path, (req, res) => sendError(res, methodNotAllowed(req, 'GET'), { Allow: 'GET' }));
    }
  }

  // API routes are looked up in one map rather than through express's list of patterns.
  app.use((req, res, next) => {
    const m = API_PREFIX.exec(req.path);
    if (!m) return next();
    const route = apiRoutes.get(`/v3${m[1]}`);
    if (!route) return sendError(res, notFound(req));
    if (req.method !== 'POST') return sendError(res, methodNotAllowed(req, 'POST'), { Allow: 'POST' });
    void route.serve(req, res);
  });

  app.get('/openapi.json', (_req, res) => {
    res.json(spec.doc);
  });
  app.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').send(spec.yamlText);
  });
  app.use(
    '/docs',
    swaggerUi.serve,
    swaggerUi.setup(spec.doc, {
      customSiteTitle: 'etcd JSON gateway',
      swaggerOptions: { tryItOutEnabled: true, displayRequestDuration: true },
    }),
  );
  app.get('/', (_req, res) => {
    res.redirect('/docs/');
  });
  app.use((req, res) => sendError(res, notFound(req)));

  let sockets: { close(): void } | undefined;
  return {
    app,
    hub,
    attach(server) {
      sockets = attachWebSockets(server, { hub, codec, ...limits, pingIntervalMs: streams.pingIntervalMs, maxMessageBytes: opts.maxBodyBytes });
    },
    close() {
      sockets?.close();
    },
  };
}

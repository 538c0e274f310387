// Builds the HTTP application from the contract, the configuration and an etcd handle, without
// listening, so tests build it in-process and main.ts only adds a socket and signals.

import express from 'express';
import swaggerUi from 'swagger-ui-express';
import { ApiSpec } from './api/openapi';
import { kvHandlers } from './api/kv';
import { gatewayHandlers, type HttpHandler } from './api/gateway';
import type { UnaryHandler } from './api/context';
import { API_PREFIX, methodNotAllowed, notFound, sendError, unaryRoute, type Route } from './api/router';
import type { EtcdClient } from './etcd/client';

export interface AppOptions {
  etcd: EtcdClient;
  maxBodyBytes: number;
  spec?: ApiSpec;
}

/** Every handler by operationId; a test checks it against the operations of openapi.yaml. */
export function handlerTable(etcd: EtcdClient): { unary: Record<string, UnaryHandler>; http: Record<string, HttpHandler> } {
  return { unary: { ...kvHandlers }, http: gatewayHandlers(etcd) };
}

export function buildApp(opts: AppOptions): express.Express {
  const spec = opts.spec ?? new ApiSpec();
  const handlers = handlerTable(opts.etcd);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  const apiRoutes = new Map<string, Route>();
  for (const op of spec.operations) {
    if (op.method === 'post') {
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
  return app;
}

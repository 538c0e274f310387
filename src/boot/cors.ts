// CORS: off unless origins are configured. An allowed origin gets the headers a browser needs; a
// preflight from any other origin is refused. Same-origin pages (Swagger UI at /docs) need none of this.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, GrpcCode } from '../core/errors';
import { sendError } from '../api/router';

const ALLOWED_HEADERS = 'content-type, authorization, grpc-metadata-token, x-request-id';
/** The /v1/ API also has PUT and DELETE, conditional requests, its revisions in headers, and watches
 *  that an EventSource resumes with Last-Event-ID (not a header a browser sends without asking). */
const V1_ALLOWED_HEADERS = `${ALLOWED_HEADERS}, accept, if-match, if-none-match, last-event-id`;
const V1_EXPOSED_HEADERS =
  'X-Request-Id, Retry-After, ETag, X-Etcd-Revision, X-Etcd-Create-Revision, X-Etcd-Mod-Revision, X-Etcd-Version, X-Etcd-Lease';

/** Adds the CORS headers an allowed origin needs; true when it answered the request itself (a preflight). */
export function cors(origins: string[]): (req: IncomingMessage, res: ServerResponse, plainApi?: boolean) => boolean {
  const any = origins.includes('*');
  const allowed = new Set(origins);
  return (req, res, plainApi = false) => {
    const origin = req.headers.origin;
    if (!origin) return false;
    const ok = any || allowed.has(origin);
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!ok) {
      if (!preflight) return false;
      sendError(res, new GatewayError(GrpcCode.PERMISSION_DENIED, `origin ${origin} is not allowed (CORS_ORIGINS)`));
      return true;
    }
    res.setHeader('Access-Control-Allow-Origin', any ? '*' : origin);
    res.setHeader('Vary', 'Origin');
    res.setHeader('Access-Control-Expose-Headers', plainApi ? V1_EXPOSED_HEADERS : 'X-Request-Id, Retry-After');
    if (!preflight) return false;
    res.writeHead(204, {
      'Access-Control-Allow-Methods': plainApi ? 'GET, HEAD, PUT, DELETE, POST, OPTIONS' : 'POST, GET, OPTIONS',
      'Access-Control-Allow-Headers': plainApi ? V1_ALLOWED_HEADERS : ALLOWED_HEADERS,
      'Access-Control-Max-Age': '600',
    });
    res.end();
    return true;
  };
}

// RFC 9457 problem details for the /v1/ API: every error is `application/problem+json` with `type`,
// `title`, `status` and a `detail` that names the parameter or header at fault; etcd's gRPC code and
// the store revision are added where they apply. Shared by the keys API and the watch streams.

import { STATUS_CODES, type ServerResponse } from 'node:http';
import { GatewayError, fromGrpcError } from '../../core/errors';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
/** `type` URIs are relative references into the gateway's own docs: one per status. */
const TYPE_BASE = '/docs/problems/';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** etcd's gRPC status code, when etcd (or the gateway on its behalf) gave one. */
  code?: number;
  /** The store revision the answer was made at, when known. */
  revision?: number;
  [extra: string]: unknown;
}

/** A problem for `status`, with extra members (`compact_revision`, `mod_revision`, ...). */
export function problem(status: number, detail: string, extra: Record<string, unknown> = {}): Problem {
  const title = STATUS_CODES[status] ?? 'Error';
  return { type: `${TYPE_BASE}${status}`, title, status, detail, ...extra };
}

/** Any error a handler threw (a GatewayError, a gRPC error) as a problem with its gRPC code. */
export function problemFromError(err: unknown): Problem {
  const e = err instanceof GatewayError ? err : fromGrpcError(err);
  return problem(e.httpStatus, e.message, { code: e.code });
}

export function sendProblem(res: ServerResponse, p: Problem, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(p);
  res.writeHead(p.status, { ...extraHeaders, 'Content-Type': PROBLEM_CONTENT_TYPE, 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

/** A handler's answer that is a problem with members of its own (a 412's `mod_revision`, a 410's
 *  `compact_revision`) or headers (an ETag), thrown to end the request. */
export class ProblemError extends Error {
  constructor(
    readonly problem: Problem,
    readonly headers?: Record<string, string>,
  ) {
    super(problem.detail);
  }
}

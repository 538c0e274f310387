import type { EtcdClient, Service } from '../etcd/client';

/** What a handler gets besides the decoded request: the etcd handle and the client's lifetime. */
export interface RequestContext {
  etcd: EtcdClient;
  /** Aborted when the HTTP client goes away, so etcd work on its behalf stops too. */
  signal: AbortSignal;
}

export type GrpcMessage = Record<string, unknown>;

/** A unary API operation: decoded gRPC request in, gRPC response out. */
export type UnaryHandler = (request: GrpcMessage, ctx: RequestContext) => Promise<GrpcMessage>;

/** A handler that forwards the request to one etcd gRPC method unchanged. */
export function forward(service: Service, method: string, opts: { idempotent: boolean }): UnaryHandler {
  return (request, ctx) => ctx.etcd.unary(service, method, request, { idempotent: opts.idempotent, signal: ctx.signal });
}

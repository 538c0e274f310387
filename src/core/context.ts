import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { EtcdClient, Service } from '../etcd/client';
import type { Cancellation } from '../etcd/unary-channel';
import { GatewayError, GrpcCode, invalidArgument } from './errors';

/** What a handler gets besides the decoded request: the etcd handle and the client's lifetime. */
export interface RequestContext {
  etcd: EtcdClient;
  /** Aborted when the HTTP client goes away, so etcd work on its behalf stops too. */
  signal: Cancellation;
  /** The caller's etcd credentials (its auth token), sent with this request only. */
  metadata?: grpc.Metadata;
  /** With access control: whether the caller may read a key that an answer lists without the request
   *  having named it (a lease's keys). */
  readable?: (key: Buffer) => boolean;
}

const GRPC_METADATA_PREFIX = 'grpc-metadata-';

/** etcd credentials and gRPC metadata from HTTP headers, as etcd's gateway forwards them: the raw
 *  `Authorization` header is the etcd token, and `Grpc-Metadata-<name>` headers become metadata.
 *  Throws a 400 for a header gRPC cannot carry (a non-ASCII token, a name with `!`). */
export function etcdMetadata(headers: IncomingHttpHeaders): grpc.Metadata | undefined {
  let md: grpc.Metadata | undefined;
  // for...in: Object.entries would build an array of pairs per request.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    let key: string | undefined;
    if (name === 'authorization') key = 'token';
    else if (name.startsWith(GRPC_METADATA_PREFIX) && name.length > GRPC_METADATA_PREFIX.length) {
      key = name.slice(GRPC_METADATA_PREFIX.length);
      if (key === 'authorization') key = 'token';
    }
    if (!key || key.endsWith('-bin')) continue;
    const text = Array.isArray(value) ? value.join(', ') : value;
    // grpc-js throws on these; checked here so the client gets a 400 naming the header (and never
    // sees its value echoed: it may be a token).
    if (!METADATA_KEY.test(key)) throw invalidArgument(`header ${name}: a gRPC metadata name may only hold 0-9, a-z, "_", "." and "-"`);
    if (!METADATA_VALUE.test(text)) throw invalidArgument(`header ${name}: its value may only hold printable ASCII characters (gRPC metadata)`);
    md ??= new grpc.Metadata();
    md.set(key, text);
  }
  return md;
}

/** What grpc-js accepts as a metadata name and as a text value. */
const METADATA_KEY = /^[0-9a-z_.-]+$/;
const METADATA_VALUE = /^[ -~]*$/;

export type GrpcMessage = Record<string, unknown>;

/** What access control and the rate limit look at: a request's headers and its connection. Node's
 *  IncomingMessage is one; so is a request read by the fast lane (src/protocol/http1/lane.ts). */
export type RequestHead = Pick<IncomingMessage, 'headers' | 'socket'>;

/** Access control: throws 401 unless the request proves who its client is and, given an operation and
 *  its decoded request, 403 unless that client may do it. A request that uses a lease can only be
 *  settled by asking etcd: then the guard answers a promise, which must be awaited before the request
 *  is sent. Absent: everyone may do everything. */
export interface Guard {
  (req: RequestHead, operationId?: string, request?: GrpcMessage): Promise<void> | undefined;
  /** Whether the request's client may read `key`: answers listing keys the request did not name (a
   *  lease's keys) show only those. */
  readable(req: RequestHead, key: Buffer): boolean;
}

/** Runs access control on a decoded request, and waits for what it must ask etcd: resolved once the
 *  request may be sent as it is. */
export async function admit(guard: Guard | undefined, req: RequestHead, operationId: string, request: GrpcMessage): Promise<void> {
  const asked = guard?.(req, operationId, request);
  if (asked) await asked;
}

/** A unary API operation: decoded gRPC request in, gRPC response out. */
export type UnaryHandler = (request: GrpcMessage, ctx: RequestContext) => Promise<GrpcMessage>;

/** A handler that forwards the request to one etcd gRPC method unchanged; `maxWaitMs` replaces the
 *  request deadline for calls that wait by design (a lock, a campaign); `check` may refuse an answer. */
export function forward(
  service: Service,
  method: string,
  opts: { idempotent: boolean; maxWaitMs?: number; check?: (answer: GrpcMessage) => void },
): UnaryHandler {
  return async (request, ctx) => {
    try {
      const answer = await ctx.etcd.unary<GrpcMessage>(service, method, request, {
        idempotent: opts.idempotent,
        signal: ctx.signal,
        metadata: ctx.metadata,
        deadline: opts.maxWaitMs === undefined ? undefined : Date.now() + opts.maxWaitMs,
      });
      opts.check?.(answer);
      return answer;
    } catch (err) {
      // etcd's lock and election services end a wait at the deadline the gateway sent along, and report
      // it as code 2 "context deadline exceeded" — at times just before the gateway's own timer says
      // DEADLINE_EXCEEDED. The same event gets the same answer: 504.
      if (opts.maxWaitMs !== undefined && err instanceof GatewayError && err.code === GrpcCode.UNKNOWN && err.message === 'context deadline exceeded') {
        throw new GatewayError(GrpcCode.DEADLINE_EXCEEDED, 'context deadline exceeded: the gateway stopped waiting for etcd');
      }
      throw err;
    }
  };
}

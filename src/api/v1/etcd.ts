// The etcd calls of the /v1/ API, in etcd's message forms (bytes as Buffers, int64 as decimal
// strings), and the etcd errors /v1/ answers in HTTP's own terms (410 for a compacted revision).

import { GatewayError, GrpcCode } from '../../core/errors';
import { admit, type GrpcMessage } from '../../core/context';
import type { Cancellation } from '../../etcd/unary-channel';
import type { WatchHub } from '../../core/watch/hub';
import type { EtcdKeyValue } from './representation';
import { problem, ProblemError } from './problem';
import type { V1Request } from './router';
import { badRequest } from './router';

export interface ResponseHeader {
  revision?: string;
}

export interface RangeResponse {
  header?: ResponseHeader;
  kvs?: EtcdKeyValue[];
  more?: boolean;
  count?: string;
}

export interface TxnResponse {
  header?: ResponseHeader;
  succeeded?: boolean;
  responses?: Array<{ response_range?: RangeResponse; response_put?: { prev_kv?: EtcdKeyValue | null }; response_delete_range?: { deleted?: string; prev_kvs?: EtcdKeyValue[] } }>;
}

/** One etcd call on behalf of a /v1/ request: its credentials, and canceled when its client leaves.
 *  Only reads may be sent again to another member. */
export function call<T>(
  r: V1Request,
  service: 'KV' | 'Lease' | 'Lock',
  method: string,
  request: GrpcMessage,
  idempotent: boolean,
  deadline?: number,
  signal: Cancellation = r.signal,
): Promise<T> {
  return r.etcd.unary<T>(service, method, request, { idempotent, signal, metadata: r.metadata, deadline });
}

/** Clean-up after a request that failed (revoke the lease it granted, delete the key it made): with
 *  the request's credentials but not its lifetime, since a client that went away is the commonest
 *  reason to clean up, and a call canceled with it would leave the lease and key behind. */
export function cleanupCall<T>(r: V1Request, service: 'KV' | 'Lease', method: string, request: GrpcMessage): Promise<T> {
  return r.etcd.unary<T>(service, method, request, { idempotent: false, metadata: r.metadata });
}

/** Access control on a request in the form it is sent to etcd (403 unless granted; resolved once it
 *  may be sent). */
export function admitted(r: V1Request, operationId: string, request: GrpcMessage): Promise<void> {
  return admit(r.guard, r.req, operationId, request);
}

/** The end of the range of keys under `prefix` (etcd's prefix convention); "\0" (no end) for a prefix
 *  of only 0xff bytes, or the empty prefix, which is every key. */
function prefixRangeEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** The range of every key under `prefix`: [key, range_end). The empty prefix starts at "\0". */
export function prefixRange(prefix: Buffer): { key: Buffer; range_end: Buffer } {
  return { key: prefix.length ? prefix : Buffer.from([0]), range_end: prefixRangeEnd(prefix) };
}

const COMPACTED = 'etcdserver: mvcc: required revision has been compacted';
const FUTURE = 'etcdserver: mvcc: required revision is a future revision';

/** The revision etcd has compacted up to: a watch from revision 1 is canceled with it. At most 5 s. */
export function compactRevision(hub: WatchHub, r: V1Request): Promise<number | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (rev: number | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      connection.close();
      resolve(rev);
    };
    const timer = setTimeout(() => finish(undefined), 5_000);
    const connection = hub.connect(
      {
        deliver(response) {
          const rev = Number(response.compact_revision ?? 0);
          if (response.canceled || rev > 0) finish(rev > 0 ? rev : undefined);
          else if (!response.created) finish(undefined);
        },
      },
      r.metadata,
    );
    connection.request({ create_request: { key: Buffer.from([0]), range_end: Buffer.from([0]), start_revision: '1' } });
  });
}

/** A read at a past revision that etcd refused: 410 naming the compact revision, or 400 for a revision
 *  not written yet; anything else is passed on. */
export async function readFailure(err: unknown, hub: WatchHub, r: V1Request, param: string, revision: number): Promise<never> {
  if (err instanceof GatewayError && err.code === GrpcCode.OUT_OF_RANGE) {
    if (err.message === COMPACTED) {
      const compact = await compactRevision(hub, r);
      const at = compact === undefined ? '' : ` (compacted up to ${compact})`;
      throw new ProblemError(
        problem(410, `${param}: revision ${revision} has been compacted${at}; read the current revision instead`, {
          code: err.code,
          ...(compact === undefined ? {} : { compact_revision: compact }),
        }),
      );
    }
    if (err.message === FUTURE) throw badRequest(`${param}: revision ${revision} is a future revision`);
  }
  throw err;
}

// etcd's lock and election services. A lock or a campaign waits until it succeeds, at most the longest
// wait configured; if the client goes away first the call is canceled, and etcd removes the waiting key.
//
// A lock (and a campaign's leadership) is answered with etcd's own success body only when etcd shows it
// held at the time of the answer: etcd 3.4's Lock does not look at its key again once the keys before it have gone, so a lease
// that expired while waiting still got a success (from etcd's gateway too) for a key that no longer
// existed. One read txn after the Lock (the returned key, and the oldest key under the name) tells.

import { forward, type GrpcMessage, type RequestContext, type UnaryHandler } from '../../core/context';
import { GatewayError, GrpcCode } from '../../core/errors';

interface Kv {
  key?: Buffer;
  lease?: string;
  create_revision?: string;
}

interface TxnAnswer {
  responses?: Array<{ response_range?: { kvs?: Kv[] } }>;
}

/** The end of the prefix range of `<name>/`: its last byte incremented ('/' + 1 = '0'). */
function underName(key: Buffer): { key: Buffer; range_end: Buffer } {
  const slash = key.lastIndexOf(0x2f);
  const prefix = key.subarray(0, slash + 1);
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return { key: prefix, range_end: end };
}

/** Refuses a Lock or Campaign answer whose key etcd no longer holds: etcd's lock and election services
 *  wait for the keys created before theirs to go, and answer without looking at their own key again.
 *  A key that is gone means its lease died (expired or revoked) while waiting: code 5 NOT_FOUND, HTTP
 *  404 by grpc-gateway's table, the code etcd itself answers a lock or a put on a dead lease with
 *  ("requested lease not found"), so clients that handle that already handle this. A key that exists
 *  but is not the holder (another lease's key, or not the oldest under the name) is code 9
 *  FAILED_PRECONDITION, HTTP 400: the state of the store, not the request, is what is wrong. */
async function checkHeld(what: 'lock' | 'leadership', key: Buffer | undefined, lease: string, ctx: RequestContext): Promise<void> {
  if (!key || key.lastIndexOf(0x2f) < 0) return;
  const txn = { success: [{ request_range: { key } }, { request_range: { ...underName(key), sort_target: 'Create', sort_order: 'Ascend', limit: '1' } }] };
  const read = await ctx.etcd.unary<TxnAnswer>('KV', 'Txn', txn, { idempotent: true, signal: ctx.signal, metadata: ctx.metadata });
  const mine = read.responses?.[0]?.response_range?.kvs?.[0];
  const oldest = read.responses?.[1]?.response_range?.kvs?.[0];
  const noun = what === 'lock' ? 'lock key' : 'candidate key';
  if (!mine) {
    throw new GatewayError(GrpcCode.NOT_FOUND, `etcdserver: requested lease not found: the lease expired while waiting for the ${what} and its ${noun} is gone; the ${what} was not taken`);
  }
  if (lease !== '0' && String(mine.lease ?? '0') !== lease) {
    throw new GatewayError(GrpcCode.FAILED_PRECONDITION, `the ${noun} is held on lease ${mine.lease ?? '0'}, not on lease ${lease}; the ${what} was not taken`);
  }
  if (!oldest?.key || !Buffer.from(oldest.key).equals(key)) {
    throw new GatewayError(GrpcCode.FAILED_PRECONDITION, `an older key under the ${what === 'lock' ? 'lock' : 'election'} name (create revision ${oldest?.create_revision ?? '?'}) holds the ${what}; it was not taken`);
  }
}

export function lockHandlers(maxWaitMs: number): Record<string, UnaryHandler> {
  const lock = forward('Lock', 'Lock', { idempotent: false, maxWaitMs });
  const campaign = forward('Election', 'Campaign', { idempotent: false, maxWaitMs });
  return {
    async Lock_Lock(request, ctx) {
      const answer = await lock(request, ctx);
      await checkHeld('lock', answer.key as Buffer | undefined, String(request.lease ?? '0'), ctx);
      return answer;
    },
    Lock_Unlock: forward('Lock', 'Unlock', { idempotent: false }),
    // The same for a campaign: leadership is only answered while etcd shows the candidate's key leading.
    async Election_Campaign(request, ctx) {
      const answer = await campaign(request, ctx);
      const leader = answer.leader as GrpcMessage | undefined;
      await checkHeld('leadership', leader?.key as Buffer | undefined, String(request.lease ?? '0'), ctx);
      return answer;
    },
    Election_Proclaim: forward('Election', 'Proclaim', { idempotent: false }),
    Election_Leader: forward('Election', 'Leader', { idempotent: true }),
    Election_Resign: forward('Election', 'Resign', { idempotent: false }),
  };
}

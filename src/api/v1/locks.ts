// /v1/locks/{name}: distributed locks a shell script can use, on etcd's own lock protocol, so they
// exclude `etcdctl lock` and /v3/lock/lock holders of the same name. The lock key is `<name>/<lease
// in hex>`; the holder is the key under `<name>/` created first. Taking a lock is first one txn (etcd's
// Mutex.TryLock: create our key unless it exists, and read the oldest key); when that does not win
// and the client will wait, etcd's lock service (v3lock Lock) waits for the keys before ours to go.
// The fencing token is our key's create revision, which only grows. A try-lock (`wait=0`) that loses,
// and a wait that runs out, remove the key they made and revoke the lease they granted: nothing is
// left behind.

import { GatewayError, GrpcCode } from '../../errors';
import { call, prefixRange, type RangeResponse, type TxnResponse } from './etcd';
import { grant, revokeQuietly } from './leases';
import { duration, integer, leaseId, pathBytes } from './params';
import { problem, ProblemError } from './problem';
import { revisionNumber, textOrBase64 } from './representation';
import { badRequest, reply, replyJson, type V1Handler, type V1Request } from './router';

/** A lock taken without `?lease` is on a new lease of this TTL unless `?ttl` says otherwise. */
export const LOCK_DEFAULT_TTL = 60;

function nameOf(r: V1Request): Buffer {
  const name = pathBytes(r.params.name, 'name');
  if (name.length === 0) throw badRequest('path parameter name: the lock name is empty');
  return name;
}

/** etcd's lock key for a name and a lease: `<name>/<lease in lowercase hex>`. */
function lockKey(name: Buffer, lease: string): Buffer {
  return Buffer.concat([name, Buffer.from(`/${BigInt(lease).toString(16)}`)]);
}

function isDeadline(err: unknown): boolean {
  return (
    err instanceof GatewayError &&
    (err.code === GrpcCode.DEADLINE_EXCEEDED || (err.code === GrpcCode.UNKNOWN && err.message === 'context deadline exceeded'))
  );
}

/** etcd's Mutex.TryLock txn: our key is created unless it exists, and the oldest key under the
 *  name is read. Returns whether we hold the lock, whether this txn created our key, and its create
 *  revision. */
async function tryAcquire(r: V1Request, name: Buffer, key: Buffer, lease: string): Promise<{ held: boolean; created: boolean; createRevision: number }> {
  const owners = { ...prefixRange(Buffer.concat([name, Buffer.from('/')])), sort_target: 'Create', sort_order: 'Ascend', limit: '1' };
  const txn = {
    compare: [{ key, target: 'Create', result: 'Equal', create_revision: '0' }],
    success: [{ request_put: { key, value: Buffer.alloc(0), lease } }, { request_range: owners }],
    failure: [{ request_range: { key } }, { request_range: owners }],
  };
  const answer = await call<TxnResponse>(r, 'KV', 'Txn', txn, false);
  const created = answer.succeeded === true;
  const createRevision = created
    ? revisionNumber(answer.header?.revision)
    : revisionNumber(answer.responses?.[0]?.response_range?.kvs?.[0]?.create_revision);
  const owner = answer.responses?.[1]?.response_range?.kvs?.[0];
  return { held: !owner || revisionNumber(owner.create_revision) === createRevision, created, createRevision };
}

async function acquire(r: V1Request, maxWaitMs: number): Promise<void> {
  const name = nameOf(r);
  r.guard?.(r.req, 'Lock_Lock', { name });
  if (r.query.has('ttl') && r.query.has('lease')) throw badRequest('query parameters ttl and lease: use one (ttl grants a new lease, lease uses an existing one)');
  const waitMs = duration(r.query, 'wait', maxWaitMs, maxWaitMs);
  const ttl = integer(r.query, 'ttl', { min: 1, max: 9_000_000_000, fallback: LOCK_DEFAULT_TTL }) ?? LOCK_DEFAULT_TTL;
  const given = r.query.has('lease') ? leaseId(r.query.get('lease') ?? '', 'query parameter lease') : undefined;
  const granted = given === undefined ? await grant(r, ttl) : undefined;
  const lease = given ?? (granted as { id: string }).id;
  const key = lockKey(name, lease);
  let attempt: Awaited<ReturnType<typeof tryAcquire>> | undefined;
  try {
    attempt = await tryAcquire(r, name, key, lease);
    if (!attempt.held && waitMs > 0) {
      await call(r, 'Lock', 'Lock', { name, lease }, false, Date.now() + waitMs);
      attempt.held = true;
    }
  } catch (err) {
    if (!isDeadline(err) || !attempt) {
      await leaveNothing(r, key, attempt?.created ?? false, granted?.id);
      throw err;
    }
  }
  if (!attempt?.held) {
    await leaveNothing(r, key, attempt?.created ?? false, granted?.id);
    const how = waitMs === 0 ? 'it is held (wait=0: try-lock)' : `it was still held after waiting ${waitMs / 1000}s`;
    throw new ProblemError(problem(409, `lock not taken: ${how}`));
  }
  const body: Record<string, unknown> = {
    ...textOrBase64(key, 'key'),
    lease,
    fencing_token: attempt.createRevision,
  };
  if (granted) body.ttl = granted.ttl;
  replyJson(r, 201, body);
}

/** After a lost try or a wait that ran out: our key is deleted if this request made it (etcd's lock
 *  service also deletes it when its wait ends), and a lease granted for the request is revoked. */
async function leaveNothing(r: V1Request, key: Buffer, created: boolean, grantedLease: string | undefined): Promise<void> {
  if (grantedLease) return revokeQuietly(r, grantedLease);
  if (created) await call(r, 'KV', 'DeleteRange', { key }, false).catch(() => undefined);
}

/** DELETE /v1/locks/{name}?key=<lock key> (or ?lease=<id>): deletes the lock key, which is all etcd's
 *  Unlock does; 404 when there is none. */
async function release(r: V1Request): Promise<void> {
  const name = nameOf(r);
  const keyText = rawQueryParam(r.search, 'key');
  const leaseText = r.query.get('lease');
  if ((keyText === undefined) === (leaseText === null)) throw badRequest('query parameter key: give the lock key (or lease), one of them');
  const key = keyText !== undefined ? pathBytes(keyText, 'query parameter key') : lockKey(name, leaseId(leaseText ?? '', 'query parameter lease'));
  const under = Buffer.concat([name, Buffer.from('/')]);
  if (key.length <= under.length || !key.subarray(0, under.length).equals(under)) {
    throw badRequest('query parameter key: not a key of this lock (a lock key is <name>/<lease in hex>)');
  }
  r.guard?.(r.req, 'Lock_Unlock', { key });
  const answer = await call<RangeResponse & { deleted?: string }>(r, 'KV', 'DeleteRange', { key }, false);
  if (revisionNumber(answer.deleted) === 0) throw new ProblemError(problem(404, 'lock key not found: the lock is not held with it (released, or its lease expired)'));
  reply(r, 204, { 'X-Etcd-Revision': String(revisionNumber(answer.header?.revision)) });
}

/** A query parameter still percent-encoded, so a key's bytes survive (URLSearchParams decodes to
 *  UTF-8 text); `+` is a space, as in forms. */
function rawQueryParam(search: string, name: string): string | undefined {
  for (const part of search.split('&')) {
    const eq = part.indexOf('=');
    if ((eq < 0 ? part : part.slice(0, eq)) === name) return eq < 0 ? '' : part.slice(eq + 1).replace(/\+/g, '%20');
  }
  return undefined;
}

export function lockHandlers(s: { lockWaitMs: number }): Record<string, V1Handler> {
  return {
    V1_LockAcquire: (r) => acquire(r, s.lockWaitMs),
    V1_LockRelease: (r) => release(r),
  };
}

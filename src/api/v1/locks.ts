// /v1/locks/{name}: distributed locks a shell script can use, on etcd's own lock protocol, so they
// exclude `etcdctl lock` and /v3/lock/lock holders of the same name. The lock key is `<name>/<lease
// in hex>`; the holder is the key under `<name>/` created first. Taking a lock is first one txn (etcd's
// Mutex.TryLock: create our key unless it exists, and read the oldest key); when that does not win
// and the client will wait, etcd's lock service (v3lock Lock) waits for the keys before ours to go.
// The fencing token is our key's create revision, which only grows. A try-lock (`wait=0`) that loses,
// and a wait that runs out, remove the key they made and revoke the lease they granted: nothing is
// left behind.
//
// A 201 is only ever given for a lock etcd shows held: a lease the gateway granted is kept alive by
// the gateway while the request waits (the client does not know its ID yet), and before answering,
// one txn proves that our key still exists with its create revision and lease and is the oldest under
// the name, and the lease is seen alive after it. A lease that died while waiting is a 410, never a
// 201. From the answer on, keeping the lease alive is the client's job (`"keepalive": "client"`).

import { GatewayError, GrpcCode } from '../../core/errors';
import type { KeepAliveHub } from '../../core/keepalive';
import { Hangup } from '../router';
import { admitted, call, cleanupCall, prefixRange, type RangeResponse, type TxnResponse } from './etcd';
import { grant, MAX_LEASE_TTL, revokeQuietly } from './leases';
import { duration, integer, leaseId, pathBytes } from './params';
import { problem, ProblemError } from './problem';
import { revisionNumber, textOrBase64 } from './representation';
import { badRequest, reply, replyJson, type V1Handler, type V1Request } from './router';

/** A lock taken without `?lease` is on a new lease of this TTL unless `?ttl` says otherwise. */
const LOCK_DEFAULT_TTL = 60;
/** Renewals of a lease kept alive during a wait: every TTL/3, not more often than this... */
const MIN_RENEW_MS = 300;
/** ...and this soon again after one that failed. */
const RETRY_RENEW_MS = 500;

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

/** A read of the oldest key under the lock name: the holder. */
function owners(name: Buffer): Record<string, unknown> {
  return { ...prefixRange(Buffer.concat([name, Buffer.from('/')])), sort_target: 'Create', sort_order: 'Ascend', limit: '1' };
}

/** etcd's Mutex.TryLock txn: our key is created unless it exists, and the oldest key under the
 *  name is read. Returns whether we hold the lock, whether this txn created our key, and its create
 *  revision. */
async function tryAcquire(r: V1Request, name: Buffer, key: Buffer, lease: string): Promise<{ held: boolean; created: boolean; createRevision: number }> {
  const txn = {
    compare: [{ key, target: 'Create', result: 'Equal', create_revision: '0' }],
    success: [{ request_put: { key, value: Buffer.alloc(0), lease } }, { request_range: owners(name) }],
    failure: [{ request_range: { key } }, { request_range: owners(name) }],
  };
  const answer = await call<TxnResponse>(r, 'KV', 'Txn', txn, false);
  const created = answer.succeeded === true;
  const createRevision = created
    ? revisionNumber(answer.header?.revision)
    : revisionNumber(answer.responses?.[0]?.response_range?.kvs?.[0]?.create_revision);
  const owner = answer.responses?.[1]?.response_range?.kvs?.[0];
  return { held: !owner || revisionNumber(owner.create_revision) === createRevision, created, createRevision };
}

/** Keeps a lease the gateway granted for a waiting request alive while it waits: a renewal on the
 *  shared keepalive stream every TTL/3, sooner again after a renewal that failed (etcd unreachable: the
 *  proof at the end says whether the lease lived). A renewal that finds the lease gone aborts `lost`, so
 *  the wait ends at once instead of running on for a key etcd has already deleted. Without this, a wait
 *  longer than the TTL let the lease expire, and etcd's Lock still returned (it does not look at its own
 *  key again): a 201 for a lock nobody held. */
function keepAliveWhileWaiting(hub: KeepAliveHub, r: V1Request, lease: string, ttl: number, lost: Hangup): { stop(): void } {
  const every = Math.max(MIN_RENEW_MS, Math.floor((ttl * 1000) / 3));
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number): void => {
    if (!stopped) timer = setTimeout(() => void renew(), ms);
  };
  const renew = async (): Promise<void> => {
    try {
      const answer = await hub.renew(lease, r.metadata);
      if (!(revisionNumber(answer.TTL as string | undefined) > 0)) return lost.abort();
      schedule(every);
    } catch {
      schedule(Math.min(every, RETRY_RENEW_MS));
    }
  };
  schedule(every);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** The answer to a request whose lock was not taken: nothing of it is left behind (see leaveNothing). */
function notTaken(status: number, detail: string): ProblemError {
  return new ProblemError(problem(status, `lock not taken: ${detail}`, status === 410 ? { code: GrpcCode.NOT_FOUND } : {}));
}

function leaseExpired(lease: string): ProblemError {
  return notTaken(410, `lease ${lease} expired while waiting (its lock key is gone)`);
}

/** The proof a lock is held, asked of etcd before any 201: one txn that compares our key's create
 *  revision and lease (it exists, it is ours, it was not deleted and made again) and, in the same
 *  revision, reads the oldest key under the name, which must be ours. Then the lease is renewed (one
 *  the gateway granted) or looked up (the client's own): alive at a moment after that revision, so the
 *  key is still there. Returns the revision the lock was seen held at and the lease's TTL left. */
async function prove(
  r: V1Request,
  hub: KeepAliveHub,
  name: Buffer,
  key: Buffer,
  lease: string,
  createRevision: number,
  granted: boolean,
): Promise<{ revision: number; ttlLeft: number }> {
  const txn = {
    compare: [
      { key, target: 'Create', result: 'Equal', create_revision: String(createRevision) },
      { key, target: 'Lease', result: 'Equal', lease },
    ],
    success: [{ request_range: owners(name) }],
    failure: [{ request_range: { key } }],
  };
  const answer = await call<TxnResponse>(r, 'KV', 'Txn', txn, true);
  const found = answer.responses?.[0]?.response_range?.kvs?.[0];
  if (!answer.succeeded) {
    if (!found) throw leaseExpired(lease);
    throw notTaken(409, `the lock key was replaced while waiting (create revision ${revisionNumber(found.create_revision)}, lease ${found.lease ?? '0'})`);
  }
  if (!found || !Buffer.from(found.key ?? Buffer.alloc(0)).equals(key)) {
    throw notTaken(409, `an older key under the name holds it (create revision ${revisionNumber(found?.create_revision)})`);
  }
  const ttlLeft = granted
    ? revisionNumber((await hub.renew(lease, r.metadata)).TTL as string | undefined)
    : revisionNumber((await call<{ TTL?: string }>(r, 'Lease', 'LeaseTimeToLive', { ID: lease }, true)).TTL);
  // Not a positive number (-1: not found, 0: expired, anything unreadable): not proven alive.
  if (!(ttlLeft > 0)) throw leaseExpired(lease);
  return { revision: revisionNumber(answer.header?.revision), ttlLeft };
}

async function acquire(r: V1Request, s: LockSettings): Promise<void> {
  const name = nameOf(r);
  if (r.query.has('ttl') && r.query.has('lease')) throw badRequest('query parameters ttl and lease: use one (ttl grants a new lease, lease uses an existing one)');
  const waitMs = duration(r.query, 'wait', s.lockWaitMs, s.lockWaitMs);
  const ttl = integer(r.query, 'ttl', { min: 1, max: MAX_LEASE_TTL, fallback: LOCK_DEFAULT_TTL }) ?? LOCK_DEFAULT_TTL;
  const given = r.query.has('lease') ? leaseId(r.query.get('lease') ?? '', 'query parameter lease') : undefined;
  // The lock's keys go under the name, on the lease given (one the client may use) or on a new one.
  await admitted(r, 'Lock_Lock', given === undefined ? { name } : { name, lease: given });
  const granted = given === undefined ? await grant(r, ttl) : undefined;
  const lease = given ?? (granted as { lease: string }).lease;
  const key = lockKey(name, lease);
  // The wait ends when the client goes, or when the lease the gateway keeps alive is found gone.
  const lost = new Hangup();
  const waiting = new Hangup();
  const hangup = (): void => waiting.abort();
  if (r.signal.aborted) waiting.abort();
  r.signal.addEventListener('abort', hangup);
  lost.addEventListener('abort', hangup);
  const renewer = granted ? keepAliveWhileWaiting(s.keepalive, r, granted.lease, granted.ttl, lost) : undefined;
  let attempt: Awaited<ReturnType<typeof tryAcquire>> | undefined;
  let proof: Awaited<ReturnType<typeof prove>> | undefined;
  try {
    try {
      attempt = await tryAcquire(r, name, key, lease);
      if (!attempt.held && waitMs > 0) {
        await call(r, 'Lock', 'Lock', { name, lease }, false, Date.now() + waitMs, waiting);
        attempt.held = true;
      }
    } catch (err) {
      if (lost.aborted) throw leaseExpired(lease);
      if (!isDeadline(err) || !attempt) throw err;
    }
    if (!attempt.held) {
      const how = waitMs === 0 ? 'it is held (wait=0: try-lock)' : `it was still held after waiting ${waitMs / 1000}s`;
      throw notTaken(409, how);
    }
    proof = await prove(r, s.keepalive, name, key, lease, attempt.createRevision, granted !== undefined);
  } catch (err) {
    await leaveNothing(r, key, attempt?.created ?? false, granted?.lease);
    throw err;
  } finally {
    renewer?.stop();
    r.signal.removeEventListener('abort', hangup);
  }
  const body: Record<string, unknown> = {
    ...textOrBase64(key, 'key'),
    lease,
    fencing_token: attempt.createRevision,
    revision: proof.revision,
    lease_granted_by: granted ? 'gateway' : 'client',
    keepalive: 'client',
    ttl_left: proof.ttlLeft,
  };
  if (granted) body.ttl = granted.ttl;
  replyJson(r, 201, body, { 'X-Etcd-Revision': String(proof.revision) });
}

/** After a lost try, a wait that ran out or a lock that could not be proven held: our key is deleted
 *  if this request made it (etcd's lock service also deletes it when its wait ends), and a lease
 *  granted for the request is revoked, which deletes the key with it. Both also when the client has
 *  gone. */
async function leaveNothing(r: V1Request, key: Buffer, created: boolean, grantedLease: string | undefined): Promise<void> {
  if (grantedLease) return revokeQuietly(r, grantedLease);
  if (created) await cleanupCall(r, 'KV', 'DeleteRange', { key }).catch(() => undefined);
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
  await admitted(r, 'Lock_Unlock', { key });
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

export interface LockSettings {
  lockWaitMs: number;
  keepalive: KeepAliveHub;
}

export function lockHandlers(s: LockSettings): Record<string, V1Handler> {
  return {
    V1_LockAcquire: (r) => acquire(r, s),
    V1_LockRelease: (r) => release(r),
  };
}

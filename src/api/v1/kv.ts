// /v1/kv/{key}: keys in the path, values as raw bodies, HTTP's conditional requests for compare-and-swap
// (every conditional write is one etcd txn), listings paged through one revision, and blocking reads
// that ride the watch hub.

import { isUtf8 } from 'node:buffer';
import type { WatchHub } from '../../core/watch/hub';
import type { GrpcMessage } from '../../core/context';
import { readBody } from '../router';
import { admitted, call, prefixRange, readFailure, type RangeResponse, type ResponseHeader, type TxnResponse } from './etcd';
import { decodeToken, encodeToken, listOptions, type ListOptions } from './paging';
import { duration, etag, flag, integer, leaseId, pathBytes, precondition, type Precondition } from './params';
import { problem, ProblemError } from './problem';
import { revisionNumber, v1KeyValue, type EtcdKeyValue } from './representation';
import { badRequest, reply, replyJson, type V1Handler, type V1Request } from './router';
import { grant, MAX_LEASE_TTL, revokeQuietly } from './leases';
import { tooManyConnections } from '../v3/watch';
import { GatewayError, GrpcCode } from '../../core/errors';

export interface KvSettings {
  hub: WatchHub;
  maxBodyBytes: number;
  /** The hub's connection limit (MAX_WATCH_CONNECTIONS): a waiting read holds one connection. */
  maxWatchConnections: number;
}

/** Listings: a page has `LIST_DEFAULT_LIMIT` keys unless `limit` says otherwise, at most `LIST_MAX_LIMIT`. */
/** etcd's answer to a write on a lease that does not exist (expired, revoked, never granted). */
const LEASE_NOT_FOUND = 'etcdserver: requested lease not found';
const LIST_DEFAULT_LIMIT = 1000;
const LIST_MAX_LIMIT = 10_000;
/** A blocking read (`?wait`) answers 304 after `timeout`: 60 s unless given, at most 5 minutes. */
const WAIT_DEFAULT_MS = 60_000;
const WAIT_MAX_MS = 300_000;

function headerRevision(header: ResponseHeader | undefined): number {
  return revisionNumber(header?.revision);
}

/** The key of a request: the rest of the path after /v1/kv/, percent-decoded; never empty. */
function keyOf(r: V1Request): Buffer {
  const key = pathBytes(r.params.key, 'key');
  if (key.length === 0) throw badRequest('path parameter key: the key is empty (put it after /v1/kv/; ?list with an empty prefix lists every key)');
  return key;
}

/** The X-Etcd-… headers and ETag of a key-value, as a GET answers them. */
function kvHeaders(kv: EtcdKeyValue, revision: number): Record<string, string> {
  const headers: Record<string, string> = {
    ETag: etag(kv.mod_revision ?? '0'),
    'X-Etcd-Revision': String(revision),
    'X-Etcd-Create-Revision': String(revisionNumber(kv.create_revision)),
    'X-Etcd-Mod-Revision': String(revisionNumber(kv.mod_revision)),
    'X-Etcd-Version': String(revisionNumber(kv.version)),
    'Cache-Control': 'no-cache',
  };
  if (kv.lease && kv.lease !== '0') headers['X-Etcd-Lease'] = kv.lease;
  return headers;
}

function wantsJson(r: V1Request): boolean {
  const accept = r.req.headers.accept;
  return typeof accept === 'string' && /\bapplication\/json\b/i.test(accept);
}

/** Waits until a key or range has a change after `after` (true), or `timeoutMs` passes (false), on the
 *  shared watch hub: one watch, no polling. A compacted `after` is a 410. */
async function changeAfter(r: V1Request, hub: WatchHub, range: { key: Buffer; range_end?: Buffer }, after: number, timeoutMs: number): Promise<boolean> {
  const create = { ...range, start_revision: String(after + 1) };
  await admitted(r, 'Watch_Watch', { create_request: create });
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (changed: boolean, err?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.signal.removeEventListener('abort', gone);
      r.closing.removeEventListener('abort', gone);
      connection.close();
      if (err) reject(err);
      else resolve(changed);
    };
    const gone = (): void => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    r.signal.addEventListener('abort', gone);
    r.closing.addEventListener('abort', gone);
    if (r.closing.aborted) return finish(false);
    const connection = hub.connect(
      {
        deliver(response) {
          const compact = Number(response.compact_revision ?? 0);
          if (compact > 0) {
            return finish(
              false,
              new ProblemError(problem(410, `query parameter after: revision ${after} has been compacted (compacted up to ${compact})`, { compact_revision: compact })),
            );
          }
          if (response.canceled) return finish(false, new ProblemError(problem(503, `the watch for ?wait was canceled: ${String(response.cancel_reason ?? '')}`)));
          if (((response.events as unknown[] | undefined) ?? []).length > 0) finish(true);
        },
      },
      r.metadata,
    );
    connection.request({ create_request: create });
  });
}

/** `?wait`: holds the request until there is a change after `after` (default: the current revision);
 *  false when the timeout passed first (the caller answers 304). */
async function waited(r: V1Request, { hub, maxWatchConnections }: KvSettings, range: { key: Buffer; range_end?: Buffer }): Promise<boolean> {
  if (!flag(r.query, 'wait')) {
    for (const name of ['after', 'timeout']) if (r.query.has(name)) throw badRequest(`query parameter ${name}: only with ?wait`);
    return true;
  }
  if (r.query.has('revision')) throw badRequest('query parameter revision: not with ?wait (a blocking read answers the current value)');
  const timeoutMs = duration(r.query, 'timeout', WAIT_MAX_MS, WAIT_DEFAULT_MS);
  if (hub.stats().connections >= maxWatchConnections) throw tooManyConnections(maxWatchConnections);
  let after = integer(r.query, 'after');
  if (after === undefined) {
    const now = await call<RangeResponse>(r, 'KV', 'Range', { key: range.key, count_only: true, serializable: true }, true);
    after = headerRevision(now.header);
  }
  const changed = await changeAfter(r, hub, range, after, timeoutMs);
  if (!changed && !r.signal.aborted) reply(r, 304, { 'Cache-Control': 'no-cache' });
  return changed;
}

async function getKey(r: V1Request, s: KvSettings): Promise<void> {
  const key = keyOf(r);
  await admitted(r, 'KV_Range', { key });
  for (const name of ['limit', 'keys_only', 'count_only', 'sort', 'continue']) if (r.query.has(name)) throw badRequest(`query parameter ${name}: only with ?list`);
  if (!(await waited(r, s, { key }))) return;
  const revision = integer(r.query, 'revision', { min: 1 });
  const serializable = flag(r.query, 'serializable');
  const ifNoneMatch = precondition(r.req.headers['if-none-match'], 'If-None-Match');
  let answer: RangeResponse;
  try {
    answer = await call<RangeResponse>(r, 'KV', 'Range', { key, revision: String(revision ?? 0), serializable }, true);
  } catch (err) {
    return readFailure(err, s.hub, r, 'revision', revision ?? 0);
  }
  const rev = headerRevision(answer.header);
  const kv = answer.kvs?.[0];
  if (!kv) {
    const under = revision === undefined ? await keysUnder(r, key) : 0;
    const hint = under > 0 ? `; ${under} key${under === 1 ? '' : 's'} under ${JSON.stringify(key.toString('utf8'))}: add ?list to list them` : '';
    throw new ProblemError(problem(404, `key not found${hint}`, { revision: rev }), { 'X-Etcd-Revision': String(rev) });
  }
  const headers = kvHeaders(kv, rev);
  if (ifNoneMatch && (ifNoneMatch.any || ifNoneMatch.revision === String(kv.mod_revision))) return reply(r, 304, headers);
  if (wantsJson(r)) return replyJson(r, 200, v1KeyValue(kv), headers);
  const value = kv.value ?? Buffer.alloc(0);
  headers['Content-Type'] = isUtf8(value) ? 'text/plain; charset=utf-8' : 'application/octet-stream';
  reply(r, 200, headers, value);
}

/** For a 404: how many keys lie under `key` taken as a prefix (a reader who forgot ?list), when the
 *  client may read them; 0 when it may not or the count fails (the 404 stands either way). */
async function keysUnder(r: V1Request, key: Buffer): Promise<number> {
  const request = { ...prefixRange(key), count_only: true, serializable: true };
  try {
    await admitted(r, 'KV_Range', request);
    return revisionNumber((await call<RangeResponse>(r, 'KV', 'Range', request, true)).count);
  } catch {
    return 0;
  }
}

async function list(r: V1Request, s: KvSettings): Promise<void> {
  const prefix = pathBytes(r.params.key, 'key');
  const full = prefixRange(prefix);
  // Checked at once (a refused listing waits for nothing), and again below in the form sent.
  await admitted(r, 'KV_Range', full);
  if (!(await waited(r, s, full))) return;
  const opts: ListOptions = listOptions(r.query);
  const limit = integer(r.query, 'limit', { min: 1, max: LIST_MAX_LIMIT, fallback: LIST_DEFAULT_LIMIT }) ?? LIST_DEFAULT_LIMIT;
  const token = r.query.get('continue');
  let revision = integer(r.query, 'revision', { min: 1 }) ?? 0;
  let range = full;
  if (token !== null) {
    const page = decodeToken(token, prefix, opts);
    if (revision && revision !== page.revision) throw badRequest(`query parameter revision: ${revision} differs from the continue token's revision ${page.revision}`);
    revision = page.revision;
    range = page.range;
  }
  const request: GrpcMessage = {
    ...range,
    limit: String(opts.countOnly ? 0 : limit),
    revision: String(revision),
    serializable: opts.serializable,
    keys_only: opts.keysOnly,
    count_only: opts.countOnly,
    sort_target: opts.sortTarget,
    sort_order: opts.sortOrder,
  };
  await admitted(r, 'KV_Range', request);
  let answer: RangeResponse;
  try {
    answer = await call<RangeResponse>(r, 'KV', 'Range', request, true);
  } catch (err) {
    const what = token === null ? 'revision' : 'continue';
    return readFailure(err, s.hub, r, what, revision);
  }
  const rev = revision || headerRevision(answer.header);
  const count = revisionNumber(answer.count);
  const headers = { 'X-Etcd-Revision': String(rev), 'Cache-Control': 'no-cache' };
  if (opts.countOnly) return replyJson(r, 200, { revision: rev, count }, headers);
  const kvs = answer.kvs ?? [];
  const more = answer.more === true;
  const body: Record<string, unknown> = { revision: rev, count, more, kvs: kvs.map((kv) => v1KeyValue(kv, !opts.keysOnly)) };
  if (more && opts.pageable) body.continue = encodeToken(prefix, opts, rev, kvs[kvs.length - 1].key);
  replyJson(r, 200, body, headers);
}

type TxnResult = NonNullable<TxnResponse['responses']>[number];

/** A write: without a condition one Put (etcd's cheapest write) whose prev_kv tells a new key (201)
 *  from a replaced one (200); with one, one txn — `compare` decides, `success` is the write, `failure`
 *  reads the key's current revision for the 412. Never a read and then a write. */
async function writeOnce(r: V1Request, key: Buffer, cond: Precondition | 'absent' | undefined, write: GrpcMessage): Promise<{ created: boolean; answer: TxnResponse; result?: TxnResult }> {
  if (cond === undefined) {
    const put = write.request_put as GrpcMessage;
    // Checked as asked; the gateway's own prev_kv (to tell 201 from 200) shows the client nothing.
    await admitted(r, 'KV_Put', put);
    const answer = await call<{ header?: ResponseHeader; prev_kv?: EtcdKeyValue | null }>(r, 'KV', 'Put', { ...put, prev_kv: true }, false);
    return { created: !answer.prev_kv, answer, result: { response_put: answer } };
  }
  let compare: GrpcMessage;
  if (cond === 'absent') compare = { key, target: 'Version', result: 'Equal', version: '0' };
  else if (cond.any) compare = { key, target: 'Version', result: 'Greater', version: '0' };
  else compare = { key, target: 'Mod', result: 'Equal', mod_revision: cond.revision };
  const txn = { compare: [compare], success: [write], failure: [{ request_range: { key, keys_only: true } }] };
  await admitted(r, 'KV_Txn', txn);
  const answer = await call<TxnResponse>(r, 'KV', 'Txn', txn, false);
  if (!answer.succeeded) {
    const current = answer.responses?.[0]?.response_range?.kvs?.[0];
    const rev = headerRevision(answer.header);
    const extra: Record<string, unknown> = { code: 9, revision: rev };
    let detail: string;
    if (current) {
      const mod = revisionNumber(current.mod_revision);
      extra.mod_revision = mod;
      detail = cond === 'absent' ? `If-None-Match: * but the key exists (its mod_revision is ${mod})` : `If-Match: the key was changed (its mod_revision is ${mod})`;
    } else detail = 'If-Match: the key does not exist';
    throw new ProblemError(problem(412, detail, extra), current ? { ETag: etag(current.mod_revision ?? '0') } : {});
  }
  return { created: cond === 'absent', answer, result: answer.responses?.[0] };
}

/** The precondition of a write from If-Match / If-None-Match; only `*` is meaningful in If-None-Match. */
function writeCondition(r: V1Request): Precondition | 'absent' | undefined {
  const ifMatch = precondition(r.req.headers['if-match'], 'If-Match');
  const ifNoneMatch = precondition(r.req.headers['if-none-match'], 'If-None-Match');
  if (ifMatch && ifNoneMatch) throw badRequest('headers If-Match and If-None-Match: send one of them, not both');
  if (ifNoneMatch) {
    if (!ifNoneMatch.any) throw badRequest('header If-None-Match: a write takes only * (create the key only when it does not exist)');
    return 'absent';
  }
  return ifMatch;
}

async function putKey(r: V1Request, s: KvSettings): Promise<void> {
  const key = keyOf(r);
  const prev = flag(r.query, 'prev');
  const cond = writeCondition(r);
  if (r.query.has('ttl') && r.query.has('lease')) throw badRequest('query parameters ttl and lease: use one (ttl grants a new lease, lease attaches an existing one)');
  const ttl = integer(r.query, 'ttl', { min: 1, max: MAX_LEASE_TTL });
  let lease = r.query.has('lease') ? leaseId(r.query.get('lease') ?? '', 'query parameter lease') : undefined;
  // Checked before the body is read, and again as sent (writeOnce).
  await admitted(r, 'KV_Put', { key, prev_kv: prev });
  const value = await readBody(r.req, s.maxBodyBytes);
  let granted: string | undefined;
  if (ttl !== undefined) {
    // Refused writes never reach etcd's lease table: the write was checked for access first.
    granted = lease = (await grant(r, ttl)).lease;
  }
  let result;
  try {
    result = await writeOnce(r, key, cond, { request_put: { key, value, lease: lease ?? '0', prev_kv: prev } });
  } catch (err) {
    // A key that was not written leaves no lease behind either.
    if (granted) await revokeQuietly(r, granted);
    // etcd refuses a put on a lease that is gone: the client's (404, as /v1/leases/{id} says of it),
    // or the one granted for this write, which expired before the put (409: nothing was written, and
    // a retry grants a new one).
    if (err instanceof GatewayError && err.code === GrpcCode.NOT_FOUND && err.message === LEASE_NOT_FOUND) {
      if (granted) throw new ProblemError(problem(409, `${LEASE_NOT_FOUND}: the lease granted for this write (ttl=${ttl}) expired before the put; nothing was written`, { code: err.code }));
      throw new ProblemError(problem(404, `${LEASE_NOT_FOUND}: lease ${lease} expired or was revoked; nothing was written`, { code: err.code }));
    }
    throw err;
  }
  const rev = headerRevision(result.answer.header);
  const body: Record<string, unknown> = { revision: rev, mod_revision: rev };
  if (lease) body.lease = lease;
  if (granted) body.ttl = ttl;
  const prevKv = result.result?.response_put?.prev_kv;
  if (prev && prevKv) body.prev = v1KeyValue(prevKv);
  replyJson(r, result.created ? 201 : 200, body, { ETag: etag(rev), 'X-Etcd-Revision': String(rev) });
}

async function deleteKey(r: V1Request): Promise<void> {
  const prev = flag(r.query, 'prev');
  if (flag(r.query, 'prefix')) return deletePrefix(r, prev);
  const key = keyOf(r);
  const cond = writeCondition(r);
  if (cond === 'absent') throw badRequest('header If-None-Match: not with DELETE (use If-Match)');
  const del = { request_delete_range: { key, prev_kv: prev } };
  let header: ResponseHeader | undefined;
  let deleted: { deleted?: string; prev_kvs?: EtcdKeyValue[] } | undefined;
  if (cond) {
    const { answer, result } = await writeOnce(r, key, cond, del);
    header = answer.header;
    deleted = result?.response_delete_range;
  } else {
    await admitted(r, 'KV_DeleteRange', del.request_delete_range);
    const answer = await call<{ header?: ResponseHeader; deleted?: string; prev_kvs?: EtcdKeyValue[] }>(r, 'KV', 'DeleteRange', del.request_delete_range, false);
    header = answer.header;
    deleted = answer;
  }
  const rev = headerRevision(header);
  if (revisionNumber(deleted?.deleted) === 0) throw new ProblemError(problem(404, 'key not found', { revision: rev }), { 'X-Etcd-Revision': String(rev) });
  const headers = { 'X-Etcd-Revision': String(rev) };
  const prevKv = deleted?.prev_kvs?.[0];
  if (prev && prevKv) return replyJson(r, 200, { revision: rev, deleted: 1, prev: v1KeyValue(prevKv) }, headers);
  reply(r, 204, headers);
}

async function deletePrefix(r: V1Request, prev: boolean): Promise<void> {
  const prefix = pathBytes(r.params.key, 'key');
  if (prefix.length === 0) throw badRequest('path parameter key: ?prefix with an empty prefix would delete every key; name a prefix');
  if (r.req.headers['if-match'] !== undefined || r.req.headers['if-none-match'] !== undefined) {
    throw badRequest('headers If-Match / If-None-Match: not with ?prefix (they name one key\'s revision)');
  }
  const request = { ...prefixRange(prefix), prev_kv: prev };
  await admitted(r, 'KV_DeleteRange', request);
  const answer = await call<{ header?: ResponseHeader; deleted?: string; prev_kvs?: EtcdKeyValue[] }>(r, 'KV', 'DeleteRange', request, false);
  const rev = headerRevision(answer.header);
  const body: Record<string, unknown> = { revision: rev, deleted: revisionNumber(answer.deleted) };
  if (prev) body.prev = (answer.prev_kvs ?? []).map((kv) => v1KeyValue(kv));
  replyJson(r, 200, body, { 'X-Etcd-Revision': String(rev) });
}

export function kvHandlers(s: KvSettings): Record<string, V1Handler> {
  return {
    V1_KvGet: (r) => (flag(r.query, 'list') ? list(r, s) : getKey(r, s)),
    V1_KvPut: (r) => putKey(r, s),
    V1_KvDelete: (r) => deleteKey(r),
  };
}

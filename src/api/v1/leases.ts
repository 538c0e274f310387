// /v1/leases: grant, list, look at, renew once and revoke leases. IDs are decimal strings (they exceed
// 2^53); a path or query may also give them in hex as etcdctl prints them.

import type { KeepAliveHub } from '../../core/keepalive';
import { GatewayError, GrpcCode } from '../../core/errors';
import { parseJson, JsonSyntaxError } from '../../protocol/json/parse';
import { readBody } from '../router';
import { admitted, call, cleanupCall } from './etcd';
import { integer, leaseId } from './params';
import { problem, ProblemError } from './problem';
import { revisionNumber } from './representation';
import { badRequest, reply, replyJson, type V1Handler, type V1Request } from './router';
import { isUtf8 } from 'node:buffer';

/** The largest TTL etcd grants (its MaxLeaseTTL). */
export const MAX_LEASE_TTL = 9_000_000_000;

interface TimeToLive {
  ID?: string;
  TTL?: string;
  grantedTTL?: string;
  keys?: Buffer[];
}

function leaseGone(id: string): ProblemError {
  return new ProblemError(problem(404, `lease ${id} not found (it expired or was revoked)`, { code: GrpcCode.NOT_FOUND }));
}

/** The TTL of a grant: `?ttl=` or a JSON body `{"ttl": 30}`, not both. */
async function grantTtl(r: V1Request, maxBodyBytes: number): Promise<number> {
  const fromQuery = integer(r.query, 'ttl', { min: 1, max: MAX_LEASE_TTL });
  const raw = (await readBody(r.req, maxBodyBytes)).toString('utf8');
  if (raw.trim() === '') {
    if (fromQuery === undefined) throw badRequest('query parameter ttl: required (or a JSON body {"ttl": <seconds>})');
    return fromQuery;
  }
  if (fromQuery !== undefined) throw badRequest('query parameter ttl: given in the body too; use one');
  let body: unknown;
  try {
    body = parseJson(raw);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw badRequest(`request body is not valid JSON: ${e.message}`);
    throw e;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('request body: must be a JSON object {"ttl": <seconds>}');
  const fields = body as Record<string, unknown>;
  for (const name of Object.keys(fields)) if (name !== 'ttl') throw badRequest(`/${name}: unknown field (the body is {"ttl": <seconds>})`);
  const ttl = fields.ttl;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_LEASE_TTL) {
    throw badRequest(`/ttl: must be an integer number of seconds from 1 to ${MAX_LEASE_TTL}`);
  }
  return ttl;
}

/** Grants a lease of `ttl` seconds: its ID in decimal and the TTL etcd granted. */
export async function grant(r: V1Request, ttl: number): Promise<{ lease: string; ttl: number }> {
  await admitted(r, 'Lease_LeaseGrant', {});
  const answer = await call<{ ID: string; TTL: string }>(r, 'Lease', 'LeaseGrant', { TTL: String(ttl) }, false);
  return { lease: answer.ID, ttl: revisionNumber(answer.TTL) };
}

/** Revokes a lease the gateway granted for a request that then failed, also when the client has gone
 *  (that is when it matters most); a failure here changes nothing for the client (the lease expires
 *  by itself, nobody keeps it alive). */
export async function revokeQuietly(r: V1Request, id: string): Promise<void> {
  await cleanupCall(r, 'Lease', 'LeaseRevoke', { ID: id }).catch(() => undefined);
}

export function leaseHandlers(s: { keepalive: KeepAliveHub; maxBodyBytes: number }): Record<string, V1Handler> {
  return {
    async V1_LeaseGrant(r) {
      const granted = await grant(r, await grantTtl(r, s.maxBodyBytes));
      replyJson(r, 201, granted, { Location: `/v1/leases/${granted.lease}` });
    },
    async V1_LeaseList(r) {
      await admitted(r, 'Lease_LeaseLeases', {});
      const answer = await call<{ leases?: Array<{ ID: string }> }>(r, 'Lease', 'LeaseLeases', {}, true);
      replyJson(r, 200, { leases: (answer.leases ?? []).map((l) => ({ lease: l.ID })) });
    },
    async V1_LeaseGet(r) {
      const id = leaseId(r.params.id, 'path parameter id');
      const request = { ID: id, keys: true };
      await admitted(r, 'Lease_LeaseTimeToLive', request);
      const answer = await call<TimeToLive>(r, 'Lease', 'LeaseTimeToLive', request, true);
      if (answer.TTL === '-1') throw leaseGone(id);
      const keys: string[] = [];
      const binary: string[] = [];
      // Only the keys the client may read are listed (access control's lease rule).
      const guard = r.guard;
      for (const k of answer.keys ?? []) {
        if (guard && !guard.readable(r.req, k)) continue;
        if (isUtf8(k)) keys.push(k.toString('utf8'));
        else binary.push(k.toString('base64'));
      }
      const body: Record<string, unknown> = { lease: id, ttl: revisionNumber(answer.TTL), granted_ttl: revisionNumber(answer.grantedTTL), keys };
      if (binary.length) body.keys_base64 = binary;
      replyJson(r, 200, body);
    },
    async V1_LeaseKeepAlive(r) {
      const id = leaseId(r.params.id, 'path parameter id');
      await admitted(r, 'Lease_LeaseKeepAlive', { ID: id });
      const answer = await s.keepalive.renew(id, r.metadata);
      const ttl = revisionNumber(answer.TTL as string | undefined);
      if (ttl <= 0) throw leaseGone(id);
      replyJson(r, 200, { lease: id, ttl });
    },
    async V1_LeaseRevoke(r) {
      const id = leaseId(r.params.id, 'path parameter id');
      await admitted(r, 'Lease_LeaseRevoke', { ID: id });
      try {
        await call(r, 'Lease', 'LeaseRevoke', { ID: id }, false);
      } catch (err) {
        if (err instanceof GatewayError && err.code === GrpcCode.NOT_FOUND) throw leaseGone(id);
        throw err;
      }
      reply(r, 204, {});
    },
  };
}

// Gateway access control (optional): a file of clients, each identified by a bearer token (stored as
// its SHA-256) or by its TLS client certificate's subject, granted rights on key prefixes. Every
// decoded request is checked before it reaches etcd — each op of a txn, nested ones included, and its
// compares; each watch; lock and election names — so a client never touches a key outside its grants.
//
// Headers: `Authorization: Bearer <gateway token>` is the gateway credential. etcd's own tokens never
// start with "Bearer ", so when access control is on, a client sends its etcd token (if etcd auth is
// on too) in `Grpc-Metadata-Token`, which etcd's gateway accepts as well.

import fs from 'node:fs';
import crypto from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import YAML from 'yaml';
import { GatewayError, GrpcCode } from '../errors';
import { etcdMetadata, type Guard, type GrpcMessage, type RequestHead } from '../context';
import type { EtcdClient } from '../../etcd/client';

export const RIGHTS = ['read', 'write', 'watch', 'lease', 'lock', 'election', 'admin'] as const;
export type Right = (typeof RIGHTS)[number];

interface Grant {
  prefix: Buffer;
  /** The exclusive end of the prefix's range; undefined: no end (the empty prefix, or all 0xff). */
  end?: Buffer;
  rights: Set<Right>;
  label: string;
}

export interface Client {
  name: string;
  tokenHash?: Buffer;
  certSubject?: string;
  grants: Grant[];
}

/** A range of keys a request touches, in etcd's terms once normalised: one key when `end` is
 *  undefined; `end` = "\0" means every key from `key` on. */
interface KeyRange {
  key: Buffer;
  end?: Buffer;
}

/** What one part of a request needs: a right, on a range of keys (none: a right on no key, as granting a
 *  lease); or a lease the request attaches a key to, renews or revokes, all of whose keys must lie inside
 *  the client's write grants (which only etcd can tell: see leaseCheck); or nothing it could be granted. */
type Requirement = { right: Right; range?: KeyRange; what?: string } | { useLease: string } | { deny: string };

const OPEN_END = Buffer.from([0]);

function prefixEnd(prefix: Buffer): Buffer | undefined {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return undefined;
}

function describe(range: KeyRange): string {
  const show = (b: Buffer): string => JSON.stringify(b.toString('utf8'));
  if (!range.end || range.end.length === 0) return `key ${show(range.key)}`;
  if (range.end.length === 1 && range.end[0] === 0) return `every key from ${show(range.key)}`;
  return `keys [${show(range.key)}, ${show(range.end)})`;
}

function covers(grant: Grant, range: KeyRange): boolean {
  if (grant.prefix.length === 0) return true;
  const { key, end } = range;
  const n = grant.prefix.length;
  if (!end || end.length === 0) return key.length >= n && key.compare(grant.prefix, 0, n, 0, n) === 0;
  if (end.length === 1 && end[0] === 0) return false; // up to the end of the keyspace
  if (Buffer.compare(key, grant.prefix) < 0) return false;
  return grant.end === undefined || Buffer.compare(end, grant.end) <= 0;
}

function buf(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.alloc(0);
}

/** The range etcd acts on for a message with `key` and `range_end`, exactly as etcd reads them. An
 *  absent `range_end` is one key. A present one of zero length is not: etcd's key index reads a non-nil
 *  empty end as "no end" for a range, a delete and a compare (the codec never sends one, see
 *  codec.ts decode, but a check must not depend on that); a watch alone forces it back to one key.
 *  "\0" is every key from `key` on. */
export function rangeOf(req: GrpcMessage | undefined, kind: 'kv' | 'watch' = 'kv'): KeyRange {
  const key = buf(req?.key);
  const end = req?.range_end;
  if (end === undefined || end === null) return { key };
  const e = buf(end);
  if (e.length === 0) return kind === 'watch' ? { key } : { key, end: OPEN_END };
  if (e.length === 1 && e[0] === 0) return { key, end: OPEN_END };
  return { key, end: e };
}

/** The keys under `name` as a prefix: what etcd's lock and election services create and read. */
function asPrefix(name: unknown): KeyRange {
  const key = buf(name);
  return { key, end: prefixEnd(key) ?? OPEN_END };
}

/** A lease a request attaches a key to or acts on; "0" (or absent) is none. */
function leaseUse(lease: unknown, out: Requirement[]): void {
  if (lease === undefined || lease === null) return;
  const id = String(lease);
  if (id !== '0' && id !== '') out.push({ useLease: id });
}

function putRequirements(put: GrpcMessage, out: Requirement[]): void {
  const range = rangeOf({ key: put.key });
  out.push({ right: 'write', range });
  // The previous value comes back in the answer: that is a read.
  if (put.prev_kv === true) out.push({ right: 'read', range, what: `the previous value (prev_kv) of ${describe(range)}` });
  // A put onto a lease joins its keys: the lease must be one the client may use (no `lease` right is
  // needed to attach a key: clients put with leases they were given).
  leaseUse(put.lease, out);
}

function deleteRequirements(del: GrpcMessage, out: Requirement[]): void {
  const range = rangeOf(del);
  out.push({ right: 'write', range });
  if (del.prev_kv === true) out.push({ right: 'read', range, what: `the previous values (prev_kv) of ${describe(range)}` });
}

function txnRequirements(txn: GrpcMessage, out: Requirement[]): void {
  for (const c of (txn.compare as GrpcMessage[] | undefined) ?? []) out.push({ right: 'read', range: rangeOf(c) });
  for (const op of [...((txn.success as GrpcMessage[] | undefined) ?? []), ...((txn.failure as GrpcMessage[] | undefined) ?? [])]) {
    if (op.request_range) out.push({ right: 'read', range: rangeOf(op.request_range as GrpcMessage) });
    if (op.request_put) putRequirements(op.request_put as GrpcMessage, out);
    if (op.request_delete_range) deleteRequirements(op.request_delete_range as GrpcMessage, out);
    if (op.request_txn) txnRequirements(op.request_txn as GrpcMessage, out);
  }
}

/** The key an election call acts on (`leader.key`: etcd's Proclaim puts it, Resign deletes it, both
 *  only comparing its create revision) must be one of the election's own keys, `<name>/...`. */
function leaderRequirements(leader: GrpcMessage | undefined, out: Requirement[]): void {
  const name = buf(leader?.name);
  out.push({ right: 'election', range: asPrefix(name) });
  const key = rangeOf({ key: leader?.key });
  out.push({ right: 'election', range: key });
  const under = Buffer.concat([name, Buffer.from('/')]);
  if (key.key.length <= under.length || key.key.compare(under, 0, under.length, 0, under.length) !== 0) {
    out.push({ deny: `act on ${describe(key)}: leader.key is not a key of election ${JSON.stringify(name.toString('utf8'))} (its keys are "<name>/...")` });
  }
}

/** What an operation needs, from its decoded request: every key and range etcd will act on. */
export function requirements(operationId: string, req: GrpcMessage): Requirement[] {
  const out: Requirement[] = [];
  switch (operationId) {
    case 'KV_Range':
      out.push({ right: 'read', range: rangeOf(req) });
      return out;
    case 'KV_Put':
      putRequirements(req, out);
      return out;
    case 'KV_DeleteRange':
      deleteRequirements(req, out);
      return out;
    case 'KV_Txn':
      txnRequirements(req, out);
      return out;
    case 'Watch_Watch':
      if (req.create_request) out.push({ right: 'watch', range: rangeOf(req.create_request as GrpcMessage, 'watch') });
      return out;
    case 'Lock_Lock':
      out.push({ right: 'lock', range: asPrefix(req.name) });
      leaseUse(req.lease, out);
      return out;
    case 'Lock_Unlock':
      out.push({ right: 'lock', range: rangeOf({ key: req.key }) });
      return out;
    case 'Election_Campaign':
      out.push({ right: 'election', range: asPrefix(req.name) });
      leaseUse(req.lease, out);
      return out;
    case 'Election_Leader':
    case 'Election_Observe':
      out.push({ right: 'election', range: asPrefix(req.name) });
      return out;
    case 'Election_Proclaim':
    case 'Election_Resign':
      leaderRequirements(req.leader as GrpcMessage | undefined, out);
      // etcd's election service opens a session on leader.lease for the call, which renews it.
      leaseUse((req.leader as GrpcMessage | undefined)?.lease, out);
      return out;
    case 'Lease_LeaseRevoke':
    case 'Lease_LeaseKeepAlive':
      out.push({ right: 'lease' });
      leaseUse(req.ID, out);
      return out;
    case 'Auth_Authenticate':
      return out;
  }
  if (operationId.startsWith('Lease_')) out.push({ right: 'lease' });
  else out.push({ right: 'admin', what: 'the cluster (members, maintenance, auth, compaction)' });
  return out;
}

export class AccessControl {
  /** Bearer tokens already proven, to their client: at most one entry per client with a token (only a
   *  token whose hash matched is kept), dropped with this object when the access file is reloaded. A
   *  token seen before is one Map lookup instead of a SHA-256 and a compare per client; an unknown token
   *  still takes the constant-time path, and whether a token is valid is what the answer says anyway. */
  private readonly proven = new Map<string, Client>();

  constructor(readonly clients: Client[]) {}

  /** Parses an access file (YAML or JSON); throws an Error naming what is wrong. */
  static parse(text: string): AccessControl {
    const doc = YAML.parse(text) as { clients?: unknown };
    if (!doc || !Array.isArray(doc.clients)) throw new Error('the file must have a "clients" list');
    const names = new Set<string>();
    const clients = doc.clients.map((raw, i): Client => {
      const c = raw as Record<string, unknown>;
      const where = `clients[${i}]`;
      if (typeof c.name !== 'string' || !c.name) throw new Error(`${where}: "name" is required`);
      if (names.has(c.name)) throw new Error(`${where}: the name "${c.name}" is used twice`);
      names.add(c.name);
      const unknown = Object.keys(c).filter((k) => !['name', 'token_sha256', 'cert_subject', 'grants'].includes(k));
      if (unknown.length) throw new Error(`${where}: unknown field "${unknown[0]}"`);
      if (c.token_sha256 === undefined && c.cert_subject === undefined) throw new Error(`${where}: needs token_sha256 or cert_subject`);
      if (c.token_sha256 !== undefined && !(typeof c.token_sha256 === 'string' && /^[0-9a-f]{64}$/i.test(c.token_sha256))) {
        throw new Error(`${where}.token_sha256: must be 64 hex digits (the SHA-256 of the token)`);
      }
      if (c.cert_subject !== undefined && typeof c.cert_subject !== 'string') throw new Error(`${where}.cert_subject: must be a string`);
      if (!Array.isArray(c.grants)) throw new Error(`${where}.grants: must be a list`);
      const grants = c.grants.map((g0, j): Grant => {
        const g = g0 as Record<string, unknown>;
        const at = `${where}.grants[${j}]`;
        if (typeof g.prefix !== 'string') throw new Error(`${at}.prefix: must be a string ("" for every key)`);
        if (!Array.isArray(g.rights) || g.rights.length === 0) throw new Error(`${at}.rights: must list rights`);
        for (const r of g.rights) if (!RIGHTS.includes(r as Right)) throw new Error(`${at}.rights: unknown right "${String(r)}" (known: ${RIGHTS.join(', ')})`);
        const prefix = Buffer.from(g.prefix, 'utf8');
        return { prefix, end: prefixEnd(prefix), rights: new Set(g.rights as Right[]), label: JSON.stringify(g.prefix) };
      });
      return {
        name: c.name,
        tokenHash: typeof c.token_sha256 === 'string' ? Buffer.from(c.token_sha256, 'hex') : undefined,
        certSubject: c.cert_subject as string | undefined,
        grants,
      };
    });
    return new AccessControl(clients);
  }

  /** The client a request comes from; throws 401 when it proves no identity. */
  identify(req: RequestHead): Client {
    const auth = req.headers.authorization;
    if (typeof auth === 'string' && auth.startsWith('Bearer ')) {
      const token = auth.slice(7);
      const known = this.proven.get(token);
      if (known) return known;
      const presented = crypto.hash('sha256', token, 'buffer');
      // Compared with every client's hash, without stopping at a match: constant time.
      let found: Client | undefined;
      for (const c of this.clients) if (c.tokenHash && crypto.timingSafeEqual(c.tokenHash, presented) && !found) found = c;
      if (found) {
        if (this.proven.size < this.clients.length) this.proven.set(token, found);
        return found;
      }
      throw new GatewayError(GrpcCode.UNAUTHENTICATED, 'gateway: invalid gateway token');
    }
    const socket = req.socket as TLSSocket;
    if (typeof socket.getPeerCertificate === 'function' && socket.authorized) {
      const cert = socket.getPeerCertificate();
      const subject = cert?.subject ? Object.entries(cert.subject).map(([k, v]) => `${k}=${String(v)}`).join(',') : '';
      const client = this.clients.find((c) => c.certSubject !== undefined && c.certSubject === subject);
      if (client) return client;
    }
    throw new GatewayError(GrpcCode.UNAUTHENTICATED, 'gateway: a gateway token (Authorization: Bearer ...) or a known client certificate is required');
  }

  /** Throws 403 (code 7) naming what was refused unless every requirement that the request alone
   *  settles is granted; returns the leases whose keys must still be checked (see leaseCheck). */
  authorize(client: Client, operationId: string, req: GrpcMessage): string[] | undefined {
    let leases: string[] | undefined;
    for (const need of requirements(operationId, req)) {
      if ('useLease' in need) {
        (leases ??= []).push(need.useLease);
        continue;
      }
      if ('deny' in need) throw new GatewayError(GrpcCode.PERMISSION_DENIED, `gateway: client "${client.name}" may not ${need.deny}`);
      if (client.grants.some((g) => g.rights.has(need.right) && (!need.range || covers(g, need.range)))) continue;
      const granted = client.grants.filter((g) => g.rights.has(need.right));
      const what = need.what ?? (need.range ? describe(need.range) : 'leases');
      const prefixes = granted.map((g) => g.label).join(', ') || 'none';
      throw new GatewayError(
        GrpcCode.PERMISSION_DENIED,
        `gateway: client "${client.name}" may not ${need.right} ${what} (its ${need.right} prefixes: ${prefixes})`,
      );
    }
    return leases;
  }

  /** Whether a grant gives `right` on `key`. */
  may(client: Client, right: Right, key: Buffer): boolean {
    return client.grants.some((g) => g.rights.has(right) && covers(g, { key }));
  }

  /** A lease is the client's to use (attach a key to, keep alive, revoke) only while every key it holds
   *  lies inside the client's write grants: revoking deletes them all, renewing keeps them all, and a
   *  foreign key attached to a client's lease would make it unusable to its owner. A lease etcd does
   *  not know is left to etcd to refuse. The keys outside are counted, never named: the client may not
   *  be allowed to read their names. */
  async leaseCheck(client: Client, ids: string[], timeToLive: (id: string) => Promise<Buffer[] | undefined>): Promise<void> {
    for (const id of ids) {
      const keys = await timeToLive(id);
      if (!keys) continue;
      let outside = 0;
      for (const key of keys) if (!this.may(client, 'write', key)) outside++;
      if (outside === 0) continue;
      const prefixes = client.grants.filter((g) => g.rights.has('write')).map((g) => g.label).join(', ') || 'none';
      throw new GatewayError(
        GrpcCode.PERMISSION_DENIED,
        `gateway: client "${client.name}" may not use lease ${id}: it holds ${outside} key${outside === 1 ? '' : 's'} outside the client's write prefixes (${prefixes})`,
      );
    }
  }
}

/** The keys of a lease, as etcd lists them; undefined when etcd knows no such lease. */
function leaseKeys(etcd: EtcdClient, req: RequestHead): (id: string) => Promise<Buffer[] | undefined> {
  return async (id) => {
    const answer = await etcd.unary<{ TTL?: string; keys?: Buffer[] }>('Lease', 'LeaseTimeToLive', { ID: id, keys: true }, {
      idempotent: true,
      metadata: etcdMetadata(req.headers),
    });
    return answer.TTL === '-1' ? undefined : (answer.keys ?? []);
  };
}

/** The check routes run: who is asking (401) and, given an operation, whether it may (403). A request
 *  that uses a lease is checked against the lease's keys in etcd: the guard then answers a promise. */
export function accessGuard(policy: AccessPolicy, etcd: EtcdClient): Guard {
  const guard = (req: RequestHead, operationId?: string, request?: GrpcMessage): Promise<void> | undefined => {
    const client = policy.clientOf(req);
    if (!operationId || !request) return undefined;
    const access = policy.current;
    const leases = access.authorize(client, operationId, request);
    return leases ? access.leaseCheck(client, leases, leaseKeys(etcd, req)) : undefined;
  };
  return Object.assign(guard, {
    readable: (req: RequestHead, key: Buffer): boolean => policy.current.may(policy.clientOf(req), 'read', key),
  });
}

/** The client a request was identified as, on the request itself (a WeakMap cost an ephemeron entry
 *  and its GC work per request). */
const IDENTIFIED = Symbol('gateway client');

/** The access file in force: reloaded when it changes or on SIGHUP; a bad file leaves the last good one. */
export class AccessPolicy {
  current: AccessControl;
  private readonly listener = (): void => {
    this.reload();
  };

  constructor(
    readonly file: string,
    private readonly log: { info(o: object, m: string): void; error(o: object, m: string): void },
  ) {
    this.current = AccessControl.parse(fs.readFileSync(file, 'utf8'));
    fs.watchFile(file, { interval: 500 }, this.listener);
  }

  /** A request is identified once (the rate limit and every check after it share the answer); its
   *  gateway token is then removed so it never reaches etcd as an etcd token (which etcd would refuse
   *  with 401). Throws 401 when the request proves no identity. */
  clientOf(req: RequestHead): Client {
    const tagged = req as RequestHead & { [IDENTIFIED]?: Client };
    let client = tagged[IDENTIFIED];
    if (!client) {
      client = this.current.identify(req);
      tagged[IDENTIFIED] = client;
      // Blanked rather than deleted: `delete` turns the headers object into a slow dictionary.
      if (req.headers.authorization?.startsWith('Bearer ')) req.headers.authorization = undefined;
    }
    return client;
  }

  reload(): boolean {
    try {
      this.current = AccessControl.parse(fs.readFileSync(this.file, 'utf8'));
      this.log.info({ file: this.file, clients: this.current.clients.length }, 'access file loaded');
      return true;
    } catch (e) {
      this.log.error({ file: this.file, err: (e as Error).message }, 'access file rejected; the previous one stays in force');
      return false;
    }
  }

  close(): void {
    fs.unwatchFile(this.file, this.listener);
  }
}

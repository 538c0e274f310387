// The authorization checker: generated access files, and for each client thousands of generated
// requests (hostile ones among them) across both faces — /v3/ KV with every range_end form, txns with
// nested txns and compares, leases, locks, elections with leader keys pointing elsewhere, watches over
// HTTP, WebSocket and SSE from revision 1, /v1/ keys, listings with forged and replayed continue
// tokens, /v1/ leases — against a real etcd that holds keys inside and outside every grant.
//
// It proves three things, and counts every violation of each:
// - from etcd's own history (a watch on the whole keyspace from revision 1, through etcd's own gateway,
//   never this one): after each client's batch, no key outside that client's write, lock and election
//   grants was created, changed or deleted;
// - no value or key name that the client may not see (read or watch grants) is in any 2xx answer or
//   stream message it got, unless the client wrote that value or named that key itself;
// - the decision: with its own model of the grants (written apart from src/core/security/access.ts), each
//   request is either allowed, and must not be refused with 403, or not, and must be refused.
//
// Requests of one client run one after the other, so that etcd's history of a batch is that client's
// and the model's view of the leases (which keys each holds) is exact when a request is sent.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startGateway, type GatewayFixture } from './gateway';
import { httpWatch, type MessageQueue } from './watch-clients';
import { AccessPolicy } from '../../src/core/security/access';
import { startTestEtcd, type TestEtcd } from './etcd';
import { Rng } from './fuzz';

type Right = 'read' | 'write' | 'watch' | 'lease' | 'lock' | 'election' | 'admin';
const RIGHTS: Right[] = ['read', 'write', 'watch', 'lease', 'lock', 'election', 'admin'];
const PREFIXES = ['a/', 'a/x/', 'ab/', 'b/', 'c/', 'locks/a/', 'locks/b/', 'el/a/', 'el/b/'];

interface Grant {
  prefix: string;
  rights: Right[];
}
interface ClientSpec {
  name: string;
  token: string;
  grants: Grant[];
}

export interface AccessCheckReport {
  seed: number;
  files: number;
  clients: number;
  requests: number;
  allowed: number;
  refused: number;
  /** By operation, how many were sent. */
  byOp: Record<string, number>;
  historyEvents: number;
  violations: string[];
}

/** How long a stream (watch) is read before it is closed: long enough for its catch-up from revision 1. */
const STREAM_MS = 60;

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const ZERO = '\0';

/** The end of the range of keys under a prefix; undefined: no end. */
function succ(prefix: string): string | undefined {
  const b = Buffer.from(prefix, 'latin1');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      b[i]++;
      return b.subarray(0, i + 1).toString('latin1');
    }
  }
  return undefined;
}

/** A set of keys as the model sees it: one key, [from, to), or every key from `from` on. */
type Span = { one: string } | { from: string; to?: string };

function spanOf(key: string, end: string | undefined, kind: 'kv' | 'watch' = 'kv'): Span {
  // Written from etcd's rules, not the gateway's code: no end (or, in the dialect, an empty one) is one
  // key; "\0" is every key from `key` on.
  if (end === undefined || end === '') return kind === 'watch' || end === undefined ? { one: key } : { one: key };
  if (end === ZERO) return { from: key };
  return { from: key, to: end };
}

function inside(prefix: string, span: Span): boolean {
  if (prefix === '') return true;
  if ('one' in span) return span.one.startsWith(prefix);
  const end = succ(prefix);
  if (span.to === undefined) return false;
  return span.from >= prefix && (end === undefined || span.to <= end);
}

class Model {
  constructor(readonly client: ClientSpec) {}
  may(right: Right, span?: Span): boolean {
    return this.client.grants.some((g) => g.rights.includes(right) && (!span || inside(g.prefix, span)));
  }
  sees(key: string): boolean {
    return this.may('read', { one: key }) || this.may('watch', { one: key });
  }
  changes(key: string): boolean {
    return this.may('write', { one: key }) || this.may('lock', { one: key }) || this.may('election', { one: key });
  }
}

/** What a generated request is, and whether the model allows it. `allowed` undefined: no verdict (a
 *  forged token may be refused as malformed or as outside the grant; only leaks and history judge). */
interface Generated {
  op: string;
  allowed?: boolean;
  /** Key names the request itself carries (echoes of them are no leak). */
  named: string[];
  run(): Promise<{ status: number; messages: unknown[]; raw?: string }>;
}

export async function runAccessCheck(opts: { seed?: number; files?: number; clientsPerFile?: number; requestsPerClient?: number; log?: (line: string) => void } = {}): Promise<AccessCheckReport> {
  const seed = opts.seed ?? (Date.now() & 0x7fffffff);
  const generator = new Rng(seed);
  const random = (): number => generator.next();
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  const chance = (p: number): boolean => random() < p;
  const report: AccessCheckReport = { seed, files: opts.files ?? 3, clients: 0, requests: 0, allowed: 0, refused: 0, byOp: {}, historyEvents: 0, violations: [] };
  const violate = (what: string): void => {
    if (report.violations.length < 200) report.violations.push(what);
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-access-check-'));
  const file = path.join(dir, 'access.yaml');
  const etcd: TestEtcd = await startTestEtcd();
  let policy: AccessPolicy | undefined;
  let gw: GatewayFixture | undefined;
  let history: MessageQueue | undefined;
  try {
    // The keyspace: three keys under every prefix plus a few between them; every value written is
    // registered with the key it belongs to and who wrote it.
    const keys: string[] = [];
    for (const p of PREFIXES) for (let i = 0; i < 3; i++) keys.push(`${p}key${keys.length}`);
    keys.push(`a${'key'}${keys.length}`, `b${'key'}${keys.length + 1}`, `zz/key${keys.length + 2}`);
    const names = new Map<string, string>();
    for (const k of keys) {
      names.set(k, k);
      names.set(b64(k), k);
    }
    const values = new Map<string, { key: string; writer: string }>();
    let serial = 0;
    const newValue = (key: string, writer: string): string => {
      const v = `val-${serial++}-${crypto.randomBytes(3).toString('hex')}`;
      values.set(v, { key, writer });
      values.set(b64(v), { key, writer });
      return v;
    };
    const etcdPost = async (p: string, body: object): Promise<any> => (await (await fetch(etcd.clientUrl + p, { method: 'POST', body: JSON.stringify(body) })).json()); // eslint-disable-line @typescript-eslint/no-explicit-any
    for (const k of keys) await etcdPost('/v3/kv/put', { key: b64(k), value: b64(newValue(k, 'seed')) });
    // Leases holding keys of one prefix, and some of two.
    const leases: string[] = [];
    for (let i = 0; i < 8; i++) {
      const id = (await etcdPost('/v3/lease/grant', { TTL: 3600 })).ID as string;
      leases.push(id);
      const holders = i % 3 === 0 ? [pick(keys), pick(keys)] : [pick(keys)];
      for (const k of holders) {
        const leased = `${k}/leased${i}`;
        names.set(leased, leased);
        names.set(b64(leased), leased);
        await etcdPost('/v3/kv/put', { key: b64(leased), value: b64(newValue(leased, 'seed')), lease: id });
      }
    }
    const leasedKeys = async (id: string): Promise<string[]> => {
      const t = await etcdPost('/v3/lease/timetolive', { ID: id, keys: true });
      return t.TTL === '-1' ? [] : ((t.keys ?? []) as string[]).map((k) => Buffer.from(k, 'base64').toString('latin1'));
    };

    // etcd's own history, from revision 1, through etcd's own gateway.
    history = await httpWatch(etcd.clientUrl, JSON.stringify({ create_request: { key: b64(ZERO), range_end: b64(ZERO), start_revision: '1' } }));
    let seen = 0;
    const events = (): Array<{ type?: string; kv: { key: string; mod_revision: string } }> => {
      const out = [];
      for (const m of history!.messages) for (const e of m.result?.events ?? []) out.push(e);
      return out;
    };
    const revisionNow = async (): Promise<number> => Number((await etcdPost('/v3/kv/range', { key: b64('x') })).header.revision);
    const historyUpTo = async (rev: number): Promise<void> => {
      for (let i = 0; i < 400; i++) {
        const all = events();
        if (all.length && Number(all[all.length - 1].kv.mod_revision) >= rev) return;
        await new Promise((r) => setTimeout(r, 10));
      }
      violate(`etcd's history did not reach revision ${rev} within 4 s`);
    };

    // The seeding is history too, but no client's.
    await historyUpTo(await revisionNow());
    seen = events().length;
    const dummyLog = { info: () => undefined, error: () => undefined };
    for (let f = 0; f < report.files; f++) {
      const clients: ClientSpec[] = [];
      const n = opts.clientsPerFile ?? 4;
      for (let c = 0; c < n; c++) {
        const grants: Grant[] = [];
        const count = 1 + Math.floor(random() * 3);
        for (let g = 0; g < count; g++) {
          const rights = RIGHTS.filter(() => chance(0.45));
          if (rights.length === 0) rights.push(pick(RIGHTS));
          // Now and then a grant on everything, for one right.
          grants.push(chance(0.08) ? { prefix: '', rights: [pick(['read', 'watch', 'lease'] as Right[])] } : { prefix: pick(PREFIXES), rights });
        }
        clients.push({ name: `c${f}-${c}`, token: crypto.randomBytes(12).toString('hex'), grants });
      }
      const yaml = ['clients:'];
      for (const c of clients) {
        yaml.push(`  - name: ${c.name}`, `    token_sha256: ${crypto.createHash('sha256').update(c.token).digest('hex')}`, '    grants:');
        for (const g of c.grants) yaml.push(`      - { prefix: ${JSON.stringify(g.prefix)}, rights: [${g.rights.join(', ')}] }`);
      }
      fs.writeFileSync(file, `${yaml.join('\n')}\n`);
      if (!policy) {
        policy = new AccessPolicy(file, dummyLog);
        gw = await startGateway({ etcd, access: policy, lockWaitMs: 1000 });
      } else if (!policy.reload()) throw new Error('the generated access file was refused');
      report.clients += clients.length;
      const tokensSeen: string[] = [];

      for (const client of clients) {
        const model = new Model(client);
        const auth = { Authorization: `Bearer ${client.token}` };
        const base = gw!.url;
        const post = async (p: string, body: object): Promise<{ status: number; messages: unknown[] }> => {
          const res = await fetch(base + p, { method: 'POST', body: JSON.stringify(body), headers: auth });
          const text = await res.text();
          return { status: res.status, messages: text.trim() ? text.trim().split('\n').map((l) => JSON.parse(l)) : [] };
        };
        const v1 = async (method: string, p: string, body?: string): Promise<{ status: number; messages: unknown[]; raw?: string }> => {
          const res = await fetch(base + p, { method, body, headers: { ...auth, Accept: 'application/json' } });
          const raw = await res.text();
          let parsed: unknown;
          try {
            parsed = JSON.parse(raw);
          } catch {
            parsed = undefined;
          }
          return { status: res.status, messages: parsed === undefined ? [] : [parsed], raw: parsed === undefined ? raw : undefined };
        };
        // Half the keys and prefixes come from the client's own grants, so that both decisions are common.
        const ownPrefixes = client.grants.map((g) => g.prefix);
        const ownKeys = keys.filter((k) => ownPrefixes.some((p) => k.startsWith(p)));
        const somePrefix = (): string => (chance(0.5) ? pick(ownPrefixes) || pick(PREFIXES) : pick(PREFIXES));
        const someKey = (): string => {
          if (chance(0.15)) return `${somePrefix()}new${Math.floor(random() * 5)}`;
          return chance(0.5) && ownKeys.length ? pick(ownKeys) : pick(keys);
        };
        /** A range in one of etcd's forms, with the model's span of it. */
        const someRange = (): { body: Record<string, string>; span: Span; named: string[] } => {
          const form = Math.floor(random() * 7);
          const p = somePrefix() || 'a/';
          const key = chance(0.5) ? p : someKey();
          switch (form) {
            case 0:
              return { body: { key: b64(key) }, span: spanOf(key, undefined), named: [key] };
            case 1:
              return { body: { key: b64(key), range_end: '' }, span: spanOf(key, ''), named: [key] };
            case 2:
              return { body: { key: b64(key), range_end: b64(ZERO) }, span: spanOf(key, ZERO), named: [key] };
            case 3:
              return { body: { key: b64(ZERO), range_end: b64(ZERO) }, span: spanOf(ZERO, ZERO), named: [] };
            case 4: {
              const end = succ(p)!;
              return { body: { key: b64(p), range_end: b64(end) }, span: spanOf(p, end), named: [] };
            }
            case 5: {
              const end = someKey();
              return { body: { key: b64(key), range_end: b64(end) }, span: spanOf(key, end), named: [key, end] };
            }
            default:
              return { body: { key: b64(key), rangeEnd: b64(`${key}${ZERO}`) }, span: spanOf(key, `${key}${ZERO}`), named: [key] };
          }
        };
        const someLease = async (): Promise<{ id: string; ok: boolean }> => {
          const id = pick(leases);
          const held = await leasedKeys(id);
          return { id, ok: held.every((k) => model.may('write', { one: k })) };
        };
        /** A txn op and whether the model allows it; nested txns to depth 2. */
        const someOps = async (depth: number): Promise<{ ops: object[]; ok: boolean; named: string[] }> => {
          const ops: object[] = [];
          let ok = true;
          const named: string[] = [];
          for (let i = 0, count = 1 + Math.floor(random() * 3); i < count; i++) {
            const kind = depth < 2 && chance(0.2) ? 3 : Math.floor(random() * 3);
            if (kind === 0) {
              const r = someRange();
              ops.push({ request_range: r.body });
              ok &&= model.may('read', r.span);
              named.push(...r.named);
            } else if (kind === 1) {
              const key = someKey();
              const prev = chance(0.3);
              const put: Record<string, unknown> = { key: b64(key), value: b64(newValue(key, client.name)), prev_kv: prev };
              ok &&= model.may('write', { one: key }) && (!prev || model.may('read', { one: key }));
              if (chance(0.2)) {
                const lease = await someLease();
                put.lease = lease.id;
                ok &&= lease.ok;
              }
              ops.push({ request_put: put });
              named.push(key);
            } else if (kind === 2) {
              const r = someRange();
              const prev = chance(0.3);
              ops.push({ request_delete_range: { ...r.body, prev_kv: prev } });
              ok &&= model.may('write', r.span) && (!prev || model.may('read', r.span));
              named.push(...r.named);
            } else {
              const inner = await someTxn(depth + 1);
              ops.push({ request_txn: inner.txn });
              ok &&= inner.ok;
              named.push(...inner.named);
            }
          }
          return { ops, ok, named };
        };
        const someTxn = async (depth: number): Promise<{ txn: object; ok: boolean; named: string[] }> => {
          const compare: object[] = [];
          let ok = true;
          const named: string[] = [];
          for (let i = 0, count = Math.floor(random() * 3); i < count; i++) {
            const r = someRange();
            const target = pick(['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE']);
            const field = { VERSION: 'version', CREATE: 'create_revision', MOD: 'mod_revision', VALUE: 'value', LEASE: 'lease' }[target]!;
            compare.push({ ...r.body, target, result: pick(['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL']), [field]: target === 'VALUE' ? b64('x') : '1' });
            ok &&= model.may('read', r.span);
            named.push(...r.named);
          }
          const success = await someOps(depth);
          const failure = await someOps(depth);
          return { txn: { compare, success: success.ops, failure: failure.ops }, ok: ok && success.ok && failure.ok, named: [...named, ...success.named, ...failure.named] };
        };
        /** Opens a stream, reads it for a moment, closes it. */
        const briefly = async (q: MessageQueue & { status?: number }): Promise<{ status: number; messages: unknown[] }> => {
          await new Promise((r) => setTimeout(r, STREAM_MS));
          q.close();
          return { status: q.status ?? 200, messages: q.messages };
        };
        const wsOnce = async (p: string, message: object): Promise<{ status: number; messages: unknown[] }> => {
          const ws = new WebSocket(base.replace(/^http/, 'ws') + p, { headers: auth });
          const messages: unknown[] = [];
          ws.on('message', (m) => messages.push(JSON.parse(m.toString())));
          const opened = await new Promise<number>((resolve) => {
            ws.once('open', () => resolve(101));
            ws.once('unexpected-response', (_req, res) => {
              resolve(res.statusCode ?? 0);
              ws.terminate();
            });
            ws.once('error', () => resolve(0));
          });
          if (opened !== 101) return { status: opened, messages };
          ws.send(JSON.stringify(message));
          await new Promise((r) => setTimeout(r, STREAM_MS));
          ws.terminate();
          // A message refused by access control is an error message with code 7 on an open socket.
          const refusedHere = messages.some((m) => (m as { error?: { grpc_code?: number } }).error?.grpc_code === 7);
          return { status: refusedHere ? 403 : 200, messages };
        };

        const generators: Array<() => Promise<Generated>> = [
          async () => {
            const r = someRange();
            const body = { ...r.body, ...(chance(0.3) ? { keys_only: true } : {}), ...(chance(0.2) ? { limit: 2 } : {}) };
            return { op: 'v3 range', allowed: model.may('read', r.span), named: r.named, run: () => post('/v3/kv/range', body) };
          },
          async () => {
            const key = someKey();
            const prev = chance(0.3);
            const body: Record<string, unknown> = { key: b64(key), value: b64(newValue(key, client.name)), prev_kv: prev };
            let ok = model.may('write', { one: key }) && (!prev || model.may('read', { one: key }));
            if (chance(0.25)) {
              const lease = await someLease();
              body.lease = lease.id;
              ok &&= lease.ok;
            }
            return { op: 'v3 put', allowed: ok, named: [key], run: () => post('/v3/kv/put', body) };
          },
          async () => {
            const r = someRange();
            const prev = chance(0.4);
            return { op: 'v3 deleterange', allowed: model.may('write', r.span) && (!prev || model.may('read', r.span)), named: r.named, run: () => post('/v3/kv/deleterange', { ...r.body, prev_kv: prev }) };
          },
          async () => {
            const t = await someTxn(0);
            return { op: 'v3 txn', allowed: t.ok, named: t.named, run: () => post('/v3/kv/txn', t.txn) };
          },
          async () => {
            const lease = await someLease();
            const op = pick(['revoke', 'keepalive', 'timetolive', 'leases']);
            const body = op === 'timetolive' ? { ID: lease.id, keys: true } : op === 'leases' ? {} : { ID: lease.id };
            const allowed = model.may('lease') && (op === 'timetolive' || op === 'leases' || lease.ok);
            return { op: `v3 lease ${op}`, allowed, named: [], run: () => post(`/v3/lease/${op}`, body) };
          },
          async () => {
            // A name of its own each time: a lock held by an earlier request would make this one wait.
            const lockName = `${pick(['locks/a/', 'locks/b/', 'a/'])}m${serial++}`;
            const lease = (await etcdPost('/v3/lease/grant', { TTL: 600 })).ID as string;
            const allowed = model.may('lock', { from: lockName, to: succ(lockName) });
            return { op: 'v3 lock', allowed, named: [lockName], run: () => post('/v3/lock/lock', { name: b64(lockName), lease }) };
          },
          async () => {
            // /v1/ locks: a try-lock on a name of its own, on a new lease or on one of the leases.
            const lockName = `${pick(['locks/a/', 'locks/b/', 'a/'])}n${serial++}`;
            const nameOk = model.may('lock', { from: lockName, to: succ(lockName) });
            if (chance(0.5)) return { op: 'v1 lock', allowed: nameOk && model.may('lease'), named: [lockName], run: () => v1('POST', `/v1/locks/${lockName}?wait=0&ttl=600`) };
            const lease = await someLease();
            return { op: 'v1 lock on a lease', allowed: nameOk && lease.ok, named: [lockName], run: () => v1('POST', `/v1/locks/${lockName}?wait=0&lease=${lease.id}`) };
          },
          async () => {
            // Keepalives on a WebSocket: a refusal is an error message on the socket.
            const lease = await someLease();
            return { op: 'v3 keepalive ws', allowed: model.may('lease') && lease.ok, named: [], run: () => wsOnce('/v3/lease/keepalive', { ID: lease.id }) };
          },
          async () => {
            const name = `${pick(['el/a/', 'el/b/'])}e${Math.floor(random() * 2)}`;
            const target = chance(0.5) ? pick(keys) : `${name}/${(1000 + Math.floor(random() * 10)).toString(16)}`;
            const op = pick(['proclaim', 'resign', 'leader']);
            const victim = await etcdPost('/v3/kv/range', { key: b64(target) });
            const rev = victim.kvs?.[0]?.create_revision ?? '1';
            const leader = { name: b64(name), key: b64(target), rev, lease: '0' };
            const nameOk = model.may('election', { from: name, to: succ(name) });
            const allowed = op === 'leader' ? nameOk : nameOk && model.may('election', { one: target }) && target.startsWith(`${name}/`);
            const body = op === 'leader' ? { name: b64(name) } : op === 'proclaim' ? { leader, value: b64('pwned') } : { leader };
            return { op: `v3 election ${op}`, allowed, named: [name, target], run: () => post(`/v3/election/${op}`, body) };
          },
          async () => {
            const r = someRange();
            const create = { ...r.body, start_revision: '1', prev_kv: chance(0.5) };
            const spanW = spanOf(Buffer.from(r.body.key, 'base64').toString('latin1'), r.body.range_end === undefined && r.body.rangeEnd === undefined ? undefined : Buffer.from(r.body.range_end ?? r.body.rangeEnd, 'base64').toString('latin1'), 'watch');
            const allowed = model.may('watch', spanW);
            if (chance(0.5)) return { op: 'v3 watch http', allowed, named: r.named, run: async () => briefly(await httpWatch(base, JSON.stringify({ create_request: create }), '/v3/watch', auth)) };
            return { op: 'v3 watch ws', allowed, named: r.named, run: () => wsOnce('/v3/watch', { create_request: create }) };
          },
          async () => {
            const p = chance(0.7) ? pick(PREFIXES) : pick(['', 'a', 'locks/']);
            const span: Span = p === '' ? { from: ZERO } : { from: p, to: succ(p) };
            return { op: 'v1 sse watch', allowed: model.may('watch', span), named: [p], run: async () => {
              const aborter = new AbortController();
              const res = await fetch(`${base}/v1/watch/${p}?prefix&start_revision=1`, { headers: { ...auth, Accept: 'application/x-ndjson' }, signal: aborter.signal });
              const messages: unknown[] = [];
              if (res.status !== 200) return { status: res.status, messages: [await res.json().catch(() => ({}))] };
              const reader = res.body!.getReader();
              let text = '';
              const stop = setTimeout(() => aborter.abort(), STREAM_MS);
              try {
                for (;;) {
                  const { value, done } = await reader.read();
                  if (done) break;
                  text += Buffer.from(value).toString('utf8');
                }
              } catch {
                // aborted
              }
              clearTimeout(stop);
              for (const line of text.split('\n')) if (line.trim()) messages.push(JSON.parse(line));
              return { status: 200, messages };
            } };
          },
          async () => {
            const key = someKey();
            const op = pick(['GET', 'PUT', 'DELETE', 'DELETEPREV']);
            if (op === 'GET') return { op: 'v1 get', allowed: model.may('read', { one: key }), named: [key], run: () => v1('GET', `/v1/kv/${key}`) };
            if (op === 'PUT') return { op: 'v1 put', allowed: model.may('write', { one: key }), named: [key], run: () => v1('PUT', `/v1/kv/${key}`, newValue(key, client.name)) };
            const prev = op === 'DELETEPREV';
            return { op: 'v1 delete', allowed: model.may('write', { one: key }) && (!prev || model.may('read', { one: key })), named: [key], run: () => v1('DELETE', `/v1/kv/${key}${prev ? '?prev' : ''}`) };
          },
          async () => {
            const p = chance(0.8) ? pick(PREFIXES) : pick(['a', 'locks/', '']);
            const span: Span = p === '' ? { from: ZERO } : { from: p, to: succ(p) };
            const sort = chance(0.5) ? '&sort=key:desc' : '';
            const form = Math.floor(random() * 4);
            if (form === 0 || tokensSeen.length === 0) {
              return { op: 'v1 list', allowed: model.may('read', span), named: [p], run: async () => {
                const answer = await v1('GET', `/v1/kv/${p}?list&limit=2${sort}`);
                const t = (answer.messages[0] as { continue?: string } | undefined)?.continue;
                if (t) tokensSeen.push(t);
                return answer;
              } };
            }
            // A token replayed on another prefix or forged with an end that is no end: no verdict, only
            // what etcd did and what came back are judged — and the prefix must be readable for a 2xx.
            let token: string;
            if (form === 1) token = pick(tokensSeen);
            else {
              const rev = await revisionNow();
              const e = pick(['', b64(ZERO), b64('zzz'), b64(pick(keys))]);
              const k = pick(['', b64(pick(keys)), b64(ZERO)]);
              const body = form === 2 ? { v: 1, p: b64(p), o: `000:key:${sort ? 'desc' : 'asc'}`, r: rev, e } : { v: 1, p: b64(p), o: `000:key:${sort ? 'desc' : 'asc'}`, r: rev, k };
              token = Buffer.from(JSON.stringify(body)).toString('base64url');
            }
            return { op: 'v1 list token', allowed: model.may('read', span) ? undefined : false, named: [p], run: () => v1('GET', `/v1/kv/${p}?list&limit=2&continue=${token}${sort}`) };
          },
          async () => {
            const lease = await someLease();
            const op = pick(['GET', 'DELETE', 'KEEPALIVE']);
            const allowed = model.may('lease') && (op === 'GET' || lease.ok);
            if (op === 'KEEPALIVE') return { op: 'v1 lease keepalive', allowed, named: [], run: () => v1('POST', `/v1/leases/${lease.id}/keepalive`) };
            return { op: `v1 lease ${op.toLowerCase()}`, allowed, named: [], run: () => v1(op, `/v1/leases/${lease.id}`) };
          },
        ];

        const startRev = await revisionNow();
        const perClient = opts.requestsPerClient ?? 200;
        for (let i = 0; i < perClient; i++) {
          const g = await pick(generators)();
          report.requests++;
          report.byOp[g.op] = (report.byOp[g.op] ?? 0) + 1;
          let answer: { status: number; messages: unknown[]; raw?: string };
          try {
            answer = await g.run();
          } catch (err) {
            violate(`${client.name} ${g.op}: the request failed: ${(err as Error).message}`);
            continue;
          }
          const refused = answer.status === 403;
          if (refused) report.refused++;
          else report.allowed++;
          if (g.allowed === true && refused) violate(`${client.name} ${g.op}: refused what its grants allow: ${JSON.stringify(answer.messages).slice(0, 300)}`);
          if (g.allowed === false && !refused && answer.status < 500) violate(`${client.name} ${g.op}: not refused (status ${answer.status}) though its grants do not allow it: ${JSON.stringify(answer.messages).slice(0, 300)}`);
          if (answer.status >= 500) violate(`${client.name} ${g.op}: answered ${answer.status}: ${JSON.stringify(answer.messages).slice(0, 300)}`);
          if (answer.status >= 200 && answer.status < 300) {
            const strings: string[] = answer.raw !== undefined ? [answer.raw] : [];
            const walk = (v: unknown): void => {
              if (typeof v === 'string') strings.push(v);
              else if (Array.isArray(v)) v.forEach(walk);
              else if (v && typeof v === 'object') Object.values(v).forEach(walk);
            };
            answer.messages.forEach(walk);
            for (const s of strings) {
              const value = values.get(s);
              if (value && value.writer !== client.name && !model.sees(value.key)) violate(`${client.name} ${g.op}: got the value of ${JSON.stringify(value.key)}, outside its read and watch grants`);
              const name = names.get(s);
              if (name && !g.named.includes(name) && !model.sees(name)) violate(`${client.name} ${g.op}: got the key name ${JSON.stringify(name)}, outside its read and watch grants`);
            }
          }
        }
        // etcd's history of the batch: every change is the client's to make.
        const endRev = await revisionNow();
        if (endRev > startRev) await historyUpTo(endRev);
        const batch = events().slice(seen);
        seen += batch.length;
        report.historyEvents += batch.length;
        for (const e of batch) {
          const key = Buffer.from(e.kv.key, 'base64').toString('latin1');
          if (!model.changes(key)) violate(`${client.name}: etcd's history has a ${e.type ?? 'PUT'} of ${JSON.stringify(key)} at revision ${e.kv.mod_revision}, outside its write, lock and election grants`);
        }
      }
      opts.log?.(`access file ${f + 1}/${report.files}: ${clients.length} clients, ${report.requests} requests so far, ${report.violations.length} violations`);
    }
  } finally {
    history?.close();
    policy?.close();
    await gw?.close();
    await etcd.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report;
}

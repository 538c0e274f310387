// The console's only way to the gateway: its public API (/v1/ for keys, leases and watches, /v3/ for
// cluster, maintenance and etcd sign-in), so everything the console does, a script can do too.

import { textOf } from './format';

/** Bytes backed by a plain ArrayBuffer, as fetch() takes for a body. */
export type Bytes = Uint8Array<ArrayBuffer>;

/** A key-value in the /v1/ JSON form (src/api/v1/representation.ts). */
export interface KeyValue {
  key?: string;
  key_base64?: string;
  value?: string;
  value_base64?: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease?: string;
}

/** An RFC 9457 problem (/v1/) or etcd's error body (/v3/), reduced to what the console shows. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const GATEWAY_TOKEN = 'etcd-console.gateway-token';
const ETCD_TOKEN = 'etcd-console.etcd-token';
const ETCD_USER = 'etcd-console.etcd-user';

/** Credentials live in the tab's session storage: gone when the tab closes, never shared between tabs. */
export const credentials = {
  gatewayToken: (): string => sessionStorage.getItem(GATEWAY_TOKEN) ?? '',
  etcdUser: (): string => sessionStorage.getItem(ETCD_USER) ?? '',
  setGatewayToken(token: string): void {
    if (token) sessionStorage.setItem(GATEWAY_TOKEN, token);
    else sessionStorage.removeItem(GATEWAY_TOKEN);
  },
  setEtcd(user: string, token: string): void {
    if (token) {
      sessionStorage.setItem(ETCD_USER, user);
      sessionStorage.setItem(ETCD_TOKEN, token);
    } else {
      sessionStorage.removeItem(ETCD_USER);
      sessionStorage.removeItem(ETCD_TOKEN);
    }
  },
};

/** The gateway token as a bearer token; the etcd token in Grpc-Metadata-Token, which the gateway passes
 *  to etcd whether or not its own access control is on. */
function authHeaders(extra: Record<string, string> = {}): Headers {
  const h = new Headers(extra);
  const gateway = credentials.gatewayToken();
  if (gateway) h.set('Authorization', `Bearer ${gateway}`);
  const etcd = sessionStorage.getItem(ETCD_TOKEN);
  if (etcd) h.set('Grpc-Metadata-Token', etcd);
  return h;
}

/** The API's root, relative to the page (/ui/ → /), so the console also works behind a path prefix. */
function apiUrl(path: string): string {
  return new URL(`../${path}`, location.href).toString();
}

const encoder = new TextEncoder();
const UNRESERVED = /[A-Za-z0-9\-_~]/;

/** Bytes as a path segment: every byte but the unreserved ones percent-encoded, '/' and '.' included,
 *  so no key is read as a path step and binary keys survive byte-exact. */
export function pathOf(key: Bytes): string {
  let out = '';
  for (const b of key) {
    const c = String.fromCharCode(b);
    out += b < 128 && UNRESERVED.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function bytesOf(text: string): Bytes {
  return encoder.encode(text);
}

export function fromBase64(b64: string): Bytes {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A key as the console names it: its text, or its bytes as \xNN escapes when it is not UTF-8. */
export function keyName(kv: { key?: string; key_base64?: string }): string {
  if (kv.key !== undefined) return kv.key;
  return Array.from(fromBase64(kv.key_base64 ?? ''), (b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

export function keyBytes(kv: { key?: string; key_base64?: string }): Bytes {
  return kv.key !== undefined ? bytesOf(kv.key) : fromBase64(kv.key_base64 ?? '');
}

export function valueBytes(kv: KeyValue): Bytes {
  return kv.value !== undefined ? bytesOf(kv.value) : fromBase64(kv.value_base64 ?? '');
}

async function failure(res: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    // not JSON: the status line says it all
  }
  // /v1/ problems say it in `detail`, /v3/ errors in `message`.
  const message = String(body.detail ?? body.message ?? body.title ?? `${res.status} ${res.statusText}`);
  return new ApiError(res.status, message, body);
}

/** A request's options, with its headers as a plain record (merged with the credentials). */
type Init = Omit<RequestInit, 'headers'> & { headers?: Record<string, string> };

async function request(path: string, init: Init = {}): Promise<Response> {
  const res = await fetch(apiUrl(path), { ...init, headers: authHeaders(init.headers), cache: 'no-store' });
  if (!res.ok && res.status !== 304) throw await failure(res);
  return res;
}

async function json<T>(path: string, init: Init = {}): Promise<T> {
  const res = await request(path, { ...init, headers: { Accept: 'application/json', ...init.headers } });
  return (res.status === 204 ? {} : await res.json()) as T;
}

/** A /v3/ call: a POST with a JSON body, as etcd's gateway takes it. */
export function v3<T>(path: string, body: object = {}): Promise<T> {
  return json<T>(`v3/${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
}

/** GET /v1/cluster: the members, each with the status it gives of itself. */
export interface ClusterMember {
  id: string;
  name: string;
  peer_urls: string[];
  client_urls: string[];
  learner: boolean;
  leader: boolean;
  status?: { version: string; db_size: number; db_size_in_use: number; raft_term: number; raft_index: number; raft_applied_index: number; errors: string[] };
  status_error?: string;
}
export interface Cluster {
  cluster_id: string;
  revision: number;
  leader: string | null;
  members: ClusterMember[];
  /** null: not readable now (no leader); alarms_error says why. */
  alarms: Array<{ member_id: string; alarm: string }> | null;
  alarms_error?: string;
}

export function getCluster(): Promise<Cluster> {
  return json<Cluster>('v1/cluster');
}

export interface Page {
  kvs: KeyValue[];
  more: boolean;
  continue?: string;
  revision: number;
}

/** One page of the keys under `prefix` (keys only), read at the first page's revision when continuing. */
export function listKeys(prefix: Bytes, limit: number, token?: string): Promise<Page> {
  const q = new URLSearchParams({ list: '', keys_only: '', limit: String(limit) });
  if (token) q.set('continue', token);
  return json<Page>(`v1/kv/${pathOf(prefix)}?${q}`);
}

export async function countKeys(prefix: Bytes): Promise<number> {
  const answer = await json<{ count: number }>(`v1/kv/${pathOf(prefix)}?list&count_only`);
  return answer.count;
}

/** Longest key path the console puts in a URL. A key is any bytes up to etcd's request limit, but a
 *  URL past the gateway's head limit (MAX_HEADER_BYTES, 16 KiB by default: 431) or a proxy's is
 *  refused before any handler sees it: longer keys go in a /v3/ request body instead. */
const MAX_KEY_PATH = 4096;
const longKey = (key: Bytes): boolean => pathOf(key).length > MAX_KEY_PATH;

export function toBase64(bytes: Uint8Array): string {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

interface V3KeyValue {
  key: string;
  value?: string;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease?: string;
}

/** A /v3/ key-value (base64, decimal strings) in the /v1/ JSON form the views read. */
function fromV3(kv: V3KeyValue): KeyValue {
  const key = fromBase64(kv.key);
  const value = fromBase64(kv.value ?? '');
  const keyText = textOf(key);
  const valueText = textOf(value);
  return {
    ...(keyText === undefined ? { key_base64: kv.key } : { key: keyText }),
    ...(valueText === undefined ? { value_base64: kv.value ?? '' } : { value: valueText }),
    create_revision: Number(kv.create_revision),
    mod_revision: Number(kv.mod_revision),
    version: Number(kv.version),
    ...(kv.lease && kv.lease !== '0' ? { lease: kv.lease } : {}),
  };
}

/** The key now, or at `revision`; null when absent. */
export async function getKey(key: Bytes, revision?: number): Promise<KeyValue | null> {
  if (longKey(key)) {
    try {
      const answer = await v3<{ kvs?: V3KeyValue[] }>('kv/range', { key: toBase64(key), ...(revision ? { revision: String(revision) } : {}) });
      return answer.kvs?.[0] ? fromV3(answer.kvs[0]) : null;
    } catch (e) {
      // etcd's OUT_OF_RANGE: the revision was compacted, which /v1/ answers as 410.
      if (e instanceof ApiError && e.body.code === 11) throw new ApiError(410, e.message, e.body);
      throw e;
    }
  }
  try {
    return await json<KeyValue>(`v1/kv/${pathOf(key)}${revision ? `?revision=${revision}` : ''}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

/** A write or delete of a long key as one /v3/ txn, with the compare /v1/ makes of If-Match or
 *  If-None-Match; a failed compare is the 412 /v1/ would answer. */
async function longKeyTxn(key: Bytes, request: object, opts: { ifModRevision?: number; create?: boolean }): Promise<void> {
  const k = toBase64(key);
  const compare =
    opts.ifModRevision !== undefined
      ? [{ key: k, target: 'MOD', result: 'EQUAL', mod_revision: String(opts.ifModRevision) }]
      : opts.create
        ? [{ key: k, target: 'CREATE', result: 'EQUAL', create_revision: '0' }]
        : [];
  const answer = await v3<{ succeeded?: boolean }>('kv/txn', { compare, success: [request] });
  if (!answer.succeeded) throw new ApiError(412, opts.create ? 'the key exists' : 'the key was changed');
}

export interface PutOptions {
  /** Compare-and-swap: the mod_revision the value must still have. */
  ifModRevision?: number;
  /** Create only. */
  create?: boolean;
  ttl?: number;
}

/** Writes `value`; a changed key (CAS) or an existing one (create) is an ApiError with status 412. */
export async function putKey(key: Bytes, value: Bytes, opts: PutOptions = {}): Promise<void> {
  if (longKey(key) && !opts.ttl) return longKeyTxn(key, { request_put: { key: toBase64(key), value: toBase64(value) } }, opts);
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
  if (opts.ifModRevision !== undefined) headers['If-Match'] = `"${opts.ifModRevision}"`;
  if (opts.create) headers['If-None-Match'] = '*';
  await request(`v1/kv/${pathOf(key)}${opts.ttl ? `?ttl=${opts.ttl}` : ''}`, { method: 'PUT', body: value, headers });
}

export async function deleteKey(key: Bytes, ifModRevision?: number): Promise<void> {
  if (longKey(key)) return longKeyTxn(key, { request_delete_range: { key: toBase64(key) } }, { ifModRevision });
  await request(`v1/kv/${pathOf(key)}`, { method: 'DELETE', headers: ifModRevision === undefined ? {} : { 'If-Match': `"${ifModRevision}"` } });
}

export async function deletePrefix(prefix: Bytes): Promise<number> {
  const answer = await json<{ deleted: number }>(`v1/kv/${pathOf(prefix)}?prefix`, { method: 'DELETE' });
  return answer.deleted;
}

export interface Lease {
  /** Its ID, in decimal: every /v1/ answer names it `lease`. */
  lease: string;
  ttl: number;
  granted_ttl?: number;
  keys?: string[];
}

export async function listLeases(): Promise<string[]> {
  const answer = await json<{ leases: Array<{ lease: string }> }>('v1/leases');
  return answer.leases.map((l) => l.lease);
}

/** The lease now; null once it has expired or was revoked. */
export async function getLease(id: string): Promise<Lease | null> {
  try {
    return await json<Lease>(`v1/leases/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

export function keepLeaseAlive(id: string): Promise<Lease> {
  return json<Lease>(`v1/leases/${encodeURIComponent(id)}/keepalive`, { method: 'POST' });
}

export async function revokeLease(id: string): Promise<void> {
  await request(`v1/leases/${encodeURIComponent(id)}`, { method: 'DELETE' });
}

/** One event of a /v1/ watch stream. */
export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
}

export interface WatchHandlers {
  event(e: WatchEvent): void;
  /** The stream's state for the status line: 'live', 'reconnecting', or a refusal's message. */
  state(text: string): void;
  /** The resume point was compacted away: the listing must be read again. */
  compacted(): void;
}

/** Watches everything under `prefix` from `startRevision` over Server-Sent Events. fetch() rather than
 *  EventSource, which cannot send the Authorization header; resumes by the last event id itself.
 *  Returns the function that stops it. */
export function watchPrefix(prefix: Bytes, startRevision: number, on: WatchHandlers): () => void {
  const abort = new AbortController();
  let lastId = '';
  let retryMs = 1000;
  const run = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (lastId) headers['Last-Event-ID'] = lastId;
      try {
        const res = await request(`v1/watch/${pathOf(prefix)}?prefix&start_revision=${startRevision}`, { headers, signal: abort.signal });
        on.state('live');
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end: number;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
            const message = parseSse(block);
            if (message.retry) retryMs = message.retry;
            if (message.id) lastId = message.id;
            if (message.event === 'compacted') {
              on.compacted();
              return;
            }
            if ((message.event === 'put' || message.event === 'delete') && message.data) {
              const data = JSON.parse(message.data) as KeyValue & { kv?: KeyValue };
              on.event({ type: message.event, kv: data.kv ?? data });
            }
          }
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        // 410: the start revision is gone already; the listing must be read again.
        if (e instanceof ApiError && e.status === 410) return on.compacted();
        if (e instanceof ApiError && e.status !== 503 && e.status !== 504) {
          on.state(e.message);
          return;
        }
      }
      on.state('reconnecting');
      await new Promise((r) => setTimeout(r, retryMs));
    }
  };
  void run();
  return () => abort.abort();
}

function parseSse(block: string): { event?: string; data?: string; id?: string; retry?: number } {
  const out: { event?: string; data?: string; id?: string; retry?: number } = {};
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') out.data = out.data === undefined ? value : `${out.data}\n${value}`;
    else if (field === 'event') out.event = value;
    else if (field === 'id') out.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) out.retry = Number(value);
  }
  return out;
}

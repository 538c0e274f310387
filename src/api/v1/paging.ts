// Listing options and continue tokens. A listing is paged through one revision: the first page's
// revision travels in the token, and every later page is read at it, so the pages together are one
// snapshot however the keys change meanwhile (and 410 once that revision is compacted, as Kubernetes
// answers). A token is bound to its prefix and options: with others it is a 400. It is opaque to
// clients (base64url JSON) and holds only what they could read anyway, so it is not signed; a
// replica reading it needs nothing but etcd. Nothing in it is trusted: the range a page reads is
// derived from the request's own prefix, the token giving only a position strictly inside it, and the
// listing checks access on the range it then sends (kv.ts).

import { prefixRange } from './etcd';
import { flag } from './params';
import { badRequest } from './router';

const SORT_TARGETS: Record<string, string> = { key: 'Key', create: 'Create', mod: 'Mod', version: 'Version', value: 'Value' };

export interface ListOptions {
  keysOnly: boolean;
  countOnly: boolean;
  serializable: boolean;
  sortTarget: string;
  sortOrder: string;
  /** Pages can continue where the last ended only in key order (either way). */
  pageable: boolean;
  /** What a token is bound to besides the prefix. */
  binding: string;
}

/** `keys_only`, `count_only`, `serializable` and `sort=<key|create|mod|version|value>[:asc|:desc]`. */
export function listOptions(query: URLSearchParams): ListOptions {
  const keysOnly = flag(query, 'keys_only');
  const countOnly = flag(query, 'count_only');
  const serializable = flag(query, 'serializable');
  const sort = query.get('sort') ?? 'key';
  const m = /^(key|create|mod|version|value)(?::(asc|desc))?$/.exec(sort);
  if (!m) throw badRequest(`query parameter sort: must be key, create, mod, version or value, optionally followed by :asc or :desc, got ${JSON.stringify(sort.slice(0, 40))}`);
  const sortTarget = SORT_TARGETS[m[1]];
  const desc = m[2] === 'desc';
  // etcd's None order is ascending by key, and costs no sort.
  const sortOrder = desc ? 'Descend' : sortTarget === 'Key' ? 'None' : 'Ascend';
  return {
    keysOnly,
    countOnly,
    serializable,
    sortTarget,
    sortOrder,
    pageable: sortTarget === 'Key',
    binding: `${Number(keysOnly)}${Number(countOnly)}${Number(serializable)}:${m[1]}:${desc ? 'desc' : 'asc'}`,
  };
}

interface TokenBody {
  v: 1;
  /** The listing's prefix (base64). */
  p: string;
  o: string;
  /** The revision every page is read at. */
  r: number;
  /** Ascending: the first key of the next page (base64). Descending: the exclusive end of it. */
  k?: string;
  e?: string;
}

export function encodeToken(prefix: Buffer, opts: ListOptions, revision: number, lastKey: Buffer): string {
  const body: TokenBody = { v: 1, p: prefix.toString('base64'), o: opts.binding, r: revision };
  if (opts.sortOrder === 'Descend') body.e = lastKey.toString('base64');
  else body.k = Buffer.concat([lastKey, Buffer.from([0])]).toString('base64');
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

/** The revision and key range of the page a token asks for; 400 for a token that is not one, or was
 *  made for another prefix or other options. */
export function decodeToken(token: string, prefix: Buffer, opts: ListOptions): { revision: number; range: { key: Buffer; range_end: Buffer } } {
  let body: TokenBody;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as TokenBody;
  } catch {
    throw badRequest('query parameter continue: not a continue token of this API');
  }
  const full = prefixRange(prefix);
  const valid =
    body !== null &&
    typeof body === 'object' &&
    body.v === 1 &&
    typeof body.p === 'string' &&
    typeof body.o === 'string' &&
    Number.isSafeInteger(body.r) &&
    body.r > 0 &&
    (typeof body.k === 'string') !== (typeof body.e === 'string');
  if (!valid) throw badRequest('query parameter continue: not a continue token of this API');
  if (!Buffer.from(body.p, 'base64').equals(prefix)) throw badRequest('query parameter continue: the token was made for another prefix');
  if (body.o !== opts.binding) throw badRequest('query parameter continue: the token was made with other options (keys_only, count_only, serializable, sort)');
  const range = { ...full };
  // The position must lie strictly inside the prefix's range: a token cannot widen what the listing
  // reads. Ascending, the next page starts at k in [start, end); descending, it ends before e in
  // (start, end] — and e is a key, never "" or "\0", which etcd reads as "no end".
  if (body.k !== undefined) {
    const k = Buffer.from(body.k, 'base64');
    if (Buffer.compare(k, full.key) < 0 || (!isEndless(full.range_end) && Buffer.compare(k, full.range_end) >= 0)) throw notOurs();
    range.key = k;
  }
  if (body.e !== undefined) {
    const e = Buffer.from(body.e, 'base64');
    if (e.length === 0 || isEndless(e) || Buffer.compare(e, full.key) <= 0) throw notOurs();
    if (!isEndless(full.range_end) && Buffer.compare(e, full.range_end) > 0) throw notOurs();
    range.range_end = e;
  }
  return { revision: body.r, range };
}

function notOurs(): Error {
  return badRequest('query parameter continue: not a continue token of this API');
}

function isEndless(end: Buffer): boolean {
  return end.length === 1 && end[0] === 0;
}

// Reading /v1/ requests: keys from the path as bytes, query flags and numbers, durations, lease IDs
// and entity tags. Every refusal is a 400 whose detail names the parameter or header at fault.

import { badRequest } from './router';

/** Percent-decodes a path parameter to bytes: `%00%ff` is two bytes, anything else is its UTF-8. */
export function pathBytes(encoded: string, name: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x25) {
      const hex = encoded.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw badRequest(`path parameter ${name}: "%" must be followed by two hex digits`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (c < 0x80) out.push(c);
    else {
      // A raw non-ASCII character in the path (clients should percent-encode it): its UTF-8.
      const cp = encoded.codePointAt(i) ?? c;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) out.push(b);
      if (cp > 0xffff) i++;
    }
  }
  return Buffer.from(out);
}

/** A query flag: on when present with no value, an empty value or `true`; off when absent or `false`. */
export function flag(query: URLSearchParams, name: string): boolean {
  const value = query.get(name);
  if (value === null || value === 'false') return false;
  if (value === '' || value === 'true') return true;
  throw badRequest(`query parameter ${name}: must be empty, true or false, got ${JSON.stringify(value.slice(0, 40))}`);
}

/** A non-negative decimal integer parameter within [min, max]; `fallback` when absent. */
export function integer(query: URLSearchParams, name: string, opts: { min?: number; max?: number; fallback?: number } = {}): number | undefined {
  const value = query.get(name);
  if (value === null) return opts.fallback;
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (!/^\d{1,16}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw badRequest(`query parameter ${name}: must be a decimal integer from ${min} to ${max}, got ${JSON.stringify(value.slice(0, 40))}`);
  }
  return Number(value);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** A duration in milliseconds: `30s`, `500ms`, `2m`, or bare seconds (`30`), at most `maxMs`. */
export function duration(query: URLSearchParams, name: string, maxMs: number, fallbackMs: number): number {
  const value = query.get(name);
  if (value === null || value === '') return fallbackMs;
  const m = /^(\d{1,9})(ms|s|m)?$/.exec(value);
  const ms = m ? Number(m[1]) * DURATION_UNITS[m[2] ?? 's'] : NaN;
  if (!(ms <= maxMs)) {
    throw badRequest(`query parameter ${name}: must be a duration such as 30s, 500ms or 2m, at most ${maxMs / 1000}s, got ${JSON.stringify(value.slice(0, 40))}`);
  }
  return ms;
}

const INT64_MAX = (1n << 63n) - 1n;

/** A lease ID as decimal (`7587862318716214542`) or as hex the way etcdctl prints it (`694d7a8f1c2d3e4f`,
 *  or `0x…`): an ID with a hex letter or a 0x prefix is hex, digits alone are decimal. Returned in
 *  decimal, as etcd's messages carry it. */
/** A lease ID: decimal, as every /v1/ answer gives it, or hexadecimal with `0x` before what etcdctl
 *  prints. Bare hex is refused with the `0x` form to use: read as hex, `123` and `abc` would be two
 *  guesses (`abc` once silently became lease 2748). */
export function leaseId(text: string, where: string): string {
  let id: bigint | undefined;
  if (/^\d{1,19}$/.test(text)) id = BigInt(text);
  else if (/^0x[0-9a-fA-F]{1,16}$/i.test(text)) id = BigInt(`0x${text.slice(2)}`);
  else if (/^[0-9a-fA-F]{1,16}$/.test(text)) {
    throw badRequest(`${where}: ${JSON.stringify(text)} is not decimal; a lease ID in hexadecimal (as etcdctl prints it) takes 0x: 0x${text}`);
  }
  if (id === undefined || id <= 0n || id > INT64_MAX) {
    throw badRequest(`${where}: must be a lease ID, in decimal or in hexadecimal with 0x (0x<what etcdctl prints>), got ${JSON.stringify(text.slice(0, 40))}`);
  }
  return id.toString();
}

/** What a precondition header holds: `*`, or one entity tag (a mod_revision, quoted or not). */
export type Precondition = { any: true } | { any: false; revision: string };

export function precondition(header: string | string[] | undefined, name: string): Precondition | undefined {
  if (header === undefined) return undefined;
  const text = (Array.isArray(header) ? header.join(', ') : header).trim();
  if (text === '*') return { any: true };
  // If-Match compares strongly (RFC 9110 §13.1.1): a weak tag can never match, and accepting one would
  // let a write through on a comparison the client did not ask for. If-None-Match compares weakly.
  if (name === 'If-Match' && text.startsWith('W/')) {
    throw badRequest(`header If-Match: a weak entity tag (${JSON.stringify(text.slice(0, 40))}) never matches: If-Match uses the strong comparison (RFC 9110); send the ETag without W/`);
  }
  const m = /^(?:W\/)?"?(\d{1,19})"?$/.exec(text);
  if (!m || (m[0].includes('"') && !/^(?:W\/)?"\d+"$/.test(text))) {
    throw badRequest(`header ${name}: must be * or one entity tag, the key's mod_revision in quotes (such as "42"), got ${JSON.stringify(text.slice(0, 40))}`);
  }
  return { any: false, revision: m[1] };
}

/** The ETag of a key-value: its mod_revision, quoted. */
export function etag(modRevision: string | number): string {
  return `"${modRevision}"`;
}

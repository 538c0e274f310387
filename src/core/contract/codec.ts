// Gateway JSON ⇄ gRPC messages, driven by shapes derived from openapi.yaml.
//
// In:  normalizeNames (before validation) renames lowerCamelCase aliases to proto names and drops
//      `null` fields (null means "default" in etcd's gateway); decode (after validation) turns base64
//      into Buffers, 64-bit integers into exact decimal strings and enum names into numbers.
// Out: encode writes fields in proto order (the schema's order), omits zero values as etcd's gateway
//      does, base64-encodes bytes and names enums as etcd does.

import { numberLiteral } from '../../protocol/json/parse';
import { decodeBase64 } from '../../protocol/json/base64';
import { invalidArgument } from '../errors';
import type { EnumShape, ObjectShape, Shape } from './shape';

type Json = Record<string, unknown>;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const DECIMAL = /^\s*-?(0|[1-9][0-9]*)\s*$/;

/** The JSON pointer of a member (RFC 6901). Built for every field on the way down, so the escaping
 *  is skipped for the names that need none (all of etcd's). */
function pointer(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}/${key}`;
  if (!key.includes('~') && !key.includes('/')) return `${path}/${key}`;
  return `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Renames camelCase aliases in place (so the parser's number-literal side table stays valid) and
 *  removes `null` fields. Unknown fields are left for the validator to reject by name. */
export function normalizeNames(shape: Shape, value: unknown, path = ''): void {
  if (shape.kind === 'array') {
    if (Array.isArray(value)) value.forEach((item, i) => normalizeNames(shape.items, item, pointer(path, i)));
    return;
  }
  if (shape.kind !== 'object' || !isPlainObject(value)) return;
  for (const key of Object.keys(value)) {
    let field = shape.byName.get(key);
    let name = key;
    if (!field) {
      field = shape.byAlias.get(key);
      if (!field) continue;
      name = field.name;
      if (Object.prototype.hasOwnProperty.call(value, name)) {
        throw invalidArgument(`${pointer(path, key)}: both ${name} and its alias ${key} are given`);
      }
      // The parser's exact-literal side table is keyed by the original name: carry a 64-bit literal over.
      const literal = field.shape.kind === 'int64' ? numberLiteral(value, key) : undefined;
      value[name] = literal ?? value[key];
      delete value[key];
    }
    if (value[name] === null) {
      delete value[name];
      continue;
    }
    normalizeNames(field.shape, value[name], pointer(path, name));
  }
}

function int64(container: Json | unknown[], key: string | number, unsigned: boolean, path: string): string {
  const raw = (container as Record<string | number, unknown>)[key];
  let text: string;
  if (typeof raw === 'string') {
    if (!DECIMAL.test(raw)) throw invalidArgument(`${pointer(path, key)}: must be a decimal integer`);
    text = raw.trim();
  } else if (typeof raw === 'number') {
    text = numberLiteral(container as object, key) ?? String(raw);
    if (!/^-?[0-9]+$/.test(text)) {
      throw invalidArgument(`${pointer(path, key)}: must be an integer without fraction or exponent, got ${text}`);
    }
  } else {
    throw invalidArgument(`${pointer(path, key)}: must be a decimal integer`);
  }
  const n = BigInt(text);
  if (unsigned ? n < 0n || n > UINT64_MAX : n < INT64_MIN || n > INT64_MAX) {
    throw invalidArgument(`${pointer(path, key)}: ${text} is out of range for ${unsigned ? "a uint64" : "an int64"}`);
  }
  return n.toString();
}

function enumNumber(shape: EnumShape, raw: unknown): number {
  return typeof raw === 'number' ? raw : shape.names.indexOf(raw as string);
}

function decodeValue(shape: Shape, container: Json | unknown[], key: string | number, path: string): unknown {
  const raw = (container as Record<string | number, unknown>)[key];
  switch (shape.kind) {
    case 'bytes':
      return decodeBase64(raw as string);
    case 'int64':
      return int64(container, key, shape.unsigned, path);
    case 'enum':
      return enumNumber(shape, raw);
    case 'array': {
      const list = raw as unknown[];
      const out = new Array<unknown>(list.length);
      const here = pointer(path, key);
      for (let i = 0; i < list.length; i++) out[i] = decodeValue(shape.items, list, i, here);
      return out;
    }
    case 'object':
      return decode(shape, raw as Json, pointer(path, key));
    default:
      return raw;
  }
}

/** A validated request body → the request object the etcd3 gRPC client encodes.
 *
 *  A zero-length `range_end` is dropped. etcd's gateway (Go's proto3 encoder) never sends an empty
 *  bytes field, so `"range_end": ""` reaches etcd as no range_end: one key. protobufjs sends a present
 *  empty field, and etcd's key index reads a present empty end as "no end": the whole keyspace from
 *  `key` on, for a range, a delete and a compare alike. */
export function decode(shape: ObjectShape, body: Json, path = ''): Json {
  const out: Json = {};
  for (const key in body) {
    const field = shape.byName.get(key);
    if (!field) continue;
    const value = decodeValue(field.shape, body, key, path);
    if (key === 'range_end' && (value as Buffer).length === 0) continue;
    out[key] = value;
  }
  return out;
}

function encodeValue(shape: Shape, v: unknown): unknown {
  switch (shape.kind) {
    case 'bytes': {
      const buf = v as Uint8Array;
      return buf.length === 0 ? undefined : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('base64');
    }
    case 'int64': {
      const s = typeof v === 'string' ? v : String(v);
      return s === '0' ? undefined : s;
    }
    case 'number':
      return v === 0 ? undefined : Number(v);
    case 'bool':
      return v === true ? true : undefined;
    case 'string':
      return v === '' ? undefined : v;
    case 'enum': {
      const n = typeof v === 'number' ? v : (shape.byLooseName.get(String(v).toUpperCase()) ?? -1);
      if (n === 0) return undefined;
      return shape.names[n] ?? n;
    }
    case 'array': {
      const list = v as unknown[];
      if (list.length === 0) return undefined;
      return list.map((item) => encodeValue(shape.items, item) ?? zeroOf(shape.items));
    }
    case 'object':
      return encode(shape, v as Json);
    default:
      return v;
  }
}

/** A repeated field keeps its zero elements (an empty key in a list is still an element). */
function zeroOf(shape: Shape): unknown {
  switch (shape.kind) {
    case 'bytes':
    case 'string':
      return '';
    case 'int64':
      return '0';
    case 'number':
      return 0;
    case 'bool':
      return false;
    case 'enum':
      return shape.names[0];
    default:
      return {};
  }
}

/** A gRPC response object → the JSON etcd's gateway would send. A present (non-null) message is
 *  written even when all its fields are zero: etcd's gateway writes a nested txn's header as `{}`. */
export function encode(shape: ObjectShape, msg: Json): Json {
  const out: Json = {};
  for (const field of shape.fields) {
    const v = msg[field.name];
    if (v === null || v === undefined) continue;
    const encoded = encodeValue(field.shape, v);
    if (encoded !== undefined) out[field.name] = encoded;
  }
  return out;
}

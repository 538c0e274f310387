// The fuzz test's generator: a seeded PRNG, a JSON model that can hold what JSON.stringify cannot write
// (1e400, -0, lone surrogates, duplicate and `__proto__` keys), the request schemas of openapi.yaml read
// as field kinds, valid samples of them and values that are wrong for each kind, and an oracle: the
// gateway's own parse → validate → decode steps, run here, so that no request the fuzzer sends could be
// accepted (and so change etcd's data) by construction.

import { ApiSpec, type Operation } from '../../src/core/contract/spec';
import { decode, normalizeNames } from '../../src/core/contract/codec';
import { parseJson, parseJsonSequence } from '../../src/protocol/json/parse';

// ---- PRNG ---------------------------------------------------------------------------------------------

/** mulberry32: small, fast, good enough to pick test inputs; the same seed gives the same sequence. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A seed of its own for case `i` of run `seed`, so any case can be reproduced alone. */
  static forCase(seed: number, i: number): Rng {
    const mixer = new Rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
    mixer.next();
    return new Rng(Math.floor(mixer.next() * 2 ** 32));
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    let r = this.next() * entries.reduce((a, [, w]) => a + w, 0);
    for (const [k, w] of entries) {
      r -= w;
      if (r < 0) return k;
    }
    return entries[entries.length - 1][0];
  }
}

// ---- JSON model ---------------------------------------------------------------------------------------

/** JSON text written as is: numbers JSON.stringify cannot produce, escapes, deliberate garbage. */
export class Raw {
  constructor(readonly text: string) {}
}

/** A JSON object as a list of members: keeps duplicates, order and names like `__proto__`. */
export class Obj {
  constructor(readonly pairs: Array<[string, J]> = []) {}
}

export type J = null | boolean | number | string | Raw | Obj | J[];

export function ser(v: J): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj) return `{${v.pairs.map(([k, x]) => `${JSON.stringify(k)}:${ser(x)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map(ser).join(',')}]`;
  return JSON.stringify(v);
}

// ---- the request schemas as field kinds ---------------------------------------------------------------

export type Kind =
  | { t: 'bytes' }
  | { t: 'int64'; unsigned: boolean }
  | { t: 'uint32' }
  | { t: 'bool' }
  | { t: 'enum'; values: Array<string | number> }
  | { t: 'string' }
  | { t: 'array'; items: () => Kind; maxItems?: number }
  | { t: 'object'; props: Array<[string, () => Kind]>; required: string[] }
  | { t: 'oneOf'; branches: Array<() => Kind> };

type Schema = Record<string, unknown>;
const REF = '#/components/schemas/';

/** Field kinds of openapi.yaml's component schemas (recursive ones, like a txn in a txn, lazily). */
export class SchemaModel {
  private readonly components: Record<string, Schema>;
  private readonly memo = new Map<string, Kind>();

  constructor(doc: Schema) {
    this.components = (doc.components as Schema).schemas as Record<string, Schema>;
  }

  component(name: string): Kind {
    let k = this.memo.get(name);
    if (!k) {
      const schema = this.components[name];
      if (!schema) throw new Error(`no schema ${name} in openapi.yaml`);
      k = this.kindOf(schema);
      this.memo.set(name, k);
    }
    return k;
  }

  kindOf(s: Schema): Kind {
    if (typeof s.$ref === 'string') {
      if (Array.isArray(s.enum)) return { t: 'enum', values: s.enum as Array<string | number> };
      const name = s.$ref.slice(REF.length);
      return this.component(name);
    }
    if (Array.isArray(s.oneOf)) return { t: 'oneOf', branches: (s.oneOf as Schema[]).map((b) => () => this.kindOf(b)) };
    if (Array.isArray(s.enum)) return { t: 'enum', values: s.enum as Array<string | number> };
    if (s.format === 'byte') return { t: 'bytes' };
    if (s.format === 'int64') return { t: 'int64', unsigned: false };
    if (s.format === 'uint64') return { t: 'int64', unsigned: true };
    if (s.format === 'uint32') return { t: 'uint32' };
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    if (type === 'array') {
      const items = s.items as Schema;
      return { t: 'array', items: () => this.kindOf(items), maxItems: typeof s.maxItems === 'number' ? s.maxItems : undefined };
    }
    if (type === 'object' || s.properties) {
      const props = Object.entries((s.properties ?? {}) as Record<string, Schema>).map(([k, v]): [string, () => Kind] => [k, () => this.kindOf(v)]);
      return { t: 'object', props, required: (s.required as string[] | undefined) ?? [] };
    }
    if (type === 'boolean') return { t: 'bool' };
    if (type === 'integer') return { t: 'uint32' };
    return { t: 'string' };
  }
}

// ---- valid samples and wrong values -------------------------------------------------------------------

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A value of `kind` that the schema accepts (whole requests built from these may still be valid:
 *  they are mutated, and checked by the oracle, before anything is sent). */
export function sample(kind: Kind, rng: Rng, depth = 0): J {
  switch (kind.t) {
    case 'bytes':
      return b64(`fuzz/${rng.int(1000)}`);
    case 'int64':
      return rng.chance(0.5) ? rng.int(100) : String(rng.int(100));
    case 'uint32':
      return rng.int(100);
    case 'bool':
      return rng.chance(0.5);
    case 'enum':
      return rng.pick(kind.values);
    case 'string':
      return `fuzz${rng.int(100)}`;
    case 'array': {
      if (depth > 3) return [];
      const n = rng.between(1, Math.min(2, kind.maxItems ?? 2));
      return Array.from({ length: n }, () => sample(kind.items(), rng, depth + 1));
    }
    case 'object': {
      const pairs: Array<[string, J]> = [];
      for (const [name, k] of kind.props) {
        if (kind.required.includes(name) || (depth <= 3 && rng.chance(0.5))) pairs.push([name, sample(k(), rng, depth + 1)]);
      }
      return new Obj(pairs);
    }
    case 'oneOf':
      return sample(rng.pick(kind.branches)(), rng, depth);
  }
}

const BAD_INT64: string[] = [
  'true', '[]', '{}', '1.5', '"1.5"', '1e2', '1E2', '1e400', '-1e400', '"0x10"', '"007"', '9223372036854775808', '-9223372036854775809',
  '"99999999999999999999999"', '""', '"abc"', '"-"', '"+1"', '-0.0', '0.1e1', '1'.repeat(400), `"${'1'.repeat(400)}"`, '"1e3"', '"1 2"',
];
/** Literals that are broken JSON wherever they stand. */
const BROKEN_NUMBERS = ['007', '-007', '00', '+1', '.5', '1.', '1e', '-', '0x1F', 'NaN', 'Infinity', '-Infinity', '1_000', '- 1', '1e+', '0.e1'];
/** Literals that may well be valid for some int64 fields (the oracle sorts them out). */
const DOUBTFUL_NUMBERS = ['-0', '0', '-1', '9223372036854775807', '-9223372036854775808', '18446744073709551615', '"-0"', '" 5 "'];
const BAD_BYTES: string[] = [
  '123', 'true', 'false', '[]', '{}', '1.5', '1e400', '"!!!!"', '"Zm8"', '"Zm9v-_"', '"Zg="', '"===="', '"Zm9v===="', '"\\ud800"',
  '"Zm9v\\ud800"', '"\\udfffZm9v"', '"Zm9v\\u0000"', '"é"', '"Zm9v\\t"', '"Z m9v"', '"Zm9v\\u00ff"', '"Zm9v."',
];

/** A value that is wrong for `kind` wherever it stands (never `null`: a null field means "absent"). */
export function wrong(kind: Kind, rng: Rng): J {
  switch (kind.t) {
    case 'bytes':
      return rng.chance(0.1) ? `${'A'.repeat(rng.between(1, 4000))}!` : new Raw(rng.pick(BAD_BYTES));
    case 'int64':
      if (rng.chance(0.15)) return new Raw(rng.pick(BROKEN_NUMBERS));
      if (kind.unsigned && rng.chance(0.2)) return rng.pick([-1, '-1', '-18446744073709551616']);
      return new Raw(rng.pick(BAD_INT64));
    case 'uint32':
      return rng.pick<J>([-1, 4294967296, 1.5, 'x', true, [], new Raw('1e400')]);
    case 'bool':
      return rng.pick<J>([0, 1, 'true', 'false', 'yes', [], new Obj(), new Raw('tru'), new Raw('True'), new Raw('nul'), new Raw('1e400')]);
    case 'enum': {
      const names = kind.values.filter((v): v is string => typeof v === 'string');
      const name = names.length ? rng.pick(names) : 'X';
      return rng.pick<J>(['BOGUS', name.toLowerCase() === name ? `${name}x` : name.toLowerCase(), 99, -1, 1.5, true, [], new Obj(), '', ` ${name}`, new Raw('1e400'), new Raw('9223372036854775808')]);
    }
    case 'string':
      return rng.pick<J>([123, true, [], new Obj(), new Raw('1e400')]);
    case 'array':
      return rng.pick<J>(['x', 1, true, new Obj(), [null], new Raw('[1,]'), [wrong(kind.items(), rng)], new Raw('[')]);
    case 'object':
      return rng.pick<J>(['x', 1, true, [], [new Obj()], new Raw('{,}'), new Raw('{"a"}')]);
    case 'oneOf':
      return rng.pick<J>([new Obj(), 'x', 1, [], true, new Raw('{"":1}')]);
  }
}

export const UNKNOWN_NAMES = [
  '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'range_ned', 'ttl', 'KEY', 'Key', 'key ', ' key',
  '', 'ключ', '\u0000', 'key\u0000', '\ud800', '\u202ekey', 'fuzz_field', '$ref', '../key', 'key.key', 'a'.repeat(2000),
];

/** A JSON value of any kind, for unknown fields. */
function anyValue(rng: Rng): J {
  return rng.pick<J>([1, 'x', true, null, [], new Obj(), new Obj([['__proto__', new Obj([['polluted', true]])]]), new Raw('1e400'), [null, [null]]]);
}

interface Slot {
  /** Replaces the value in its container. */
  set(v: J): void;
  kind: Kind;
  /** JSON pointer of the value. */
  path: string;
}

interface Slots {
  values: Slot[];
  objects: Array<{ obj: Obj; kind: Kind & { t: 'object' } }>;
}

/** Every place in `v` (which matches `kind`) where a value sits, with its kind; and every object. */
function slots(v: J, kind: Kind, out: Slots = { values: [], objects: [] }, path = ''): Slots {
  if (kind.t === 'oneOf') {
    // Find the branch the sample came from: the one whose properties hold all of its names.
    if (v instanceof Obj) {
      for (const b of kind.branches) {
        const bk = b();
        if (bk.t === 'object' && v.pairs.every(([name]) => bk.props.some(([p]) => p === name))) return slots(v, bk, out, path);
      }
    }
    return out;
  }
  if (kind.t === 'object' && v instanceof Obj) {
    out.objects.push({ obj: v, kind });
    v.pairs.forEach((pair, i) => {
      const prop = kind.props.find(([p]) => p === pair[0]);
      if (!prop) return;
      const k = prop[1]();
      out.values.push({ set: (x) => (v.pairs[i] = [pair[0], x]), kind: k, path: `${path}/${pair[0]}` });
      slots(pair[1], k, out, `${path}/${pair[0]}`);
    });
  } else if (kind.t === 'array' && Array.isArray(v)) {
    const k = kind.items();
    v.forEach((item, i) => {
      out.values.push({ set: (x) => (v[i] = x), kind: k, path: `${path}/${i}` });
      slots(item, k, out, `${path}/${i}`);
    });
  }
  return out;
}

/** A sample with every property present (to a depth of 4), arrays of one, one branch of each oneOf
 *  (at the top, branch number `branch`). */
function fullSample(kind: Kind, rng: Rng, depth = 0, branch?: number): J {
  switch (kind.t) {
    case 'array':
      return depth > 4 ? [] : [fullSample(kind.items(), rng, depth + 1)];
    case 'object':
      return new Obj(depth > 4 ? [] : kind.props.map(([name, k]): [string, J] => [name, fullSample(k(), rng, depth + 1)]));
    case 'oneOf':
      return fullSample((branch === undefined ? rng.pick(kind.branches) : kind.branches[branch % kind.branches.length])(), rng, depth);
    default:
      return sample(kind, rng, depth);
  }
}

/** Every field of a full sample of `kind`, one at a time, given a wrong value: the systematic part of
 *  the fuzzing (the rest picks fields at random). `path` names the field made wrong. */
export function fieldSweep(kind: Kind, rng: Rng, branch: number): Array<{ path: string; body: J }> {
  const seed = rng.int(2 ** 32);
  const count = slots(fullSample(kind, new Rng(seed), 0, branch), kind).values.length;
  return Array.from({ length: count }, (_, j) => {
    const body = fullSample(kind, new Rng(seed), 0, branch);
    const slot = slots(body, kind).values[j];
    slot.set(wrong(slot.kind, rng));
    return { path: slot.path, body };
  });
}

/** A valid sample of `kind` with 1–3 mutations: a wrong value in some field, an unknown field, a field
 *  under both of its names. */
export function mutatedRequest(kind: Kind, rng: Rng, mode: 'wrong-type' | 'bad-number' | 'bad-base64' | 'unknown-field'): J {
  const value = sample(kind, rng);
  const mutations = rng.between(1, 3);
  for (let m = 0; m < mutations; m++) {
    const found = slots(value, kind);
    if (mode === 'unknown-field' || found.values.length === 0) {
      const target = found.objects.length ? rng.pick(found.objects) : undefined;
      if (!target) return new Obj([[rng.pick(UNKNOWN_NAMES), anyValue(rng)]]);
      // An unknown name, or a known one under both its proto and camelCase names.
      const snake = target.kind.props.map(([p]) => p).filter((p) => p.includes('_'));
      if (snake.length && rng.chance(0.25)) {
        const name = rng.pick(snake);
        const camel = name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
        const k = target.kind.props.find(([p]) => p === name)![1]();
        target.obj.pairs.push([name, sample(k, rng)], [camel, sample(k, rng)]);
      } else {
        const at = rng.int(target.obj.pairs.length + 1);
        target.obj.pairs.splice(at, 0, [rng.pick(UNKNOWN_NAMES), anyValue(rng)]);
      }
      continue;
    }
    let candidates = found.values;
    if (mode === 'bad-number') candidates = candidates.filter((s) => s.kind.t === 'int64');
    if (mode === 'bad-base64') candidates = candidates.filter((s) => s.kind.t === 'bytes');
    if (candidates.length === 0) candidates = found.values;
    const slot = rng.pick(candidates);
    if (mode === 'bad-number' && slot.kind.t === 'int64') {
      slot.set(new Raw(rng.pick([...BAD_INT64, ...BROKEN_NUMBERS, ...DOUBTFUL_NUMBERS])));
    } else {
      slot.set(wrong(slot.kind, rng));
    }
  }
  return value;
}

// ---- byte-level breakage ------------------------------------------------------------------------------

const STRAY = ['{', '}', '[', ']', ',', ':', '"', "'", 'A', '#', '~', '\u0001', '\u0000', '\u007f'];
const BAD_UTF8: number[][] = [[0xff], [0xfe], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3]];
const BAD_ESCAPES = ['\\x41', '\\u12', '\\uZZZZ', '\\q', '\\', '\\ud800', '\\udfff', '\\ud800\\u0041', '\\U0041', '\\0'];

/** Broken JSON made from a JSON text: truncated, stray bytes, invalid UTF-8, bad escapes, a BOM... */
export function breakJson(text: string, rng: Rng): Buffer {
  const buf = Buffer.from(text);
  const at = (n: number): number => rng.int(n + 1);
  switch (rng.int(7)) {
    case 0: {
      // Truncated (never to nothing: an empty body is the empty message).
      return buf.subarray(0, rng.between(1, Math.max(1, buf.length - 1)));
    }
    case 1: {
      const p = at(text.length);
      return Buffer.from(text.slice(0, p) + rng.pick(STRAY) + text.slice(p));
    }
    case 2: {
      const p = rng.int(Math.max(1, text.length));
      return Buffer.from(text.slice(0, p) + rng.pick(STRAY) + text.slice(p + 1));
    }
    case 3: {
      const p = at(buf.length);
      return Buffer.concat([buf.subarray(0, p), Buffer.from(rng.pick(BAD_UTF8)), buf.subarray(p)]);
    }
    case 4: {
      // A bad escape or a lone surrogate right after a quote: inside a string, or just after one.
      const quotes = [...text.matchAll(/"/g)].map((m) => m.index!);
      const p = quotes.length ? rng.pick(quotes) + 1 : at(text.length);
      return Buffer.from(text.slice(0, p) + rng.pick(BAD_ESCAPES) + text.slice(p));
    }
    case 5:
      return Buffer.concat([Buffer.from(rng.pick(['\ufeff', '\u0000', ')]}\'\n', 'garbage', '\u00a0'])), buf]);
    default: {
      // Several stray bytes at once.
      let t = text;
      for (let i = rng.between(2, 6); i > 0; i--) {
        const p = at(t.length);
        t = t.slice(0, p) + rng.pick(STRAY) + t.slice(p);
      }
      return Buffer.from(t);
    }
  }
}

// ---- the oracle ---------------------------------------------------------------------------------------

/** Would the gateway accept this body for this operation (and so send it on to etcd)? The same steps
 *  as its pipeline: parse (an empty body or `null` is the empty message), rename aliases, validate
 *  against the schema, decode. Handlers and etcd may still refuse; this only over-approximates. */
export function gatewayWouldAccept(spec: ApiSpec, op: Operation, body: Buffer): boolean {
  const name = op.requestSchema;
  if (!name) return false;
  const text = body.toString('utf8');
  const check = (value: unknown): boolean => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
    const shape = spec.requestShape(name);
    try {
      normalizeNames(shape, value);
      spec.check(name, value);
      decode(shape, value as Record<string, unknown>);
      return true;
    } catch {
      return false;
    }
  };
  try {
    if (op.stream) {
      const values = parseJsonSequence(text);
      if (op.stream === 'server') return values.length <= 1 && check(values[0] ?? {});
      return values.every(check);
    }
    if (text.trim() === '') return true;
    const value = parseJson(text);
    return value === null || check(value);
  } catch {
    return false;
  }
}

/** The same for one WebSocket message on a streaming operation. */
export function messageWouldBeAccepted(spec: ApiSpec, op: Operation, message: Buffer): boolean {
  if (!op.requestSchema) return false;
  try {
    const value = parseJson(message.toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
    const shape = spec.requestShape(op.requestSchema);
    normalizeNames(shape, value);
    spec.check(op.requestSchema, value);
    decode(shape, value as Record<string, unknown>);
    return true;
  } catch {
    return false;
  }
}

/** An invalid body for sure: `body` itself when the gateway would refuse it, else `body` with a stray
 *  `}` after it (trailing data for a single value, a syntax error in a sequence). */
export function certainlyInvalid(accepts: (b: Buffer) => boolean, body: Buffer): { body: Buffer; poisoned: boolean } {
  if (!accepts(body)) return { body, poisoned: false };
  const poisoned = Buffer.concat([body, Buffer.from('}')]);
  if (accepts(poisoned)) throw new Error(`cannot make an invalid request of ${body.toString('utf8').slice(0, 200)}`);
  return { body: poisoned, poisoned: true };
}

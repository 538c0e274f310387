import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DuplicateKeyError, JsonSyntaxError, numberLiteral, parseJson, parseJsonSequence } from '../../src/protocol/json/parse';
import { Rng } from '../support/fuzz';

function syntaxError(text: string, message: string, offset: number, parse: (t: string) => unknown = parseJson): void {
  assert.throws(
    () => parse(text),
    (err: unknown) => {
      assert.ok(err instanceof JsonSyntaxError, `expected JsonSyntaxError, got ${String(err)}`);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'JsonSyntaxError');
      assert.equal(err.message, message);
      assert.equal(err.offset, offset);
      return true;
    },
    JSON.stringify(text),
  );
}

function nested(depth: number, inner = '1'): string {
  let s = inner;
  for (let i = 0; i < depth; i++) s = i % 2 === 0 ? `[${s}]` : `{"k":${s}}`;
  return s;
}

describe('parseJson: values', () => {
  it('parses scalars like JSON.parse', () => {
    for (const text of ['true', 'false', 'null', '0', '-1', '12.5', '"x"', '""', ' \t\r\n 7 \n']) {
      assert.deepEqual(parseJson(text), JSON.parse(text), text);
    }
  });

  it('parses nested containers', () => {
    const text = '{"a":[1,{"b":[[],{}]},"s",null,true,false],"c":{"d":{"e":-2.5e-3}}}';
    assert.deepEqual(parseJson(text), JSON.parse(text));
  });

  it('accepts whitespace everywhere JSON allows it', () => {
    const text = ' {\n\t"a" :\r [ 1 , 2 ] , "b" : { } , "c" : [ ] }\n';
    assert.deepEqual(parseJson(text), { a: [1, 2], b: {}, c: [] });
  });

  it('produces ordinary objects and arrays', () => {
    const v = parseJson('{"a":[1]}') as { a: unknown[] };
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Array.isArray(v.a));
  });

  it('stores __proto__ as an own enumerable data property', () => {
    const v = parseJson('{"__proto__":{"polluted":true},"a":1}') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.equal((v as { polluted?: unknown }).polluted, undefined);
    assert.deepEqual(Object.keys(v), ['__proto__', 'a']);
    const desc = Object.getOwnPropertyDescriptor(v, '__proto__');
    assert.ok(desc !== undefined);
    assert.deepEqual(desc.value, { polluted: true });
    assert.equal(desc.enumerable, true);
    assert.equal(desc.writable, true);
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
    assert.deepEqual(v, JSON.parse('{"__proto__":{"polluted":true},"a":1}'));
  });

  it('refuses a duplicate key, naming it by JSON pointer, however deep', () => {
    const refused = (text: string, pointer: string): void => {
      assert.throws(() => parseJson(text), (e: unknown) => e instanceof DuplicateKeyError && e instanceof JsonSyntaxError && e.pointer === pointer && e.message === `${pointer}: duplicate key (a key may appear only once in an object)`);
    };
    refused('{"ttl":30,"ttl":40}', '/ttl');
    refused('{"a":1,"b":2,"a":3}', '/a');
    refused('{"__proto__":1,"__proto__":[2]}', '/__proto__');
    refused('{"success":[{"request_put":{}},{"request_put":{"key":"a","key":"b"}}]}', '/success/1/request_put/key');
    refused('{"a/b":{"c~d":1,"c~d":2}}', '/a~1b/c~0d');
    assert.throws(() => parseJsonSequence('{"ID":1}{"ID":2,"ID":3}'), (e: unknown) => e instanceof DuplicateKeyError && e.pointer === '/ID');
    // The same key in sibling objects is no duplicate; nor are inherited names.
    assert.deepEqual(parseJson('[{"a":1},{"a":2}]'), [{ a: 1 }, { a: 2 }]);
    assert.deepEqual(parseJson('{"toString":1,"constructor":2,"hasOwnProperty":3}'), { toString: 1, constructor: 2, hasOwnProperty: 3 });
  });

  it('decodes every string escape', () => {
    const text = String.raw`"a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u20AC\uD83D\uDE00\ud800x\uDFFF"`;
    assert.equal(parseJson(text), JSON.parse(text));
    assert.equal(parseJson(text), 'a"b\\c/d\be\ff\ng\rh\tiAé€\u{1F600}\ud800x\udfff');
  });

  it('handles escapes at the start and end of strings and back to back', () => {
    for (const text of [String.raw`"\n"`, String.raw`"\nabc"`, String.raw`"abc\n"`, String.raw`"\\\\\"\u0000"`, String.raw`["\t",{"\u0061":"\/"}]`]) {
      assert.deepEqual(parseJson(text), JSON.parse(text), text);
    }
  });

  it('handles long strings, which take the native-search path', () => {
    const long = 'A'.repeat(100);
    const texts = [
      `"${long}"`,
      `{"k":"${long}","l":"${long}x"}`,
      // A backslash or control character far away must not disturb strings before it.
      `["${long}","${long}","x\\ny"]`,
      `[\n"${long}",\n"${long}"\n]\n`,
      // Escapes after the first stretch of plain characters.
      `"${long}\\n${long}\\u0041"`,
      `["${long}\\"", "${long}"]`,
    ];
    for (const text of texts) assert.deepEqual(parseJson(text), JSON.parse(text), text);
    syntaxError(`["${long}","${long}\n"]`, 'control character U+000A in string at offset 205', 205);
    syntaxError(`"${long}\u0000${long}"`, 'control character U+0000 in string at offset 101', 101);
    syntaxError(`"${long}`, 'unexpected end of JSON input', 101);
    syntaxError(`"${long}\\q"`, "invalid escape '\\q' at offset 101", 101);
  });

  it('keeps non-ASCII and DEL characters as they are', () => {
    const text = '"é€\u{1F600}\u007f\u2028"';
    assert.equal(parseJson(text), JSON.parse(text));
  });
});

describe('parseJson: numbers and numberLiteral', () => {
  it('parses numbers like JSON.parse', () => {
    for (const text of ['0', '-0', '1', '-1', '123456789012345', '1234567890123456', '9007199254740993', '0.1', '-0.0', '1e2', '1E+2', '1e-2', '1.5e300', '1e400', '-1e400', '5e-324', '2e-324', '123.456e-7', '18446744073709551616']) {
      assert.ok(Object.is(parseJson(text), JSON.parse(text)), text);
    }
  });

  it('recovers 64-bit integers exactly', () => {
    const v = parseJson('{"ID":4111120140152023889,"rev":-9223372036854775808,"max":18446744073709551615}') as Record<string, number>;
    assert.equal(numberLiteral(v, 'ID'), '4111120140152023889');
    assert.equal(numberLiteral(v, 'rev'), '-9223372036854775808');
    assert.equal(numberLiteral(v, 'max'), '18446744073709551615');
    assert.equal(v.ID, Number("4111120140152023889"));
  });

  it('records integers just outside the safe range but not at its edge', () => {
    const v = parseJson('[9007199254740991,-9007199254740991,9007199254740992,-9007199254740992,9007199254740993]') as number[];
    assert.equal(numberLiteral(v, 0), undefined);
    assert.equal(numberLiteral(v, 1), undefined);
    assert.equal(numberLiteral(v, 2), '9007199254740992');
    assert.equal(numberLiteral(v, 3), '-9007199254740992');
    assert.equal(numberLiteral(v, 4), '9007199254740993');
  });

  it('records fractions, exponents and -0', () => {
    const v = parseJson('{"a":1.0,"b":1e2,"c":-0,"d":0.5,"e":1E2,"f":1e+0,"g":-0.0,"h":100}') as Record<string, number>;
    assert.equal(numberLiteral(v, 'a'), '1.0');
    assert.equal(numberLiteral(v, 'b'), '1e2');
    assert.equal(numberLiteral(v, 'c'), '-0');
    assert.ok(Object.is(v.c, -0));
    assert.equal(numberLiteral(v, 'd'), '0.5');
    assert.equal(numberLiteral(v, 'e'), '1E2');
    assert.equal(numberLiteral(v, 'f'), '1e+0');
    assert.equal(numberLiteral(v, 'g'), '-0.0');
    assert.equal(numberLiteral(v, 'h'), undefined);
    assert.equal(v.b, 100);
  });

  it('does not record plain safe integers', () => {
    const v = parseJson('{"a":0,"b":-1,"c":123456789012345,"d":1234567890123456,"e":-1234567890123456}') as Record<string, number>;
    for (const k of Object.keys(v)) {
      assert.equal(numberLiteral(v, k), undefined, k);
      assert.equal(String(v[k]), JSON.stringify(v[k]));
    }
    assert.equal(v.d, 1234567890123456);
  });

  it('records numbers in arrays by index, accepting numeric or string keys', () => {
    const v = parseJson('[1, 2.0, "x", 3e1, 4]') as unknown[];
    assert.equal(numberLiteral(v, 0), undefined);
    assert.equal(numberLiteral(v, 1), '2.0');
    assert.equal(numberLiteral(v, '1'), '2.0');
    assert.equal(numberLiteral(v, 2), undefined);
    assert.equal(numberLiteral(v, 3), '3e1');
    assert.equal(numberLiteral(v, 4), undefined);
    assert.equal(numberLiteral(v, 99), undefined);
  });

  it('records numbers in deeply nested containers against their own container', () => {
    const v = parseJson('{"outer":1.5,"list":[{"x":[[10000000000000000000]]},{"y":2e0}]}') as {
      outer: number;
      list: [{ x: number[][] }, { y: number }];
    };
    assert.equal(numberLiteral(v, 'outer'), '1.5');
    assert.equal(numberLiteral(v, 'list'), undefined);
    assert.equal(numberLiteral(v.list, 0), undefined);
    assert.equal(numberLiteral(v.list[0].x[0], 0), '10000000000000000000');
    assert.equal(numberLiteral(v.list[1], 'y'), '2e0');
    assert.equal(numberLiteral(v.list[0], 'y'), undefined);
  });

  it('stops reporting a literal once the caller replaces the value', () => {
    const v = parseJson('{"n":1.0,"m":2.0}') as Record<string, unknown>;
    v.n = 7;
    assert.equal(numberLiteral(v, 'n'), undefined);
    assert.equal(numberLiteral(v, 'm'), '2.0');
  });

  it('records under the __proto__ key like any other key', () => {
    const v = parseJson('{"__proto__":1e3}') as Record<string, unknown>;
    assert.equal(numberLiteral(v, '__proto__'), '1e3');
  });

  it('returns undefined for containers it never saw', () => {
    assert.equal(numberLiteral({ a: 1.5 }, 'a'), undefined);
    assert.equal(numberLiteral([1.5], 0), undefined);
  });
});

describe('parseJson: errors', () => {
  const END = 'unexpected end of JSON input';
  const cases: Array<[string, string, number]> = [
    ['', END, 0],
    ['   \n', END, 4],
    ['x', "unexpected character 'x' at offset 0", 0],
    ['{"a":1,"b":x}', "unexpected character 'x' at offset 11", 11],
    ['{"a" 1}', "unexpected character '1' at offset 5", 5],
    ['{"a":1 "b":2}', "unexpected character '\"' at offset 7", 7],
    ['{a:1}', "unexpected character 'a' at offset 1", 1],
    ["{'a':1}", "unexpected character ''' at offset 1", 1],
    ['{"a":1,}', "unexpected character '}' at offset 7", 7],
    ['[1,]', "unexpected character ']' at offset 3", 3],
    ['[,1]', "unexpected character ',' at offset 1", 1],
    ['[1 2]', "unexpected character '2' at offset 3", 3],
    ['[1}', "unexpected character '}' at offset 2", 2],
    ['{"a":1]', "unexpected character ']' at offset 6", 6],
    ['{', END, 1],
    ['{"a"', END, 4],
    ['{"a":', END, 5],
    ['{"a":1', END, 6],
    ['{"a":1,', END, 7],
    ['[', END, 1],
    ['[1', END, 2],
    ['[1,', END, 3],
    ['"abc', END, 4],
    ['"abc\\', END, 5],
    ['"\\u12', END, 5],
    ['"a\\nb', END, 5],
    ['tru', END, 3],
    ['nul', END, 3],
    ['trux', "unexpected character 'x' at offset 3", 3],
    ['True', "unexpected character 'T' at offset 0", 0],
    ['nulll', 'unexpected data after the JSON value at offset 4', 4],
    ['{"a":1} x', 'unexpected data after the JSON value at offset 8', 8],
    ['{"a":1}{"b":2}', 'unexpected data after the JSON value at offset 7', 7],
    ['1 2', 'unexpected data after the JSON value at offset 2', 2],
    // Number grammar.
    ['01', 'unexpected data after the JSON value at offset 1', 1],
    ['[01]', "unexpected character '1' at offset 2", 2],
    ['-01', 'unexpected data after the JSON value at offset 2', 2],
    ['+1', "unexpected character '+' at offset 0", 0],
    ['[+1]', "unexpected character '+' at offset 1", 1],
    ['.5', "unexpected character '.' at offset 0", 0],
    ['-', END, 1],
    ['-x', "unexpected character 'x' at offset 1", 1],
    ['-.5', "unexpected character '.' at offset 1", 1],
    ['1.', END, 2],
    ['[1.]', "unexpected character ']' at offset 3", 3],
    ['1.e5', "unexpected character 'e' at offset 2", 2],
    ['1e', END, 2],
    ['1e+', END, 3],
    ['[1e]', "unexpected character ']' at offset 3", 3],
    ['1e+-5', "unexpected character '-' at offset 3", 3],
    ['NaN', "unexpected character 'N' at offset 0", 0],
    ['Infinity', "unexpected character 'I' at offset 0", 0],
    ['-Infinity', "unexpected character 'I' at offset 1", 1],
    ['0x10', 'unexpected data after the JSON value at offset 1', 1],
    // Strings.
    ['"a\nb"', 'control character U+000A in string at offset 2', 2],
    ['"\u0000"', 'control character U+0000 in string at offset 1', 1],
    ['"\\n\u001f"', 'control character U+001F in string at offset 3', 3],
    ['"a\\qb"', "invalid escape '\\q' at offset 2", 2],
    ['"a\\\u0001"', 'invalid escape \\ followed by U+0001 at offset 2', 2],
    ['"\\x41"', "invalid escape '\\x' at offset 1", 1],
    ['"\\u00g0"', "invalid character 'g' in \\u escape at offset 5", 5],
    ['"\\u"', "invalid character '\"' in \\u escape at offset 3", 3],
    ['"\\U0041"', "invalid escape '\\U' at offset 1", 1],
    // Characters are shown readably, non-printing ones by code point.
    ['\u0000', 'unexpected character U+0000 at offset 0', 0],
    ['\ufeff{}', 'unexpected character U+FEFF at offset 0', 0],
    ['[\u00a0]', 'unexpected character U+00A0 at offset 1', 1],
    ['[é]', "unexpected character 'é' at offset 1", 1],
    ['[\u{1F600}]', "unexpected character '\u{1F600}' at offset 1", 1],
    ['\v1', 'unexpected character U+000B at offset 0', 0],
    ['\f1', 'unexpected character U+000C at offset 0', 0],
  ];
  for (const [text, message, offset] of cases) {
    it(`${JSON.stringify(text)} -> ${message}`, () => {
      syntaxError(text, message, offset);
      // Everything rejected here is rejected by JSON.parse too.
      assert.throws(() => JSON.parse(text), SyntaxError);
    });
  }
});

describe('parseJson: nesting limit', () => {
  it('accepts 64 levels of arrays and objects', () => {
    assert.deepEqual(parseJson(nested(64)), JSON.parse(nested(64)));
    assert.deepEqual(parseJson('['.repeat(64) + ']'.repeat(64)), JSON.parse('['.repeat(64) + ']'.repeat(64)));
  });

  it('rejects the 65th level at its opening bracket', () => {
    syntaxError('['.repeat(65) + ']'.repeat(65), 'JSON nested deeper than 64 levels at offset 64', 64);
    syntaxError('{"a":'.repeat(65) + '1' + '}'.repeat(65), 'JSON nested deeper than 64 levels at offset 320', 320);
    syntaxError(' ' + nested(65), 'JSON nested deeper than 64 levels at offset 193', 193);
  });

  it('counts depth, not total containers', () => {
    const wide = '[' + Array.from({ length: 1000 }, () => nested(63)).join(',') + ']';
    assert.equal((parseJson(wide) as unknown[]).length, 1000);
  });

  it('rejects hostile depth without overflowing the stack', () => {
    syntaxError('['.repeat(1_000_000), 'JSON nested deeper than 64 levels at offset 64', 64);
    // Level 65 is the '{' of the 33rd repetition.
    syntaxError('{"a":['.repeat(100_000), 'JSON nested deeper than 64 levels at offset 192', 192);
  });

  it('resets depth between sequence values', () => {
    const text = nested(64) + '\n' + nested(64);
    assert.equal(parseJsonSequence(text).length, 2);
  });
});

describe('parseJsonSequence', () => {
  it('returns [] for empty and whitespace-only text', () => {
    assert.deepEqual(parseJsonSequence(''), []);
    assert.deepEqual(parseJsonSequence(' \r\n\t'), []);
  });

  it('parses values concatenated without separators', () => {
    assert.deepEqual(parseJsonSequence('{"ID":1}{"ID":2}'), [{ ID: 1 }, { ID: 2 }]);
    assert.deepEqual(parseJsonSequence('[1]["a"]{}'), [[1], ['a'], {}]);
    assert.deepEqual(parseJsonSequence('"a""b"'), ['a', 'b']);
    assert.deepEqual(parseJsonSequence('truefalsenull'), [true, false, null]);
    // A number ends where its grammar ends, as in Go's json.Decoder used by etcd.
    assert.deepEqual(parseJsonSequence('1 01'), [1, 0, 1]);
    assert.deepEqual(parseJsonSequence('1.5"x"-2'), [1.5, 'x', -2]);
  });

  it('parses values separated by whitespace', () => {
    assert.deepEqual(parseJsonSequence('{"ID":1}\n{"ID":2}\n'), [{ ID: 1 }, { ID: 2 }]);
    assert.deepEqual(parseJsonSequence('\r\n {"a":1}\r\n\r\n\t[2] 3 "x"\n'), [{ a: 1 }, [2], 3, 'x']);
    assert.deepEqual(parseJsonSequence('{"ID":1}'), [{ ID: 1 }]);
  });

  it('keeps number literals for each value', () => {
    const [a, b] = parseJsonSequence('{"ID":4111120140152023889}{"ID":2.0}') as Array<Record<string, number>>;
    assert.equal(numberLiteral(a, 'ID'), '4111120140152023889');
    assert.equal(numberLiteral(b, 'ID'), '2.0');
  });

  it('rejects garbage between and after values', () => {
    syntaxError('{"a":1},{"a":2}', "unexpected character ',' at offset 7", 7, parseJsonSequence);
    syntaxError('{"a":1}\nx', "unexpected character 'x' at offset 8", 8, parseJsonSequence);
    syntaxError('[1] ]', "unexpected character ']' at offset 4", 4, parseJsonSequence);
    syntaxError('{"a":1}{', 'unexpected end of JSON input', 8, parseJsonSequence);
    syntaxError('{"a":1}\n{"a":', 'unexpected end of JSON input', 13, parseJsonSequence);
  });
});

// Deterministic generator of random JSON documents, written with varied
// spacing, escapes and number spellings, together with the number literals
// the parser must report for them.
/** The shared mulberry32 generator as a function: the same seed gives the same sequence. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

type Model =
  | { kind: 'num'; text: string }
  | { kind: 'other' }
  | { kind: 'arr'; items: Model[] }
  | { kind: 'obj'; entries: Array<[string, Model]> };

class DocGen {
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  ws(): string {
    if (this.r() < 0.6) return '';
    let s = '';
    for (let i = this.int(3) + 1; i > 0; i--) s += this.pick([' ', '\t', '\n', '\r']);
    return s;
  }
  digits(n: number, leadingNonZero: boolean): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String(leadingNonZero && i === 0 ? 1 + this.int(9) : this.int(10));
    return s;
  }
  number(): string {
    const sign = this.r() < 0.3 ? '-' : '';
    const intPart = this.r() < 0.15 ? '0' : this.digits(1 + this.int(this.r() < 0.2 ? 25 : 8), true);
    const frac = this.r() < 0.25 ? '.' + this.digits(1 + this.int(6), false) : '';
    const exp = this.r() < 0.2 ? this.pick(['e', 'E']) + this.pick(['', '+', '-']) + this.digits(1 + this.int(3), false) : '';
    return sign + intPart + frac + exp;
  }
  string(): string {
    let s = '"';
    for (let i = this.int(this.r() < 0.2 ? 80 : 12); i > 0; i--) {
      const roll = this.r();
      if (roll < 0.55) s += String.fromCharCode(0x20 + this.int(0x5f)).replace(/["\\]/, 'q');
      else if (roll < 0.7) s += this.pick(['\\"', '\\\\', '\\/', '\\b', '\\f', '\\n', '\\r', '\\t']);
      else if (roll < 0.8) s += '\\u' + this.int(0x10000).toString(16).padStart(4, '0');
      else if (roll < 0.85) s += this.pick(['\\uD83D\\uDE00', '\\ud800', '\\uDFFF']);
      else if (roll < 0.95) s += String.fromCharCode(0xa1 + this.int(0x3000));
      else s += '\u{1F600}';
    }
    return s + '"';
  }
  key(): string {
    // Keys never look like array indices, so model order matches object key order.
    return this.r() < 0.05 ? '"__proto__"' : `"k${this.int(1000)}${this.string().slice(1, -1)}"`;
  }
  value(depth: number): [string, Model] {
    const roll = this.r();
    if (depth < 6 && roll < 0.2) {
      const items: Model[] = [];
      const parts: string[] = [];
      for (let i = this.int(6); i > 0; i--) {
        const [t, m] = this.value(depth + 1);
        parts.push(this.ws() + t + this.ws());
        items.push(m);
      }
      return [`[${parts.join(',') || this.ws()}]`, { kind: 'arr', items }];
    }
    if (depth < 6 && roll < 0.4) {
      const entries: Array<[string, Model]> = [];
      const parts: string[] = [];
      const seen = new Set<string>();
      for (let i = this.int(6); i > 0; i--) {
        const k = this.key();
        const name = JSON.parse(k) as string;
        if (seen.has(name)) continue;
        seen.add(name);
        const [t, m] = this.value(depth + 1);
        parts.push(this.ws() + k + this.ws() + ':' + this.ws() + t + this.ws());
        entries.push([name, m]);
      }
      return [`{${parts.join(',') || this.ws()}}`, { kind: 'obj', entries }];
    }
    if (roll < 0.7) {
      const t = this.number();
      return [t, { kind: 'num', text: t }];
    }
    if (roll < 0.9) return [this.string(), { kind: 'other' }];
    return [this.pick(['true', 'false', 'null']), { kind: 'other' }];
  }
}

function isPlainSafeInteger(text: string): boolean {
  return /^-?(0|[1-9][0-9]*)$/.test(text) && text !== '-0' && Number.isSafeInteger(Number(text));
}

function checkLiterals(model: Model, value: unknown): number {
  let checked = 0;
  const check = (container: object, key: string | number, m: Model, v: unknown): void => {
    if (m.kind === 'num') {
      const lit = numberLiteral(container, key);
      if (isPlainSafeInteger(m.text)) {
        assert.equal(lit, undefined, m.text);
        assert.equal(String(v), m.text);
      } else {
        assert.equal(lit, m.text);
      }
      checked++;
    } else {
      checked += checkLiterals(m, v);
    }
  };
  if (model.kind === 'arr') {
    const arr = value as unknown[];
    model.items.forEach((m, i) => check(arr, i, m, arr[i]));
  } else if (model.kind === 'obj') {
    const obj = value as Record<string, unknown>;
    assert.deepEqual(Object.keys(obj), model.entries.map(([k]) => k));
    for (const [k, m] of model.entries) check(obj, k, m, obj[k]);
  }
  return checked;
}

describe('parseJson: randomized comparison with JSON.parse', () => {
  it('agrees with JSON.parse and records the right literals on 500 generated documents', () => {
    const gen = new DocGen(20240601);
    let numbers = 0;
    for (let i = 0; i < 500; i++) {
      const [text, model] = gen.value(i % 3 === 0 ? 0 : 5);
      const doc = gen.ws() + (i % 2 === 0 ? `{"doc":${text}}` : `[${text}]`) + gen.ws();
      const expected: unknown = JSON.parse(doc);
      const actual = parseJson(doc);
      assert.deepStrictEqual(actual, expected, doc);
      const wrapper: Model = i % 2 === 0 ? { kind: 'obj', entries: [['doc', model]] } : { kind: 'arr', items: [model] };
      numbers += checkLiterals(wrapper, actual);
      // The same document as a sequence of three values.
      assert.deepStrictEqual(parseJsonSequence(doc + doc + '\n' + doc), [expected, expected, expected]);
    }
    assert.ok(numbers > 500, `only ${numbers} numbers checked`);
  });

  it('rejects every truncation of generated documents, like JSON.parse', () => {
    const gen = new DocGen(7);
    for (let i = 0; i < 100; i++) {
      const [text] = gen.value(0);
      const doc = `[${text}]`;
      for (let cut = 0; cut < doc.length; cut++) {
        const prefix = doc.slice(0, cut);
        let jsonOk = true;
        try {
          JSON.parse(prefix);
        } catch {
          jsonOk = false;
        }
        let ours = true;
        try {
          parseJson(prefix);
        } catch (err) {
          assert.ok(err instanceof JsonSyntaxError);
          assert.ok(err.offset >= 0 && err.offset <= prefix.length);
          ours = false;
        }
        assert.equal(ours, jsonOk, JSON.stringify(prefix));
      }
    }
  });
});

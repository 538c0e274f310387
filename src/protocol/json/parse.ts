// A lossless JSON parser for request bodies.
//
// JSON.parse is not enough for an etcd gateway: int64 fields (lease IDs,
// revisions) arrive as bare numbers above 2^53 and would be silently rounded,
// and etcd rejects int64 fields written as `1.0` or `1e2`, which JSON.parse
// makes indistinguishable from `1` and `100`. This parser produces the same
// values as JSON.parse but remembers the source text of every number whose
// value alone does not reproduce it, so the field decoders can recover it via
// numberLiteral().

/** Objects and arrays nested deeper than this are rejected, so hostile input cannot exhaust the stack. */
const MAX_DEPTH = 64;

export class JsonSyntaxError extends Error {
  /** UTF-16 offset into the parsed text where the problem was detected. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(message);
    this.name = 'JsonSyntaxError';
    this.offset = offset;
  }
}

/** A JSON pointer segment (RFC 6901). */
function pointerSegment(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * An object with the same key twice. RFC 8259 leaves the meaning to each parser (JSON.parse keeps the
 * last, others the first), so a proxy in front and this gateway could read two different requests from
 * one body: refused, naming the key by JSON pointer.
 */
export class DuplicateKeyError extends JsonSyntaxError {
  /** The JSON pointer of the repeated key, built outwards as the error leaves each container. */
  pointer: string;

  constructor(key: string, offset: number) {
    super('', offset);
    this.name = 'DuplicateKeyError';
    this.pointer = `/${pointerSegment(key)}`;
    this.describe();
  }

  /** The container holding the object was itself at `segment` of its parent. */
  under(segment: string | number): void {
    this.pointer = `/${typeof segment === 'number' ? segment : pointerSegment(segment)}${this.pointer}`;
    this.describe();
  }

  private describe(): void {
    this.message = `${this.pointer}: duplicate key (a key may appear only once in an object)`;
  }
}

interface RecordedLiteral {
  // The value is kept so that a container mutated after parsing does not
  // report a literal for a number that is no longer there.
  readonly value: number;
  readonly text: string;
}

// Keyed weakly by container so that the records die with the parsed document
// and parsing leaves no visible marks (extra properties, symbols) on the data.
const literals = new WeakMap<object, Map<string, RecordedLiteral>>();

/**
 * The exact source text of the number at `container[key]`, when that number
 * was not a plain safe integer (it had a fraction or exponent, was outside
 * ±Number.MAX_SAFE_INTEGER, or was `-0`). Returns undefined otherwise, in
 * which case `String(container[key])` reproduces the literal exactly.
 */
export function numberLiteral(container: object, key: string | number): string | undefined {
  const records = literals.get(container);
  if (records === undefined) return undefined;
  // Array indices and property names share one key space, as in JS itself.
  const k = typeof key === 'number' ? String(key) : key;
  const rec = records.get(k);
  if (rec === undefined) return undefined;
  return Object.is((container as Record<string, unknown>)[k], rec.value) ? rec.text : undefined;
}

/** Parses exactly one JSON value, optionally surrounded by JSON whitespace. */
export function parseJson(text: string): unknown {
  const p = new Parser(text);
  const c = p.skipWhitespace();
  if (c < 0) throw p.endError();
  const value = p.parseValue(c);
  if (p.skipWhitespace() >= 0) {
    throw new JsonSyntaxError(`unexpected data after the JSON value at offset ${p.pos}`, p.pos);
  }
  return value;
}

/**
 * Parses zero or more concatenated JSON values, as etcd's streaming endpoints
 * accept them (`{"ID":1}{"ID":2}` or one value per line).
 */
export function parseJsonSequence(text: string): unknown[] {
  const p = new Parser(text);
  const out: unknown[] = [];
  for (let c = p.skipWhitespace(); c >= 0; c = p.skipWhitespace()) {
    out.push(p.parseValue(c));
    p.pendingLiteral = undefined;
  }
  return out;
}

// Character codes used by the scanner.
const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const QUOTE = 34;
const PLUS = 43;
const COMMA = 44;
const MINUS = 45;
const DOT = 46;
const SLASH = 47;
const ZERO = 48;
const NINE = 57;
const COLON = 58;
const UPPER_E = 69;
const OPEN_BRACKET = 91;
const BACKSLASH = 92;
const CLOSE_BRACKET = 93;
const LOWER_E = 101;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;

// Integers with at most this many digits are accumulated exactly in a double,
// which avoids slicing the text and calling Number() for the common case.
const EXACT_DIGITS = 15;

// Strings are scanned char by char for this many characters before switching
// to native searches.
const SHORT_STRING = 24;

// eslint-disable-next-line no-control-regex -- finding raw control characters is the point
const CONTROL_CHAR = /[\u0000-\u001f]/g;

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function describeChar(text: string, at: number): string {
  const cp = text.codePointAt(at) ?? 0;
  // Control and invisible characters would make the message unreadable.
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || (cp >= 0xd800 && cp <= 0xdfff) || cp === 0xfeff) {
    return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `'${String.fromCodePoint(cp)}'`;
}

class Parser {
  pos = 0;
  depth = 0;
  // Set by parseNumber when the literal must be recorded; the enclosing
  // container consumes it once it knows the key the number is stored under.
  pendingLiteral: string | undefined = undefined;
  // Offsets of the next backslash / control character at or after the last
  // search start (the length when there is none); see parseLongString.
  private nextBackslash = -1;
  private nextControl = -1;
  private readonly src: string;
  private readonly len: number;

  constructor(src: string) {
    this.src = src;
    this.len = src.length;
  }

  /** Advances past whitespace and returns the next char code, or -1 at the end. */
  skipWhitespace(): number {
    const s = this.src;
    const n = this.len;
    let p = this.pos;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c !== SPACE && c !== LF && c !== CR && c !== TAB) {
        this.pos = p;
        return c;
      }
      p++;
    }
    this.pos = p;
    return -1;
  }

  endError(): JsonSyntaxError {
    return new JsonSyntaxError('unexpected end of JSON input', this.len);
  }

  /** Error for char code `c` found at `at`, where -1 means the input ended. */
  unexpected(c: number, at: number): JsonSyntaxError {
    if (c < 0 || at >= this.len) return this.endError();
    return new JsonSyntaxError(`unexpected character ${describeChar(this.src, at)} at offset ${at}`, at);
  }

  /** `c` is the (non-whitespace) char code at this.pos, or -1 at the end. */
  parseValue(c: number): unknown {
    switch (c) {
      case OPEN_BRACE:
        return this.parseObject();
      case OPEN_BRACKET:
        return this.parseArray();
      case QUOTE:
        return this.parseString();
      case 116: // t
        this.expectWord('true');
        return true;
      case 102: // f
        this.expectWord('false');
        return false;
      case 110: // n
        this.expectWord('null');
        return null;
      default:
        if (c === MINUS || (c >= ZERO && c <= NINE)) return this.parseNumber();
        throw this.unexpected(c, this.pos);
    }
  }

  private expectWord(word: string): void {
    const s = this.src;
    const start = this.pos;
    // The first letter was already matched by the caller's dispatch.
    for (let i = 1; i < word.length; i++) {
      const p = start + i;
      if (p >= this.len) throw this.endError();
      if (s.charCodeAt(p) !== word.charCodeAt(i)) throw this.unexpected(s.charCodeAt(p), p);
    }
    this.pos = start + word.length;
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) {
      throw new JsonSyntaxError(`JSON nested deeper than ${MAX_DEPTH} levels at offset ${this.pos}`, this.pos);
    }
    this.pos++;
  }

  private parseObject(): Record<string, unknown> {
    this.enter();
    const obj: Record<string, unknown> = {};
    let records: Map<string, RecordedLiteral> | undefined;
    let c = this.skipWhitespace();
    if (c === CLOSE_BRACE) {
      this.pos++;
      this.depth--;
      return obj;
    }
    for (;;) {
      if (c !== QUOTE) throw this.unexpected(c, this.pos);
      const keyAt = this.pos;
      const key = this.parseString();
      if (Object.hasOwn(obj, key)) throw new DuplicateKeyError(key, keyAt);
      c = this.skipWhitespace();
      if (c !== COLON) throw this.unexpected(c, this.pos);
      this.pos++;
      let value: unknown;
      try {
        value = this.parseValue(this.skipWhitespace());
      } catch (e) {
        if (e instanceof DuplicateKeyError) e.under(key);
        throw e;
      }
      if (key === '__proto__') {
        // Plain assignment would replace the prototype instead of storing data.
        Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
      } else {
        obj[key] = value;
      }
      if (this.pendingLiteral !== undefined) {
        records = this.recordLiteral(obj, records, key, value);
      }
      c = this.skipWhitespace();
      if (c === COMMA) {
        this.pos++;
        c = this.skipWhitespace();
      } else if (c === CLOSE_BRACE) {
        this.pos++;
        this.depth--;
        return obj;
      } else {
        throw this.unexpected(c, this.pos);
      }
    }
  }

  /** Stores the exact text of the number just parsed into `container[key]`. */
  private recordLiteral(
    container: object,
    records: Map<string, RecordedLiteral> | undefined,
    key: string,
    value: unknown,
  ): Map<string, RecordedLiteral> {
    if (records === undefined) {
      records = new Map();
      literals.set(container, records);
    }
    records.set(key, { value: value as number, text: this.pendingLiteral as string });
    this.pendingLiteral = undefined;
    return records;
  }

  private parseArray(): unknown[] {
    this.enter();
    const arr: unknown[] = [];
    let records: Map<string, RecordedLiteral> | undefined;
    let c = this.skipWhitespace();
    if (c === CLOSE_BRACKET) {
      this.pos++;
      this.depth--;
      return arr;
    }
    for (;;) {
      let value: unknown;
      try {
        value = this.parseValue(c);
      } catch (e) {
        if (e instanceof DuplicateKeyError) e.under(arr.length);
        throw e;
      }
      if (this.pendingLiteral !== undefined) records = this.recordLiteral(arr, records, String(arr.length), value);
      arr.push(value);
      c = this.skipWhitespace();
      if (c === COMMA) {
        this.pos++;
        c = this.skipWhitespace();
      } else if (c === CLOSE_BRACKET) {
        this.pos++;
        this.depth--;
        return arr;
      } else {
        throw this.unexpected(c, this.pos);
      }
    }
  }

  /** this.pos is at the opening quote. */
  private parseString(): string {
    const s = this.src;
    const start = this.pos + 1;
    // Keys and short values end quickly, where a char loop beats the setup of
    // native searches; longer ones (base64 keys and values) switch over.
    const shortEnd = Math.min(this.len, start + SHORT_STRING);
    for (let p = start; p < shortEnd; p++) {
      const c = s.charCodeAt(p);
      if (c === QUOTE) {
        this.pos = p + 1;
        return s.slice(start, p);
      }
      if (c === BACKSLASH) return this.parseEscapedString(start, p);
      if (c < SPACE) throw this.controlCharError(p);
    }
    return this.parseLongString(start, shortEnd);
  }

  /** Continues a string whose content starts at `start`; [start, from) holds only plain characters. */
  private parseLongString(start: number, from: number): string {
    const s = this.src;
    const q = s.indexOf('"', from);
    if (q >= 0) {
      // The next backslash and control character are cached across strings
      // and searches resume past them, so over a whole parse each character
      // is examined at most once by each of the two searches.
      if (this.nextBackslash < from) {
        const b = s.indexOf('\\', from);
        this.nextBackslash = b < 0 ? this.len : b;
      }
      if (this.nextControl < from) {
        CONTROL_CHAR.lastIndex = from;
        this.nextControl = CONTROL_CHAR.test(s) ? CONTROL_CHAR.lastIndex - 1 : this.len;
      }
      if (this.nextBackslash > q && this.nextControl > q) {
        this.pos = q + 1;
        return s.slice(start, q);
      }
    }
    // Escapes, a control character or a missing quote: the char loop handles
    // them and reports errors at the right offset.
    for (let p = from; p < this.len; p++) {
      const c = s.charCodeAt(p);
      if (c === QUOTE) {
        this.pos = p + 1;
        return s.slice(start, p);
      }
      if (c === BACKSLASH) return this.parseEscapedString(start, p);
      if (c < SPACE) throw this.controlCharError(p);
    }
    throw this.endError();
  }

  /** Slow path, entered at the first backslash `p` of a string whose content starts at `start`. */
  private parseEscapedString(start: number, p: number): string {
    const s = this.src;
    const n = this.len;
    let out = s.slice(start, p);
    for (;;) {
      // Here s[p] is a backslash.
      if (p + 1 >= n) throw this.endError();
      const e = s.charCodeAt(p + 1);
      switch (e) {
        case QUOTE:
          out += '"';
          break;
        case BACKSLASH:
          out += '\\';
          break;
        case SLASH:
          out += '/';
          break;
        case 98: // b
          out += '\b';
          break;
        case 102: // f
          out += '\f';
          break;
        case 110: // n
          out += '\n';
          break;
        case 114: // r
          out += '\r';
          break;
        case 116: // t
          out += '\t';
          break;
        case 117: {
          // u: surrogate halves are emitted one code unit at a time, which
          // joins valid pairs and keeps lone halves, exactly like JSON.parse.
          let code = 0;
          for (let i = p + 2; i < p + 6; i++) {
            if (i >= n) throw this.endError();
            const d = hexDigit(s.charCodeAt(i));
            if (d < 0) {
              throw new JsonSyntaxError(`invalid character ${describeChar(s, i)} in \\u escape at offset ${i}`, i);
            }
            code = code * 16 + d;
          }
          out += String.fromCharCode(code);
          p += 4;
          break;
        }
        default:
          throw this.invalidEscape(p);
      }
      p += 2;
      const chunk = p;
      for (;;) {
        if (p >= n) throw this.endError();
        const c = s.charCodeAt(p);
        if (c === QUOTE) {
          this.pos = p + 1;
          return p > chunk ? out + s.slice(chunk, p) : out;
        }
        if (c === BACKSLASH) break;
        if (c < SPACE) throw this.controlCharError(p);
        p++;
      }
      if (p > chunk) out += s.slice(chunk, p);
    }
  }

  private invalidEscape(at: number): JsonSyntaxError {
    const what = describeChar(this.src, at + 1);
    const shown = what.startsWith("'") ? `'\\${what.slice(1)}` : `\\ followed by ${what}`;
    return new JsonSyntaxError(`invalid escape ${shown} at offset ${at}`, at);
  }

  private controlCharError(at: number): JsonSyntaxError {
    return new JsonSyntaxError(`control character ${describeChar(this.src, at)} in string at offset ${at}`, at);
  }

  /** this.pos is at '-' or a digit. */
  private parseNumber(): number {
    const s = this.src;
    const n = this.len;
    const start = this.pos;
    let p = start;
    let c = s.charCodeAt(p);
    const negative = c === MINUS;
    if (negative) {
      p++;
      c = p < n ? s.charCodeAt(p) : -1;
    }
    let value = 0;
    const digitsStart = p;
    if (c === ZERO) {
      // A leading zero stands alone; whatever digit follows is left for the caller to reject.
      p++;
      c = p < n ? s.charCodeAt(p) : -1;
    } else if (c > ZERO && c <= NINE) {
      do {
        value = value * 10 + (c - ZERO);
        p++;
        c = p < n ? s.charCodeAt(p) : -1;
      } while (c >= ZERO && c <= NINE);
    } else {
      throw this.unexpected(c, p);
    }
    const intDigits = p - digitsStart;
    let plainInteger = true;
    if (c === DOT) {
      plainInteger = false;
      p = this.skipDigits(p + 1);
      c = p < n ? s.charCodeAt(p) : -1;
    }
    if (c === LOWER_E || c === UPPER_E) {
      plainInteger = false;
      p++;
      c = p < n ? s.charCodeAt(p) : -1;
      if (c === PLUS || c === MINUS) p++;
      p = this.skipDigits(p);
    }
    this.pos = p;

    if (plainInteger && intDigits <= EXACT_DIGITS) {
      if (!negative) return value;
      if (value === 0) {
        this.pendingLiteral = '-0';
        return -0;
      }
      return -value;
    }
    const text = s.slice(start, p);
    const result = Number(text);
    // Every literal whose exact value lies within the safe range converts
    // exactly, and every one outside it converts to a double beyond it.
    if (!plainInteger || result > Number.MAX_SAFE_INTEGER || result < -Number.MAX_SAFE_INTEGER) {
      this.pendingLiteral = text;
    }
    return result;
  }

  /** Requires at least one digit at `p`; returns the offset after the run of digits. */
  private skipDigits(p: number): number {
    const s = this.src;
    const n = this.len;
    let c = p < n ? s.charCodeAt(p) : -1;
    if (!(c >= ZERO && c <= NINE)) throw this.unexpected(c, p);
    do {
      p++;
      c = p < n ? s.charCodeAt(p) : -1;
    } while (c >= ZERO && c <= NINE);
    return p;
  }
}

// HPACK (RFC 7541) for the gateway's own HTTP/2 gRPC client.
//
// The decoder is complete: Go's grpc server (the other end) uses the dynamic
// table and Huffman coding, so both are supported in full. It runs on every
// response, so it avoids per-field allocations beyond the strings it hands
// out: integers and indexes are read in place, the dynamic table is a ring of
// two parallel arrays, and Huffman strings go through a table-driven state
// machine (one lookup per 4-bit nibble) into a shared scratch Buffer that is
// turned into a string once.
//
// The encoder is deliberately stateless: every field is either fully indexed
// from the static table or a "literal without indexing" (with the static
// table's name index where there is one), never Huffman coded. That keeps the
// peer's dynamic table untouched, so nothing has to be tracked per connection.
//
// Strings are octets on the wire and latin1 here, both ways: header names and
// values in gRPC are ASCII (grpc-message is percent-encoded), and latin1 maps
// every octet to one UTF-16 unit, so a string's length is its size in octets.

/** A malformed header block. The caller must treat it as a connection error
 *  of type COMPRESSION_ERROR (RFC 7540 section 4.3): after one, the decoder's
 *  dynamic table is no longer in step with the peer's. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

// ---------------------------------------------------------------------------
// Static table (RFC 7541 Appendix A). Index 0 is unused.

const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

const STATIC_COUNT = STATIC_TABLE.length; // 61
const STATIC_NAMES: readonly string[] = ['', ...STATIC_TABLE.map((e) => e[0])];
const STATIC_VALUES: readonly string[] = ['', ...STATIC_TABLE.map((e) => e[1])];

/** For the encoder: a name's first static index, and the index of each of its
 *  (name, value) pairs. */
interface StaticName {
  readonly index: number;
  readonly values: Map<string, number>;
}

const STATIC_BY_NAME = (() => {
  const byName = new Map<string, StaticName>();
  for (let i = 1; i <= STATIC_COUNT; i++) {
    const name = STATIC_NAMES[i];
    let entry = byName.get(name);
    if (entry === undefined) {
      entry = { index: i, values: new Map() };
      byName.set(name, entry);
    }
    if (!entry.values.has(STATIC_VALUES[i])) entry.values.set(STATIC_VALUES[i], i);
  }
  return byName;
})();

// ---------------------------------------------------------------------------
// Huffman code (RFC 7541 Appendix B).
//
// The code is canonical: sorted by (length, symbol), each code is the previous
// one plus one, shifted left by the growth in length. So the code lengths of
// the 257 symbols (256 octets and EOS) are enough to rebuild the whole table.

const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30, // EOS
];

const EOS = 256;

// The decoder's state is a position in the code tree: one of its 256 internal
// nodes (0 is the root, i.e. a symbol boundary), or FAILED once EOS has been
// seen. STEP[state * 16 + nibble] says where four more bits lead:
//   bits 0-8   the next state
//   bit 9      a symbol was completed on the way (at most one: codes are at
//              least 5 bits long)
//   bit 10     the next state is a valid place to stop: the bits since the
//              last symbol are at most 7 ones, i.e. a prefix of EOS that is
//              legal padding (RFC 7541 section 5.2)
//   bits 16-23 the completed symbol
const FAILED = 256;
const STEP_STATE = 0x1ff;
const STEP_EMIT_SHIFT = 9;
const STEP_ACCEPT = 1 << 10;
const STEP_SYMBOL_SHIFT = 16;

const STEP = (() => {
  // The code tree: child[2 * node + bit] is an internal node (< 256) or the
  // leaf of symbol (child - 256).
  const child = new Int16Array(2 * 256).fill(-1);
  let nodes = 1;
  const order = Array.from({ length: 257 }, (_, s) => s);
  order.sort((a, b) => HUFFMAN_LENGTHS[a] - HUFFMAN_LENGTHS[b] || a - b);
  let code = 0;
  for (let i = 0; i < order.length; i++) {
    const sym = order[i];
    const len = HUFFMAN_LENGTHS[sym];
    if (i > 0) code = (code + 1) * 2 ** (len - HUFFMAN_LENGTHS[order[i - 1]]);
    let node = 0;
    for (let bit = len - 1; bit > 0; bit--) {
      const slot = 2 * node + (Math.floor(code / 2 ** bit) & 1);
      if (child[slot] < 0) {
        if (nodes === 256) throw new Error('HPACK Huffman table is not a prefix code');
        child[slot] = nodes++;
      } else if (child[slot] >= 256) {
        throw new Error('HPACK Huffman table is not a prefix code');
      }
      node = child[slot];
    }
    const slot = 2 * node + (code & 1);
    if (child[slot] >= 0) throw new Error('HPACK Huffman table is not a prefix code');
    child[slot] = 256 + sym;
  }
  if (nodes !== 256 || child.includes(-1)) throw new Error('HPACK Huffman table is not complete');

  // Legal stopping points: the root and the first seven nodes down the
  // all-ones path (all internal, since the all-ones path ends in EOS at 30).
  const accepting = new Uint8Array(257);
  for (let node = 0, depth = 0; depth <= 7; depth++, node = child[2 * node + 1]) accepting[node] = 1;

  const step = new Uint32Array(257 * 16);
  for (let state = 0; state <= FAILED; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let emitted = -1;
      for (let bit = 3; bit >= 0 && node !== FAILED; bit--) {
        const next = child[2 * node + ((nibble >> bit) & 1)];
        if (next < 256) {
          node = next;
        } else if (next - 256 === EOS) {
          node = FAILED;
        } else {
          emitted = next - 256;
          node = 0;
        }
      }
      step[state * 16 + nibble] =
        node |
        (accepting[node] ? STEP_ACCEPT : 0) |
        (emitted >= 0 ? (1 << STEP_EMIT_SHIFT) | (emitted << STEP_SYMBOL_SHIFT) : 0);
    }
  }
  return step;
})();

/** Shared output buffer for Huffman decoding; only grows. */
let huffmanScratch = Buffer.allocUnsafe(1024);

function huffmanDecode(src: Buffer, start: number, end: number): string {
  // Codes are at least 5 bits, so n octets hold at most floor(8n / 5)
  // symbols; one more byte because the loop stores before it decides.
  const bound = Math.floor(((end - start) * 8) / 5) + 1;
  if (bound > huffmanScratch.length) huffmanScratch = Buffer.allocUnsafe(Math.max(bound, 2 * huffmanScratch.length));
  const out = huffmanScratch;
  const step = STEP;
  let n = 0;
  let e = STEP_ACCEPT; // the empty string is valid
  for (let i = start; i < end; i++) {
    const octet = src[i];
    e = step[((e & STEP_STATE) << 4) | (octet >> 4)];
    out[n] = e >>> STEP_SYMBOL_SHIFT;
    n += (e >>> STEP_EMIT_SHIFT) & 1;
    e = step[((e & STEP_STATE) << 4) | (octet & 15)];
    out[n] = e >>> STEP_SYMBOL_SHIFT;
    n += (e >>> STEP_EMIT_SHIFT) & 1;
  }
  if ((e & STEP_ACCEPT) === 0) {
    throw new HpackError(
      (e & STEP_STATE) === FAILED ? 'EOS symbol in a Huffman-coded string' : 'invalid padding in a Huffman-coded string',
    );
  }
  return out.toString('latin1', 0, n);
}

// ---------------------------------------------------------------------------
// Decoder

/** Largest integer accepted in a header block (lengths, indexes, sizes). */
const MAX_INT = 0x7fffffff;
/** Continuation octets needed for MAX_INT after a full prefix (35 bits). */
const MAX_INT_OCTETS = 5;
/** RFC 7541 section 4.1: every dynamic table entry costs 32 octets on top of
 *  its name and value. */
const ENTRY_OVERHEAD = 32;

export class HpackDecoder {
  /** SETTINGS_HEADER_TABLE_SIZE: the ceiling for size updates. */
  private readonly maxTableSize: number;
  /** The table's current maximum size (the last size update, if any). */
  private capacity: number;
  /** Sum of the entries' sizes. */
  private size = 0;

  // The dynamic table: a ring, newest entry at slot (head - 1), oldest at
  // slot (head - count); HPACK index 62 + k is slot (head - 1 - k).
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  private mask = 15;
  private head = 0;
  private count = 0;

  /** Read position in the block being decoded. */
  private pos = 0;

  /** maxTableSize: the SETTINGS_HEADER_TABLE_SIZE we advertise (default
   *  4096). The table starts out that large: we advertise it before the peer
   *  sends any header block. */
  constructor(maxTableSize = 4096) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INT) {
      throw new RangeError(`invalid HPACK table size ${maxTableSize}`);
    }
    this.maxTableSize = maxTableSize;
    this.capacity = maxTableSize;
  }

  /** Current size of the dynamic table in octets (RFC 7541 section 4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION fragments
   *  already joined), calling onHeader(name, value) for each field in order.
   *  Throws HpackError on malformed input. onHeader should not throw: a throw
   *  abandons the rest of the block, and with it the table updates the peer
   *  expects, so the connection is unusable afterwards either way. */
  decode(block: Buffer, onHeader: (name: string, value: string) => void): void {
    const end = block.length;
    this.pos = 0;
    let sizeUpdateAllowed = true;
    while (this.pos < end) {
      const first = block[this.pos];
      if (first >= 0x80) {
        // 6.1 Indexed Header Field: 1xxxxxxx
        const index = this.readInt(block, 0x7f);
        if (index === 0) throw new HpackError('indexed header field with index 0');
        if (index <= STATIC_COUNT) {
          onHeader(STATIC_NAMES[index], STATIC_VALUES[index]);
        } else {
          const slot = this.slotOf(index);
          onHeader(this.names[slot], this.values[slot]);
        }
      } else if (first >= 0x40) {
        // 6.2.1 Literal Header Field with Incremental Indexing: 01xxxxxx
        const index = this.readInt(block, 0x3f);
        const name = index === 0 ? this.readString(block) : this.nameAt(index);
        const value = this.readString(block);
        this.insert(name, value);
        onHeader(name, value);
      } else if (first >= 0x20) {
        // 6.3 Dynamic Table Size Update: 001xxxxx, only before the first field
        if (!sizeUpdateAllowed) throw new HpackError('dynamic table size update after a header field');
        const newSize = this.readInt(block, 0x1f);
        if (newSize > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${newSize} exceeds the limit of ${this.maxTableSize}`);
        }
        this.capacity = newSize;
        this.evictTo(newSize);
        continue;
      } else {
        // 6.2.2 Literal Header Field without Indexing: 0000xxxx
        // 6.2.3 Literal Header Field Never Indexed:    0001xxxx
        const index = this.readInt(block, 0x0f);
        const name = index === 0 ? this.readString(block) : this.nameAt(index);
        const value = this.readString(block);
        onHeader(name, value);
      }
      sizeUpdateAllowed = false;
    }
  }

  /** Reads an integer whose prefix is the low bits of the current octet
   *  (RFC 7541 section 5.1); `mask` is 2^N - 1. */
  private readInt(block: Buffer, mask: number): number {
    let p = this.pos;
    if (p >= block.length) throw new HpackError('header block truncated');
    let value = block[p++] & mask;
    if (value === mask) {
      let scale = 1;
      let octet: number;
      let octets = 0;
      do {
        if (p >= block.length) throw new HpackError('header block truncated inside an integer');
        if (++octets > MAX_INT_OCTETS) throw new HpackError('integer too long');
        octet = block[p++];
        value += (octet & 0x7f) * scale;
        scale *= 128;
      } while (octet & 0x80);
      if (value > MAX_INT) throw new HpackError('integer overflow');
    }
    this.pos = p;
    return value;
  }

  /** Reads a string literal (RFC 7541 section 5.2). */
  private readString(block: Buffer): string {
    if (this.pos >= block.length) throw new HpackError('header block truncated');
    const huffman = block[this.pos] >= 0x80;
    const length = this.readInt(block, 0x7f);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) throw new HpackError('string literal runs past the end of the header block');
    this.pos = end;
    if (length === 0) return '';
    return huffman ? huffmanDecode(block, start, end) : block.toString('latin1', start, end);
  }

  private nameAt(index: number): string {
    return index <= STATIC_COUNT ? STATIC_NAMES[index] : this.names[this.slotOf(index)];
  }

  /** Ring slot of dynamic table entry `index` (> 61). */
  private slotOf(index: number): number {
    const k = index - STATIC_COUNT;
    if (k > this.count) {
      throw new HpackError(`header index ${index} beyond the ${STATIC_COUNT + this.count} table entries`);
    }
    return (this.head - k) & this.mask;
  }

  /** Adds an entry (RFC 7541 section 4.4): evicts from the old end until it
   *  fits; an entry larger than the whole table just empties it. */
  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.capacity) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.capacity - entrySize);
    if (this.count > this.mask) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) & this.mask;
    this.count++;
    this.size += entrySize;
  }

  /** Evicts the oldest entries until the table holds at most `limit` octets. */
  private evictTo(limit: number): void {
    while (this.size > limit) {
      const slot = (this.head - this.count) & this.mask;
      this.size -= this.names[slot].length + this.values[slot].length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }

  /** Doubles the ring, moving the entries to slots 0..count-1, oldest first. */
  private grow(): void {
    const length = 2 * (this.mask + 1);
    const names = new Array<string>(length).fill('');
    const values = new Array<string>(length).fill('');
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head - this.count + i) & this.mask;
      names[i] = this.names[slot];
      values[i] = this.values[slot];
    }
    this.names = names;
    this.values = values;
    this.mask = length - 1;
    this.head = this.count;
  }
}

// ---------------------------------------------------------------------------
// Encoder

/** Octets of an integer with an N-bit prefix (`mask` = 2^N - 1). */
function intSize(value: number, mask: number): number {
  if (value < mask) return 1;
  let rest = value - mask;
  let n = 2;
  while (rest >= 128) {
    rest = Math.floor(rest / 128);
    n++;
  }
  return n;
}

/** Writes an integer with an N-bit prefix after the `flags` bits; returns the
 *  position after it. */
function writeInt(out: Buffer, p: number, value: number, mask: number, flags: number): number {
  if (value < mask) {
    out[p++] = flags | value;
    return p;
  }
  out[p++] = flags | mask;
  let rest = value - mask;
  while (rest >= 128) {
    out[p++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[p++] = rest;
  return p;
}

/** Writes a string literal without Huffman coding. Short strings are copied
 *  by hand: cheaper than a call into Buffer#write. */
function writeString(out: Buffer, p: number, s: string): number {
  const length = s.length;
  p = writeInt(out, p, length, 0x7f, 0);
  if (length > 64) return p + out.write(s, p, length, 'latin1');
  for (let i = 0; i < length; i++) out[p++] = s.charCodeAt(i);
  return p;
}

/** Encodes a header list statelessly: each field as "literal header field
 *  without indexing" (RFC 7541 section 6.2.2), with the static table's name
 *  index when the name is in the static table, or fully indexed (6.1) when the
 *  exact pair is. No Huffman coding. Names must already be lowercase; names
 *  and values are written as latin1 (one octet per character), so they must
 *  not contain characters above U+00FF. */
export function encodeHeaders(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  let total = 0;
  for (let i = 0; i < fields.length; i++) {
    const [name, value] = fields[i];
    const known = STATIC_BY_NAME.get(name);
    if (known !== undefined) {
      const pair = known.values.get(value);
      if (pair !== undefined) {
        total += intSize(pair, 0x7f);
        continue;
      }
      total += intSize(known.index, 0x0f);
    } else {
      total += 1 + intSize(name.length, 0x7f) + name.length;
    }
    total += intSize(value.length, 0x7f) + value.length;
  }

  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (let i = 0; i < fields.length; i++) {
    const [name, value] = fields[i];
    const known = STATIC_BY_NAME.get(name);
    if (known !== undefined) {
      const pair = known.values.get(value);
      if (pair !== undefined) {
        p = writeInt(out, p, pair, 0x7f, 0x80);
        continue;
      }
      p = writeInt(out, p, known.index, 0x0f, 0x00);
    } else {
      out[p++] = 0x00;
      p = writeString(out, p, name);
    }
    p = writeString(out, p, value);
  }
  return out;
}

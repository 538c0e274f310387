import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HpackDecoder, HpackError, encodeHeaders } from '../../src/protocol/http2/hpack';
import { Rng } from '../support/fuzz';

type Field = [string, string];

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function decodeAll(decoder: HpackDecoder, block: Buffer): Field[] {
  const fields: Field[] = [];
  decoder.decode(block, (name, value) => fields.push([name, value]));
  return fields;
}

/** An HPACK integer with an N-bit prefix after `flags` (RFC 7541 section 5.1). */
function int(value: number, prefixBits: number, flags: number): number[] {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return [flags | value];
  const out = [flags | mask];
  let rest = value - mask;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function indexed(index: number): number[] {
  return int(index, 7, 0x80);
}

function rejects(decoder: HpackDecoder, block: Buffer | number[], message?: RegExp): void {
  const buf = Buffer.isBuffer(block) ? block : Buffer.from(block);
  assert.throws(
    () => decoder.decode(buf, () => undefined),
    (err: unknown) => {
      assert.ok(err instanceof HpackError, `expected HpackError, got ${String(err)}`);
      assert.equal(err.name, 'HpackError');
      if (message) assert.match(err.message, message);
      return true;
    },
    buf.toString('hex'),
  );
}

/** The dynamic table, newest first, read back through indexed fields (which
 *  leave it unchanged); also checks that the next index is out of range. */
function dynamicTable(decoder: HpackDecoder, expected: Field[]): void {
  const block: number[] = [];
  for (let i = 0; i < expected.length; i++) block.push(...indexed(62 + i));
  assert.deepEqual(decodeAll(decoder, Buffer.from(block)), expected);
  rejects(decoder, indexed(62 + expected.length), /beyond/);
  const size = expected.reduce((sum, [n, v]) => sum + n.length + v.length + 32, 0);
  assert.equal(decoder.tableSize, size);
}

// ---------------------------------------------------------------------------
// A test-only Huffman encoder, from RFC 7541 Appendix B written out in full
// (code, length in bits) rather than the lengths-only form the decoder uses.

const HUFFMAN_CODES: ReadonlyArray<readonly [number, number]> = [
  [0x1ff8, 13], [0x7fffd8, 23], [0xfffffe2, 28], [0xfffffe3, 28],
  [0xfffffe4, 28], [0xfffffe5, 28], [0xfffffe6, 28], [0xfffffe7, 28],
  [0xfffffe8, 28], [0xffffea, 24], [0x3ffffffc, 30], [0xfffffe9, 28],
  [0xfffffea, 28], [0x3ffffffd, 30], [0xfffffeb, 28], [0xfffffec, 28],
  [0xfffffed, 28], [0xfffffee, 28], [0xfffffef, 28], [0xffffff0, 28],
  [0xffffff1, 28], [0xffffff2, 28], [0x3ffffffe, 30], [0xffffff3, 28],
  [0xffffff4, 28], [0xffffff5, 28], [0xffffff6, 28], [0xffffff7, 28],
  [0xffffff8, 28], [0xffffff9, 28], [0xffffffa, 28], [0xffffffb, 28],
  [0x14, 6], [0x3f8, 10], [0x3f9, 10], [0xffa, 12],
  [0x1ff9, 13], [0x15, 6], [0xf8, 8], [0x7fa, 11],
  [0x3fa, 10], [0x3fb, 10], [0xf9, 8], [0x7fb, 11],
  [0xfa, 8], [0x16, 6], [0x17, 6], [0x18, 6],
  [0x0, 5], [0x1, 5], [0x2, 5], [0x19, 6],
  [0x1a, 6], [0x1b, 6], [0x1c, 6], [0x1d, 6],
  [0x1e, 6], [0x1f, 6], [0x5c, 7], [0xfb, 8],
  [0x7ffc, 15], [0x20, 6], [0xffb, 12], [0x3fc, 10],
  [0x1ffa, 13], [0x21, 6], [0x5d, 7], [0x5e, 7],
  [0x5f, 7], [0x60, 7], [0x61, 7], [0x62, 7],
  [0x63, 7], [0x64, 7], [0x65, 7], [0x66, 7],
  [0x67, 7], [0x68, 7], [0x69, 7], [0x6a, 7],
  [0x6b, 7], [0x6c, 7], [0x6d, 7], [0x6e, 7],
  [0x6f, 7], [0x70, 7], [0x71, 7], [0x72, 7],
  [0xfc, 8], [0x73, 7], [0xfd, 8], [0x1ffb, 13],
  [0x7fff0, 19], [0x1ffc, 13], [0x3ffc, 14], [0x22, 6],
  [0x7ffd, 15], [0x3, 5], [0x23, 6], [0x4, 5],
  [0x24, 6], [0x5, 5], [0x25, 6], [0x26, 6],
  [0x27, 6], [0x6, 5], [0x74, 7], [0x75, 7],
  [0x28, 6], [0x29, 6], [0x2a, 6], [0x7, 5],
  [0x2b, 6], [0x76, 7], [0x2c, 6], [0x8, 5],
  [0x9, 5], [0x2d, 6], [0x77, 7], [0x78, 7],
  [0x79, 7], [0x7a, 7], [0x7b, 7], [0x7ffe, 15],
  [0x7fc, 11], [0x3ffd, 14], [0x1ffd, 13], [0xffffffc, 28],
  [0xfffe6, 20], [0x3fffd2, 22], [0xfffe7, 20], [0xfffe8, 20],
  [0x3fffd3, 22], [0x3fffd4, 22], [0x3fffd5, 22], [0x7fffd9, 23],
  [0x3fffd6, 22], [0x7fffda, 23], [0x7fffdb, 23], [0x7fffdc, 23],
  [0x7fffdd, 23], [0x7fffde, 23], [0xffffeb, 24], [0x7fffdf, 23],
  [0xffffec, 24], [0xffffed, 24], [0x3fffd7, 22], [0x7fffe0, 23],
  [0xffffee, 24], [0x7fffe1, 23], [0x7fffe2, 23], [0x7fffe3, 23],
  [0x7fffe4, 23], [0x1fffdc, 21], [0x3fffd8, 22], [0x7fffe5, 23],
  [0x3fffd9, 22], [0x7fffe6, 23], [0x7fffe7, 23], [0xffffef, 24],
  [0x3fffda, 22], [0x1fffdd, 21], [0xfffe9, 20], [0x3fffdb, 22],
  [0x3fffdc, 22], [0x7fffe8, 23], [0x7fffe9, 23], [0x1fffde, 21],
  [0x7fffea, 23], [0x3fffdd, 22], [0x3fffde, 22], [0xfffff0, 24],
  [0x1fffdf, 21], [0x3fffdf, 22], [0x7fffeb, 23], [0x7fffec, 23],
  [0x1fffe0, 21], [0x1fffe1, 21], [0x3fffe0, 22], [0x1fffe2, 21],
  [0x7fffed, 23], [0x3fffe1, 22], [0x7fffee, 23], [0x7fffef, 23],
  [0xfffea, 20], [0x3fffe2, 22], [0x3fffe3, 22], [0x3fffe4, 22],
  [0x7ffff0, 23], [0x3fffe5, 22], [0x3fffe6, 22], [0x7ffff1, 23],
  [0x3ffffe0, 26], [0x3ffffe1, 26], [0xfffeb, 20], [0x7fff1, 19],
  [0x3fffe7, 22], [0x7ffff2, 23], [0x3fffe8, 22], [0x1ffffec, 25],
  [0x3ffffe2, 26], [0x3ffffe3, 26], [0x3ffffe4, 26], [0x7ffffde, 27],
  [0x7ffffdf, 27], [0x3ffffe5, 26], [0xfffff1, 24], [0x1ffffed, 25],
  [0x7fff2, 19], [0x1fffe3, 21], [0x3ffffe6, 26], [0x7ffffe0, 27],
  [0x7ffffe1, 27], [0x3ffffe7, 26], [0x7ffffe2, 27], [0xfffff2, 24],
  [0x1fffe4, 21], [0x1fffe5, 21], [0x3ffffe8, 26], [0x3ffffe9, 26],
  [0xffffffd, 28], [0x7ffffe3, 27], [0x7ffffe4, 27], [0x7ffffe5, 27],
  [0xfffec, 20], [0xfffff3, 24], [0xfffed, 20], [0x1fffe6, 21],
  [0x3fffe9, 22], [0x1fffe7, 21], [0x1fffe8, 21], [0x7ffff3, 23],
  [0x3fffea, 22], [0x3fffeb, 22], [0x1ffffee, 25], [0x1ffffef, 25],
  [0xfffff4, 24], [0xfffff5, 24], [0x3ffffea, 26], [0x7ffff4, 23],
  [0x3ffffeb, 26], [0x7ffffe6, 27], [0x3ffffec, 26], [0x3ffffed, 26],
  [0x7ffffe7, 27], [0x7ffffe8, 27], [0x7ffffe9, 27], [0x7ffffea, 27],
  [0x7ffffeb, 27], [0xffffffe, 28], [0x7ffffec, 27], [0x7ffffed, 27],
  [0x7ffffee, 27], [0x7ffffef, 27], [0x7fffff0, 27], [0x3ffffee, 26],
  [0x3fffffff, 30],
];

function huffman(data: Buffer | string, eos = false): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const bits: number[] = [];
  const symbols = [...bytes];
  if (eos) symbols.push(256);
  for (const s of symbols) {
    const [code, length] = HUFFMAN_CODES[s];
    for (let b = length - 1; b >= 0; b--) bits.push(Math.floor(code / 2 ** b) & 1);
  }
  while (bits.length % 8 !== 0) bits.push(1); // padding: a prefix of EOS
  const out = Buffer.alloc(bits.length / 8);
  for (let i = 0; i < bits.length; i++) out[i >> 3] |= bits[i] << (7 - (i & 7));
  return out;
}

/** A literal field without indexing, new name "x", Huffman-coded value. */
function huffmanValueBlock(coded: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x00, 0x01, 0x78, ...int(coded.length, 7, 0x80)]), coded]);
}

/** The shared mulberry32 generator as a function: the same seed gives the same sequence. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

// ---------------------------------------------------------------------------

describe('HPACK RFC 7541 C.2: header field representations', () => {
  it('C.2.1 literal with indexing', () => {
    const decoder = new HpackDecoder();
    const block = hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572');
    assert.deepEqual(decodeAll(decoder, block), [['custom-key', 'custom-header']]);
    assert.equal(decoder.tableSize, 55);
    dynamicTable(decoder, [['custom-key', 'custom-header']]);
  });

  it('C.2.2 literal without indexing', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, hex('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
    dynamicTable(decoder, []);
  });

  it('C.2.3 literal never indexed', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
    dynamicTable(decoder, []);
  });

  it('C.2.4 indexed field', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, hex('82')), [[':method', 'GET']]);
    dynamicTable(decoder, []);
  });
});

const request1: Field[] = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const request2: Field[] = [...request1, ['cache-control', 'no-cache']];
const request3: Field[] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];
const requestTables: Field[][] = [
  [[':authority', 'www.example.com']],
  [
    ['cache-control', 'no-cache'],
    [':authority', 'www.example.com'],
  ],
  [
    ['custom-key', 'custom-value'],
    ['cache-control', 'no-cache'],
    [':authority', 'www.example.com'],
  ],
];

function requestSequence(blocks: string[]): void {
  const decoder = new HpackDecoder();
  const expected = [request1, request2, request3];
  const sizes = [57, 110, 164];
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(decodeAll(decoder, hex(blocks[i])), expected[i], `request ${i + 1}`);
    assert.equal(decoder.tableSize, sizes[i], `table size after request ${i + 1}`);
    dynamicTable(decoder, requestTables[i]);
  }
}

describe('HPACK RFC 7541 C.3/C.4: requests', () => {
  it('C.3 without Huffman coding', () => {
    requestSequence([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]);
  });

  it('C.4 with Huffman coding', () => {
    requestSequence([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]);
  });

  it('the test encoder reproduces the RFC Huffman strings', () => {
    assert.equal(huffman('www.example.com').toString('hex'), 'f1e3c2e5f23a6ba0ab90f4ff');
    assert.equal(huffman('no-cache').toString('hex'), 'a8eb10649cbf');
    assert.equal(huffman('custom-key').toString('hex'), '25a849e95ba97d7f');
    assert.equal(huffman('custom-value').toString('hex'), '25a849e95bb8e8b4bf');
  });
});

const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const location = 'https://www.example.com';
const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const responses: Field[][] = [
  [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', date1],
    ['location', location],
  ],
  [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', date1],
    ['location', location],
  ],
  [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', date2],
    ['location', location],
    ['content-encoding', 'gzip'],
    ['set-cookie', cookie],
  ],
];
const responseTables: Field[][] = [
  [
    ['location', location],
    ['date', date1],
    ['cache-control', 'private'],
    [':status', '302'],
  ],
  [
    [':status', '307'],
    ['location', location],
    ['date', date1],
    ['cache-control', 'private'],
  ],
  [
    ['set-cookie', cookie],
    ['content-encoding', 'gzip'],
    ['date', date2],
  ],
];

function responseSequence(blocks: string[]): void {
  const decoder = new HpackDecoder(256);
  const sizes = [222, 222, 215];
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(decodeAll(decoder, hex(blocks[i])), responses[i], `response ${i + 1}`);
    assert.equal(decoder.tableSize, sizes[i], `table size after response ${i + 1}`);
    dynamicTable(decoder, responseTables[i]);
  }
}

describe('HPACK RFC 7541 C.5/C.6: responses with a 256-octet table (eviction)', () => {
  it('C.5 without Huffman coding', () => {
    responseSequence([
      '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a ' +
        '3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '4803 3330 37c1 c0bf',
      '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d ' +
        '54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 ' +
        '5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
    ]);
  });

  it('C.6 with Huffman coding', () => {
    responseSequence([
      '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 ' +
        '2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
      '4883 640e ffc1 c0bf',
      '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab ' +
        '77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f ' +
        '9587 3160 65c0 03ed 4ee5 b106 3d50 07',
    ]);
  });
});

describe('HPACK dynamic table', () => {
  it('applies size updates at the start of a block, shrinking and evicting', () => {
    const decoder = new HpackDecoder();
    decodeAll(decoder, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'));
    decodeAll(decoder, hex('8286 84be 5808 6e6f 2d63 6163 6865'));
    assert.equal(decoder.tableSize, 110);
    // Shrink to 60 octets: only the newest entry (cache-control, 53) survives.
    assert.deepEqual(decodeAll(decoder, Buffer.from([...int(60, 5, 0x20), 0x82])), [[':method', 'GET']]);
    dynamicTable(decoder, [['cache-control', 'no-cache']]);
    // Several updates in a row are allowed; 0 empties the table, 4096 reopens it.
    assert.deepEqual(decodeAll(decoder, Buffer.from([0x20, ...int(4096, 5, 0x20)])), []);
    dynamicTable(decoder, []);
    decodeAll(decoder, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    dynamicTable(decoder, [['custom-key', 'custom-header']]);
  });

  it('keeps entries within a size update that shrank the table', () => {
    const decoder = new HpackDecoder();
    // Shrink to 100, then add entries: each addition evicts to stay within 100.
    const block = [...int(100, 5, 0x20)];
    for (const v of ['a', 'bb', 'ccc']) block.push(0x40, 0x01, 0x6b, v.length, ...Buffer.from(v));
    assert.deepEqual(decodeAll(decoder, Buffer.from(block)), [
      ['k', 'a'],
      ['k', 'bb'],
      ['k', 'ccc'],
    ]);
    dynamicTable(decoder, [
      ['k', 'ccc'],
      ['k', 'bb'],
    ]);
  });

  it('an entry larger than the table empties it', () => {
    const decoder = new HpackDecoder(64);
    decodeAll(decoder, Buffer.from([0x40, 0x01, 0x6b, 0x01, 0x76]));
    dynamicTable(decoder, [['k', 'v']]);
    const big = 'x'.repeat(40);
    assert.deepEqual(decodeAll(decoder, Buffer.from([0x40, 0x01, 0x6b, big.length, ...Buffer.from(big)])), [['k', big]]);
    dynamicTable(decoder, []);
  });

  it('a table of size 0 indexes nothing', () => {
    const decoder = new HpackDecoder(0);
    decodeAll(decoder, Buffer.from([0x40, 0x01, 0x6b, 0x01, 0x76]));
    dynamicTable(decoder, []);
    rejects(decoder, [0x20 | 1], /exceeds/);
  });

  it('indexes hundreds of entries correctly as the ring grows and wraps', () => {
    const decoder = new HpackDecoder(65536);
    const added: Field[] = [];
    for (let round = 0; round < 5; round++) {
      const block: number[] = [];
      for (let i = 0; i < 150; i++) {
        const value = `v${round}-${i}`;
        added.unshift(['k', value]);
        block.push(0x40, 0x01, 0x6b, value.length, ...Buffer.from(value));
      }
      decodeAll(decoder, Buffer.from(block));
    }
    // 750 entries of 1 + 4..6 + 32 octets would be ~29 KB: all fit.
    dynamicTable(decoder, added);
    // Now shrink so only the newest 100 (all 'v4-…' of 38..39 octets) fit.
    const limit = added.slice(0, 100).reduce((s, [n, v]) => s + n.length + v.length + 32, 0);
    decodeAll(decoder, Buffer.from(int(limit, 5, 0x20)));
    dynamicTable(decoder, added.slice(0, 100));
    // And refill past the old ring length with a name from the dynamic table.
    const block: number[] = [];
    for (let i = 0; i < 300; i++) block.push(0x40 | 62, 0x01, 0x30 + (i % 10));
    decodeAll(decoder, Buffer.from(block));
    assert.ok(decoder.tableSize <= limit);
    const kept = decodeAll(decoder, Buffer.from(indexed(62)));
    assert.deepEqual(kept, [['k', '9']]);
  });

  it('decodes a gRPC exchange the way Go sends it', () => {
    const decoder = new HpackDecoder();
    // First response: :status 200 (static), content-type with incremental indexing.
    const ct = huffman('application/grpc');
    const headers = Buffer.concat([Buffer.from([0x88, 0x40 | 31, ...int(ct.length, 7, 0x80)]), ct]);
    assert.deepEqual(decodeAll(decoder, headers), [
      [':status', '200'],
      ['content-type', 'application/grpc'],
    ]);
    const name1 = huffman('grpc-status');
    const name2 = huffman('grpc-message');
    const trailers = Buffer.concat([
      Buffer.from([0x40, 0x80 | name1.length]),
      name1,
      Buffer.from([0x01, 0x30, 0x40, 0x80 | name2.length]),
      name2,
      Buffer.from([0x80]),
    ]);
    assert.deepEqual(decodeAll(decoder, trailers), [
      ['grpc-status', '0'],
      ['grpc-message', ''],
    ]);
    // Later responses: everything indexed.
    assert.deepEqual(decodeAll(decoder, Buffer.from([0x88, 0xc0])), [
      [':status', '200'],
      ['content-type', 'application/grpc'],
    ]);
    assert.deepEqual(decodeAll(decoder, Buffer.from([0xbf, 0xbe])), [
      ['grpc-status', '0'],
      ['grpc-message', ''],
    ]);
  });
});

describe('HPACK Huffman decoding', () => {
  it('decodes every octet at every bit alignment', () => {
    const decoder = new HpackDecoder();
    for (let b = 0; b < 256; b++) {
      // '0' has a 5-bit code, so 0..7 of them put the symbol at all 8 alignments.
      for (let k = 0; k < 8; k++) {
        const text = '0'.repeat(k) + String.fromCharCode(b) + String.fromCharCode(b);
        const got = decodeAll(decoder, huffmanValueBlock(huffman(text)));
        assert.deepEqual(got, [['x', text]], `octet ${b} after ${k} symbols`);
      }
    }
  });

  it('decodes all 256 octets in one string, and random strings', () => {
    const decoder = new HpackDecoder();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.deepEqual(decodeAll(decoder, huffmanValueBlock(huffman(all))), [['x', all.toString('latin1')]]);
    const random = rng(7);
    for (let i = 0; i < 500; i++) {
      const data = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
      assert.deepEqual(decodeAll(decoder, huffmanValueBlock(huffman(data))), [['x', data.toString('latin1')]]);
    }
  });

  it('decodes Huffman-coded names', () => {
    const decoder = new HpackDecoder();
    const name = huffman('x-custom-name');
    const block = Buffer.concat([Buffer.from([0x10, 0x80 | name.length]), name, Buffer.from([0x80])]);
    assert.deepEqual(decodeAll(decoder, block), [['x-custom-name', '']]);
  });

  it('accepts exactly the canonical padding: random strings decode only if they re-encode to themselves', () => {
    const decoder = new HpackDecoder();
    const random = rng(11);
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const coded = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * 256)));
      let value: string;
      try {
        value = decodeAll(decoder, huffmanValueBlock(coded))[0][1];
      } catch (err) {
        assert.ok(err instanceof HpackError, String(err));
        continue;
      }
      accepted++;
      assert.equal(huffman(value).toString('hex'), coded.toString('hex'));
    }
    assert.ok(accepted > 100, `only ${accepted} accepted`);
  });
});

describe('HPACK malformed input throws HpackError', () => {
  const cases: Array<[string, number[], RegExp]> = [
    ['index 0', [0x80], /index 0/],
    ['index past the static table on an empty dynamic table', [0xbe], /beyond/],
    ['literal name index past the tables', [0x40 | 62, 0x00], /beyond/],
    ['literal name index past the tables (without indexing)', [0x0f, 0x2f, 0x00], /beyond/],
    ['huge index', [0xff, 0xff, 0xff, 0xff, 0x7f], /beyond/],
    ['integer overflow', [0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], /overflow/],
    ['integer of too many octets (zeros)', [0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /too long/],
    ['integer cut short', [0xff], /truncated/],
    ['integer cut short after a continuation', [0xff, 0x80], /truncated/],
    ['string length overflow', [0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f], /overflow/],
    ['string length of 2^31 - 1 past the end', [0x40, 0x7f, 0x80, 0xff, 0xff, 0xff, 0x07], /past the end/],
    ['string past the end', [0x40, 0x05, 0x61], /past the end/],
    ['string one octet short', [0x40, 0x01, 0x61, 0x02, 0x62], /past the end/],
    ['Huffman string one octet short', [0x00, 0x01, 0x78, 0x82, 0x1f], /past the end/],
    ['value missing', [0x40, 0x01, 0x61], /truncated/],
    ['value length missing after a name index', [0x04], /truncated/],
    ['name missing', [0x00], /truncated/],
    ['Huffman padding of 8 ones', [0x00, 0x01, 0x78, 0x81, 0xff], /padding/],
    ['Huffman padding over 7 bits after a symbol', [0x00, 0x01, 0x78, 0x82, 0x1f, 0xff], /padding/],
    ['Huffman padding of zeros', [0x00, 0x01, 0x78, 0x81, 0x00], /padding/],
    ['Huffman padding not all ones', [0x00, 0x01, 0x78, 0x81, 0x1d], /padding/],
    ['Huffman EOS', [0x00, 0x01, 0x78, 0x84, 0xff, 0xff, 0xff, 0xff], /EOS/],
    ['Huffman-coded name with EOS', [0x00, 0x84, 0xff, 0xff, 0xff, 0xfc, 0x00], /EOS/],
    ['size update above the limit', [0x3f, 0xe2, 0x1f], /exceeds/],
    ['size update after a field', [0x82, 0x20], /after a header field/],
    ['size update after a literal', [0x00, 0x01, 0x61, 0x00, 0x3f, 0xe1, 0x1f], /after a header field/],
  ];
  for (const [title, block, message] of cases) {
    it(title, () => rejects(new HpackDecoder(), block, message));
  }

  it('EOS followed by more symbols', () => {
    rejects(new HpackDecoder(), huffmanValueBlock(huffman('ab', true)), /EOS/);
    rejects(new HpackDecoder(), huffmanValueBlock(Buffer.concat([huffman('a', true), huffman('bcd')])), /EOS/);
  });

  it('integers up to 2^31 - 1 and in at most 5 continuation octets are accepted', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, Buffer.from([...int(4096, 5, 0x20), 0x82])), [[':method', 'GET']]);
    // 2^31 - 1 as an index is well-formed, merely out of range; 2^31 is not.
    rejects(decoder, int(2 ** 31 - 1, 7, 0x80), /beyond/);
    rejects(decoder, int(2 ** 31, 7, 0x80), /overflow/);
    // Redundant zero continuation octets are fine within the 5-octet limit.
    assert.deepEqual(decodeAll(decoder, Buffer.from([0x3f, 0x80, 0x80, 0x80, 0x80, 0x00, 0x82])), [[':method', 'GET']]);
    rejects(decoder, [0x3f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /too long/);
  });
});

describe('HPACK fuzz: random input only succeeds or throws HpackError', () => {
  const seeds = [
    '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
    '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
    '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970',
    '3fe1 1f40 0a63 7573 746f 6d2d 6b65 790d 6375 7374 6f6d 2d68 6561 6465 72be',
  ].map(hex);

  it('20,000 random and mutated blocks', () => {
    const random = rng(20240501);
    const byte = () => Math.floor(random() * 256);
    let shared = new HpackDecoder(256);
    let ok = 0;
    for (let i = 0; i < 20000; i++) {
      let block: Buffer;
      const kind = random();
      if (kind < 0.5) {
        block = Buffer.from(Array.from({ length: Math.floor(random() * 48) }, byte));
      } else {
        // Mutate a valid block: flip octets, truncate, or splice in random ones.
        const base = Buffer.from(seeds[Math.floor(random() * seeds.length)]);
        const flips = 1 + Math.floor(random() * 3);
        for (let f = 0; f < flips; f++) base[Math.floor(random() * base.length)] = byte();
        const cut = random() < 0.3 ? Math.floor(random() * base.length) : base.length;
        block = Buffer.concat([base.subarray(0, cut), Buffer.from(Array.from({ length: Math.floor(random() * 4) }, byte))]);
      }
      // Half the time on a long-lived decoder (whatever its table holds), half on a fresh one.
      const decoder = random() < 0.5 ? shared : new HpackDecoder(random() < 0.5 ? 4096 : 64);
      try {
        decoder.decode(block, (name, value) => {
          assert.equal(typeof name, 'string');
          assert.equal(typeof value, 'string');
        });
        ok++;
      } catch (err) {
        assert.ok(err instanceof HpackError, `case ${i} (${block.toString('hex')}): ${String(err)}`);
        if (decoder === shared && random() < 0.1) shared = new HpackDecoder(256);
      }
      assert.ok(decoder.tableSize >= 0 && decoder.tableSize <= 4096, `case ${i}: table size ${decoder.tableSize}`);
    }
    assert.ok(ok > 1000, `only ${ok} blocks decoded`);
  });
});

describe('encodeHeaders', () => {
  const grpcRequest: Field[] = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', '/etcdserverpb.KV/Range'],
    [':authority', '127.0.0.1:2379'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['grpc-timeout', '5000m'],
    ['authorization', 'xyz'],
  ];

  it('round-trips a gRPC request through the decoder', () => {
    const block = encodeHeaders(grpcRequest);
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, block), grpcRequest);
    assert.equal(decoder.tableSize, 0, 'nothing is indexed');
  });

  it('uses full static indexes, static name indexes, and plain literals', () => {
    const block = encodeHeaders(grpcRequest);
    const expected = Buffer.concat([
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http
      Buffer.from([0x04, 22]), Buffer.from('/etcdserverpb.KV/Range'), // :path (4)
      Buffer.from([0x01, 14]), Buffer.from('127.0.0.1:2379'), // :authority (1)
      Buffer.from([0x0f, 0x10, 16]), Buffer.from('application/grpc'), // content-type (31 = 15 + 16)
      Buffer.from([0x00, 2]), Buffer.from('te'), Buffer.from([8]), Buffer.from('trailers'),
      Buffer.from([0x00, 12]), Buffer.from('grpc-timeout'), Buffer.from([5]), Buffer.from('5000m'),
      Buffer.from([0x0f, 0x08, 3]), Buffer.from('xyz'), // authorization (23 = 15 + 8)
    ]);
    assert.equal(block.toString('hex'), expected.toString('hex'));
    assert.equal(encodeHeaders([[':scheme', 'https']]).toString('hex'), '87');
    assert.equal(encodeHeaders([[':status', '200']]).toString('hex'), '88');
    assert.equal(encodeHeaders([['www-authenticate', '']]).toString('hex'), 'bd');
    assert.equal(encodeHeaders([]).length, 0);
  });

  it('encodes long names and values with multi-octet lengths', () => {
    const fields: Field[] = [
      ['x-' + 'n'.repeat(300), 'v'.repeat(127)],
      [':path', '/'.repeat(5000)],
      ['grpc-message', ''],
      ['x-latin1', 'caf\u00e9 \u00ff'],
    ];
    assert.deepEqual(decodeAll(new HpackDecoder(), encodeHeaders(fields)), fields);
  });
});

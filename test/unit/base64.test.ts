import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { base64Error, decodeBase64 } from '../../src/protocol/json/base64';

const accepted: Array<[string, string]> = [
  // [input, expected bytes as hex]
  ['', ''],
  ['Zm9v', '666f6f'],
  ['Zm9vYmFy', '666f6f626172'],
  ['Zm8=', '666f'],
  ['Zg==', '66'],
  ['Zh==', '66'],
  ['Zm9=', '666f'],
  ['Zm9v\n', '666f6f'],
  ['Zm9v\r\nYmFy', '666f6f626172'],
  ['/wD+', 'ff00fe'],
];

const rejected: Array<[string, number]> = [
  ['!!notbase64', 0],
  ['Zm9', 0],
  ['Zm8', 0],
  ['Zm9v=', 4],
  ['Zm9v-_', 4],
  ['Zm!v', 2],
  ['Zm 9v', 2],
  ['Zm9vY', 4],
  ['Zm9vYg', 4],
  ['Zm9vYmE', 4],
  ['Zm9vY===', 5],
  ['Z===', 1],
  ['Zm==Zm9v', 4],
  ['Zm9v Zm9v', 4],
  ['====', 0],
  ['Zg=', 3],
  ['Zg', 0],
];

describe('base64Error: etcd 3.4 reference cases', () => {
  for (const [input, hex] of accepted) {
    it(`accepts ${JSON.stringify(input)}`, () => {
      assert.equal(base64Error(input), undefined);
      assert.equal(decodeBase64(input).toString('hex'), hex);
    });
  }
  for (const [input, offset] of rejected) {
    it(`rejects ${JSON.stringify(input)} at byte ${offset}`, () => {
      assert.equal(base64Error(input), `illegal base64 data at input byte ${offset}`);
    });
  }
});

describe('base64Error: derived rules', () => {
  const cases: Array<[string, number | undefined]> = [
    // Line breaks are skipped anywhere, including around and between padding.
    ['\r\nZm9v\r\n', undefined],
    ['Z\nm\r9\nv', undefined],
    ['Zg=\n=', undefined],
    ['Zg=\r\n=\r\n', undefined],
    ['Zm9=\n\n', undefined],
    ['\n', undefined],
    ['\r\n\r\n', undefined],
    // Line breaks still count towards the reported offset.
    ['\n\n!', 2],
    ['Zm9v\r\n Zm9v', 6],
    ['Zm9v\nY', 5],
    ['Zm9v\r\nYmE', 6],
    // Go counts an unfinished group back from the end by data characters only.
    ['Zm\n9', 1],
    // Padding in the first two positions of a group blames the '=' itself.
    ['=', 0],
    ['Zm9v\n=', 5],
    ['Zm9vY=', 5],
    // Single '=' after two data characters: end of input, or what follows.
    ['Zg=', 3],
    ['Zg=\n', 4],
    ['Zg=A', 2],
    ['Zg=\nA', 3],
    // Anything after the padded group is trailing garbage at its own offset.
    ['Zm8=Zm9v', 4],
    ['Zm8=\n\nx', 6],
    ['Zg===', 4],
    ['Zm8==', 4],
    // URL-safe alphabet, whitespace other than \r\n and non-ASCII are illegal.
    ['Zm9v_', 4],
    ['Zm9\tv', 3],
    ['Zm9vé', 4],
    ['Zm9v\u{1F600}', 4],
    ['\u0000', 0],
  ];
  for (const [input, offset] of cases) {
    const expected = offset === undefined ? undefined : `illegal base64 data at input byte ${offset}`;
    it(`${JSON.stringify(input)} -> ${offset ?? 'ok'}`, () => {
      assert.equal(base64Error(input), expected);
    });
  }
});

describe('decodeBase64', () => {
  // Deterministic pseudo-random bytes so failures are reproducible.
  function bytes(seed: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  }

  it('round-trips every length and alphabet character', () => {
    for (let length = 0; length < 200; length++) {
      const data = bytes(length + 1, length);
      const encoded = data.toString('base64');
      assert.equal(base64Error(encoded), undefined, encoded);
      assert.deepEqual(decodeBase64(encoded), data);
    }
  });

  it('gives the same bytes when line breaks are inserted anywhere', () => {
    for (let length = 1; length < 60; length++) {
      const data = bytes(length * 7919, length);
      const encoded = data.toString('base64');
      for (let at = 0; at <= encoded.length; at++) {
        for (const br of ['\n', '\r\n', '\r', '\n\n']) {
          const broken = encoded.slice(0, at) + br + encoded.slice(at);
          assert.equal(base64Error(broken), undefined, JSON.stringify(broken));
          assert.deepEqual(decodeBase64(broken), data, JSON.stringify(broken));
        }
      }
    }
  });

  it('matches the bits Go keeps when the final group has non-zero leftover bits', () => {
    // Only the complete bytes are kept; the leftover low bits are discarded.
    for (const [input, hex] of [
      ['Zh==', '66'],
      ['Zv==', '66'],
      ['Zm9=', '666f'],
      ['Zm/=', '666f'],
      ['AB==', '00'],
      ['AAB=', '0000'],
    ]) {
      assert.equal(base64Error(input), undefined);
      assert.equal(decodeBase64(input).toString('hex'), hex, input);
    }
  });
});

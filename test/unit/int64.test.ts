// The fast decimal printing of int64 values (src/core/contract/int64.ts) against BigInt as the oracle: every
// edge of the ±2^53 fast path, signed and unsigned, 64-bit IDs through the remembered slots, other
// radixes, and the Long class proto-loader decodes into really carrying it.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fastLongToString, installFastLongStrings } from '../../src/core/contract/int64';
import { Rng } from '../support/fuzz';

interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
}

const long = (value: bigint, unsigned: boolean): LongLike => {
  const bits = BigInt.asUintN(64, value);
  return { low: Number(bits & 0xffffffffn) | 0, high: Number(bits >> 32n) | 0, unsigned };
};
const exact = (l: LongLike, radix = 10): string => {
  const bits = (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
  return (l.unsigned ? bits : BigInt.asIntN(64, bits)).toString(radix);
};

/** The fast toString over an oracle "original" that counts how often it is asked. */
function subject(): { toString: (l: LongLike, radix?: number) => string; slowCalls: () => number } {
  let slow = 0;
  const fast = fastLongToString(function (this: LongLike, radix?: number) {
    slow++;
    return exact(this, radix ?? 10);
  });
  return { toString: (l, radix) => fast.call(l, radix), slowCalls: () => slow };
}

describe('int64 decimal strings', () => {
  it('edges of the safe range, signed and unsigned, print exactly; only values past ±2^53 reach long.js', () => {
    const s = subject();
    const safe = [0n, 1n, -1n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 32n - 1n, 2n ** 32n, -(2n ** 32n), 2n ** 53n - 1n, -(2n ** 53n)];
    for (const v of safe) {
      if (v >= 0n) assert.equal(s.toString(long(v, true)), v.toString(), `unsigned ${v}`);
      assert.equal(s.toString(long(v, false)), v.toString(), `signed ${v}`);
    }
    assert.equal(s.slowCalls(), 0, 'values within ±2^53 never need long.js');
    const big = [2n ** 53n, -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n)];
    for (const v of big) assert.equal(s.toString(long(v, false)), v.toString(), `signed ${v}`);
    for (const v of [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) assert.equal(s.toString(long(v, true)), v.toString(), `unsigned ${v}`);
    // The same bits, signed and unsigned, are different numbers, and neither is served the other's text.
    const bits = 2n ** 64n - 5n;
    assert.equal(s.toString(long(bits, true)), bits.toString());
    assert.equal(s.toString(long(bits, false)), '-5');
  });

  it('64-bit IDs are remembered: a header\'s cluster_id and member_id, over and over, cost long.js once each', () => {
    const s = subject();
    const cluster = 14841639068965178418n;
    const member = 10276657743932975437n;
    for (let i = 0; i < 1_000; i++) {
      assert.equal(s.toString(long(cluster, true)), cluster.toString());
      assert.equal(s.toString(long(member, true)), member.toString());
    }
    assert.ok(s.slowCalls() <= 2, `long.js asked ${s.slowCalls()} times`);
  });

  it('20,000 random values (all magnitudes, both signs, colliding slots) match BigInt; other radixes go to long.js', () => {
    const s = subject();
    const rng = new Rng(0x1e64);
    for (let i = 0; i < 20_000; i++) {
      const bitsLong = BigInt(rng.int(65));
      const magnitude = bitsLong === 0n ? 0n : BigInt(Math.floor(rng.next() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(rng.next() * 2 ** 32));
      const value = magnitude % (2n ** bitsLong || 1n);
      const unsigned = rng.chance(0.5);
      const l = long(unsigned ? value : rng.chance(0.5) ? -value : value, unsigned);
      assert.equal(s.toString(l), exact(l), `${JSON.stringify(l)}`);
      // Values that share a remembered slot (same low bits) with different high bits.
      const neighbour = { ...l, high: (l.high + 1) | 0 };
      assert.equal(s.toString(neighbour), exact(neighbour), `${JSON.stringify(neighbour)}`);
    }
    const before = s.slowCalls();
    assert.equal(s.toString(long(255n, true), 16), 'ff');
    assert.equal(s.toString(long(-255n, false), 2), (-255n).toString(2));
    assert.equal(s.slowCalls(), before + 2);
  });

  it('is installed on the Long that proto-loader decodes into, and prints as long.js did', () => {
    const protobuf = createRequire(require.resolve('@grpc/proto-loader'))('protobufjs') as {
      util: { Long: { prototype: object; fromString(s: string, unsigned: boolean): LongLike & { toString(radix?: number): string } } };
    };
    const { Long } = protobuf.util;
    const original = (Long.prototype as { toString: unknown }).toString;
    const samples: Array<[string, boolean]> = [['14841639068965178418', true], ['-9223372036854775808', false], ['123456789', false], ['9007199254740993', false]];
    const before = samples.map(([v, u]) => Long.fromString(v, u).toString());
    installFastLongStrings();
    const installed = (Long.prototype as { toString: unknown }).toString;
    assert.notEqual(installed, original, 'the fast toString is on the Long proto-loader uses');
    installFastLongStrings(); // once only: a second call does not wrap the wrapper
    assert.equal((Long.prototype as { toString: unknown }).toString, installed);
    assert.deepEqual(
      samples.map(([v, u]) => Long.fromString(v, u).toString()),
      before,
    );
    assert.deepEqual(before, samples.map(([v]) => v));
    assert.equal(Long.fromString('255', true).toString(16), 'ff');
  });
});

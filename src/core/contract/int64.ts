// Decimal strings for the int64 fields of etcd's answers, without long.js's division loop.
//
// proto-loader (`longs: String`) decodes each int64 into a long.js `Long` and prints it with
// `Long.prototype.toString`, which divides emulated 64-bit numbers six digits at a time: on a one-key
// range (eight int64s) that was about 2 µs of CPU and 2.4 KB of garbage per request. Here, a value within
// ±2^53 (every revision, version, term, lease ID and count etcd hands out in practice) is exact as a
// double, so `String()` prints it; the two 64-bit IDs in every response header (cluster_id, member_id)
// are the same each time, so the last few printed are kept. Everything else — other radixes, other
// values — still goes to long.js. The output is the same string in every case (test/int64.test.ts).

import { createRequire } from 'node:module';

interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
}
type ToString = (this: LongLike, radix?: number) => string;

const TWO_32 = 4294967296;
/** |high| below this: |value| < 2^53. */
const SAFE_HIGH = 0x200000;
/** Remembered big values: slot by the low bits, so that cluster_id and member_id do not evict each other. */
const SLOTS = 8;

/** A `toString` for `Long.prototype`: the fast paths above, else `original`. */
export function fastLongToString(original: ToString): ToString {
  const lows = new Int32Array(SLOTS);
  const highs = new Int32Array(SLOTS);
  const kinds = new Int8Array(SLOTS); // 0 empty, 1 signed, 2 unsigned
  const texts: string[] = new Array<string>(SLOTS).fill('');
  return function toString(this: LongLike, radix?: number): string {
    if (radix !== undefined && radix !== 10) return original.call(this, radix);
    const low = this.low | 0;
    const high = this.high | 0;
    const unsigned = this.unsigned === true;
    const top = unsigned ? high >>> 0 : high;
    if (top < SAFE_HIGH && top >= -SAFE_HIGH) return String(top * TWO_32 + (low >>> 0));
    const slot = low & (SLOTS - 1);
    const kind = unsigned ? 2 : 1;
    if (kinds[slot] === kind && lows[slot] === low && highs[slot] === high) return texts[slot];
    const text = original.call(this);
    lows[slot] = low;
    highs[slot] = high;
    kinds[slot] = kind;
    texts[slot] = text;
    return text;
  };
}

let installed = false;

/** Puts the fast `toString` on the `Long` that proto-loader's protobufjs decodes into (resolved from
 *  proto-loader itself, so it is that copy whatever the dependency tree). Once per process. */
export function installFastLongStrings(): void {
  if (installed) return;
  installed = true;
  const protobuf = createRequire(require.resolve('@grpc/proto-loader'))('protobufjs') as { util?: { Long?: { prototype: { toString: ToString } } } };
  const proto = protobuf.util?.Long?.prototype;
  if (!proto) return;
  proto.toString = fastLongToString(proto.toString);
}

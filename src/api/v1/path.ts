// Keys in /v1/ paths: the rest of the path after the route's prefix, percent-decoded to bytes, so any
// key works (`app/config`, `bin%00%ff`); a `%` not followed by two hex digits is a 400.

import { GatewayError, GrpcCode } from '../../errors';

/** The bytes of a percent-encoded path segment (slashes kept as they are: they are part of the key). */
export function keyFromPath(encoded: string): Buffer {
  const raw = Buffer.from(encoded, 'latin1');
  if (/[^\x21-\x7e]/.test(encoded)) {
    throw new GatewayError(GrpcCode.INVALID_ARGUMENT, 'key: the path holds a character that must be percent-encoded');
  }
  const out = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== 0x25) {
      out[n++] = raw[i];
      continue;
    }
    const hex = encoded.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
      throw new GatewayError(GrpcCode.INVALID_ARGUMENT, `key: "%${hex}" at offset ${i} of the path's key is not a percent-encoded byte`);
    }
    out[n++] = parseInt(hex, 16);
    i += 2;
  }
  return Buffer.from(out.subarray(0, n));
}

// Base64 validation that accepts and rejects exactly what etcd's own JSON
// gateway does for `bytes` fields (Go's encoding/base64 StdEncoding in its
// default, non-strict mode), including the offset in its error message, so
// clients see the same errors from this gateway as from etcd.
//
// The rules, as observed on etcd 3.4:
// - standard alphabet, '=' padding required (complete 4-character groups);
// - '\r' and '\n' are ignored anywhere, but still count towards offsets;
// - non-zero bits left over in the final group are tolerated (`Zh==`);
// - any other character is illegal at its own offset.
// Offsets are UTF-16 indices. Go reports UTF-8 byte offsets, but every error
// is found at or before the first non-ASCII character, so the two agree.

const DATA = 0;
const SKIP = 1;
const PAD = 2;
const ILLEGAL = 3;

const CLASS = (() => {
  const table = new Uint8Array(128).fill(ILLEGAL);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = DATA;
  table[10] = SKIP;
  table[13] = SKIP;
  table[61] = PAD;
  return table;
})();

function skipNewlines(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 10 && c !== 13) break;
    i++;
  }
  return i;
}

/** Offset of the first error in `s`, or -1 when it is acceptable. */
function errorOffset(s: string): number {
  const n = s.length;
  // Fast path: typical values are one unbroken run of alphabet characters,
  // possibly followed by padding, so scan that run with a minimal loop.
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c >= 128 || CLASS[c] !== DATA) break;
    i++;
  }
  // Data characters seen so far in the current 4-character group.
  let group = i & 3;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    const kind = c < 128 ? CLASS[c] : ILLEGAL;
    if (kind === DATA) {
      group = (group + 1) & 3;
      continue;
    }
    if (kind === SKIP) continue;
    if (kind === ILLEGAL) return i;

    // Padding: only valid after 2 or 3 data characters, and it ends the input.
    if (group < 2) return i;
    let next = i + 1;
    if (group === 2) {
      // A second '=' must follow, possibly after line breaks.
      next = skipNewlines(s, next);
      if (next === n) return n;
      // Go blames the position just before the unexpected character here.
      if (s.charCodeAt(next) !== 61) return next - 1;
      next++;
    }
    next = skipNewlines(s, next);
    return next < n ? next : -1;
  }
  // An incomplete final group is blamed on its first data character, counted
  // back from the end by data characters only (as Go does, ignoring any line
  // breaks inside the group).
  return group === 0 ? -1 : n - group;
}

/** undefined when etcd would accept `s` as base64, otherwise etcd's error message. */
export function base64Error(s: string): string | undefined {
  const at = errorOffset(s);
  return at < 0 ? undefined : `illegal base64 data at input byte ${at}`;
}

/**
 * Decodes base64 that passed base64Error(). For such input Node's decoder
 * yields exactly the bytes Go's would (it skips line breaks and keeps only
 * the complete bytes of a final group, whatever its leftover bits); for any
 * other input the result is unspecified.
 */
export function decodeBase64(s: string): Buffer {
  return Buffer.from(s, 'base64');
}

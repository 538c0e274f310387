// KV service: range, put, deleterange, txn, compaction. Only reads may be re-sent to another member.

import { constants } from 'node:buffer';
import { GatewayError, GrpcCode } from '../../core/errors';
import { forward, type GrpcMessage, type UnaryHandler } from '../../core/context';

/** The longest string V8 can make (2^29 - 24 characters on 64-bit): an answer's JSON is one string. */
export const MAX_JSON_CHARS = constants.MAX_STRING_LENGTH;
/** More than the JSON of one key-value takes besides its base64 key and value: field names, quotes,
 *  four 64-bit numbers as strings. */
const KV_OVERHEAD_CHARS = 256;

interface Kv {
  key?: Buffer;
  value?: Buffer;
}
interface Answer {
  kvs?: Kv[];
  responses?: Array<{ response_range?: Answer; response_txn?: Answer }>;
}

const base64Chars = (b: Buffer | undefined): number => (b ? 4 * Math.ceil(b.length / 3) : 0);

/** At least as long as the JSON of a range or txn answer's key-values. */
export function jsonCharsAtMost(answer: Answer): number {
  let chars = 0;
  if (answer.kvs) for (const kv of answer.kvs) chars += base64Chars(kv.key) + base64Chars(kv.value) + KV_OVERHEAD_CHARS;
  if (answer.responses) {
    for (const r of answer.responses) {
      if (r.response_range) chars += jsonCharsAtMost(r.response_range);
      if (r.response_txn) chars += jsonCharsAtMost(r.response_txn);
    }
  }
  return chars;
}

/** Refuses an answer whose JSON could not be made into one string, with what to ask for instead. The
 *  answer is already whole in memory (unary gRPC), and a client wanting this much is served better by
 *  pages (`limit`, then the last key + 1) than by a streamed 512 MiB body: RESOURCE_EXHAUSTED (429), as
 *  a gRPC client is refused an answer over its receive limit. `what` says what etcd has done. */
function jsonSizeCheck(what: string): (answer: GrpcMessage) => void {
  return (answer) => {
    const chars = jsonCharsAtMost(answer as Answer);
    if (chars + KV_OVERHEAD_CHARS <= MAX_JSON_CHARS) return;
    throw new GatewayError(
      GrpcCode.RESOURCE_EXHAUSTED,
      `${what}, but its answer is too large for one JSON document (about ${Math.round(chars / 2 ** 20)} MiB; at most ` +
        `${Math.floor(MAX_JSON_CHARS / 2 ** 20)} MiB): read the keys in pages with "limit", or with "keys_only"`,
    );
  };
}

export const checkRangeSize = jsonSizeCheck('etcd read the range');
export const checkTxnSize = jsonSizeCheck('etcd ran the transaction');

export const kvHandlers: Record<string, UnaryHandler> = {
  KV_Range: forward('KV', 'Range', { idempotent: true, check: checkRangeSize }),
  KV_Put: forward('KV', 'Put', { idempotent: false }),
  KV_DeleteRange: forward('KV', 'DeleteRange', { idempotent: false }),
  KV_Txn: forward('KV', 'Txn', { idempotent: false, check: checkTxnSize }),
  KV_Compact: forward('KV', 'Compact', { idempotent: false }),
};

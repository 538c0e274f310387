// KV service: range, put, deleterange, txn, compaction. Only reads may be re-sent to another member.

import { forward, type UnaryHandler } from '../context';

export const kvHandlers: Record<string, UnaryHandler> = {
  KV_Range: forward('KV', 'Range', { idempotent: true }),
  KV_Put: forward('KV', 'Put', { idempotent: false }),
  KV_DeleteRange: forward('KV', 'DeleteRange', { idempotent: false }),
  KV_Txn: forward('KV', 'Txn', { idempotent: false }),
  KV_Compact: forward('KV', 'Compact', { idempotent: false }),
};

// How the gateway's own /v1/ API shows etcd's data as JSON, shared by the keys API and the watch
// streams so a key looks the same in a GET, a listing and an event.
//
// The rule: keys and values are UTF-8 strings when their bytes are valid UTF-8, and `key_base64` /
// `value_base64` (standard base64) when they are not, so no byte is ever lost and the common case
// needs no decoding. Revisions and versions are JSON numbers (etcd's revisions are int64 counters that
// would take centuries of writes to pass 2^53); lease IDs are decimal strings, since etcd draws them
// at random from the whole int64 range.

import { isUtf8 } from 'node:buffer';

/** A KeyValue as the etcd client decodes it: bytes as Buffers, int64 fields as decimal strings. */
export interface EtcdKeyValue {
  key: Buffer;
  value?: Buffer | null;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

export interface V1KeyValue {
  key?: string;
  key_base64?: string;
  value?: string;
  value_base64?: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  /** Present only when the key is attached to a lease. */
  lease?: string;
}

/** `text` when the bytes are valid UTF-8, else `base64`: the field name to use and its content. */
export function textOrBase64(bytes: Buffer, name: string): Record<string, string> {
  return isUtf8(bytes) ? { [name]: bytes.toString('utf8') } : { [`${name}_base64`]: bytes.toString('base64') };
}

/** int64 decimal string (or absent, meaning 0) to a JSON number. */
export function revisionNumber(value: string | undefined | null): number {
  return value ? Number(value) : 0;
}

/** A KeyValue in /v1/ form; `withValue: false` leaves the value out (keys_only listings). */
export function v1KeyValue(kv: EtcdKeyValue, withValue = true): V1KeyValue {
  const out: V1KeyValue = {
    ...(textOrBase64(kv.key, 'key') as Pick<V1KeyValue, 'key' | 'key_base64'>),
    ...(withValue ? (textOrBase64(kv.value ?? Buffer.alloc(0), 'value') as Pick<V1KeyValue, 'value' | 'value_base64'>) : {}),
    create_revision: revisionNumber(kv.create_revision),
    mod_revision: revisionNumber(kv.mod_revision),
    version: revisionNumber(kv.version),
  };
  if (kv.lease && kv.lease !== '0') out.lease = kv.lease;
  return out;
}

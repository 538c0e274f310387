// Streaming clients that send request headers (an etcd token), with the path first: the HTTP stream
// reader and the WebSocket of ./watch-clients, the WebSocket bounded to open within 3 s.

import { httpWatch, wsWatch } from './watch-clients';

/** POSTs `body` to a streaming path with `headers`; resolves once the response headers are in. */
export function httpStream(base: string, path: string, body: string, headers: Record<string, string> = {}): ReturnType<typeof httpWatch> {
  return httpWatch(base, body, path, headers);
}

/** A WebSocket on `path` whose upgrade request carries `headers`. */
export function socket(wsBase: string, path: string, headers: Record<string, string> = {}): ReturnType<typeof wsWatch> {
  return wsWatch(wsBase, path, { headers, openTimeoutMs: 3000 });
}

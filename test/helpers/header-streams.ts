// Streaming clients that send request headers (an etcd token): an HTTP stream reader for any streaming
// path, and a WebSocket whose upgrade request carries the headers. Both collect parsed messages and wait
// for a number of them with a bound on time.

import WebSocket from 'ws';

export interface Collected {
  messages: any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The first `n` messages once there; rejects after `timeoutMs`. */
  take(n: number, timeoutMs?: number): Promise<any[]>; // eslint-disable-line @typescript-eslint/no-explicit-any
  close(): void;
}

function collector(onClose: () => void): Collected & { push(m: unknown): void } {
  const messages: unknown[] = [];
  const waiters = new Set<() => void>();
  return {
    messages,
    push(m) {
      messages.push(m);
      for (const w of [...waiters]) w();
    },
    take(n, timeoutMs = 3000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (messages.length < n) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(messages.slice(0, n));
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`got ${messages.length} of ${n} messages: ${JSON.stringify(messages).slice(0, 2000)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: onClose,
  };
}

/** POSTs `body` to a streaming path with `headers`; resolves once the response headers are in (etcd's
 *  gateway sends them with the first message). */
export async function httpStream(base: string, path: string, body: string, headers: Record<string, string> = {}): Promise<Collected & { status: number }> {
  const aborter = new AbortController();
  const res = await fetch(new URL(path, base), { method: 'POST', body, headers, signal: aborter.signal });
  const c = collector(() => aborter.abort());
  const reader = res.body!.getReader();
  void (async () => {
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim()) c.push(JSON.parse(line));
        }
      }
      if (buffered.trim()) c.push(JSON.parse(buffered));
    } catch {
      // aborted by close()
    }
  })();
  return Object.assign(c, { status: res.status });
}

/** A WebSocket on `path` whose upgrade request carries `headers`. */
export async function socket(
  wsBase: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Collected & { ws: WebSocket; send(m: unknown): void; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(new URL(path, wsBase), { headers });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`WebSocket ${path}: not open within 3 s`)), 3000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const c = collector(() => ws.close());
  ws.on('message', (data) => c.push(JSON.parse(data.toString())));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return Object.assign(c, { ws, closed, send: (m: unknown) => ws.send(typeof m === 'string' ? m : JSON.stringify(m)) });
}

// Watch clients for tests: an HTTP stream reader and a WebSocket, both collecting parsed messages and
// waiting for a given number of them with a bound on time. Both serve any streaming path (watch,
// keepalive, observe) and can send request headers (an etcd token), the WebSocket in its upgrade request.

import WebSocket from 'ws';

export interface MessageQueue {
  messages: any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Resolves with the first `n` messages once they are there; rejects after `timeoutMs`. */
  take(n: number, timeoutMs?: number): Promise<any[]>; // eslint-disable-line @typescript-eslint/no-explicit-any
  close(): void;
}

function queue(onClose: () => void): MessageQueue & { push(m: unknown): void } {
  const messages: unknown[] = [];
  let waiters: Array<() => void> = [];
  return {
    messages,
    push(m) {
      messages.push(m);
      const ws = waiters;
      waiters = [];
      for (const w of ws) w();
    },
    take(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const deadline = setTimeout(() => {
          waiters = waiters.filter((w) => w !== check);
          reject(new Error(`got ${messages.length} of ${n} messages: ${JSON.stringify(messages).slice(0, 2000)}`));
        }, timeoutMs);
        const check = (): void => {
          if (messages.length >= n) {
            clearTimeout(deadline);
            resolve(messages.slice(0, n));
          } else waiters.push(check);
        };
        check();
      });
    },
    close: onClose,
  };
}

/** POSTs `body` to `path` with `headers`; resolves once the response headers are in (etcd's gateway sends
 *  them with the first message); the answer's lines are parsed as they arrive. */
export async function httpWatch(
  base: string,
  body: string,
  path = '/v3/watch',
  headers: Record<string, string> = {},
): Promise<MessageQueue & { status: number }> {
  const aborter = new AbortController();
  const res = await fetch(new URL(path, base), { method: 'POST', body, headers, signal: aborter.signal });
  const q = queue(() => aborter.abort());
  const reader = res.body!.getReader();
  void (async () => {
    let buffered = '';
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim()) q.push(JSON.parse(line));
        }
      }
      if (buffered.trim()) q.push(JSON.parse(buffered));
    } catch {
      // aborted by close()
    }
  })();
  return Object.assign(q, { status: res.status });
}

/** A WebSocket on `path` whose upgrade request carries `headers`; `send` writes one request. With
 *  `openTimeoutMs`, opening fails after that long. */
export async function wsWatch(
  wsBase: string,
  path = '/v3/watch',
  { headers, openTimeoutMs }: { headers?: Record<string, string>; openTimeoutMs?: number } = {},
): Promise<MessageQueue & { ws: WebSocket; send(m: unknown): void; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(new URL(path, wsBase), { headers });
  await new Promise<void>((resolve, reject) => {
    const timer = openTimeoutMs === undefined ? undefined : setTimeout(() => reject(new Error(`WebSocket ${path}: not open within ${openTimeoutMs / 1000} s`)), openTimeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const q = queue(() => ws.close());
  ws.on('message', (data) => q.push(JSON.parse(data.toString())));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return Object.assign(q, { ws, closed, send: (m: unknown) => ws.send(typeof m === 'string' ? m : JSON.stringify(m)) });
}

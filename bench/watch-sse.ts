// The SSE side of the watch bench: one Server-Sent Events watcher on GET /v1/watch/{prefix}?prefix, read
// with Node's http client. It is open once its first message (the creation progress) has arrived; each
// put or delete is handed to `onEvent` with its revision and its value as text.

import http from 'node:http';

export interface SseWatcher {
  close(): void;
}

/** Opens one watcher; resolves with it, or with the reason it could not open within `timeoutMs`. */
export function openSseWatcher(
  url: string,
  timeoutMs: number,
  onEvent: (revision: number, value: string) => void,
  onEnd: () => void,
): Promise<SseWatcher | string> {
  return new Promise((resolve) => {
    let opened = false;
    const req = http.get(url, { agent: false, headers: { Accept: 'text/event-stream' } });
    const watcher: SseWatcher = { close: () => req.destroy() };
    const settle = (result: SseWatcher | string): void => {
      if (opened) return;
      opened = true;
      clearTimeout(timer);
      if (typeof result === 'string') req.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => settle('no first message in time'), timeoutMs);
    req.on('error', (err) => settle(err.message));
    req.on('response', (res) => {
      if (res.statusCode !== 200) return settle(`HTTP ${res.statusCode}`);
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (!data) continue;
          const message = JSON.parse(data.slice(6)) as { type: string; mod_revision?: number; value?: string };
          if (message.type === 'progress') settle(watcher);
          else if (message.type === 'put' || message.type === 'delete') onEvent(message.mod_revision ?? 0, message.value ?? '');
        }
      });
      res.on('end', onEnd);
      res.on('error', onEnd);
    });
  });
}

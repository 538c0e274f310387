// Clients of the /v1/ watch stream (GET /v1/watch/{key}) for tests: a raw reader of Server-Sent Events
// or NDJSON that records every message (checked against the contract's V1WatchMessage schema) and every
// event in the form the history checks of watch-history.ts compare.

import assert from 'node:assert/strict';
import http from 'node:http';
import { spec } from './gateway';
import { WatchClient, waitFor } from './watch-history';

export interface V1Message {
  type: string;
  id?: string;
  key?: string;
  key_base64?: string;
  value?: string;
  mod_revision?: number;
  revision?: number;
  compact_revision?: number;
  prev?: { value?: string };
  [field: string]: unknown;
}

/** Asserts that one message of the stream matches V1WatchMessage in openapi.yaml. */
export function assertV1Message(m: unknown): void {
  const validate = spec().validator('V1WatchMessage');
  assert.ok(validate(m), `${JSON.stringify(m)} does not match V1WatchMessage: ${JSON.stringify(validate.errors)}`);
}

/** Parses SSE text into messages (fields of each block) and counts comment lines. */
export class SseParser {
  private buffer = '';
  comments = 0;
  retry?: number;

  constructor(private readonly onMessage: (m: { event?: string; id?: string; data: string }) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const fields: { event?: string; id?: string; data?: string } = {};
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments++;
          continue;
        }
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'retry') this.retry = Number(value);
        else if (name === 'data') fields.data = fields.data === undefined ? value : `${fields.data}\n${value}`;
        else if (name === 'event' || name === 'id') fields[name] = value;
      }
      if (fields.data !== undefined) this.onMessage({ event: fields.event, id: fields.id, data: fields.data });
    }
  }
}

/** GET /v1/watch/{path} as SSE or NDJSON, read raw; every message recorded and checked. */
export class V1Watch extends WatchClient {
  status?: number;
  contentType?: string;
  body = '';
  ended = false;
  readonly messages: V1Message[] = [];
  readonly sse?: SseParser;
  private readonly req: http.ClientRequest;

  constructor(name: string, base: string, pathAndQuery: string, opts: { sse?: boolean; headers?: Record<string, string> } = {}) {
    super(name);
    if (opts.sse) {
      this.sse = new SseParser((m) => {
        const parsed = JSON.parse(m.data) as V1Message;
        assert.equal(m.event, parsed.type, `${name}: the SSE event name is the message's type`);
        assert.equal(m.id, parsed.id, `${name}: the SSE id is the message's id`);
        this.record(parsed);
      });
    }
    this.req = http.get(new URL(`/v1/watch/${pathAndQuery}`, base), {
      agent: false,
      headers: { ...(opts.sse ? { Accept: 'text/event-stream' } : {}), ...opts.headers },
    });
    let partial = '';
    this.req.on('response', (res) => {
      this.status = res.statusCode;
      this.contentType = res.headers['content-type'];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        this.body += chunk;
        if (this.status !== 200) return;
        if (this.sse) return this.sse.push(chunk);
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) this.record(JSON.parse(line) as V1Message);
      });
      res.on('end', () => (this.ended = true));
      res.on('error', () => (this.ended = true));
    });
    this.req.on('error', () => (this.ended = true));
  }

  private record(m: V1Message): void {
    if (this.closed) return;
    assertV1Message(m);
    this.messages.push(m);
    if (m.type === 'put' || m.type === 'delete') {
      this.events.push({
        watchId: '0',
        key: m.key ?? Buffer.from(m.key_base64 ?? '', 'base64').toString('latin1'),
        rev: Number(m.mod_revision),
        type: m.type === 'put' ? 'PUT' : 'DELETE',
        at: Date.now(),
      });
    }
  }

  /** The id of the last message that carried one (what EventSource would send on reconnecting). */
  lastId(): string | undefined {
    for (let i = this.messages.length - 1; i >= 0; i--) if (this.messages[i].id !== undefined) return this.messages[i].id;
    return undefined;
  }

  async waitForStatus(timeoutMs = 10_000): Promise<number> {
    await waitFor(() => this.status !== undefined || this.ended, timeoutMs, () => `${this.name}: an answer`);
    return this.status ?? 0;
  }

  async waitForEvents(n: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.events.length >= n || this.ended, timeoutMs, () => `${this.name}: ${n} events (has ${this.events.length})`);
  }

  async waitForMessage(pred: (m: V1Message) => boolean, timeoutMs = 10_000, what = 'a message'): Promise<V1Message> {
    await waitFor(() => this.messages.some(pred) || this.ended, timeoutMs, () => `${this.name}: ${what}`);
    const m = this.messages.find(pred);
    assert.ok(m, `${this.name}: the stream ended before ${what}: ${this.body.slice(-500)}`);
    return m;
  }

  close(): void {
    this.closed = true;
    this.req.destroy();
  }
}

/** The ids of a stream's events, in order. */
export const eventIds = (w: V1Watch): string[] => w.messages.filter((m) => m.type === 'put' || m.type === 'delete').map((m) => m.id ?? '');

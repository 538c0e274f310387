// Watch clients and history checks for the resilience tests: an HTTP watch stream and a WebSocket that
// record every message and event, etcd's own history of a prefix read through etcd's gateway, and the
// assertions that a watcher saw exactly that history — each revision once, in order, nothing missing.

import assert from 'node:assert/strict';
import http from 'node:http';
import { WebSocket } from 'ws';
import { b64, type GatewayFixture } from './gateway';

// ---------------------------------------------------------------------------------------------------
// Small bounded helpers

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `cond` every 5 ms; fails after `timeoutMs` (and after a bounded number of rounds). */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const maxRounds = Math.ceil(timeoutMs / 5) + 100;
  for (let round = 0; !cond(); round++) {
    if (Date.now() >= deadline || round >= maxRounds) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(5);
  }
}

/** The same for an asynchronous condition, polled every `everyMs`. */
export async function waitForAsync(cond: () => Promise<boolean>, timeoutMs: number, what: () => string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const maxRounds = Math.ceil(timeoutMs / everyMs) + 10;
  for (let round = 0; !(await cond()); round++) {
    if (Date.now() >= deadline || round >= maxRounds) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(everyMs);
  }
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The range_end that makes `prefix` a prefix watch ("r/" → "r0"). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

export const fromB64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

export interface JsonResult {
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  fragment?: boolean;
  header?: { revision?: string };
  events?: Array<{ type?: string; kv?: { key?: string; mod_revision?: string } }>;
}

export interface Received {
  at: number;
  raw: string;
  result?: JsonResult;
  error?: unknown;
}

export interface Ev {
  watchId: string;
  key: string;
  rev: number;
  type: 'PUT' | 'DELETE';
  at: number;
}

export const fmt = (e: Pick<Ev, 'key' | 'rev' | 'type'>): string => `${e.rev}:${e.type}:${e.key}`;

// ---------------------------------------------------------------------------------------------------
// Watch clients: an HTTP stream (ours or etcd's own gateway) and a WebSocket

export abstract class WatchClient {
  readonly received: Received[] = [];
  readonly events: Ev[] = [];
  /** Called synchronously for every message, after it was recorded. */
  onMessage?: (m: Received) => void;
  protected closed = false;

  constructor(readonly name: string) {}

  protected take(raw: string): void {
    if (this.closed || raw.trim() === '') return;
    const at = Date.now();
    let parsed: { result?: JsonResult; error?: unknown };
    try {
      parsed = JSON.parse(raw) as { result?: JsonResult; error?: unknown };
    } catch {
      this.received.push({ at, raw, error: 'not JSON' });
      return;
    }
    const m: Received = { at, raw, result: parsed.result, error: parsed.error };
    this.received.push(m);
    const r = parsed.result;
    for (const e of r?.events ?? []) {
      this.events.push({
        watchId: r?.watch_id ?? '0',
        key: fromB64(e.kv?.key),
        rev: Number(e.kv?.mod_revision ?? 0),
        type: e.type === 'DELETE' ? 'DELETE' : 'PUT',
        at,
      });
    }
    this.onMessage?.(m);
  }

  eventsOf(id = '0'): Ev[] {
    return this.events.filter((e) => e.watchId === id);
  }

  lastRev(id = '0'): number {
    const evs = this.eventsOf(id);
    return evs.length ? evs[evs.length - 1].rev : 0;
  }

  results(id = '0'): JsonResult[] {
    return this.received.flatMap((m) => (m.result && (m.result.watch_id ?? '0') === id ? [m.result] : []));
  }

  created(id = '0'): JsonResult | undefined {
    return this.results(id).find((r) => r.created);
  }

  cancelation(id = '0'): JsonResult | undefined {
    return this.results(id).find((r) => r.canceled && !r.created);
  }

  errors(): Received[] {
    return this.received.filter((m) => m.error !== undefined);
  }

  abstract close(): void;
}

export class HttpWatch extends WatchClient {
  status?: number;
  transportError?: Error;
  private readonly req: http.ClientRequest;
  private buffer = '';

  constructor(name: string, base: string, requests: object[]) {
    super(name);
    const body = requests.map((r) => JSON.stringify(r)).join('\n');
    this.req = http.request(new URL('/v3/watch', base), {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    });
    this.req.on('response', (res) => {
      this.status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        this.buffer += chunk;
        const lines = this.buffer.split('\n');
        this.buffer = lines.pop() ?? '';
        for (const line of lines) this.take(line);
      });
      res.on('error', (err) => {
        if (!this.closed) this.transportError = err;
      });
    });
    this.req.on('error', (err) => {
      if (!this.closed) this.transportError = err;
    });
    this.req.end(body);
  }

  close(): void {
    this.closed = true;
    this.req.destroy();
  }
}

export class WsWatch extends WatchClient {
  closeCode?: number;

  private constructor(
    name: string,
    private readonly ws: WebSocket,
  ) {
    super(name);
    ws.on('message', (data) => this.take(data.toString()));
    ws.on('close', (code) => {
      this.closeCode = code;
    });
    ws.on('error', () => undefined);
  }

  static async open(name: string, wsBase: string): Promise<WsWatch> {
    const ws = new WebSocket(`${wsBase}/v3/watch`, { perMessageDeflate: false });
    const watch = new WsWatch(name, ws);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      }),
      5_000,
      `${name}: WebSocket open`,
    );
    return watch;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(request: object): void {
    this.ws.send(JSON.stringify(request));
  }

  close(): void {
    this.closed = true;
    this.ws.terminate();
  }
}

export function createRequest(prefixOrKey: string, opts: { prefix?: boolean; startRevision?: number } = {}): object {
  const create: Record<string, string> = { key: b64(prefixOrKey) };
  if (opts.prefix ?? true) create.range_end = b64(prefixEnd(prefixOrKey));
  if (opts.startRevision !== undefined) create.start_revision = String(opts.startRevision);
  return { create_request: create };
}

/** Opens the two watchers under test on `prefix`, from now, and waits for both `created` answers. */
export async function openWatchers(gw: GatewayFixture, prefix: string): Promise<{ httpW: HttpWatch; wsW: WsWatch; createdRev: number }> {
  const httpW = new HttpWatch('http-stream', gw.url, [createRequest(prefix)]);
  const wsW = await WsWatch.open('websocket', gw.wsUrl);
  wsW.send(createRequest(prefix));
  await waitFor(() => !!httpW.created() && !!wsW.created(), 5_000, () => `both watches created (${httpW.received.length} / ${wsW.received.length} messages)`);
  assert.equal(httpW.status, 200);
  const createdRev = Math.max(Number(httpW.created()?.header?.revision ?? 0), Number(wsW.created()?.header?.revision ?? 0));
  assert.ok(createdRev > 0, 'created answers carry the revision');
  return { httpW, wsW, createdRev };
}

/** etcd's true history of `prefix` in [fromRev, toRev], read with a watch through etcd's own gateway. */
export async function etcdHistory(etcd: { clientUrl: string }, prefix: string, fromRev: number, toRev: number): Promise<Ev[]> {
  const w = new HttpWatch('etcd-gateway', etcd.clientUrl, [createRequest(prefix, { startRevision: fromRev })]);
  try {
    await waitFor(
      () => w.lastRev() >= toRev || !!w.cancelation() || w.transportError !== undefined,
      10_000,
      () => `etcd's own watch to reach revision ${toRev} (at ${w.lastRev()})`,
    );
    assert.equal(w.status, 200, 'etcd gateway watch status');
    assert.equal(w.cancelation(), undefined, `etcd's own watch was canceled: ${JSON.stringify(w.cancelation())}`);
    return w.events.filter((e) => e.rev <= toRev);
  } finally {
    w.close();
  }
}

/** Exactly once, in order: the watcher's events up to `toRev` are etcd's history, with no repeat. */
export function assertExactlyHistory(w: WatchClient, truth: Ev[], toRev: number, id = '0'): void {
  const seen = w.eventsOf(id);
  // Per event identity: a revision can hold several events (a txn), each key at most once.
  const counts = new Map<string, number>();
  for (const e of seen) counts.set(fmt(e), (counts.get(fmt(e)) ?? 0) + 1);
  const duplicates = [...counts].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  assert.deepEqual(duplicates, [], `${w.name}: events delivered more than once`);
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i].rev >= seen[i - 1].rev, `${w.name}: revision ${seen[i].rev} after ${seen[i - 1].rev} (out of order)`);
  }
  const truthSet = new Set(truth.map(fmt));
  const seenSet = new Set(seen.map(fmt));
  const missing = truth.filter((e) => !seenSet.has(fmt(e))).map(fmt);
  const extra = seen.filter((e) => e.rev <= toRev && !truthSet.has(fmt(e))).map(fmt);
  assert.deepEqual(missing.slice(0, 20), [], `${w.name}: ${missing.length} events of etcd's history never delivered`);
  assert.deepEqual(extra.slice(0, 20), [], `${w.name}: ${extra.length} events that are not in etcd's history`);
  const beyond = seen.filter((e) => e.rev > toRev).map(fmt);
  assert.deepEqual(beyond, [], `${w.name}: events past the last write`);
  assert.deepEqual(seen.map(fmt), truth.map(fmt), `${w.name}: sequence differs from etcd's history`);
}

/** Revisions strictly increasing (one event per revision) and no gap between consecutive ones. */
export function assertOneEventPerRevision(name: string, evs: Ev[]): void {
  for (let i = 1; i < evs.length; i++) {
    assert.ok(evs[i].rev > evs[i - 1].rev, `${name}: revision ${evs[i].rev} does not follow ${evs[i - 1].rev} strictly`);
  }
}

export async function stats(gw: GatewayFixture): Promise<{ connections: number; watches: number; etcdWatches: number; etcdStreams: number; eventsDelivered: number; resumes: number; streamBreaks: number }> {
  const answer = await gw.post('/stats', undefined, { method: 'GET' });
  assert.equal(answer.status, 200, answer.text);
  return answer.body.watch;
}


export async function waitWatchersAt(watchers: WatchClient[], rev: number, timeoutMs: number): Promise<void> {
  await waitFor(
    () => watchers.every((w) => w.lastRev() >= rev),
    timeoutMs,
    () => `watchers to reach revision ${rev} (${watchers.map((w) => `${w.name} at ${w.lastRev()}`).join(', ')})`,
  );
  // A short quiet period, so that a late repeat of an old revision would be caught too.
  await sleep(200);
}

/** First event each watcher received at or after `since` (ms after `since`), or undefined. */
export function firstEventAfter(w: WatchClient, since: number): number | undefined {
  const e = w.events.find((ev) => ev.at >= since);
  return e ? e.at - since : undefined;
}

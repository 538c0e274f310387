// GET /v1/watch/{key}: a watch as Server-Sent Events (for EventSource) or NDJSON (for curl, shell and
// Python), resumable by revision. The handler takes the decoded key and knows nothing of how it is
// mounted; it rides the watch hub through its public interface (connect, request, deliver, close).
//
// Resume ids. Every event carries an id `<revision>.<index>`: etcd's revision of the change and the
// event's place among the events this watch gets at that revision (a txn writes many keys at one
// revision). A progress message carries `<revision>` alone: everything up to that revision has been
// sent. A resume from `R.i` watches from R again and skips the first i+1 events of R; from `R` it
// watches from R+1. etcd gives the events of one revision in the same order to every watch with the
// same key, range and filters, so the skip lands on the same event on any gateway process.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import type { GrpcMessage } from '../../core/context';
import type { SharedResponse, WatchConnection } from '../../core/watch/hub';
import { GatewayError, GrpcCode, fromGrpcError } from '../../core/errors';
import { problem, sendProblem, type Problem } from './problem';
import { revisionNumber, textOrBase64, v1KeyValue, type EtcdKeyValue } from './representation';
import { badRequest, type V1Handler, type V1Request } from './router';
import { pathBytes } from './params';
import { admitted, prefixRange } from './etcd';
import type { V1Settings } from './handlers';
import { Outbox } from '../../core/watch/outbox';
import { StallWatch } from '../../core/watch/stall';
import { Admission, type WatchQuota } from '../../core/admission';

export const SSE_CONTENT_TYPE = 'text/event-stream';
export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';
/** Browsers wait this long before reconnecting (their default is about 3 s). */
export const SSE_RETRY_MS = 1_000;
const MAX_PROGRESS_SECONDS = 3_600;
/** Revisions are JSON numbers in /v1/: beyond this they would lose digits. */
const MAX_REVISION = BigInt(Number.MAX_SAFE_INTEGER);
const FILTERS: Record<string, number> = { noput: 0, nodelete: 1 };

type WatchSettings = Pick<V1Settings, 'hub' | 'limits' | 'watchHeartbeatMs' | 'admission'>;

/** Where a stream starts: a revision, and how many of that revision's events the client already has. */
interface ResumePoint {
  revision: bigint;
  skip: number;
}

/** What the query and headers ask for, checked before anything reaches etcd. */
interface WatchAsk {
  create: GrpcMessage;
  format: 'sse' | 'ndjson';
  /** undefined: from now. */
  start?: ResumePoint;
  progressMs: number;
}

/** The /v1/ JSON of one message on the stream: the SSE `data:` and the NDJSON line alike. */
export type WatchMessage =
  | ({ type: 'put'; id: string } & Record<string, unknown>)
  | { type: 'delete'; id: string; key?: string; key_base64?: string; mod_revision: number; prev?: unknown }
  | { type: 'progress'; id: string; revision: number }
  | { type: 'compacted'; compact_revision: number; detail: string }
  | { type: 'error'; title: string; status: number; detail: string; code?: number };

/** A problem that ends a running stream, as its last message (its `type` URI gives way to the kind). */
function errorMessage(p: Problem): WatchMessage {
  return { type: 'error', title: p.title, status: p.status, detail: p.detail, code: p.code };
}

/** A query flag: on when present with no value, an empty value or `true`; off with `false`. */
function flag(name: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (value === '' || value === 'true') return true;
  if (value === 'false') return false;
  throw badRequest(`query parameter ${name}: must be true, false or empty, got "${value}"`);
}

function revisionParameter(name: string, text: string, min: bigint): bigint {
  if (!/^\d{1,19}$/.test(text)) throw badRequest(`${name}: must be a revision (a decimal integer), got "${text.slice(0, 40)}"`);
  const n = BigInt(text);
  if (n < min || n > MAX_REVISION) throw badRequest(`${name}: must be between ${min} and ${MAX_REVISION}, got ${text}`);
  return n;
}

/** An event id (`R.i`) or a progress id (`R`) as the point right after it. */
export function parseEventId(name: string, text: string): ResumePoint {
  const m = /^(\d{1,19})(?:\.(\d{1,9}))?$/.exec(text);
  if (!m) throw badRequest(`${name}: must be an event id as sent by this API ("<revision>.<index>" or "<revision>"), got "${text.slice(0, 40)}"`);
  const revision = revisionParameter(name, m[1], 0n);
  if (m[2] === undefined) return { revision: revision + 1n, skip: 0 };
  if (revision === 0n) throw badRequest(`${name}: an event's revision is at least 1, got "${text}"`);
  return { revision, skip: Number(m[2]) + 1 };
}

/** SSE when the client accepts `text/event-stream` (EventSource sends exactly that), else NDJSON. */
function formatOf(accept: string | undefined): 'sse' | 'ndjson' {
  if (!accept) return 'ndjson';
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    if (type === SSE_CONTENT_TYPE && !(q && Number(q.slice(2)) === 0)) return 'sse';
  }
  return 'ndjson';
}

function readAsk(req: IncomingMessage, query: URLSearchParams, key: Buffer): WatchAsk {
  const seen = new Map<string, string>();
  for (const [name, value] of query) {
    if (seen.has(name)) throw badRequest(`query parameter ${name}: given more than once`);
    seen.set(name, value);
  }
  const prefix = flag('prefix', seen.get('prefix'));
  if (key.length === 0 && !prefix) throw badRequest('key: the path names no key (an empty key is only allowed with ?prefix, to watch every key)');
  const create: GrpcMessage = prefix ? prefixRange(key) : { key };
  if (flag('prev_kv', seen.get('prev_kv'))) create.prev_kv = true;
  const filters = seen.get('filters');
  if (filters !== undefined && filters !== '') {
    const names = filters.split(',').map((s) => s.trim().toLowerCase());
    for (const n of names) if (!(n in FILTERS)) throw badRequest(`query parameter filters: "${n.slice(0, 40)}" is not a filter (noput, nodelete)`);
    create.filters = [...new Set(names.map((n) => FILTERS[n]))];
  }
  let progressMs = 0;
  const progress = seen.get('progress');
  if (progress !== undefined) {
    if (!/^\d{1,5}$/.test(progress) || Number(progress) < 1 || Number(progress) > MAX_PROGRESS_SECONDS) {
      throw badRequest(`query parameter progress: must be a whole number of seconds from 1 to ${MAX_PROGRESS_SECONDS}, got "${progress.slice(0, 40)}"`);
    }
    progressMs = Number(progress) * 1000;
  }
  // The header wins: a browser keeps the page's URL (with its ?last_event_id or ?start_revision) on
  // every reconnect and adds the id of the last event it got.
  const header = req.headers['last-event-id'];
  const lastId = typeof header === 'string' && header !== '' ? { name: 'header Last-Event-ID', value: header } : undefined;
  const queryId = seen.get('last_event_id');
  const startRevision = seen.get('start_revision');
  let start: ResumePoint | undefined;
  if (lastId) start = parseEventId(lastId.name, lastId.value);
  else if (queryId !== undefined) start = parseEventId('query parameter last_event_id', queryId);
  else if (startRevision !== undefined) start = { revision: revisionParameter('query parameter start_revision', startRevision, 1n), skip: 0 };
  if (start && start.revision > 0n) create.start_revision = start.revision.toString();
  return { create, format: formatOf(req.headers.accept), start, progressMs };
}

/** An event of the hub (gRPC form) in /v1/ form, with its id. */
function eventMessage(event: GrpcMessage, id: string): WatchMessage {
  const kv = event.kv as EtcdKeyValue;
  const prev = event.prev_kv as EtcdKeyValue | null | undefined;
  const withPrev = prev ? { prev: v1KeyValue(prev) } : {};
  // The stream clients (etcd3's proto) name the event types `Put` and `Delete`.
  if (event.type === 'Delete') {
    return { type: 'delete', id, ...(textOrBase64(kv.key, 'key') as { key?: string }), mod_revision: revisionNumber(kv.mod_revision), ...withPrev };
  }
  return { type: 'put', id, ...v1KeyValue(kv), ...withPrev };
}

/** One message in the stream's framing. */
function frame(format: 'sse' | 'ndjson', message: WatchMessage): string {
  const json = JSON.stringify(message);
  if (format === 'ndjson') return `${json}\n`;
  const id = 'id' in message ? `id: ${message.id}\n` : '';
  return `event: ${message.type}\n${id}data: ${json}\n\n`;
}

/** The events of one response framed for every client of a shared watch that is not in the middle
 *  of a revision: indices count from 0 at each revision, as they do for such a client. */
interface SharedFrames {
  bytes: Buffer;
  firstRevision: bigint;
  lastRevision: bigint;
  /** How many events of the last revision the response holds. */
  lastCount: number;
}

/** Keys of the memoized framings, one per format. */
const SHARED_FORMS = { sse: {}, ndjson: {} } as const;

function sharedFrames(format: 'sse' | 'ndjson', response: GrpcMessage): SharedFrames {
  const events = response.events as GrpcMessage[];
  let out = '';
  let revision = -1n;
  let index = 0;
  let firstRevision = -1n;
  for (const event of events) {
    const rev = BigInt((event.kv as EtcdKeyValue).mod_revision ?? '0');
    if (firstRevision < 0n) firstRevision = rev;
    if (rev === revision) index++;
    else {
      revision = rev;
      index = 0;
    }
    out += frame(format, eventMessage(event, `${rev}.${index}`));
  }
  return { bytes: Buffer.from(out), firstRevision, lastRevision: revision, lastCount: index + 1 };
}

/** A watch's refusal by etcd or the hub (auth, a limit), as a problem. */
function refusalProblem(reason: string): Problem {
  if (/permission denied/i.test(reason)) return problem(403, reason, { code: GrpcCode.PERMISSION_DENIED });
  if (/too many/i.test(reason)) return problem(429, reason, { code: GrpcCode.RESOURCE_EXHAUSTED });
  return problem(400, reason || 'the watch was refused');
}

/** etcd would refuse this start as compacted: a read at that revision fails the same way. */
async function startIsCompacted(r: V1Request, create: GrpcMessage): Promise<boolean> {
  try {
    const range = { key: create.key, range_end: create.range_end, revision: create.start_revision, count_only: true };
    await r.etcd.unary('KV', 'Range', range, { idempotent: true, metadata: r.metadata, signal: r.signal });
    return false;
  } catch (err) {
    const e = fromGrpcError(err);
    if (e.code === GrpcCode.OUT_OF_RANGE && /compacted/.test(e.message)) return true;
    // A future revision is a fine place to start a watch; anything else the watch itself will report.
    return false;
  }
}

/**
 * Serves one watch stream. `key` is the decoded key (for ?prefix, the prefix). Everything the client
 * asked for is checked first (400 naming the parameter, 403, 429, thrown for the router to answer); a
 * start that is known to be compacted gets 410 before the stream begins.
 */
async function serveWatch(r: V1Request, key: Buffer, settings: WatchSettings): Promise<void> {
  const ask = readAsk(r.req, r.query, key);
  await admitted(r, 'Watch_Watch', { create_request: ask.create });
  const { hub, limits } = settings;
  if (hub.stats().connections >= limits.maxConnections) {
    throw new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: too many watch connections (limit ${limits.maxConnections})`);
  }
  const knownCompacted = ask.start ? await startIsCompacted(r, ask.create) : false;
  if (r.signal.aborted) return;
  const quota = settings.admission?.watchQuota(r.req);
  try {
    Admission.checkWatches(quota, 1);
  } catch (err) {
    quota?.detach();
    throw err;
  }
  new WatchStream(r, ask, settings, knownCompacted, quota).start();
}

export function watchHandlers(settings: WatchSettings): Record<string, V1Handler> {
  return {
    V1_Watch: (r) => serveWatch(r, pathBytes(r.params.key, 'key'), settings),
  };
}

class WatchStream {
  private connection?: WatchConnection;
  private streaming = false;
  private ended = false;
  /** The revision of the last event sent, and how many of its events were sent. */
  private revision = 0n;
  private indexInRevision = 0;
  /** Events of the resume revision still to skip (the client has them). */
  private skip: number;
  private skipRevision: bigint;
  private timers: NodeJS.Timeout[] = [];
  /** A progress revision from etcd, sent only if a whole interval passes without an event. */
  private candidate?: bigint;

  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  private readonly metadata?: grpc.Metadata;
  /** Paced, coalesced writes (streams/outbox.ts): events and heartbeats go through it, in order. */
  private readonly outbox: Outbox;
  /** A client that stops reading with more than the send buffer waiting is cut off even when nothing
   *  more comes for it (a resume's catch-up is often the last thing for a while). */
  private readonly stall: StallWatch;

  constructor(
    r: V1Request,
    private readonly ask: WatchAsk,
    private readonly settings: WatchSettings,
    /** The start is compacted: wait for etcd's cancel and answer 410 with its compact revision. */
    private readonly knownCompacted: boolean,
    /** Its client's watches (admission.ts), which this stream's watch counts in. */
    private readonly quota?: WatchQuota,
  ) {
    this.req = r.req;
    this.res = r.res;
    this.outbox = new Outbox((data) => {
      if (!this.res.writableEnded && !this.res.destroyed) this.res.write(data);
    });
    const limit = settings.limits.sendBufferBytes;
    this.stall = new StallWatch(() => this.res.writableLength + this.outbox.bytes, limit, () => {
      // It reads nothing: the last message would never arrive, and what waits is let go now.
      this.finish(errorMessage(this.tooSlow()));
      this.res.destroy();
    });
    this.metadata = r.metadata;
    this.skip = ask.start?.skip ?? 0;
    this.skipRevision = ask.start?.revision ?? 0n;
    if (ask.start) this.revision = ask.start.revision - 1n;
  }

  start(): void {
    this.connection = this.settings.hub.connect(
      { deliver: (response) => this.deliver(response), deliverShared: (response, watchId) => this.deliverShared(response, watchId) },
      this.metadata,
      this.quota,
    );
    this.res.once('close', () => this.stop());
    this.connection.request({ create_request: this.ask.create });
  }

  private stop(): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) clearInterval(t);
    this.stall.stop();
    this.outbox.close();
    this.connection?.close();
  }

  /** Ends the stream after `last` (a compaction, an error): the client must act before it comes back. */
  private finish(last?: WatchMessage): void {
    this.outbox.flush();
    if (last) this.res.write(frame(this.ask.format, last));
    this.res.end();
    this.stop();
  }

  private beginStreaming(createdRevision: bigint): void {
    this.streaming = true;
    const sse = this.ask.format === 'sse';
    this.res.writeHead(200, {
      'Content-Type': sse ? `${SSE_CONTENT_TYPE}; charset=utf-8` : NDJSON_CONTENT_TYPE,
      'Cache-Control': 'no-store',
      // Proxies that buffer answers (nginx) would hold events back.
      'X-Accel-Buffering': 'no',
    });
    this.req.socket.setNoDelay(true);
    if (sse) {
      this.res.write(`retry: ${SSE_RETRY_MS}\n\n`);
      this.timers.push(setInterval(() => this.write(': heartbeat\n\n'), this.settings.watchHeartbeatMs));
    }
    // From now: the creation revision is a resume point at once, so a client that reconnects before
    // the first change misses nothing.
    if (!this.ask.start) this.progress(createdRevision);
    if (this.ask.progressMs > 0) this.timers.push(setInterval(() => this.progressTick(), this.ask.progressMs));
  }

  private deliver(response: GrpcMessage): void {
    if (this.ended) return;
    const header = response.header as { revision?: string } | null | undefined;
    const headerRevision = BigInt(header?.revision ?? '0');
    if (response.canceled) return this.canceled(response);
    if (response.created) {
      if (!this.knownCompacted) this.beginStreaming(headerRevision);
      return;
    }
    if (!this.streaming) return;
    const events = (response.events as GrpcMessage[] | undefined) ?? [];
    if (events.length === 0) {
      if (response.watch_id === '-1') this.candidate = headerRevision;
      else this.progress(headerRevision);
      return;
    }
    this.candidate = undefined;
    let out = '';
    for (const event of events) {
      const rev = BigInt((event.kv as EtcdKeyValue).mod_revision ?? '0');
      if (rev === this.revision) this.indexInRevision++;
      else {
        this.revision = rev;
        this.indexInRevision = 0;
      }
      if (rev === this.skipRevision && this.indexInRevision < this.skip) continue;
      out += frame(this.ask.format, eventMessage(event, `${rev}.${this.indexInRevision}`));
    }
    if (out) this.write(out);
  }

  /** A response of a shared watch: its events are framed once for all the clients that get it, unless
   *  this client is inside a revision (a resume skipping events it has) and needs its own ids. */
  private deliverShared(shared: SharedResponse, watchId: string): void {
    const response = shared.response;
    const events = response.events as GrpcMessage[] | undefined;
    if (this.ended || !this.streaming || response.canceled || response.created || !events || events.length === 0) {
      this.deliver({ ...response, watch_id: watchId });
      return;
    }
    const framed = shared.memo(SHARED_FORMS[this.ask.format], (r) => sharedFrames(this.ask.format, r));
    if (framed.firstRevision <= this.revision || (this.skip > 0 && this.skipRevision >= framed.firstRevision)) {
      this.deliver({ ...response, watch_id: watchId });
      return;
    }
    this.candidate = undefined;
    this.revision = framed.lastRevision;
    this.indexInRevision = framed.lastCount - 1;
    this.write(framed.bytes);
  }

  /** A progress message for `revision`, when it moves the client's resume point forward (etcd 3.4
   *  may answer a progress request with a revision below an event it already sent). */
  private progress(revision: bigint): void {
    if (revision <= this.revision) return;
    this.revision = revision;
    this.indexInRevision = 0;
    this.write(frame(this.ask.format, { type: 'progress', id: revision.toString(), revision: Number(revision) }));
  }

  /** Every interval: send what etcd answered to the previous ask, if no event came since; ask again. */
  private progressTick(): void {
    if (this.candidate !== undefined) this.progress(this.candidate);
    this.candidate = undefined;
    this.connection?.request({ progress_request: {} });
  }

  private canceled(response: GrpcMessage): void {
    const compactRevision = revisionNumber(response.compact_revision as string | undefined);
    const reason = String(response.cancel_reason ?? '');
    if (!this.streaming) {
      this.stop();
      const p = compactRevision
        ? problem(410, `revision ${this.ask.create.start_revision as string} has been compacted; read the current state, then watch from its revision`, { compact_revision: compactRevision })
        : refusalProblem(reason);
      sendProblem(this.res, p);
      return;
    }
    if (compactRevision) {
      this.finish({ type: 'compacted', compact_revision: compactRevision, detail: `the revisions this watch still needed are compacted (up to ${compactRevision}); read the current state, then watch from its revision` });
      return;
    }
    this.finish(errorMessage(problem(503, reason || 'etcd ended the watch', { code: GrpcCode.UNAVAILABLE })));
  }

  /** Writes, or cuts off a client that leaves too much unread (it resumes from its last id). What waits
   *  in the outbox does not count: it waits for the gateway, not for the client. */
  private write(text: string | Buffer): void {
    if (this.ended) return;
    if (this.res.writableLength > this.settings.limits.sendBufferBytes) {
      this.finish(errorMessage(this.tooSlow()));
      setTimeout(() => this.res.destroy(), 10_000).unref();
      return;
    }
    const bytes = typeof text === 'string' ? Buffer.from(text) : text;
    this.outbox.push(bytes);
    this.stall.wrote(bytes.length);
  }

  private tooSlow(): Problem {
    return problem(429, `gateway: watch consumer too slow: more than ${this.settings.limits.sendBufferBytes} bytes waiting to be sent; resume from the last event id`, { code: GrpcCode.RESOURCE_EXHAUSTED });
  }
}

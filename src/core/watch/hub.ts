// One watch hub per process. Client watches (from HTTP streams and WebSockets) are multiplexed onto a
// few long-lived etcd Watch streams, and identical ones share one watch inside etcd: same etcd identity,
// key, range end, filters, prev_kv, progress_notify and fragment. Each event then crosses the gRPC
// connection once, is decoded once and encoded to JSON once per format, whatever the number of clients.
//
// A client watch without a start revision joins a running shared watch at once, from the last revision
// the shared watch has seen. One whose start revision the shared watch has already passed catches up on
// an etcd watch of its own, then moves onto the shared watch at the first revision both have delivered,
// so it sees each revision once and a revision's events (a txn) never split.
//
// Watches are lossless: when an etcd stream breaks, every etcd watch on it is created again from the
// revision after the last one it delivered — once for all the clients sharing it — so each revision
// reaches every client exactly once, in order. The etcd3 client's own watcher is not used: it resumes
// from the wrong revision and loses events (reference: etcd3-client.md §2).

import * as grpc from '@grpc/grpc-js';
import { endStream, type EtcdClient } from '../../etcd/client';
import type { GrpcMessage } from '../context';
import type { WatchQuota } from '../admission';

/** Where a connection's answers go: one WatchResponse (gRPC form, client's watch_id) at a time. A sink
 *  that implements `deliverShared` gets the responses of shared watches in that form instead, so it can
 *  encode each one once for all its clients. */
export interface WatchSink {
  deliver(response: GrpcMessage): void;
  deliverShared?(response: SharedResponse, watchId: string): void;
}

export interface WatchHubOptions {
  /** etcd streams per identity; shared watches and client connections are spread over them. */
  streams: number;
  maxWatchesPerConnection: number;
}

export interface WatchStats {
  connections: number;
  watches: number;
  /** Watches inside etcd: one per shared watch, plus catch-ups in progress. */
  etcdWatches: number;
  etcdStreams: number;
  eventsDelivered: number;
  resumes: number;
  streamBreaks: number;
}

interface Header {
  revision?: string;
}

interface WatchResponseMsg extends GrpcMessage {
  header: Header | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: Array<{ kv: { mod_revision: string } | null }>;
}

const NO_WATCH = '-1';
const DUPLICATE_REASON = 'mvcc: duplicate watch ID provided on the WatchStream';
/** Stands for the client's watch_id in a shared encoding: an int64 no watch ID can be (etcd's are ≥ 0,
 *  and -1 is never sent for a watch with events). */
const WATCH_ID_MARK = '-9223372036854775808';
const MARKED_FIELD = `"watch_id":"${WATCH_ID_MARK}"`;

/** A way to write a WatchResponse to clients (the `{"result": ...}` JSON of WebSockets and HTTP streams). */
export interface WatchFormat {
  encodeResult(response: GrpcMessage): string;
}

/** One response of a shared watch, without a watch_id, with its encodings memoized per format. */
export class SharedResponse {
  private readonly forms = new Map<object, { marked: string; at: number; zero?: string; bytes?: Map<string, Buffer> }>();
  private made?: Map<object, unknown>;

  constructor(readonly response: GrpcMessage) {}

  /** What `make` builds from this response, built once per `key` for all the clients that get it: for
   *  a form that is not a `WatchFormat` result (the /v1/ streams' SSE and NDJSON). */
  memo<T>(key: object, make: (response: GrpcMessage) => T): T {
    this.made ??= new Map();
    let made = this.made.get(key) as T | undefined;
    if (made === undefined) this.made.set(key, (made = make(this.response)));
    return made;
  }

  /** The response as `format.encodeResult` writes it for `watchId`, the event encoded once per format:
   *  encoded with a mark in place of the watch_id, the mark is replaced by each client's ID (or, for
   *  ID 0, which the encoding omits as a zero value, the field is cut out). */
  encodedFor(format: WatchFormat, watchId: string): string {
    const form = this.form(format);
    const { marked, at } = form;
    if (at < 0) return marked;
    if (watchId !== '0') return marked.slice(0, at + 12) + watchId + marked.slice(at + 12 + WATCH_ID_MARK.length);
    if (form.zero === undefined) {
      const end = at + MARKED_FIELD.length;
      form.zero = marked[end] === ',' ? marked.slice(0, at) + marked.slice(end + 1) : marked.slice(0, at - (marked[at - 1] === ',' ? 1 : 0)) + marked.slice(end);
    }
    return form.zero;
  }

  /** The same as UTF-8 bytes, made once per format and watch_id: the clients with the same ID (most
   *  have only watch 0) are all written one Buffer. */
  bytesFor(format: WatchFormat, watchId: string): Buffer {
    const form = this.form(format);
    form.bytes ??= new Map();
    let bytes = form.bytes.get(watchId);
    if (!bytes) {
      bytes = Buffer.from(this.encodedFor(format, watchId));
      form.bytes.set(watchId, bytes);
    }
    return bytes;
  }

  private form(format: WatchFormat): { marked: string; at: number; zero?: string; bytes?: Map<string, Buffer> } {
    let form = this.forms.get(format);
    if (!form) {
      const marked = format.encodeResult({ ...this.response, watch_id: WATCH_ID_MARK });
      form = { marked, at: marked.indexOf(MARKED_FIELD) };
      this.forms.set(format, form);
    }
    return form;
  }
}

/** What a client receives: a response of a shared watch or one built for it alone. */
type Delivery = SharedResponse | GrpcMessage;

/** One watch of one client (an ID on its connection). Its events come from `source`: the shared watch it
 *  is a member of, or its own catch-up watch. */
class ClientWatch {
  source?: EtcdWatch;
  /** The first revision the client still needs: a member skips the shared watch's events before it.
   *  0n once it has had a whole batch: nothing is left to skip, and every member then points to the one
   *  0n, so a fan-out to thousands of members does not load a BigInt of each from memory. */
  from = 0n;
  /** Its created answer, once known (null: a place in line with nothing to send); until it is sent,
   *  the client's events wait in `held`. */
  answer?: GrpcMessage | null;
  announced = false;
  held?: Delivery[];
  /** The client canceled it (or it ended): nothing more is delivered to it. */
  done = false;
  /** A cancel that came before the created answer went out: the place in line of its answer. */
  cancelPlace?: ClientWatch;

  constructor(
    readonly connection: WatchConnection,
    readonly clientId: string,
    readonly create: GrpcMessage,
    readonly shareKey: string,
  ) {}

  get startRevision(): bigint {
    return BigInt((this.create.start_revision as string | undefined) ?? '0');
  }
}

type EtcdWatchKind = 'shared' | 'catch-up' | 'duplicate';

/** One watch inside etcd: shared by its members, or a client's own catch-up (then promoted to shared
 *  when no shared watch exists to move onto), or a duplicate ID's create answered and dropped. */
class EtcdWatch {
  etcdId = '';
  state: 'creating' | 'active' | 'canceling' = 'creating';
  /** etcd answered its create once: a create after a broken stream resumes instead of starting over. */
  announced = false;
  /** The last revision delivered completely (0n: none yet). */
  delivered = 0n;
  /** The highest header revision seen: a client joining "from now" starts after it. */
  seen = 0n;
  /** Fragments of one revision are held until the last arrives, so a break never splits a revision. */
  fragments?: WatchResponseMsg[];
  /** Its clients: one in a field, or all of them in a Set made when a second one comes (a watch on a
   *  key nobody else watches has one client, and a Set would cost it more than the rest). */
  private one?: ClientWatch;
  private more?: Set<ClientWatch>;
  /** Clients with a start revision waiting for this watch's created answer to know where it stands.
   *  (This and `fragments` exist only when needed: tens of thousands of watches are held at once.) */
  waiting?: ClientWatch[];

  constructor(
    readonly stream: EtcdWatchStream,
    public kind: EtcdWatchKind,
    /** The create sent to etcd (no watch_id). */
    readonly create: GrpcMessage,
    readonly shareKey: string,
  ) {
    const start = this.startRevision;
    if (start > 0n) this.delivered = start - 1n;
  }

  get startRevision(): bigint {
    return BigInt((this.create.start_revision as string | undefined) ?? '0');
  }

  /** Where this watch stands is known: for a watch from now, only once etcd said when it was created. */
  get positioned(): boolean {
    return this.announced || this.startRevision > 0n;
  }

  /** Where a re-created watch must start so its clients miss nothing and see nothing twice. */
  resumeRevision(): bigint {
    return this.delivered + 1n > this.startRevision ? this.delivered + 1n : this.startRevision;
  }

  noteHeader(header: Header | null): void {
    if (!header) return;
    const rev = BigInt(header.revision ?? '0');
    if (rev > this.seen) this.seen = rev;
  }

  /** A header for the gateway's own answers about this watch: its stream's member, at the revision
   *  this watch has seen (the stream keeps the header, so that a watch does not). */
  header(): Header | null {
    const latest = this.stream.lastHeader;
    return latest ? { ...latest, revision: this.seen.toString() } : null;
  }

  addMember(watch: ClientWatch): void {
    if (this.more) this.more.add(watch);
    else if (!this.one || this.one === watch) this.one = watch;
    else {
      this.more = new Set([this.one, watch]);
      this.one = undefined;
    }
  }

  deleteMember(watch: ClientWatch): void {
    if (this.more) this.more.delete(watch);
    else if (this.one === watch) this.one = undefined;
  }

  get memberCount(): number {
    return this.more ? this.more.size : this.one ? 1 : 0;
  }

  members(): Iterable<ClientWatch> {
    return this.more ?? (this.one ? [this.one] : []);
  }

  clearMembers(): void {
    this.one = undefined;
    this.more = undefined;
  }

  get idle(): boolean {
    return this.memberCount === 0 && !this.waiting?.length;
  }
}

/** One etcd Watch stream, carrying the etcd watches of one identity assigned to it. */
class EtcdWatchStream {
  private call?: grpc.ClientDuplexStream<unknown, unknown>;
  private host = 0;
  /** The header of the latest answer on this stream. */
  lastHeader: Header | null = null;
  private nextEtcdId = 1;
  readonly watches = new Map<string, EtcdWatch>();
  /** Creates in flight, in order: etcd answers them in order, and a refused one carries watch_id -1. */
  private pendingCreates: EtcdWatch[] = [];
  /** Progress requests waiting for their answer (watch_id -1), in the order they were asked. */
  private pendingProgress: ClientWatch[] = [];
  /** Client connections whose progress requests and duplicate creates go here. */
  readonly connections = new Set<WatchConnection>();
  private retryDelayMs = 100;
  private reopenTimer?: NodeJS.Timeout;
  /** etcd watches and progress askers waiting for the stream to be opened again after a break. */
  private toResume: EtcdWatch[] = [];
  private progressToResend: ClientWatch[] = [];
  private closed = false;

  constructor(
    private readonly hub: WatchHub,
    private readonly etcd: EtcdClient,
    /** The etcd identity (auth token) every watch on this stream runs as. */
    private readonly credentials: grpc.Metadata | undefined,
  ) {}

  private ensureOpen(): grpc.ClientDuplexStream<unknown, unknown> {
    if (this.call) return this.call;
    const md = (this.credentials ?? this.etcd.defaultMetadata())?.clone() ?? new grpc.Metadata();
    // A member that loses its leader ends the stream instead of going silent, and the watches move on.
    md.set('hasleader', 'true');
    const { call, host } = this.etcd.openStream('Watch', 'Watch', md);
    this.call = call;
    this.host = host;
    call.on('data', (msg: unknown) => {
      this.retryDelayMs = 100;
      this.onResponse(msg as WatchResponseMsg);
    });
    const broken = (): void => this.onBroken(call);
    call.on('error', broken);
    call.on('end', broken);
    return call;
  }

  private send(request: GrpcMessage): void {
    this.ensureOpen().write(request);
  }

  add(watch: EtcdWatch): void {
    watch.etcdId = String(this.nextEtcdId++);
    this.watches.set(watch.etcdId, watch);
    this.pendingCreates.push(watch);
    const create: GrpcMessage = { ...watch.create, watch_id: watch.etcdId };
    if (watch.announced) create.start_revision = watch.resumeRevision().toString();
    this.send({ create_request: create });
  }

  cancel(watch: EtcdWatch): void {
    watch.state = 'canceling';
    this.send({ cancel_request: { watch_id: watch.etcdId } });
  }

  progress(asker: ClientWatch): void {
    this.pendingProgress.push(asker);
    this.send({ progress_request: {} });
  }

  private onResponse(msg: WatchResponseMsg): void {
    if (msg.header) this.lastHeader = msg.header;
    if (msg.created) return this.onCreated(msg);
    if (msg.watch_id === NO_WATCH) {
      const asker = this.pendingProgress.shift();
      if (asker && !asker.connection.closed) asker.connection.answered(asker, msg);
      return;
    }
    const watch = this.watches.get(msg.watch_id);
    if (!watch) return;
    if (msg.canceled) {
      this.watches.delete(watch.etcdId);
      if (watch.state !== 'canceling') {
        // etcd 3.4 keeps counting a watcher it canceled for compaction until the stream cancels it too.
        this.send({ cancel_request: { watch_id: watch.etcdId } });
        this.hub.ended(watch, msg);
      }
      this.releaseIfUnused();
      return;
    }
    if (watch.state === 'canceling') return;
    if (msg.fragment) {
      (watch.fragments ??= []).push(msg);
      return;
    }
    const batch = watch.fragments ? [...watch.fragments, msg] : [msg];
    watch.fragments = undefined;
    watch.noteHeader(msg.header);
    const events = batch.length === 1 ? msg.events : batch.flatMap((m) => m.events);
    if (events.length === 0) {
      // A progress notification: the watch is synced up to the header's revision.
      const rev = BigInt(msg.header?.revision ?? '0');
      if (rev > watch.delivered) watch.delivered = rev;
      this.hub.fanOut(watch, batch, 0n, 0n);
      return;
    }
    const revision = (e: (typeof events)[number]): bigint => BigInt(e.kv?.mod_revision ?? '0');
    if (revision(events[0]) <= watch.delivered) {
      // A safety net: after a resume etcd starts past what was delivered, so this should not happen.
      const fresh = events.filter((e) => revision(e) > watch.delivered);
      if (fresh.length === 0) return;
      batch.splice(0, batch.length, { ...msg, fragment: false, events: fresh });
      events.splice(0, events.length, ...fresh);
    }
    const first = revision(events[0]);
    const last = revision(events[events.length - 1]);
    watch.delivered = last;
    this.hub.fanOut(watch, batch, first, last);
  }

  private onCreated(msg: WatchResponseMsg): void {
    const watch = this.pendingCreates.shift();
    if (!watch) return;
    if (msg.watch_id === NO_WATCH) {
      // etcd refused the create (auth, ...): its clients get etcd's answer as is.
      this.watches.delete(watch.etcdId);
      if (watch.state !== 'canceling') this.hub.refused(watch, msg);
      this.releaseIfUnused();
      return;
    }
    if (watch.state === 'canceling') return;
    watch.state = 'active';
    watch.noteHeader(msg.header);
    if (watch.announced) {
      this.hub.resumes += watch.memberCount;
      return;
    }
    watch.announced = true;
    // Watching "from now": everything up to the creation revision is, by definition, seen.
    if (watch.startRevision === 0n) watch.delivered = watch.seen;
    this.hub.created(watch, msg);
  }

  private onBroken(call: grpc.ClientDuplexStream<unknown, unknown>): void {
    if (call !== this.call) return;
    this.call = undefined;
    call.removeAllListeners('data');
    call.cancel();
    if (this.closed) return;
    this.etcd.streamFailed(this.host);
    this.hub.streamBreaks++;
    // A watch being canceled is gone with the stream; every other one is created again, once.
    for (const w of this.watches.values()) if (w.state !== 'canceling') this.toResume.push(w);
    this.progressToResend.push(...this.pendingProgress);
    this.watches.clear();
    this.pendingCreates = [];
    this.pendingProgress = [];
    if (this.reopenTimer || this.releaseIfUnused()) return;
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, 2_000);
    this.reopenTimer = setTimeout(() => this.resume(), delay);
  }

  private resume(): void {
    this.reopenTimer = undefined;
    if (this.closed) return;
    const watches = this.toResume;
    const progress = this.progressToResend;
    this.toResume = [];
    this.progressToResend = [];
    for (const w of watches) {
      if (w.state === 'canceling') continue;
      w.fragments = undefined;
      w.state = 'creating';
      this.add(w);
    }
    for (const asker of progress) if (!asker.connection.closed) this.progress(asker);
    this.releaseIfUnused();
  }

  /** A watch nobody needs any more leaves etcd. */
  drop(watch: EtcdWatch): void {
    const i = this.toResume.indexOf(watch);
    if (i >= 0) {
      this.toResume.splice(i, 1);
      watch.state = 'canceling';
    } else if (watch.state !== 'canceling') {
      this.cancel(watch);
    }
    this.releaseIfUnused();
  }

  detach(connection: WatchConnection): void {
    this.connections.delete(connection);
    this.releaseIfUnused();
  }

  /** Ends the stream once no connection and no watch uses it; true when it did. */
  private releaseIfUnused(): boolean {
    if (this.closed) return true;
    if (this.connections.size > 0 || this.watches.size > 0 || this.toResume.some((w) => w.state !== 'canceling')) return false;
    this.closed = true;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    endStream(this.call);
    this.call = undefined;
    this.hub.streamReleased(this);
    return true;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** One string object for each small watch ID: the IDs of thousands of connections (mostly "0") are
 *  then one string, not one each, and looking up a shared answer's frame by it reads memory already at
 *  hand instead of each connection's own copy. */
const SMALL_IDS = Array.from({ length: 256 }, (_, i) => String(i));
function interned(id: string): string {
  const n = Number(id);
  return Number.isInteger(n) && n >= 0 && n < SMALL_IDS.length && SMALL_IDS[n] === id ? SMALL_IDS[n] : id;
}

/** The watches of one client connection (an HTTP watch stream or a WebSocket). */
export class WatchConnection {
  private readonly watches = new Map<string, ClientWatch>();
  private nextId = 0n;
  closed = false;
  /** Creates in request order whose created answer has not gone out: answers keep that order, as
   *  etcd's do (a client that lets the server pick IDs matches answers to creates by order). */
  private unanswered?: ClientWatch[];

  constructor(
    private readonly hub: WatchHub,
    readonly identity: string,
    readonly credentials: grpc.Metadata | undefined,
    private readonly home: EtcdWatchStream,
    private readonly sink: WatchSink,
    /** The watches its client may hold across all its connections (admission.ts); undefined: no cap. */
    private readonly quota?: WatchQuota,
  ) {}

  get size(): number {
    return this.watches.size;
  }

  /** An answer of the gateway's own (a refusal, a cancel) keeps its place after the created answers
   *  still due for earlier creates. */
  private answerInOrder(answer: GrpcMessage): void {
    this.answered(this.placeInLine(), answer);
  }

  /** A place among the answers due, for an answer that is no watch's created answer. */
  private placeInLine(): ClientWatch {
    const place = new ClientWatch(this, NO_WATCH, {}, '');
    place.done = true;
    this.inLine(place);
    return place;
  }

  private inLine(watch: ClientWatch): void {
    (this.unanswered ??= []).push(watch);
  }

  /** Sends one of a watch's responses, after its created answer. */
  deliver(watch: ClientWatch, response: Delivery): void {
    if (this.closed || watch.done) return;
    if (!watch.announced) (watch.held ??= []).push(response);
    else this.send(watch, response);
  }

  private send(watch: ClientWatch, response: Delivery): void {
    if (response instanceof SharedResponse) {
      if (this.sink.deliverShared) this.sink.deliverShared(response, watch.clientId);
      else this.sink.deliver({ ...response.response, watch_id: watch.clientId });
    } else this.sink.deliver(response);
  }

  /** The created answer of `watch` is known; answers go out in request order. */
  answered(watch: ClientWatch, answer: GrpcMessage | null): void {
    watch.answer = answer;
    while (this.unanswered && this.unanswered[0].answer !== undefined) {
      const w = this.unanswered.shift() as ClientWatch;
      // Dropped once empty: an array that held something keeps its backing store, ~150 bytes a client.
      if (this.unanswered.length === 0) this.unanswered = undefined;
      if (this.closed) continue;
      if (w.answer) this.sink.deliver(w.answer);
      w.announced = true;
      const held = w.held;
      w.held = undefined;
      // The created answer is not kept: answered, the watch no longer needs it.
      w.answer = null;
      // What was held was due before the watch ended, if it did.
      if (held) for (const r of held) this.send(w, r);
      // A cancel asked for meanwhile is answered in its own place (nothing, if the watch ended).
      if (w.cancelPlace) {
        if (w.done) this.answered(w.cancelPlace, null);
        else this.cancelNow(w, w.cancelPlace);
      }
    }
  }

  /** Handles one decoded WatchRequest from the client. */
  request(req: GrpcMessage): void {
    if (this.closed) return;
    if (req.create_request) this.create(req.create_request as GrpcMessage);
    else if (req.cancel_request) this.cancel(String((req.cancel_request as GrpcMessage).watch_id ?? '0'));
    else if (req.progress_request) {
      // Answered in its place among the created answers, as etcd answers on one stream.
      this.home.progress(this.placeInLine());
    }
  }

  private create(create: GrpcMessage): void {
    const wanted = String(create.watch_id ?? '0');
    // The client's watch_id names the watch on this connection only; etcd sees the hub's own IDs.
    const rest = { ...create };
    delete rest.watch_id;
    if (this.watches.size >= this.hub.options.maxWatchesPerConnection) {
      this.answerInOrder({
        watch_id: NO_WATCH,
        created: true,
        canceled: true,
        cancel_reason: `gateway: too many watches on this connection (limit ${this.hub.options.maxWatchesPerConnection})`,
      });
      return;
    }
    if (this.quota?.full) {
      this.answerInOrder({ watch_id: NO_WATCH, created: true, canceled: true, cancel_reason: this.quota.reason });
      return;
    }
    let id: string;
    if (wanted !== '0') {
      id = interned(wanted);
      if (this.watches.has(id)) {
        // etcd answers a duplicate ID after creating and dropping the watch: asked of etcd the same way,
        // so the answer carries etcd's header.
        const duplicate = new ClientWatch(this, id, rest, '');
        this.inLine(duplicate);
        this.hub.duplicate(duplicate, this.home);
        return;
      }
    } else {
      // Assigned as etcd assigns them on one stream: the lowest free number from a moving counter.
      while (this.watches.has(this.nextId.toString())) this.nextId++;
      id = interned(this.nextId.toString());
      this.nextId++;
    }
    const watch = new ClientWatch(this, id, rest, this.hub.shareKey(this.identity, rest));
    this.watches.set(id, watch);
    this.inLine(watch);
    this.hub.watchCount++;
    if (this.quota) this.quota.used++;
    this.hub.place(watch);
  }

  private cancel(clientId: string): void {
    const watch = this.watches.get(clientId);
    // etcd's gateway sends nothing for a cancel of an unknown watch.
    if (!watch || watch.cancelPlace) return;
    if (!watch.announced) watch.cancelPlace = this.placeInLine();
    else this.cancelNow(watch, this.placeInLine());
  }

  /** The client's cancel, answered by the gateway: the etcd watch may go on for other clients. */
  private cancelNow(watch: ClientWatch, place: ClientWatch): void {
    const header = watch.source?.header() ?? null;
    this.forget(watch);
    this.hub.leave(watch);
    this.answered(place, { header, watch_id: watch.clientId, canceled: true });
  }

  /** etcd ended the watch under `watch` (compaction, server side): tell the client, forget it. */
  ended(watch: ClientWatch, msg: GrpcMessage): void {
    this.deliver(watch, { ...msg, watch_id: watch.clientId });
    this.forget(watch);
  }

  /** etcd refused the create: the client gets etcd's answer as is. */
  refused(watch: ClientWatch, msg: GrpcMessage): void {
    this.forget(watch);
    this.answered(watch, msg);
  }

  private forget(watch: ClientWatch): void {
    watch.done = true;
    if (this.watches.get(watch.clientId) === watch) {
      this.watches.delete(watch.clientId);
      this.hub.watchCount--;
      if (this.quota) this.quota.used--;
    }
  }

  /** The client went away: its watches leave their etcd watches. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watch of this.watches.values()) {
      watch.done = true;
      this.hub.watchCount--;
      this.hub.leave(watch);
    }
    if (this.quota) {
      this.quota.used -= this.watches.size;
      this.quota.detach();
    }
    for (const watch of this.unanswered ?? []) if (watch.source) this.hub.leave(watch);
    this.watches.clear();
    this.unanswered = undefined;
    this.hub.connectionClosed(this);
    this.home.detach(this);
  }
}

export class WatchHub {
  /** etcd streams per etcd identity: watches under one auth token never ride another's stream. */
  private readonly pools = new Map<string, Array<EtcdWatchStream | undefined>>();
  /** Shared watches by identity and what they watch: a watch is shared only by clients that would have
   *  made the very same watch with the same etcd credentials, so etcd checked it for all of them. */
  private readonly shared = new Map<string, EtcdWatch>();
  /** Catch-up watches by the share key they will move onto. */
  private readonly catchUps = new Map<string, Set<EtcdWatch>>();
  private nextSlot = 0;
  private connectionCount = 0;
  private etcdWatchCount = 0;
  watchCount = 0;
  eventsDelivered = 0;
  resumes = 0;
  streamBreaks = 0;

  constructor(
    private readonly etcd: EtcdClient,
    readonly options: WatchHubOptions,
  ) {}

  /** A new client connection, homed on one of the etcd streams of its identity. */
  connect(sink: WatchSink, credentials?: grpc.Metadata, quota?: WatchQuota): WatchConnection {
    const identity = credentials ? JSON.stringify(credentials.toJSON()) : '';
    const home = this.stream(identity, credentials);
    const connection = new WatchConnection(this, identity, credentials, home, sink, quota);
    home.connections.add(connection);
    this.connectionCount++;
    return connection;
  }

  /** The next etcd stream of an identity, round robin. */
  private stream(identity: string, credentials: grpc.Metadata | undefined): EtcdWatchStream {
    let pool = this.pools.get(identity);
    if (!pool) {
      pool = new Array<EtcdWatchStream | undefined>(this.options.streams).fill(undefined);
      this.pools.set(identity, pool);
    }
    const slot = this.nextSlot % pool.length;
    this.nextSlot = (this.nextSlot + 1) % this.options.streams;
    let stream = pool[slot];
    if (!stream || stream.isClosed) {
      stream = new EtcdWatchStream(this, this.etcd, credentials);
      pool[slot] = stream;
    }
    return stream;
  }

  shareKey(identity: string, create: GrpcMessage): string {
    // latin1 (one character per byte) after the length: distinct ranges stay distinct, in few characters.
    const bytes = (v: unknown): string => (Buffer.isBuffer(v) ? `${v.length}:${v.toString('latin1')}` : '0:');
    const filters = [...new Set((create.filters as number[] | undefined) ?? [])].sort().join(',');
    const flag = (name: string): string => (create[name] ? '1' : '0');
    // Joined rather than concatenated: one flat string, not a tree of pieces, is kept per watch.
    return [identity, '\n', bytes(create.key), bytes(create.range_end), filters, ' ', flag('prev_kv'), flag('progress_notify'), flag('fragment')].join('');
  }

  /** Puts a new client watch on a shared watch, or on a catch-up watch of its own. */
  place(watch: ClientWatch): void {
    const shared = this.shared.get(watch.shareKey);
    const start = watch.startRevision;
    if (!shared) {
      // A start revision may be compacted: the watch that would cancel is its client's own until it
      // delivered something, so clients "from now" never share a watch that etcd refuses at once.
      const created = this.newEtcdWatch(watch, start === 0n ? 'shared' : 'catch-up');
      created.addMember(watch);
      watch.source = created;
      watch.from = start;
      return;
    }
    if (start === 0n) {
      watch.source = shared;
      shared.addMember(watch);
      if (shared.announced) this.join(watch, shared);
      return;
    }
    if (!shared.positioned) {
      watch.source = shared;
      (shared.waiting ??= []).push(watch);
      return;
    }
    this.placeFrom(watch, shared);
  }

  /** A client with a start revision, once the shared watch's position is known. */
  private placeFrom(watch: ClientWatch, shared: EtcdWatch): void {
    const start = watch.startRevision;
    if (start > shared.delivered) {
      watch.source = shared;
      watch.from = start;
      shared.addMember(watch);
      if (shared.announced) watch.connection.answered(watch, { header: shared.header(), watch_id: watch.clientId, created: true });
      return;
    }
    const catchUp = this.newEtcdWatch(watch, 'catch-up');
    catchUp.addMember(watch);
    watch.source = catchUp;
    watch.from = start;
  }

  /** A client "from now" joins an announced shared watch: it sees what comes after the shared watch's
   *  last seen revision, and its created answer says so. */
  private join(watch: ClientWatch, shared: EtcdWatch): void {
    watch.from = shared.seen + 1n;
    watch.connection.answered(watch, { header: shared.header(), watch_id: watch.clientId, created: true });
  }

  private newEtcdWatch(watch: ClientWatch, kind: EtcdWatchKind): EtcdWatch {
    const { identity, credentials } = watch.connection;
    const etcdWatch = new EtcdWatch(this.stream(identity, credentials), kind, watch.create, watch.shareKey);
    if (kind === 'shared') this.shared.set(watch.shareKey, etcdWatch);
    else this.catchingUp(etcdWatch, true);
    this.etcdWatchCount++;
    etcdWatch.stream.add(etcdWatch);
    return etcdWatch;
  }

  duplicate(watch: ClientWatch, home: EtcdWatchStream): void {
    const etcdWatch = new EtcdWatch(home, 'duplicate', watch.create, '');
    etcdWatch.addMember(watch);
    watch.source = etcdWatch;
    this.etcdWatchCount++;
    home.add(etcdWatch);
  }

  /** etcd created `etcdWatch` (the first time): its clients get their created answers. */
  created(etcdWatch: EtcdWatch, msg: WatchResponseMsg): void {
    if (etcdWatch.kind === 'duplicate') {
      const [watch] = etcdWatch.members();
      etcdWatch.clearMembers();
      this.stop(etcdWatch);
      watch.connection.answered(watch, { ...msg, watch_id: NO_WATCH, canceled: true, cancel_reason: DUPLICATE_REASON });
      return;
    }
    for (const watch of etcdWatch.members()) {
      if (watch.startRevision === 0n) watch.from = etcdWatch.seen + 1n;
      watch.connection.answered(watch, { ...msg, watch_id: watch.clientId });
    }
    const waiting = etcdWatch.waiting ?? [];
    etcdWatch.waiting = undefined;
    for (const watch of waiting) if (!watch.done) this.placeFrom(watch, etcdWatch);
    if (etcdWatch.kind === 'shared') this.handOverTo(etcdWatch);
    this.stopIfIdle(etcdWatch);
  }

  /** Hands the events of one revision-complete batch to every member that still needs them. */
  fanOut(etcdWatch: EtcdWatch, batch: WatchResponseMsg[], first: bigint, last: bigint): void {
    if (etcdWatch.memberCount === 0) return;
    const count = first === 0n ? 0 : batch.reduce((n, m) => n + m.events.length, 0);
    let shared: SharedResponse[] | undefined;
    for (const watch of etcdWatch.members()) {
      if (first === 0n || watch.from <= first) {
        if (watch.from !== 0n) watch.from = 0n;
        shared ??= batch.map((m) => new SharedResponse(m));
        for (const r of shared) watch.connection.deliver(watch, r);
        this.eventsDelivered += count;
      } else if (watch.from <= last) {
        // The client starts inside this batch: it gets the revisions from its start, in one message.
        const events = batch.flatMap((m) => m.events).filter((e) => BigInt(e.kv?.mod_revision ?? '0') >= watch.from);
        watch.connection.deliver(watch, { ...batch[batch.length - 1], fragment: false, events, watch_id: watch.clientId });
        this.eventsDelivered += events.length;
      }
    }
    if (etcdWatch.kind === 'catch-up') this.handOver(etcdWatch);
    else this.handOverTo(etcdWatch);
  }

  private catchingUp(catchUp: EtcdWatch, yes: boolean): void {
    let set = this.catchUps.get(catchUp.shareKey);
    if (yes) {
      if (!set) this.catchUps.set(catchUp.shareKey, (set = new Set()));
      set.add(catchUp);
    } else if (set?.delete(catchUp) && set.size === 0) this.catchUps.delete(catchUp.shareKey);
  }

  /** The shared watch moved on: catch-ups that have delivered as far move onto it. */
  private handOverTo(shared: EtcdWatch): void {
    const set = this.catchUps.get(shared.shareKey);
    if (set && this.shared.get(shared.shareKey) === shared) for (const catchUp of set) this.handOver(catchUp);
  }

  /** A catch-up watch that has delivered what the shared watch has already delivered moves its client
   *  onto the shared watch, from the next revision; with no shared watch to move to, it becomes one. */
  private handOver(catchUp: EtcdWatch): void {
    const [watch] = catchUp.members();
    if (!watch) return;
    const shared = this.shared.get(catchUp.shareKey);
    if (!shared) {
      catchUp.kind = 'shared';
      this.catchingUp(catchUp, false);
      this.shared.set(catchUp.shareKey, catchUp);
      return;
    }
    if (!shared.positioned || catchUp.delivered < shared.delivered) return;
    catchUp.deleteMember(watch);
    watch.from = catchUp.delivered + 1n;
    watch.source = shared;
    shared.addMember(watch);
    this.stop(catchUp);
  }

  /** The client watch no longer wants events (canceled, or its connection closed). */
  leave(watch: ClientWatch): void {
    const source = watch.source;
    watch.source = undefined;
    if (!source) return;
    source.deleteMember(watch);
    const i = source.waiting?.indexOf(watch) ?? -1;
    if (i >= 0) source.waiting?.splice(i, 1);
    this.stopIfIdle(source);
  }

  private stopIfIdle(etcdWatch: EtcdWatch): void {
    if (etcdWatch.idle) this.stop(etcdWatch);
  }

  /** Forgets a watch that is gone or going from etcd. */
  private unregister(etcdWatch: EtcdWatch): void {
    if (this.shared.get(etcdWatch.shareKey) === etcdWatch) this.shared.delete(etcdWatch.shareKey);
    if (etcdWatch.kind === 'catch-up') this.catchingUp(etcdWatch, false);
  }

  private stop(etcdWatch: EtcdWatch): void {
    this.unregister(etcdWatch);
    if (etcdWatch.state === 'canceling') return;
    this.etcdWatchCount--;
    etcdWatch.stream.drop(etcdWatch);
  }

  /** etcd ended a watch (compaction, server side): every client on it is told, with its own ID. */
  ended(etcdWatch: EtcdWatch, msg: WatchResponseMsg): void {
    this.gone(etcdWatch, (w) => w.connection.ended(w, msg));
  }

  /** etcd refused a create: every client waiting on it gets etcd's answer. */
  refused(etcdWatch: EtcdWatch, msg: WatchResponseMsg): void {
    this.gone(etcdWatch, (w) => w.connection.refused(w, msg));
  }

  /** Forgets a watch etcd no longer holds, and tells each of its clients. */
  private gone(etcdWatch: EtcdWatch, tell: (watch: ClientWatch) => void): void {
    this.unregister(etcdWatch);
    this.etcdWatchCount--;
    etcdWatch.state = 'canceling';
    const watches = [...etcdWatch.members(), ...(etcdWatch.waiting ?? [])];
    etcdWatch.clearMembers();
    etcdWatch.waiting = undefined;
    for (const w of watches) {
      w.source = undefined;
      tell(w);
    }
  }

  connectionClosed(_c: WatchConnection): void {
    this.connectionCount--;
  }

  streamReleased(stream: EtcdWatchStream): void {
    for (const [identity, pool] of this.pools) {
      const i = pool.indexOf(stream);
      if (i < 0) continue;
      pool[i] = undefined;
      if (pool.every((s) => !s)) this.pools.delete(identity);
    }
  }

  stats(): WatchStats {
    let etcdStreams = 0;
    for (const pool of this.pools.values()) etcdStreams += pool.filter(Boolean).length;
    return {
      connections: this.connectionCount,
      watches: this.watchCount,
      etcdWatches: this.etcdWatchCount,
      etcdStreams,
      eventsDelivered: this.eventsDelivered,
      resumes: this.resumes,
      streamBreaks: this.streamBreaks,
    };
  }
}

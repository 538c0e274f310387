// One watch hub per process. Client watches (from HTTP streams and WebSockets) are multiplexed onto a
// few long-lived etcd Watch streams, and are lossless: when an etcd stream breaks, every watch on it is
// created again from the revision after the last one its client received, so each revision reaches
// the client exactly once, in order. The etcd3 client's own watcher is not used: it resumes from the
// wrong revision and loses events (reference: etcd3-client.md §2).

import * as grpc from '@grpc/grpc-js';
import { endStream, type EtcdClient } from '../etcd/client';
import type { GrpcMessage } from '../api/context';

/** Where a connection's answers go: one WatchResponse (gRPC form, client's watch_id) at a time. */
export interface WatchSink {
  deliver(response: GrpcMessage): void;
}

export interface WatchHubOptions {
  /** etcd streams per identity; client connections are spread over them. */
  streams: number;
  maxWatchesPerConnection: number;
}

export interface WatchStats {
  connections: number;
  watches: number;
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

type WatchState = 'creating' | 'active' | 'canceling' | 'duplicate';

const NO_WATCH = '-1';
const DUPLICATE_REASON = 'mvcc: duplicate watch ID provided on the WatchStream';

class Watch {
  etcdId = '';
  state: WatchState = 'creating';
  /** The client has its `created` answer; a create after a broken stream must not repeat it. */
  announced = false;
  /** A cancel was asked for before the stream broke: send it again once the watch is re-created. */
  resendCancel = false;
  /** Its create is at etcd and unanswered (kept across a resume, so held answers keep their place). */
  createInFlight = false;
  /** The last revision the client has received completely (0n: none yet). */
  delivered = 0n;
  /** Fragments of one revision are held until the last arrives, so a break never splits a revision. */
  fragments: WatchResponseMsg[] = [];

  constructor(
    readonly connection: WatchConnection,
    readonly clientId: string,
    readonly create: GrpcMessage,
  ) {}

  /** Where a re-created watch must start so the client misses nothing and sees nothing twice. */
  resumeRevision(): bigint {
    const start = BigInt((this.create.start_revision as string | undefined) ?? '0');
    return this.delivered >= start ? this.delivered + 1n : start;
  }
}

/** One etcd Watch stream, carrying the watches of the connections assigned to it. */
class EtcdWatchStream {
  private call?: grpc.ClientDuplexStream<unknown, unknown>;
  private host = 0;
  private nextEtcdId = 1;
  readonly watches = new Map<string, Watch>();
  /** Creates in flight, in order: etcd answers them in order, and a refused one carries watch_id -1. */
  private pendingCreates: Watch[] = [];
  /** Connections waiting for a progress answer (watch_id -1), in the order they asked. */
  private pendingProgress: WatchConnection[] = [];
  readonly connections = new Set<WatchConnection>();
  private retryDelayMs = 100;
  private reopenTimer?: NodeJS.Timeout;
  /** Watches and progress askers waiting for the stream to be opened again after a break. */
  private toResume: Watch[] = [];
  private progressToResend: WatchConnection[] = [];
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

  send(request: GrpcMessage): void {
    this.ensureOpen().write(request);
  }

  add(watch: Watch): void {
    watch.etcdId = String(this.nextEtcdId++);
    this.watches.set(watch.etcdId, watch);
    this.pendingCreates.push(watch);
    if (!watch.createInFlight) {
      watch.createInFlight = true;
      watch.connection.createsInFlight++;
    }
    const create: GrpcMessage = { ...watch.create, watch_id: watch.etcdId };
    if (watch.announced) create.start_revision = watch.resumeRevision().toString();
    this.send({ create_request: create });
  }

  cancel(watch: Watch): void {
    watch.state = 'canceling';
    this.send({ cancel_request: { watch_id: watch.etcdId } });
  }

  progress(connection: WatchConnection): void {
    this.pendingProgress.push(connection);
    this.send({ progress_request: {} });
  }

  private onResponse(msg: WatchResponseMsg): void {
    if (msg.created) return this.onCreated(msg);
    if (msg.watch_id === NO_WATCH) {
      const asker = this.pendingProgress.shift();
      if (asker && !asker.closed) asker.deliver(msg);
      return;
    }
    const watch = this.watches.get(msg.watch_id);
    if (!watch) return;
    if (msg.canceled) {
      this.watches.delete(watch.etcdId);
      if (watch.state !== 'duplicate') watch.connection.ended(watch, msg);
      return;
    }
    if (msg.fragment) {
      watch.fragments.push(msg);
      return;
    }
    const batch = watch.fragments.length ? [...watch.fragments, msg] : [msg];
    watch.fragments = [];
    const events = batch.flatMap((m) => m.events);
    if (events.length === 0) {
      // A progress notification: the watch is synced up to the header's revision.
      const rev = BigInt(msg.header?.revision ?? '0');
      if (rev > watch.delivered) watch.delivered = rev;
      watch.connection.deliver({ ...msg, watch_id: watch.clientId });
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
    watch.delivered = revision(events[events.length - 1]);
    this.hub.eventsDelivered += events.length;
    for (const m of batch) watch.connection.deliver({ ...m, watch_id: watch.clientId });
  }

  private onCreated(msg: WatchResponseMsg): void {
    const watch = this.pendingCreates.shift();
    if (!watch) return;
    try {
      this.answerCreate(watch, msg);
    } finally {
      watch.createInFlight = false;
      watch.connection.createAnswered();
    }
  }

  private answerCreate(watch: Watch, msg: WatchResponseMsg): void {
    if (msg.watch_id === NO_WATCH) {
      // etcd refused the create (auth, ...): the client gets etcd's answer as is.
      this.watches.delete(watch.etcdId);
      watch.connection.refused(watch, msg);
      return;
    }
    if (watch.state === 'duplicate') {
      // Forgotten at once: its events and its cancel answer are dropped, and a resume skips it.
      this.watches.delete(watch.etcdId);
      watch.connection.deliver({ ...msg, watch_id: NO_WATCH, canceled: true, cancel_reason: DUPLICATE_REASON });
      this.send({ cancel_request: { watch_id: watch.etcdId } });
      return;
    }
    if (watch.state === 'creating') watch.state = 'active';
    if (watch.resendCancel) {
      watch.resendCancel = false;
      this.send({ cancel_request: { watch_id: watch.etcdId } });
    }
    if (watch.announced) {
      this.hub.resumes++;
      return;
    }
    watch.announced = true;
    if (!watch.create.start_revision || watch.create.start_revision === '0') {
      // Watching "from now": everything up to the creation revision is, by definition, seen.
      watch.delivered = BigInt(msg.header?.revision ?? '0');
    }
    watch.connection.deliver({ ...msg, watch_id: watch.clientId });
  }

  private onBroken(call: grpc.ClientDuplexStream<unknown, unknown>): void {
    if (call !== this.call) return;
    this.call = undefined;
    call.removeAllListeners('data');
    call.cancel();
    if (this.closed) return;
    this.etcd.streamFailed(this.host);
    this.hub.streamBreaks++;
    this.toResume.push(...[...this.watches.values()].filter((w) => !w.connection.closed));
    this.progressToResend.push(...this.pendingProgress);
    this.watches.clear();
    this.pendingCreates = [];
    this.pendingProgress = [];
    if (this.reopenTimer) return;
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
      if (w.connection.closed) continue;
      w.fragments = [];
      if (w.state === 'canceling') w.resendCancel = true;
      else w.state = 'creating';
      this.add(w);
    }
    for (const c of progress) if (!c.closed) this.progress(c);
  }

  /** Ends the stream once no connection uses it. */
  release(connection: WatchConnection): void {
    this.connections.delete(connection);
    if (this.connections.size > 0) return;
    this.closed = true;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    endStream(this.call);
    this.call = undefined;
    this.hub.streamReleased(this);
  }
}

/** The watches of one client connection (an HTTP watch stream or a WebSocket). */
export class WatchConnection {
  private readonly watches = new Map<string, Watch>();
  private nextId = 0n;
  closed = false;
  /** Creates sent to etcd and not answered yet: answers the gateway makes itself wait behind them. */
  createsInFlight = 0;
  private held: GrpcMessage[] = [];

  constructor(
    private readonly hub: WatchHub,
    private readonly stream: EtcdWatchStream,
    private readonly sink: WatchSink,
  ) {}

  get size(): number {
    return this.watches.size;
  }

  /** An answer of the gateway's own (a limit refusal) keeps its place after earlier creates' answers. */
  private answerInOrder(response: GrpcMessage): void {
    if (this.createsInFlight > 0) this.held.push(response);
    else this.deliver(response);
  }

  createAnswered(): void {
    this.createsInFlight--;
    if (this.createsInFlight > 0 || this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    for (const r of held) this.deliver(r);
  }

  deliver(response: GrpcMessage): void {
    if (!this.closed) this.sink.deliver(response);
  }

  /** Handles one decoded WatchRequest from the client. */
  request(req: GrpcMessage): void {
    if (this.closed) return;
    if (req.create_request) this.create(req.create_request as GrpcMessage);
    else if (req.cancel_request) this.cancel(String((req.cancel_request as GrpcMessage).watch_id ?? '0'));
    else if (req.progress_request) this.stream.progress(this);
  }

  private create(create: GrpcMessage): void {
    const wanted = String(create.watch_id ?? '0');
    if (this.watches.size >= this.hub.options.maxWatchesPerConnection) {
      this.answerInOrder({
        watch_id: NO_WATCH,
        created: true,
        canceled: true,
        cancel_reason: `gateway: too many watches on this connection (limit ${this.hub.options.maxWatchesPerConnection})`,
      });
      return;
    }
    let id: string;
    let duplicate = false;
    if (wanted !== '0') {
      id = wanted;
      duplicate = this.watches.has(id);
    } else {
      // Assigned as etcd assigns them on one stream: the lowest free number from a moving counter.
      while (this.watches.has(this.nextId.toString())) this.nextId++;
      id = this.nextId.toString();
      this.nextId++;
    }
    // The client's watch_id names the watch on this connection only; etcd sees the hub's own IDs.
    const rest = { ...create };
    delete rest.watch_id;
    const watch = new Watch(this, id, rest);
    if (duplicate) watch.state = 'duplicate';
    else {
      this.watches.set(id, watch);
      this.hub.watchCount++;
    }
    this.stream.add(watch);
  }

  private cancel(clientId: string): void {
    const watch = this.watches.get(clientId);
    // etcd's gateway sends nothing for a cancel of an unknown watch.
    if (!watch || watch.state === 'canceling') return;
    this.stream.cancel(watch);
  }

  /** etcd ended a watch (client cancel, compaction, server side): tell the client, forget it. */
  ended(watch: Watch, msg: GrpcMessage): void {
    if (this.watches.get(watch.clientId) !== watch) return;
    this.watches.delete(watch.clientId);
    this.hub.watchCount--;
    this.deliver({ ...msg, watch_id: watch.clientId });
  }

  refused(watch: Watch, msg: GrpcMessage): void {
    if (this.watches.get(watch.clientId) === watch) {
      this.watches.delete(watch.clientId);
      this.hub.watchCount--;
    }
    this.deliver(msg);
  }

  /** The client went away: cancel its watches in etcd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watch of this.watches.values()) {
      if (watch.state !== 'canceling') this.stream.cancel(watch);
      this.hub.watchCount--;
    }
    this.watches.clear();
    this.hub.connectionClosed(this);
    this.stream.release(this);
  }
}

export class WatchHub {
  /** Shared etcd streams per etcd identity: watches under one auth token never ride another's stream. */
  private readonly pools = new Map<string, Array<EtcdWatchStream | undefined>>();
  private nextSlot = 0;
  private connectionCount = 0;
  watchCount = 0;
  eventsDelivered = 0;
  resumes = 0;
  streamBreaks = 0;

  constructor(
    private readonly etcd: EtcdClient,
    readonly options: WatchHubOptions,
  ) {}

  /** A new client connection, placed on one of the shared etcd streams of its identity. */
  connect(sink: WatchSink, credentials?: grpc.Metadata): WatchConnection {
    const identity = credentials ? JSON.stringify(credentials.toJSON()) : '';
    let pool = this.pools.get(identity);
    if (!pool) {
      pool = new Array<EtcdWatchStream | undefined>(this.options.streams).fill(undefined);
      this.pools.set(identity, pool);
    }
    const slot = this.nextSlot % pool.length;
    this.nextSlot = (this.nextSlot + 1) % this.options.streams;
    let stream = pool[slot];
    if (!stream) {
      stream = new EtcdWatchStream(this, this.etcd, credentials);
      pool[slot] = stream;
    }
    const connection = new WatchConnection(this, stream, sink);
    stream.connections.add(connection);
    this.connectionCount++;
    return connection;
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
      etcdStreams,
      eventsDelivered: this.eventsDelivered,
      resumes: this.resumes,
      streamBreaks: this.streamBreaks,
    };
  }
}

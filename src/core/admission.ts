// What one client may take of the process: its rate (rate-limit.ts), its open streams, its watches and
// its keepalives in flight. A client is its access-control identity when access control is on, else
// its remote address: the same key for the rate limit and for every cap, so that opening more sockets
// or streams buys a client nothing. Over a cap the answer is 429 naming the cap and its setting.

import { GatewayError, GrpcCode } from './errors';
import type { RequestHead } from './context';
import type { RateLimited, RateLimiter } from './security/rate-limit';

/** Caps per client; absent or 0: no cap. */
export interface ClientCaps {
  /** Open streams: WebSockets, HTTP streams (watch, keepalive, observe, snapshot), /v1/ watches. */
  streams?: number;
  /** Watches created (etcd watches a client holds through the hub), across all its connections. */
  watches?: number;
  /** Keepalive renewals sent to etcd and not yet answered (each ID of a keepalive body counts). */
  keepalives?: number;
}

function capError(what: string, limit: number, setting: string): GatewayError {
  return new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, `gateway: too many ${what} for this client (limit ${limit} per client, ${setting})`, 429);
}

/** The watches of one client, shared by all its connections' WatchConnections (watch-hub.ts), which
 *  take and give back one per watch; gone when the last connection holding it is. */
export class WatchQuota {
  used = 0;
  holders = 1;

  constructor(
    readonly max: number,
    private readonly freed: () => void,
  ) {}

  get full(): boolean {
    return this.used >= this.max;
  }

  /** The reason a create is refused with, when full. */
  get reason(): string {
    return capError('watches', this.max, 'MAX_WATCHES_PER_CLIENT').message;
  }

  /** A connection holding it closed. */
  detach(): void {
    if (--this.holders === 0) this.freed();
  }
}

export class Admission {
  private readonly streams = new Map<string, number>();
  private readonly keepalives = new Map<string, number>();
  private readonly watches = new Map<string, WatchQuota>();

  constructor(
    private readonly opts: {
      clientOf: (req: RequestHead) => string;
      rate?: RateLimiter;
      caps?: ClientCaps;
    },
  ) {}

  get rateLimited(): boolean {
    return this.opts.rate !== undefined;
  }

  /** `count` requests of the request's client, against its rate. */
  charge(req: RequestHead, count = 1): RateLimited | undefined {
    return this.opts.rate?.(this.opts.clientOf(req), count);
  }

  /** One more open stream for the client; returns its release (call it once, when the stream ends),
   *  or throws 429. */
  openStream(req: RequestHead): () => void {
    const cap = this.opts.caps?.streams;
    if (!cap) return noop;
    return this.take(this.streams, this.opts.clientOf(req), 1, cap, () => capError('open streams', cap, 'MAX_STREAMS_PER_CLIENT'));
  }

  /** `count` more keepalives in flight for the client; returns their release, or throws 429. */
  keepalivesInFlight(req: RequestHead, count: number): () => void {
    const cap = this.opts.caps?.keepalives;
    if (!cap) return noop;
    return this.take(this.keepalives, this.opts.clientOf(req), count, cap, () => capError('keepalives in flight', cap, 'MAX_KEEPALIVES_PER_CLIENT'));
  }

  /** The client's watch quota, for one more connection (its WatchConnection detaches it on close). */
  watchQuota(req: RequestHead): WatchQuota | undefined {
    const cap = this.opts.caps?.watches;
    if (!cap) return undefined;
    const key = this.opts.clientOf(req);
    let quota = this.watches.get(key);
    if (quota) quota.holders++;
    else this.watches.set(key, (quota = new WatchQuota(cap, () => this.watches.delete(key))));
    return quota;
  }

  /** Throws 429 unless `count` more watches fit in the quota (a body of creates is refused whole). */
  static checkWatches(quota: WatchQuota | undefined, count: number): void {
    if (quota && count > 0 && quota.used + count > quota.max) throw new GatewayError(GrpcCode.RESOURCE_EXHAUSTED, quota.reason, 429);
  }

  private take(counts: Map<string, number>, key: string, count: number, cap: number, refusal: () => GatewayError): () => void {
    const held = counts.get(key) ?? 0;
    if (held + count > cap) throw refusal();
    counts.set(key, held + count);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (counts.get(key) ?? count) - count;
      if (left > 0) counts.set(key, left);
      else counts.delete(key);
    };
  }
}

function noop(): void {}

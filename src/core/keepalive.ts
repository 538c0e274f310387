// Lease keepalives from every client share one long-lived etcd LeaseKeepAlive stream per etcd identity:
// a renewal is one write and one answer on it, never a new gRPC stream (which costs etcd dearly when
// done per request). Answers are matched to renewals by lease ID, in order.

import * as grpc from '@grpc/grpc-js';
import { endStream, type EtcdClient } from '../etcd/client';
import type { GrpcMessage } from './context';
import { GatewayError, GrpcCode } from './errors';

const IDLE_CLOSE_MS = 30_000;

interface Waiter {
  resolve(answer: GrpcMessage): void;
  reject(err: GatewayError): void;
  timer: NodeJS.Timeout;
}

class KeepAliveStream {
  private call?: grpc.ClientDuplexStream<unknown, unknown>;
  private host = 0;
  /** Answers received on the current stream. */
  private received = 0;
  private readonly waiters = new Map<string, Waiter[]>();
  private pending = 0;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly metadata: grpc.Metadata,
    private readonly onIdle: () => void,
  ) {}

  renew(id: string, timeoutMs: number): Promise<GrpcMessage> {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    return new Promise((resolve, reject) => {
      const call = this.open();
      const receivedBefore = this.received;
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.drop(id, waiter);
          reject(new GatewayError(GrpcCode.DEADLINE_EXCEEDED, 'context deadline exceeded: etcd did not answer the keepalive in time'));
          // Not a word on the stream since this renewal was sent: the member hangs (stopped, or cut off
          // without a reset), which gRPC's own keepalive notices only after ~15 s, too late for short
          // leases. The next renewal goes to a new stream on another member.
          if (this.call === call && this.received === receivedBefore) {
            this.fail(call, new GatewayError(GrpcCode.UNAVAILABLE, `etcd unavailable: no answer on the keepalive stream within ${timeoutMs} ms`));
          }
        }, timeoutMs),
      };
      const list = this.waiters.get(id);
      if (list) list.push(waiter);
      else this.waiters.set(id, [waiter]);
      this.pending++;
      call.write({ ID: id });
    });
  }

  private open(): grpc.ClientDuplexStream<unknown, unknown> {
    if (this.call) return this.call;
    const md = this.metadata.get('token').length ? this.metadata : (this.etcd.defaultMetadata() ?? this.metadata);
    const { call, host } = this.etcd.openStream('Lease', 'LeaseKeepAlive', md);
    this.call = call;
    this.host = host;
    this.received = 0;
    call.on('data', (msg: unknown) => {
      this.received++;
      const answer = msg as GrpcMessage;
      const list = this.waiters.get(String(answer.ID));
      const waiter = list?.[0];
      if (!waiter) return;
      this.drop(String(answer.ID), waiter);
      waiter.resolve(answer);
    });
    const broken = (err?: grpc.ServiceError): void =>
      this.fail(
        call,
        new GatewayError(
          err?.code ?? GrpcCode.UNAVAILABLE,
          err?.code === GrpcCode.UNAVAILABLE || !err ? `etcd unavailable: ${err?.details || 'keepalive stream closed'}` : err.details,
        ),
      );
    call.on('error', broken);
    call.on('end', () => broken());
    return call;
  }

  /** The stream is done for: renewals waiting on it fail, the next one opens a stream on another member. */
  private fail(call: grpc.ClientDuplexStream<unknown, unknown>, failure: GatewayError): void {
    if (this.call !== call) return;
    this.call = undefined;
    call.removeAllListeners('data');
    call.cancel();
    this.etcd.streamFailed(this.host);
    for (const [id, list] of [...this.waiters.entries()]) {
      for (const w of [...list]) {
        this.drop(id, w);
        w.reject(failure);
      }
    }
  }

  private drop(id: string, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const list = this.waiters.get(id);
    if (!list) return;
    const i = list.indexOf(waiter);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.waiters.delete(id);
    this.pending--;
    if (this.pending === 0) this.idleTimer = setTimeout(() => this.close(), IDLE_CLOSE_MS).unref();
  }

  close(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    endStream(this.call);
    this.call = undefined;
    this.onIdle();
  }
}

export class KeepAliveHub {
  private readonly streams = new Map<string, KeepAliveStream>();
  renewals = 0;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly timeoutMs: number,
  ) {}

  /** Renews lease `id` (a decimal string) once; resolves with etcd's LeaseKeepAliveResponse. */
  renew(id: string, metadata?: grpc.Metadata): Promise<GrpcMessage> {
    this.renewals++;
    const identity = String(metadata?.get('token')[0] ?? '');
    let stream = this.streams.get(identity);
    if (!stream) {
      const md = metadata?.clone() ?? new grpc.Metadata();
      stream = new KeepAliveStream(this.etcd, md, () => this.streams.delete(identity));
      this.streams.set(identity, stream);
    }
    return stream.renew(id, this.timeoutMs);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  close(): void {
    for (const s of [...this.streams.values()]) s.close();
  }
}

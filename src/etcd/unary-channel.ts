// Unary gRPC calls to one etcd member over one HTTP/2 connection (node:http2), without grpc-js's call
// stack: a request is one HEADERS frame and one DATA frame, an answer is read whole and decoded with the
// same proto-loader serializers grpc-js would use, so handlers see identical objects. Profiling showed
// grpc-js's per-call machinery (call layers, filters, metadata objects) costing about as much as the
// rest of the gateway together; streams (watch, keepalive, snapshot, observe) stay on grpc-js.
//
// What grpc-js did for us that this does itself:
// - deadline: `grpc-timeout` tells etcd, a timer cancels the stream here;
// - liveness: a member that stops answering (paused, cut off) is found by a PING when a call runs past
//   its deadline, and every 10 s while calls are open; no PONG within 5 s closes the connection, so the
//   calls on it fail as UNAVAILABLE and the client moves to another member;
// - errors carry a gRPC code, etcd's message, and whether the request provably never reached etcd
//   (no connection, a refused stream, a stream above a GOAWAY's last id), which alone lets a write be
//   sent to another member.

import http2 from 'node:http2';
import { GrpcCode } from '../errors';

export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Shaped like grpc-js's ServiceError, which the rest of the gateway reads. */
export interface UnaryError extends Error {
  code: number;
  details: string;
  /** The request never reached etcd: safe to send again elsewhere, even a write. */
  neverSent?: boolean;
}

export function unaryError(code: number, details: string, neverSent = false): UnaryError {
  return Object.assign(new Error(`${code} ${details}`), { code, details, neverSent });
}

const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;
/** etcd's gRPC server refuses PINGs closer together than 5 s (and closes the connection for it). */
const MIN_PING_GAP_MS = 5_000;
/** Client stream ids are odd 31-bit numbers: a connection carries at most ~1.07 billion requests. */
const STREAMS_PER_SESSION = 1_000_000_000;
/** HTTP/2 flow-control windows: large answers (a 100-key range, a big value) arrive without waiting. */
const WINDOW_BYTES = 16 * 1024 * 1024;

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** grpc-timeout: at most 8 digits and a unit. */
function grpcTimeout(ms: number): string {
  return ms < 1e8 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

function grpcMessage(raw: unknown): string {
  if (typeof raw !== 'string') return '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

interface Session {
  h2: http2.ClientHttp2Session;
  connected: boolean;
  /** Why the connection failed, for the message of the calls it fails. */
  error?: Error;
  /** Streams with an id above this were refused by a GOAWAY: etcd never saw them. */
  goawayLastStreamId: number;
  open: number;
  started: number;
  lastPingAt: number;
  pinging: boolean;
  pingTimer?: NodeJS.Timeout;
}

export class UnaryChannel {
  private session?: Session;
  private readonly authority: string;

  constructor(
    endpoint: string,
    secure: boolean,
    private readonly tls?: TlsFiles,
  ) {
    const url = new URL(/^[a-z]+:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`);
    this.authority = `${secure ? 'https' : 'http'}://${url.host}`;
  }

  /** Sends one framed request; resolves with the answer's message bytes. */
  call(path: string, message: Buffer, metadata: Record<string, string> | undefined, deadline: number, signal?: AbortSignal): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timeoutMs = Math.max(1, Math.ceil(deadline - Date.now()));
      let s: Session;
      let stream: http2.ClientHttp2Stream;
      try {
        s = this.current();
        const headers: http2.OutgoingHttpHeaders = {
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': grpcTimeout(timeoutMs),
        };
        if (metadata) for (const k in metadata) headers[k] = metadata[k];
        stream = s.h2.request(headers);
      } catch (e) {
        reject(unaryError(GrpcCode.UNAVAILABLE, `etcd connection failed: ${(e as Error).message}`, true));
        return;
      }
      s.open++;
      s.started++;
      if (s.started >= STREAMS_PER_SESSION) this.retire(s);
      if (s.open === 1) this.schedulePing(s);

      let status: number | undefined;
      let details = '';
      let failure: UnaryError | undefined;
      const chunks: Buffer[] = [];
      let size = 0;

      // Settled once: on the stream's close, or at once on the deadline or a cancel (a stream reset
      // cannot be sent while the connection's buffers are full, and the caller must not wait for it).
      let settled = false;
      const finish = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (failure) return reject(failure);
        if (status === undefined) {
          const refused = stream.rstCode === NGHTTP2_REFUSED_STREAM || (stream.id !== undefined && stream.id > s.goawayLastStreamId);
          const neverSent = refused || !s.connected;
          const why = s.error ? `: ${s.error.message}` : '';
          return reject(
            unaryError(GrpcCode.UNAVAILABLE, neverSent ? `No connection established${why}` : `the connection to etcd closed during the call${why}`, neverSent),
          );
        }
        if (status !== GrpcCode.OK) return reject(unaryError(status, details));
        const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
        if (body.length < 5) return reject(unaryError(GrpcCode.INTERNAL, 'etcd answered without a message'));
        const length = body.readUInt32BE(1);
        if (body[0] !== 0 || body.length < 5 + length) return reject(unaryError(GrpcCode.INTERNAL, 'etcd answered with a malformed message'));
        resolve(body.subarray(5, 5 + length));
      };
      const readStatus = (headers: http2.IncomingHttpHeaders): void => {
        const raw = headers['grpc-status'];
        if (raw === undefined) return;
        status = Number(raw);
        details = grpcMessage(headers['grpc-message']);
      };
      const timer = setTimeout(() => {
        failure = unaryError(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded');
        stream.close(NGHTTP2_CANCEL);
        finish();
        // No answer in time: is the member still there at all?
        this.ping(s);
      }, timeoutMs);
      const onAbort = (): void => {
        failure = unaryError(GrpcCode.CANCELLED, 'Cancelled on client');
        stream.close(NGHTTP2_CANCEL);
        finish();
      };
      signal?.addEventListener('abort', onAbort, { once: true });

      stream.on('response', (headers) => {
        const httpStatus = headers[':status'];
        if (httpStatus !== 200 && headers['grpc-status'] === undefined) {
          failure = unaryError(httpStatus === 503 ? GrpcCode.UNAVAILABLE : GrpcCode.UNKNOWN, `etcd answered HTTP ${httpStatus}`);
        }
        readStatus(headers);
      });
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
      });
      stream.on('error', () => undefined); // the outcome is decided on 'close'
      stream.on('close', () => {
        s.open--;
        finish();
      });
      const framed = Buffer.allocUnsafe(5 + message.length);
      framed[0] = 0;
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, 5);
      stream.end(framed);
    });
  }

  close(): void {
    const s = this.session;
    this.session = undefined;
    if (s) {
      clearTimeout(s.pingTimer);
      s.h2.destroy();
    }
  }

  private current(): Session {
    if (this.session && !this.session.h2.closed && !this.session.h2.destroyed) return this.session;
    const h2 = http2.connect(this.authority, {
      ca: this.tls?.ca,
      cert: this.tls?.cert,
      key: this.tls?.key,
      settings: { enablePush: false, initialWindowSize: WINDOW_BYTES },
    });
    const s: Session = { h2, connected: false, goawayLastStreamId: 2 ** 31, open: 0, started: 0, lastPingAt: 0, pinging: false };
    h2.on('connect', () => {
      s.connected = true;
      h2.setLocalWindowSize(WINDOW_BYTES);
    });
    h2.on('goaway', (_code: number, lastStreamId: number) => {
      s.goawayLastStreamId = lastStreamId;
      this.retire(s);
    });
    // A failed connection fails its streams; nothing else is to be done with the error itself.
    h2.on('error', (err: Error) => (s.error = err));
    h2.on('close', () => {
      clearTimeout(s.pingTimer);
      if (this.session === s) this.session = undefined;
    });
    // Open calls keep the process alive through their deadline timers; an idle connection does not.
    h2.unref();
    this.session = s;
    return s;
  }

  /** New calls go to a new connection; this one ends when its calls have. */
  private retire(s: Session): void {
    if (this.session === s) this.session = undefined;
    if (!s.h2.closed) s.h2.close();
  }

  private schedulePing(s: Session): void {
    clearTimeout(s.pingTimer);
    s.pingTimer = setTimeout(() => {
      if (s.open > 0 && !s.h2.destroyed) {
        this.ping(s);
        this.schedulePing(s);
      }
    }, PING_INTERVAL_MS);
    s.pingTimer.unref();
  }

  /** A PING etcd must answer within PING_TIMEOUT_MS, else the connection is closed (its calls fail as
   *  UNAVAILABLE). Only while calls are open, and never closer together than etcd allows. */
  private ping(s: Session): void {
    const now = Date.now();
    if (s.pinging || !s.connected || s.h2.destroyed || s.open === 0 || now - s.lastPingAt < MIN_PING_GAP_MS) return;
    s.pinging = true;
    s.lastPingAt = now;
    const dead = setTimeout(() => {
      if (this.session === s) this.session = undefined;
      s.error = new Error(`etcd did not answer a PING within ${PING_TIMEOUT_MS} ms`);
      s.h2.destroy();
    }, PING_TIMEOUT_MS);
    dead.unref();
    try {
      s.h2.ping((err) => {
        s.pinging = false;
        if (!err) clearTimeout(dead);
      });
    } catch {
      s.pinging = false;
      clearTimeout(dead);
    }
  }
}

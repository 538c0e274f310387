// WebSocket transport: the streaming paths, upgraded. Every text message from the client is one
// request, every message to it one `{"result": ...}` or, for a refused request, `{"error": {...}}` —
// the socket lives on. Sessions: watch (interactive create/cancel/progress), lease keepalive (every
// message renews), election observe (the first message names the election). The upgrade's
// Authorization header is the etcd token for the whole socket. Idle peers are found by ping/pong, and
// a consumer that cannot keep up is cut off with a close reason, so memory stays bounded.

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type * as grpc from '@grpc/grpc-js';
import type { SharedResponse, WatchHub, WatchSink } from '../../core/watch/hub';
import { Outbox } from '../../core/watch/outbox';
import { StallWatch } from '../../core/watch/stall';
import type { KeepAliveHub } from '../../core/keepalive';
import { slowConsumer, streamError, tooManyConnections, type MessageCodec, type StreamLimits } from '../v3/watch';
import { etcdMetadata, type GrpcMessage, type Guard } from '../../core/context';
import { parseJson, DuplicateKeyError, JsonSyntaxError } from '../../protocol/json/parse';
import { GatewayError, GrpcCode, invalidArgument } from '../../core/errors';
import { API_PREFIX, rawJsonResponse } from '../router';
import type { EtcdClient } from '../../etcd/client';
import type { Metrics } from '../../core/observability/metrics';
import type { Admission } from '../../core/admission';

export interface WebSocketOptions extends StreamLimits {
  etcd: EtcdClient;
  /** Access control, checked on the upgrade (who) and on every message (what). */
  guard?: Guard;
  /** The client's rate (the upgrade and every message count) and caps (streams, watches, keepalives). */
  admission: Admission;
  metrics: Metrics;
  hub: WatchHub;
  keepalive: KeepAliveHub;
  codecs: { watch: MessageCodec; keepalive: MessageCodec; observe: MessageCodec };
  pingIntervalMs: number;
  maxMessageBytes: number;
}

const OPERATION_OF: Record<string, string> = {
  '/watch': 'Watch_Watch',
  '/lease/keepalive': 'Lease_LeaseKeepAlive',
  '/election/observe': 'Election_Observe',
};

/** Close code for a consumer cut off for being too slow (RFC 6455: policy violation). */
export const CLOSE_SLOW_CONSUMER = 1008;

/** One socket's protocol: what to do with each request, and how to clean up. */
interface Session {
  request(value: unknown): void;
  /** Answers a message the gateway refused; by default at once. */
  refuse?(err: unknown): void;
  close(): void;
}

/** Queues one text message (a string, or its UTF-8 bytes) on a socket's outbox; `continues` marks a
 *  message whose revision goes on in the next one. */
function sendText(out: Outbox, text: string | Buffer, continues = false): void {
  out.push(textFrame(typeof text === 'string' ? Buffer.from(text) : text), continues);
}

/** A complete WebSocket text frame for `payload` (FIN, opcode 1, unmasked as server frames are, RFC
 *  6455 §5.2): a shared watch's answer is framed once and the same bytes written to each of its
 *  sockets, instead of `ws` building a frame per socket and writing header and payload as two buffers.
 *  Safe beside `ws`'s own writes because per-message deflate is off: `ws` then writes each of its frames
 *  whole and at once, so frames never interleave. */
export function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + n);
  frame[0] = 0x81;
  if (n < 126) frame[1] = n;
  else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(frame, head);
  return frame;
}

/** A ping with no payload (FIN, opcode 9, length 0): `ws` answers the pong with a 'pong' event. */
const PING_FRAME = Buffer.from([0x89, 0x00]);

/** Memo key of a shared answer's frames, by watch_id (SharedResponse.memo). */
const FRAMES = {};

/** Checks one decoded request of the socket's operation against access control: the request back
 *  when that settles it, or a promise of it when etcd must be asked (a lease's keys). */
type Check = (request: GrpcMessage) => GrpcMessage | Promise<GrpcMessage>;

/** For sessions whose requests never use a lease (watch, observe): a check that would wait is a bug. */
function settled(checked: GrpcMessage | Promise<GrpcMessage>): GrpcMessage {
  if (checked instanceof Promise) throw new Error('access check of this request cannot wait');
  return checked;
}

type SessionFactory = (out: Outbox, md: grpc.Metadata | undefined, cutOff: () => void, check: Check, req: http.IncomingMessage) => Session;

const newFrameMap = (): Map<string, Buffer> => new Map();

/** Where a WebSocket's watch answers go. A class with the outbox in a field, not closures: a revision
 *  fanned out to thousands of sockets then reads three objects for each (the hub's connection, this,
 *  the outbox) instead of a chain of closure contexts, which measurably mattered at 10,000 sockets. */
class WatchSocketSink implements WatchSink {
  constructor(
    private readonly codec: MessageCodec,
    private readonly out: Outbox,
  ) {}

  deliver(r: GrpcMessage): void {
    sendText(this.out, this.codec.encodeResult(r), r.fragment === true);
  }

  /** A shared answer is framed once per watch_id and the same frame queued for every socket. */
  deliverShared(r: SharedResponse, watchId: string): void {
    const frames = r.memo(FRAMES, newFrameMap);
    let frame = frames.get(watchId);
    if (!frame) frames.set(watchId, (frame = textFrame(r.bytesFor(this.codec, watchId))));
    this.out.push(frame, r.response.fragment === true);
  }
}

const UPGRADE_REFUSAL_CODES: Record<number, number> = {
  400: GrpcCode.INVALID_ARGUMENT,
  401: GrpcCode.UNAUTHENTICATED,
  404: GrpcCode.NOT_FOUND,
  405: GrpcCode.UNIMPLEMENTED,
  429: GrpcCode.RESOURCE_EXHAUSTED,
  503: GrpcCode.RESOURCE_EXHAUSTED,
};

function refuseUpgrade(socket: Duplex, status: number, message: string, headers?: Record<string, string>): void {
  socket.end(rawJsonResponse(new GatewayError(UPGRADE_REFUSAL_CODES[status], message, status), headers));
}

export function attachWebSockets(server: http.Server, opts: WebSocketOptions): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
  // A handshake ws refuses (no Sec-WebSocket-Key, a POST, another Upgrade...) is answered in JSON like
  // every other refusal, instead of ws's text/html.
  wss.on('wsClientError', (err: Error, socket: Duplex) => {
    refuseUpgrade(socket, err.message === 'Invalid HTTP method' ? 405 : 400, `WebSocket handshake refused: ${err.message}`);
  });
  const alive = new WeakMap<WebSocket, boolean>();
  const outboxes = new WeakMap<WebSocket, Outbox>();
  let open = 0;

  const sessions: Record<string, SessionFactory> = {
    '/watch': (out, md, _cutOff, check, req) => {
      const connection = opts.hub.connect(new WatchSocketSink(opts.codecs.watch, out), md, opts.admission.watchQuota(req));
      return { request: (v) => connection.request(settled(check(opts.codecs.watch.decodeRequest(v)))), close: () => connection.close() };
    },
    '/lease/keepalive': (out, md, _cutOff, check, req) => {
      let closed = false;
      // Answers keep the order of the requests, refusals included: they carry no ID to match them by.
      let previous: Promise<unknown> = Promise.resolve();
      const inOrder = (answer: Promise<string>): void => {
        previous = previous.then(() => answer).then((text) => !closed && sendText(out, text));
      };
      return {
        request(v) {
          const checked = check(opts.codecs.keepalive.decodeRequest(v));
          const release = opts.admission.keepalivesInFlight(req, 1);
          // A refusal after etcd was asked is answered in its place in the order, as any other.
          const renewal = Promise.resolve(checked).then((request) => opts.keepalive.renew(String(request.ID ?? '0'), md));
          renewal.then(release, release);
          inOrder(renewal.then((a) => opts.codecs.keepalive.encodeResult(a), streamError));
        },
        refuse: (err) => inOrder(Promise.resolve(streamError(err))),
        close: () => (closed = true),
      };
    },
    '/election/observe': (out, md, cutOff, check) => {
      let call: grpc.ClientReadableStream<unknown> | undefined;
      return {
        request(v) {
          if (call) throw invalidArgument('observe takes one request per socket');
          const request = settled(check(opts.codecs.observe.decodeRequest(v)));
          call = opts.etcd.serverStream('Election', 'Observe', request, md);
          call.on('data', (m: unknown) => sendText(out, opts.codecs.observe.encodeResult(m as GrpcMessage)));
          call.on('error', (err) => {
            sendText(out, streamError(err));
            cutOff();
          });
          call.on('end', cutOff);
        },
        close: () => call?.cancel(),
      };
    },
  };

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node stops watching an upgraded socket for errors: without a listener, a client that resets the
    // connection while it is being refused would crash the process (uncaught ECONNRESET).
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    const m = API_PREFIX.exec(path);
    const factory = m ? sessions[m[1]] : undefined;
    if (!factory) return refuseUpgrade(socket, 404, `no WebSocket route: ${path}`);
    const operationId = OPERATION_OF[m![1]];
    // An upgrade is a request of its client's, counted first as on HTTP (an unidentified one by its
    // address), so that a flood of refused upgrades is limited too.
    const limited = opts.admission.charge(req);
    if (limited) return refuseUpgrade(socket, 429, limited.error.message, limited.headers);
    if (opts.guard) {
      try {
        opts.guard(req);
      } catch (err) {
        return refuseUpgrade(socket, 401, (err as Error).message);
      }
    }
    if (open >= opts.maxConnections) return refuseUpgrade(socket, 503, tooManyConnections(opts.maxConnections).message);
    let md: grpc.Metadata | undefined;
    try {
      md = etcdMetadata(req.headers);
    } catch (err) {
      return refuseUpgrade(socket, 400, (err as Error).message);
    }
    let release: () => void;
    try {
      release = opts.admission.openStream(req);
    } catch (err) {
      return refuseUpgrade(socket, 429, (err as Error).message);
    }
    // Released once: when the socket closes, or when the handshake never completes.
    socket.once('close', () => release());
    const check: Check = (request) => {
      const asked = opts.guard?.(req, operationId, request);
      return asked ? asked.then(() => request) : request;
    };
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, socket, factory, md, check, req));
  });

  function serve(ws: WebSocket, socket: Duplex, factory: SessionFactory, md: grpc.Metadata | undefined, check: Check, req: http.IncomingMessage): void {
    open++;
    opts.metrics.webSockets.inc();
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    // Every message of the session goes through the outbox (paced, coalesced writes; see outbox.ts), so
    // they keep their order; ws writes only control frames (ping, pong, close), a close after a flush.
    // Whether the consumer is too slow is asked when its messages are written, not for each message:
    // a fan-out to thousands of sockets then touches only each one's outbox.
    const tooSlow = (stalled: boolean): void => {
      // Closed, the outbox takes no more messages.
      outbox.close();
      session.close();
      ws.close(CLOSE_SLOW_CONSUMER, slowConsumer(opts.sendBufferBytes).message.slice(0, 120));
      // A peer that reads nothing would never read the close frame either.
      if (stalled) ws.terminate();
      else setTimeout(() => ws.terminate(), 10_000).unref();
    };
    // Made for the sockets that go over their buffer: a large answer with nothing after it (stall.ts).
    let stall: StallWatch | undefined;
    const outbox: Outbox = new Outbox((data, afterPartial) => {
      // Nothing is written past a close frame: a peer that closed first gets no more messages.
      if (ws.readyState !== ws.OPEN) return;
      // Too slow means earlier messages still wait to be sent; one large answer (a catch-up, a
      // revision's fragments) always goes through.
      if (!afterPartial && ws.bufferedAmount > opts.sendBufferBytes) return tooSlow(false);
      socket.write(data);
      if (stall?.armed || ws.bufferedAmount > opts.sendBufferBytes) {
        stall ??= new StallWatch(() => ws.bufferedAmount + outbox.bytes, opts.sendBufferBytes, () => tooSlow(true));
        stall.wrote(data.length);
      }
    });
    outboxes.set(ws, outbox);
    const close = (code: number, reason: string): void => {
      outbox.flush();
      ws.close(code, reason);
    };
    const session = factory(outbox, md, () => close(1000, 'stream ended'), check, req);
    ws.on('message', (data, isBinary) => {
      try {
        // Every message is a request against its client's rate; one over it is answered with the
        // error (code 8, http_code 429) and not served; the socket stays open.
        const limited = opts.admission.charge(req);
        if (limited) throw limited.error;
        const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
        let value: unknown;
        try {
          value = parseJson(text);
        } catch (e) {
          if (e instanceof DuplicateKeyError) throw invalidArgument(e.message);
          if (e instanceof JsonSyntaxError) throw invalidArgument(`message is not valid JSON: ${e.message}`);
          throw e;
        }
        session.request(value);
      } catch (err) {
        if (session.refuse) session.refuse(err);
        else sendText(outbox, streamError(err));
      }
    });
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      open--;
      stall?.stop();
      opts.metrics.webSockets.dec();
      outbox.close();
      session.close();
    };
    ws.on('close', finish);
    ws.on('error', finish);
  }

  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.get(ws)) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      // Through the outbox: paced with the messages and, when some wait, in the same write (a control
      // frame may come between two messages), instead of one write per socket all in one tick.
      const outbox = outboxes.get(ws);
      if (outbox) outbox.push(PING_FRAME);
      else ws.ping();
    }
  }, opts.pingIntervalMs);
  pinger.unref();

  return {
    close() {
      clearInterval(pinger);
      for (const ws of wss.clients) {
        outboxes.get(ws)?.flush();
        ws.close(1001, 'gateway shutting down');
      }
      wss.close();
    },
  };
}

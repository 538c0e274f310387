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
import type { WatchHub } from './watch-hub';
import { TickCork } from './tick-cork';
import type { KeepAliveHub } from './keepalive';
import { slowConsumer, streamError, tooManyConnections, type MessageCodec, type StreamLimits } from '../api/v3/watch';
import { etcdMetadata, type GrpcMessage, type Guard } from '../api/context';
import { parseJson, JsonSyntaxError } from '../json/parse';
import { GatewayError, GrpcCode, invalidArgument } from '../errors';
import { API_PREFIX, rawJsonResponse } from '../api/router';
import type { EtcdClient } from '../etcd/client';
import type { Metrics } from '../observability/metrics';

export interface WebSocketOptions extends StreamLimits {
  etcd: EtcdClient;
  /** Access control, checked on the upgrade (who) and on every message (what). */
  guard?: Guard;
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

/** Sends one text message (as a string, or as its UTF-8 bytes); `continues` marks a message whose
 *  revision goes on in the next one. `frame` sends a message already framed (textFrame). */
type Send = ((text: string | Buffer, continues?: boolean) => void) & { frame(frame: Buffer, continues?: boolean): void };

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

/** Memo key of a shared answer's frames, by watch_id (SharedResponse.memo). */
const FRAMES = {};

/** Checks one decoded request of the socket's operation against access control. */
type Check = (request: GrpcMessage) => GrpcMessage;

type SessionFactory = (send: Send, md: grpc.Metadata | undefined, cutOff: () => void, check: Check) => Session;

const UPGRADE_REFUSAL_CODES: Record<number, number> = {
  400: GrpcCode.INVALID_ARGUMENT,
  401: GrpcCode.UNAUTHENTICATED,
  404: GrpcCode.NOT_FOUND,
  405: GrpcCode.UNIMPLEMENTED,
  503: GrpcCode.RESOURCE_EXHAUSTED,
};

function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  socket.end(rawJsonResponse(new GatewayError(UPGRADE_REFUSAL_CODES[status], message, status)));
}

export function attachWebSockets(server: http.Server, opts: WebSocketOptions): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
  // A handshake ws refuses (no Sec-WebSocket-Key, a POST, another Upgrade...) is answered in JSON like
  // every other refusal, instead of ws's text/html.
  wss.on('wsClientError', (err: Error, socket: Duplex) => {
    refuseUpgrade(socket, err.message === 'Invalid HTTP method' ? 405 : 400, `WebSocket handshake refused: ${err.message}`);
  });
  const alive = new WeakMap<WebSocket, boolean>();
  let open = 0;

  const sessions: Record<string, SessionFactory> = {
    '/watch': (send, md, _cutOff, check) => {
      const codec = opts.codecs.watch;
      const connection = opts.hub.connect(
        {
          deliver: (r) => send(codec.encodeResult(r), r.fragment === true),
          deliverShared: (r, watchId) => {
            const frames = r.memo(FRAMES, () => new Map<string, Buffer>());
            let frame = frames.get(watchId);
            if (!frame) frames.set(watchId, (frame = textFrame(r.bytesFor(codec, watchId))));
            send.frame(frame, r.response.fragment === true);
          },
        },
        md,
      );
      return { request: (v) => connection.request(check(opts.codecs.watch.decodeRequest(v))), close: () => connection.close() };
    },
    '/lease/keepalive': (send, md, _cutOff, check) => {
      let closed = false;
      // Answers keep the order of the requests, refusals included: they carry no ID to match them by.
      let previous: Promise<unknown> = Promise.resolve();
      const inOrder = (answer: Promise<string>): void => {
        previous = previous.then(() => answer).then((text) => !closed && send(text));
      };
      return {
        request(v) {
          const id = String(check(opts.codecs.keepalive.decodeRequest(v)).ID ?? '0');
          inOrder(opts.keepalive.renew(id, md).then((a) => opts.codecs.keepalive.encodeResult(a), streamError));
        },
        refuse: (err) => inOrder(Promise.resolve(streamError(err))),
        close: () => (closed = true),
      };
    },
    '/election/observe': (send, md, cutOff, check) => {
      let call: grpc.ClientReadableStream<unknown> | undefined;
      return {
        request(v) {
          if (call) throw invalidArgument('observe takes one request per socket');
          const request = check(opts.codecs.observe.decodeRequest(v));
          call = opts.etcd.serverStream('Election', 'Observe', request, md);
          call.on('data', (m: unknown) => send(opts.codecs.observe.encodeResult(m as GrpcMessage)));
          call.on('error', (err) => {
            send(streamError(err));
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
    const check: Check = (request) => {
      opts.guard?.(req, operationId, request);
      return request;
    };
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, socket, factory, md, check));
  });

  function serve(ws: WebSocket, socket: Duplex, factory: SessionFactory, md: grpc.Metadata | undefined, check: Check): void {
    open++;
    opts.metrics.webSockets.inc();
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    let cut = false;
    let continuing = false;
    const tick = new TickCork(socket);
    /** Whether a message may be written now; a consumer too slow is cut off. */
    const writable = (continues: boolean): boolean => {
      if (cut || ws.readyState !== ws.OPEN) return false;
      // Too slow means earlier messages still wait to be sent; one large answer always goes through.
      if (!continuing && ws.bufferedAmount > opts.sendBufferBytes) {
        cut = true;
        session.close();
        ws.close(CLOSE_SLOW_CONSUMER, slowConsumer(opts.sendBufferBytes).message.slice(0, 120));
        setTimeout(() => ws.terminate(), 10_000).unref();
        return false;
      }
      tick.hold();
      continuing = continues;
      return true;
    };
    const send: Send = Object.assign(
      (text: string | Buffer, continues = false) => {
        if (writable(continues)) ws.send(text, { binary: false });
      },
      {
        frame: (frame: Buffer, continues = false) => {
          if (writable(continues)) socket.write(frame);
        },
      },
    );
    const session = factory(send, md, () => ws.close(1000, 'stream ended'), check);
    ws.on('message', (data, isBinary) => {
      try {
        const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
        let value: unknown;
        try {
          value = parseJson(text);
        } catch (e) {
          if (e instanceof JsonSyntaxError) throw invalidArgument(`message is not valid JSON: ${e.message}`);
          throw e;
        }
        session.request(value);
      } catch (err) {
        if (session.refuse) session.refuse(err);
        else if (ws.readyState === ws.OPEN) ws.send(streamError(err));
      }
    });
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      open--;
      opts.metrics.webSockets.dec();
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
      ws.ping();
    }
  }, opts.pingIntervalMs);
  pinger.unref();

  return {
    close() {
      clearInterval(pinger);
      for (const ws of wss.clients) ws.close(1001, 'gateway shutting down');
      wss.close();
    },
  };
}

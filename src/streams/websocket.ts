// WebSocket transport: the same paths as the HTTP stream, upgraded. Every text message from the client
// is one WatchRequest, every message to it one `{"result": ...}` or, for a refused request,
// `{"error": {...}}` — the socket and its other watches live on. Idle peers are found by ping/pong and
// a consumer that cannot keep up is cut off with a close reason, so memory stays bounded.

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { WatchHub } from './watch-hub';
import { slowConsumer, streamError, tooManyConnections, type StreamLimits, type WatchCodec } from '../api/watch';
import { parseJson, JsonSyntaxError } from '../json/parse';
import { invalidArgument } from '../errors';
import { API_PREFIX } from '../api/router';

export interface WebSocketOptions extends StreamLimits {
  hub: WatchHub;
  codec: WatchCodec;
  pingIntervalMs: number;
  maxMessageBytes: number;
}

/** Close code for a consumer cut off for being too slow (RFC 6455: policy violation). */
export const CLOSE_SLOW_CONSUMER = 1008;

function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ error: message, message, code: status === 404 ? 5 : 8 });
  socket.end(`HTTP/1.1 ${status} ${status === 404 ? 'Not Found' : 'Service Unavailable'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

export function attachWebSockets(server: http.Server, opts: WebSocketOptions): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
  const alive = new WeakMap<WebSocket, boolean>();

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    const m = API_PREFIX.exec(path);
    if (!m || m[1] !== '/watch') return refuseUpgrade(socket, 404, `no WebSocket route: ${path}`);
    if (opts.hub.stats().connections >= opts.maxConnections) {
      return refuseUpgrade(socket, 503, tooManyConnections(opts.maxConnections).message);
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws));
  });

  function serve(ws: WebSocket): void {
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    let cutOff = false;
    const connection = opts.hub.connect({
      deliver(response) {
        if (cutOff || ws.readyState !== ws.OPEN) return;
        ws.send(opts.codec.encodeResult(response));
        if (ws.bufferedAmount > opts.sendBufferBytes) {
          cutOff = true;
          connection.close();
          ws.close(CLOSE_SLOW_CONSUMER, slowConsumer(opts.sendBufferBytes).message.slice(0, 120));
          setTimeout(() => ws.terminate(), 10_000).unref();
        }
      },
    });
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
        connection.request(opts.codec.decodeRequest(value));
      } catch (err) {
        if (ws.readyState === ws.OPEN) ws.send(streamError(err));
      }
    });
    ws.on('close', () => connection.close());
    ws.on('error', () => connection.close());
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

// An HTTP/2 "server" of the tests' own, speaking raw frames over node:net, for what no real server will
// send: oversized frames, endless CONTINUATION, windows ignored or overflowed, answers that are not gRPC.
// It reads the client's preface and frames, answers its SETTINGS (unless told not to), records the
// GOAWAY codes and PINGs it gets, and hands each request's HEADERS to the test, which writes the answer.

import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { encodeHeaders, HpackDecoder } from '../../src/protocol/http2/hpack';

export const FRAME = { DATA: 0x0, HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4, PING: 0x6, GOAWAY: 0x7, WINDOW_UPDATE: 0x8, CONTINUATION: 0x9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export function frame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}

export function headersFrame(id: number, fields: Array<[string, string]>, endStream = false): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), id, encodeHeaders(fields));
}

/** A whole gRPC answer: headers, the message, trailers. */
export function grpcAnswer(id: number, message: Buffer, status = '0', details = ''): Buffer {
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  const trailers: Array<[string, string]> = [['grpc-status', status]];
  if (details) trailers.push(['grpc-message', details]);
  return Buffer.concat([
    headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']]),
    frame(FRAME.DATA, 0, id, framed),
    headersFrame(id, trailers, true),
  ]);
}

export interface RawRequest {
  socket: net.Socket;
  /** The request's stream id. */
  id: number;
  /** Its header block as sent (before HPACK decoding). */
  block: Buffer;
  /** Its fields, decoded (the gateway's encoder leaves the dynamic table alone: a fresh decoder will do). */
  headers: Record<string, string>;
  /** 1 for the first connection, 2 for the next... */
  connection: number;
}

export interface RawPeer {
  url: string;
  /** Error codes of the GOAWAY frames clients sent. */
  readonly goaways: number[];
  /** PING frames (not ACKs) received. */
  readonly pings: number;
  readonly connections: number;
  /** Resolves when every connection so far has closed. */
  allClosed(): Promise<void>;
  close(): Promise<void>;
}

export interface RawPeerOptions {
  /** Settings sent at the start of each connection: [id, value]. */
  settings?: Array<[number, number]>;
  /** Default true; false: the client's SETTINGS are never acknowledged. */
  ackSettings?: boolean;
  /** Default true; false: PINGs get no answer. */
  answerPings?: boolean;
}

const PREFACE_BYTES = 24;

export async function startRawPeer(onRequest: (req: RawRequest) => void, options: RawPeerOptions = {}): Promise<RawPeer> {
  const goaways: number[] = [];
  const sockets = new Set<net.Socket>();
  let pings = 0;
  let connections = 0;
  const server = net.createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const settings = Buffer.alloc(6 * (options.settings?.length ?? 0));
    options.settings?.forEach(([key, value], i) => {
      settings.writeUInt16BE(key, 6 * i);
      settings.writeUInt32BE(value, 6 * i + 2);
    });
    socket.write(frame(FRAME.SETTINGS, 0, 0, settings));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE_BYTES) return;
        buf = buf.subarray(PREFACE_BYTES);
        prefaceSeen = true;
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) return;
        const type = buf[3];
        const flags = buf[4];
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + length);
        buf = buf.subarray(9 + length);
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK) && options.ackSettings !== false) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        else if (type === FRAME.PING && !(flags & FLAG.ACK)) {
          pings++;
          if (options.answerPings !== false) socket.write(frame(FRAME.PING, FLAG.ACK, 0, payload));
        } else if (type === FRAME.GOAWAY) goaways.push(payload.readUInt32BE(4));
        else if (type === FRAME.HEADERS) {
          const block = Buffer.from(payload);
          const headers: Record<string, string> = {};
          new HpackDecoder().decode(block, (name, value) => (headers[name] = value));
          onRequest({ socket, id, block, headers, connection });
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    goaways,
    get pings() {
      return pings;
    },
    get connections() {
      return connections;
    },
    allClosed: () => Promise.all([...sockets].map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve()))))).then(() => undefined),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

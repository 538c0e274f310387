// HTTP and WebSocket at the byte level, for requests no client library would send: bad framing, partial
// requests, slow trickles, invalid WebSocket frames. Every wait is bounded.

import net from 'node:net';
import crypto from 'node:crypto';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** The first complete final (non-1xx) response in `data`, if there is one yet. Bodies are framed by
 *  Content-Length or chunked encoding; without either, the body runs to the end (`closed`). */
export function parseHttpAnswer(data: Buffer, closed: boolean): HttpAnswer | undefined {
  let offset = 0;
  while (offset < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', offset);
    if (headEnd < 0) return undefined;
    const lines = data.subarray(offset, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) return undefined;
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const bodyStart = headEnd + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      offset = bodyStart;
      continue;
    }
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (data.length - bodyStart < n) return undefined;
      return { status, headers, body: data.subarray(bodyStart, bodyStart + n) };
    }
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunks: Buffer[] = [];
      let p = bodyStart;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p);
        if (lineEnd < 0) return undefined;
        const size = parseInt(data.subarray(p, lineEnd).toString('latin1'), 16);
        if (!Number.isFinite(size)) return undefined;
        if (size === 0) return { status, headers, body: Buffer.concat(chunks) };
        if (data.length < lineEnd + 2 + size + 2) return undefined;
        chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
    }
    if (status === 101 || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
    return closed ? { status, headers, body: data.subarray(bodyStart) } : undefined;
  }
  return undefined;
}

export interface RawOutcome {
  data: Buffer;
  answer?: HttpAnswer;
  /** The server closed (FIN or reset) before we did. */
  closedByServer: boolean;
  timedOut: boolean;
  error?: string;
  /** From connect to the end. */
  ms: number;
}

export type RawStep = Buffer | string | { delayMs: number } | 'end' | 'reset';

/**
 * Connects, sends `steps` (bytes, pauses, a half-close or a reset), and reads until a complete answer
 * (when `untilAnswer`), the server closes, or `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  steps: RawStep[],
  opts: { timeoutMs: number; untilAnswer?: boolean; until?: (data: Buffer) => boolean },
): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    let weClosed = false;
    const finish = (o: Partial<RawOutcome>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      socket.destroy();
      resolve({ data, answer: parseHttpAnswer(data, true), closedByServer: false, timedOut: false, ms: Date.now() - started, ...o });
    };
    const timer = setTimeout(() => finish({ timedOut: true }), opts.timeoutMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      const data = Buffer.concat(chunks);
      if ((opts.untilAnswer && parseHttpAnswer(data, false)) || opts.until?.(data)) finish({});
    });
    socket.on('end', () => finish({ closedByServer: !weClosed }));
    socket.on('close', () => finish({ closedByServer: !weClosed }));
    socket.on('error', (e: NodeJS.ErrnoException) => finish({ closedByServer: !weClosed, error: e.code ?? e.message }));
    socket.once('connect', async () => {
      for (const step of steps) {
        if (done) return;
        if (step === 'end') {
          socket.end();
        } else if (step === 'reset') {
          weClosed = true;
          socket.resetAndDestroy();
          finish({});
          return;
        } else if (typeof step === 'object' && !Buffer.isBuffer(step)) {
          await new Promise((r) => setTimeout(r, step.delayMs));
        } else if (!socket.destroyed && socket.writable) {
          socket.write(step);
        }
      }
    });
  });
}

/** Problems with an answer that should be a refusal in the gateway's JSON: status 4xx, a JSON body
 *  `{"error": m, "message": m, "code": n}` (no body for HEAD). Undefined when it is one. */
export function refusalProblem(status: number, contentType: string | undefined, body: string, method = 'POST'): string | undefined {
  if (status < 400 || status > 499) return `status ${status}, expected 4xx: ${body.slice(0, 300)}`;
  if (!/^application\/json/.test(contentType ?? '')) return `status ${status} with Content-Type ${contentType ?? '(none)'}: ${body.slice(0, 300)}`;
  if (method === 'HEAD') return body.length === 0 ? undefined : 'a body in the answer to HEAD';
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `status ${status}, body is not JSON: ${body.slice(0, 300)}`;
  }
  const p = parsed as { error?: unknown; message?: unknown; code?: unknown };
  if (typeof p.message !== 'string' || p.message === '' || p.error !== p.message || typeof p.code !== 'number') {
    return `status ${status}, body is not {"error","message","code"}: ${body.slice(0, 300)}`;
  }
  return undefined;
}

// ---- Answers on one connection ----------------------------------------------------------------

export interface LoggedAnswer {
  status: number;
  headers: Record<string, string>;
  /** Header names in the order sent. */
  names: string[];
  body: string;
}

/** Every complete answer (Content-Length framed) in `data`, in order. */
export function answersIn(data: Buffer): LoggedAnswer[] {
  const out: LoggedAnswer[] = [];
  let at = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end < 0) return out;
    const lines = data.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1]);
    const headers: Record<string, string> = {};
    const names: string[] = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      names.push(l.slice(0, i).toLowerCase());
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    // A 204 or 304 has no body and no Content-Length.
    const length = status === 204 || status === 304 ? 0 : Number(headers['content-length']);
    if (!Number.isFinite(length) || data.length < end + 4 + length) return out;
    out.push({ status, headers, names, body: data.subarray(end + 4, end + 4 + length).toString('utf8') });
    at = end + 4 + length;
  }
}

/** A POST as curl would send it (Content-Length, Host), with extra header lines. */
export function post(path: string, body: string | object, extra: string[] = []): string {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...extra, `Content-Length: ${Buffer.byteLength(text)}`, '', text].join('\r\n');
}

/** A raw connection that collects what the server sends; every wait is bounded. */
export class Conn {
  readonly socket: net.Socket;
  private data = Buffer.alloc(0);
  closed = false;
  private readonly waiters = new Set<() => void>();

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      for (const w of this.waiters) w();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) w();
    });
  }

  /** Everything received so far. */
  received(): Buffer {
    return this.data;
  }

  send(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  answers(): LoggedAnswer[] {
    return answersIn(this.data);
  }

  /** Waits until `done()` holds; fails after `ms`. */
  async until(what: string, done: () => boolean, ms = 5000): Promise<void> {
    if (done()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; received: ${this.data.toString('latin1').slice(0, 2000)}`));
      }, ms);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  waitAnswers(n: number, ms = 5000): Promise<void> {
    return this.until(`${n} answers`, () => this.answers().length >= n, ms);
  }

  waitClosed(ms = 5000): Promise<void> {
    return this.until('the server to close', () => this.closed, ms);
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- WebSocket frames ---------------------------------------------------------------------------------

export function wsHandshake(path: string, extraHeaders = ''): { request: string; key: string } {
  const key = crypto.randomBytes(16).toString('base64');
  return {
    key,
    request:
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`,
  };
}

/** One WebSocket frame as a client sends it (masked unless `mask` is false); every header bit settable. */
export function wsFrame(opts: { opcode: number; payload: Buffer; fin?: boolean; rsv?: number; mask?: boolean; lengthOverride?: bigint }): Buffer {
  const { opcode, payload } = opts;
  const fin = opts.fin ?? true;
  const masked = opts.mask ?? true;
  const len = opts.lengthOverride ?? BigInt(payload.length);
  const head: number[] = [(fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | (opcode & 0x0f)];
  const maskBit = masked ? 0x80 : 0;
  if (len < 126n) head.push(maskBit | Number(len));
  else if (len < 65536n) head.push(maskBit | 126, Number(len >> 8n) & 0xff, Number(len) & 0xff);
  else {
    head.push(maskBit | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((len >> BigInt(8 * i)) & 0xffn));
  }
  if (!masked) return Buffer.concat([Buffer.from(head), payload]);
  const key = crypto.randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from(head), key, body]);
}

/** The server's frames in `data` after the 101 answer's head: opcode and payload. */
export function wsServerFrames(data: Buffer): Array<{ opcode: number; payload: Buffer }> {
  const frames: Array<{ opcode: number; payload: Buffer }> = [];
  const head = data.indexOf('\r\n\r\n');
  if (head < 0 || !data.subarray(0, 13).toString('latin1').startsWith('HTTP/1.1 101')) return frames;
  let p = head + 4;
  while (p + 2 <= data.length) {
    const opcode = data[p] & 0x0f;
    let len = data[p + 1] & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (q + 2 > data.length) break;
      len = data.readUInt16BE(q);
      q += 2;
    } else if (len === 127) {
      if (q + 8 > data.length) break;
      len = Number(data.readBigUInt64BE(q));
      q += 8;
    }
    if (q + len > data.length) break;
    frames.push({ opcode, payload: data.subarray(q, q + len) });
    p = q + len;
  }
  return frames;
}

/** Writes `request` on a new connection and resolves with all the server sent until it ended. Past
 *  `timeoutMs` of silence the socket is destroyed: what came so far is the answer, or with `strict`
 *  an error (a server that should have answered and closed). */
export function rawAnswer(port: number, request: string, opts: { timeoutMs?: number; strict?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d) => (answer += d));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(opts.timeoutMs ?? 3000, () => {
      socket.destroy();
      if (opts.strict) reject(new Error(`no answer: ${answer}`));
      else resolve(answer);
    });
    socket.write(request);
  });
}

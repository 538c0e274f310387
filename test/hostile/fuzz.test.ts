// Hostile and broken clients: at least 10,000 generated malformed or adversarial requests against the
// gateway as its own process (`node dist/src/main.js`) on a real etcd — broken JSON, wrong types for
// every field of the KV, lease, txn and watch schemas of openapi.yaml, huge and odd numbers, deep
// nesting, huge arrays, invalid base64, unknown fields, unknown routes and methods, oversized bodies and
// heads, bad framing on raw sockets, WebSocket garbage down to invalid frames, half-open connections.
//
// Every HTTP request must get a 4xx with the gateway's JSON error body (never a 5xx, never a hang);
// WebSocket misuse an error message on the socket or a close with a code in 1000–4999; afterwards the
// gateway must still serve, hold no leftover streams, have its heap (after GC) within a stated bound of
// where it was after a warm-up, and etcd's data (every key, the revision, leases, users, roles, members,
// the compaction point) must be exactly as before: no request was valid, by construction — each is
// checked against the gateway's own parse/validate/decode steps before it is sent.
//
// The run is seeded: the seed is printed; FUZZ_SEED=<seed> reproduces it (FUZZ_CASES=<n> changes the
// count). A failure names the case number, its category and what was sent.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { EtcdClient } from '../../src/etcd/client';
import type { Operation } from '../../src/core/contract/spec';
import { procSample, sleep, withTimeout } from '../../bench/setup';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { spec } from '../support/gateway';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';
import {
  breakJson,
  fieldSweep,
  certainlyInvalid,
  gatewayWouldAccept,
  messageWouldBeAccepted,
  mutatedRequest,
  Rng,
  sample,
  SchemaModel,
  ser,
} from '../support/fuzz';
import { rawExchange, refusalProblem, wsFrame, wsHandshake, wsServerFrames, type RawStep } from '../support/raw-http';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : crypto.randomInt(2 ** 31);
const CASES = process.env.FUZZ_CASES ? Number(process.env.FUZZ_CASES) : 10_000;
/** Random cases before the memory baseline, besides the field sweep. */
const WARMUP_CASES = 300;
/** Full samples per operation whose every field is made wrong in turn. */
const SWEEPS_PER_OP = 3;
const CONCURRENCY = 24;
/** No answer within this is a hang (generous: two shared cores, other test suites running). */
const CASE_TIMEOUT_MS = 15_000;
const MAX_BODY_BYTES = 256 * 1024;
const MAX_HEADER_BYTES = 8 * 1024;
const HEADERS_TIMEOUT_MS = 3_000;
const REQUEST_READ_TIMEOUT_MS = 5_000;
const PING_INTERVAL_MS = 1_000;
/** Half-open connections must be closed by the gateway within their timeout plus this. */
const CLOSE_MARGIN_MS = 10_000;
/** The stated memory bound: heap after GC may grow by at most this over the run, after the warm-up. */
const HEAP_GROWTH_LIMIT = 16 * 1024 * 1024;
/** and RSS (which keeps freed pages and malloc arenas) by at most this. */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;

/** The operations whose schemas are fuzzed field by field. */
const SCHEMA_OPS = [
  'KV_Range', 'KV_Put', 'KV_DeleteRange', 'KV_Txn', 'KV_Compact', 'Watch_Watch',
  'Lease_LeaseGrant', 'Lease_LeaseRevoke', 'Lease_LeaseTimeToLive', 'Lease_LeaseLeases', 'Lease_LeaseKeepAlive',
];
const WS_PATHS: Record<string, string> = { '/watch': 'Watch_Watch', '/lease/keepalive': 'Lease_LeaseKeepAlive', '/election/observe': 'Election_Observe' };

const WEIGHTS = {
  'broken-json': 17,
  'wrong-type': 22,
  'bad-number': 8,
  'bad-base64': 7,
  'unknown-field': 8,
  'deep-nesting': 2,
  'huge-array': 2,
  'not-object': 3,
  'garbage-any-route': 4,
  'unknown-route': 5,
  'wrong-method': 5,
  'oversized-body': 1.5,
  'oversized-header': 1.5,
  'bad-headers': 3,
  'raw-http': 5,
  websocket: 6,
  'websocket-raw': 3,
};
type Category = keyof typeof WEIGHTS;

interface Result {
  /** What came back, for the summary: "400", "raw 431", "ws close 1009"... */
  label: string;
  problem?: string;
}

interface Case {
  category: Category | 'field-sweep';
  /** What is sent, short enough for a failure message. */
  desc: string;
  run(): Promise<Result>;
}

interface Ctx {
  port: number;
  agent: http.Agent;
  wsUrl: string;
  ops: Map<string, Operation>;
  model: SchemaModel;
  poisoned: number;
}

const excerpt = (b: Buffer | string, n = 160): string => {
  const s = typeof b === 'string' ? b : b.toString('latin1');
  return JSON.stringify(s.length > n ? `${s.slice(0, n)}…(${s.length} bytes)` : s);
};

// ---- sending ------------------------------------------------------------------------------------------

function httpRequest(
  ctx: Ctx,
  req: { method: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer; chunks?: Buffer[] },
  retry = true,
  agent: http.Agent | false = ctx.agent,
): Promise<Result> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Result): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    // Content-Length always given with a body: Node's client frames a body only for some methods (a HEAD's
    // would go unframed, and read by the server as the next request).
    const headers = req.body ? { 'Content-Length': req.body.length, ...req.headers } : req.headers;
    const r = http.request({ host: '127.0.0.1', port: ctx.port, method: req.method, path: req.path, headers, agent });
    const timer = setTimeout(() => {
      r.destroy();
      done({ label: 'hang', problem: `no answer within ${CASE_TIMEOUT_MS} ms` });
    }, CASE_TIMEOUT_MS);
    r.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size <= 1 << 20) chunks.push(d);
      });
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        done({ label: String(res.statusCode), problem: refusalProblem(res.statusCode ?? 0, res.headers['content-type'], body, req.method) });
      });
      res.on('error', (e) => done({ label: 'error', problem: `answer cut: ${e.message}` }));
    });
    r.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      // A keep-alive socket the server closed as it was being reused: try once on a fresh connection.
      if (retry && r.reusedSocket && e.code === 'ECONNRESET') {
        clearTimeout(timer);
        settled = true;
        void httpRequest(ctx, req, false, false).then(resolve);
        return;
      }
      done({ label: 'error', problem: `connection error before an answer: ${e.code ?? e.message}` });
    });
    if (req.chunks) {
      for (const c of req.chunks) r.write(c);
      r.end();
    } else {
      r.end(req.body);
    }
  });
}

async function rawCase(ctx: Ctx, steps: RawStep[], answerRequired = true): Promise<Result> {
  const o = await rawExchange(ctx.port, steps, { timeoutMs: CASE_TIMEOUT_MS, untilAnswer: true });
  if (o.answer) {
    const body = o.answer.body.toString('utf8');
    return { label: `raw ${o.answer.status}`, problem: refusalProblem(o.answer.status, o.answer.headers['content-type'], body) };
  }
  if (o.timedOut) return { label: 'raw hang', problem: `no answer and no close within ${CASE_TIMEOUT_MS} ms (got ${excerpt(o.data)})` };
  if (answerRequired) return { label: 'raw closed', problem: `closed without a complete answer (got ${excerpt(o.data)}${o.error ? `, ${o.error}` : ''})` };
  return { label: 'raw closed' };
}

function errorMessageProblem(text: string): string | undefined {
  let v: { error?: { grpc_code?: unknown; message?: unknown; http_code?: unknown } };
  try {
    v = JSON.parse(text);
  } catch {
    return `a WebSocket message that is not JSON: ${excerpt(text)}`;
  }
  const e = v.error;
  if (!e || typeof e.grpc_code !== 'number' || typeof e.message !== 'string' || typeof e.http_code !== 'number' || e.http_code < 400 || e.http_code > 499) {
    return `expected {"error": {grpc_code, http_code 4xx, message}}, got ${excerpt(text, 300)}`;
  }
  return undefined;
}

const validUtf8 = (b: Buffer): boolean => Buffer.from(b.toString('utf8')).equals(b);

/** A WebSocket session: every message must be answered by an error (the socket living on), then a
 *  normal close; or (`expectClose`) the gateway closes the socket with a code in 1000–4999. A text
 *  message that is not UTF-8 may instead end the session with 1007, as RFC 6455 requires. */
function wsSession(ctx: Ctx, path: string, messages: Array<{ data: Buffer; binary: boolean }>, expectClose: boolean): Promise<Result> {
  const notUtf8 = messages.findIndex((m) => !m.binary && !validUtf8(m.data));
  return new Promise((resolve) => {
    const ws = new WebSocket(`${ctx.wsUrl}${path}`, { handshakeTimeout: CASE_TIMEOUT_MS, maxPayload: 1 << 20 });
    const replies: string[] = [];
    let settled = false;
    const done = (r: Result): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ws.readyState !== ws.CLOSED) ws.terminate();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ label: 'ws hang', problem: `WebSocket: ${replies.length} of ${messages.length} answers, no close, within ${CASE_TIMEOUT_MS} ms` }),
      CASE_TIMEOUT_MS,
    );
    ws.on('open', () => {
      for (const m of messages) ws.send(m.data, { binary: m.binary });
    });
    ws.on('message', (data: Buffer) => {
      replies.push(data.toString('utf8'));
      const problem = errorMessageProblem(replies[replies.length - 1]);
      if (problem) return done({ label: 'ws bad answer', problem });
      if (!expectClose && replies.length === messages.length) ws.close(1000);
    });
    ws.on('close', (code: number) => {
      if (code < 1000 || code > 4999) return done({ label: `ws close ${code}`, problem: `closed with code ${code}` });
      if (code === 1007 && notUtf8 >= 0 && replies.length <= notUtf8) return done({ label: 'ws close 1007' });
      if (!expectClose && replies.length < messages.length) {
        return done({ label: `ws close ${code}`, problem: `closed (${code}) after ${replies.length} of ${messages.length} answers` });
      }
      done({ label: `ws close ${code}` });
    });
    ws.on('unexpected-response', (_req, res) => done({ label: `ws ${res.statusCode}`, problem: `handshake refused with ${res.statusCode}` }));
    ws.on('error', (e) => {
      if (!settled && ws.readyState !== ws.CLOSING && ws.readyState !== ws.CLOSED) done({ label: 'ws error', problem: `WebSocket error: ${e.message}` });
    });
  });
}

/** Raw WebSocket: a handshake, then `frames`; the gateway must answer with a close frame (code in
 *  1000–4999), or close the connection. */
async function wsRawFrames(ctx: Ctx, path: string, frames: Buffer[]): Promise<Result> {
  const { request } = wsHandshake(`/v3${path}`);
  const closeFrame = (data: Buffer): boolean => wsServerFrames(data).some((f) => f.opcode === 0x8);
  const o = await rawExchange(ctx.port, [request, ...frames], { timeoutMs: CASE_TIMEOUT_MS, until: closeFrame });
  if (!o.data.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) {
    return { label: 'ws raw no upgrade', problem: `handshake not accepted: ${excerpt(o.data)}` };
  }
  const close = wsServerFrames(o.data).find((f) => f.opcode === 0x8);
  if (close) {
    const code = close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1005;
    if (code < 1000 || code > 4999) return { label: `ws raw close ${code}`, problem: `close code ${code}` };
    return { label: `ws raw close ${code}` };
  }
  if (o.timedOut) return { label: 'ws raw hang', problem: `no close within ${CASE_TIMEOUT_MS} ms` };
  return { label: 'ws raw closed' };
}

// ---- the generator ------------------------------------------------------------------------------------

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const BROKEN_BODY = Buffer.from('{"key":!}');

function apiPath(rng: Rng, op: Operation): string {
  return rng.chance(0.8) ? op.path : op.path.replace(/^\/v3\//, rng.pick(['/v3beta/', '/v3alpha/']));
}

/** An invalid body for `op`, guaranteed by the oracle. */
function invalidBody(ctx: Ctx, op: Operation, body: Buffer): Buffer {
  const r = certainlyInvalid((b) => gatewayWouldAccept(spec(), op, b), body);
  if (r.poisoned) ctx.poisoned++;
  return r.body;
}

function invalidMessage(ctx: Ctx, op: Operation, message: Buffer): Buffer {
  const r = certainlyInvalid((b) => messageWouldBeAccepted(spec(), op, b), message);
  if (r.poisoned) ctx.poisoned++;
  return r.body;
}

function schemaBody(ctx: Ctx, rng: Rng, op: Operation, mode: 'wrong-type' | 'bad-number' | 'bad-base64' | 'unknown-field' | 'valid'): string {
  const kind = ctx.model.component(op.requestSchema!);
  const one = (): string => ser(mode === 'valid' ? sample(kind, rng) : mutatedRequest(kind, rng, mode));
  if (op.stream === 'bidi' && rng.chance(0.3)) {
    // Several requests in one body: one bad one refuses them all.
    const parts = Array.from({ length: rng.between(2, 4) }, () => ser(sample(kind, rng)));
    parts[rng.int(parts.length)] = one();
    return parts.join(rng.pick(['', '\n', ' ']));
  }
  return one();
}

let gzipBomb: Buffer | undefined;

function deepNesting(rng: Rng): string {
  const n = rng.between(65, 100_000);
  switch (rng.int(6)) {
    case 0:
      return '['.repeat(Math.min(n, 100_000));
    case 1:
      return '{"a":'.repeat(Math.min(n, 40_000));
    case 2: {
      const d = rng.between(22, 400);
      return `{"success":[${'{"request_txn":{"success":['.repeat(d)}${']}}'.repeat(d)}]}`;
    }
    case 3:
      return `{"compare":${'['.repeat(Math.min(n, 50_000))}${']'.repeat(Math.min(n, 50_000))}}`;
    case 4: {
      const d = rng.between(65, 5_000);
      return `{"key":"Zm9v","x":${'{"y":'.repeat(d)}1${'}'.repeat(d)}}`;
    }
    default: {
      const d = rng.between(65, 20_000);
      return `${'[{"a":'.repeat(d)}`;
    }
  }
}

function hugeArray(rng: Rng, op: Operation): string {
  const n = rng.between(10_001, 40_000);
  switch (rng.int(6)) {
    case 0:
      return `{"compare":[${Array(n).fill('null').join(',')}]}`;
    case 1:
      return `{"success":[${Array(n).fill('{}').join(',')}]}`;
    case 2:
      return `{"create_request":{"key":"Zm9v","filters":[${Array(n).fill('0').join(',')}]}}`;
    case 3:
      return `[${Array(n).fill('0').join(',')}]`;
    case 4:
      // Many good requests and one bad at the end: nothing of it may be acted on.
      return op.operationId === 'Lease_LeaseKeepAlive'
        ? `${'{"ID":"1"}'.repeat(Math.min(n, 20_000))}{"ID":"x"}`
        : `${'{"create_request":{"key":"Zm9v"}}'.repeat(Math.min(n, 7_000))}{"create_request":{"key":"!"}}`;
    default:
      return `{"key":"Zm9v","keys_only":true,"extra":[${Array(n).fill('"x"').join(',')}]}`;
  }
}

const NOT_OBJECTS = ['[]', '"abc"', '123', 'true', 'false', '1e400', '-0', '[{"key":"Zm9v"}]', '"\\ud800"', '0', '{}{}', '[null]', '"{}"', '{} 1'];
const KNOWN_GET = ['/version', '/stats', '/health', '/healthz', '/readyz', '/metrics', '/openapi.json', '/openapi.yaml'];
const METHODS = ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'MKCOL', 'LOCK', 'UNLOCK', 'SEARCH', 'PURGE', 'COPY', 'MOVE', 'REPORT', 'MERGE', 'NOTIFY', 'SUBSCRIBE', 'M-SEARCH', 'LINK', 'UNLINK', 'FOO', 'QUERY'];

function unknownPath(rng: Rng, ops: Operation[]): string {
  const op = rng.pick(ops);
  const p = op.path;
  let path: string;
  switch (rng.int(8)) {
    case 0: {
      const i = rng.between(1, p.length - 1);
      path = p.slice(0, i) + rng.pick(['x', '/', '%', '%2e', '.', '..', '%00', ';', '~', 'Z']) + p.slice(i);
      break;
    }
    case 1:
      path = `${p}/${rng.pick(['', 'x', '..', '%2F'])}`;
      break;
    case 2:
      path = p.toUpperCase();
      break;
    case 3:
      path = `/v3/kv/${crypto.createHash('sha1').update(String(rng.next())).digest('hex').slice(0, rng.between(1, 20))}`;
      break;
    case 4:
      path = rng.pick(['/v4/kv/range', '/v2/keys/foo', '/v3alpha', '/v3beta/', '/v3', '/v3/', '//v3/kv/range', '/v3//kv/range', '/V3/kv/range', '/%76%33/kv/range', '/v3/kv/range%00', '/favicon.ico', '/.env', '/admin', '/api/v1', '/v3/kv/../kv/put', '/wp-login.php']);
      break;
    case 5: {
      const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-._~%/!$&()*+,;=:@';
      path = `/${Array.from({ length: rng.between(1, 60) }, () => chars[rng.int(chars.length)]).join('')}`;
      break;
    }
    case 6:
      path = `/${'a/'.repeat(rng.between(100, 2_500))}`;
      break;
    default:
      path = `${p.slice(0, rng.between(2, p.length - 1))}`;
  }
  // Not the docs (Swagger UI serves its page under any /docs path), not a real GET endpoint, not /.
  const bare = path.split('?')[0];
  if (bare.startsWith('/docs') || bare === '/' || KNOWN_GET.includes(bare)) return '/no/such/route';
  return path;
}

const RAW_TEMPLATES: Array<(rng: Rng, path: string) => { steps: RawStep[]; answerRequired: boolean }> = [
  (rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${rng.pick(['abc', '-1', '1.5', '2 2', '0x10', '99999999999999999999', '', '+2', '2,3'])}\r\n\r\n{}`], answerRequired: true }),
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x`], answerRequired: true }),
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{"key":!}\r\n0\r\n\r\n`], answerRequired: true }),
  (rng, p) => ({
    steps: [
      `POST ${p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
        rng.pick([
          'zz\r\n{}\r\n0\r\n\r\n',
          '-1\r\n{}\r\n0\r\n\r\n',
          'fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n',
          `1;${'a'.repeat(20_000)}\r\n{\r\n0\r\n\r\n`,
          '2\r\n{}}}}}\r\n0\r\n\r\n',
          '2\r\n{}0\r\n\r\n',
          '9\r\n{"key":!}\r\n0\r\nBad Trailer\r\n\r\n',
          '9\n{"key":!}\n0\n\n',
          '\r\n\r\n',
          '9 \r\n{"key":!}\r\n0\r\n\r\n',
          '0x9\r\n{"key":!}\r\n0\r\n\r\n',
        ]),
    ],
    answerRequired: true,
  }),
  (rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${rng.pick(['gzip', 'chunked, gzip', 'garbage', 'chunked, chunked', 'identity'])}\r\n\r\n9\r\n{"key":!}\r\n0\r\n\r\n`], answerRequired: true }),
  (rng) => ({
    steps: [
      rng.pick<RawStep>([
        Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...rng.bytes(64)]),
        'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
        'SSH-2.0-OpenSSH_9.6\r\n',
        'GET /nope\r\n\r\n',
        `POST /v3/kv/put HTTP/1.1 extra\r\nHost: x\r\n\r\n`,
        `POST /v3/kv/put HTTP/9.9\r\nHost: x\r\n\r\n`,
        `POST  /v3/kv/put HTTP/1.1\r\nHost: x\r\n\r\n`,
        `post /v3/kv/put HTTP/1.1\r\nHost: x\r\n\r\n`,
        `POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"key":!}`.replace(/\r\n/g, '\n'),
        Buffer.concat([Buffer.from('POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n'), Buffer.from([0, 0, 0]), Buffer.from('\r\n\r\n')]),
        Buffer.concat([rng.bytes(rng.between(1, 2_000)), Buffer.from('\r\n\r\n')]),
        `\r\n\r\n\r\nGARBAGE\r\n\r\n`,
        `POST /v3/kv/put\x00 HTTP/1.1\r\nHost: x\r\n\r\n`,
        `POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"key":!}GARBAGE / HTTP/1.1\r\n\r\n`,
      ]),
    ],
    answerRequired: true,
  }),
  (rng, p) => ({
    steps: [
      `POST ${p} HTTP/1.1\r\n` +
        rng.pick(['Host : x\r\n', 'Host x\r\n', 'Ho st: x\r\n', 'Host: x\r\n folded\r\n', 'Host: x\r\nX-A: b\x00c\r\n', ': empty\r\n', 'Host: x\r\nX\x7f: 1\r\n', 'Host: x\r\nX-A: \x01\r\n']) +
        'Content-Length: 9\r\n\r\n{"key":!}',
    ],
    answerRequired: true,
  }),
  // HTTP/1.1 without Host; HTTP/1.0 without Host; absolute and asterisk forms; CONNECT.
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nContent-Length: 9\r\n\r\n{"key":!}`], answerRequired: true }),
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.0\r\nContent-Length: 9\r\n\r\n{"key":!}`], answerRequired: true }),
  (_rng, p) => ({ steps: [`POST http://127.0.0.1${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"key":!}`], answerRequired: true }),
  () => ({ steps: ['OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n'], answerRequired: true }),
  (rng) => ({ steps: [`CONNECT ${rng.pick(['127.0.0.1:2379', 'x:1', 'evil.example:443'])} HTTP/1.1\r\nHost: x\r\n\r\n`], answerRequired: true }),
  // Body shorter or longer than Content-Length says; Expect: 100-continue; pipelined garbage.
  (rng, p) => {
    const body = '{"key":"Zm9v","value":"YmFy","lease":"x"}';
    const cl = rng.between(1, body.length - 1);
    return { steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${cl}\r\n\r\n${body}`], answerRequired: true };
  },
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n{"key":`, 'end'], answerRequired: false }),
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n`, { delayMs: 20 }, '{"key":!}'], answerRequired: true }),
  (rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"key":!}`, rng.bytes(rng.between(1, 500))], answerRequired: true }),
  // An Upgrade that is not a WebSocket one, on an API route.
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 9\r\n\r\n{"key":!}`], answerRequired: true }),
  // Declared far over the body limit: refused before anything is read.
  (_rng, p) => ({ steps: [`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{"key":`], answerRequired: true }),
];

const WS_HANDSHAKES: Array<(rng: Rng) => string> = [
  () => 'GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
  (rng) => `GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${rng.pick(['abc', '', '!!!!!!!!!!!!!!!!!!!!!!==', 'dGhlIHNhbXBsZSBub25jZQ'])}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  (rng) => `GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: ${rng.pick(['12', '0', 'x', '14'])}\r\n\r\n`,
  () => 'POST /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n',
  (rng) => `GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: ${rng.pick(['h2c', 'websockets', 'TLS/1.0', 'x'])}\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  (rng) => wsHandshake(rng.pick(['/v3/kv/range', '/v3/nope', '/v3/watch/', '/', '/v3/lease/grant'])).request,
  (rng) => wsHandshake('/v3/watch', `Sec-WebSocket-Protocol: ${rng.pick([',', 'a,,b', 'a b', 'a,a'])}\r\n`).request,
  (rng) => wsHandshake('/v3/watch', `${rng.pick(['Authorization: tok\u00e9n', 'Grpc-Metadata-a!b: x', 'Grpc-Metadata-Token: \u00ff'])}\r\n`).request,
];

function wsGarbageFrames(rng: Rng): Buffer[] {
  const text = Buffer.from('{"create_request":{"key":"!"}}');
  switch (rng.int(13)) {
    case 0:
      return [wsFrame({ opcode: 1, payload: text, mask: false })];
    case 1:
      return [wsFrame({ opcode: 1, payload: text, rsv: rng.pick([1, 2, 4, 7]) })];
    case 2:
      return [wsFrame({ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: text })];
    case 3:
      return [wsFrame({ opcode: 9, payload: Buffer.alloc(rng.between(126, 1000), 1) })];
    case 4:
      return [wsFrame({ opcode: 9, payload: Buffer.from('x'), fin: false })];
    case 5:
      return [wsFrame({ opcode: 0, payload: text })];
    case 6:
      return [wsFrame({ opcode: 1, payload: Buffer.concat([Buffer.from('{"a":"'), Buffer.from(rng.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80]])), Buffer.from('"}')]) })];
    case 7: {
      const code = Buffer.alloc(2);
      code.writeUInt16BE(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535]));
      return [wsFrame({ opcode: 8, payload: code })];
    }
    case 8:
      return [wsFrame({ opcode: 8, payload: Buffer.from([3]) })];
    case 9:
      return [wsFrame({ opcode: 1, payload: Buffer.alloc(0), lengthOverride: rng.pick([2n ** 63n + 5n, 2n ** 40n, BigInt(MAX_BODY_BYTES + 1)]) })];
    case 10:
      return [wsFrame({ opcode: 1, payload: Buffer.from('{"a'), fin: false }), wsFrame({ opcode: 1, payload: Buffer.from('"}') })];
    case 11: {
      const close = Buffer.alloc(2);
      close.writeUInt16BE(1000);
      return [wsFrame({ opcode: 8, payload: close })];
    }
    default:
      return [wsFrame({ opcode: 2, payload: rng.bytes(rng.between(1, 200)), mask: rng.chance(0.5) }), wsFrame({ opcode: 1, payload: Buffer.from([0xff]) })];
  }
}

function makeCase(ctx: Ctx, rng: Rng): Case {
  const category = rng.weighted(WEIGHTS);
  const allPost = [...ctx.ops.values()].filter((o) => o.method === 'post');
  const schemaOps = SCHEMA_OPS.map((id) => ctx.ops.get(id)!);
  const op = rng.pick(schemaOps);
  const post = (body: Buffer, o: Operation = op, headers?: http.OutgoingHttpHeaders): Case => {
    const path = apiPath(rng, o);
    return { category, desc: `POST ${path} ${excerpt(body)}`, run: () => httpRequest(ctx, { method: 'POST', path, body, headers }) };
  };
  switch (category) {
    case 'broken-json': {
      const base = rng.chance(0.7) ? schemaBody(ctx, rng, op, 'valid') : schemaBody(ctx, rng, op, 'wrong-type');
      return post(invalidBody(ctx, op, breakJson(base, rng)));
    }
    case 'wrong-type':
    case 'bad-number':
    case 'bad-base64':
    case 'unknown-field':
      return post(invalidBody(ctx, op, Buffer.from(schemaBody(ctx, rng, op, category))));
    case 'deep-nesting':
      return post(invalidBody(ctx, op, Buffer.from(deepNesting(rng))));
    case 'huge-array':
      return post(invalidBody(ctx, op, Buffer.from(hugeArray(rng, op))));
    case 'not-object':
      return post(invalidBody(ctx, op, Buffer.from(rng.pick(NOT_OBJECTS))));
    case 'garbage-any-route': {
      const o = rng.pick(allPost);
      const kind = ctx.model.component(o.requestSchema!);
      return post(invalidBody(ctx, o, breakJson(ser(sample(kind, rng)), rng)), o);
    }
    case 'unknown-route': {
      const path = unknownPath(rng, allPost);
      const method = rng.chance(0.8) ? 'POST' : 'GET';
      return { category, desc: `${method} ${excerpt(path)}`, run: () => httpRequest(ctx, { method, path, body: method === 'POST' ? BROKEN_BODY : undefined }) };
    }
    case 'wrong-method': {
      const onApi = rng.chance(0.8);
      const method = onApi ? rng.pick(METHODS) : rng.pick(METHODS.filter((m) => m !== 'GET' && m !== 'HEAD'));
      const o = rng.pick(allPost);
      const path = onApi ? apiPath(rng, o) : rng.pick(KNOWN_GET.slice(0, 6));
      // A valid request under the wrong method must not run: the snapshot of etcd would show it.
      const body = onApi && rng.chance(0.5) ? Buffer.from(ser(sample(ctx.model.component(o.requestSchema!), rng))) : BROKEN_BODY;
      return { category, desc: `${method} ${path} ${excerpt(body)}`, run: () => httpRequest(ctx, { method, path, body }) };
    }
    case 'oversized-body': {
      const size = MAX_BODY_BYTES + rng.between(1, MAX_BODY_BYTES / 2);
      const body = Buffer.concat([Buffer.from('{"key":"!'), Buffer.alloc(size - 11, 'A'), Buffer.from('"}')]);
      const path = apiPath(rng, op);
      switch (rng.int(4)) {
        case 0:
          return { category, desc: `POST ${path} (${size} bytes, Content-Length)`, run: () => httpRequest(ctx, { method: 'POST', path, body }) };
        case 1: {
          const chunks: Buffer[] = [];
          for (let i = 0; i < body.length; i += 16_384) chunks.push(body.subarray(i, i + 16_384));
          return { category, desc: `POST ${path} (${size} bytes, chunked)`, run: () => httpRequest(ctx, { method: 'POST', path, chunks }) };
        }
        case 2: {
          gzipBomb ??= zlib.gzipSync(Buffer.concat([Buffer.from('{"key":"!'), Buffer.alloc(4 * MAX_BODY_BYTES, '0'), Buffer.from('"}')]));
          const bomb = gzipBomb;
          return {
            category,
            desc: `POST ${path} (gzip of ${4 * MAX_BODY_BYTES} bytes in ${bomb.length})`,
            run: () => httpRequest(ctx, { method: 'POST', path, body: bomb, headers: { 'Content-Encoding': 'gzip' } }),
          };
        }
        default: {
          const o = ctx.ops.get(rng.pick(['Watch_Watch', 'Lease_LeaseKeepAlive', 'Election_Observe']))!;
          const wsPath = o.path.slice(3);
          return {
            category,
            desc: `WebSocket ${wsPath}: a ${size}-byte message`,
            run: () => wsSession(ctx, `/v3${wsPath}`, [{ data: body, binary: false }], true),
          };
        }
      }
    }
    case 'oversized-header': {
      const path = apiPath(rng, op);
      let head: string;
      switch (rng.int(4)) {
        case 0:
          head = `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(rng.between(MAX_HEADER_BYTES + 1, 3 * MAX_HEADER_BYTES))}\r\n`;
          break;
        case 1:
          head = `POST ${path} HTTP/1.1\r\nHost: x\r\n${Array.from({ length: rng.between(500, 900) }, (_, i) => `X-H${i}: vvvvvvvvvv\r\n`).join('')}`;
          break;
        case 2:
          head = `POST ${path}?${'q'.repeat(rng.between(MAX_HEADER_BYTES, 2 * MAX_HEADER_BYTES))} HTTP/1.1\r\nHost: x\r\n`;
          break;
        default:
          head = `POST ${path} HTTP/1.1\r\nHost: x\r\n${'a:b\r\n'.repeat(3_000)}`;
      }
      return { category, desc: `${excerpt(head, 60)} (${head.length} bytes of head)`, run: () => rawCase(ctx, [`${head}Content-Length: 9\r\n\r\n{"key":!}`]) };
    }
    case 'bad-headers': {
      // Valid, read-only bodies: the header alone must make the request fail, with a 4xx.
      const variant = rng.int(5);
      if (variant <= 2) {
        const o = ctx.ops.get(rng.pick(['KV_Range', 'Watch_Watch']))!;
        const body = Buffer.from(o.operationId === 'KV_Range' ? `{"key":"${b64('fuzz/seed/1')}"}` : `{"create_request":{"key":"${b64('fuzz/seed/1')}"}}`);
        const headers: http.OutgoingHttpHeaders =
          variant === 0
            ? { Authorization: rng.pick(['tok\u00e9n', 'a\tb', '\u00ff'.repeat(10), 'Bearer \u00e9']) }
            : variant === 1
              ? { [`Grpc-Metadata-${rng.pick(['a!b', 'x#', "it's", 'a*b', 'a^b', 'a`b', 'a|b', 'a~b', 'a$b', 'a%b', 'a&b', 'a+b'])}`]: 'x' }
              : { 'Grpc-Metadata-Token': rng.pick(['\u00e9', 'a\tb']) };
        return post(body, o, headers);
      }
      if (variant === 3) {
        // Bodies the gateway inflates (gzip, deflate, br) to broken JSON, cut short, or in an encoding it
        // does not know. (Random bytes could be a brotli stream of nothing: the empty message.)
        const encoding = rng.pick(['gzip', 'deflate', 'br', 'x-custom', 'gzip, identity', 'compress']);
        const compress: Record<string, (b: Buffer) => Buffer> = { gzip: zlib.gzipSync, deflate: zlib.deflateSync, br: zlib.brotliCompressSync };
        const packed = compress[encoding]?.(invalidBody(ctx, op, breakJson(schemaBody(ctx, rng, op, 'valid'), rng)));
        const body = !packed ? Buffer.concat([rng.bytes(rng.between(1, 300)), BROKEN_BODY]) : rng.chance(0.5) ? packed : packed.subarray(0, Math.floor(packed.length / 2));
        return post(body, op, { 'Content-Encoding': encoding });
      }
      const headers = rng.pick<http.OutgoingHttpHeaders>([
        { Expect: rng.pick(['x', '200-ok', '100-continue-not', 'garbage garbage']) },
        { 'Content-Type': rng.pick(['', 'application/json; charset=utf-16', 'text/\u00e9', 'multipart/form-data; boundary=']) },
        { Connection: rng.pick(['garbage', 'close, keep-alive, x']) },
        { 'X-Request-Id': 'é'.repeat(500) },
      ]);
      return post(BROKEN_BODY, op, headers);
    }
    case 'raw-http': {
      const path = apiPath(rng, op);
      const t = rng.pick(RAW_TEMPLATES)(rng, path);
      const first = t.steps.find((s): s is string | Buffer => typeof s === 'string' || Buffer.isBuffer(s));
      return { category, desc: `raw ${excerpt(first ?? '')}`, run: () => rawCase(ctx, t.steps, t.answerRequired) };
    }
    case 'websocket': {
      const wsPath = rng.pick(Object.keys(WS_PATHS));
      const o = ctx.ops.get(WS_PATHS[wsPath])!;
      const kind = ctx.model.component(o.requestSchema!);
      const messages = Array.from({ length: rng.between(1, 5) }, () => {
        let data: Buffer;
        switch (rng.int(6)) {
          case 0:
            data = Buffer.from(rng.pick(['', ' ', 'hello', 'null', '[]', '1', '"x"', '{', '}', 'undefined', '{"create_request":']));
            break;
          case 1:
            data = breakJson(ser(sample(kind, rng)), rng);
            break;
          case 2:
            data = Buffer.from('['.repeat(rng.between(65, 100_000)));
            break;
          case 3:
            return { data: Buffer.concat([Buffer.from([0xff]), rng.bytes(rng.between(0, 300))]), binary: true };
          default:
            data = Buffer.from(ser(mutatedRequest(kind, rng, rng.pick(['wrong-type', 'bad-number', 'bad-base64', 'unknown-field'] as const))));
        }
        return { data: invalidMessage(ctx, o, data), binary: rng.chance(0.1) };
      });
      const path = `/v3${rng.chance(0.8) ? '' : rng.pick(['beta', 'alpha'])}${wsPath}`;
      return { category, desc: `WebSocket ${path}: ${messages.map((m) => excerpt(m.data, 60)).join(', ')}`, run: () => wsSession(ctx, path, messages, false) };
    }
    case 'websocket-raw': {
      if (rng.chance(0.4)) {
        const request = rng.pick(WS_HANDSHAKES)(rng);
        return { category, desc: `WebSocket handshake ${excerpt(request, 120)}`, run: () => rawCase(ctx, [request]) };
      }
      const wsPath = rng.pick(Object.keys(WS_PATHS));
      const frames = wsGarbageFrames(rng);
      return { category, desc: `WebSocket ${wsPath} frames ${frames.map((f) => excerpt(f, 24)).join(' ')}`, run: () => wsRawFrames(ctx, wsPath, frames) };
    }
  }
}

/** The systematic part: every field of every fuzzed schema, made wrong one at a time (several full
 *  samples per operation, so that each branch of a oneOf gets its turn). `covered` collects the
 *  fields swept, by operation. */
function sweepCases(ctx: Ctx, covered: Map<string, Set<string>>): Case[] {
  const cases: Case[] = [];
  SCHEMA_OPS.forEach((id, k) => {
    const op = ctx.ops.get(id)!;
    const kind = ctx.model.component(op.requestSchema!);
    for (let n = 0; n < SWEEPS_PER_OP; n++) {
      const rng = Rng.forCase(SEED ^ 0x5eed, k * SWEEPS_PER_OP + n);
      for (const { path, body } of fieldSweep(kind, rng, n)) {
        const fields = covered.get(id) ?? new Set<string>();
        fields.add(path.split('/')[1]);
        covered.set(id, fields);
        const bytes = invalidBody(ctx, op, Buffer.from(ser(body)));
        cases.push({
          category: 'field-sweep',
          desc: `POST ${op.path} ${path} wrong: ${excerpt(bytes)}`,
          run: () => httpRequest(ctx, { method: 'POST', path: op.path, body: bytes }),
        });
      }
    }
  });
  return cases;
}

// ---- half-open connections ----------------------------------------------------------------------------

interface HalfOpen {
  desc: string;
  steps: RawStep[];
  /** The gateway must close it within this; undefined: we close it ourselves. */
  closeWithinMs?: number;
  /** What it may answer before closing: a 408 (or another refusal) in JSON, or WebSocket frames. */
  answer: 'refusal' | 'any';
}

function halfOpenCases(): HalfOpen[] {
  const head = HEADERS_TIMEOUT_MS + CLOSE_MARGIN_MS;
  const whole = REQUEST_READ_TIMEOUT_MS + CLOSE_MARGIN_MS;
  const ws = 3 * PING_INTERVAL_MS + CLOSE_MARGIN_MS;
  const { request } = wsHandshake('/v3/watch');
  const kinds: HalfOpen[] = [
    { desc: 'connect, send nothing', steps: [], closeWithinMs: head, answer: 'refusal' },
    { desc: 'a partial request line', steps: ['POST /v3/kv/pu'], closeWithinMs: head, answer: 'refusal' },
    { desc: 'partial headers', steps: ['POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Le'], closeWithinMs: head, answer: 'refusal' },
    { desc: 'a partial body', steps: ['POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"key":"Zm9v",'], closeWithinMs: whole, answer: 'refusal' },
    { desc: 'a partial chunked body', steps: ['POST /v3/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"cre'], closeWithinMs: whole, answer: 'refusal' },
    { desc: 'a partial WebSocket handshake', steps: [request.slice(0, 60)], closeWithinMs: head, answer: 'refusal' },
    { desc: 'a WebSocket, then half a frame', steps: [request, wsFrame({ opcode: 1, payload: Buffer.from('{"create_request":{}}') }).subarray(0, 9)], closeWithinMs: ws, answer: 'any' },
    { desc: 'a partial request, then FIN', steps: ['POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"ke', 'end'], closeWithinMs: CLOSE_MARGIN_MS, answer: 'refusal' },
    { desc: 'partial headers, then FIN', steps: ['POST /v3/kv/put HTTP/1.1\r\nHo', 'end'], closeWithinMs: CLOSE_MARGIN_MS, answer: 'refusal' },
    { desc: 'a partial request, then reset', steps: ['POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"ke', { delayMs: 50 }, 'reset'], answer: 'any' },
    { desc: 'a WebSocket upgrade to a bad path, then reset', steps: [wsHandshake('/v3/nope').request, 'reset'], answer: 'any' },
    { desc: 'a WebSocket, half a frame, then reset', steps: [request, wsFrame({ opcode: 1, payload: Buffer.from('{}') }).subarray(0, 3), { delayMs: 20 }, 'reset'], answer: 'any' },
  ];
  return Array.from({ length: 8 }, () => kinds).flat();
}

async function runHalfOpen(port: number, c: HalfOpen): Promise<string | undefined> {
  const o = await rawExchange(port, c.steps, { timeoutMs: c.closeWithinMs ?? 2_000 });
  if (c.closeWithinMs === undefined) return undefined;
  if (!o.closedByServer) return `${c.desc}: not closed by the gateway within ${c.closeWithinMs} ms`;
  if (c.answer === 'refusal' && o.data.length > 0) {
    if (!o.answer) return `${c.desc}: closed after an incomplete answer ${excerpt(o.data)}`;
    return refusalProblem(o.answer.status, o.answer.headers['content-type'], o.answer.body.toString('utf8'));
  }
  return undefined;
}

// ---- etcd's state -------------------------------------------------------------------------------------

/** Everything a request through the gateway could change, read from etcd directly (its own gateway). */
async function etcdState(etcd: TestEtcd): Promise<Record<string, unknown>> {
  const call = async (path: string, body: object): Promise<Record<string, unknown>> => {
    const r = await fetch(`${etcd.clientUrl}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
    const json = (await r.json()) as Record<string, unknown>;
    delete json.header;
    return { status: r.status, ...json };
  };
  const all = await fetch(`${etcd.clientUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'AA==', range_end: 'AA==' }), signal: AbortSignal.timeout(10_000) });
  const kv = (await all.json()) as { header: { revision: string }; kvs?: unknown[]; count?: string };
  return {
    revision: kv.header.revision,
    kvs: kv.kvs,
    count: kv.count,
    leases: await call('/v3/lease/leases', {}),
    users: await call('/v3/auth/user/list', {}),
    roles: await call('/v3/auth/role/list', {}),
    members: ((await call('/v3/cluster/member/list', {})).members as Array<Record<string, unknown>>).map((m) => m.ID),
    // Fails once history before revision 2 is compacted.
    oldestRevision: await call('/v3/kv/range', { key: 'AA==', range_end: 'AA==', revision: 2, count_only: true }),
    alarms: await call('/v3/maintenance/alarm', { action: 'GET' }),
  };
}

// ---- the test -----------------------------------------------------------------------------------------

/** Runs `count` cases, CONCURRENCY at a time; `make(i)` builds case i when a worker is free for it. */
async function runPool(count: number, make: (i: number) => Case, onResult: (i: number, c: Case, r: Result) => void): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const c = make(i);
      onResult(i, c, await c.run());
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

describe('fuzz: hostile and broken clients', () => {
  let etcd: TestEtcd;
  let gw: ChildGateway;
  /** The same with HTTP_FAST_LANE=off, for the fixed cases: both paths must refuse them alike. */
  let gwNode: ChildGateway;
  let client: EtcdClient;
  before(async () => {
    etcd = await startTestEtcd();
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 10_000 });
    // Something to lose: keys, one of them on a long lease.
    const lease = await client.unary<{ ID: string }>('Lease', 'LeaseGrant', { TTL: 3600 }, { idempotent: false });
    for (let i = 0; i < 40; i++) {
      await client.unary('KV', 'Put', { key: Buffer.from(`fuzz/seed/${i}`), value: Buffer.from(`v${i}`), lease: i === 0 ? lease.ID : 0 }, { idempotent: false });
    }
    const settings = {
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      MAX_HEADER_BYTES: String(MAX_HEADER_BYTES),
      HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      REQUEST_READ_TIMEOUT_MS: String(REQUEST_READ_TIMEOUT_MS),
      WS_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      LOG_LEVEL: 'warn',
    };
    [gw, gwNode] = await Promise.all([startChildGateway(etcd.clientUrl, settings), startChildGateway(etcd.clientUrl, { ...settings, HTTP_FAST_LANE: 'off' })]);
  });
  after(async () => {
    await Promise.all([gw?.stop(15_000), gwNode?.stop(15_000)]);
    client?.close();
    await etcd?.cleanup();
  });

  // What the first runs of this fuzzer found, as fixed cases (each failed before its fix, as noted), with
  // the fast lane and without.
  for (const lane of ['on', 'off'] as const) {
    it(`refuses what it used to crash on, answer with a 5xx or run wrongly (HTTP_FAST_LANE=${lane})`, { timeout: 60_000 }, async () => {
      const target = lane === 'on' ? gw : gwNode;
      const port = Number(new URL(target.url).port);
      const ask = async (request: string | Buffer, steps: RawStep[] = []): Promise<{ status: number; body: string; type?: string }> => {
        const o = await rawExchange(port, [request, ...steps], { timeoutMs: CASE_TIMEOUT_MS, untilAnswer: true });
        assert.ok(o.answer, `no answer to ${excerpt(request)}: ${excerpt(o.data)}`);
        return { status: o.answer.status, body: o.answer.body.toString(), type: o.answer.headers['content-type'] };
      };
      const refused = async (request: string | Buffer, status: number, message: RegExp, steps?: RawStep[]): Promise<void> => {
        const a = await ask(request, steps);
        assert.equal(refusalProblem(a.status, a.type, a.body), undefined, `${excerpt(request)}`);
        assert.equal(a.status, status, `${excerpt(request)}: ${a.body}`);
        assert.match(JSON.parse(a.body).message as string, message);
      };
      const withBody = (path: string, headers: string, body: string): string =>
        `POST ${path} HTTP/1.1\r\nHost: x\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      const key = b64('fuzz/seed/1');
      // A header gRPC metadata cannot carry: was a 500 on unary routes, and crashed the process
      // (an unhandled rejection) on the HTTP watch, keepalive and observe streams.
      for (const [path, body] of [
        ['/v3/kv/range', `{"key":"${key}"}`],
        ['/v3/watch', `{"create_request":{"key":"${key}"}}`],
        ['/v3/lease/keepalive', '{"ID":"1"}'],
        ['/v3/election/observe', `{"name":"${key}"}`],
      ]) {
        await refused(Buffer.from(withBody(path, 'Authorization: tok\u00e9n\r\n', body), 'latin1'), 400, /^header authorization: .*printable ASCII/);
        await refused(withBody(path, 'Grpc-Metadata-a!b: x\r\n', body), 400, /^header grpc-metadata-a!b: a gRPC metadata name/);
      }
      // The same on a WebSocket upgrade: crashed the process (an exception in the upgrade listener).
      await refused(Buffer.from(wsHandshake('/v3/watch', 'Authorization: tok\u00e9n\r\n').request, 'latin1'), 400, /^header authorization/);
      // A refused upgrade whose client resets at once: crashed the process (an unhandled ECONNRESET).
      for (let i = 0; i < 50; i++) await rawExchange(port, [wsHandshake('/v3/nope').request, 'reset'], { timeoutMs: 2_000 });
      // 2,000 headers or more: Node dropped Content-Length with the extra ones, the body was read as empty
      // and the request ran as the empty message (here: a lease granted).
      await refused(withBody('/v3/lease/grant', 'a:b\r\n'.repeat(2_500), '{"TTL":"x"}'), 431, /2000 headers or more/);
      // What Node answered without a JSON body, or not at all.
      await refused('POST /v3/kv/range HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}', 400, /without a Host header/);
      await refused(withBody('/v3/kv/range', 'Expect: x\r\n', '{}'), 417, /unsupported Expect header/);
      await refused('CONNECT 127.0.0.1:2379 HTTP/1.1\r\nHost: x\r\n\r\n', 405, /CONNECT is not allowed/);
      await refused('GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 400, /Sec-WebSocket-Key/);
      await refused('POST /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n', 405, /Invalid HTTP method/);
      // A body that stops coming: 408 in JSON after REQUEST_READ_TIMEOUT_MS.
      await refused('POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"key":', 408, /REQUEST_READ_TIMEOUT_MS/);
      assert.equal(target.exit(), undefined, `the gateway exited:\n${target.output().slice(-4000)}`);
      const leases = (await (await fetch(`${etcd.clientUrl}/v3/lease/leases`, { method: 'POST', body: '{}' })).json()) as { leases?: unknown[] };
      assert.equal(leases.leases?.length, 1, 'only the seeded lease');
    });
  }

  // A body refused part-way (over the limit once read, or not the gzip it claimed to be) was answered at
  // once with `Connection: keep-alive` and the rest of it left unread. The client, done sending, reused the
  // connection; its next request was never read, and when REQUEST_READ_TIMEOUT_MS ran out the gateway's
  // 408 (`Connection: close`, with a JSON body) came as its answer — to a HEAD, bytes after
  // `Connection: close`, which Node's client reports as HPE_CLOSED_CONNECTION (1 fuzz run in ~13).
  for (const lane of ['on', 'off'] as const) {
    it(`keeps a keep-alive connection usable after refusing a body part-way (HTTP_FAST_LANE=${lane})`, { timeout: 60_000 }, async () => {
      const port = Number(new URL((lane === 'on' ? gw : gwNode).url).port);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const send = (method: string, path: string, body: Buffer | Buffer[], headers: http.OutgoingHttpHeaders = {}) =>
        new Promise<{ status: number; connection?: string; body: string; reused: boolean }>((resolve, reject) => {
          const chunked = Array.isArray(body);
          const r = http.request({ host: '127.0.0.1', port, method, path, agent, headers: chunked ? headers : { 'Content-Length': body.length, ...headers } });
          r.on('error', reject);
          r.on('response', (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (d: Buffer) => chunks.push(d));
            res.on('error', reject);
            res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body: Buffer.concat(chunks).toString(), reused: r.reusedSocket }));
          });
          if (chunked) {
            for (const c of body) r.write(c);
            r.end();
          } else {
            r.end(body);
          }
        });
      const big = Buffer.alloc(MAX_BODY_BYTES + 128 * 1024, 'A');
      const refusals: Array<[string, Buffer | Buffer[], http.OutgoingHttpHeaders, number, RegExp]> = [
        ['chunked, over the limit', Array.from({ length: big.length / 16_384 }, (_, i) => big.subarray(i * 16_384, (i + 1) * 16_384)), {}, 413, /larger than the limit/],
        ['not gzip', big.subarray(0, MAX_BODY_BYTES - 1024), { 'Content-Encoding': 'gzip' }, 400, /could not be read/],
      ];
      try {
        for (const [what, body, headers, status, message] of refusals) {
          const refused = await send('POST', '/v3/kv/put', body, headers);
          assert.equal(refused.status, status, `${what}: ${refused.body}`);
          assert.match(JSON.parse(refused.body).message as string, message, what);
          assert.equal(refused.connection, 'keep-alive', what);
          const next = await withTimeout(`${what}: the next request on the connection`, send('HEAD', '/v3/lease/grant', Buffer.from('{"TTL":"71"}')), REQUEST_READ_TIMEOUT_MS - 1_000);
          assert.deepEqual(next, { status: 405, connection: 'keep-alive', body: '', reused: true }, what);
        }
      } finally {
        agent.destroy();
      }
    });
  }

  it(`answers ${CASES.toLocaleString('en-US')} malformed requests with 4xx in JSON, and is unharmed`, { timeout: 240_000 }, async (t) => {
    const ops = new Map(spec().operations.map((o) => [o.operationId, o]));
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY, timeout: 2_000 });
    const ctx: Ctx = { port: Number(new URL(gw.url).port), agent, wsUrl: gw.wsUrl, ops, model: new SchemaModel(spec().doc), poisoned: 0 };
    const line = `fuzz seed ${SEED}: reproduce with FUZZ_SEED=${SEED}${process.env.FUZZ_CASES ? ` FUZZ_CASES=${CASES}` : ''}`;
    console.log(line);
    t.diagnostic(line);
    const before = await etcdState(etcd);

    const failures: string[] = [];
    const labels = new Map<string, Map<string, number>>();
    let sent = 0;
    const record = (name: string, c: Case, r: Result): void => {
      sent++;
      const byLabel = labels.get(c.category) ?? new Map<string, number>();
      byLabel.set(r.label, (byLabel.get(r.label) ?? 0) + 1);
      labels.set(c.category, byLabel);
      if (r.problem && failures.length < 25) failures.push(`${name} (${c.category}) ${c.desc}\n    → ${r.problem}`);
    };
    // Case i is built from its own seed: a failure's case number reproduces it (FUZZ_SEED).
    const runCases = (start: number, end: number): Promise<void> =>
      runPool(end - start, (i) => makeCase(ctx, Rng.forCase(SEED, start + i)), (i, c, r) => record(`case ${start + i}`, c, r));

    // Warm-up (compiles the gateway's hot paths, fills its caches): the field sweep and some random
    // cases; then the baseline.
    const t0 = Date.now();
    const covered = new Map<string, Set<string>>();
    const sweep = sweepCases(ctx, covered);
    await runPool(sweep.length, (i) => sweep[i], (i, c, r) => record(`sweep case ${i}`, c, r));
    await runCases(-WARMUP_CASES, 0);
    const heapBefore = await gw.heapAfterGc();
    const rssBefore = (await procSample(gw.pid)).rssBytes;

    // The run, with half-open connections held open alongside it.
    const halfOpen = halfOpenCases();
    const halfOpenRun = Promise.all(halfOpen.map((c) => runHalfOpen(ctx.port, c)));
    const t1 = Date.now();
    await runCases(0, CASES);
    const runMs = Date.now() - t1;
    const halfOpenProblems = (await withTimeout('half-open connections', halfOpenRun, 60_000)).filter((p): p is string => p !== undefined);
    agent.destroy();
    assert.equal(gw.exit(), undefined, `${line}: the gateway exited\n${failures.join('\n')}\n--- its output ---\n${gw.output().slice(-4000)}`);

    // No stream left behind, then the memory after GC.
    let stats: { watch: { connections: number; watches: number } } | undefined;
    for (let i = 0; i < 50; i++) {
      stats = (await (await fetch(`${gw.url}/stats`, { signal: AbortSignal.timeout(5_000) })).json()) as typeof stats;
      if (stats!.watch.connections === 0 && stats!.watch.watches === 0) break;
      await sleep(200);
    }
    await sleep(500);
    const heapAfter = await gw.heapAfterGc();
    const rssAfter = (await procSample(gw.pid)).rssBytes;
    const after = await etcdState(etcd);
    const metrics = await (await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();

    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const summary = [
      `${sent.toLocaleString('en-US')} requests (${sweep.length} field-sweep and ${WARMUP_CASES} random ones as warm-up) + ${halfOpen.length} half-open connections in ${((Date.now() - t0) / 1000).toFixed(1)} s ` +
        `(the ${CASES.toLocaleString('en-US')} measured ones in ${(runMs / 1000).toFixed(1)} s); ${ctx.poisoned} bodies the oracle found valid were spoiled before sending`,
      `gateway heap after GC ${mib(heapBefore.heapUsed)} → ${mib(heapAfter.heapUsed)} (bound +${mib(HEAP_GROWTH_LIMIT)}), RSS ${mib(rssBefore)} → ${mib(rssAfter)} (bound +${mib(RSS_GROWTH_LIMIT)})`,
      ...[...labels].sort().map(([cat, m]) => `  ${cat}: ${[...m].sort().map(([l, n]) => `${n}× ${l}`).join(', ')}`),
    ];
    for (const l of summary) t.diagnostic(l);

    for (const id of SCHEMA_OPS) {
      const kind = ctx.model.component(ops.get(id)!.requestSchema!);
      const branches = kind.t === 'oneOf' ? kind.branches.map((b) => b()) : [kind];
      const fields = branches.flatMap((k) => (k.t === 'object' ? k.props.map(([p]) => p) : []));
      const missed = fields.filter((f) => !covered.get(id)?.has(f));
      assert.deepEqual(missed, [], `${id}: fields of its schema never given a wrong value`);
    }
    assert.deepEqual(failures, [], `${line}\n${failures.join('\n')}`);
    assert.deepEqual(halfOpenProblems, [], `${line}: half-open connections`);
    assert.ok(sent >= CASES, `sent ${sent}`);
    assert.doesNotMatch(metrics, /gateway_http_requests_total\{[^}]*status="5\d\d"\}/, 'the gateway counted a 5xx answer');
    assert.deepEqual(stats?.watch, { ...stats?.watch, connections: 0, watches: 0 }, 'watch connections left open');
    assert.deepEqual(after, before, "etcd's data changed");
    assert.ok(heapAfter.heapUsed - heapBefore.heapUsed < HEAP_GROWTH_LIMIT, `heap grew by ${mib(heapAfter.heapUsed - heapBefore.heapUsed)}`);
    assert.ok(rssAfter - rssBefore < RSS_GROWTH_LIMIT, `RSS grew by ${mib(rssAfter - rssBefore)}`);

    // And it still serves, normally.
    const put = await fetch(`${gw.url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: b64('fuzz/after'), value: b64('ok') }), signal: AbortSignal.timeout(10_000) });
    assert.equal(put.status, 200, await put.text());
    const range = await fetch(`${gw.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64('fuzz/after') }), signal: AbortSignal.timeout(10_000) });
    const got = (await range.json()) as { kvs: Array<{ value: string }> };
    assert.equal(got.kvs[0].value, b64('ok'));
  });
});

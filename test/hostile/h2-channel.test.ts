// The gateway's own HTTP/2 framing for unary calls (src/etcd/unary-channel.ts), checked two ways:
// - against a real etcd, through EtcdClient: big requests and answers that need flow control in both
//   directions, many calls at once, deadlines and cancels that reset the stream, a graceful stop;
// - against node's own HTTP/2 server (nghttp2) as a second, independent implementation, set up to do
//   what etcd rarely does: one stream at a time, tiny windows, padded frames, header blocks split
//   into CONTINUATION frames, GOAWAY and REFUSED_STREAM, answers that are not gRPC.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { EtcdClient } from '../../src/etcd/client';
import { UnaryChannel, type UnaryError } from '../../src/etcd/unary-channel';
import { GatewayError, GrpcCode } from '../../src/core/errors';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

const MiB = 1024 * 1024;

describe('unary channel against etcd', () => {
  let etcd: TestEtcd;
  let client: EtcdClient;
  before(async () => {
    etcd = await startTestEtcd();
    client = new EtcdClient({ endpoints: [etcd.clientUrl], requestTimeoutMs: 10_000 });
  });
  after(async () => {
    client.close();
    await etcd.cleanup();
  });

  it('sends a 1.4 MiB value through etcd\'s 64 KiB window and reads it back byte for byte', async () => {
    const value = Buffer.alloc(1.4 * MiB);
    for (let i = 0; i < value.length; i++) value[i] = (i * 7919) & 0xff;
    await client.unary('KV', 'Put', { key: Buffer.from('big/one'), value }, { idempotent: false });
    const got = await client.unary<{ kvs: Array<{ value: Buffer }> }>('KV', 'Range', { key: Buffer.from('big/one') }, { idempotent: true });
    assert.equal(got.kvs.length, 1);
    assert.ok(Buffer.compare(got.kvs[0].value, value) === 0, 'value round-trips');
  });

  it('reads an answer larger than its 16 MiB stream window (window updates on the stream)', async () => {
    const value = Buffer.alloc(1.4 * MiB, 0x61);
    for (let i = 0; i < 13; i++) {
      value.writeUInt32BE(i, 0);
      await client.unary('KV', 'Put', { key: Buffer.from(`huge/${String(i).padStart(2, '0')}`), value }, { idempotent: false });
    }
    const got = await client.unary<{ kvs: Array<{ key: Buffer; value: Buffer }>; count: string }>(
      'KV',
      'Range',
      { key: Buffer.from('huge/'), range_end: Buffer.from('huge0') },
      { idempotent: true },
    );
    assert.equal(got.kvs.length, 13);
    const total = got.kvs.reduce((n, kv) => n + kv.value.length, 0);
    assert.ok(total > 16 * MiB, `answer of ${total} bytes`);
    got.kvs.forEach((kv, i) => {
      assert.equal(kv.key.toString(), `huge/${String(i).padStart(2, '0')}`);
      assert.equal(kv.value.readUInt32BE(0), i);
    });
    // The connection is still in step afterwards (windows, HPACK table).
    const small = await client.unary<{ count: string }>('KV', 'Range', { key: Buffer.from('huge/00'), count_only: true }, { idempotent: true });
    assert.equal(String(small.count), '1');
  });

  it('keeps 2,000 concurrent calls apart: every answer belongs to its request', async () => {
    const n = 2000;
    await Promise.all(
      Array.from({ length: n }, (_, i) => client.unary('KV', 'Put', { key: Buffer.from(`many/${i}`), value: Buffer.from(`v${i}`) }, { idempotent: false })),
    );
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) => client.unary<{ kvs: Array<{ key: Buffer; value: Buffer }> }>('KV', 'Range', { key: Buffer.from(`many/${i}`) }, { idempotent: true })),
    );
    answers.forEach((a, i) => {
      assert.equal(a.kvs[0].key.toString(), `many/${i}`);
      assert.equal(a.kvs[0].value.toString(), `v${i}`);
    });
  });

  it('a deadline ends a waiting call on time, resets its stream, and the connection goes on', async () => {
    const lease = await client.unary<{ ID: string }>('Lease', 'LeaseGrant', { TTL: 30 }, { idempotent: false });
    const held = await client.unary<{ key: Buffer }>('Lock', 'Lock', { name: Buffer.from('dl'), lease: lease.ID }, { idempotent: false });
    const lease2 = await client.unary<{ ID: string }>('Lease', 'LeaseGrant', { TTL: 30 }, { idempotent: false });
    const started = Date.now();
    await assert.rejects(
      client.unary('Lock', 'Lock', { name: Buffer.from('dl'), lease: lease2.ID }, { idempotent: false, deadline: Date.now() + 500 }),
      (e: GatewayError) => e.code === GrpcCode.DEADLINE_EXCEEDED,
    );
    const took = Date.now() - started;
    assert.ok(took >= 450 && took < 1500, `deadline after ${took} ms`);
    // etcd saw the reset: the abandoned waiter does not take the lock once it is free.
    await client.unary('Lock', 'Unlock', { key: held.key }, { idempotent: false });
    await new Promise((r) => setTimeout(r, 300));
    const waiters = await client.unary<{ count: string }>('KV', 'Range', { key: Buffer.from('dl/'), range_end: Buffer.from('dl0'), count_only: true }, { idempotent: true });
    assert.equal(String(waiters.count), '0', 'no lock key left behind by the cancelled waiter');
    const again = await client.unary<{ kvs?: unknown[] }>('KV', 'Range', { key: Buffer.from('big/one'), count_only: true }, { idempotent: true });
    assert.ok(again);
  });

  it('an abort signal ends a call at once', async () => {
    const lease = await client.unary<{ ID: string }>('Lease', 'LeaseGrant', { TTL: 30 }, { idempotent: false });
    await client.unary('Lock', 'Lock', { name: Buffer.from('ab'), lease: lease.ID }, { idempotent: false });
    const lease2 = await client.unary<{ ID: string }>('Lease', 'LeaseGrant', { TTL: 30 }, { idempotent: false });
    const controller = new AbortController();
    const waiting = client.unary('Lock', 'Lock', { name: Buffer.from('ab'), lease: lease2.ID }, { idempotent: false, signal: controller.signal });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    controller.abort();
    await assert.rejects(waiting, (e: GatewayError) => e.code === GrpcCode.CANCELLED);
    assert.ok(Date.now() - started < 100);
  });

  it('metadata that HTTP/2 cannot carry is refused before anything is sent', async () => {
    const channel = new UnaryChannel(etcd.clientUrl, false);
    try {
      await assert.rejects(channel.call('/etcdserverpb.KV/Range', Buffer.alloc(0), { token: 'a\r\nb' }, Date.now() + 1000), (e: UnaryError) => {
        assert.equal(e.code, GrpcCode.INVALID_ARGUMENT);
        assert.match(e.details, /token/);
        return true;
      });
    } finally {
      channel.close();
    }
  });

  it('a graceful etcd stop fails open calls as UNAVAILABLE, never hangs, and the channel reconnects after', async () => {
    const channel = new UnaryChannel(etcd.clientUrl, false);
    try {
      const range = Buffer.from([0x0a, 0x01, 0x78]); // RangeRequest{key: "x"}
      await channel.call('/etcdserverpb.KV/Range', range, undefined, Date.now() + 2000);
      const calls = Array.from({ length: 200 }, () =>
        channel.call('/etcdserverpb.KV/Range', range, undefined, Date.now() + 5000).then(
          () => 'ok',
          (e: UnaryError) => e.code,
        ),
      );
      await etcd.stop();
      const outcomes = await Promise.all(calls);
      for (const o of outcomes) assert.ok(o === 'ok' || o === GrpcCode.UNAVAILABLE, `outcome ${String(o)}`);
      await etcd.restart();
      const answer = await channel.call('/etcdserverpb.KV/Range', range, undefined, Date.now() + 5000);
      assert.ok(answer.length > 0, 'answers again after the restart');
    } finally {
      channel.close();
    }
  });
});

// ---- node's HTTP/2 server as a second implementation --------------------------------------------

interface Peer {
  url: string;
  server: http2.Http2Server;
  sessions: number;
  close(): Promise<void>;
}

type Handler = (stream: http2.ServerHttp2Stream, body: Buffer, session: number, streamInSession: number) => void;

/** Answers a gRPC call with `message` and status 0 (or the given status and message). */
function answer(stream: http2.ServerHttp2Stream, message: Buffer, status = 0, details = ''): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(status), 'grpc-message': encodeURIComponent(details) }));
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  stream.end(framed);
}

async function startPeer(options: http2.ServerOptions, handler: Handler): Promise<Peer> {
  const server = http2.createServer(options);
  const peer = { sessions: 0 } as Peer;
  const open = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    open.add(session);
    session.on('close', () => open.delete(session));
    const n = ++peer.sessions;
    let streams = 0;
    session.on('stream', (stream) => {
      const k = ++streams;
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => handler(stream, Buffer.concat(chunks), n, k));
      stream.on('error', () => undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  peer.server = server;
  peer.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      // Sessions the channel still keeps open would hold close() forever.
      for (const session of open) session.destroy();
    });
  return peer;
}

function messageOf(body: Buffer): Buffer {
  assert.ok(body.length >= 5);
  return body.subarray(5, 5 + body.readUInt32BE(1));
}

describe('unary channel against a second HTTP/2 implementation', () => {
  it('waits for stream slots when the server allows one stream at a time', async () => {
    let open = 0;
    let most = 0;
    const peer = await startPeer({ settings: { maxConcurrentStreams: 1 } }, (stream, body) => {
      open++;
      most = Math.max(most, open);
      setTimeout(() => {
        open--;
        answer(stream, messageOf(body));
      }, 2);
    });
    const channel = new UnaryChannel(peer.url, false);
    try {
      // The first call learns the limit (calls sent before the server's SETTINGS may overlap).
      await channel.call('/t/Echo', Buffer.from('first'), undefined, Date.now() + 5000);
      const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => channel.call('/t/Echo', Buffer.from(`m${i}`), undefined, Date.now() + 5000)));
      answers.forEach((a, i) => assert.equal(a.toString(), `m${i}`));
      assert.equal(most, 1, 'never more than one stream open');
    } finally {
      channel.close();
      await peer.close();
    }
  });

  it('sends a 300 KiB request through a 1,000-byte window, and reads padded frames', async () => {
    const peer = await startPeer(
      { settings: { initialWindowSize: 1000 }, paddingStrategy: http2.constants.PADDING_STRATEGY_MAX },
      (stream, body) => answer(stream, Buffer.concat([Buffer.from(String(body.length)), Buffer.from(':'), messageOf(body).subarray(-16)])),
    );
    const channel = new UnaryChannel(peer.url, false);
    try {
      await channel.call('/t/Warm', Buffer.from('x'), undefined, Date.now() + 5000);
      const big = Buffer.alloc(300 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = 97 + (i % 26);
      const got = await channel.call('/t/Big', big, undefined, Date.now() + 10_000);
      assert.equal(got.toString(), `${big.length + 5}:${big.subarray(-16).toString()}`);
    } finally {
      channel.close();
      await peer.close();
    }
  });

  it('decodes a 30 KB grpc-message split over CONTINUATION frames, and stays in step after', async () => {
    const long = 'é'.repeat(5_000); // 30 KB percent-encoded: two CONTINUATION frames
    const peer = await startPeer({}, (stream, body) => {
      if (messageOf(body).toString() === 'fail') answer(stream, Buffer.alloc(0), GrpcCode.FAILED_PRECONDITION, long);
      else answer(stream, Buffer.from('fine'));
    });
    const channel = new UnaryChannel(peer.url, false);
    try {
      await assert.rejects(channel.call('/t/Fail', Buffer.from('fail'), undefined, Date.now() + 5000), (e: UnaryError) => {
        assert.equal(e.code, GrpcCode.FAILED_PRECONDITION);
        assert.equal(e.details, long);
        return true;
      });
      assert.equal((await channel.call('/t/Ok', Buffer.from('ok'), undefined, Date.now() + 5000)).toString(), 'fine');
    } finally {
      channel.close();
      await peer.close();
    }
  });

  it('sends calls refused by a GOAWAY or REFUSED_STREAM once more, on a new connection', async () => {
    const peer = await startPeer({}, (stream, body, session, k) => {
      if (session === 1 && k === 1) {
        answer(stream, messageOf(body));
        // Everything after stream 1 on this connection was never processed.
        stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
        return;
      }
      if (session === 1) return; // not reached: above the GOAWAY's last stream id
      if (session === 2 && k === 1) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      answer(stream, messageOf(body));
    });
    const channel = new UnaryChannel(peer.url, false);
    try {
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => channel.call('/t/Echo', Buffer.from(`g${i}`), undefined, Date.now() + 5000)));
      answers.forEach((a, i) => assert.equal(a.toString(), `g${i}`));
      assert.ok(peer.sessions >= 2, `${peer.sessions} connections`);
    } finally {
      channel.close();
      await peer.close();
    }
  });

  it('maps answers that are not gRPC: HTTP 503 to UNAVAILABLE, a missing status to UNAVAILABLE, a reset to UNAVAILABLE', async () => {
    const peer = await startPeer({}, (stream, body) => {
      const what = messageOf(body).toString();
      if (what === '503') {
        stream.respond({ ':status': 503 });
        stream.end('busy');
      } else if (what === 'nostatus') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      } else {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    const channel = new UnaryChannel(peer.url, false);
    const codeOf = (what: string) =>
      channel.call('/t/X', Buffer.from(what), undefined, Date.now() + 5000).then(
        () => 'ok',
        (e: UnaryError) => [e.code, e.neverSent],
      );
    try {
      assert.deepEqual(await codeOf('503'), [GrpcCode.UNAVAILABLE, false]);
      assert.deepEqual(await codeOf('nostatus'), [GrpcCode.UNAVAILABLE, false]);
      assert.deepEqual(await codeOf('reset'), [GrpcCode.UNAVAILABLE, false]);
    } finally {
      channel.close();
      await peer.close();
    }
  });

  it('fails calls as never sent when nothing listens, without waiting for the deadline', async () => {
    const peer = await startPeer({}, () => undefined);
    const url = peer.url;
    await peer.close();
    const channel = new UnaryChannel(url, false);
    const started = Date.now();
    await assert.rejects(channel.call('/t/X', Buffer.from('x'), undefined, Date.now() + 5000), (e: UnaryError) => {
      assert.equal(e.code, GrpcCode.UNAVAILABLE);
      assert.equal(e.neverSent, true);
      assert.match(e.details, /^No connection established: .*ECONNREFUSED/);
      return true;
    });
    assert.ok(Date.now() - started < 1000);
    channel.close();
  });
});

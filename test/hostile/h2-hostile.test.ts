// The gateway's HTTP/2 client (src/etcd/unary-channel.ts) against peers that break the protocol or stop
// in odd ways, each a server of the test's own speaking raw frames (support/h2-peer.ts) or node's
// HTTP/2 server (nghttp2, which enforces HPACK's rules), plus a black-holing TCP proxy in front of a
// real etcd: every limit of RFC 9113 holds (frame size, header list, windows), a peer that breaks one
// is sent GOAWAY and disconnected at once, a lowered HPACK table is signalled (RFC 7541 4.2), answers
// without a gRPC status map as gRPC's own table says, and a connection that went silent is noticed
// and replaced within a bounded time, even under sequential traffic.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import { EtcdClient } from '../../src/etcd/client';
import { UnaryChannel, unaryError, type UnaryError } from '../../src/etcd/unary-channel';
import { fromGrpcError, GatewayError, GrpcCode } from '../../src/core/errors';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { FLAG, FRAME, frame, grpcAnswer, headersFrame, startRawPeer, type RawPeer, type RawPeerOptions, type RawRequest } from '../support/h2-peer';
import { startTcpProxy } from '../support/tcp-proxy';

const PROTOCOL_ERROR = 0x1;
const FLOW_CONTROL_ERROR = 0x3;
const FRAME_SIZE_ERROR = 0x6;
const ENHANCE_YOUR_CALM = 0xb;
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const RANGE = '/etcdserverpb.KV/Range';

/** The outcome of one call: 'ok:<answer>' or [code, details]. */
async function outcome(channel: UnaryChannel, timeoutMs = 5000, path = RANGE): Promise<string | [number, string]> {
  return channel.call(path, Buffer.from('x'), undefined, Date.now() + timeoutMs).then(
    (answer) => `ok:${answer.toString()}`,
    (e: UnaryError) => [e.code, e.details],
  );
}

/** A peer answering each request with `answer`, and a channel to it; both closed by `done`. */
async function withPeer(answer: (req: RawRequest) => void, options: RawPeerOptions = {}): Promise<{ peer: RawPeer; channel: UnaryChannel; done(): Promise<void> }> {
  const peer = await startRawPeer(answer, options);
  const channel = new UnaryChannel(peer.url, false);
  return {
    peer,
    channel,
    done: async () => {
      channel.close();
      await peer.close();
    },
  };
}

/** A peer answering with `answer` must get GOAWAY with `code` and lose the connection, and the call
 *  must fail at once as UNAVAILABLE (not at its deadline, not with an answer). */
async function assertBrokenOff(code: number, answer: (req: RawRequest) => void, options: RawPeerOptions = {}): Promise<void> {
  const { peer, channel, done } = await withPeer(answer, options);
  try {
    const got = await outcome(channel, 20_000);
    assert.equal(typeof got === 'string' ? got.slice(0, 20) : got[0], GrpcCode.UNAVAILABLE, `outcome ${typeof got === 'string' ? got.slice(0, 20) : JSON.stringify(got)}`);
    await peer.allClosed();
    assert.deepEqual(peer.goaways, [code]);
  } finally {
    await done();
  }
}

/** Writes frames while the socket lasts, at most `count`; resolves with how many went out. */
async function flood(socket: net.Socket, count: number, next: (i: number) => Buffer): Promise<number> {
  for (let i = 0; i < count; i++) {
    if (socket.destroyed || socket.writableEnded) return i;
    if (!socket.write(next(i))) {
      const drained = await new Promise<boolean>((resolve) => {
        socket.once('drain', () => resolve(true));
        socket.once('close', () => resolve(false));
      });
      if (!drained) return i;
    }
  }
  return count;
}

describe('limits on what a peer sends (RFC 9113)', () => {
  it('a CONTINUATION flood is cut off: GOAWAY, the connection closed, the call failed at once', async () => {
    let sent = -1;
    await assertBrokenOff(ENHANCE_YOUR_CALM, ({ socket, id }) => {
      socket.write(frame(FRAME.HEADERS, 0, id, Buffer.from([0x88])));
      // 64 MiB of fragments that never end the block.
      void flood(socket, 4096, () => frame(FRAME.CONTINUATION, 0, id, Buffer.alloc(16_384, 0x40))).then((n) => (sent = n));
    });
    assert.ok(sent >= 0 && sent < 4096, `the peer could write ${sent} of 4096 fragments`);
  });

  it('a header list that HPACK makes large from a small block is cut off', async () => {
    await assertBrokenOff(ENHANCE_YOUR_CALM, ({ socket, id }) => {
      // One 4,000-byte value into the dynamic table, then 100 one-octet references to it: 400 KB.
      const name = Buffer.from('x-big');
      // (4000 as an HPACK integer with a 7-bit prefix: 127, then 3873 in two 7-bit groups.)
      const insert = Buffer.concat([Buffer.from([0x40, name.length]), name, Buffer.from([0x7f, 0xa1, 0x1e]), Buffer.alloc(4000, 0x61)]);
      const block = Buffer.concat([Buffer.from([0x88]), insert, Buffer.alloc(100, 0xbe)]);
      socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, block));
    });
  });

  it('a DATA frame over our 16 KiB SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR', async () => {
    await assertBrokenOff(FRAME_SIZE_ERROR, ({ socket, id }) => {
      const message = Buffer.alloc(1024 * 1024, 0x62);
      const framed = Buffer.alloc(5 + message.length);
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, 5);
      socket.write(headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']]));
      socket.write(frame(FRAME.DATA, 0, id, framed));
      socket.write(headersFrame(id, [['grpc-status', '0']], true));
    });
  });

  it('DATA past the 65,535-byte window of a peer that never took our SETTINGS is a FLOW_CONTROL_ERROR', async () => {
    await assertBrokenOff(
      FLOW_CONTROL_ERROR,
      ({ socket, id }) => {
        // 200 KiB in 16 KiB frames, one gRPC message, as if our 16 MiB windows were in force.
        const body = Buffer.alloc(200 * 1024, 0x63);
        body.writeUInt32BE(body.length - 5, 1);
        body[0] = 0;
        socket.write(headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']]));
        for (let at = 0; at < body.length; at += 16_384) socket.write(frame(FRAME.DATA, 0, id, body.subarray(at, at + 16_384)));
        socket.write(headersFrame(id, [['grpc-status', '0']], true));
      },
      { ackSettings: false },
    );
  });

  it('a stream WINDOW_UPDATE past 2^31-1 is a FLOW_CONTROL_ERROR', async () => {
    await assertBrokenOff(FLOW_CONTROL_ERROR, ({ socket, id }) => {
      const increment = Buffer.alloc(4);
      increment.writeUInt32BE(0x7fffffff);
      socket.write(frame(FRAME.WINDOW_UPDATE, 0, id, increment));
      socket.write(grpcAnswer(id, Buffer.from('fine')));
    });
  });

  it('HEADERS on a stream we never opened is a PROTOCOL_ERROR', async () => {
    await assertBrokenOff(PROTOCOL_ERROR, ({ socket, id }) => socket.write(grpcAnswer(id + 2, Buffer.from('not yours'))));
  });

  it('a read on a connection a peer broke fails over to the next member', async () => {
    const etcd = await startTestEtcd();
    const peer = await startRawPeer(({ socket, id }) => socket.write(frame(FRAME.DATA, 0, id, Buffer.alloc(20_000))));
    const client = new EtcdClient({ endpoints: [peer.url, etcd.clientUrl], requestTimeoutMs: 5000 });
    try {
      const answer = await client.unary<{ count: string }>('KV', 'Range', { key: Buffer.from('a'), count_only: true }, { idempotent: true });
      assert.equal(String(answer.count), '0');
      assert.deepEqual(peer.goaways, [FRAME_SIZE_ERROR]);
    } finally {
      client.close();
      await peer.close();
      await etcd.cleanup();
    }
  });
});

describe('HPACK: a peer lowering SETTINGS_HEADER_TABLE_SIZE (RFC 7541 4.2)', () => {
  it('the first header block after our ACK starts with a size update, and only that one', async () => {
    const blocks: Buffer[] = [];
    const { channel, done } = await withPeer(
      ({ socket, id, block }) => {
        blocks.push(block);
        socket.write(grpcAnswer(id, Buffer.from(`n${blocks.length}`)));
      },
      { settings: [[SETTINGS_HEADER_TABLE_SIZE, 100]] },
    );
    try {
      for (let i = 1; i <= 4; i++) assert.equal(await outcome(channel), `ok:n${i}`);
      // The first call left before the peer's SETTINGS arrived; the next one carries the update.
      const updates = blocks.map((b) => b[0] === 0x20);
      assert.deepEqual(updates, [false, true, false, false]);
    } finally {
      await done();
    }
  });

  it('nghttp2 with a 0-byte table keeps the connection and answers every call', async () => {
    const server = http2.createServer({ settings: { headerTableSize: 0 } });
    let sessions = 0;
    const errors: string[] = [];
    server.on('session', (s) => {
      sessions++;
      s.on('error', (e) => errors.push(e.message));
      s.on('goaway', (code) => errors.push(`goaway ${code}`));
    });
    server.on('stream', (stream) => {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 2, 0x6f, 0x6b]));
      });
      stream.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const channel = new UnaryChannel(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, false);
    try {
      for (let i = 0; i < 5; i++) assert.equal(await outcome(channel), 'ok:ok');
      assert.equal(sessions, 1, `connections: ${sessions} (${errors.join(', ')})`);
      assert.deepEqual(errors, []);
    } finally {
      channel.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('answers without a gRPC status, and odd ones with', () => {
  let peer: RawPeer;
  let channel: UnaryChannel;
  before(async () => {
    peer = await startRawPeer(({ socket, id, headers }) => {
      const what = headers[':path'].split('/').pop() as string;
      if (what === 'Stopping') {
        // TLS etcd going away: Go's HTTP server answers for a stopped gRPC server, then GOAWAY.
        socket.write(headersFrame(id, [[':status', '200']], true));
        socket.write(frame(FRAME.GOAWAY, 0, 0, Buffer.alloc(8)));
      } else if (what === 'Page') {
        socket.write(headersFrame(id, [[':status', '200'], ['content-type', 'text/html']]));
        socket.write(frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('<html>')));
      } else if (what === 'NoStatus') {
        socket.write(headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']], true));
      } else if (what === 'BadStatus') {
        socket.write(grpcAnswer(id, Buffer.alloc(0), 'abc', 'it%20broke'));
      } else if (what === 'BigStatus') {
        socket.write(grpcAnswer(id, Buffer.alloc(0), '17'));
      } else if (what === 'Escapes') {
        socket.write(grpcAnswer(id, Buffer.alloc(0), '9', 'bad %zz escape, %C3%A9 and 100%'));
      } else {
        socket.write(headersFrame(id, [[':status', what]], true));
      }
    });
    channel = new UnaryChannel(peer.url, false);
  });
  after(async () => {
    channel.close();
    await peer.close();
  });

  it('maps HTTP statuses as gRPC\'s HTTP-to-gRPC table does', async () => {
    const table: Array<[string, number]> = [
      ['400', GrpcCode.INTERNAL],
      ['401', GrpcCode.UNAUTHENTICATED],
      ['403', GrpcCode.PERMISSION_DENIED],
      ['404', GrpcCode.UNIMPLEMENTED],
      ['429', GrpcCode.UNAVAILABLE],
      ['502', GrpcCode.UNAVAILABLE],
      ['503', GrpcCode.UNAVAILABLE],
      ['504', GrpcCode.UNAVAILABLE],
      ['418', GrpcCode.UNKNOWN],
      ['500', GrpcCode.UNKNOWN],
    ];
    for (const [status, code] of table) {
      const got = await outcome(channel, 5000, `/t/${status}`);
      assert.deepEqual(got, [code, `etcd answered HTTP ${status} without a gRPC status`], status);
    }
  });

  it('an empty HTTP 200 without gRPC content (a stopping TLS etcd) is UNAVAILABLE, a 503 to clients', async () => {
    const got = await outcome(channel, 5000, '/t/Stopping');
    assert.equal((got as [number, string])[0], GrpcCode.UNAVAILABLE, JSON.stringify(got));
    assert.equal(new GatewayError(GrpcCode.UNAVAILABLE, '').httpStatus, 503);
  });

  it('a gRPC answer ended without its grpc-status (a stopping member) is UNAVAILABLE; a 200 page that is not gRPC is UNKNOWN', async () => {
    assert.deepEqual(await outcome(channel, 5000, '/t/NoStatus'), [GrpcCode.UNAVAILABLE, 'etcd ended the call without a gRPC status (as a stopping member does)']);
    assert.deepEqual(await outcome(channel, 5000, '/t/Page'), [GrpcCode.UNKNOWN, 'etcd answered HTTP 200 with content that is not gRPC']);
  });

  it('an invalid grpc-status is UNKNOWN with a message that says so, never NaN', async () => {
    assert.deepEqual(await outcome(channel, 5000, '/t/BadStatus'), [GrpcCode.UNKNOWN, 'etcd sent an invalid grpc-status: it broke']);
    assert.deepEqual(await outcome(channel, 5000, '/t/BigStatus'), [GrpcCode.UNKNOWN, 'etcd sent an invalid grpc-status']);
  });

  it('etcd\'s "raft proposal dropped" and raft timeouts sent as code 2 (a leader change or loss) reach clients as a 503, not a 500', () => {
    const e = fromGrpcError(unaryError(GrpcCode.UNKNOWN, 'raft proposal dropped'));
    assert.deepEqual([e.code, e.httpStatus, e.message], [GrpcCode.UNAVAILABLE, 503, 'raft proposal dropped']);
    // etcd 3.4's Maintenance.Alarm passes its raft timeouts on as code 2 too (seen with the leader stopped).
    const t = 'etcdserver: request timed out, possibly due to previous leader failure';
    const timedOut = fromGrpcError(unaryError(GrpcCode.UNKNOWN, t));
    assert.deepEqual([timedOut.code, timedOut.httpStatus, timedOut.message], [GrpcCode.UNAVAILABLE, 503, t]);
    // Other code-2 answers stay what they are.
    assert.equal(fromGrpcError(unaryError(GrpcCode.UNKNOWN, 'something else')).httpStatus, 500);
    assert.equal(fromGrpcError(unaryError(GrpcCode.UNKNOWN, 'something else')).httpStatus, 500);
  });

  it('one bad percent-escape leaves the rest of grpc-message decoded', async () => {
    assert.deepEqual(await outcome(channel, 5000, '/t/Escapes'), [GrpcCode.FAILED_PRECONDITION, 'bad %zz escape, é and 100%']);
  });
});

describe('liveness', () => {
  it('the periodic PING fires under sequential traffic', async () => {
    const { peer, channel, done } = await withPeer(({ socket, id }) => socket.write(grpcAnswer(id, Buffer.from('ok'))));
    try {
      // One call at a time (calls go from 0 to 1 again and again) until a PING comes, for at most twice
      // the 10 s interval.
      const until = Date.now() + 20_000;
      let calls = 0;
      while (peer.pings === 0 && Date.now() < until && calls < 40_000) {
        assert.equal(await outcome(channel), 'ok:ok');
        calls++;
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok(peer.pings >= 1, `${peer.pings} PINGs during ${calls} sequential calls`);
    } finally {
      await done();
    }
  });

  describe('through a proxy that black-holes an established connection', () => {
    let etcd: TestEtcd;
    before(async () => {
      etcd = await startTestEtcd();
    });
    after(async () => {
      await etcd.cleanup();
    });

    it('a lone call that misses its deadline gets the connection tested, and the channel reconnects', async () => {
      const url = new URL(etcd.clientUrl);
      const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
      const channel = new UnaryChannel(proxy.url, false);
      const range = Buffer.from([0x0a, 0x01, 0x78]);
      try {
        await channel.call(RANGE, range, undefined, Date.now() + 5000);
        assert.equal(proxy.accepted, 1);
        proxy.blackHole();
        // One call at a time, each with a 1 s deadline: a bounded number of 504s, then answers again
        // over a new connection (PING unanswered for 5 s closes the silent one).
        const outcomes: Array<string | number> = [];
        for (let i = 0; i < 30 && outcomes.at(-1) !== 'ok'; i++) {
          outcomes.push(
            await channel.call(RANGE, range, undefined, Date.now() + 1000).then(
              () => 'ok',
              (e: UnaryError) => e.code,
            ),
          );
        }
        assert.equal(outcomes.at(-1), 'ok', `outcomes: ${outcomes.join(' ')}`);
        assert.ok(outcomes.every((o) => o === 'ok' || o === GrpcCode.DEADLINE_EXCEEDED || o === GrpcCode.UNAVAILABLE), outcomes.join(' '));
        assert.ok(proxy.accepted >= 2, `${proxy.accepted} connections`);
      } finally {
        channel.close();
        await proxy.close();
      }
    });
  });
});

// Shared watches, against a real etcd: identical client watches ride one etcd watch. Clients join and
// leave at random while writes (puts, deletes, multi-event txns) go on, from now, from a revision the
// shared watch has passed (a catch-up that moves onto it), from a compacted revision and from a future
// one; each receives exactly etcd's history from its own start, once, in order. Under an etcd restart
// the shared watch is re-created once for all its clients. Clients with other etcd identities never
// share a watch, and the gateway's access control is checked before any sharing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { b64, spec, startGateway, type GatewayFixture } from '../support/gateway';
import { MessageCodec } from '../../src/api/v3/watch';
import { SharedResponse } from '../../src/core/watch/hub';
import { TickCork } from '../../src/core/watch/tick-cork';
import { Outbox, SLICE_MS } from '../../src/core/watch/outbox';
import { performance } from 'node:perf_hooks';
import { textFrame } from '../../src/api/ws/websocket';
// ws's frame parser, the one the ws client reads frames with.
const Receiver = (WebSocket as unknown as { Receiver: new (opts: { isServer: boolean; maxPayload: number }) => Writable }).Receiver;
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import {
  createRequest,
  etcdHistory,
  fmt,
  HttpWatch,
  sleep,
  stats,
  waitFor,
  waitForAsync,
  withTimeout,
  WsWatch,
  type Ev,
  type WatchClient,
} from '../support/watch-history';
import { AccessPolicy } from '../../src/core/security/access';
import { ROOT_AND_PUB_READER } from '../support/etcd-users';

async function etcdWatchers(etcd: { clientUrl: string }): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const m = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(text);
  assert.ok(m, 'etcd /metrics has etcd_debugging_mvcc_watcher_total');
  return Number(m[1]);
}

/** A small deterministic generator, so a failing run can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes to a prefix through etcd's own gateway, one at a time: puts, deletes and two-put txns (two
 *  events in one revision). Bounded in count; `lastRev` is the revision of the last acknowledged write. */
class Writer {
  lastRev = 0;
  writes = 0;
  private stopped = false;
  private loop?: Promise<void>;

  constructor(
    private readonly gw: GatewayFixture,
    private readonly prefix: string,
    private readonly maxOps = 2_000,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await withTimeout(this.loop ?? Promise.resolve(), 10_000, 'writer to stop');
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopped && i < this.maxOps; i++) {
      const key = (n: number): string => b64(`${this.prefix}${String(n % 37).padStart(3, '0')}`);
      let answer;
      try {
        if (i % 7 === 3) answer = await this.gw.etcdPost('/v3/kv/txn', { success: [{ request_put: { key: key(i), value: b64(`t${i}`) } }, { request_put: { key: key(i + 1), value: b64(`t${i}`) } }] });
        else if (i % 5 === 4) answer = await this.gw.etcdPost('/v3/kv/deleterange', { key: key(i - 1) });
        else answer = await this.gw.etcdPost('/v3/kv/put', { key: key(i), value: b64(`v${i}`) });
      } catch {
        // etcd is down (the restart test): the write is tried again later with another key.
      }
      if (answer?.status === 200) {
        this.lastRev = Number(answer.body.header.revision);
        this.writes++;
      }
      await sleep(10);
    }
  }
}

type Start = 'now' | 'behind' | 'compacted' | 'ahead';

interface Subject {
  client: WatchClient;
  id: string;
  start: Start;
  startRevision?: number;
  left: boolean;
}

const fromOf = (s: Subject): number => s.startRevision ?? Number(s.client.created(s.id)?.header?.revision ?? NaN) + 1;

/** The watch's events are exactly etcd's history from its start: all of it, or (for a client that left)
 *  a gap-free beginning of it. */
function assertHistoryFrom(s: Subject, truth: Ev[], lastRev: number): void {
  const what = `${s.client.name} watch ${s.id} (${s.start}${s.startRevision ? ` ${s.startRevision}` : ''})`;
  if (s.left && !s.client.created(s.id)) {
    assert.deepEqual(s.client.eventsOf(s.id), [], `${what}: no events before its created answer`);
    return;
  }
  const from = fromOf(s);
  assert.ok(Number.isFinite(from), `${what}: a created answer with a revision`);
  const expected = truth.filter((e) => e.rev >= from && e.rev <= lastRev).map(fmt);
  const seen = s.client.eventsOf(s.id).map(fmt);
  if (s.left) assert.deepEqual(seen, expected.slice(0, seen.length), `${what}: what it got before leaving is a beginning of the history`);
  else assert.deepEqual(seen, expected, `${what}: exactly etcd's history from its start`);
}

describe('a shared response encoded once', () => {
  it('is, for every watch_id, byte for byte what encoding the response with that watch_id gives', () => {
    const codec = new MessageCodec(spec(), 'WatchRequest', 'WatchResponse');
    const header = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '42', raft_term: '3' };
    const kv = (key: string, rev: string) => ({ key: Buffer.from(key), value: Buffer.from('v'), create_revision: '7', mod_revision: rev, version: '2', lease: '0' });
    const responses = [
      { header, created: true, canceled: false, compact_revision: '0', cancel_reason: '', fragment: false, events: [] },
      { header, created: false, canceled: false, compact_revision: '0', cancel_reason: '', fragment: false, events: [{ type: 'PUT', kv: kv('a/1', '41'), prev_kv: null }, { type: 'DELETE', kv: kv('a/2', '42'), prev_kv: kv('a/2', '40') }] },
      { header, created: false, canceled: false, compact_revision: '0', cancel_reason: '', fragment: true, events: [{ type: 'PUT', kv: kv('a/3', '42'), prev_kv: null }] },
      { header, created: false, canceled: true, compact_revision: '12', cancel_reason: 'mvcc: required revision has been compacted', fragment: false, events: [] },
      { header: null, created: false, canceled: false, compact_revision: '0', cancel_reason: '', fragment: false, events: [] },
    ];
    for (const response of responses) {
      const shared = new SharedResponse(response);
      for (const id of ['0', '1', '7', '1000000', '-1', '9223372036854775807']) {
        const direct = codec.encodeResult({ ...response, watch_id: id });
        assert.equal(shared.encodedFor(codec, id), direct, `watch_id ${id}: ${JSON.stringify(response).slice(0, 80)}`);
        assert.ok(shared.bytesFor(codec, id).equals(Buffer.from(direct)), `watch_id ${id}: the same bytes`);
      }
    }
  });
});

describe('a shared answer framed once for WebSockets', () => {
  it("textFrame's frames are what ws's own receiver reads, at every length encoding", async () => {
    for (const n of [0, 1, 125, 126, 127, 65535, 65536, 200_000]) {
      const payload = Buffer.alloc(n, 'x');
      const receiver = new Receiver({ isServer: false, maxPayload: 0 });
      const got = new Promise<{ data: Buffer; isBinary: boolean }>((resolve, reject) => {
        receiver.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary }));
        receiver.once('error', reject);
      });
      // In two pieces, as TCP may deliver it.
      const frame = textFrame(payload);
      receiver.write(frame.subarray(0, 3));
      receiver.write(frame.subarray(3));
      const { data, isBinary } = await withTimeout(got, 2_000, `a frame of ${n} bytes`);
      assert.equal(isBinary, false, `${n} bytes: a text frame`);
      assert.ok(Buffer.from(data).equals(payload), `${n} bytes: the payload`);
    }
  });
});

describe('write coalescing', () => {
  /** A stream that records how many messages each of its writes to the "socket" carried. */
  function recorder(): { stream: Writable; writes: number[] } {
    const writes: number[] = [];
    const stream = new Writable({
      write(_chunk, _enc, done) {
        writes.push(1);
        done();
      },
      writev(chunks, done) {
        writes.push(chunks.length);
        done();
      },
    });
    return { stream, writes };
  }

  it('the messages written to one stream in one tick leave in one write; the next tick starts another', async () => {
    const a = recorder();
    const b = recorder();
    const corkA = new TickCork(a.stream);
    const corkB = new TickCork(b.stream);
    for (let i = 0; i < 3; i++) {
      corkA.hold();
      a.stream.write(`a${i}`);
      corkB.hold();
      b.stream.write(`b${i}`);
    }
    await new Promise((resolve) => setImmediate(resolve));
    corkA.hold();
    a.stream.write('a3');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(a.writes, [3, 1]);
    assert.deepEqual(b.writes, [3]);
  });
});

describe('paced outboxes', () => {
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('what waits in an outbox leaves in one write, in order, once the tick is over', async () => {
    const writes: string[][] = [[], []];
    const [a, b] = writes.map((w) => new Outbox((data) => w.push(data.toString())));
    a.push(Buffer.from('a1'));
    b.push(Buffer.from('b1'));
    a.push(Buffer.from('a2'));
    a.push(Buffer.from('a3'));
    assert.deepEqual(writes, [[], []], 'nothing is written within the tick');
    await settle();
    assert.deepEqual(writes, [['a1a2a3'], ['b1']]);
    b.push(Buffer.from('b2'));
    await settle();
    assert.deepEqual(writes[1], ['b1', 'b2'], 'the next tick is another write');
  });

  it('a message queued while the flusher is behind joins the ones still waiting; written ones get it next', { timeout: 30_000 }, async () => {
    // Each write takes 20 µs, so 3,000 of them take several slices; the second message comes after
    // the first slice. The outboxes written in that slice get it in a write of its own, in the next
    // pass; the others get both messages in one write.
    const n = 3_000;
    const writes: string[][] = Array.from({ length: n }, () => []);
    const outboxes = writes.map(
      (w) =>
        new Outbox((data) => {
          const until = performance.now() + 0.02;
          while (performance.now() < until);
          w.push(data.toString());
        }),
    );
    const m1 = Buffer.from('m1');
    const m2 = Buffer.from('m2');
    for (const o of outboxes) o.push(m1);
    let writtenBeforeM2 = -1;
    setImmediate(() => {
      writtenBeforeM2 = writes.filter((w) => w.length > 0).length;
      for (const o of outboxes) o.push(m2);
    });
    const deadline = Date.now() + 20_000;
    while (writes.some((w) => w.join('') !== 'm1m2') && Date.now() < deadline) await settle();
    assert.ok(writtenBeforeM2 > 0 && writtenBeforeM2 < n, `the first slice wrote some outboxes, not all (${writtenBeforeM2} of ${n}; a slice is ${SLICE_MS} ms)`);
    for (const [i, w] of writes.entries()) {
      // First in, first out: the outboxes written before m2 came are the first ones.
      assert.deepEqual(w, i < writtenBeforeM2 ? ['m1', 'm2'] : ['m1m2'], `outbox ${i}`);
    }
  });

  it('flush writes at once; a closed outbox drops what waits and takes nothing more', async () => {
    const writes: string[] = [];
    const o = new Outbox((data) => writes.push(data.toString()));
    o.push(Buffer.from('x'));
    assert.equal(o.bytes, 1);
    o.flush();
    assert.deepEqual(writes, ['x'], 'flushed at once, before a close frame could follow');
    assert.equal(o.bytes, 0);
    o.push(Buffer.from('y'));
    o.close();
    o.push(Buffer.from('z'));
    await settle();
    assert.deepEqual(writes, ['x']);
    assert.equal(o.bytes, 0);
  });

  it('tells the writer when the bytes written before ended inside a revision (fragments go through)', async () => {
    const seen: Array<[string, boolean]> = [];
    const o = new Outbox((data, afterPartial) => seen.push([data.toString(), afterPartial]));
    o.push(Buffer.from('f1'), true);
    await settle();
    o.push(Buffer.from('f2'), true);
    await settle();
    o.push(Buffer.from('f3'), false);
    await settle();
    o.push(Buffer.from('next'));
    await settle();
    assert.deepEqual(seen, [
      ['f1', false],
      ['f2', true],
      ['f3', true],
      ['next', false],
    ]);
  });
});

describe('shared watches', () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startGateway({ etcd, requestTimeoutMs: 2_000 });
  }, { timeout: 30_000 });
  after(async () => {
    await gw?.close();
    await etcd?.cleanup();
  }, { timeout: 20_000 });

  it('clients joining and leaving at random during writes each get exactly the history from their start', { timeout: 90_000 }, async () => {
    const prefix = 'sh/';
    const baseline = await etcdWatchers(etcd);
    // History before the test: a compacted part and a part the catch-ups can read.
    let compactRev = 0;
    for (let i = 0; i < 40; i++) {
      const put = await gw.etcdPost('/v3/kv/put', { key: b64(`${prefix}old${i}`), value: b64('x') });
      if (i === 19) compactRev = Number(put.body.header.revision);
    }
    assert.equal((await gw.etcdPost('/v3/kv/compaction', { revision: compactRev })).status, 200);

    const rnd = random(17);
    const subjects: Subject[] = [];
    const clients: WatchClient[] = [];
    const writer = new Writer(gw, prefix);
    let current = compactRev + 20;
    const startOf = (start: Start): number | undefined => {
      if (start === 'behind') return compactRev + Math.floor(rnd() * (current - compactRev));
      if (start === 'compacted') return 1 + Math.floor(rnd() * (compactRev - 1));
      if (start === 'ahead') return current + 1 + Math.floor(rnd() * 10);
      return undefined;
    };
    const pick = (): Start => (['now', 'now', 'behind', 'behind', 'compacted', 'ahead'] as const)[Math.floor(rnd() * 6)];
    try {
      // An anchor from now, there all along: the shared watch the others join.
      const anchor = await WsWatch.open('anchor', gw.wsUrl);
      anchor.send(createRequest(prefix));
      clients.push(anchor);
      await waitFor(() => !!anchor.created(), 5_000, () => 'the anchor created');
      subjects.push({ client: anchor, id: '0', start: 'now', left: false });
      writer.start();
      for (let round = 0; round < 40; round++) {
        await sleep(20 + Math.floor(rnd() * 60));
        current = Math.max(current, writer.lastRev);
        const open = subjects.filter((s) => !s.left && s.client !== anchor);
        const action = rnd();
        if (action < 0.45) {
          const ws = await WsWatch.open(`ws${round}`, gw.wsUrl);
          clients.push(ws);
          const n = 1 + Math.floor(rnd() * 3);
          for (let i = 0; i < n; i++) {
            const start = pick();
            const startRevision = startOf(start);
            ws.send(createRequest(prefix, { startRevision }));
            subjects.push({ client: ws, id: String(i), start, startRevision, left: false });
          }
        } else if (action < 0.7) {
          const start = pick();
          const startRevision = startOf(start);
          const h = new HttpWatch(`http${round}`, gw.url, [createRequest(prefix, { startRevision })]);
          clients.push(h);
          subjects.push({ client: h, id: '0', start, startRevision, left: false });
        } else if (open.length > 0) {
          const leaving = open[Math.floor(rnd() * open.length)].client;
          leaving.close();
          for (const s of subjects) if (s.client === leaving) s.left = true;
        }
      }
      // More writes after the last join, so every catch-up can move onto the shared watch.
      const writesAtLastJoin = writer.writes;
      await waitFor(() => writer.writes >= writesAtLastJoin + 30, 20_000, () => `30 more writes (${writer.writes - writesAtLastJoin})`);
      await writer.stop();
      const lastRev = writer.lastRev;
      const staying = subjects.filter((s) => !s.left);
      await waitFor(
        () => staying.every((s) => (s.start === 'compacted' ? !!s.client.cancelation(s.id) : s.client.lastRev(s.id) >= lastRev)),
        20_000,
        () => `every watch to reach revision ${lastRev}: ${staying.filter((s) => s.client.lastRev(s.id) < lastRev).map((s) => `${s.client.name}/${s.id} at ${s.client.lastRev(s.id)}`).join(', ')}`,
      );
      await sleep(200);

      const truth = await etcdHistory(etcd, prefix, compactRev, lastRev);
      assert.ok(truth.some((e, i) => i > 0 && truth[i - 1].rev === e.rev), 'the history holds a multi-event revision');
      const kinds = new Set(subjects.map((s) => s.start));
      assert.deepEqual([...kinds].sort(), ['ahead', 'behind', 'compacted', 'now'], 'every kind of start was tried');
      assert.ok(subjects.some((s) => s.left), 'some clients left');
      for (const s of subjects) {
        assert.deepEqual(s.client.errors(), [], `${s.client.name}: error messages`);
        if (s.start === 'compacted') {
          const c = s.client.cancelation(s.id);
          if (!s.left || c) {
            assert.equal(c?.compact_revision, String(compactRev), `${s.client.name} watch ${s.id}: canceled as compacted`);
            assert.deepEqual(s.client.eventsOf(s.id), [], 'no events on a compacted watch');
          }
          continue;
        }
        assert.equal(s.client.cancelation(s.id), undefined, `${s.client.name} watch ${s.id}: not canceled`);
        assertHistoryFrom(s, truth, lastRev);
      }

      // One watch in etcd for all of them, once the catch-ups have moved on.
      await waitForAsync(async () => (await stats(gw)).etcdWatches === 1, 5_000, () => 'one etcd watch in the gateway');
      let inEtcd = NaN;
      await waitForAsync(async () => (inEtcd = await etcdWatchers(etcd)) === baseline + 1, 5_000, () => `one watcher in etcd (${inEtcd - baseline})`);
      const st = await stats(gw);
      assert.equal(st.watches, staying.filter((s) => s.start !== 'compacted').length);
    } finally {
      await writer.stop().catch(() => undefined);
      for (const c of clients) c.close();
    }
    await waitForAsync(async () => (await stats(gw)).watches === 0, 5_000, () => 'no watch left in the gateway');
    await waitForAsync(async () => (await etcdWatchers(etcd)) === baseline, 5_000, () => 'the last client leaving cancels the etcd watch');
  });

  it('small and large answers reach every WebSocket client of a shared watch whole (one frame, written to each)', { timeout: 20_000 }, async () => {
    const sizes = [10, 200, 70_000];
    const clients = await Promise.all(
      [0, 1, 2].map(async () => {
        const ws = new WebSocket(`${gw.wsUrl}/v3/watch`, { perMessageDeflate: false });
        const messages: Array<{ result?: { created?: boolean; events?: Array<{ kv: { key: string; value: string } }> } }> = [];
        ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
        await withTimeout(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 5_000, 'open');
        ws.send(JSON.stringify({ create_request: { key: b64('frame/'), range_end: b64('frame0') } }));
        await waitFor(() => messages.some((m) => m.result?.created), 5_000, () => 'created');
        return { ws, messages };
      }),
    );
    for (const n of sizes) assert.equal((await gw.post('/v3/kv/put', { key: b64(`frame/${n}`), value: Buffer.alloc(n, 'v').toString('base64') })).status, 200);
    const events = (c: (typeof clients)[number]) => c.messages.flatMap((m) => m.result?.events ?? []);
    for (const c of clients) await waitFor(() => events(c).length >= sizes.length, 10_000, () => `${events(c).length} events`);
    for (const c of clients) {
      assert.deepEqual(
        events(c).map((e) => [Buffer.from(e.kv.key, 'base64').toString(), Buffer.from(e.kv.value, 'base64').length]),
        sizes.map((n) => [`frame/${n}`, n]),
      );
      c.ws.close();
    }
  });

  it('answers creates in request order when a later one joins a shared watch at once', { timeout: 20_000 }, async () => {
    const holder = await WsWatch.open('holder', gw.wsUrl);
    const pipelined = await WsWatch.open('pipelined', gw.wsUrl);
    try {
      holder.send(createRequest('ord/'));
      await waitFor(() => !!holder.created(), 5_000, () => 'the shared watch created');
      // The first create needs etcd; the second joins the running shared watch at once: its answer
      // still comes second, and its events after it.
      pipelined.send(createRequest('ord-other/'));
      pipelined.send(createRequest('ord/'));
      const put = await gw.post('/v3/kv/put', { key: b64('ord/k'), value: b64('v') });
      assert.equal(put.status, 200, put.text);
      await waitFor(() => pipelined.lastRev('1') > 0, 5_000, () => 'the event on the joined watch');
      const order = pipelined.received.map((m) => `${m.result?.watch_id ?? '0'}:${m.result?.created ? 'created' : 'events'}`);
      assert.deepEqual(order, ['0:created', '1:created', '1:events']);
      assert.equal((await stats(gw)).etcdWatches, 2);
    } finally {
      holder.close();
      pipelined.close();
    }
  });

  it('etcd killed and restarted: the shared watch is re-created once and every client gets each revision once', { timeout: 60_000 }, async () => {
    const prefix = 'kr/';
    const writer = new Writer(gw, prefix);
    const clients: WatchClient[] = [];
    try {
      const subjects: Subject[] = [];
      for (let i = 0; i < 12; i++) {
        const ws = await WsWatch.open(`ws${i}`, gw.wsUrl);
        ws.send(createRequest(prefix));
        clients.push(ws);
        subjects.push({ client: ws, id: '0', start: 'now', left: false });
      }
      for (let i = 0; i < 4; i++) {
        const h = new HttpWatch(`http${i}`, gw.url, [createRequest(prefix)]);
        clients.push(h);
        subjects.push({ client: h, id: '0', start: 'now', left: false });
      }
      await waitFor(() => clients.every((c) => !!c.created()), 5_000, () => 'every watch created');
      assert.equal((await stats(gw)).etcdWatches, 1);
      writer.start();
      await waitFor(() => writer.writes >= 20, 10_000, () => '20 writes');
      const resumesBefore = (await stats(gw)).resumes;
      etcd.kill('SIGKILL');
      await withTimeout(etcd.waitExit(), 5_000, 'etcd to exit');
      await withTimeout(etcd.restart(), 25_000, 'etcd restart');
      const writesAfter = writer.writes;
      await waitFor(() => writer.writes >= writesAfter + 20, 20_000, () => '20 writes after the restart');
      await writer.stop();
      const lastRev = writer.lastRev;
      await waitFor(() => clients.every((c) => c.lastRev() >= lastRev), 15_000, () => `every client at ${lastRev}`);
      await sleep(200);
      // The restarted etcd counts from zero: its one watcher is the shared watch, created once.
      assert.equal(await etcdWatchers(etcd), 1, 'one watcher in the restarted etcd');
      const truth = await etcdHistory(etcd, prefix, Math.min(...subjects.map(fromOf)), lastRev);
      for (const s of subjects) {
        assert.deepEqual(s.client.errors(), []);
        assert.equal(s.client.cancelation(), undefined);
        assertHistoryFrom(s, truth, lastRev);
      }
      const st = await stats(gw);
      assert.equal(st.etcdWatches, 1);
      assert.ok(st.resumes - resumesBefore >= subjects.length, `all ${subjects.length} client watches resumed (${st.resumes - resumesBefore})`);
    } finally {
      await writer.stop().catch(() => undefined);
      for (const c of clients) c.close();
    }
  });
});

describe('shared watches and who may make them', () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  let rootToken = '';
  let aliceToken = '';
  before(async () => {
    etcd = await startTestEtcd();
    gw = await startGateway({ etcd });
    const steps = ROOT_AND_PUB_READER;
    for (const [p, body] of steps) assert.equal((await gw.etcdPost(p, body)).status, 200, p);
    const token = async (name: string, password: string): Promise<string> => (await gw.etcdPost('/v3/auth/authenticate', { name, password })).body.token as string;
    rootToken = await token('root', 'rootpw');
    aliceToken = await token('alice', 'alicepw');
  }, { timeout: 30_000 });
  after(async () => {
    await gw?.close();
    await etcd?.cleanup();
  }, { timeout: 20_000 });

  async function socket(token: string): Promise<{ ws: WebSocket; messages: Array<{ result?: { watch_id?: string; created?: boolean; canceled?: boolean; cancel_reason?: string; events?: unknown[] } }> }> {
    const ws = new WebSocket(`${gw.wsUrl}/v3/watch`, { headers: { Authorization: token } });
    const messages: Array<{ result?: { watch_id?: string; created?: boolean; canceled?: boolean; cancel_reason?: string; events?: unknown[] } }> = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    await withTimeout(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 5_000, 'socket open');
    return { ws, messages };
  }

  it('a client whose etcd user may not watch a range is refused by etcd, though another holds that watch', { timeout: 20_000 }, async () => {
    const root = await socket(rootToken);
    const alice = await socket(aliceToken);
    try {
      const secret = createRequest('priv/');
      root.ws.send(JSON.stringify(secret));
      await waitFor(() => root.messages.some((m) => m.result?.created), 5_000, () => 'root watch created');
      alice.ws.send(JSON.stringify(secret));
      await waitFor(() => alice.messages.length > 0, 5_000, () => 'an answer to alice');
      const answer = alice.messages[0].result;
      assert.equal(answer?.canceled, true, `alice's create is refused: ${JSON.stringify(answer)}`);
      assert.match(answer?.cancel_reason ?? '', /permission denied/);
      // Where both may watch, each etcd user still has a watch of its own: etcd checked each.
      const pub = createRequest('pub/');
      root.ws.send(JSON.stringify(pub));
      alice.ws.send(JSON.stringify(pub));
      await waitFor(() => root.messages.filter((m) => m.result?.created).length === 2 && alice.messages.filter((m) => m.result?.created && !m.result.canceled).length === 1, 5_000, () => 'both pub/ watches created');
      assert.equal((await stats(gw)).etcdWatches, 3, 'root priv/, root pub/, alice pub/');
      const put = await gw.post('/v3/kv/put', { key: b64('priv/x'), value: b64('s') }, { headers: { Authorization: rootToken } });
      assert.equal(put.status, 200, put.text);
      const pubPut = await gw.post('/v3/kv/put', { key: b64('pub/x'), value: b64('p') }, { headers: { Authorization: rootToken } });
      assert.equal(pubPut.status, 200, pubPut.text);
      await waitFor(() => alice.messages.some((m) => m.result?.events), 5_000, () => 'the pub/ event for alice');
      await sleep(200);
      const aliceEvents = alice.messages.flatMap((m) => (m.result?.events ?? []) as Array<{ kv: { key: string } }>).map((e) => Buffer.from(e.kv.key, 'base64').toString());
      assert.deepEqual(aliceEvents, ['pub/x'], 'alice sees only what etcd lets her watch');
    } finally {
      root.ws.terminate();
      alice.ws.terminate();
    }
  });

  it('gateway access control is checked before a client joins a shared watch', { timeout: 20_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-share-access-'));
    const file = path.join(dir, 'access.yaml');
    const sha = (t: string): string => crypto.createHash('sha256').update(t).digest('hex');
    fs.writeFileSync(
      file,
      [
        'clients:',
        '  - name: narrow',
        `    token_sha256: ${sha('narrow-token')}`,
        '    grants:',
        '      - { prefix: "app/a/", rights: [watch] }',
        '  - name: wide',
        `    token_sha256: ${sha('wide-token')}`,
        '    grants:',
        '      - { prefix: "", rights: [read, write, watch] }',
        '',
      ].join('\n'),
    );
    const policy = new AccessPolicy(file, { info: () => undefined, error: () => undefined });
    const guarded = await startGateway({ etcd, access: policy, endpoints: [etcd.clientUrl] });
    const open = async (token: string): Promise<WebSocket> => {
      const ws = new WebSocket(`${guarded.wsUrl}/v3/watch`, { headers: { Authorization: `Bearer ${token}`, 'Grpc-Metadata-Token': rootToken } });
      await withTimeout(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 5_000, 'socket open');
      return ws;
    };
    const wide = await open('wide-token');
    const narrow = await open('narrow-token');
    try {
      const got: Record<string, string[]> = { wide: [], narrow: [] };
      wide.on('message', (d) => got.wide.push(d.toString()));
      narrow.on('message', (d) => got.narrow.push(d.toString()));
      // The wide client holds a watch on the parent prefix app/; the narrow one asks for the same.
      const parent = JSON.stringify(createRequest('app/'));
      wide.send(parent);
      await waitFor(() => got.wide.length === 1, 5_000, () => 'the wide watch created');
      narrow.send(parent);
      narrow.send(JSON.stringify(createRequest('app/a/')));
      await waitFor(() => got.narrow.length === 2, 5_000, () => 'two answers to the narrow client');
      assert.equal(JSON.parse(got.narrow[0]).error?.grpc_code, 7, `refused: ${got.narrow[0]}`);
      assert.equal(JSON.parse(got.narrow[1]).result?.created, true);
      const s = await stats(guarded);
      assert.equal(s.watches, 2);
      assert.equal(s.etcdWatches, 2, 'the narrow client has its own watch on app/a/, not a share of app/');
    } finally {
      wide.terminate();
      narrow.terminate();
      await guarded.close();
      policy.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

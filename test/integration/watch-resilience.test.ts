// Watches survive a broken etcd connection: after an etcd restart, after connections cut under the
// gateway (a TCP proxy between it and etcd) and in the middle of catching up on a long history, every
// watcher sees exactly etcd's own history — each revision once, in order, nothing missing — and a watch
// whose resume revision was compacted meanwhile is canceled with the compaction revision.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy';
import {
  assertExactlyHistory,
  assertOneEventPerRevision,
  createRequest,
  etcdHistory,
  firstEventAfter,
  fmt,
  HttpWatch,
  openWatchers,
  prefixEnd,
  sleep,
  stats,
  waitFor,
  waitForAsync,
  waitWatchersAt,
  withTimeout,
  WsWatch,
  type Ev,
  type JsonResult,
  type Received,
  type WatchClient,
} from '../support/watch-history';

// ---------------------------------------------------------------------------------------------------
// The writer: puts (and now and then a delete) every ~20 ms through the gateway, one at a time

interface Ack {
  key: string;
  rev: number;
  type: 'PUT' | 'DELETE';
  at: number;
}

interface Failure {
  key: string;
  type: 'PUT' | 'DELETE';
  status: number;
  ms: number;
  text: string;
  at: number;
}

class Writer {
  readonly acked: Ack[] = [];
  readonly failures: Failure[] = [];
  /** Called just before each request is sent. */
  onRequest?: () => void;
  private stopped = false;
  private loop?: Promise<void>;
  private lastPutKey?: string;

  constructor(
    private readonly base: string,
    private readonly prefix: string,
    /** Client-side bound of one request: far above the gateway's deadline. */
    private readonly clientTimeoutMs: number,
    private readonly intervalMs = 20,
    private readonly maxOps = 5_000,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await withTimeout(this.loop ?? Promise.resolve(), this.clientTimeoutMs + 2_000, 'writer to stop');
  }

  get lastRev(): number {
    return this.acked.length ? this.acked[this.acked.length - 1].rev : 0;
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopped && i < this.maxOps; i++) {
      // Every fifth operation deletes the key of the last acknowledged put, so DELETE events are covered.
      const del = i % 5 === 4 && this.lastPutKey !== undefined;
      const key = del ? (this.lastPutKey as string) : `${this.prefix}${String(i).padStart(5, '0')}`;
      const path = del ? '/v3/kv/deleterange' : '/v3/kv/put';
      const body = del ? { key: b64(key) } : { key: b64(key), value: b64(`v${i}`) };
      this.onRequest?.();
      const started = Date.now();
      let status = -1;
      let text: string;
      try {
        const res = await fetch(new URL(path, this.base), {
          method: 'POST',
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.clientTimeoutMs),
        });
        status = res.status;
        text = await res.text();
      } catch (err) {
        text = String(err);
      }
      const ms = Date.now() - started;
      if (status === 200) {
        const answer = JSON.parse(text) as { header?: { revision?: string }; deleted?: string };
        const rev = Number(answer.header?.revision ?? 0);
        if (del) {
          if (answer.deleted === '1') this.acked.push({ key, rev, type: 'DELETE', at: Date.now() });
          this.lastPutKey = undefined;
        } else {
          this.acked.push({ key, rev, type: 'PUT', at: Date.now() });
          this.lastPutKey = key;
        }
      } else {
        this.failures.push({ key, type: del ? 'DELETE' : 'PUT', status, ms, text: text.slice(0, 200), at: started });
      }
      await sleep(this.intervalMs);
    }
  }
}

function assertAckedInHistory(acked: Ack[], truth: Ev[]): void {
  const truthSet = new Set(truth.map(fmt));
  const lost = acked.filter((a) => !truthSet.has(fmt(a))).map(fmt);
  assert.deepEqual(lost, [], 'acknowledged writes missing from etcd history');
  for (let i = 1; i < acked.length; i++) assert.ok(acked[i].rev > acked[i - 1].rev, 'acknowledged revisions increase');
}

// ---------------------------------------------------------------------------------------------------

const REQUEST_TIMEOUT_MS = 2_000;

describe('watch resilience', () => {
  describe('etcd killed (SIGKILL) and restarted', () => {
    let etcd: TestEtcd;
    let gw: GatewayFixture;
    before(async () => {
      etcd = await startTestEtcd();
      gw = await startGateway({ etcd, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    }, { timeout: 30_000 });
    after(async () => {
      await gw?.close();
      await etcd?.cleanup();
    }, { timeout: 20_000 });

    it('every watcher sees each revision exactly once, in order, across the restart', { timeout: 45_000 }, async () => {
      const prefix = 'r/';
      const { httpW, wsW, createdRev } = await openWatchers(gw, prefix);
      const writer = new Writer(gw.url, prefix, REQUEST_TIMEOUT_MS + 3_000);
      try {
        writer.start();
        await waitFor(() => writer.acked.length >= 30, 10_000, () => `30 acknowledged writes (${writer.acked.length})`);
        const beforeKill = writer.acked.length;
        const lastRevBeforeKill = writer.lastRev;
        const killedAt = Date.now();
        etcd.kill('SIGKILL');
        await withTimeout(etcd.waitExit(), 5_000, 'etcd to exit after SIGKILL');
        await sleep(1_000);
        await withTimeout(etcd.restart(), 25_000, 'etcd restart');
        const healthyAt = Date.now();
        await waitFor(
          () => writer.acked.length >= beforeKill + 30,
          20_000,
          () => `30 more acknowledged writes after the restart (${writer.acked.length - beforeKill})`,
        );
        await writer.stop();
        const lastRev = writer.lastRev;
        await waitWatchersAt([httpW, wsW], lastRev, 15_000);

        // Timing: etcd healthy again → first acknowledged write and first event on each watcher.
        const firstAck = writer.acked.find((a) => a.at >= healthyAt);
        const firstHttp = firstEventAfter(httpW, healthyAt);
        const firstWs = firstEventAfter(wsW, healthyAt);
        console.log(
          `[watch-resilience] etcd down ${healthyAt - killedAt} ms (kill → healthy); after healthy: first acked write +${
            firstAck ? firstAck.at - healthyAt : '?'
          } ms, first event on HTTP stream +${firstHttp ?? '?'} ms, on WebSocket +${firstWs ?? '?'} ms; ` +
            `${writer.failures.length} writes failed while down (max ${Math.max(0, ...writer.failures.map((f) => f.ms))} ms, statuses ${[
              ...new Set(writer.failures.map((f) => f.status)),
            ].join('/')})`,
        );

        // Writes while etcd was down failed fast, with 503/504, each within the request deadline.
        assert.ok(writer.failures.length > 0, 'some writes were attempted while etcd was down');
        for (const f of writer.failures) {
          assert.ok(f.status === 503 || f.status === 504, `a write failed with ${f.status}: ${f.text}`);
          assert.ok(f.ms <= REQUEST_TIMEOUT_MS + 300, `a failing write took ${f.ms} ms (deadline ${REQUEST_TIMEOUT_MS} ms)`);
        }
        assert.ok(writer.acked.some((a) => a.rev > lastRevBeforeKill && a.type === 'DELETE'), 'deletes were written after the restart too');

        const truth = await etcdHistory(etcd, prefix, createdRev + 1, lastRev);
        assertAckedInHistory(writer.acked, truth);
        assertOneEventPerRevision('etcd', truth);
        for (const w of [httpW, wsW]) {
          assertExactlyHistory(w, truth, lastRev);
          assertOneEventPerRevision(w.name, w.eventsOf());
          assert.deepEqual(w.errors(), [], `${w.name}: error messages on the stream`);
          assert.equal(w.cancelation(), undefined, `${w.name}: watch was canceled`);
        }
        assert.equal(wsW.open, true, 'the WebSocket stayed open');
        assert.equal(httpW.transportError, undefined, 'the HTTP stream stayed open');
        const s = await stats(gw);
        console.log(`[watch-resilience] stats after the restart: ${JSON.stringify(s)}`);
        assert.ok(s.resumes >= 2, `stats.resumes = ${s.resumes}`);
        assert.equal(s.watches, 2);
      } finally {
        await writer.stop().catch(() => undefined);
        httpW.close();
        wsW.close();
      }
    });
  });

  describe('behind a TCP proxy', () => {
    let etcd: TestEtcd;
    let proxy: TcpProxy;
    let gw: GatewayFixture;
    before(async () => {
      etcd = await startTestEtcd();
    }, { timeout: 30_000 });
    after(async () => {
      await etcd?.cleanup();
    }, { timeout: 20_000 });

    async function startProxied(): Promise<void> {
      proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
      gw = await startGateway({ etcd, endpoints: [proxy.url], requestTimeoutMs: REQUEST_TIMEOUT_MS });
    }
    async function stopProxied(): Promise<void> {
      await gw?.close();
      await proxy?.close();
    }

    it('connections cut twice under the gateway: each revision exactly once, in order', { timeout: 30_000 }, async () => {
      await startProxied();
      const prefix = 'p/';
      const { httpW, wsW, createdRev } = await openWatchers(gw, prefix);
      const writer = new Writer(gw.url, prefix, REQUEST_TIMEOUT_MS + 3_000);
      try {
        const resumesBefore = (await stats(gw)).resumes;
        writer.start();
        const recoveries: string[] = [];
        for (let cut = 1, target = 20; cut <= 2; cut++, target += 20) {
          await waitFor(() => writer.acked.length >= target, 10_000, () => `${target} acknowledged writes (${writer.acked.length})`);
          let n: number;
          let cutAt: number;
          if (cut === 1) {
            cutAt = Date.now();
            n = proxy.cutAll();
          } else {
            // Armed as the writer sends its next request: the put reaches etcd, its answer is cut off.
            const fired = new Promise<number>((resolve) => {
              writer.onRequest = () => {
                writer.onRequest = undefined;
                void proxy.cutAfterBytes(1, 'up').then(resolve);
              };
            });
            n = await withTimeout(fired, 5_000, 'the cut during a write');
            cutAt = Date.now();
          }
          assert.ok(n > 0, 'the proxy had connections to cut');
          const revAtCut = writer.lastRev;
          await waitFor(
            () => httpW.lastRev() > revAtCut && wsW.lastRev() > revAtCut,
            10_000,
            () => `events after cut ${cut} (${httpW.lastRev()}/${wsW.lastRev()} vs ${revAtCut})`,
          );
          const firstPast = (w: WatchClient): number => (w.events.find((e) => e.rev > revAtCut)?.at ?? NaN) - cutAt;
          recoveries.push(`cut ${cut}: ${n} connection(s), first newer event +${firstPast(httpW)}/+${firstPast(wsW)} ms (HTTP/WS)`);
        }
        await waitFor(() => writer.acked.length >= 60, 10_000, () => `60 acknowledged writes (${writer.acked.length})`);
        await writer.stop();
        const lastRev = writer.lastRev;
        await waitWatchersAt([httpW, wsW], lastRev, 10_000);
        for (const f of writer.failures) assert.ok(f.status === 503 || f.status === 504, `a write failed with ${f.status}: ${f.text}`);
        const truth = await etcdHistory(etcd, prefix, createdRev + 1, lastRev);
        const failedButApplied = writer.failures.filter((f) => truth.some((e) => e.key === f.key && e.type === f.type));
        console.log(
          `[watch-resilience] proxy cuts: ${recoveries.join('; ')}; ${writer.failures.length} writes failed at the cuts ` +
            `(${writer.failures.map((f) => `${f.status} after ${f.ms} ms`).join(', ') || '-'}), ${failedButApplied.length} of them applied by etcd all the same`,
        );
        assertAckedInHistory(writer.acked, truth);
        for (const w of [httpW, wsW]) {
          assertExactlyHistory(w, truth, lastRev);
          assertOneEventPerRevision(w.name, w.eventsOf());
          assert.deepEqual(w.errors(), [], `${w.name}: error messages on the stream`);
          assert.equal(w.cancelation(), undefined, `${w.name}: watch was canceled`);
        }
        const s = await stats(gw);
        assert.ok(s.resumes - resumesBefore >= 4, `two cuts resume both watches twice: stats.resumes went ${resumesBefore} → ${s.resumes}`);
      } finally {
        await writer.stop().catch(() => undefined);
        httpW.close();
        wsW.close();
        await stopProxied();
      }
    });

    it('a watch whose resume revision was compacted while cut off is canceled with compact_revision', { timeout: 30_000 }, async () => {
      await startProxied();
      const key = 'c/k';
      const ws = await WsWatch.open('websocket', gw.wsUrl);
      try {
        // Two watches on the key: IDs 0 (absent from the JSON) and 1.
        ws.send(createRequest(key, { prefix: false }));
        ws.send(createRequest(key, { prefix: false }));
        await waitFor(() => !!ws.created('0') && !!ws.created('1'), 5_000, () => `two created answers: ${ws.received.map((m) => m.raw).join(' ')}`);
        assert.equal(ws.created('1')?.watch_id, '1');
        const beforeRevs: number[] = [];
        for (let i = 0; i < 3; i++) {
          const put = await gw.post('/v3/kv/put', { key: b64(key), value: b64(`before-${i}`) });
          assert.equal(put.status, 200, put.text);
          beforeRevs.push(Number(put.body.header.revision));
        }
        const delivered = beforeRevs[beforeRevs.length - 1];
        await waitFor(() => ws.lastRev('0') >= delivered && ws.lastRev('1') >= delivered, 5_000, () => 'the first events');

        // Cut the gateway off from etcd; wait until the hub has noticed the break.
        const breaksBefore = (await stats(gw)).streamBreaks;
        proxy.pause();
        proxy.cutAll();
        await waitForAsync(async () => (await stats(gw)).streamBreaks > breaksBefore, 5_000, () => 'the hub to notice the break');

        // Meanwhile, through etcd directly: more revisions on the key, then a compaction past them.
        let compactRev = 0;
        for (let i = 0; i < 5; i++) {
          const put = await gw.etcdPost('/v3/kv/put', { key: b64(key), value: b64(`while-cut-${i}`) });
          assert.equal(put.status, 200, put.text);
          compactRev = Number(put.body.header.revision);
        }
        assert.ok(compactRev > delivered + 1);
        const compaction = await gw.etcdPost('/v3/kv/compaction', { revision: compactRev });
        assert.equal(compaction.status, 200, compaction.text);
        await sleep(300);
        proxy.resume();

        await waitFor(() => !!ws.cancelation('0') && !!ws.cancelation('1'), 10_000, () => `both cancelations: ${ws.received.map((m) => m.raw).join(' ')}`);
        for (const id of ['0', '1']) {
          const c = ws.cancelation(id) as JsonResult;
          assert.equal(c.canceled, true);
          assert.equal(c.compact_revision, String(compactRev), `watch ${id}: ${JSON.stringify(c)}`);
          const evs = ws.eventsOf(id);
          assert.deepEqual(
            evs.map((e) => e.rev),
            beforeRevs,
            `watch ${id}: exactly the events before the cut, once each (no event of the compacted range)`,
          );
          assert.equal(ws.results(id).filter((r) => r.created).length, 1, `watch ${id}: one created answer, not repeated on resume`);
        }
        const cancelRaw = ws.received.find((m) => m.result?.watch_id === '1' && m.result.canceled);
        assert.match(cancelRaw?.raw ?? '', /"watch_id":"1"/);
        assert.equal(ws.errors().length, 0);

        // The hub forgot both watches; the socket itself lives on and takes new watches.
        const s = await stats(gw);
        assert.equal(s.watches, 0, `stats after the cancelation: ${JSON.stringify(s)}`);
        assert.equal(s.connections, 1);
        assert.equal(ws.open, true);
        const countBefore = ws.received.length;
        ws.send(createRequest(key, { prefix: false }));
        await waitFor(() => ws.received.slice(countBefore).some((m) => m.result?.created), 5_000, () => 'a new watch on the same socket');
        const newId = ws.received.slice(countBefore).find((m) => m.result?.created)?.result?.watch_id ?? '0';
        assert.ok(!['0', '1'].includes(newId), `the IDs of canceled watches are not handed out again on the socket (got ${newId})`);
        const put = await gw.post('/v3/kv/put', { key: b64(key), value: b64('after') });
        assert.equal(put.status, 200, put.text);
        await waitFor(() => ws.lastRev(newId) === Number(put.body.header.revision), 5_000, () => 'the event on the new watch');
        await sleep(200);
        for (const id of ['0', '1']) assert.deepEqual(ws.eventsOf(id).map((e) => e.rev), beforeRevs, `watch ${id}: nothing after its cancelation`);
      } finally {
        ws.close();
        proxy.resume();
        await stopProxied();
      }
    });

    /** Watches [first, last] of `prefix` over HTTP and WebSocket, cuts the proxied connections as soon
     *  as the first message with events arrives, and checks that each watcher still ends up with
     *  exactly etcd's history of 3000 events; `check` adds the scenario's own assertions. */
    async function catchUpCutOnFirstEvents(
      prefix: string,
      first: number,
      last: number,
      label: string,
      check: (w: WatchClient, cutAfter: { watcher: string; events: number; connections: number }) => void,
    ): Promise<void> {
      const httpW = new HttpWatch('http-stream', gw.url, [createRequest(prefix, { startRevision: first })]);
      const wsW = await WsWatch.open('websocket', gw.wsUrl);
      const watchers: WatchClient[] = [httpW, wsW];
      let cutAfter: { watcher: string; events: number; connections: number } | undefined;
      const cutOnFirstEvents = (w: WatchClient) => (m: Received) => {
        if (!cutAfter && (m.result?.events?.length ?? 0) > 0) {
          cutAfter = { watcher: w.name, events: w.events.length, connections: proxy.cutAll() };
        }
      };
      httpW.onMessage = cutOnFirstEvents(httpW);
      wsW.onMessage = cutOnFirstEvents(wsW);
      try {
        const resumesBefore = (await stats(gw)).resumes;
        wsW.send(createRequest(prefix, { startRevision: first }));
        await waitWatchersAt(watchers, last, 15_000);
        assert.ok(cutAfter, 'the connections were cut');
        const messages = (w: WatchClient): number => w.received.filter((m) => m.result?.events?.length).length;
        console.log(
          `[watch-resilience] ${label}: cut after the first message with events (${cutAfter.watcher}, ${cutAfter.events} events so far, ` +
            `${cutAfter.connections} connections); messages with events: HTTP ${messages(httpW)}, WS ${messages(wsW)}`,
        );
        const truth = await etcdHistory(etcd, prefix, first, last);
        assert.equal(truth.length, 3000);
        for (const w of watchers) {
          check(w, cutAfter);
          assertExactlyHistory(w, truth, last);
          assert.equal(w.cancelation(), undefined, `${w.name}: watch was canceled`);
          assert.deepEqual(w.errors(), [], `${w.name}: error messages on the stream`);
        }
        const s = await stats(gw);
        assert.ok(s.resumes > resumesBefore, `the cut made the hub resume: ${resumesBefore} → ${s.resumes}`);
      } finally {
        httpW.close();
        wsW.close();
        await stopProxied();
      }
    }

    it('a watch from an old revision survives a break in the middle of catching up on 3000 events', { timeout: 30_000 }, async () => {
      await startProxied();
      const prefix = 'h/';
      const revs: number[] = [];
      for (let t = 0; t < 30; t++) {
        const success = Array.from({ length: 100 }, (_, i) => ({
          request_put: { key: b64(`${prefix}${String(t * 100 + i).padStart(5, '0')}`), value: b64(`value-${t}-${i}`) },
        }));
        const txn = await gw.post('/v3/kv/txn', { success });
        assert.equal(txn.status, 200, txn.text);
        revs.push(Number(txn.body.header.revision));
      }
      const first = revs[0];
      const last = revs[revs.length - 1];
      assert.equal(last - first, 29, 'one revision per txn');

      await catchUpCutOnFirstEvents(prefix, first, last, 'catch-up', (w) => {
        assert.equal(w.eventsOf().length, 3000, `${w.name}: event count`);
      });
    });

    it('a catch-up spanning several etcd messages (3000 revisions) survives a break after its first message', { timeout: 30_000 }, async () => {
      await startProxied();
      const prefix = 'g/';
      // One revision per put: etcd sends a catch-up in batches of at most 1000 revisions, ~100 ms apart.
      const revs: number[] = [];
      const puts = Array.from({ length: 3000 }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < puts.length) {
            const key = puts[next++];
            const put = await gw.post('/v3/kv/put', { key: b64(key), value: b64('x') });
            assert.equal(put.status, 200, put.text);
            revs.push(Number(put.body.header.revision));
          }
        }),
      );
      const first = Math.min(...revs);
      const last = Math.max(...revs);
      assert.equal(last - first, 2999, 'one revision per put, contiguous');

      await catchUpCutOnFirstEvents(prefix, first, last, 'multi-message catch-up', (w, cutAfter) => {
        assert.ok(cutAfter.events < 3000, `the cut came in the middle of the catch-up (${cutAfter.events} events delivered)`);
        assertOneEventPerRevision(w.name, w.eventsOf());
      });
    });

    it('a fragmented catch-up survives a break between its fragments', { timeout: 30_000 }, async () => {
      // 3000 events of ~1.1 KB (~3.4 MB): etcd answers a watch that asks for fragments with pieces of up to
      // 2 MiB (max-request-bytes + 512 KiB), which the hub holds until the last one. The proxy cuts the
      // connection once ~2.6 MB went by: the first fragment is in the hub, the last one never arrives; the
      // watch must start over, without duplicates.
      // The send buffer is raised so that the ~4.8 MB of JSON the hub hands over at once is not taken for
      // a slow consumer.
      proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
      gw = await startGateway({ etcd, endpoints: [proxy.url], requestTimeoutMs: REQUEST_TIMEOUT_MS, streams: { sendBufferBytes: 32 * 1024 * 1024 } });
      const prefix = 'f/';
      const value = 'x'.repeat(1100);
      const revs: number[] = [];
      for (let t = 0; t < 30; t++) {
        const success = Array.from({ length: 100 }, (_, i) => ({
          request_put: { key: b64(`${prefix}${String(t * 100 + i).padStart(5, '0')}`), value: b64(value) },
        }));
        const txn = await gw.post('/v3/kv/txn', { success });
        assert.equal(txn.status, 200, txn.text);
        revs.push(Number(txn.body.header.revision));
      }
      const first = revs[0];
      const last = revs[revs.length - 1];
      const truth = await etcdHistory(etcd, prefix, first, last);
      assert.equal(truth.length, 3000);
      const create = { create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)), start_revision: String(first), fragment: true } };
      const report: string[] = [];
      try {
        for (const transport of ['http-stream', 'websocket'] as const) {
          const resumesBefore = (await stats(gw)).resumes;
          const cut = proxy.cutAfterBytes(2_600_000, 'down');
          let w: WatchClient;
          if (transport === 'http-stream') {
            w = new HttpWatch(transport, gw.url, [create]);
          } else {
            const ws = await WsWatch.open(transport, gw.wsUrl);
            ws.send(create);
            w = ws;
          }
          try {
            const connections = await withTimeout(cut, 10_000, `${transport}: ~2.6 MB of the catch-up to pass the proxy`);
            const eventsAtCut = w.events.length;
            await waitWatchersAt([w], last, 15_000);
            const fragments = w.received.filter((m) => m.result?.fragment).length;
            report.push(`${transport}: cut ${connections} connection(s) with ${eventsAtCut} events delivered, then ${fragments} fragment(s) + 1: events per message ${w.received.filter((m) => m.result?.events?.length).map((m) => m.result?.events?.length).join('+')}`);
            assert.equal(eventsAtCut, 0, `${transport}: no event reached the client before the last fragment`);
            assert.ok(fragments >= 1, `${transport}: etcd's answer came in fragments`);
            assertExactlyHistory(w, truth, last);
            assert.equal(w.cancelation(), undefined, `${transport}: watch was canceled`);
            assert.deepEqual(w.errors(), [], `${transport}: error messages on the stream`);
            assert.ok((await stats(gw)).resumes > resumesBefore, `${transport}: the hub resumed the watch`);
          } finally {
            proxy.disarm();
            w.close();
          }
        }
        console.log(`[watch-resilience] fragmented catch-up: ${report.join('; ')}`);
      } finally {
        await stopProxied();
      }
    });
  });
});

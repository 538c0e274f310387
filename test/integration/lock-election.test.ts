// Leases, locks, elections and snapshots behaving as they must against a real etcd, through the
// gateway: expiry deletes keys (and watchers see it), keepalives over HTTP and WebSocket hold a lease
// past its TTL, a lock excludes other HTTP clients and `etcdctl lock` in both directions, a waiting lock
// ends cleanly on disconnect or past the gateway's longest wait, observers follow an election, and a
// snapshot is the whole database with its checksum.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { assertMatchesContract, b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { httpWatch, wsWatch } from '../support/watch-clients';
import { sleep, track, waitFor, within } from '../support/waiting';
import { startTestEtcd, type TestEtcd } from '../support/etcd';
import { findEtcdBinary } from '../../src/embedded-etcd/process';

const text = (b64text: string): string => Buffer.from(b64text, 'base64').toString();
/** The end of the range of keys under `prefix` (its last byte plus one). */
const prefixEnd = (prefix: string): string => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
/** etcd's lock and election keys: `<name>/<lease ID in hex>`. */
const lockKey = (name: string, lease: number): string => `${name}/${lease.toString(16)}`;

function etcdctlBinary(): string {
  const etcd = findEtcdBinary();
  const beside = etcd ? path.join(path.dirname(etcd), 'etcdctl') : undefined;
  return beside && fs.existsSync(beside) ? beside : 'etcdctl';
}

/** Runs `etcdctl --endpoints <url> <args>`, killed after `timeoutMs`. */
function etcdctl(endpoint: string, args: string[], timeoutMs: number): { exited: Promise<{ code: number | null; output: string; at: number }>; running(): boolean } {
  const child = spawn(etcdctlBinary(), ['--endpoints', endpoint, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: timeoutMs,
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  let done = false;
  const exited = new Promise<{ code: number | null; output: string; at: number }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      done = true;
      resolve({ code, output, at: Date.now() });
    });
  });
  return { exited, running: () => !done };
}

describe('leases, locks and elections through the gateway, against a real etcd', () => {
  let etcd: TestEtcd;
  let gw: GatewayFixture;
  /** The same etcd behind a gateway whose longest lock or campaign wait is 1 s. */
  let short: GatewayFixture;

  before(async () => {
    etcd = await startTestEtcd();
    [gw, short] = await Promise.all([startGateway({ etcd }), startGateway({ etcd, lockWaitMs: 1000 })]);
  });
  after(async () => {
    await gw?.close();
    await short?.close();
    await etcd?.cleanup();
  });

  async function ok(path: string, body: object, via: GatewayFixture = gw) {
    const answer = await via.post(path, body);
    assert.equal(answer.status, 200, `${path} ${JSON.stringify(body)}: ${answer.text}`);
    return answer.body;
  }
  const grant = (ID: number, TTL: number) => ok('/v3/lease/grant', { ID, TTL });
  /** The keys (as text) under `prefix`. */
  async function keysUnder(prefix: string): Promise<string[]> {
    const answer = await ok('/v3/kv/range', { key: b64(prefix), range_end: b64(prefixEnd(prefix)), keys_only: true });
    return (answer.kvs ?? []).map((kv: { key: string }) => text(kv.key));
  }
  /** etcd's own count of the gRPC calls of `method` it started and finished (its /metrics). */
  async function grpcStreamCounts(method: string): Promise<{ started: number; handled: number }> {
    const metrics = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
    let started = 0;
    let handled = 0;
    for (const line of metrics.split('\n')) {
      if (!line.includes(`grpc_method="${method}"`)) continue;
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (line.startsWith('grpc_server_started_total{')) started += value;
      if (line.startsWith('grpc_server_handled_total{')) handled += value;
    }
    return { started, handled };
  }
  const exists = async (key: string): Promise<boolean> => (await ok('/v3/kv/range', { key: b64(key), count_only: true })).count === '1';

  it('an expired lease deletes its keys, and watches through the gateway (HTTP and WebSocket) see the DELETE', async () => {
    await grant(1101, 2);
    const create = { create_request: { key: b64('expire/k') } };
    const httpW = await httpWatch(gw.url, JSON.stringify(create));
    const wsW = await wsWatch(gw.wsUrl);
    try {
      wsW.send(create);
      await Promise.all([httpW.take(1), wsW.take(1)]);
      const put = await ok('/v3/kv/put', { key: b64('expire/k'), value: b64('v'), lease: 1101 });
      const putAt = Date.now();
      const goneAt = await waitFor('the key to expire', async () => !(await exists('expire/k')) && Date.now(), 6000, 100);
      const after = goneAt - putAt;
      assert.ok(after >= 1000 && after <= 4500, `the key of a TTL 2 lease went ${after} ms after the put`);
      for (const w of [httpW, wsW]) {
        const [, putEvent, deleteEvent] = await w.take(3, 3000);
        assert.equal(putEvent.result.events[0].kv.lease, '1101');
        const event = deleteEvent.result.events[0];
        assert.equal(event.type, 'DELETE');
        assert.equal(text(event.kv.key), 'expire/k');
        assert.ok(BigInt(event.kv.mod_revision) > BigInt(put.header.revision));
      }
      const ttl = await ok('/v3/lease/timetolive', { ID: 1101 });
      assert.equal(ttl.TTL, '-1');
    } finally {
      httpW.close();
      wsW.close();
    }
  });

  it('keepalives over HTTP every 500 ms hold a TTL 2 lease and its key for 5 s; without them the key goes within 4 s', async () => {
    await grant(1201, 2);
    await ok('/v3/kv/put', { key: b64('alive/http'), value: b64('v'), lease: 1201 });
    const start = Date.now();
    for (let i = 0; i < 10; i++) {
      await sleep(500);
      const answer = await gw.post('/v3/lease/keepalive', '{"ID":1201}');
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body.result.ID, '1201');
      assert.equal(answer.body.result.TTL, '2', `renewal ${i + 1} came too late: ${answer.text}`);
    }
    assert.ok(Date.now() - start >= 5000);
    assert.ok(await exists('alive/http'), 'the key is still there after 5 s of keepalives');
    const stoppedAt = Date.now();
    const goneAt = await waitFor('the key to expire', async () => !(await exists('alive/http')) && Date.now(), 5000, 100);
    assert.ok(goneAt - stoppedAt <= 4000, `gone ${goneAt - stoppedAt} ms after the last keepalive`);
  });

  it('keepalives over a WebSocket hold the lease as well; closing it lets the key go', async () => {
    await grant(1301, 2);
    await ok('/v3/kv/put', { key: b64('alive/ws'), value: b64('v'), lease: 1301 });
    const ws = await wsWatch(gw.wsUrl, '/v3/lease/keepalive');
    const start = Date.now();
    try {
      for (let i = 0; i < 10; i++) {
        await sleep(500);
        ws.send({ ID: 1301 });
        const answers = await ws.take(i + 1, 2000);
        assert.deepEqual([answers[i].result.ID, answers[i].result.TTL], ['1301', '2'], JSON.stringify(answers[i]));
      }
      assert.ok(Date.now() - start >= 5000);
      assert.ok(await exists('alive/ws'), 'the key is still there after 5 s of keepalives');
    } finally {
      ws.close();
    }
    const stoppedAt = Date.now();
    const goneAt = await waitFor('the key to expire', async () => !(await exists('alive/ws')) && Date.now(), 5000, 100);
    assert.ok(goneAt - stoppedAt <= 4000, `gone ${goneAt - stoppedAt} ms after the last keepalive`);
  });

  it('a lock held by one HTTP client makes another wait until the unlock, not before', async () => {
    await grant(2101, 60);
    await grant(2102, 60);
    const name = 'excl';
    const a = await ok('/v3/lock/lock', { name: b64(name), lease: 2101 });
    assert.equal(text(a.key), lockKey(name, 2101));
    const b = track(gw.post('/v3/lock/lock', { name: b64(name), lease: 2102 }));
    await waitFor('B to wait', async () => (await keysUnder(`${name}/`)).includes(lockKey(name, 2102)), 3000);
    await sleep(700);
    assert.equal(b.settled, false, 'B got the lock while A held it');
    const unlockAt = Date.now();
    await ok('/v3/lock/unlock', { key: a.key });
    const got = await within(3000, 'B after the unlock', b.promise);
    assert.equal(got.status, 200, got.text);
    assert.equal(text(got.body.key), lockKey(name, 2102));
    assert.ok(b.settledAt! >= unlockAt, 'B answered before A unlocked');
    assert.deepEqual(await keysUnder(`${name}/`), [lockKey(name, 2102)]);
    await ok('/v3/lock/unlock', { key: got.body.key });
    assert.deepEqual(await keysUnder(`${name}/`), []);
  });

  it('a lock held by `etcdctl lock` makes a gateway lock on the same name wait until etcdctl is done', async () => {
    await grant(2201, 60);
    const name = 'shared-with-etcdctl';
    const ctl = etcdctl(etcd.clientUrl, ['lock', name, '--', 'sleep', '2'], 15_000);
    try {
      const heldAt = await waitFor('etcdctl to hold the lock', async () => (await keysUnder(`${name}/`)).length === 1 && Date.now(), 5000, 25);
      const ours = track(gw.post('/v3/lock/lock', { name: b64(name), lease: 2201 }));
      // etcdctl holds the lock for the 2 s of its command, counted from before we saw its key.
      await sleep(Math.max(0, heldAt + 1500 - Date.now()));
      assert.equal(ours.settled, false, 'the gateway got the lock while etcdctl held it');
      assert.ok(ctl.running(), 'etcdctl ended early');
      const got = await within(5000, 'the gateway lock after etcdctl', ours.promise);
      assert.equal(got.status, 200, got.text);
      assert.ok(ours.settledAt! - heldAt >= 1800, `the gateway got the lock ${ours.settledAt! - heldAt} ms after etcdctl`);
      assert.deepEqual(await keysUnder(`${name}/`), [lockKey(name, 2201)]);
      const done = await within(5000, 'etcdctl to exit', ctl.exited);
      assert.equal(done.code, 0, done.output);
      await ok('/v3/lock/unlock', { key: got.body.key });
    } finally {
      await within(16_000, 'etcdctl to exit', ctl.exited).catch(() => undefined);
    }
  });

  it('a lock held through the gateway makes `etcdctl lock` on the same name wait until the unlock', async () => {
    await grant(2301, 60);
    const name = 'gateway-holds';
    const held = await ok('/v3/lock/lock', { name: b64(name), lease: 2301 });
    const ctl = etcdctl(etcd.clientUrl, ['lock', name, '--', 'sleep', '0'], 15_000);
    try {
      await waitFor('etcdctl to wait', async () => (await keysUnder(`${name}/`)).length === 2, 5000);
      await sleep(700);
      assert.ok(ctl.running(), 'etcdctl got the lock while the gateway held it');
      const unlockAt = Date.now();
      await ok('/v3/lock/unlock', { key: held.key });
      const done = await within(5000, 'etcdctl to get the lock and exit', ctl.exited);
      assert.equal(done.code, 0, done.output);
      assert.ok(done.at >= unlockAt);
    } finally {
      await within(16_000, 'etcdctl to exit', ctl.exited).catch(() => undefined);
    }
  });

  it('a waiting lock whose HTTP client disconnects ends; no waiting key of its lease is left, and the lease lives on', async () => {
    await grant(2401, 60);
    await grant(2402, 60);
    const name = 'abandoned';
    const held = await ok('/v3/lock/lock', { name: b64(name), lease: 2401 });
    const aborter = new AbortController();
    const waiting = fetch(`${gw.url}/v3/lock/lock`, {
      method: 'POST',
      body: JSON.stringify({ name: b64(name), lease: 2402 }),
      signal: aborter.signal,
    }).then(
      (res) => `answered ${res.status}`,
      (err: Error) => err.name,
    );
    await waitFor('the waiting key', async () => (await keysUnder(`${name}/`)).includes(lockKey(name, 2402)), 3000);
    aborter.abort();
    assert.equal(await within(2000, 'the aborted fetch', waiting), 'AbortError');
    await waitFor('the waiting key to be deleted', async () => !(await keysUnder(`${name}/`)).includes(lockKey(name, 2402)), 3000);
    assert.deepEqual(await keysUnder(`${name}/`), [lockKey(name, 2401)]);
    const ttl = await ok('/v3/lease/timetolive', { ID: 2402 });
    assert.ok(Number(ttl.TTL) > 0, `the client's lease was revoked: ${JSON.stringify(ttl)}`);
    // The next lock with that lease is a fresh wait: it gets the lock right after the unlock.
    await ok('/v3/lock/unlock', { key: held.key });
    const again = await within(2000, 'a new lock', ok('/v3/lock/lock', { name: b64(name), lease: 2402 }));
    assert.equal(text(again.key), lockKey(name, 2402));
    await ok('/v3/lock/unlock', { key: again.key });
  });

  it('issue 22: a lock whose lease expired while it waited is answered 404 code 5, not etcd\'s success for a key that is gone', { timeout: 30_000 }, async () => {
    await grant(2601, 60);
    await grant(2602, 2); // never kept alive
    const name = 'expired-waiter';
    const held = await ok('/v3/lock/lock', { name: b64(name), lease: 2601 });
    const waiting = gw.post('/v3/lock/lock', { name: b64(name), lease: 2602 });
    await waitFor('the waiting key', async () => (await keysUnder(`${name}/`)).includes(lockKey(name, 2602)), 3000);
    await waitFor('the waiter\'s lease to expire and its key to go', async () => !(await keysUnder(`${name}/`)).includes(lockKey(name, 2602)), 6000);
    await ok('/v3/lock/unlock', { key: held.key });
    const answer = await within(5000, 'the waiting lock', waiting);
    // etcd's gateway answers 200 with the key here (etcd 3.4's Lock does not look at its key again).
    assert.equal(answer.status, 404, answer.text);
    assert.equal(answer.body.code, 5);
    assert.match(answer.body.message, /lease expired while waiting/);
    assert.deepEqual(await keysUnder(`${name}/`), []);
    // A lock on a live lease is answered as etcd's gateway answers it.
    const fine = await ok('/v3/lock/lock', { name: b64(name), lease: 2601 });
    assert.equal(text(fine.key), lockKey(name, 2601));
    await ok('/v3/lock/unlock', { key: fine.key });
  });

  it('issue 22: a campaign whose lease expired while it waited is answered 404 code 5, not etcd\'s leadership for a key that is gone', { timeout: 30_000 }, async () => {
    await grant(2701, 60);
    await grant(2702, 2); // never kept alive
    const name = 'expired-candidate';
    const leader = await ok('/v3/election/campaign', { name: b64(name), lease: 2701, value: b64('first') });
    const waiting = gw.post('/v3/election/campaign', { name: b64(name), lease: 2702, value: b64('second') });
    await waitFor('the waiting key', async () => (await keysUnder(`${name}/`)).includes(lockKey(name, 2702)), 3000);
    await waitFor('the candidate\'s lease to expire and its key to go', async () => !(await keysUnder(`${name}/`)).includes(lockKey(name, 2702)), 6000);
    await ok('/v3/election/resign', { leader: leader.leader });
    const answer = await within(5000, 'the waiting campaign', waiting);
    assert.equal(answer.status, 404, answer.text);
    assert.equal(answer.body.code, 5);
    assert.match(answer.body.message, /lease expired while waiting for the leadership/);
    assert.deepEqual(await keysUnder(`${name}/`), []);
    const fine = await ok('/v3/election/campaign', { name: b64(name), lease: 2701, value: b64('again') });
    assert.equal(text(fine.leader.key), lockKey(name, 2701));
    await ok('/v3/election/resign', { leader: fine.leader });
  });

  it('a lock or a campaign waiting past the gateway\'s longest wait gets 504, and leaves no waiting key', async () => {
    await grant(2501, 60);
    await grant(2502, 60);
    const cases = [
      { name: 'long-lock', hold: () => ok('/v3/lock/lock', { name: b64('long-lock'), lease: 2501 }), wait: '/v3/lock/lock', body: { name: b64('long-lock'), lease: 2502 } },
      {
        name: 'long-election',
        hold: () => ok('/v3/election/campaign', { name: b64('long-election'), lease: 2501, value: b64('first') }),
        wait: '/v3/election/campaign',
        body: { name: b64('long-election'), lease: 2502, value: b64('second') },
      },
    ];
    for (const c of cases) {
      await c.hold();
      const startedAt = Date.now();
      const answer = await within(5000, `${c.wait} through the short gateway`, short.post(c.wait, c.body));
      const took = Date.now() - startedAt;
      assert.equal(answer.status, 504, answer.text);
      assert.equal(answer.body.code, 4, answer.text);
      assert.equal(answer.body.message, 'context deadline exceeded: the gateway stopped waiting for etcd');
      assert.ok(took >= 900 && took < 3000, `${c.wait} gave up after ${took} ms (longest wait 1 s)`);
      await waitFor(`no waiting key under ${c.name}/`, async () => !(await keysUnder(`${c.name}/`)).includes(lockKey(c.name, 2502)), 3000);
      assert.deepEqual(await keysUnder(`${c.name}/`), [lockKey(c.name, 2501)]);
    }
    await ok('/v3/lease/revoke', { ID: 2501 });
  });

  it('election observers over HTTP and WebSocket see the leader, a proclaim, and the next leader once the first resigns', async () => {
    await grant(3101, 60);
    await grant(3102, 60);
    const name = 'observed';
    const request = { name: b64(name) };
    // etcd's gateway sends the HTTP answer's headers with the first message: there is no leader yet.
    const httpObserver = track(httpWatch(gw.url, JSON.stringify(request), '/v3/election/observe'));
    const wsObserver = await wsWatch(gw.wsUrl, '/v3/election/observe');
    wsObserver.send(request);
    await sleep(200);
    let http: Awaited<ReturnType<typeof httpWatch>> | undefined;
    try {
      assert.equal(wsObserver.messages.length, 0, 'a message before any leader');
      const first = await ok('/v3/election/campaign', { ...request, lease: 3101, value: b64('one') });
      assert.equal(text(first.leader.key), lockKey(name, 3101));
      http = await within(3000, 'the HTTP observe answer', httpObserver.promise);
      assert.equal(http.status, 200);
      for (const o of [http, wsObserver]) {
        const [m] = await o.take(1, 3000);
        assert.deepEqual([text(m.result.kv.key), text(m.result.kv.value), m.result.kv.lease], [lockKey(name, 3101), 'one', '3101']);
      }

      await ok('/v3/election/proclaim', { leader: first.leader, value: b64('one, again') });
      for (const o of [http, wsObserver]) {
        const [, m] = await o.take(2, 3000);
        assert.deepEqual([text(m.result.kv.value), m.result.kv.version], ['one, again', '2']);
      }

      const second = track(gw.post('/v3/election/campaign', { ...request, lease: 3102, value: b64('two') }));
      await waitFor('the second candidate to wait', async () => (await keysUnder(`${name}/`)).length === 2, 3000);
      await sleep(500);
      assert.equal(second.settled, false, 'a second leader while the first leads');
      const resignAt = Date.now();
      await ok('/v3/election/resign', { leader: first.leader });
      const next = await within(3000, 'the second campaign', second.promise);
      assert.equal(next.status, 200, next.text);
      assert.ok(second.settledAt! >= resignAt);
      assert.equal(text(next.body.leader.key), lockKey(name, 3102));
      for (const o of [http, wsObserver]) {
        const [, , m] = await o.take(3, 3000);
        assert.deepEqual([text(m.result.kv.key), text(m.result.kv.value), m.result.kv.lease], [lockKey(name, 3102), 'two', '3102']);
        assert.equal(m.result.kv.create_revision, next.body.leader.rev);
      }
      const leader = await ok('/v3/election/leader', request);
      await sleep(200);
      for (const o of [http, wsObserver]) {
        assert.equal(o.messages.length, 3, `extra observe messages: ${JSON.stringify(o.messages.slice(3))}`);
        assert.deepEqual(o.messages[2].result.kv, leader.kv);
        for (const m of o.messages) assertMatchesContract('/v3/election/observe', { status: 200, headers: new Headers(), text: '', body: m });
      }
      assert.deepEqual(http.messages, wsObserver.messages, 'the HTTP and WebSocket observers saw the same messages');
      await ok('/v3/election/resign', { leader: next.body.leader });
    } finally {
      http?.close();
      if (!http) void httpObserver.promise.then((h) => h.close(), () => undefined);
      wsObserver.close();
    }
    // Observers that went away leave no Observe stream open in etcd.
    await waitFor('etcd to end every Observe stream', async () => {
      const { started, handled } = await grpcStreamCounts('Observe');
      return started >= 2 && started === handled;
    }, 3000, 100);
  });

  it('a snapshot over HTTP streams the whole database: bbolt magic at offset 16, then the SHA-256 of the data', async () => {
    for (let i = 0; i < 3; i++) await ok('/v3/kv/put', { key: b64(`snap/${i}`), value: Buffer.alloc(60_000, i + 1).toString('base64') });
    const answer = await send(gw.url, '/v3/maintenance/snapshot', {});
    assert.equal(answer.status, 200, answer.text.slice(0, 500));
    assert.match(answer.headers.get('content-type') ?? '', /^application\/json/);
    const messages = answer.text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
    for (const m of messages) {
      assertMatchesContract('/v3/maintenance/snapshot', { ...answer, body: m });
      assert.deepEqual(Object.keys(m), ['result']);
      assert.equal(m.result.header, undefined);
    }
    const blobs = messages.map((m) => Buffer.from(m.result.blob, 'base64'));
    assert.ok(blobs.length >= 3, `${blobs.length} messages`);
    const data = Buffer.concat(blobs.slice(0, -1));
    const checksum = blobs[blobs.length - 1];
    assert.ok(data.length > 180_000, `a ${data.length}-byte database holds 180 kB of values`);
    assert.deepEqual([...data.subarray(16, 20)], [0xed, 0xda, 0x0c, 0xed], 'bbolt meta page magic');
    assert.equal(checksum.length, 32);
    assert.equal(checksum.toString('hex'), createHash('sha256').update(data).digest('hex'));
    // remaining_bytes counts down to 0 (then omitted); chunks are at most 32 KiB.
    let sent = 0;
    for (const [i, m] of messages.slice(0, -1).entries()) {
      assert.ok(blobs[i].length <= 32 * 1024);
      sent += blobs[i].length;
      assert.equal(m.result.remaining_bytes, sent === data.length ? undefined : String(data.length - sent));
    }
    assert.equal(messages[messages.length - 1].result.remaining_bytes, undefined);
  });
});

// /v1/leases and /v1/locks against a real etcd: every status of the lease routes; locks that exclude
// each other and `etcdctl lock` (a counter incremented under the lock by three kinds of holder ends
// exact), fencing tokens that strictly increase, and try-locks and timed-out waits that leave no key
// and no lease behind. Every answer is checked against openapi.yaml.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { assertProblem, v1Client } from '../support/v1';
import { runProcess } from '../support/python';
import { sleep, waitFor } from '../support/waiting';

type Client = ReturnType<typeof v1Client>;

const ETCDCTL = 'etcdctl';

describe('/v1/leases', () => {
  let gw: GatewayFixture;
  let v1: Client;
  before(async () => {
    gw = await startGateway();
    v1 = v1Client(gw.url);
  });
  after(() => gw.close());

  it('grants from ?ttl or a JSON body (201, Location), lists, describes, renews and revokes', async () => {
    const byQuery = await v1.post('/v1/leases?ttl=30');
    assert.equal(byQuery.status, 201);
    assert.equal(byQuery.body.ttl, 30);
    assert.match(byQuery.body.lease, /^\d+$/);
    assert.equal(byQuery.headers.location, `/v1/leases/${byQuery.body.lease}`);
    const byBody = await v1.post('/v1/leases', '{"ttl": 45}', { headers: { 'content-type': 'application/json' } });
    assert.equal(byBody.body.ttl, 45);
    const listed = (await v1.get('/v1/leases')).body.leases.map((l: { lease: string }) => l.lease);
    assert.ok(listed.includes(byQuery.body.lease) && listed.includes(byBody.body.lease));
    await v1.put(`/v1/kv/leased/one?lease=${byQuery.body.lease}`, 'x');
    await v1.put(`/v1/kv/leased/%ff?lease=${byQuery.body.lease}`, 'x');
    const info = await v1.get(`/v1/leases/${byQuery.body.lease}`);
    assert.equal(info.body.granted_ttl, 30);
    assert.ok(info.body.ttl > 0 && info.body.ttl <= 30);
    assert.deepEqual(info.body.keys, ['leased/one']);
    assert.deepEqual(info.body.keys_base64, [Buffer.from('leased/\xff', 'latin1').toString('base64')]);
    // etcdctl prints lease IDs in hex: the path takes them so.
    const hex = BigInt(byQuery.body.lease).toString(16);
    assert.equal((await v1.get(`/v1/leases/0x${hex}`)).body.lease, byQuery.body.lease);
    const renewed = await v1.post(`/v1/leases/${byQuery.body.lease}/keepalive`);
    assert.deepEqual(renewed.body, { lease: byQuery.body.lease, ttl: 30 });
    assert.equal((await v1.del(`/v1/leases/${byQuery.body.lease}`)).status, 204);
    assertProblem(await v1.get('/v1/kv/leased/one'), 404, /not found/);
    assertProblem(await v1.del(`/v1/leases/${byQuery.body.lease}`), 404, /lease \d+ not found/);
    assertProblem(await v1.get(`/v1/leases/${byQuery.body.lease}`), 404, /not found/);
    assertProblem(await v1.post(`/v1/leases/${byQuery.body.lease}/keepalive`), 404, /not found/);
  });

  it('refuses bad TTLs, bodies and IDs with 400 naming them', async () => {
    assertProblem(await v1.post('/v1/leases'), 400, /ttl: required/);
    assertProblem(await v1.post('/v1/leases?ttl=0'), 400, /query parameter ttl/);
    assertProblem(await v1.post('/v1/leases?ttl=5', '{"ttl": 5}'), 400, /ttl: given in the body too/);
    assertProblem(await v1.post('/v1/leases', '{"ttl": "5"}'), 400, /\/ttl: must be an integer/);
    assertProblem(await v1.post('/v1/leases', '{"ttl": 5, "id": 1}'), 400, /\/id: unknown field/);
    assertProblem(await v1.post('/v1/leases', '[5]'), 400, /must be a JSON object/);
    assertProblem(await v1.post('/v1/leases', '{"ttl": '), 400, /not valid JSON/);
    assertProblem(await v1.get('/v1/leases/xyz'), 400, /path parameter id/);
    assertProblem(await v1.get('/v1/leases/0'), 400, /path parameter id/);
    assertProblem(await v1.get('/v1/leases/99999999999999999999'), 400, /path parameter id/);
  });
});

describe('/v1/locks', () => {
  let gw: GatewayFixture;
  let v1: Client;
  before(async () => {
    gw = await startGateway({ lockWaitMs: 20_000 });
    v1 = v1Client(gw.url);
  });
  after(() => gw.close());

  /** The keys under a lock name, as /v3/ sees them (what a lost try must not leave behind). */
  async function lockKeys(name: string): Promise<string[]> {
    const answer = await v1.get(`/v1/kv/${name}/?list&keys_only`);
    return answer.body.kvs.map((kv: { key: string }) => kv.key);
  }

  async function leaseCount(): Promise<number> {
    return (await v1.get('/v1/leases')).body.leases.length;
  }

  it('takes a free lock (201 with key, lease, fencing token); a try-lock on a held one is a 409 leaving nothing', async () => {
    const held = await v1.post('/v1/locks/jobs/a?ttl=30');
    assert.equal(held.status, 201);
    assert.equal(held.body.key, `jobs/a/${BigInt(held.body.lease).toString(16)}`);
    assert.equal(held.body.ttl, 30);
    assert.equal(held.body.lease_granted_by, 'gateway');
    assert.equal(held.body.keepalive, 'client');
    assert.equal(held.headers['x-etcd-revision'], String(held.body.revision));
    const created = await v1.get(`/v1/kv/${held.body.key}`);
    assert.equal(held.body.fencing_token, Number(created.headers['x-etcd-create-revision']));
    const leases = await leaseCount();
    assertProblem(await v1.post('/v1/locks/jobs/a?wait=0'), 409, /try-lock/);
    assertProblem(await v1.post('/v1/locks/jobs/a?wait=300ms'), 409, /still held after waiting 0.3s/);
    assert.deepEqual(await lockKeys('jobs/a'), [held.body.key]);
    assert.equal(await leaseCount(), leases, 'the leases granted for the lost attempts were revoked');
    // On a lease of the client's own: its key is removed, the lease stays.
    const own = await v1.post('/v1/leases?ttl=30');
    assertProblem(await v1.post(`/v1/locks/jobs/a?wait=0&lease=${own.body.lease}`), 409, /held/);
    assertProblem(await v1.post(`/v1/locks/jobs/a?wait=200ms&lease=${own.body.lease}`), 409, /still held/);
    assert.deepEqual(await lockKeys('jobs/a'), [held.body.key]);
    assert.equal((await v1.get(`/v1/leases/${own.body.lease}`)).status, 200);
    assert.equal((await v1.del(`/v1/locks/jobs/a?key=${encodeURIComponent(held.body.key)}`)).status, 204);
    const mine = await v1.post(`/v1/locks/jobs/a?wait=0&lease=${own.body.lease}`);
    assert.equal(mine.status, 201);
    assert.equal(mine.body.lease, own.body.lease);
    assert.equal(mine.body.ttl, undefined);
    assert.equal(mine.body.lease_granted_by, 'client');
    assert.ok(mine.body.ttl_left > 0 && mine.body.ttl_left <= 30);
    assert.ok(mine.body.fencing_token > held.body.fencing_token);
    assert.equal((await v1.del(`/v1/locks/jobs/a?lease=${own.body.lease}`)).status, 204);
    assertProblem(await v1.del(`/v1/locks/jobs/a?lease=${own.body.lease}`), 404, /not found/);
    assert.deepEqual(await lockKeys('jobs/a'), []);
  });

  /** The lock keys under a name, oldest first, with their lease (what etcd says holds the lock). */
  async function owners(name: string): Promise<Array<{ key: string; lease: string }>> {
    const answer = await v1.get(`/v1/kv/${name}/?list&sort=create:asc`, { headers: { accept: 'application/json' } });
    return answer.body.kvs.map((kv: { key: string; lease?: string }) => ({ key: kv.key, lease: kv.lease ?? '0' }));
  }

  it('issue 22: a waiter on a granted lease (ttl=3) outlasting its TTL is kept alive by the gateway: its 201 is the real holder, and a try-lock then gets 409', { timeout: 60_000 }, async () => {
    const a = await v1.post('/v1/locks/jobs/x?ttl=30');
    assert.equal(a.status, 201, a.text);
    const waiting = v1.post('/v1/locks/jobs/x?ttl=3&wait=15s');
    await sleep(6_000);
    assert.equal((await v1.del(`/v1/locks/jobs/x?lease=${a.body.lease}`)).status, 204);
    const b = await waiting;
    assert.equal(b.status, 201, b.text);
    assert.equal(b.body.lease_granted_by, 'gateway');
    assert.equal(b.body.keepalive, 'client');
    assert.ok(b.body.ttl_left >= 1 && b.body.ttl_left <= 3, b.text);
    assert.ok(b.body.fencing_token > a.body.fencing_token);
    assert.ok(b.body.revision >= b.body.fencing_token);
    // Before the fix: 404 here (the lease had expired while B waited), and C got 201 too.
    const lease = await v1.get(`/v1/leases/${b.body.lease}`);
    assert.equal(lease.status, 200, `B's lease is alive: ${lease.text}`);
    assert.deepEqual(await owners('jobs/x'), [{ key: b.body.key, lease: b.body.lease }], 'B is the holder etcd shows');
    assertProblem(await v1.post('/v1/locks/jobs/x?ttl=30&wait=0'), 409, /try-lock/);
    // From the answer on, the client keeps it alive; without that the lock ends with the TTL.
    await waitFor('B\'s lease to expire once nobody renews it', async () => (await v1.get(`/v1/leases/${b.body.lease}`)).status === 404, 6_000);
    assert.deepEqual(await owners('jobs/x'), []);
  });

  it('a waiter on a lease of its own that it does not keep alive gets 410 (lease expired while waiting), never a 201; the next try-lock wins', { timeout: 60_000 }, async () => {
    const a = await v1.post('/v1/locks/jobs/own?ttl=30');
    const own = await v1.post('/v1/leases?ttl=2');
    const waiting = v1.post(`/v1/locks/jobs/own?lease=${own.body.lease}&wait=15s`);
    await sleep(4_000);
    assert.equal((await v1.del(`/v1/locks/jobs/own?lease=${a.body.lease}`)).status, 204);
    assertProblem(await waiting, 410, /lock not taken: lease \d+ expired while waiting/);
    assert.deepEqual(await owners('jobs/own'), []);
    const c = await v1.post('/v1/locks/jobs/own?ttl=30&wait=0');
    assert.equal(c.status, 201, c.text);
    assert.equal(c.body.lease_granted_by, 'gateway');
    assert.equal((await v1.del(`/v1/locks/jobs/own?key=${encodeURIComponent(c.body.key)}`)).status, 204);
    // A try-lock on a lease already gone: refused, nothing written.
    assertProblem(await v1.post(`/v1/locks/jobs/own?lease=${own.body.lease}&wait=0`), 404, /lease not found/);
    assert.deepEqual(await owners('jobs/own'), []);
  });

  it('a granted lease revoked while its request waits ends the wait at once with 410; a client that leaves mid-wait leaves no lease behind', { timeout: 60_000 }, async () => {
    const a = await v1.post('/v1/locks/jobs/rv?ttl=30');
    const before = new Set((await v1.get('/v1/leases')).body.leases.map((l: { lease: string }) => l.lease));
    const started = Date.now();
    const waiting = v1.post('/v1/locks/jobs/rv?ttl=3&wait=15s');
    await waitFor('the waiter\'s key', async () => (await owners('jobs/rv')).length === 2, 3_000);
    const theirs = (await owners('jobs/rv'))[1].lease;
    assert.ok(!before.has(theirs));
    assert.equal((await v1.del(`/v1/leases/${theirs}`)).status, 204);
    assertProblem(await waiting, 410, /expired while waiting/);
    assert.ok(Date.now() - started < 5_000, 'the wait ended at the next renewal, not at its end');
    // Abandoned: the HTTP request is aborted mid-wait; the lease the gateway granted for it is revoked.
    const aborter = new AbortController();
    const abandoned = fetch(`${gw.url}/v1/locks/jobs/rv?ttl=30&wait=15s`, { method: 'POST', signal: aborter.signal }).catch((e: Error) => e.name);
    await waitFor('the abandoned waiter\'s key', async () => (await owners('jobs/rv')).length === 2, 3_000);
    const granted = (await owners('jobs/rv'))[1].lease;
    aborter.abort();
    assert.equal(await abandoned, 'AbortError');
    // Its TTL is 30 s: gone within 3 s means revoked.
    await waitFor('the abandoned lease to be revoked', async () => (await v1.get(`/v1/leases/${granted}`)).status === 404, 3_000);
    assert.deepEqual(await owners('jobs/rv'), [{ key: a.body.key, lease: a.body.lease }]);
    assert.equal((await v1.del(`/v1/locks/jobs/rv?key=${encodeURIComponent(a.body.key)}`)).status, 204);
  });

  it('refuses bad lock requests with 400 naming the parameter', async () => {
    assertProblem(await v1.post('/v1/locks/'), 400, /name is empty/);
    assertProblem(await v1.post('/v1/locks/x?ttl=5&lease=1'), 400, /ttl and lease/);
    assertProblem(await v1.post('/v1/locks/x?wait=forever'), 400, /query parameter wait/);
    assertProblem(await v1.post('/v1/locks/x?wait=21s'), 400, /at most 20s/);
    assertProblem(await v1.del('/v1/locks/x'), 400, /query parameter key/);
    assertProblem(await v1.del('/v1/locks/x?key=y%2Fz'), 400, /not a key of this lock/);
    assertProblem(await v1.del('/v1/locks/x?key=x%2F1&lease=1'), 400, /one of them/);
  });

  it('excludes other /v1/ holders and etcdctl lock: a counter incremented under the lock ends exact, fencing tokens increase', { timeout: 180_000 }, async () => {
    await v1.put('/v1/kv/counter', '0');
    const tokens: number[] = [];
    const ROUNDS = 12;
    /** A shell-style client: take the lock (waiting), read, write +1, release. */
    const worker = async (): Promise<void> => {
      for (let i = 0; i < ROUNDS; i++) {
        const lock = await v1.post('/v1/locks/jobs/counter?ttl=30&wait=20s');
        assert.equal(lock.status, 201, lock.text);
        tokens.push(lock.body.fencing_token);
        const n = Number((await v1.get('/v1/kv/counter')).text);
        await v1.put('/v1/kv/counter', String(n + 1));
        assert.equal((await v1.del(`/v1/locks/jobs/counter?key=${encodeURIComponent(lock.body.key)}`)).status, 204);
      }
    };
    const increment = `v=$(curl -sf ${gw.url}/v1/kv/counter) && curl -sf -X PUT --data-binary $((v+1)) ${gw.url}/v1/kv/counter >/dev/null`;
    const etcdctl = async (): Promise<void> => {
      for (let i = 0; i < 4; i++) {
        const run = await runProcess(ETCDCTL, [`--endpoints=${gw.etcd.clientUrl}`, 'lock', 'jobs/counter', '--', 'sh', '-c', increment], 60_000, { ETCDCTL_API: '3' });
        assert.equal(run.code, 0, `etcdctl lock failed: ${run.stderr}`);
      }
    };
    await Promise.all([worker(), worker(), etcdctl()]);
    assert.equal((await v1.get('/v1/kv/counter')).text, String(2 * ROUNDS + 4));
    // Tokens are pushed in the order the lock was taken: each holder's is larger than the last.
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i] > tokens[i - 1], `fencing tokens ${tokens.join(',')}`);
    assert.deepEqual(await lockKeys('jobs/counter'), []);
  });

  it('a /v1/ holder keeps etcdctl lock waiting, and etcdctl lock keeps a /v1/ try-lock out', { timeout: 60_000 }, async () => {
    const held = await v1.post('/v1/locks/jobs/b?ttl=30');
    const child = spawn(ETCDCTL, [`--endpoints=${gw.etcd.clientUrl}`, 'lock', 'jobs/b'], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      // etcdctl's key is there, behind ours, and it has not said it holds the lock.
      for (let i = 0; i < 200 && (await lockKeys('jobs/b')).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      const keys = await lockKeys('jobs/b');
      assert.equal(keys.length, 2, 'etcdctl is waiting with its own key');
      assert.equal(out, '', 'etcdctl does not hold the lock while /v1/ does');
      await v1.del(`/v1/locks/jobs/b?key=${encodeURIComponent(held.body.key)}`);
      for (let i = 0; i < 400 && !out.includes('jobs/b/'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, /^jobs\/b\/[0-9a-f]+/, 'etcdctl holds the lock once /v1/ released it');
      assertProblem(await v1.post('/v1/locks/jobs/b?wait=0'), 409, /held/);
      const waited = await v1.post('/v1/locks/jobs/b?wait=200ms');
      assert.equal(waited.status, 409);
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('close', r));
    }
    const after = await v1.post('/v1/locks/jobs/b?wait=10s');
    assert.equal(after.status, 201, 'free again once etcdctl let go');
    assert.ok(after.body.fencing_token > held.body.fencing_token);
    await v1.del(`/v1/locks/jobs/b?key=${encodeURIComponent(after.body.key)}`);
  });
});

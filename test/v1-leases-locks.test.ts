// /v1/leases and /v1/locks against a real etcd: every status of the lease routes; locks that exclude
// each other and `etcdctl lock` (a counter incremented under the lock by three kinds of holder ends
// exact), fencing tokens that strictly increase, and try-locks and timed-out waits that leave no key
// and no lease behind. Every answer is checked against openapi.yaml.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startGateway, type GatewayFixture } from './helpers/gateway';
import { assertProblem, v1Client } from './helpers/v1';
import { runProcess } from './helpers/python';

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
    assert.match(byQuery.body.id, /^\d+$/);
    assert.equal(byQuery.headers.location, `/v1/leases/${byQuery.body.id}`);
    const byBody = await v1.post('/v1/leases', '{"ttl": 45}', { headers: { 'content-type': 'application/json' } });
    assert.equal(byBody.body.ttl, 45);
    const listed = (await v1.get('/v1/leases')).body.leases.map((l: { id: string }) => l.id);
    assert.ok(listed.includes(byQuery.body.id) && listed.includes(byBody.body.id));
    await v1.put(`/v1/kv/leased/one?lease=${byQuery.body.id}`, 'x');
    await v1.put(`/v1/kv/leased/%ff?lease=${byQuery.body.id}`, 'x');
    const info = await v1.get(`/v1/leases/${byQuery.body.id}`);
    assert.equal(info.body.granted_ttl, 30);
    assert.ok(info.body.ttl > 0 && info.body.ttl <= 30);
    assert.deepEqual(info.body.keys, ['leased/one']);
    assert.deepEqual(info.body.keys_base64, [Buffer.from('leased/\xff', 'latin1').toString('base64')]);
    // etcdctl prints lease IDs in hex: the path takes them so.
    const hex = BigInt(byQuery.body.id).toString(16);
    assert.equal((await v1.get(`/v1/leases/0x${hex}`)).body.id, byQuery.body.id);
    const renewed = await v1.post(`/v1/leases/${byQuery.body.id}/keepalive`);
    assert.deepEqual(renewed.body, { id: byQuery.body.id, ttl: 30 });
    assert.equal((await v1.del(`/v1/leases/${byQuery.body.id}`)).status, 204);
    assertProblem(await v1.get('/v1/kv/leased/one'), 404, /not found/);
    assertProblem(await v1.del(`/v1/leases/${byQuery.body.id}`), 404, /lease \d+ not found/);
    assertProblem(await v1.get(`/v1/leases/${byQuery.body.id}`), 404, /not found/);
    assertProblem(await v1.post(`/v1/leases/${byQuery.body.id}/keepalive`), 404, /not found/);
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
    const created = await v1.get(`/v1/kv/${held.body.key}`);
    assert.equal(held.body.fencing_token, Number(created.headers['x-etcd-create-revision']));
    const leases = await leaseCount();
    assertProblem(await v1.post('/v1/locks/jobs/a?wait=0'), 409, /try-lock/);
    assertProblem(await v1.post('/v1/locks/jobs/a?wait=300ms'), 409, /still held after waiting 0.3s/);
    assert.deepEqual(await lockKeys('jobs/a'), [held.body.key]);
    assert.equal(await leaseCount(), leases, 'the leases granted for the lost attempts were revoked');
    // On a lease of the client's own: its key is removed, the lease stays.
    const own = await v1.post('/v1/leases?ttl=30');
    assertProblem(await v1.post(`/v1/locks/jobs/a?wait=0&lease=${own.body.id}`), 409, /held/);
    assertProblem(await v1.post(`/v1/locks/jobs/a?wait=200ms&lease=${own.body.id}`), 409, /still held/);
    assert.deepEqual(await lockKeys('jobs/a'), [held.body.key]);
    assert.equal((await v1.get(`/v1/leases/${own.body.id}`)).status, 200);
    assert.equal((await v1.del(`/v1/locks/jobs/a?key=${encodeURIComponent(held.body.key)}`)).status, 204);
    const mine = await v1.post(`/v1/locks/jobs/a?wait=0&lease=${own.body.id}`);
    assert.equal(mine.status, 201);
    assert.equal(mine.body.lease, own.body.id);
    assert.equal(mine.body.ttl, undefined);
    assert.ok(mine.body.fencing_token > held.body.fencing_token);
    assert.equal((await v1.del(`/v1/locks/jobs/a?lease=${own.body.id}`)).status, 204);
    assertProblem(await v1.del(`/v1/locks/jobs/a?lease=${own.body.id}`), 404, /not found/);
    assert.deepEqual(await lockKeys('jobs/a'), []);
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

// The ways a client with a valid token of its own walked out of its grant (issue 22), each as it was
// reproduced, each now held by checking exactly what etcd executes: the empty range_end, a forged
// /v1/ continue token, an election's leader.key, a lease's keys, prev_kv without read. Every refusal
// is proven on etcd's side too: the key outside the grant is still there, with its value.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { b64, send, startGateway, type GatewayFixture } from '../support/gateway';
import { AccessPolicy } from '../../src/core/security/access';

const sha = (token: string): string => crypto.createHash('sha256').update(token).digest('hex');
const as = (token: string): RequestInit => ({ headers: { Authorization: `Bearer ${token}` } });
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

const ACCESS = `clients:
  - name: billing
    token_sha256: ${sha('billtok')}
    grants:
      - { prefix: "billing/", rights: [read, write, watch, lease] }
      - { prefix: "locks/billing/", rights: [lock] }
      - { prefix: "elections/billing/", rights: [election] }
  - name: scribe
    token_sha256: ${sha('scribetok')}
    grants:
      - { prefix: "billing/", rights: [write] }
  - name: ops
    token_sha256: ${sha('opstok')}
    grants:
      - { prefix: "", rights: [read, write, watch, lease, lock, election, admin] }
`;

describe('access control holds against a hostile client with a valid token', () => {
  let dir: string;
  let policy: AccessPolicy;
  let gw: GatewayFixture;

  const ops = (p: string, body: object): Promise<{ status: number; body: any }> => gw.post(p, body, as('opstok')); // eslint-disable-line @typescript-eslint/no-explicit-any
  const bill = (p: string, body: object): Promise<{ status: number; body: any; text: string }> => gw.post(p, body, as('billtok')); // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The value of a key as etcd holds it (read on etcd's own gateway, no access control). */
  async function inEtcd(key: string): Promise<string | undefined> {
    const answer = await gw.etcdPost('/v3/kv/range', { key: b64(key) });
    const kv = answer.body.kvs?.[0];
    return kv ? unb64(kv.value ?? '') : undefined;
  }
  function leaks(text: string): boolean {
    return text.includes(b64('topsecret')) || text.includes('topsecret') || text.includes(b64('secret/')) || text.includes('secret/');
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-escape-'));
    fs.writeFileSync(path.join(dir, 'access.yaml'), ACCESS);
    policy = new AccessPolicy(path.join(dir, 'access.yaml'), { info: () => undefined, error: () => undefined });
    gw = await startGateway({ access: policy });
    for (const [k, v] of [['billing/a', '1'], ['billing/b', '2'], ['secret/a', 'topsecret'], ['secret/victim', 'topsecret']]) {
      assert.equal((await ops('/v3/kv/put', { key: b64(k), value: b64(v) })).status, 200);
    }
  });
  after(async () => {
    policy.close();
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads an empty range_end as one key, as etcd\'s gateway does, in a range and in a txn', async () => {
    for (const body of [
      { key: b64('billing/'), range_end: '' },
      { key: b64('billing/'), rangeEnd: '' },
      { key: b64('billing/a'), range_end: '' },
    ]) {
      const ours = await bill('/v3/kv/range', body);
      assert.equal(ours.status, 200, ours.text);
      assert.ok(!leaks(ours.text), `no key outside the grant: ${ours.text}`);
      const theirs = await gw.etcdPost('/v3/kv/range', body);
      assert.deepEqual(ours.body.kvs, theirs.body.kvs, 'the same keys as etcd\'s gateway');
    }
    const txn = await bill('/v3/kv/txn', { success: [{ request_range: { key: b64('billing/'), range_end: '' } }, { requestRange: { key: b64('billing/'), rangeEnd: '' } }] });
    assert.equal(txn.status, 200, txn.text);
    assert.ok(!leaks(txn.text), txn.text);
    assert.equal(txn.body.responses[0].response_range.kvs, undefined, 'one key, billing/, which does not exist');
  });

  it('deletes one key for an empty range_end, and compares one key', async () => {
    assert.equal((await bill('/v3/kv/put', { key: b64('billing/zz'), value: b64('z') })).status, 200);
    const del = await bill('/v3/kv/deleterange', { key: b64('billing/zz'), range_end: '' });
    assert.equal(del.status, 200, del.text);
    assert.equal(del.body.deleted, '1');
    assert.equal(await inEtcd('secret/a'), 'topsecret', 'the delete did not run on to the end of the keyspace');
    // A compare with an empty range_end compares billing/ alone (which does not exist: version 0).
    const cmp = await bill('/v3/kv/txn', { compare: [{ key: b64('billing/'), range_end: '', target: 'VERSION', result: 'EQUAL', version: '0' }] });
    assert.equal(cmp.status, 200, cmp.text);
    assert.equal(cmp.body.succeeded, true);
  });

  it('refuses a forged /v1/ continue token that would widen the listing', async () => {
    const head = await send(gw.url, '/v1/kv/billing/a', undefined, { method: 'GET', ...as('billtok') });
    const r = Number(head.headers.get('x-etcd-revision'));
    const p = b64('billing/');
    const forged = [
      { v: 1, p, o: '000:key:asc', r, e: 'AA==' },
      { v: 1, p, o: '000:key:asc', r, e: '' },
      { v: 1, p, o: '000:key:desc', r, e: 'AA==' },
      { v: 1, p, o: '000:key:desc', r, e: '' },
      { v: 1, p, o: '000:key:desc', r, e: b64('zzz') },
      { v: 1, p, o: '000:key:asc', r, k: b64('secret/') },
      { v: 1, p, o: '000:key:asc', r, k: b64('a') },
      { v: 1, p, o: '000:key:asc', r, k: '' },
    ];
    for (const body of forged) {
      const t = Buffer.from(JSON.stringify(body)).toString('base64url');
      const sort = body.o.endsWith('desc') ? '&sort=key:desc' : '';
      const answer = await send(gw.url, `/v1/kv/billing/?list&continue=${t}${sort}`, undefined, { method: 'GET', ...as('billtok') });
      assert.ok(answer.status === 400 || answer.status === 403, `${JSON.stringify(body)}: ${answer.status} ${answer.text}`);
      assert.ok(!leaks(answer.text), answer.text);
    }
    // Real tokens still page, both ways.
    for (const sort of ['', '&sort=key:desc']) {
      const first = await send(gw.url, `/v1/kv/billing/?list&limit=1${sort}`, undefined, { method: 'GET', ...as('billtok') });
      assert.equal(first.status, 200, first.text);
      assert.ok(first.body.continue, first.text);
      const next = await send(gw.url, `/v1/kv/billing/?list&limit=1&continue=${first.body.continue}${sort}`, undefined, { method: 'GET', ...as('billtok') });
      assert.equal(next.status, 200, next.text);
      assert.notEqual(next.body.kvs[0].key, first.body.kvs[0].key);
      assert.ok(!leaks(next.text));
    }
  });

  it('checks the key an election proclaim or resign acts on, not only its name', async () => {
    const victim = await gw.etcdPost('/v3/kv/range', { key: b64('secret/victim') });
    const rev = victim.body.kvs[0].create_revision;
    for (const op of ['proclaim', 'resign']) {
      const leader = { name: b64('elections/billing/x'), key: b64('secret/victim'), rev, lease: '0' };
      const body = op === 'proclaim' ? { leader, value: b64('pwned') } : { leader };
      const answer = await bill(`/v3/election/${op}`, body);
      assert.equal(answer.status, 403, answer.text);
      assert.match(answer.body.message, /leader\.key is not a key of election|may not election key "secret\/victim"/);
      // A key inside the grant that is not the election's own is refused too.
      const sideways = await bill(`/v3/election/${op}`, { ...body, leader: { ...body.leader, key: b64('elections/billing/other') } });
      assert.equal(sideways.status, 403, sideways.text);
      assert.match(sideways.body.message, /leader\.key is not a key of election/);
    }
    assert.equal(await inEtcd('secret/victim'), 'topsecret');
  });

  it('lets a client use a lease only while its keys lie inside the client\'s write grants', async () => {
    const foreign = (await ops('/v3/lease/grant', { TTL: 120 })).body.ID as string;
    assert.equal((await ops('/v3/kv/put', { key: b64('secret/leased'), value: b64('topsecret'), lease: foreign })).status, 200);
    // Looking at it: its keys are listed only as far as the client may read them.
    const ttl = await bill('/v3/lease/timetolive', { ID: foreign, keys: true });
    assert.equal(ttl.status, 200, ttl.text);
    assert.ok(!leaks(ttl.text), ttl.text);
    assert.equal(ttl.body.keys, undefined);
    const v1ttl = await send(gw.url, `/v1/leases/${foreign}`, undefined, { method: 'GET', ...as('billtok') });
    assert.equal(v1ttl.status, 200, v1ttl.text);
    assert.deepEqual(v1ttl.body.keys, []);
    const opsView = await ops('/v3/lease/timetolive', { ID: foreign, keys: true });
    assert.deepEqual(opsView.body.keys, [b64('secret/leased')], 'a client that may read them sees them');
    // Revoking it would delete secret/leased; renewing it keeps secret/leased; attaching a key to it
    // would make it unusable to its owner: all refused.
    const refusedTo = /may not use lease \d+: it holds 1 key outside the client's write prefixes \("billing\/"\)/;
    for (const [p, body] of [
      ['/v3/lease/revoke', { ID: foreign }],
      ['/v3/lease/keepalive', { ID: foreign }],
      ['/v3/kv/put', { key: b64('billing/mine'), value: b64('x'), lease: foreign }],
      ['/v3/kv/txn', { success: [{ request_put: { key: b64('billing/mine'), value: b64('x'), lease: foreign } }] }],
    ] as const) {
      const answer = await bill(p, body);
      assert.equal(answer.status, 403, `${p}: ${answer.text}`);
      assert.match(answer.body.message, refusedTo);
      assert.ok(!leaks(answer.text), 'the refusal does not name the foreign key');
    }
    for (const [method, p] of [['DELETE', `/v1/leases/${foreign}`], ['POST', `/v1/leases/${foreign}/keepalive`], ['PUT', `/v1/kv/billing/mine?lease=${foreign}`]]) {
      const answer = await send(gw.url, p, method === 'PUT' ? 'x' : undefined, { method, ...as('billtok') });
      assert.equal(answer.status, 403, `${method} ${p}: ${answer.text}`);
    }
    // On a WebSocket keepalive too, answered in order on the socket.
    const ws = new WebSocket(`${gw.wsUrl}/v3/lease/keepalive`, { headers: { Authorization: 'Bearer billtok' } });
    const messages: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
    ws.on('message', (m) => messages.push(JSON.parse(m.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const own = (await bill('/v3/lease/grant', { TTL: 60 })).body.ID as string;
    ws.send(JSON.stringify({ ID: foreign }));
    ws.send(JSON.stringify({ ID: own }));
    for (let i = 0; i < 100 && messages.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    ws.close();
    assert.equal(messages[0]?.error?.grpc_code, 7, JSON.stringify(messages));
    assert.equal(messages[1]?.result?.ID, own, 'the socket lives on and renews the client\'s own lease');
    const check = await gw.etcdPost('/v3/lease/timetolive', { ID: foreign, keys: true });
    assert.ok(Number(check.body.TTL) > 0, 'the foreign lease is alive');
    assert.equal(await inEtcd('secret/leased'), 'topsecret');
    assert.equal(await inEtcd('billing/mine'), undefined, 'nothing was attached to the foreign lease');
    // The client's own lease: attach, renew, revoke, as before.
    assert.equal((await bill('/v3/kv/put', { key: b64('billing/mine'), value: b64('x'), lease: own })).status, 200);
    assert.equal((await bill('/v3/lease/keepalive', { ID: own })).status, 200);
    const mine = await bill('/v3/lease/timetolive', { ID: own, keys: true });
    assert.deepEqual(mine.body.keys, [b64('billing/mine')]);
    assert.equal((await bill('/v3/lease/revoke', { ID: own })).status, 200);
    assert.equal(await inEtcd('billing/mine'), undefined, 'revoking its own lease deleted its own key');
  });

  it('returns previous values (prev_kv) only to a client that may read them', async () => {
    const put = await gw.post('/v3/kv/put', { key: b64('billing/a'), value: b64('3'), prev_kv: true }, as('scribetok'));
    assert.equal(put.status, 403, put.text);
    assert.match(put.body.message, /client "scribe" may not read the previous value \(prev_kv\) of key "billing\/a"/);
    const del = await gw.post('/v3/kv/deleterange', { key: b64('billing/'), range_end: b64('billing0'), prev_kv: true }, as('scribetok'));
    assert.equal(del.status, 403, del.text);
    const txn = await gw.post('/v3/kv/txn', { success: [{ request_put: { key: b64('billing/a'), value: b64('3'), prev_kv: true } }] }, as('scribetok'));
    assert.equal(txn.status, 403, txn.text);
    assert.equal(await inEtcd('billing/a'), '1', 'nothing was written');
    const v1del = await send(gw.url, '/v1/kv/billing/a?prev', undefined, { method: 'DELETE', ...as('scribetok') });
    assert.equal(v1del.status, 403, v1del.text);
    // Without prev_kv the write goes through; with read too, prev_kv does.
    assert.equal((await gw.post('/v3/kv/put', { key: b64('billing/a'), value: b64('3') }, as('scribetok'))).status, 200);
    const withRead = await bill('/v3/kv/put', { key: b64('billing/a'), value: b64('1'), prev_kv: true });
    assert.equal(withRead.status, 200, withRead.text);
    assert.equal(withRead.body.prev_kv.value, b64('3'));
  });

  it('names the right that /v1/cluster needs', async () => {
    const answer = await send(gw.url, '/v1/cluster', undefined, { method: 'GET', ...as('billtok') });
    assert.equal(answer.status, 403, answer.text);
    assert.match(answer.body.detail ?? answer.body.message, /may not admin the cluster/);
  });
});

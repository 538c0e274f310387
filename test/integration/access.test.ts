// Gateway access control: clients identified by a bearer token (stored hashed), granted rights on key
// prefixes; every route and every WebSocket message is checked before anything reaches etcd.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { httpWatch, wsWatch } from '../support/watch-clients';
import { AccessControl, AccessPolicy } from '../../src/core/security/access';

const sha = (token: string): string => crypto.createHash('sha256').update(token).digest('hex');
const bearer = (token: string): { headers: Record<string, string> } => ({ headers: { Authorization: `Bearer ${token}` } });

function accessFile(readerRights: string[]): string {
  return [
    'clients:',
    '  - name: reader',
    `    token_sha256: ${sha('reader-token')}`,
    '    grants:',
    `      - { prefix: "app/", rights: [${readerRights.join(', ')}] }`,
    '  - name: writer',
    `    token_sha256: ${sha('writer-token')}`,
    '    grants:',
    '      - { prefix: "app/", rights: [read, write, watch] }',
    '      - { prefix: "locks/", rights: [lock] }',
    '  - name: ops',
    `    token_sha256: ${sha('ops-token')}`,
    '    grants:',
    '      - { prefix: "", rights: [read, write, watch, lease, lock, election, admin] }',
    '',
  ].join('\n');
}

describe('gateway access control', () => {
  let dir: string;
  let file: string;
  let policy: AccessPolicy;
  let gw: GatewayFixture;
  const logged: string[] = [];
  const log = { info: (o: object, m: string) => logged.push(`${m} ${JSON.stringify(o)}`), error: (o: object, m: string) => logged.push(`${m} ${JSON.stringify(o)}`) };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-access-'));
    file = path.join(dir, 'access.yaml');
    fs.writeFileSync(file, accessFile(['read']));
    policy = new AccessPolicy(file, log);
    gw = await startGateway({ access: policy });
    assert.equal((await gw.post('/v3/kv/put', { key: b64('app/a'), value: b64('1') }, bearer('ops-token'))).status, 200);
  });
  after(async () => {
    policy.close();
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function refused(token: string | undefined, p: string, body: object, status: number, message: RegExp | string): Promise<void> {
    const answer = await gw.post(p, body, token === undefined ? {} : bearer(token));
    assert.equal(answer.status, status, answer.text);
    assert.equal(answer.body.code, status === 401 ? 16 : 7);
    if (typeof message === 'string') assert.equal(answer.body.message, message);
    else assert.match(answer.body.message, message);
  }

  it('refuses requests without a valid gateway token with 401, before reading them', async () => {
    await refused(undefined, '/v3/kv/range', { key: b64('app/a') }, 401, /gateway token \(Authorization: Bearer \.\.\.\)/);
    await refused('wrong-token', '/v3/kv/range', { key: b64('app/a') }, 401, 'gateway: invalid gateway token');
    const etcdStyle = await gw.post('/v3/kv/range', 'not even json', { headers: { Authorization: 'KfMeMXxNtdUbHAWG.162' } });
    assert.equal(etcdStyle.status, 401, 'identity is settled before the body is parsed');
  });

  it('lets a client read inside its prefix, and names the prefix when it refuses', async () => {
    const ok = await gw.post('/v3/kv/range', { key: b64('app/a') }, bearer('reader-token'));
    assert.equal(ok.status, 200);
    assert.equal(ok.body.kvs[0].value, b64('1'));
    await refused('reader-token', '/v3/kv/range', { key: b64('other') }, 403, 'gateway: client "reader" may not read key "other" (its read prefixes: "app/")');
    await refused('reader-token', '/v3/kv/put', { key: b64('app/a'), value: b64('2') }, 403, 'gateway: client "reader" may not write key "app/a" (its write prefixes: none)');
  });

  it('checks ranges at the prefix boundary exactly', async () => {
    assert.equal((await gw.post('/v3/kv/range', { key: b64('app/'), range_end: b64('app0') }, bearer('reader-token'))).status, 200, 'a range ending exactly at the prefix end');
    assert.equal((await gw.post('/v3/kv/range', { key: b64('app/m'), range_end: b64('app/z') }, bearer('reader-token'))).status, 200);
    await refused('reader-token', '/v3/kv/range', { key: b64('app/'), range_end: b64('app1') }, 403, /may not read keys \["app\/", "app1"\)/);
    await refused('reader-token', '/v3/kv/range', { key: b64('app'), range_end: b64('app0') }, 403, /may not read/);
    await refused('reader-token', '/v3/kv/range', { key: b64('app/'), range_end: 'AA==' }, 403, /may not read every key from "app\/"/);
    await refused('reader-token', '/v3/kv/range', { key: 'AA==', range_end: 'AA==' }, 403, /may not read/);
    await refused('reader-token', '/v3/kv/range', { key: b64('app') }, 403, /may not read key "app"/);
    assert.equal((await gw.post('/v3/kv/range', { key: 'AA==', range_end: 'AA==' }, bearer('ops-token'))).status, 200, 'the empty prefix grants everything');
  });

  it('checks every op of a txn, nested ones and compares included', async () => {
    const inside = { compare: [{ key: b64('app/a'), version: 1 }], success: [{ request_put: { key: b64('app/b'), value: b64('x') } }, { request_txn: { success: [{ request_range: { key: b64('app/a') } }] } }] };
    assert.equal((await gw.post('/v3/kv/txn', inside, bearer('writer-token'))).status, 200);
    await refused('writer-token', '/v3/kv/txn', { success: [{ request_txn: { failure: [{ request_delete_range: { key: b64('other') } }] } }] }, 403, /may not write key "other"/);
    await refused('writer-token', '/v3/kv/txn', { compare: [{ key: b64('secret'), version: 0 }], success: [{ request_put: { key: b64('app/c'), value: b64('x') } }] }, 403, /may not read key "secret"/);
    const untouched = await gw.post('/v3/kv/range', { key: b64('app/c') }, bearer('ops-token'));
    assert.equal(untouched.body.kvs, undefined, 'a refused txn changed nothing');
  });

  it('checks watches over HTTP and on every WebSocket message', async () => {
    const ok = await httpWatch(gw.url, JSON.stringify({ create_request: { key: b64('app/'), range_end: b64('app0') } }), '/v3/watch', bearer('writer-token').headers);
    assert.equal((await ok.take(1))[0].result.created, true);
    ok.close();
    const parent = await gw.post('/v3/watch', { create_request: { key: 'AA==', range_end: 'AA==' } }, bearer('writer-token'));
    assert.equal(parent.status, 403, 'a watch on a parent prefix is refused');
    await assert.rejects(wsWatch(gw.wsUrl), /Unexpected server response: 401/);
    const ws = await wsWatch(gw.wsUrl, '/v3/watch', { headers: bearer('writer-token').headers });
    try {
      ws.send({ create_request: { key: b64('other/') , range_end: b64('other0') } });
      ws.send({ create_request: { key: b64('app/a') } });
      const [refusal, created] = await ws.take(2);
      assert.equal(refusal.error.grpc_code, 7);
      assert.match(refusal.error.message, /may not watch keys \["other\/", "other0"\)/);
      assert.equal(created.result.created, true, 'the socket lives on');
    } finally {
      ws.close();
    }
  });

  it('grants leases, locks, elections and admin routes only to clients with those rights', async () => {
    await refused('writer-token', '/v3/lease/grant', { TTL: 10 }, 403, /may not lease leases/);
    const lease = await gw.post('/v3/lease/grant', { TTL: 10 }, bearer('ops-token'));
    assert.equal(lease.status, 200);
    assert.equal((await gw.post('/v3/lock/lock', { name: b64('locks/job'), lease: lease.body.ID }, bearer('writer-token'))).status, 200);
    await refused('writer-token', '/v3/lock/lock', { name: b64('elsewhere'), lease: lease.body.ID }, 403, /may not lock/);
    await refused('writer-token', '/v3/election/leader', { name: b64('locks/job') }, 403, /may not election/);
    for (const p of ['/v3/kv/compaction', '/v3/cluster/member/list', '/v3/maintenance/status', '/v3/auth/user/list']) {
      await refused('writer-token', p, {}, 403, /may not admin/);
    }
    assert.equal((await gw.post('/v3/maintenance/status', {}, bearer('ops-token'))).status, 200);
  });

  it('takes a changed file without a restart, and keeps the last good one when the new one is bad', async () => {
    fs.writeFileSync(file, accessFile(['read', 'write']));
    assert.equal(policy.reload(), true);
    assert.equal((await gw.post('/v3/kv/put', { key: b64('app/r'), value: b64('1') }, bearer('reader-token'))).status, 200);
    fs.writeFileSync(file, 'clients:\n  - name: broken\n    grants: [ { prefix: 1 } ]\n');
    assert.equal(policy.reload(), false);
    assert.ok(logged.some((l) => l.startsWith('access file rejected') && l.includes('clients[0]: needs token_sha256 or cert_subject')), logged.join('\n'));
    assert.equal((await gw.post('/v3/kv/put', { key: b64('app/r'), value: b64('2') }, bearer('reader-token'))).status, 200, 'the last good file is still in force');
    // The file is also watched: a good file put back is picked up without an explicit reload.
    fs.writeFileSync(file, accessFile(['read']));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (await gw.post('/v3/kv/put', { key: b64('app/r'), value: b64('3') }, bearer('reader-token'))).status === 200) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await refused('reader-token', '/v3/kv/put', { key: b64('app/r'), value: b64('4') }, 403, /may not write/);
  });

  it('a token rotated in the file is refused at once, though it was proven (and remembered) before', async () => {
    const range = { key: b64('app/r') };
    for (let i = 0; i < 3; i++) assert.equal((await gw.post('/v3/kv/range', range, bearer('reader-token'))).status, 200);
    fs.writeFileSync(file, accessFile(['read']).replace(sha('reader-token'), sha('rotated-token')));
    try {
      assert.equal(policy.reload(), true);
      await refused('reader-token', '/v3/kv/range', range, 401, 'gateway: invalid gateway token');
      assert.equal((await gw.post('/v3/kv/range', range, bearer('rotated-token'))).status, 200);
      // A wrong token is never remembered: it keeps getting 401, however often it is tried.
      for (let i = 0; i < 3; i++) await refused('reader-token', '/v3/kv/range', range, 401, 'gateway: invalid gateway token');
    } finally {
      fs.writeFileSync(file, accessFile(['read']));
      policy.reload();
    }
  });

  it('rejects access files that are wrong, saying where', () => {
    const cases: [string, RegExp][] = [
      ['nothing: here', /"clients" list/],
      ['clients: [ { name: a, token_sha256: abc, grants: [] } ]', /clients\[0\]\.token_sha256: must be 64 hex digits/],
      [`clients: [ { name: a, token_sha256: ${sha('x')}, grants: [ { prefix: "a/", rights: [fly] } ] } ]`, /clients\[0\]\.grants\[0\]\.rights: unknown right "fly"/],
      [`clients: [ { name: a, token_sha256: ${sha('x')}, grants: [] }, { name: a, token_sha256: ${sha('y')}, grants: [] } ]`, /the name "a" is used twice/],
      [`clients: [ { name: a, token: plain, grants: [] } ]`, /unknown field "token"/],
    ];
    for (const [text, message] of cases) assert.throws(() => AccessControl.parse(text), message);
  });
});

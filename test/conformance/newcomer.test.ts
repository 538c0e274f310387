// What a newcomer hits first (issue 23), each answered so that it says what to do: a key read without
// ?list where keys lie under it; lease IDs named one way in every /v1/ answer, hexadecimal only with 0x.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { send, startGateway, type GatewayFixture } from '../support/gateway';

describe('answers that tell a newcomer what to do', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('a GET of a prefix without ?list says how many keys lie under it', async () => {
    for (const k of ['a', 'b', 'c']) assert.equal((await send(gw.url, `/v1/kv/some/prefix/${k}`, k, { method: 'PUT' })).status, 201);
    const answer = await send(gw.url, '/v1/kv/some/prefix/', undefined, { method: 'GET' });
    assert.equal(answer.status, 404);
    assert.equal(answer.body.detail, 'key not found; 3 keys under "some/prefix/": add ?list to list them');
    const one = await send(gw.url, '/v1/kv/some/prefix/a/', undefined, { method: 'GET' });
    assert.equal(one.body.detail, 'key not found', 'no keys under it: the plain 404');
    const listed = await send(gw.url, '/v1/kv/some/prefix/?list', undefined, { method: 'GET' });
    assert.equal(listed.body.count, 3, 'the hint is right');
  });

  it('names a lease ID `lease` in every /v1/ answer, and reads hexadecimal only with 0x', async () => {
    const granted = await send(gw.url, '/v1/leases?ttl=60', undefined, { method: 'POST' });
    assert.equal(granted.status, 201, granted.text);
    assert.deepEqual(Object.keys(granted.body), ['lease', 'ttl']);
    const id: string = granted.body.lease;
    const put = await send(gw.url, `/v1/kv/newcomer/leased?lease=${id}`, 'x', { method: 'PUT' });
    assert.equal(put.body.lease, id);
    const ttlPut = await send(gw.url, '/v1/kv/newcomer/ttl?ttl=60', 'x', { method: 'PUT' });
    assert.match(ttlPut.body.lease, /^\d+$/);
    const lock = await send(gw.url, `/v1/locks/newcomer/job?wait=0&lease=${id}`, undefined, { method: 'POST' });
    assert.equal(lock.body.lease, id);
    assert.equal((await send(gw.url, `/v1/leases/${id}`, undefined, { method: 'GET' })).body.lease, id);
    assert.equal((await send(gw.url, `/v1/leases/${id}/keepalive`, undefined, { method: 'POST' })).body.lease, id);
    const list = await send(gw.url, '/v1/leases', undefined, { method: 'GET' });
    assert.ok(list.body.leases.some((l: { lease: string }) => l.lease === id), list.text);
    // etcdctl prints IDs in hexadecimal without 0x: with 0x they are read so; without, the answer says how.
    const hex = BigInt(id).toString(16);
    assert.equal((await send(gw.url, `/v1/leases/0x${hex}`, undefined, { method: 'GET' })).body.lease, id);
    for (const path of ['/v1/leases/abc', '/v1/kv/newcomer/x?lease=abc']) {
      const answer = await send(gw.url, path, path.startsWith('/v1/kv') ? 'x' : undefined, { method: path.startsWith('/v1/kv') ? 'PUT' : 'GET' });
      assert.equal(answer.status, 400, answer.text);
      assert.match(answer.body.detail, /"abc" is not decimal; a lease ID in hexadecimal \(as etcdctl prints it\) takes 0x: 0xabc/);
    }
    assert.equal((await send(gw.url, '/v1/kv/newcomer/x', undefined, { method: 'GET' })).status, 404, 'nothing was written');
  });
});

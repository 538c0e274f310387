// What a newcomer hits first (issue 23), each answered so that it says what to do: a key read without
// ?list where keys lie under it.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { send, startGateway, type GatewayFixture } from './helpers/gateway';

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
});

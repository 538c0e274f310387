// Malformed and odd /v1/ requests, generated from a seed: random methods, paths with broken percent
// escapes and raw bytes, query parameters with wrong values, precondition headers, lease IDs and
// bodies. Every answer must be a documented status below 500 (a problem+json for every error) within
// its time bound, and the gateway must still serve afterwards. V1_FUZZ_SEED replays a run.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { v1Request } from '../support/v1';
import { Rng } from '../support/fuzz';

const SEED = Number(process.env.V1_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CASES = 1_500;

const METHODS = ['GET', 'PUT', 'DELETE', 'POST', 'HEAD', 'PATCH'];
const PATHS = ['/v1/kv/', '/v1/kv/f/', '/v1/kv/f/a', '/v1/leases', '/v1/leases/', '/v1/locks/', '/v1/locks/f/l', '/v1/kv'];
const PARAMS = ['list', 'prefix', 'prev', 'keys_only', 'count_only', 'serializable', 'limit', 'continue', 'sort', 'revision', 'after', 'timeout', 'ttl', 'lease', 'key', 'bogus'];
const VALUES = ['', 'true', 'false', '1', '0', '-1', 'x', '%zz', '%00%ff', '99999999999999999999', '1e3', '0x10', 'key:desc', 'mod', '10ms', '5m', 'eyJ2IjoxfQ', '+'];
const HEADERS: Array<[string, string]> = [
  ['if-match', '*'],
  ['if-match', '"1"'],
  ['if-match', 'W/"x"'],
  ['if-none-match', '*'],
  ['if-none-match', '"2", "3"'],
  ['accept', 'application/json'],
  ['content-encoding', 'gzip'],
  ['content-type', 'application/json'],
];

function randomPath(rng: Rng): string {
  let path = rng.pick(PATHS);
  for (let i = rng.int(3); i > 0; i--) {
    path += rng.pick(['a', '%', '%f', '%C3%A9', '%00', '/', '..', '.', '%2F', String(rng.int(1e6))]);
  }
  const query = Array.from({ length: rng.int(4) }, () => {
    const name = rng.pick(PARAMS);
    return rng.chance(0.2) ? name : `${name}=${rng.pick(VALUES)}`;
  });
  // A blocking read, bounded first (the first value of a parameter counts), so no case waits long.
  if (rng.chance(0.1)) query.unshift('wait', 'timeout=10ms');
  return query.length ? `${path}?${query.join('&')}` : path;
}

describe('/v1/ under malformed requests', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway({ lockWaitMs: 200 });
  });
  after(() => gw.close());

  it(`answers ${CASES.toLocaleString('en-US')} generated requests with documented statuses below 500`, { timeout: 300_000 }, async (t) => {
    t.diagnostic(`seed ${SEED}: replay with V1_FUZZ_SEED=${SEED}`);
    const rng = new Rng(SEED);
    const statuses = new Map<number, number>();
    for (let i = 0; i < CASES; i++) {
      const method = rng.pick(METHODS);
      const target = randomPath(rng);
      const headers: Record<string, string> = {};
      for (let h = rng.int(3); h > 0; h--) {
        const [name, value] = rng.pick(HEADERS);
        headers[name] = value;
      }
      const body = method === 'PUT' || method === 'POST' ? rng.pick([undefined, '', '{"ttl": 1}', '{"ttl": 0}', '[', Buffer.from([0xff, 0x00])]) : undefined;
      const what = `case ${i}: ${method} ${target} ${JSON.stringify(headers)}`;
      // Checked against the contract by v1Request: documented status, schema of its body.
      const answer = await v1Request(gw.url, method, target, { headers, body }).catch((e: Error) => assert.fail(`${what}: ${e.message}`));
      assert.ok(answer.status < 500, `${what}: ${answer.status} ${answer.text}`);
      if (answer.status >= 400 && method !== 'HEAD') assert.equal(answer.headers['content-type'], 'application/problem+json', what);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    }
    t.diagnostic(`statuses: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`);
    const put = await v1Request(gw.url, 'PUT', '/v1/kv/after-fuzz', { body: 'ok' });
    assert.ok(put.status === 201 || put.status === 200);
    assert.equal((await v1Request(gw.url, 'GET', '/v1/kv/after-fuzz')).text, 'ok');
    assert.equal(gw.gateway.hub.stats().watches, 0, 'no watch left behind');
  });
});

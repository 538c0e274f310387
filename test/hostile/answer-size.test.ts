// A range (or txn) answer whose JSON would pass V8's longest string (~512 MiB) is refused with a clear
// 429 naming the limit and what to ask for instead, not a 500 "Invalid string length". The size is
// bounded from the gRPC answer before any JSON is made; checked against the JSON the gateway really
// sends for answers from a real etcd, and at the limit with answers that share one value buffer (the
// real thing would need 400 MB in etcd).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkRangeSize, checkTxnSize, jsonCharsAtMost, MAX_JSON_CHARS } from '../../src/api/v3/kv';
import { GatewayError, GrpcCode } from '../../src/core/errors';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';

const MiB = 2 ** 20;

describe('the JSON size of range and txn answers', () => {
  let gw: GatewayFixture;
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw.close();
  });

  it('the bound taken from the gRPC answer is never below the JSON the gateway sends', async () => {
    const sizes = [0, 1, 2, 3, 100, 4097, 70_000];
    for (const [i, n] of sizes.entries()) {
      const value = Buffer.alloc(n, 0xff);
      assert.equal((await gw.post('/v3/kv/put', { key: b64(`size/${i}/${'k'.repeat(i * 7)}`), value: value.toString('base64'), lease: '0' })).status, 200);
    }
    // Many revisions, so the numbers in the answer have many digits.
    for (let i = 0; i < 30; i++) await gw.post('/v3/kv/put', { key: b64('size/0/'), value: b64(String(i)) });
    const request = { key: b64('size/'), range_end: b64('size0') };
    const answer = await gw.post('/v3/kv/range', request);
    assert.equal(answer.status, 200);
    assert.equal(answer.body.kvs.length, sizes.length);
    const raw = await gw.client.unary('KV', 'Range', { key: Buffer.from('size/'), range_end: Buffer.from('size0') }, { idempotent: true });
    assert.ok(jsonCharsAtMost(raw) >= answer.text.length - 256, `bound ${jsonCharsAtMost(raw)}, JSON ${answer.text.length}`);
    const txn = await gw.post('/v3/kv/txn', { success: [{ request_range: request }, { request_range: request }] });
    assert.equal(txn.status, 200);
    const rawTxn = await gw.client.unary('KV', 'Txn', { success: [{ request_range: { key: Buffer.from('size/'), range_end: Buffer.from('size0') } }, { request_range: { key: Buffer.from('size/'), range_end: Buffer.from('size0') } }] }, { idempotent: false });
    assert.ok(jsonCharsAtMost(rawTxn) >= txn.text.length - 256, `bound ${jsonCharsAtMost(rawTxn)}, JSON ${txn.text.length}`);
  });

  it('an answer whose JSON would pass V8\'s string limit is refused as RESOURCE_EXHAUSTED (429), one below it is not', () => {
    // One 1.5 MiB buffer shared by every key-value: the size of a huge answer without its memory.
    const value = Buffer.alloc(1.5 * MiB);
    const kvs = (n: number) => Array.from({ length: n }, (_, i) => ({ key: Buffer.from(`k${i}`), value }));
    const fits = Math.floor(MAX_JSON_CHARS / (4 * Math.ceil(value.length / 3) + 300)) - 1;
    checkRangeSize({ kvs: kvs(fits) });
    assert.throws(
      () => checkRangeSize({ kvs: kvs(fits + 2) }),
      (e: GatewayError) => {
        assert.equal(e.code, GrpcCode.RESOURCE_EXHAUSTED);
        assert.equal(e.httpStatus, 429);
        assert.match(e.message, /^etcd read the range, but its answer is too large for one JSON document \(about \d+ MiB; at most 511 MiB\): read the keys in pages with "limit"/);
        return true;
      },
    );
    assert.throws(
      () => checkTxnSize({ responses: [{ response_range: { kvs: kvs(Math.floor(fits / 2)) } }, { response_range: { kvs: kvs(Math.ceil(fits / 2) + 2) } }] }),
      (e: GatewayError) => e.code === GrpcCode.RESOURCE_EXHAUSTED && e.message.startsWith('etcd ran the transaction, but'),
    );
  });
});

// Differential tests: the same request sequence goes to etcd's own gateway on one fresh etcd and to
// this gateway on another fresh etcd. Revisions line up because both stores start empty, so every
// answer must be identical apart from the header's cluster and member identity.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertSameAnswer, b64, send, startDifferentialPair, type GatewayFixture } from '../support/gateway';
import type { TestEtcd } from '../support/etcd';

type Step = [path: string, body: string | object];

const k = b64;

/** Keys under kv/ with values, in an order that makes creation and modification revisions differ. */
const seed: Step[] = [
  ['/v3/kv/put', { key: k('kv/b'), value: k('2') }],
  ['/v3/kv/put', { key: k('kv/a'), value: k('1') }],
  ['/v3/kv/put', { key: k('kv/c'), value: k('3') }],
  ['/v3/kv/put', { key: k('kv/b'), value: k('22') }],
  ['/v3/kv/put', { key: k('kv/empty') }],
  ['/v3/kv/put', { key: k('kv/d'), value: '' }],
  ['/v3/kv/put', { key: k('other'), value: k('x') }],
  ['/v3/kv/put', { key: Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), value: '/wD+' }],
];

const prefix = { key: k('kv/'), range_end: k('kv0') };

const scenarios: Record<string, Step[]> = {
  'range: single key, missing key, prefix, from-key, all keys, empty range': [
    ['/v3/kv/range', { key: k('kv/a') }],
    ['/v3/kv/range', { key: k('kv/missing') }],
    ['/v3/kv/range', prefix],
    ['/v3/kv/range', { key: k('kv/c'), range_end: 'AA==' }],
    ['/v3/kv/range', { key: 'AA==', range_end: 'AA==' }],
    ['/v3/kv/range', { key: k('kv/c'), range_end: k('kv/a') }],
    ['/v3/kv/range', { key: k('kv/empty') }],
  ],
  'range: limit, more, count, keys_only, count_only, serializable': [
    ['/v3/kv/range', { ...prefix, limit: 2 }],
    ['/v3/kv/range', { ...prefix, limit: '2' }],
    ['/v3/kv/range', { ...prefix, limit: -1 }],
    ['/v3/kv/range', { ...prefix, limit: 100 }],
    ['/v3/kv/range', { ...prefix, keys_only: true }],
    ['/v3/kv/range', { ...prefix, count_only: true }],
    ['/v3/kv/range', { ...prefix, serializable: true }],
    ['/v3/kv/range', { key: k('kv/'), rangeEnd: k('kv0'), keysOnly: true, countOnly: false }],
  ],
  'range: sorting by every target and order, by name and by number': [
    ['/v3/kv/range', { ...prefix, sort_order: 'DESCEND' }],
    ['/v3/kv/range', { ...prefix, sort_order: 'ASCEND', sort_target: 'VALUE' }],
    ['/v3/kv/range', { ...prefix, sort_order: 'NONE', sort_target: 'MOD' }],
    ['/v3/kv/range', { ...prefix, sort_order: 2, sort_target: 3 }],
    ['/v3/kv/range', { ...prefix, sort_order: 'DESCEND', sort_target: 'CREATE', limit: 2 }],
    ['/v3/kv/range', { ...prefix, sortOrder: 'DESCEND', sortTarget: 'VERSION' }],
    ['/v3/kv/range', { ...prefix, sort_target: 'KEY', sort_order: 'DESCEND' }],
  ],
  'range: history and revision filters': [
    ['/v3/kv/range', { key: k('kv/b'), revision: 1 }],
    ['/v3/kv/range', { key: k('kv/b'), revision: '2' }],
    ['/v3/kv/range', { key: k('kv/b'), revision: 4 }],
    ['/v3/kv/range', { key: k('kv/b'), revision: 99 }],
    ['/v3/kv/range', { ...prefix, min_mod_revision: 4 }],
    ['/v3/kv/range', { ...prefix, max_mod_revision: 3 }],
    ['/v3/kv/range', { ...prefix, min_create_revision: 3, max_create_revision: 4 }],
    ['/v3/kv/range', { ...prefix, minModRevision: '5', maxCreateRevision: '99' }],
  ],
  'put: prev_kv, ignore_value, ignore_lease and their errors': [
    ['/v3/kv/put', { key: k('kv/a'), value: k('1b'), prev_kv: true }],
    ['/v3/kv/put', { key: k('kv/new'), value: k('n'), prevKv: true }],
    ['/v3/kv/put', { key: k('kv/a'), ignore_value: true, prev_kv: true }],
    ['/v3/kv/range', { key: k('kv/a') }],
    ['/v3/kv/put', { key: k('kv/missing'), ignore_value: true }],
    ['/v3/kv/put', { key: k('kv/a'), value: k('v'), ignore_value: true }],
    ['/v3/kv/put', { key: k('kv/a'), ignore_lease: true }],
    ['/v3/kv/range', { key: k('kv/a') }],
    ['/v3/kv/put', { key: k('kv/a'), value: k('v'), lease: 1, ignore_lease: true }],
    ['/v3/kv/put', { key: k('kv/a'), value: k('v'), lease: '7587822556486125056' }],
    ['/v3/kv/put', { key: k('kv/a'), value: k('v'), lease: 0 }],
    ['/v3/kv/put', { value: k('v') }],
    ['/v3/kv/put', { key: '', value: k('v') }],
  ],
  'deleterange: single, nothing, prefix with prev_kv, from-key': [
    ['/v3/kv/deleterange', { key: k('kv/a') }],
    ['/v3/kv/deleterange', { key: k('kv/a') }],
    ['/v3/kv/deleterange', { ...prefix, prev_kv: true }],
    ['/v3/kv/range', { key: 'AA==', range_end: 'AA==' }],
    ['/v3/kv/deleterange', { key: k('o'), range_end: 'AA==', prevKv: true }],
    ['/v3/kv/range', { key: 'AA==', range_end: 'AA==', count_only: true }],
    ['/v3/kv/deleterange', {}],
  ],
  'txn: compares on every target and result, both branches, nested txn': [
    ['/v3/kv/txn', {}],
    ['/v3/kv/txn', {
      compare: [{ key: k('kv/a'), target: 'VALUE', result: 'EQUAL', value: k('1') }],
      success: [{ request_put: { key: k('kv/t'), value: k('2') } }, { request_range: { key: k('kv/a') } }],
      failure: [{ request_range: { key: k('kv/a') } }],
    }],
    ['/v3/kv/txn', {
      compare: [{ key: k('kv/a'), target: 'VALUE', result: 'NOT_EQUAL', value: k('1') }],
      success: [{ request_put: { key: k('kv/t'), value: k('3') } }],
      failure: [{ request_range: { key: k('kv/a') } }, { request_delete_range: { key: k('kv/zz') } }],
    }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/a'), target: 'VALUE', value: k('nope') }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/b'), version: 2 }], success: [{ request_range: { key: k('kv/b') } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/b'), target: 'VERSION', result: 'GREATER', version: '1' }], success: [{ request_range: { key: k('kv/b'), keys_only: true } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/b'), target: 'CREATE', result: 'LESS', create_revision: 3 }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/b'), target: 1, result: 2, create_revision: '2' }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/b'), target: 'MOD', result: 'EQUAL', mod_revision: 4 }], success: [{ request_delete_range: { key: k('kv/c'), prev_kv: true } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/nope'), target: 'CREATE', result: 'EQUAL', create_revision: 0 }], success: [{ request_put: { key: k('kv/nope'), value: k('created') } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/nope'), target: 'CREATE', result: 'EQUAL', create_revision: 0 }], success: [{ request_put: { key: k('kv/nope'), value: k('again') } }], failure: [{ request_range: { key: k('kv/nope') } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/a'), target: 'LEASE', result: 'EQUAL', lease: 0 }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/'), range_end: k('kv0'), target: 'VERSION', result: 'GREATER', version: 0 }], success: [{ request_range: { ...prefix, count_only: true } }] }],
    ['/v3/kv/txn', { compare: [{ key: k('kv/'), rangeEnd: k('kv0'), target: 'MOD', result: 'LESS', modRevision: 3 }] }],
    ['/v3/kv/txn', { success: [{ request_txn: { success: [{ request_range: { key: k('kv/a') } }] } }] }],
    ['/v3/kv/txn', { success: [{ requestTxn: { compare: [{ key: k('kv/a'), value: k('9'), target: 'VALUE' }], failure: [{ requestPut: { key: k('kv/n'), value: k('1') } }, { requestTxn: { success: [{ requestDeleteRange: { key: k('kv/n'), prevKv: true } }] } }] } }] }],
  ],
  'txn: etcd refuses duplicate keys, too many ops, an op without a request': [
    ['/v3/kv/txn', { success: [{ request_put: { key: k('kv/x'), value: k('1') } }, { request_put: { key: k('kv/x'), value: k('2') } }] }],
    ['/v3/kv/txn', { success: [{ request_put: { key: k('kv/x'), value: k('1') } }, { request_delete_range: { key: k('kv/'), range_end: k('kv0') } }] }],
    ['/v3/kv/txn', { success: [{ request_put: { key: k('kv/x'), value: k('1') } }, { request_range: { key: k('kv/x') } }] }],
    ['/v3/kv/txn', { success: Array.from({ length: 129 }, (_, i) => ({ request_range: { key: k(`kv/${i}`) } })) }],
    ['/v3/kv/txn', { success: Array.from({ length: 128 }, (_, i) => ({ request_range: { key: k(`kv/${i}`) } })), failure: Array.from({ length: 128 }, (_, i) => ({ request_range: { key: k(`kv/${i}`) } })) }],
  ],
  'compaction: ok, again, future, zero; history before it is gone': [
    ['/v3/kv/compaction', { revision: 4 }],
    ['/v3/kv/compaction', { revision: 4 }],
    ['/v3/kv/compaction', { revision: '3' }],
    ['/v3/kv/compaction', { revision: 1000 }],
    ['/v3/kv/compaction', {}],
    ['/v3/kv/range', { key: k('kv/b'), revision: 3 }],
    ['/v3/kv/range', { key: k('kv/b'), revision: 4 }],
    ['/v3/kv/compaction', { revision: 6, physical: true }],
  ],
  'range: etcd errors for a missing key, future and compacted revisions': [
    ['/v3/kv/range', {}],
    ['/v3/kv/range', ''],
    ['/v3/kv/range', 'null'],
    ['/v3/kv/range', { key: '' }],
    ['/v3/kv/range', { key: k('kv/a'), revision: 1000 }],
    ['/v3/kv/compaction', { revision: 3 }],
    ['/v3/kv/range', { key: k('kv/a'), revision: 2 }],
    ['/v3/kv/deleterange', { key: '' }],
  ],
  'prefix aliases and input forms both gateways accept': [
    ['/v3beta/kv/range', { key: k('kv/a') }],
    ['/v3/kv/range', '{"key":"Zm9v\\n"}'],
    ['/v3/kv/range', `{"key":"${k('kv/b')}","revision":"  3"}`],
    ['/v3/kv/range', `{"key":"${k('kv/b')}","limit":null,"range_end":null}`],
    ['/v3/kv/put', `{"key":"${k('kv/big')}","lease":0}`],
  ],
};

describe('KV answers are identical to etcd gateway answers', () => {
  let reference: TestEtcd;
  let gw: GatewayFixture;
  let close: () => Promise<void>;
  before(async () => {
    ({ reference, gw, close } = await startDifferentialPair());
  });
  after(() => close?.());

  // Each scenario starts from the same store on both sides: wipe, then seed.
  async function reset(): Promise<void> {
    for (const base of [reference.clientUrl, gw.url]) {
      await fetch(`${base}/v3/kv/deleterange`, { method: 'POST', body: JSON.stringify({ key: 'AA==', range_end: 'AA==' }) });
      for (const [path, body] of seed) await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) });
    }
  }

  for (const [name, steps] of Object.entries(scenarios)) {
    it(name, async () => {
      await reset();
      for (const [path, body] of steps) {
        const theirs = await send(reference.clientUrl, path, body);
        const ours = await gw.post(path, body);
        const what = `${path} ${typeof body === 'string' ? body : JSON.stringify(body).slice(0, 200)}`;
        assert.equal(ours.status, theirs.status, `${what}: status ${ours.status} (ours) vs ${theirs.status} (etcd): ${ours.text}`);
        assertSameAnswer(theirs.body, ours.body, what);
      }
    });
  }
});

// The /v1/ API's consistency promises under concurrent load, against a real etcd:
// - a listing paged through 10,000 keys while another client writes and deletes under the prefix is
//   exactly one /v3/kv/range at the first page's revision, and a compaction between pages is a 410;
// - 8 clients incrementing one counter with If-Match reach exactly 2,000, and every 412 was a real
//   conflict (the key's mod_revision had moved past the ETag sent).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { assertProblem, v1Client } from '../support/v1';

type Client = ReturnType<typeof v1Client>;

const KEYS = 10_000;
const PAGE = 100;
const key = (i: number): string => `pages/k${String(i).padStart(5, '0')}`;

describe('/v1/ consistency', () => {
  let gw: GatewayFixture;
  let v1: Client;
  before(async () => {
    gw = await startGateway();
    v1 = v1Client(gw.url);
  });
  after(() => gw.close());

  /** Writes the keys 100 to a txn, through /v3/. */
  async function seed(): Promise<void> {
    for (let from = 0; from < KEYS; from += 100) {
      const success = [];
      for (let i = from; i < from + 100; i++) success.push({ request_put: { key: b64(key(i)), value: b64(`v${i}`) } });
      assert.equal((await gw.post('/v3/kv/txn', { success })).status, 200);
    }
  }

  it(`pages through ${KEYS.toLocaleString('en-US')} keys under concurrent writes: the pages are exactly one /v3/ range at the first page's revision`, { timeout: 300_000 }, async () => {
    await seed();
    let paging = true;
    let churn = 0;
    // The other client: overwrites, deletes and creates keys under the prefix until the listing is done.
    const writer = (async () => {
      for (let i = 0; paging && i < 5_000; i++) {
        const n = (i * 7919) % KEYS;
        if (i % 3 === 0) await v1.del(`/v1/kv/${key(n)}`);
        else if (i % 3 === 1) await v1.put(`/v1/kv/${key(n)}`, `changed ${i}`);
        else await v1.put(`/v1/kv/pages/new${i}`, 'new');
        churn++;
      }
    })();
    const seen: Array<[string, string]> = [];
    let revision: number | undefined;
    let token: string | undefined;
    let pages = 0;
    do {
      const target = `/v1/kv/pages/?list&limit=${PAGE}${token ? `&continue=${encodeURIComponent(token)}` : ''}`;
      const page = await v1.get(target);
      assert.equal(page.status, 200, page.text);
      revision ??= page.body.revision;
      assert.equal(page.body.revision, revision, 'every page is read at the first page revision');
      assert.ok(page.body.kvs.length <= PAGE);
      for (const kv of page.body.kvs) seen.push([kv.key, kv.value]);
      token = page.body.more ? page.body.continue : undefined;
      pages++;
    } while (token);
    paging = false;
    await writer;
    assert.ok(churn > 0, 'the other client wrote while the listing was paged');
    const snapshot = await gw.post('/v3/kv/range', { key: b64('pages/'), range_end: b64('pages0'), revision: String(revision) });
    const expected = (snapshot.body.kvs ?? []).map((kv: { key: string; value?: string }) => [
      Buffer.from(kv.key, 'base64').toString(),
      Buffer.from(kv.value ?? '', 'base64').toString(),
    ]);
    assert.equal(seen.length, expected.length, 'nothing missed, nothing twice');
    assert.deepEqual(seen, expected);
    assert.equal(pages, Math.ceil(expected.length / PAGE));
    const now = await gw.post('/v3/kv/range', { key: b64('pages/'), range_end: b64('pages0'), count_only: true });
    assert.notEqual(now.body.header.revision, String(revision), 'the store moved on while the listing was paged');
  });

  it('a compaction between two pages makes the next page a 410', async () => {
    const first = await v1.get('/v1/kv/pages/?list&limit=100');
    assert.equal(first.body.more, true);
    const write = await v1.put('/v1/kv/pages/after', 'x');
    await gw.post('/v3/kv/compaction', { revision: String(write.body.revision) });
    const next = await v1.get(`/v1/kv/pages/?list&limit=100&continue=${encodeURIComponent(first.body.continue)}`);
    assertProblem(next, 410, /compacted/);
    assert.equal(next.body.compact_revision, write.body.revision);
  });

  it('8 clients incrementing one counter with If-Match reach exactly 2,000; every 412 was a real conflict', { timeout: 600_000 }, async (t) => {
    const TARGET = 2_000;
    await v1.put('/v1/kv/cas/counter', '0');
    let successes = 0;
    let conflicts = 0;
    const client = async (): Promise<void> => {
      for (;;) {
        const got = await v1.get('/v1/kv/cas/counter');
        const n = Number(got.text);
        if (n >= TARGET) return;
        const sent = got.headers.etag as string;
        const put = await v1.put('/v1/kv/cas/counter', String(n + 1), { headers: { 'if-match': sent } });
        if (put.status === 200) {
          successes++;
          continue;
        }
        assertProblem(put, 412, /changed/);
        assert.ok(put.body.mod_revision > Number(sent.replace(/"/g, '')), `a 412 whose key had not changed: sent ${sent}, ${put.text}`);
        conflicts++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    assert.equal((await v1.get('/v1/kv/cas/counter')).text, String(TARGET));
    assert.equal(successes, TARGET);
    const counter = await v1.get('/v1/kv/cas/counter');
    assert.equal(counter.headers['x-etcd-version'], String(TARGET + 1), 'one write per success, and the first PUT');
    t.diagnostic(`${conflicts} conflicts (412) on the way to ${TARGET}`);
  });
});

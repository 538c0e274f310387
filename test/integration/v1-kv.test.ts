// /v1/kv/{key} against a real etcd: every status and header of GET, PUT and DELETE, the conditional
// requests, binary keys and values byte for byte, listings and their tokens, blocking reads, and the
// query-flag rules. Every answer is checked against openapi.yaml (test/support/v1.ts); what was
// written is read back through /v3/ too, so the two faces are seen to share one store.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, startGateway, type GatewayFixture } from '../support/gateway';
import { assertProblem, keyPath, v1Client } from '../support/v1';
import { startTestEtcd } from '../support/etcd';
import { waitFor } from '../support/waiting';

type Client = ReturnType<typeof v1Client>;

describe('/v1/kv', () => {
  let gw: GatewayFixture;
  let v1: Client;
  before(async () => {
    // etcd's own request limit is 1.5 MiB by default: raised so a 1.5 MiB value (plus its key) fits.
    gw = await startGateway({ maxBodyBytes: 2 * 1024 * 1024, etcd: await startTestEtcd({ extraArgs: ['--max-request-bytes=3145728'] }) });
    v1 = v1Client(gw.url);
  });
  after(async () => {
    await gw.close();
    await gw.etcd.cleanup();
  });

  /** The key as /v3/ sees it: value bytes, or undefined when absent. */
  async function v3Value(key: Buffer | string): Promise<Buffer | undefined> {
    const answer = await gw.post('/v3/kv/range', { key: Buffer.from(key).toString('base64') });
    const kv = answer.body.kvs?.[0];
    return kv ? Buffer.from(kv.value ?? '', 'base64') : undefined;
  }

  describe('PUT and GET', () => {
    it('creates (201), replaces (200) and reads a value with its ETag and X-Etcd headers', async () => {
      const created = await v1.put('/v1/kv/app/config', 'postgres://db:5432/app');
      assert.equal(created.status, 201);
      assert.equal(created.headers.etag, `"${created.body.revision}"`);
      assert.equal(created.body.mod_revision, created.body.revision);
      const replaced = await v1.put('/v1/kv/app/config', 'postgres://db2:5432/app');
      assert.equal(replaced.status, 200);
      assert.ok(replaced.body.revision > created.body.revision);
      const got = await v1.get('/v1/kv/app/config');
      assert.equal(got.status, 200);
      assert.equal(got.text, 'postgres://db2:5432/app');
      assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(got.headers.etag, `"${replaced.body.revision}"`);
      assert.equal(got.headers['x-etcd-mod-revision'], String(replaced.body.revision));
      assert.equal(got.headers['x-etcd-create-revision'], String(created.body.revision));
      assert.equal(got.headers['x-etcd-version'], '2');
      assert.ok(Number(got.headers['x-etcd-revision']) >= replaced.body.revision);
      assert.equal(got.headers['x-etcd-lease'], undefined);
      assert.deepEqual(await v3Value('app/config'), Buffer.from('postgres://db2:5432/app'));
    });

    it('keeps binary and non-UTF-8 keys and values byte for byte, as octet-stream and *_base64', async () => {
      const key = Buffer.from([0x62, 0x69, 0x6e, 0x00, 0xff, 0x2f, 0x80]);
      const value = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0x0d, 0x00]);
      assert.equal((await v1.put(`/v1/kv/${keyPath(key)}`, value)).status, 201);
      const got = await v1.get(`/v1/kv/${keyPath(key)}`);
      assert.equal(got.headers['content-type'], 'application/octet-stream');
      assert.deepEqual(got.raw, value);
      assert.deepEqual(await v3Value(key), value);
      const json = await v1.get(`/v1/kv/${keyPath(key)}`, { headers: { accept: 'application/json' } });
      assert.equal(json.body.key_base64, key.toString('base64'));
      assert.equal(json.body.value_base64, value.toString('base64'));
      assert.equal(json.body.key, undefined);
      // A key given raw in UTF-8, and the same key percent-encoded, are one key.
      await v1.put('/v1/kv/caf%C3%A9', 'crème');
      const utf8 = await v1.get('/v1/kv/café'.replace('é', '%C3%A9'), { headers: { accept: 'application/json' } });
      assert.deepEqual([utf8.body.key, utf8.body.value], ['café', 'crème']);
    });

    it('stores an empty value, and a 1.5 MiB value exactly', async () => {
      assert.equal((await v1.put('/v1/kv/empty', '')).status, 201);
      const empty = await v1.get('/v1/kv/empty');
      assert.equal(empty.status, 200);
      assert.equal(empty.raw.length, 0);
      assert.equal(empty.headers['content-length'], '0');
      const big = Buffer.alloc(1.5 * 1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff;
      assert.equal((await v1.put('/v1/kv/big', big)).status, 201);
      const got = await v1.get('/v1/kv/big');
      assert.ok(got.raw.equals(big), 'the 1.5 MiB value comes back byte for byte');
      assert.ok((await v3Value('big'))?.equals(big));
    });

    it('answers the JSON form with Accept: application/json, revisions as numbers and the lease as a string', async () => {
      const put = await v1.put('/v1/kv/json/leased?ttl=60', 'v');
      const json = await v1.get('/v1/kv/json/leased', { headers: { accept: 'application/json' } });
      assert.deepEqual(json.body, { key: 'json/leased', value: 'v', create_revision: put.body.revision, mod_revision: put.body.revision, version: 1, lease: put.body.lease });
      assert.equal(json.headers['x-etcd-lease'], put.body.lease);
    });

    it('answers 404 for an absent key, 304 for If-None-Match with the current ETag, 200 for an old one', async () => {
      assertProblem(await v1.get('/v1/kv/absent'), 404, /not found/);
      const put = await v1.put('/v1/kv/etag', 'one');
      const same = await v1.get('/v1/kv/etag', { headers: { 'if-none-match': put.headers.etag as string } });
      assert.equal(same.status, 304);
      assert.equal(same.headers.etag, put.headers.etag);
      assert.equal((await v1.get('/v1/kv/etag', { headers: { 'if-none-match': '*' } })).status, 304);
      const old = await v1.get('/v1/kv/etag', { headers: { 'if-none-match': '"1"' } });
      assert.equal(old.status, 200);
      assert.equal(old.text, 'one');
      assertProblem(await v1.get('/v1/kv/etag', { headers: { 'if-none-match': 'W/x' } }), 400, /If-None-Match/);
    });

    it('reads the past with ?revision, 400 for a future one, 410 naming the compact revision', async () => {
      const first = await v1.put('/v1/kv/history', 'v1');
      await v1.put('/v1/kv/history', 'v2');
      const past = await v1.get(`/v1/kv/history?revision=${first.body.revision}`);
      assert.equal(past.text, 'v1');
      assert.equal(past.headers['x-etcd-revision'], String((await v1.get('/v1/kv/history')).headers['x-etcd-revision']));
      assertProblem(await v1.get('/v1/kv/history?revision=99999999'), 400, /revision: revision 99999999 is a future revision/);
      const now = await v1.put('/v1/kv/history', 'v3');
      await gw.post('/v3/kv/compaction', { revision: String(now.body.revision) });
      const gone = await v1.get(`/v1/kv/history?revision=${first.body.revision}`);
      assertProblem(gone, 410, /compacted/);
      assert.equal(gone.body.compact_revision, now.body.revision);
      assert.equal((await v1.get(`/v1/kv/history?revision=${now.body.revision}&serializable`)).text, 'v3');
    });

    it('HEAD answers the headers of a GET without a body', async () => {
      await v1.put('/v1/kv/head', 'twelve bytes');
      const head = await v1.send('HEAD', '/v1/kv/head');
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], '12');
      assert.equal(head.raw.length, 0);
    });
  });

  describe('conditional writes', () => {
    it('If-None-Match: * creates only; If-Match: * updates only', async () => {
      assert.equal((await v1.put('/v1/kv/cond/a', '1', { headers: { 'if-none-match': '*' } })).status, 201);
      const exists = await v1.put('/v1/kv/cond/a', '2', { headers: { 'if-none-match': '*' } });
      assertProblem(exists, 412, /If-None-Match: \* but the key exists/);
      assert.equal(exists.body.code, 9);
      assert.equal(typeof exists.body.mod_revision, 'number');
      assertProblem(await v1.put('/v1/kv/cond/b', '1', { headers: { 'if-match': '*' } }), 412, /does not exist/);
      assert.equal(await v3Value('cond/b'), undefined);
      assert.equal((await v1.put('/v1/kv/cond/a', '3', { headers: { 'if-match': '*' } })).status, 200);
      assert.deepEqual(await v3Value('cond/a'), Buffer.from('3'));
    });

    it('If-Match with the ETag is a compare-and-swap; a stale one is a 412 naming the current mod_revision', async () => {
      const put = await v1.put('/v1/kv/cond/cas', 'a');
      const swapped = await v1.put('/v1/kv/cond/cas', 'b', { headers: { 'if-match': put.headers.etag as string } });
      assert.equal(swapped.status, 200);
      const stale = await v1.put('/v1/kv/cond/cas', 'c', { headers: { 'if-match': put.headers.etag as string } });
      assertProblem(stale, 412, /changed/);
      assert.equal(stale.body.mod_revision, swapped.body.revision);
      assert.equal(stale.headers.etag, swapped.headers.etag);
      assert.deepEqual(await v3Value('cond/cas'), Buffer.from('b'));
      // Unquoted revisions are taken too.
      assert.equal((await v1.put('/v1/kv/cond/cas', 'd', { headers: { 'if-match': String(swapped.body.revision) } })).status, 200);
    });

    it('refuses malformed and contradictory precondition headers with 400 naming them', async () => {
      assertProblem(await v1.put('/v1/kv/cond/x', 'v', { headers: { 'if-match': '"abc"' } }), 400, /header If-Match/);
      assertProblem(await v1.put('/v1/kv/cond/x', 'v', { headers: { 'if-match': '"1", "2"' } }), 400, /header If-Match/);
      assertProblem(await v1.put('/v1/kv/cond/x', 'v', { headers: { 'if-match': '*', 'if-none-match': '*' } }), 400, /If-Match and If-None-Match/);
      assertProblem(await v1.put('/v1/kv/cond/x', 'v', { headers: { 'if-none-match': '"3"' } }), 400, /If-None-Match: a write takes only \*/);
      assert.equal(await v3Value('cond/x'), undefined);
    });

    it('DELETE: 204, then 404; If-Match stale is a 412 and deletes nothing; ?prev answers the value', async () => {
      const put = await v1.put('/v1/kv/del/a', 'x');
      await v1.put('/v1/kv/del/a', 'y');
      assertProblem(await v1.del('/v1/kv/del/a', { headers: { 'if-match': put.headers.etag as string } }), 412, /changed/);
      assert.deepEqual(await v3Value('del/a'), Buffer.from('y'));
      const current = await v1.get('/v1/kv/del/a');
      const deleted = await v1.del('/v1/kv/del/a', { headers: { 'if-match': current.headers.etag as string } });
      assert.equal(deleted.status, 204);
      assert.equal(deleted.raw.length, 0);
      assertProblem(await v1.del('/v1/kv/del/a'), 404, /not found/);
      assertProblem(await v1.del('/v1/kv/del/a', { headers: { 'if-match': '*' } }), 412, /does not exist/);
      await v1.put('/v1/kv/del/b', 'bee');
      const prev = await v1.del('/v1/kv/del/b?prev');
      assert.equal(prev.status, 200);
      assert.equal(prev.body.prev.value, 'bee');
      assert.equal(prev.body.deleted, 1);
    });

    it('DELETE ?prefix deletes every key under it and says how many; never the empty prefix', async () => {
      for (const k of ['pre/a', 'pre/b', 'pre/c/d', 'prf']) await v1.put(`/v1/kv/${k}`, k);
      const answer = await v1.del('/v1/kv/pre/?prefix');
      assert.equal(answer.status, 200);
      assert.equal(answer.body.deleted, 3);
      assert.deepEqual(await v3Value('prf'), Buffer.from('prf'));
      assertProblem(await v1.del('/v1/kv/?prefix'), 400, /empty prefix/);
      assertProblem(await v1.del('/v1/kv/pre/?prefix', { headers: { 'if-match': '*' } }), 400, /not with \?prefix/);
      assert.equal((await v1.del('/v1/kv/pre/?prefix=false')).status, 404);
    });

    it('PUT ?prev answers the value replaced; ?lease attaches a lease given in decimal or hex; ?ttl grants one', async () => {
      await v1.put('/v1/kv/prev', 'old');
      const prev = await v1.put('/v1/kv/prev?prev=true', 'new');
      assert.equal(prev.body.prev.value, 'old');
      const lease = await v1.post('/v1/leases?ttl=60');
      const hex = BigInt(lease.body.lease).toString(16);
      assert.equal((await v1.put(`/v1/kv/leased/dec?lease=${lease.body.lease}`, 'v')).body.lease, lease.body.lease);
      assert.equal((await v1.put(`/v1/kv/leased/hex?lease=0x${hex}`, 'v')).body.lease, lease.body.lease);
      const info = await v1.get(`/v1/leases/${lease.body.lease}`);
      assert.deepEqual(info.body.keys.sort(), ['leased/dec', 'leased/hex']);
      const ttl = await v1.put('/v1/kv/leased/ttl?ttl=30', 'v');
      assert.equal(ttl.body.ttl, 30);
      const range = await gw.post('/v3/kv/range', { key: b64('leased/ttl') });
      assert.equal(range.body.kvs[0].lease, ttl.body.lease);
      assertProblem(await v1.put('/v1/kv/leased/x?ttl=30&lease=1', 'v'), 400, /ttl and lease/);
      assertProblem(await v1.put('/v1/kv/leased/x?lease=zz', 'v'), 400, /query parameter lease/);
      assertProblem(await v1.put('/v1/kv/leased/x?lease=12345', 'v'), 404, /lease not found/);
      // A lease that expired before the put: a 404 saying so, never a 2xx, and nothing written.
      const short = await v1.post('/v1/leases?ttl=1');
      await waitFor('the 1 s lease to expire', async () => (await v1.get(`/v1/leases/${short.body.lease}`)).status === 404, 5_000, 200);
      assertProblem(await v1.put(`/v1/kv/leased/late?lease=${short.body.lease}`, 'v'), 404, new RegExp(`lease not found: lease ${short.body.lease} expired or was revoked; nothing was written`));
      assertProblem(await v1.put(`/v1/kv/leased/late?lease=${short.body.lease}`, 'v', { headers: { 'if-none-match': '*' } }), 404, /nothing was written/);
      assertProblem(await v1.get('/v1/kv/leased/late'), 404, /not found/);
    });

    it('a refused ?ttl write leaves no lease behind', async () => {
      await v1.put('/v1/kv/ttl/exists', 'v');
      const before = (await v1.get('/v1/leases')).body.leases.length;
      assertProblem(await v1.put('/v1/kv/ttl/exists?ttl=30', 'v', { headers: { 'if-none-match': '*' } }), 412, /exists/);
      assert.equal((await v1.get('/v1/leases')).body.leases.length, before);
    });

    it('refuses a body over MAX_BODY_BYTES with 413 and an unknown Content-Encoding with 415', async () => {
      assertProblem(await v1.put('/v1/kv/huge', Buffer.alloc(2 * 1024 * 1024 + 1)), 413, /larger than the limit/);
      assertProblem(await v1.put('/v1/kv/br', 'x', { headers: { 'content-encoding': 'br' } }), 415, /Content-Encoding/);
      assert.equal(await v3Value('huge'), undefined);
    });
  });

  describe('listing', () => {
    before(async () => {
      for (let i = 0; i < 25; i++) await v1.put(`/v1/kv/list/k${String(i).padStart(2, '0')}`, `v${i}`);
      await v1.put('/v1/kv/lisz', 'outside');
    });

    it('lists a prefix with values, keys_only, count_only and sort', async () => {
      const all = await v1.get('/v1/kv/list/?list');
      assert.equal(all.body.count, 25);
      assert.equal(all.body.more, false);
      assert.equal(all.body.continue, undefined);
      assert.deepEqual(all.body.kvs.map((kv: { key: string }) => kv.key), Array.from({ length: 25 }, (_, i) => `list/k${String(i).padStart(2, '0')}`));
      assert.equal(all.body.kvs[3].value, 'v3');
      assert.equal(all.headers['x-etcd-revision'], String(all.body.revision));
      const keysOnly = await v1.get('/v1/kv/list/?list&keys_only');
      assert.equal(keysOnly.body.kvs[0].value, undefined);
      assert.deepEqual(await v1.get('/v1/kv/list/?list&count_only=true').then((a) => a.body), { revision: all.body.revision, count: 25 });
      const desc = await v1.get('/v1/kv/list/?list&sort=key:desc&limit=2');
      assert.deepEqual(desc.body.kvs.map((kv: { key: string }) => kv.key), ['list/k24', 'list/k23']);
      const byMod = await v1.get('/v1/kv/list/?list&sort=mod:desc&limit=1');
      assert.equal(byMod.body.kvs[0].key, 'list/k24');
      assert.equal(byMod.body.more, true);
      assert.equal(byMod.body.continue, undefined, 'pages continue only in key order');
      const everything = await v1.get('/v1/kv/?list&keys_only');
      assert.ok(everything.body.kvs.some((kv: { key: string }) => kv.key === 'lisz'));
    });

    it('pages through one revision with continue tokens, in both key orders', async () => {
      for (const order of ['key', 'key:desc']) {
        const seen: string[] = [];
        let target = `/v1/kv/list/?list&limit=7&sort=${order}`;
        let revision: number | undefined;
        let pages = 0;
        for (;;) {
          const page = await v1.get(target);
          assert.equal(page.status, 200, page.text);
          revision ??= page.body.revision;
          assert.equal(page.body.revision, revision);
          seen.push(...page.body.kvs.map((kv: { key: string }) => kv.key));
          pages++;
          // A write between pages is not seen: the pages are the snapshot of the first revision.
          await v1.put(`/v1/kv/list/k${pages}x`, 'new');
          if (!page.body.more) break;
          target = `/v1/kv/list/?list&limit=7&sort=${order}&continue=${encodeURIComponent(page.body.continue)}`;
        }
        assert.equal(pages, 4);
        const expected = Array.from({ length: 25 }, (_, i) => `list/k${String(i).padStart(2, '0')}`);
        assert.deepEqual(seen, order === 'key' ? expected : expected.reverse());
        await v1.del('/v1/kv/list/k?prefix');
        for (let i = 0; i < 25; i++) await v1.put(`/v1/kv/list/k${String(i).padStart(2, '0')}`, `v${i}`);
      }
    });

    it('refuses a token with another prefix, other options or a bad form (400), and a compacted one (410)', async () => {
      const page = await v1.get('/v1/kv/list/?list&limit=5');
      const token = encodeURIComponent(page.body.continue);
      assertProblem(await v1.get(`/v1/kv/lis/?list&limit=5&continue=${token}`), 400, /another prefix/);
      assertProblem(await v1.get(`/v1/kv/list/?list&keys_only&continue=${token}`), 400, /other options/);
      assertProblem(await v1.get(`/v1/kv/list/?list&continue=garbage`), 400, /not a continue token/);
      assertProblem(await v1.get(`/v1/kv/list/?list&revision=1&continue=${token}`), 400, /differs from the continue token/);
      // The limit may change from page to page.
      assert.equal((await v1.get(`/v1/kv/list/?list&limit=50&continue=${token}`)).body.kvs.length, 20);
      const now = await v1.put('/v1/kv/list/compact', 'x');
      await gw.post('/v3/kv/compaction', { revision: String(now.body.revision) });
      const gone = await v1.get(`/v1/kv/list/?list&limit=5&continue=${token}`);
      assertProblem(gone, 410, /continue: revision \d+ has been compacted/);
      assert.equal(gone.body.compact_revision, now.body.revision);
      await v1.del('/v1/kv/list/compact');
    });

    it('bounds limit and checks sort', async () => {
      assertProblem(await v1.get('/v1/kv/list/?list&limit=0'), 400, /limit/);
      assertProblem(await v1.get('/v1/kv/list/?list&limit=10001'), 400, /limit: must be a decimal integer from 1 to 10000/);
      assertProblem(await v1.get('/v1/kv/list/?list&sort=size'), 400, /query parameter sort/);
      assertProblem(await v1.get('/v1/kv/list/k01?limit=3'), 400, /limit: only with \?list/);
    });
  });

  describe('query flags and routes', () => {
    it('takes a flag present, empty or true as on, false as off, and anything else as a 400', async () => {
      await v1.put('/v1/kv/flags/a', 'x');
      for (const on of ['list', 'list=', 'list=true']) assert.equal((await v1.get(`/v1/kv/flags/?${on}`)).body.count, 1, on);
      assertProblem(await v1.get('/v1/kv/flags/?list=false'), 404, /not found/);
      for (const bad of ['list=1', 'list=yes', 'list&keys_only=TRUE', 'list&count_only=on', 'serializable=0', 'wait=no']) {
        const name = bad.split('&').pop()!.split('=')[0];
        assertProblem(await v1.get(`/v1/kv/flags/a?${bad}`), 400, new RegExp(`query parameter ${name}: must be empty, true or false`));
      }
      assertProblem(await v1.put('/v1/kv/flags/a?prev=no', 'x'), 400, /query parameter prev: must be empty, true or false/);
      assertProblem(await v1.del('/v1/kv/flags/?prefix=1'), 400, /query parameter prefix: must be empty, true or false/);
      assertProblem(await v1.get('/v1/kv/flags/a?prev'), 400, /query parameter "prev": unknown for V1_KvGet/);
    });

    it('refuses an empty key, a bad percent escape, an unknown route and a wrong method', async () => {
      assertProblem(await v1.get('/v1/kv/'), 400, /key is empty/);
      assertProblem(await v1.put('/v1/kv/', 'x'), 400, /key is empty/);
      assertProblem(await v1.get('/v1/kv/a%zz'), 400, /path parameter key: "%" must be followed by two hex digits/);
      assertProblem(await v1.get('/v1/nothing', { unchecked: true }), 404, /no such route/);
      const wrong = await v1.send('PATCH', '/v1/kv/a');
      assertProblem(wrong, 405, /PATCH/);
      assert.equal(wrong.headers.allow, 'GET, PUT, DELETE');
    });
  });

  describe('?wait', () => {
    it('answers at once when the key changed after `after`, with the current value', async () => {
      const first = await v1.put('/v1/kv/wait/a', 'one');
      await v1.put('/v1/kv/wait/a', 'two');
      const answer = await v1.get(`/v1/kv/wait/a?wait&after=${first.body.revision}&timeout=30s`);
      assert.equal(answer.text, 'two');
    });

    it('holds the request until a change, for a key and for a prefix', async () => {
      const now = await v1.put('/v1/kv/wait/b', 'one');
      const waiting = v1.get(`/v1/kv/wait/b?wait&after=${now.body.revision}&timeout=60s`);
      const waitingList = v1.get(`/v1/kv/wait/?list&wait&after=${now.body.revision}&timeout=60s`);
      // Nothing has happened yet: both are still waiting after another key's write.
      await v1.put('/v1/kv/elsewhere', 'x');
      const changed = await v1.put('/v1/kv/wait/b', 'two');
      const answer = await waiting;
      assert.equal(answer.status, 200);
      assert.equal(answer.text, 'two');
      assert.ok(Number(answer.headers['x-etcd-revision']) >= changed.body.revision);
      const list = await waitingList;
      assert.ok(list.body.kvs.some((kv: { key: string; value: string }) => kv.key === 'wait/b' && kv.value === 'two'));
    });

    it('answers 304 when the timeout passes, and 410 when `after` was compacted', async () => {
      await v1.put('/v1/kv/wait/c', 'x');
      const current = Number((await v1.get('/v1/kv/wait/c')).headers['x-etcd-revision']);
      const quiet = await v1.get(`/v1/kv/wait/c?wait&after=${current}&timeout=300ms`);
      assert.equal(quiet.status, 304);
      assert.equal(quiet.raw.length, 0);
      const now = await v1.put('/v1/kv/wait/c', 'y');
      await gw.post('/v3/kv/compaction', { revision: String(now.body.revision) });
      const gone = await v1.get('/v1/kv/wait/c?wait&after=1&timeout=5s');
      assertProblem(gone, 410, /after: revision 1 has been compacted/);
      assertProblem(await v1.get('/v1/kv/wait/c?wait&timeout=10m'), 400, /timeout: must be a duration/);
      assertProblem(await v1.get('/v1/kv/wait/c?after=3'), 400, /after: only with \?wait/);
      assert.equal(gw.gateway.hub.stats().watches, 0, 'every ?wait watch is gone');
    });
  });
});

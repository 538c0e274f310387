// Same store, two APIs: a seeded random sequence of writes, each sent once through this gateway's
// /v1/ API (to one etcd) and once as the equivalent /v3/ call to etcd's own gateway (on a second
// etcd). Every step must agree (the same revision, a 412 exactly where the txn failed, a 404 exactly
// where nothing was deleted), and at the end both stores hold the same keys, values, versions,
// revisions and leases (matched by grant order, as each etcd draws its own IDs).
//
// V1_DIFF_OPS (default 2,000) sets the length and V1_DIFF_SEED the seed, printed for reproduction.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { send, startDifferentialPair, type GatewayFixture } from '../support/gateway';
import { keyPath, v1Client, type V1Answer } from '../support/v1';
import { Rng } from '../support/fuzz';
import type { TestEtcd } from '../support/etcd';

const OPS = Number(process.env.V1_DIFF_OPS ?? 2_000);
const SEED = Number(process.env.V1_DIFF_SEED ?? Math.floor(Math.random() * 2 ** 31));

interface StoredKv {
  key: string;
  value: string;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

describe('/v1/ and /v3/ on two etcds: same operations, same store', () => {
  let reference: TestEtcd;
  let gw: GatewayFixture;
  let close: () => Promise<void>;
  before(async () => {
    ({ reference, gw, close } = await startDifferentialPair());
  });
  after(() => close());

  it(`stays identical through ${OPS.toLocaleString('en-US')} random operations`, { timeout: 900_000 }, async (t) => {
    t.diagnostic(`seed ${SEED}: reproduce with V1_DIFF_SEED=${SEED} V1_DIFF_OPS=${OPS}`);
    const rng = new Rng(SEED);
    const v1 = v1Client(gw.url);
    const v3 = async (path: string, body: object): Promise<any> => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const answer = await send(reference.clientUrl, path, body);
      assert.equal(answer.status, 200, `${path} ${JSON.stringify(body)}: ${answer.text}`);
      return answer.body;
    };
    const keys: Buffer[] = [];
    for (let i = 0; i < 12; i++) keys.push(Buffer.from(`d/k${i}`));
    for (let i = 0; i < 4; i++) keys.push(Buffer.from([0x64, 0x2f, 0xff, 0x00, i]));
    keys.push(Buffer.from('d/sub/a'), Buffer.from('d/sub/b'), Buffer.from('d/sub/c/deep'), Buffer.from('e/other'));
    const value = (): Buffer => {
      const kind = rng.int(4);
      if (kind === 0) return Buffer.alloc(0);
      if (kind === 1) return rng.bytes(rng.between(1, 40));
      return Buffer.from(`value ${rng.int(1e6)} ${'x'.repeat(rng.int(30))}`);
    };
    /** Lease IDs by grant order: [ours, etcd's]. */
    const leases: Array<[string, string]> = [];
    const b64 = (b: Buffer): string => b.toString('base64');
    const revisionOf = (a: V1Answer): number => Number(a.headers['x-etcd-revision']);
    const same = (ours: number, theirs: unknown, what: string): void => assert.equal(String(ours), String(theirs), `step ${what}: revisions differ`);

    for (let step = 0; step < OPS; step++) {
      const key = rng.pick(keys);
      const path = `/v1/kv/${keyPath(key)}`;
      const op = rng.weighted({ put: 6, create: 1, cas: 2, stale: 1, ifExists: 1, del: 2, casDel: 1, prefix: 0.3, ttl: 0.6, lease: 0.6, revoke: 0.3, prev: 0.6 });
      const what = `${step} ${op} ${JSON.stringify(key.toString('latin1'))}`;
      switch (op) {
        case 'put':
        case 'prev': {
          const v = value();
          const prev = op === 'prev';
          const ours = await v1.put(`${path}${prev ? '?prev' : ''}`, v);
          const theirs = await v3('/v3/kv/put', { key: b64(key), value: b64(v), prev_kv: true });
          assert.equal(ours.status, theirs.prev_kv ? 200 : 201, what);
          same(ours.body.revision, theirs.header.revision, what);
          if (prev && theirs.prev_kv) {
            const p = ours.body.prev;
            const ourPrev = p.value !== undefined ? Buffer.from(p.value) : Buffer.from(p.value_base64, 'base64');
            assert.deepEqual(ourPrev, Buffer.from(theirs.prev_kv.value ?? '', 'base64'), what);
            assert.equal(String(p.mod_revision), theirs.prev_kv.mod_revision, what);
          }
          break;
        }
        case 'create':
        case 'ifExists': {
          const v = value();
          const header: Record<string, string> = op === 'create' ? { 'if-none-match': '*' } : { 'if-match': '*' };
          const ours = await v1.put(path, v, { headers: header });
          const compare = [{ key: b64(key), target: 'VERSION', result: op === 'create' ? 'EQUAL' : 'GREATER', version: '0' }];
          const theirs = await v3('/v3/kv/txn', { compare, success: [{ request_put: { key: b64(key), value: b64(v) } }] });
          assert.equal(ours.status, theirs.succeeded ? (op === 'create' ? 201 : 200) : 412, what);
          if (theirs.succeeded) same(ours.body.revision, theirs.header.revision, what);
          break;
        }
        case 'cas':
        case 'stale':
        case 'casDel': {
          const current = await v1.get(path);
          const mod = current.status === 200 ? Number(current.headers['x-etcd-mod-revision']) : 0;
          const sent = op === 'stale' ? Math.max(1, mod - 1 - rng.int(3)) : mod || 1;
          const v = value();
          const compare = [{ key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: String(sent) }];
          if (op === 'casDel') {
            const ours = await v1.del(path, { headers: { 'if-match': `"${sent}"` } });
            const theirs = await v3('/v3/kv/txn', { compare, success: [{ request_delete_range: { key: b64(key) } }] });
            assert.equal(ours.status, theirs.succeeded ? 204 : 412, what);
            if (theirs.succeeded) same(revisionOf(ours), theirs.header.revision, what);
          } else {
            const ours = await v1.put(path, v, { headers: { 'if-match': `"${sent}"` } });
            const theirs = await v3('/v3/kv/txn', { compare, success: [{ request_put: { key: b64(key), value: b64(v) } }] });
            assert.equal(ours.status, theirs.succeeded ? 200 : 412, what);
            if (theirs.succeeded) same(ours.body.revision, theirs.header.revision, what);
          }
          break;
        }
        case 'del': {
          const ours = await v1.del(path);
          const theirs = await v3('/v3/kv/deleterange', { key: b64(key) });
          assert.equal(ours.status, theirs.deleted ? 204 : 404, what);
          same(revisionOf(ours), theirs.header.revision, what);
          break;
        }
        case 'prefix': {
          const prefix = rng.pick([Buffer.from('d/sub/'), Buffer.from('d/k1'), Buffer.from([0x64, 0x2f, 0xff])]);
          // The prefixes end in a byte below 0xff or are cut before it: their range end is one byte up.
          const cut = prefix[prefix.length - 1] === 0xff ? prefix.subarray(0, prefix.length - 1) : prefix;
          const end = Buffer.from(cut);
          end[end.length - 1]++;
          const ours = await v1.del(`/v1/kv/${keyPath(prefix)}?prefix`);
          const theirs = await v3('/v3/kv/deleterange', { key: b64(prefix), range_end: b64(end) });
          assert.equal(ours.body.deleted, Number(theirs.deleted ?? 0), what);
          same(ours.body.revision, theirs.header.revision, what);
          break;
        }
        case 'ttl': {
          const v = value();
          const ours = await v1.put(`${path}?ttl=600`, v);
          const grant = await v3('/v3/lease/grant', { TTL: '600' });
          const theirs = await v3('/v3/kv/put', { key: b64(key), value: b64(v), lease: grant.ID });
          leases.push([ours.body.lease, grant.ID]);
          same(ours.body.revision, theirs.header.revision, what);
          break;
        }
        case 'lease': {
          if (leases.length === 0) break;
          const [ourId, theirId] = rng.pick(leases);
          const v = value();
          const ours = await v1.put(`${path}?lease=${ourId}`, v);
          const theirs = await send(reference.clientUrl, '/v3/kv/put', { key: b64(key), value: b64(v), lease: theirId });
          if (theirs.status !== 200) {
            // A revoked lease: refused alike, nothing written.
            assert.equal(ours.status, 404, `${what}: ${ours.text}`);
            break;
          }
          same(ours.body.revision, theirs.body.header.revision, what);
          break;
        }
        case 'revoke': {
          if (leases.length === 0) break;
          const [ourId, theirId] = rng.pick(leases);
          const ours = await v1.del(`/v1/leases/${ourId}`);
          const theirs = await send(reference.clientUrl, '/v3/lease/revoke', { ID: theirId });
          assert.equal(ours.status, theirs.status === 200 ? 204 : 404, what);
          break;
        }
      }
    }

    const dump = async (base: string): Promise<StoredKv[]> => {
      const answer = await send(base, '/v3/kv/range', { key: 'AA==', range_end: 'AA==' });
      return (answer.body.kvs ?? []).map((kv: Partial<StoredKv>) => ({
        key: kv.key ?? '',
        value: kv.value ?? '',
        create_revision: kv.create_revision ?? '0',
        mod_revision: kv.mod_revision ?? '0',
        version: kv.version ?? '0',
        lease: kv.lease ?? '0',
      }));
    };
    const ourIdOf = new Map(leases.map(([ours, theirs]) => [theirs, ours]));
    const ours = await dump(gw.etcd.clientUrl);
    const theirs = (await dump(reference.clientUrl)).map((kv) => ({ ...kv, lease: kv.lease === '0' ? '0' : (ourIdOf.get(kv.lease) ?? `unknown ${kv.lease}`) }));
    assert.ok(ours.length > 0, 'the sequence left keys to compare');
    assert.deepEqual(ours, theirs);
    t.diagnostic(`${ours.length} keys compared, ${leases.length} leases granted`);
  });
});

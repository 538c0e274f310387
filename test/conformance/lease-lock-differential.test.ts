// Differential tests for everything besides KV and watch: the same request sequences go to etcd's own
// gateway on one fresh etcd and to this gateway on another. Revisions line up because both stores see
// the same writes, so answers must be identical (field order included) apart from what legitimately
// differs between two etcds: cluster and member identity, URLs, lease IDs etcd picked, the countdown
// of a TTL, raft indexes, database sizes and hashes. Those are masked, and only those.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64, send } from '../support/gateway';
import { Differential, lines, type Normalize, type Side, type SideInfo } from '../support/differential';
import { replaceFields } from '../support/masking';

/** A lease TTL counts down in whole seconds, so two etcds may be a second apart: check it is in range
 *  and mask it. */
function maskCountdown(value: any): unknown { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (value && typeof value.TTL === 'string' && typeof value.grantedTTL === 'string') {
    const ttl = Number(value.TTL);
    const granted = Number(value.grantedTTL);
    assert.ok(ttl > granted - 3 && ttl <= granted, `TTL ${value.TTL} of a lease granted ${value.grantedTTL} s`);
    return { ...value, TTL: '<countdown>' };
  }
  return value;
}

/** Lease lists and lease key lists come in map order: sort them. */
function sortLeases(value: any): unknown { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (!value || !Array.isArray(value.leases)) return value;
  return { ...value, leases: [...value.leases].sort((a, b) => String(a.ID).localeCompare(String(b.ID))) };
}
function sortKeys(value: any): unknown { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (!value || !Array.isArray(value.keys)) return value;
  return { ...value, keys: [...value.keys].sort() };
}

describe('lease, cluster, maintenance, auth, lock and election answers are identical to etcd gateway answers', () => {
  let d: Differential;
  before(async () => {
    d = await Differential.start();
  });
  after(() => d?.close());

  const same = (path: string, body: Parameters<Differential['same']>[1], normalize?: Normalize) => d.same(path, body, { normalize });
  const both = (path: string, body: Parameters<Differential['both']>[1]) => d.both(path, body);

  it('lease grant: TTL, explicit ID, duplicate ID 412, {} gets TTL 2, too large TTL, negative ID', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 1000 });
    await same('/v3/lease/grant', { TTL: 60, ID: 1000 });
    await same('/v3/lease/grant', { TTL: 30, ID: 1000 });
    await same('/v3/lease/grant', { TTL: '30', ID: '1001' });
    await same('/v3/lease/grant', { TTL: 1, ID: 1002 });
    await same('/v3/lease/grant', { TTL: -5, ID: 1003 });
    await same('/v3/lease/grant', { TTL: 9000000001, ID: 1004 });
    await same('/v3/lease/grant', { TTL: '9000000000', ID: 1005 });
    await same('/v3/lease/grant', { TTL: 60, ID: -7 });
    await same('/v3/lease/grant', { TTL: 60, ID: '-7' });
    await same('/v3/lease/grant', '{"TTL": 60, "ID": 9223372036854775807}');
    await same('/v3/lease/grant', { TTL: 60, ID: '9223372036854775807' });
    await same('/v3beta/lease/grant', { TTL: 60, ID: 1006 });

    // etcd picks the ID: masked, then revoked so that later lease lists compare exactly.
    const picked = {} as Record<Side, string>;
    const { theirs, ours } = await same('/v3/lease/grant', {}, (v, s) => {
      picked[s.side] = v.ID;
      return { ...v, ID: '<picked by etcd>' };
    });
    for (const a of [theirs, ours]) {
      assert.equal(a.body.TTL, '2');
      assert.match(a.body.ID, /^[1-9][0-9]*$/);
    }
    await same('/v3/lease/revoke', (s) => ({ ID: picked[s.side] }));
  });

  it('lease revoke: deletes the keys (a new revision), missing 404, {} 404, also under /v3/kv/lease/', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 2001 });
    await same('/v3/kv/put', { key: b64('lr/a'), value: b64('1'), lease: 2001 });
    await same('/v3/kv/put', { key: b64('lr/b'), value: b64('2'), lease: '2001' });
    await same('/v3/kv/range', { key: b64('lr/'), range_end: b64('lr0') });
    await same('/v3/lease/revoke', { ID: 2001 });
    await same('/v3/kv/range', { key: b64('lr/'), range_end: b64('lr0') });
    await same('/v3/lease/revoke', { ID: 2001 });
    await same('/v3/lease/timetolive', { ID: 2001 });
    await same('/v3/lease/grant', { TTL: 60, ID: 2002 });
    await same('/v3/kv/lease/revoke', { ID: '2002' });
    await same('/v3/kv/lease/revoke', { ID: 2002 });
    await same('/v3/lease/revoke', {});
    await same('/v3/lease/revoke', { ID: -123 });
  });

  it('lease timetolive: keys (in any order), a missing lease is TTL -1 with 200, {}, also under /v3/kv/lease/', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 3001 });
    for (const k of ['tl/c', 'tl/a', 'tl/b']) await same('/v3/kv/put', { key: b64(k), value: b64(k), lease: 3001 });
    const normalize: Normalize = (v) => maskCountdown(sortKeys(v));
    await same('/v3/lease/timetolive', { ID: 3001, keys: true }, normalize);
    await same('/v3/lease/timetolive', { ID: '3001' }, normalize);
    await same('/v3/lease/timetolive', { ID: 3001, keys: false }, normalize);
    await same('/v3/kv/lease/timetolive', { ID: 3001, keys: true }, normalize);
    await same('/v3/lease/timetolive', { ID: 999999 });
    await same('/v3/lease/timetolive', { ID: 999999, keys: true });
    await same('/v3/lease/timetolive', {});
    await same('/v3/lease/grant', { TTL: 60, ID: 3002 });
    await same('/v3/lease/timetolive', { ID: 3002, keys: true }, normalize);
  });

  it('lease leases: the same set of leases (their order is unspecified)', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 3501 });
    const { ours } = await same('/v3/lease/leases', {}, sortLeases);
    assert.ok(ours.body.leases.some((l: { ID: string }) => l.ID === '3501'), ours.text);
    await same('/v3/kv/lease/leases', {}, sortLeases);
    await same('/v3/lease/revoke', { ID: 3501 });
    await same('/v3/lease/leases', {}, sortLeases);
  });

  it('lease keepalive over HTTP: one answer line per ID in the body (unknown, 0, {}, negative); an empty body', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 4001 });
    await same('/v3/lease/grant', { TTL: 30, ID: -4002 });
    const { ours } = await same('/v3/lease/keepalive', '{"ID":4001}{"ID":"4001"}\n{"ID":424242}{"ID":0}\n{"ID":-4002}{}');
    assert.equal(lines(ours).length, 6);
    assert.match(ours.headers.get('content-type') ?? '', /^application\/json/);
    await same('/v3/lease/keepalive', '{"ID": 4001}');
    // Other spellings of an ID: each is renewed and answered under its canonical form.
    await same('/v3/lease/grant', '{"TTL": 60, "ID": 1234567890123456789}');
    await same('/v3/lease/keepalive', '{"ID":" 4001"}{"ID":"-0"}{"ID":null}{"ID":1234567890123456789}{"ID":"1234567890123456789"}');
    await same('/v3/lease/revoke', { ID: '1234567890123456789' });
    await same('/v3/lease/revoke', { ID: 4001 });
    await same('/v3/lease/keepalive', '{"ID": 4001}');
    const empty = await both('/v3/lease/keepalive', '');
    assert.equal(empty.theirs.text, '');
    assert.equal(empty.ours.text, '');
  });

  it('lease keepalive: a malformed body (etcd: 500 code 2; this gateway: 400 code 3, the whole body refused)', async () => {
    const refused = (message: string) => ({ error: message, message, code: 3 });
    const goError = (message: string) => ({ error: message, message, code: 2 });

    let theirs = await send(d.reference.clientUrl, '/v3/lease/keepalive', '{bad');
    let ours = await d.gw.post('/v3/lease/keepalive', '{bad');
    assert.equal(theirs.status, 500);
    assert.deepEqual(theirs.body, goError("invalid character 'b' looking for beginning of object key string"));
    assert.equal(ours.status, 400);
    assert.equal(ours.text, JSON.stringify(refused("request body is not valid JSON: unexpected character 'b' at offset 1")));

    // etcd answers the good request before the bad one and stops; this gateway refuses the body.
    await same('/v3/lease/grant', { TTL: 60, ID: 4003 });
    theirs = await send(d.reference.clientUrl, '/v3/lease/keepalive', '{"ID":4003}{bad');
    ours = await d.gw.post('/v3/lease/keepalive', '{"ID":4003}{bad');
    assert.equal(theirs.status, 200);
    assert.equal(lines(theirs).length, 1);
    assert.equal(ours.status, 400);
    assert.equal(ours.text, JSON.stringify(refused("request body is not valid JSON: unexpected character 'b' at offset 12")));

    ours = await d.gw.post('/v3/lease/keepalive', '{"ID":"x"}');
    assert.equal(ours.status, 400);
    assert.equal(ours.body.code, 3);
    assert.match(ours.body.message, /ID/);
  });

  it('cluster member list: the one member, with no revision in the header', async () => {
    const { ours } = await same('/v3/cluster/member/list', {});
    assert.equal(ours.body.header.revision, undefined);
    assert.deepEqual(ours.body.members[0].clientURLs, [d.gw.etcd.clientUrl]);
    assert.equal(ours.body.members[0].ID, d.sides.ours.memberId);
  });

  it('maintenance status: the same fields in the same order; raft indexes and db sizes are per store', async () => {
    const perStore = ['raftIndex', 'raftAppliedIndex', 'dbSize', 'dbSizeInUse'];
    const { theirs, ours } = await same('/v3/maintenance/status', {}, (v) => replaceFields(v, perStore, '<per store>'));
    for (const a of [theirs, ours]) {
      for (const f of perStore) assert.match(a.body[f], /^[1-9][0-9]*$/, `${f} in ${a.text}`);
      assert.equal(a.body.version, '3.4.23');
    }
    assert.equal(ours.body.leader, d.sides.ours.memberId);
  });

  it('maintenance alarm: none; NOSPACE activated refuses writes with 429 while reads work; deactivated', async () => {
    const alarm = (action: string) => (s: SideInfo) => ({ action, memberID: s.memberId, alarm: 'NOSPACE' });
    try {
      await same('/v3/maintenance/alarm', {});
      await same('/v3/maintenance/alarm', { action: 'GET' });
      await same('/v3/kv/put', { key: b64('al/k'), value: b64('before') });
      await same('/v3/maintenance/alarm', alarm('ACTIVATE'));
      await same('/v3/maintenance/alarm', { action: 'GET' });
      await same('/v3/maintenance/alarm', { action: 0 });
      await same('/v3/kv/put', { key: b64('al/k'), value: b64('during') });
      await same('/v3/lease/grant', { TTL: 60, ID: 5001 });
      await same('/v3/kv/range', { key: b64('al/k') });
      await same('/v3/maintenance/status', {}, (v) => replaceFields(v, ['raftIndex', 'raftAppliedIndex', 'dbSize', 'dbSizeInUse'], '<per store>'));
      await same('/v3/maintenance/alarm', alarm('DEACTIVATE'));
      await same('/v3/maintenance/alarm', alarm('DEACTIVATE'));
      await same('/v3/maintenance/alarm', { action: 'GET' });
      await same('/v3/kv/put', { key: b64('al/k'), value: b64('after') });
      await same('/v3/kv/range', { key: b64('al/k') });
    } finally {
      for (const s of [d.sides.etcd, d.sides.ours]) await d.call(s, '/v3/maintenance/alarm', alarm('DEACTIVATE'));
    }
  });

  it('maintenance hash (a number, different per store) and defragment {}', async () => {
    const { theirs, ours } = await same('/v3/maintenance/hash', {}, (v) => replaceFields(v, ['hash'], '<per store>'));
    for (const a of [theirs, ours]) {
      assert.equal(typeof a.body.hash, 'number', a.text);
      assert.ok(Number.isInteger(a.body.hash) && a.body.hash >= 0 && a.body.hash < 2 ** 32, a.text);
    }
    const defrag = await same('/v3/maintenance/defragment', {});
    assert.equal(defrag.ours.text, '{}');
  });

  it('maintenance transfer-leadership on a single member: bad leader transferee 412', async () => {
    await same('/v3/maintenance/transfer-leadership', { targetID: 1 });
    await same('/v3/maintenance/transfer-leadership', { targetID: '12144326217890930998' });
    await same('/v3/maintenance/transfer-leadership', {});
  });

  it('auth users and roles with auth off: add, duplicates 412, get, list, grant, revoke, changepw, delete; authenticate 412', async () => {
    const steps: Array<[string, object]> = [
      ['/v3/auth/enable', {}],
      ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
      ['/v3/auth/enable', {}],
      ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
      ['/v3/auth/user/add', { name: '', password: 'x' }],
      ['/v3/auth/user/add', { name: 'bob' }],
      ['/v3/auth/user/add', { name: 'nopw', options: { no_password: true } }],
      ['/v3/auth/role/add', { name: 'reader' }],
      ['/v3/auth/role/add', { name: 'reader' }],
      ['/v3/auth/role/add', { name: '' }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 'READ', key: b64('pub/'), range_end: b64('pub0') } }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 'READWRITE', key: b64('rw/'), range_end: b64('rw0') } }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 'WRITE', key: b64('w1') } }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 2, key: b64('w2') } }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { key: b64('w3') } }],
      ['/v3/auth/role/grant', { name: 'nosuch', perm: { permType: 'READ', key: b64('x') } }],
      ['/v3/auth/role/get', { role: 'reader' }],
      ['/v3/auth/role/get', { role: 'nosuch' }],
      ['/v3/auth/role/list', {}],
      ['/v3/auth/role/revoke', { role: 'reader', key: b64('w2') }],
      ['/v3/auth/role/revoke', { role: 'reader', key: b64('w2') }],
      ['/v3/auth/role/revoke', { role: 'reader', key: b64('pub/'), range_end: b64('pub0') }],
      ['/v3/auth/role/get', { role: 'reader' }],
      ['/v3/auth/user/grant', { user: 'bob', role: 'reader' }],
      ['/v3/auth/user/grant', { user: 'bob', role: 'reader' }],
      ['/v3/auth/user/grant', { user: 'bob', role: 'nosuch' }],
      ['/v3/auth/user/grant', { user: 'nosuch', role: 'reader' }],
      ['/v3/auth/user/get', { name: 'bob' }],
      ['/v3/auth/user/get', { name: 'root' }],
      ['/v3/auth/user/get', { name: 'nosuch' }],
      ['/v3/auth/user/list', {}],
      ['/v3/auth/user/revoke', { name: 'bob', role: 'reader' }],
      ['/v3/auth/user/revoke', { name: 'bob', role: 'reader' }],
      ['/v3/auth/user/changepw', { name: 'bob', password: 'bobpw2' }],
      ['/v3/auth/user/changepw', { name: 'nosuch', password: 'x' }],
      ['/v3/auth/user/delete', { name: 'bob' }],
      ['/v3/auth/user/delete', { name: 'bob' }],
      ['/v3/auth/user/list', {}],
      ['/v3/auth/role/delete', { role: 'reader' }],
      ['/v3/auth/role/delete', { role: 'reader' }],
      ['/v3/auth/role/list', {}],
      ['/v3/auth/authenticate', { name: 'root', password: 'rootpw' }],
      ['/v3/auth/authenticate', { name: 'root', password: 'wrong' }],
      ['/v3/auth/disable', {}],
    ];
    for (const [path, body] of steps) await same(path, body);
  });

  it('lock: a lease\'s key, re-entrant for the same lease, unlock, unlock of a key not held, an unknown lease 404 (etcd: 500)', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 7001 });
    const { ours } = await same('/v3/lock/lock', { name: b64('lk2'), lease: 7001 });
    assert.equal(Buffer.from(ours.body.key, 'base64').toString(), 'lk2/1b59');
    await same('/v3/lock/lock', { name: b64('lk2'), lease: '7001' });
    await same('/v3/kv/range', { key: b64('lk2/'), range_end: b64('lk20') });
    await same('/v3/lock/unlock', { key: b64('lk2/1b59') });
    await same('/v3/lock/unlock', { key: b64('lk2/1b59') });
    await same('/v3/kv/range', { key: b64('lk2/'), range_end: b64('lk20') });
    await same('/v3/lock/unlock', { key: b64('never/held') });
    await same('/v3/lock/unlock', {});
    await d.differs('/v3/lock/lock', { name: b64('lk3'), lease: 99999 }, { status: 404, code: 5 });
    await same('/v3/lock/lock', { lease: 7001 });
    await same('/v3/lock/unlock', { key: b64('/1b59') });
    await same('/v3/lease/revoke', { ID: 7001 });
  });

  it('lock and campaign without a lease: etcd grants a 60 s session lease of its own (its ID masked)', async () => {
    const session = {} as Record<Side, string>;
    const lockKeys = {} as Record<Side, string>;
    /** The key is `<name>/<session lease in hex>`: check it and mask the lease. */
    const sessionKey = (name: string, v: any, s: SideInfo) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const key = Buffer.from(v.key, 'base64').toString();
      assert.ok(key.startsWith(`${name}/`), key);
      session[s.side] = BigInt(`0x${key.slice(name.length + 1)}`).toString();
      return b64(`${name}/<session lease>`);
    };
    await same('/v3/lock/lock', { name: b64('lk-session') }, (v, s) => {
      lockKeys[s.side] = v.key;
      return { ...v, key: sessionKey('lk-session', v, s) };
    });
    await same('/v3/lease/timetolive', (s) => ({ ID: session[s.side] }), (v, s) => {
      assert.equal(v.grantedTTL, '60');
      return replaceFields(maskCountdown(v), ['ID'], v.ID === session[s.side] ? '<session lease>' : v.ID);
    });
    await same('/v3/lock/unlock', (s) => ({ key: lockKeys[s.side] }));
    await same('/v3/lease/revoke', (s) => ({ ID: session[s.side] }));

    const leaders = {} as Record<Side, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    await same('/v3/election/campaign', { name: b64('el-session'), value: b64('v') }, (v, s) => {
      leaders[s.side] = v.leader;
      const key = sessionKey('el-session', v.leader, s);
      assert.equal(v.leader.lease, session[s.side]);
      return { ...v, leader: { ...v.leader, key, lease: '<session lease>' } };
    });
    await same('/v3/election/resign', (s) => ({ leader: leaders[s.side] }));
    await same('/v3/lease/revoke', (s) => ({ ID: session[s.side] }));
  });

  it('election: no leader 404 (etcd: 500), campaign, leader, proclaim, proclaim by a wrong leader 412 (etcd: 500), resign twice, errors', async () => {
    await same('/v3/lease/grant', { TTL: 60, ID: 8001 });
    const name = b64('el1');
    await d.differs('/v3/election/leader', { name }, { status: 404, code: 5 });
    const leader = {} as Record<Side, unknown>;
    await same('/v3/election/campaign', { name, lease: 8001, value: b64('cand1') }, (v, s) => {
      leader[s.side] = v.leader;
      return v;
    });
    await same('/v3/election/leader', { name });
    await same('/v3/election/proclaim', (s) => ({ leader: leader[s.side], value: b64('cand1-v2') }));
    await same('/v3/election/leader', { name });
    await d.differs('/v3/election/proclaim', (s) => ({ leader: { ...(leader[s.side] as object), key: b64('el1/9999') }, value: b64('x') }), { status: 412, code: 9 });
    await d.differs('/v3/election/proclaim', { value: b64('x') }, { status: 400, code: 3 });
    await same('/v3/election/resign', (s) => ({ leader: leader[s.side] }));
    await same('/v3/election/resign', (s) => ({ leader: leader[s.side] }));
    await d.differs('/v3/election/resign', {}, { status: 400, code: 3 });
    await d.differs('/v3/election/leader', { name }, { status: 404, code: 5 });
    await d.differs('/v3/election/campaign', { name: b64('el2'), lease: 424242, value: b64('v') }, { status: 404, code: 5 });
    await same('/v3/lease/revoke', { ID: 8001 });
  });
});

// etcd auth through this gateway, compared with etcd's own gateway on a second etcd given the same
// requests: auth is enabled through each gateway (root user with the root role), then the token flow —
// no token, bad tokens, a valid token in `Authorization` or `Grpc-Metadata-Token`, for that request
// only; a user limited to a prefix; endpoints etcd serves without a token; a WebSocket whose upgrade
// carries the token (etcd's WebSocket proxy drops it, so etcd's HTTP watch is the reference); auth
// disabled again. Every answer must come within 2 s: a bad token is refused at once, never retried.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { b64 } from '../support/gateway';
import { Differential, type PerSide, type Side, type SideInfo } from '../support/differential';
import { httpStream, socket } from '../support/header-streams';
import { replaceFields } from '../support/masking';
import { within } from '../support/waiting';

const PROMPT_MS = 2000;
const TOKEN = /^[A-Za-z]{16}\.[0-9]+$/;
type Headers = PerSide<Record<string, string>>;
const perStore = (v: unknown): unknown => replaceFields(v, ['raftIndex', 'raftAppliedIndex', 'dbSize', 'dbSizeInUse'], '<per store>');

describe('etcd auth through the gateway is etcd gateway auth', () => {
  let d: Differential;
  /** Tokens per side: each etcd issues its own. */
  const rootToken = {} as Record<Side, string>;
  const aliceToken = {} as Record<Side, string>;
  const asRoot = (s: SideInfo) => ({ Authorization: rootToken[s.side] });
  const asAlice = (s: SideInfo) => ({ Authorization: aliceToken[s.side] });

  /** Authenticates on both sides; the answers are the same apart from the token. */
  async function authenticate(name: string, password: string, into: Record<Side, string>): Promise<void> {
    const { theirs, ours } = await d.same('/v3/auth/authenticate', { name, password }, { normalize: (v) => replaceFields(v, ['token'], '<token>') });
    assert.equal(ours.status, 200, ours.text);
    for (const [side, a] of [['etcd', theirs], ['ours', ours]] as const) {
      assert.match(a.body.token, TOKEN);
      into[side] = a.body.token;
    }
  }

  before(async () => {
    d = await Differential.start({ maxMs: PROMPT_MS });
    const steps: Array<[string, object]> = [
      ['/v3/auth/enable', {}],
      ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
      ['/v3/auth/enable', {}],
      ['/v3/auth/role/add', { name: 'root' }],
      ['/v3/auth/user/grant', { user: 'root', role: 'root' }],
      ['/v3/auth/user/add', { name: 'alice', password: 'alicepw' }],
      ['/v3/auth/role/add', { name: 'reader' }],
      ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 'READ', key: b64('pub/'), range_end: b64('pub0') } }],
      ['/v3/auth/user/grant', { user: 'alice', role: 'reader' }],
      ['/v3/kv/put', { key: b64('pub/x'), value: b64('public') }],
      ['/v3/kv/put', { key: b64('foo'), value: b64('secret') }],
      ['/v3/auth/enable', {}],
      ['/v3/auth/enable', {}],
    ];
    for (const [path, body] of steps) await d.same(path, body);
    await authenticate('root', 'rootpw', rootToken);
    await authenticate('alice', 'alicepw', aliceToken);
  });
  after(() => d?.close());

  it('without a token: 400 user name is empty', async () => {
    for (const [path, body] of [
      ['/v3/kv/range', { key: b64('foo') }],
      ['/v3/kv/range', { key: b64('pub/x') }],
      ['/v3/kv/put', { key: b64('foo'), value: b64('x') }],
      ['/v3/kv/deleterange', { key: b64('foo') }],
      ['/v3/kv/txn', { success: [{ request_range: { key: b64('foo') } }] }],
      ['/v3/auth/user/list', {}],
      ['/v3/auth/role/get', { role: 'reader' }],
      ['/v3/auth/disable', {}],
    ] as const) {
      const { ours } = await d.same(path, body);
      assert.equal(ours.status, 400);
      assert.equal(ours.text, '{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}');
    }
  });

  it('a bad token, "Bearer <token>", an empty Authorization, a bad Grpc-Metadata-Token: 401 invalid auth token, promptly', async () => {
    const refusals: Headers[] = [
      { Authorization: 'bogus.token' },
      { Authorization: 'AAAAAAAAAAAAAAAA.1' },
      (s: SideInfo) => ({ Authorization: `Bearer ${rootToken[s.side]}` }),
      (s: SideInfo) => ({ Authorization: `${rootToken[s.side]}x` }),
      { Authorization: '' },
      { 'Grpc-Metadata-Token': 'bogus.token' },
    ];
    for (const headers of refusals) {
      for (const [path, body] of [
        ['/v3/kv/range', { key: b64('foo') }],
        ['/v3/kv/put', { key: b64('foo'), value: b64('x') }],
        ['/v3/auth/user/list', {}],
      ] as const) {
        const { ours } = await d.same(path, body, { headers });
        assert.equal(ours.status, 401);
        assert.equal(ours.text, '{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}');
      }
    }
  });

  it('a token from authenticate: range and put 200; a wrong password, an unknown user and {} are 400', async () => {
    await d.same('/v3/kv/range', { key: b64('foo') }, { headers: asRoot });
    await d.same('/v3/kv/put', { key: b64('foo'), value: b64('by root'), prev_kv: true }, { headers: asRoot });
    const { ours } = await d.same('/v3/kv/range', { key: b64('foo') }, { headers: asRoot });
    assert.equal(ours.status, 200);
    assert.equal(Buffer.from(ours.body.kvs[0].value, 'base64').toString(), 'by root');
    await d.same('/v3/auth/user/list', {}, { headers: asRoot });
    await d.same('/v3/auth/role/get', { role: 'reader' }, { headers: asRoot });
    for (const body of [{ name: 'root', password: 'wrong' }, { name: 'nobody', password: 'x' }, {}]) {
      const refused = await d.same('/v3/auth/authenticate', body);
      assert.equal(refused.ours.status, 400);
    }
  });

  it('Grpc-Metadata-Token and Grpc-Metadata-Authorization carry the token; a plain "token" header does not', async () => {
    const ok1 = await d.same('/v3/kv/range', { key: b64('foo') }, { headers: (s) => ({ 'Grpc-Metadata-Token': rootToken[s.side] }) });
    assert.equal(ok1.ours.status, 200);
    const ok2 = await d.same('/v3/kv/range', { key: b64('foo') }, { headers: (s) => ({ 'Grpc-Metadata-Authorization': rootToken[s.side] }) });
    assert.equal(ok2.ours.status, 200);
    const refused = await d.same('/v3/kv/range', { key: b64('foo') }, { headers: (s) => ({ token: rootToken[s.side] }) });
    assert.equal(refused.ours.status, 400);
  });

  it('the token applies to its own request only, also when requests with and without tokens interleave', async () => {
    await d.same('/v3/kv/put', { key: b64('foo'), value: b64('v2') }, { headers: asRoot });
    const after = await d.same('/v3/kv/range', { key: b64('foo') });
    assert.equal(after.ours.status, 400);
    const afterPut = await d.same('/v3/kv/put', { key: b64('foo'), value: b64('v3') });
    assert.equal(afterPut.ours.status, 400);

    // Concurrent requests on this gateway as root, as nobody and as alice: each is answered as its own caller.
    const ours = d.sides.ours;
    const kinds = [
      { headers: asRoot(ours), status: 200 },
      { headers: {}, status: 400 },
      { headers: asAlice(ours), status: 403 },
      { headers: { Authorization: 'bogus.token' }, status: 401 },
    ];
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const kind = kinds[i % kinds.length];
        return d.call(ours, '/v3/kv/range', { key: b64('foo') }, kind.headers).then((a) => ({ a, expected: kind.status }));
      }),
    );
    for (const { a, expected } of answers) assert.equal(a.status, expected, a.text);
  });

  it('a user with READ on pub/: reads there 200; reads elsewhere and every write 403', async () => {
    const expectations: Array<[string, object, number]> = [
      ['/v3/kv/range', { key: b64('pub/x') }, 200],
      ['/v3/kv/range', { key: b64('pub/'), range_end: b64('pub0') }, 200],
      ['/v3/kv/range', { key: b64('foo') }, 403],
      ['/v3/kv/range', { key: b64('pub/'), range_end: b64('pub1') }, 403],
      ['/v3/kv/put', { key: b64('pub/x'), value: b64('no') }, 403],
      ['/v3/kv/put', { key: b64('foo'), value: b64('no') }, 403],
      ['/v3/kv/deleterange', { key: b64('pub/x') }, 403],
      ['/v3/kv/txn', { success: [{ request_range: { key: b64('pub/x') } }] }, 200],
      ['/v3/kv/txn', { success: [{ request_put: { key: b64('pub/x'), value: b64('no') } }] }, 403],
      ['/v3/auth/user/list', {}, 403],
      ['/v3/auth/user/get', { name: 'alice' }, 200],
      ['/v3/auth/user/get', { name: 'root' }, 403],
      ['/v3/auth/role/get', { role: 'reader' }, 200],
    ];
    for (const [path, body, status] of expectations) {
      const { ours } = await d.same(path, body, { headers: asAlice });
      assert.equal(ours.status, status, `${path} ${JSON.stringify(body)}: ${ours.text}`);
    }
  });

  it('served without a token, as etcd serves them: leases, status, alarm, member list, compaction', async () => {
    await d.same('/v3/lease/grant', { TTL: 60, ID: 9001 });
    await d.same('/v3/lease/timetolive', { ID: 9001, keys: true });
    await d.same('/v3/lease/keepalive', '{"ID":9001}{"ID":9002}');
    await d.same('/v3/lease/keepalive', '{"ID":9001}', { headers: { Authorization: 'bogus.token' } });
    await d.same('/v3/lease/leases', {});
    await d.same('/v3/lease/revoke', { ID: 9001 });
    await d.same('/v3/maintenance/status', {}, { normalize: perStore });
    await d.same('/v3/maintenance/alarm', {});
    await d.same('/v3/cluster/member/list', {});
    await d.same('/v3/kv/compaction', { revision: 2 });
  });

  it('refused without a token with etcd\'s message: hash, defragment, lock, election (400 / code 3, as etcd\'s KV says it; etcd\'s gateway: 500 / code 2)', async () => {
    await d.same('/v3/lease/grant', { TTL: 60, ID: 9003 });
    for (const [path, body] of [
      ['/v3/maintenance/hash', {}],
      ['/v3/maintenance/defragment', {}],
      ['/v3/lock/lock', { name: b64('lk'), lease: 9003 }],
      ['/v3/election/leader', { name: b64('el') }],
      ['/v3/election/campaign', { name: b64('el'), lease: 9003, value: b64('v') }],
    ] as const) {
      await d.differs(path, body, { status: 400, code: 3 });
    }
    // With the token they work.
    const lock = await d.same('/v3/lock/lock', { name: b64('lk'), lease: 9003 }, { headers: asRoot });
    assert.equal(lock.ours.status, 200, lock.ours.text);
    await d.same('/v3/lock/unlock', { key: lock.ours.body.key }, { headers: asRoot });
    await d.same('/v3/lease/revoke', { ID: 9003 }, { headers: asRoot });
  });

  it('election observe without a token: 200 and an empty stream, as etcd', async () => {
    const { ours } = await d.same('/v3/election/observe', { name: b64('el') });
    assert.equal(ours.status, 200);
    assert.equal(ours.text, '');
  });

  it('a WebSocket watch runs as the token of its upgrade request; without one it gets the in-band refusal (as etcd\'s HTTP watch)', async () => {
    const create = (key: string) => JSON.stringify({ create_request: { key: b64(key) } });
    const cases: Array<{ what: string; headers: (s: SideInfo) => Record<string, string>; key: string; events: boolean }> = [
      { what: 'root token', headers: asRoot, key: 'foo', events: true },
      { what: 'no token', headers: () => ({}), key: 'foo', events: false },
      { what: 'bad token', headers: () => ({ Authorization: 'bogus.token' }), key: 'foo', events: false },
      { what: 'alice outside her prefix', headers: asAlice, key: 'foo', events: false },
      { what: 'alice in her prefix', headers: asAlice, key: 'pub/x', events: true },
      { what: 'root token as Grpc-Metadata-Token', headers: (s) => ({ 'Grpc-Metadata-Token': rootToken[s.side] }), key: 'foo', events: true },
    ];
    for (const c of cases) {
      const theirs = await within(PROMPT_MS, `etcd HTTP watch (${c.what})`, httpStream(d.sides.etcd.base, '/v3/watch', create(c.key), c.headers(d.sides.etcd)));
      const oursHttp = await within(PROMPT_MS, `HTTP watch (${c.what})`, httpStream(d.sides.ours.base, '/v3/watch', create(c.key), c.headers(d.sides.ours)));
      const oursWs = await within(PROMPT_MS, `WebSocket watch (${c.what})`, socket(d.gw.wsUrl, '/v3/watch', c.headers(d.sides.ours)));
      try {
        oursWs.send(create(c.key));
        const first = await Promise.all([theirs.take(1, PROMPT_MS), oursHttp.take(1, PROMPT_MS), oursWs.take(1, PROMPT_MS)]);
        assertSame(first[0], first[1], `${c.what}: HTTP watch`);
        assertSame(first[0], first[2], `${c.what}: WebSocket watch`);
        if (c.events) {
          assert.equal(first[0][0].result.created, true);
          assert.equal(first[0][0].result.canceled, undefined, JSON.stringify(first[0]));
          await d.same('/v3/kv/put', { key: b64(c.key), value: b64(`seen by ${c.what}`) }, { headers: asRoot });
          const two = await Promise.all([theirs.take(2, PROMPT_MS), oursHttp.take(2, PROMPT_MS), oursWs.take(2, PROMPT_MS)]);
          assertSame(two[0], two[1], `${c.what}: HTTP watch event`);
          assertSame(two[0], two[2], `${c.what}: WebSocket watch event`);
        } else {
          assert.equal(first[0][0].result.canceled, true, JSON.stringify(first[0]));
          assert.match(first[0][0].result.cancel_reason, /^rpc error: code = /);
        }
      } finally {
        theirs.close();
        oursHttp.close();
        oursWs.close();
      }
    }

    function assertSame(theirs: unknown, ours: unknown, what: string): void {
      const mask = (v: unknown, s: SideInfo) => JSON.parse(JSON.stringify(v).split(s.memberId).join('<member>'));
      const strip = (v: unknown) => JSON.parse(JSON.stringify(v), (k, x) => (k === 'cluster_id' || k === 'member_id' ? undefined : x));
      assert.equal(JSON.stringify(strip(mask(ours, d.sides.ours))), JSON.stringify(strip(mask(theirs, d.sides.etcd))), what);
    }
  });

  it('a WebSocket keepalive needs no token, as etcd\'s keepalive', async () => {
    await d.same('/v3/lease/grant', { TTL: 60, ID: 9004 });
    const ws = await socket(d.gw.wsUrl, '/v3/lease/keepalive');
    try {
      ws.send({ ID: 9004 });
      const [answer] = await ws.take(1, PROMPT_MS);
      assert.equal(answer.result.ID, '9004');
      assert.equal(answer.result.TTL, '60');
    } finally {
      ws.close();
    }
    await d.same('/v3/lease/revoke', { ID: 9004 });
  });

  it('a snapshot without a token or with a bad one: etcd\'s stream error envelope with etcd\'s message, 400 / 401 (etcd\'s gateway: 500)', async () => {
    const refusals: Array<[Headers, number, number]> = [[{}, 400, 3], [{ Authorization: 'bogus.token' }, 401, 16]];
    for (const [headers, status, code] of refusals) {
      const theirs = await d.call(d.sides.etcd, '/v3/maintenance/snapshot', {}, headers);
      const ours = await d.call(d.sides.ours, '/v3/maintenance/snapshot', {}, headers);
      assert.equal(theirs.status, 500);
      assert.equal(ours.status, status, ours.text);
      assert.deepEqual(ours.body, { error: { ...theirs.body.error, grpc_code: code, http_code: status, http_status: status === 400 ? 'Bad Request' : 'Unauthorized' } });
    }
    const withToken = await d.both('/v3/maintenance/snapshot', {}, { headers: asRoot });
    assert.equal(withToken.ours.status, 200);
  });

  it('after auth is disabled: any Authorization header is refused with 401, as etcd; no header is 200', async () => {
    await d.same('/v3/auth/disable', {}, { headers: asAlice });
    const disabled = await d.same('/v3/auth/disable', {}, { headers: asRoot });
    assert.equal(disabled.ours.status, 200);
    const anyHeader: Headers[] = [asRoot, { Authorization: 'bogus.token' }, { Authorization: '' }, (s) => ({ 'Grpc-Metadata-Token': rootToken[s.side] })];
    for (const headers of anyHeader) {
      const { ours } = await d.same('/v3/kv/range', { key: b64('foo') }, { headers });
      assert.equal(ours.status, 401, ours.text);
    }
    const open = await d.same('/v3/kv/range', { key: b64('foo') });
    assert.equal(open.ours.status, 200);
    await d.same('/v3/kv/put', { key: b64('foo'), value: b64('open') });
    await d.same('/v3/auth/authenticate', { name: 'root', password: 'rootpw' });
  });
});

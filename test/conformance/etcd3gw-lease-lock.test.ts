// Lease and lock interoperability with Debian's Python client for etcd's JSON gateway, etcd3gw
// (python3-etcd3gw). test/python/etcd3gw_lease_lock.py drives the client's lease API (client.lease
// → lease/grant; lease.ttl() and lease.keys() → kv/lease/timetolive; lease.refresh() → one HTTP
// lease/keepalive; lease.revoke() → kv/lease/revoke; put/create with lease=; expiry of a TTL-2
// lease) and its lock API (client.lock: not etcd's lock service but a lease of its own plus a
// create-if-absent txn on /locks/<name>; acquire, is_acquired, a second lock failing at once while
// the first is held, refresh, release, context manager, expiry and revocation of the holder's
// lease). Here it runs against this gateway and, to show that the script's expectations are
// etcd's own, against etcd's gateway.
//
// The client's default api_path (etcd3gw 2.0.0: '/v3alpha/') is not served by etcd 3.4's own
// gateway (404), so etcd's gateway is checked on /v3/ only.

import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { pythonScript, requireEtcd3gw, runCheckScript, type CheckRound } from '../support/python';

const SCRIPT = pythonScript('etcd3gw_lease_lock.py');
// A round takes ~12 s, most of it waiting for TTL-2 leases to expire (bounded in the script).
const RUN_TIMEOUT_MS = 90_000;

/** Every check the script reports, in order; each must appear once per API path. */
const CHECKS = [
  'lease grant',
  'lease ttl',
  'lease keys empty',
  'lease keys after put and create with lease=',
  'lease refresh',
  'lease revoke deletes its keys',
  'revoked lease: ttl -1, no keys, refresh -1',
  'revoke of a revoked lease raises Etcd3Exception (404, NotFound)',
  'key on a TTL-2 lease disappears after expiry',
  'refresh keeps a TTL-2 lease alive',
  'lock acquire',
  'second lock on the same name fails while the first is held',
  'lock refresh',
  'lock release',
  'second lock acquires after release',
  'lock as a context manager',
  'lock is freed when its TTL-2 lease expires',
  "revoking the holder's lease frees the lock",
  'cleanup',
] as const;

const PROBED_METHODS = ['lease', 'lock', 'put', 'create', 'get', 'transaction'];

describe('etcd3gw (python3-etcd3gw) lease and lock interoperability', { timeout: 240_000 }, () => {
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGateway();
  });

  after(async () => {
    await fixture?.close();
  });

  it('works against this gateway with its default api_path and /v3/', { timeout: 100_000 }, async () => {
    const defaultPath = await requireEtcd3gw({ attributes: PROBED_METHODS });
    const rounds: CheckRound[] = [{ arg: 'default', apiPath: defaultPath }];
    if (defaultPath !== '/v3/') rounds.push({ arg: '/v3/', apiPath: '/v3/' });
    await runCheckScript({ script: SCRIPT, base: fixture.url, rounds, checks: CHECKS, timeoutMs: RUN_TIMEOUT_MS });
  });

  it("passes the same checks against etcd's own gateway on /v3/ (the script's expectations are etcd's)", { timeout: 100_000 }, async () => {
    await requireEtcd3gw({ attributes: PROBED_METHODS });
    await runCheckScript({
      script: SCRIPT,
      base: fixture.etcd.clientUrl,
      rounds: [{ arg: '/v3/', apiPath: '/v3/' }],
      checks: CHECKS,
      timeoutMs: RUN_TIMEOUT_MS,
    });
  });
});

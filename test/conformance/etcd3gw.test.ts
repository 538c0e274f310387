// Interoperability with Debian's Python client for etcd's JSON gateway, etcd3gw (python3-etcd3gw).
// test/python/etcd3gw_kv.py drives the client's KV API (put, get, get_prefix, get_all, delete,
// delete_prefix, replace, create, transaction) against a base URL; here it runs against this
// gateway and, to show that the script's expectations are etcd's own, against etcd's gateway.
//
// The client's default api_path (etcd3gw 2.0.0: '/v3alpha/') is not served by etcd 3.4's own
// gateway (404), so against etcd the default round runs only if etcd answers on that path.

import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { pythonScript, requireEtcd3gw, runCheckScript, type CheckRound } from '../support/python';

const SCRIPT = pythonScript('etcd3gw_kv.py');
const RUN_TIMEOUT_MS = 60_000;

/** Every check the script reports, in order; each must appear once per API path. */
const CHECKS = [
  'put ascii',
  'get ascii',
  'put/get utf-8 value',
  'put/get non-utf-8 bytes value',
  'put/get latin-1 str value',
  'put/get empty value',
  'get missing key',
  'overwrite and get with metadata',
  'get_prefix ascending by key',
  'get_prefix sort_order descend by key',
  'get_prefix sort by create revision',
  'get_prefix over whole test prefix',
  'get with limit (extra range kwargs)',
  'get_all includes test keys in order',
  'delete one key',
  'delete missing key',
  'delete_prefix',
  'replace succeeds when old value matches',
  'replace fails when old value differs',
  'replace with non-utf-8 values',
  'replace on missing key fails',
  'create succeeds once',
  'create fails the second time',
  'create after delete succeeds',
  'transaction raw response',
  'cleanup',
] as const;

/** Runs the script against `base` for the given API paths and checks its report line by line. */
async function runScript(base: string, rounds: CheckRound[]): Promise<void> {
  await runCheckScript({ script: SCRIPT, base, rounds, checks: CHECKS, timeoutMs: RUN_TIMEOUT_MS });
}

describe('etcd3gw (python3-etcd3gw) KV interoperability', { timeout: 180_000 }, () => {
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGateway();
  });

  after(async () => {
    await fixture?.close();
  });

  it('works against this gateway with its default api_path, /v3beta/ and /v3/', { timeout: 90_000 }, async () => {
    const defaultPath = await requireEtcd3gw();
    await runScript(fixture.url, [
      { arg: 'default', apiPath: defaultPath },
      { arg: '/v3beta/', apiPath: '/v3beta/' },
      { arg: '/v3/', apiPath: '/v3/' },
    ]);
  });

  it("passes the same checks against etcd's own gateway (the script's expectations are etcd's)", { timeout: 90_000 }, async (t) => {
    const defaultPath = await requireEtcd3gw();
    const rounds = [
      { arg: '/v3beta/', apiPath: '/v3beta/' },
      { arg: '/v3/', apiPath: '/v3/' },
    ];
    if (defaultPath !== '/v3/' && defaultPath !== '/v3beta/') {
      // etcd 3.4 dropped /v3alpha/; only exercise the client's default where etcd still serves it.
      const probe = await fetch(new URL(`${defaultPath}kv/range`, fixture.etcd.clientUrl), {
        method: 'POST',
        body: JSON.stringify({ key: 'AA==' }),
        signal: AbortSignal.timeout(5_000),
      });
      await probe.arrayBuffer();
      if (probe.status === 200) rounds.unshift({ arg: 'default', apiPath: defaultPath });
      else t.diagnostic(`etcd's gateway answers ${probe.status} on ${defaultPath}; default api_path round not run against etcd`);
    }
    await runScript(fixture.etcd.clientUrl, rounds);
  });
});

// Watch interoperability with Debian's Python client for etcd's JSON gateway, etcd3gw
// (python3-etcd3gw). test/python/etcd3gw_watch.py drives the client's watch API (watch with cancel,
// watch_prefix, watch_once, watch_prefix_once, the start_revision / filters / prev_kv pass-through)
// against a base URL; here it runs against this gateway and, to show that the script's expectations
// are etcd's own, against etcd's gateway.
//
// etcd3gw reads a watch with requests' iter_content(chunk_size=None) and parses each HTTP chunk as
// one JSON document, so this also checks that every `{"result": ...}` line is a chunk of its own.
// The client's default api_path (etcd3gw 2.0.0: '/v3alpha/') is not served by etcd 3.4's own
// gateway (404), so etcd's gateway is checked on /v3/ only.

import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayFixture } from '../support/gateway';
import { pythonScript, requireEtcd3gw, runCheckScript, type CheckRound } from '../support/python';

const SCRIPT = pythonScript('etcd3gw_watch.py');
const RUN_TIMEOUT_MS = 60_000;

/** Every check the script reports, in order; each must appear once per API path. */
const CHECKS = [
  'watch put/delete events in order',
  'watch cancel ends the iterator',
  'watch_prefix only keys under the prefix',
  'watch_prefix with filters and prev_kv (kwargs pass-through)',
  'watch_once returns the first event (put from another thread)',
  'watch_prefix_once returns the first event',
  'watch_once times out when nothing happens',
  'watch start_revision replays history',
  'cancel closes every watch stream (reader threads end)',
  'cleanup',
] as const;

/** What the probe imports and checks beyond Etcd3Client: the watch API and its timeout exception. */
const PROBE = {
  modules: ['etcd3gw.exceptions:WatchTimedOut'],
  attributes: ['watch', 'watch_prefix', 'watch_once', 'watch_prefix_once'],
};

/** Runs the script against `base` for the given API paths and checks its report line by line. */
async function runScript(base: string, rounds: CheckRound[]): Promise<void> {
  await runCheckScript({ script: SCRIPT, base, rounds, checks: CHECKS, timeoutMs: RUN_TIMEOUT_MS });
}

describe('etcd3gw (python3-etcd3gw) watch interoperability', { timeout: 180_000 }, () => {
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGateway();
  });

  after(async () => {
    await fixture?.close();
  });

  it('works against this gateway with its default api_path, /v3beta/ and /v3/', { timeout: 90_000 }, async () => {
    const defaultPath = await requireEtcd3gw(PROBE);
    await runScript(fixture.url, [
      { arg: 'default', apiPath: defaultPath },
      { arg: '/v3beta/', apiPath: '/v3beta/' },
      { arg: '/v3/', apiPath: '/v3/' },
    ]);
  });

  it("passes the same checks against etcd's own gateway on /v3/ (the script's expectations are etcd's)", { timeout: 90_000 }, async () => {
    await requireEtcd3gw(PROBE);
    await runScript(fixture.etcd.clientUrl, [{ arg: '/v3/', apiPath: '/v3/' }]);
  });
});

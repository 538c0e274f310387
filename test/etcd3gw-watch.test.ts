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
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayFixture } from './helpers/gateway';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '../../test/python/etcd3gw_watch.py');
const INSTALL_HINT = 'apt-get install python3-etcd3gw';
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
];

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONIOENCODING: 'utf-8' } });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/**
 * Fails (never skips) when the Debian Python or etcd3gw is missing; returns the client's default
 * api_path, read from Etcd3Client's signature.
 */
async function requireEtcd3gw(): Promise<string> {
  assert.ok(existsSync(PYTHON), `${PYTHON} not found; the etcd3gw watch interop test needs Debian's Python: ${INSTALL_HINT}`);
  const probe = await run(
    PYTHON,
    [
      '-c',
      [
        'import inspect, sys',
        'try:',
        '    from etcd3gw.client import Etcd3Client',
        '    from etcd3gw.exceptions import WatchTimedOut',
        'except ImportError as e:',
        '    sys.exit("ImportError: %s" % e)',
        'for name in ("watch", "watch_prefix", "watch_once", "watch_prefix_once"):',
        '    assert callable(getattr(Etcd3Client, name, None)), "etcd3gw has no Etcd3Client.%s" % name',
        "print(inspect.signature(Etcd3Client.__init__).parameters['api_path'].default)",
      ].join('\n'),
    ],
    20_000,
  );
  assert.ok(!/ImportError/.test(probe.stderr), `${PYTHON} cannot import etcd3gw (${probe.stderr.trim()}); run: ${INSTALL_HINT}`);
  assert.equal(probe.code, 0, `probing etcd3gw with ${PYTHON} failed: ${probe.stderr.trim() || `exit ${probe.code}`}`);
  const defaultPath = probe.stdout.trim();
  assert.match(defaultPath, /^\/v3[a-z]*\/$/, `unexpected etcd3gw default api_path ${JSON.stringify(defaultPath)}`);
  return defaultPath;
}

/** Runs the script against `base` for the given API paths and checks its report line by line. */
async function runScript(base: string, rounds: { arg: string; apiPath: string }[]): Promise<void> {
  assert.ok(existsSync(SCRIPT), `script not found at ${SCRIPT}`);
  const res = await run(PYTHON, [SCRIPT, base, rounds.map((r) => r.arg).join(',')], RUN_TIMEOUT_MS);
  const transcript = `--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
  assert.ok(!res.timedOut, `etcd3gw_watch.py did not finish within ${RUN_TIMEOUT_MS} ms\n${transcript}`);
  assert.notEqual(res.code, 2, `etcd3gw_watch.py could not run (${INSTALL_HINT}?)\n${transcript}`);
  assert.equal(res.code, 0, `etcd3gw_watch.py failed (exit ${res.code ?? res.signal})\n${transcript}`);
  const lines = res.stdout.split('\n');
  for (const { apiPath } of rounds) {
    for (const check of CHECKS) {
      const line = `ok ${apiPath} ${check}`;
      assert.ok(lines.includes(line), `missing check line ${JSON.stringify(line)}\n${transcript}`);
    }
    assert.ok(lines.includes(`PASS ${apiPath}`), `missing "PASS ${apiPath}"\n${transcript}`);
  }
  const okLines = lines.filter((l) => l.startsWith('ok '));
  assert.equal(okLines.length, CHECKS.length * rounds.length, `unexpected number of check lines\n${transcript}`);
  assert.ok(lines.includes('ALL PASSED'), `missing "ALL PASSED"\n${transcript}`);
  assert.equal(res.stderr.trim(), '', `unexpected stderr\n${transcript}`);
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
    const defaultPath = await requireEtcd3gw();
    await runScript(fixture.url, [
      { arg: 'default', apiPath: defaultPath },
      { arg: '/v3beta/', apiPath: '/v3beta/' },
      { arg: '/v3/', apiPath: '/v3/' },
    ]);
  });

  it("passes the same checks against etcd's own gateway on /v3/ (the script's expectations are etcd's)", { timeout: 90_000 }, async () => {
    await requireEtcd3gw();
    await runScript(fixture.etcd.clientUrl, [{ arg: '/v3/', apiPath: '/v3/' }]);
  });
});

// Interoperability with Debian's Python client for etcd's JSON gateway, etcd3gw (python3-etcd3gw).
// test/python/etcd3gw_kv.py drives the client's KV API (put, get, get_prefix, get_all, delete,
// delete_prefix, replace, create, transaction) against a base URL; here it runs against this
// gateway and, to show that the script's expectations are etcd's own, against etcd's gateway.
//
// The client's default api_path (etcd3gw 2.0.0: '/v3alpha/') is not served by etcd 3.4's own
// gateway (404), so against etcd the default round runs only if etcd answers on that path.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayFixture } from './helpers/gateway';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '../../test/python/etcd3gw_kv.py');
const INSTALL_HINT = 'apt-get install python3-etcd3gw';
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
  assert.ok(existsSync(PYTHON), `${PYTHON} not found; the etcd3gw interop test needs Debian's Python: ${INSTALL_HINT}`);
  const probe = await run(
    PYTHON,
    [
      '-c',
      [
        'import inspect, sys',
        'try:',
        '    from etcd3gw.client import Etcd3Client',
        'except ImportError as e:',
        '    sys.exit("ImportError: %s" % e)',
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
  assert.ok(!res.timedOut, `etcd3gw_kv.py did not finish within ${RUN_TIMEOUT_MS} ms\n${transcript}`);
  assert.notEqual(res.code, 2, `etcd3gw_kv.py could not run (${INSTALL_HINT}?)\n${transcript}`);
  assert.equal(res.code, 0, `etcd3gw_kv.py failed (exit ${res.code ?? res.signal})\n${transcript}`);
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

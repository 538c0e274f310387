// Running Debian's Python (/usr/bin/python3) and its etcd3gw client (python3-etcd3gw) from tests:
// a bounded child process, the probe that fails (never skips) when etcd3gw is missing, and the
// runner for the check scripts under test/python/ that print one "ok <api_path> <check>" line per
// passed check, "PASS <api_path>" per round and "ALL PASSED" at the end.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** Debian's Python: the pyenv `python3` on PATH has no Debian packages. */
export const PYTHON = '/usr/bin/python3';
export const ETCD3GW_INSTALL_HINT = 'apt-get install python3-etcd3gw';

/** A script under test/python/, located from this helper's compiled place, dist/test/support/. */
export function pythonScript(name: string): string {
  return path.resolve(__dirname, '../../../test/python', name);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a command to its end, killing it (and failing nothing by itself) after `timeoutMs`; `env`
 * adds to the environment, `cwd` (default: this process's) is where it runs.
 */
export function runProcess(cmd: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONIOENCODING: 'utf-8', PYTHONDONTWRITEBYTECODE: '1', ...env },
    });
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
 * Fails (never skips) when Debian's Python or etcd3gw is missing, or when one of `modules` (extra
 * imports, e.g. 'oslotest.base'; 'module:Name' for `from module import Name`) is not importable —
 * `hint` then names what to install — or when Etcd3Client lacks one of the methods `attributes`.
 * Returns the client's default api_path, read from Etcd3Client's signature.
 */
export async function requireEtcd3gw(opts: { modules?: string[]; attributes?: string[]; hint?: string } = {}): Promise<string> {
  const hint = opts.hint ?? ETCD3GW_INSTALL_HINT;
  assert.ok(existsSync(PYTHON), `${PYTHON} not found; the etcd3gw interop tests need Debian's Python: ${hint}`);
  const lines = [
    'import importlib, inspect, sys',
    'try:',
    '    from etcd3gw.client import Etcd3Client',
    `    for m in ${JSON.stringify(opts.modules ?? [])}:`,
    '        module, _, name = m.partition(":")',
    '        module = importlib.import_module(module)',
    '        if name and not hasattr(module, name):',
    '            raise ImportError("cannot import name %r from %r" % (name, module.__name__))',
    'except ImportError as e:',
    '    sys.exit("ImportError: %s" % e)',
    `for name in ${JSON.stringify(opts.attributes ?? [])}:`,
    '    assert callable(getattr(Etcd3Client, name, None)), "etcd3gw has no Etcd3Client.%s" % name',
    "print(inspect.signature(Etcd3Client.__init__).parameters['api_path'].default)",
  ];
  const probe = await runProcess(PYTHON, ['-c', lines.join('\n')], 20_000);
  assert.ok(!probe.timedOut, `probing etcd3gw with ${PYTHON} did not finish within 20 s`);
  assert.ok(!/ImportError/.test(probe.stderr), `${PYTHON} cannot import what the test needs (${probe.stderr.trim()}); run: ${hint}`);
  assert.equal(probe.code, 0, `probing etcd3gw with ${PYTHON} failed: ${probe.stderr.trim() || `exit ${probe.code}`}`);
  const defaultPath = probe.stdout.trim();
  assert.match(defaultPath, /^\/v3[a-z]*\/$/, `unexpected etcd3gw default api_path ${JSON.stringify(defaultPath)}`);
  return defaultPath;
}

export interface CheckRound {
  /** The script's argument for the round: 'default' or an api_path such as '/v3/'. */
  arg: string;
  /** The api_path the round uses (the client's default for 'default'). */
  apiPath: string;
}

/**
 * Runs a check script (see the header) against `base` for the given rounds and asserts its report
 * line by line: every check once per round, nothing else, exit 0 and an empty stderr.
 */
export async function runCheckScript(opts: { script: string; base: string; rounds: CheckRound[]; checks: readonly string[]; timeoutMs: number }): Promise<RunResult> {
  const { script, base, rounds, checks, timeoutMs } = opts;
  const name = path.basename(script);
  assert.ok(existsSync(script), `script not found at ${script}`);
  const res = await runProcess(PYTHON, [script, base, rounds.map((r) => r.arg).join(',')], timeoutMs);
  const transcript = `--- stdout ---\n${res.stdout}\n--- stderr ---\n${res.stderr}`;
  assert.ok(!res.timedOut, `${name} did not finish within ${timeoutMs} ms\n${transcript}`);
  assert.notEqual(res.code, 2, `${name} could not run (${ETCD3GW_INSTALL_HINT}?)\n${transcript}`);
  assert.equal(res.code, 0, `${name} failed (exit ${res.code ?? res.signal})\n${transcript}`);
  const lines = res.stdout.split('\n');
  for (const { apiPath } of rounds) {
    for (const check of checks) {
      const line = `ok ${apiPath} ${check}`;
      assert.ok(lines.includes(line), `missing check line ${JSON.stringify(line)}\n${transcript}`);
    }
    assert.ok(lines.includes(`PASS ${apiPath}`), `missing "PASS ${apiPath}"\n${transcript}`);
  }
  const okLines = lines.filter((l) => l.startsWith('ok '));
  assert.equal(okLines.length, checks.length * rounds.length, `unexpected number of check lines\n${transcript}`);
  assert.ok(lines.includes('ALL PASSED'), `missing "ALL PASSED"\n${transcript}`);
  assert.equal(res.stderr.trim(), '', `unexpected stderr\n${transcript}`);
  return res;
}

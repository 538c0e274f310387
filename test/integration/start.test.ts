// The README's start command: with no endpoints the gateway starts its own etcd, says where the API,
// Swagger UI and etcd are, serves, keeps data across restarts and stops etcd when it stops.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/embedded-etcd/process';
import { b64, send } from '../support/gateway';
import { alive } from '../support/waiting';

const ROOT = path.resolve(__dirname, '..', '..', '..');

interface Started {
  child: ChildProcess;
  output: () => string;
}

async function startMain(env: Record<string, string>, args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, ['dist/src/main.js', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while (!out.includes('Swagger UI:') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return { child, output: () => out };
}

function exited(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error('did not exit in time')), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe('start command', () => {
  it('prints --help and exits 0', async () => {
    const { child, output } = await startMain({}, ['--help']);
    assert.equal(await exited(child, 10_000), 0);
    assert.match(output(), /ETCD_ENDPOINTS/);
  });

  it('refuses a bad setting with exit code 2 and the reason', async () => {
    const { child, output } = await startMain({ PORT: 'x' });
    assert.equal(await exited(child, 10_000), 2);
    assert.match(output(), /PORT must be a whole number/);
  });

  it('starts an embedded etcd when no endpoints are given, keeps its data, and stops it on SIGTERM', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gw-start-'));
    const dataDir = path.join(dir, 'etcd');
    const children: ChildProcess[] = [];
    try {
      for (const round of [1, 2]) {
        const port = await freePort();
        const { child, output } = await startMain({ ETCD_ENDPOINTS: '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
        children.push(child);
        const text = output();
        assert.match(text, new RegExp(`API: +http://127\\.0\\.0\\.1:${port}/v3/`), text);
        assert.match(text, new RegExp(`Swagger UI: http://127\\.0\\.0\\.1:${port}/docs/`));
        assert.match(text, new RegExp(`Console: +http://127\\.0\\.0\\.1:${port}/ui/`));
        assert.match(text, /etcd: +http:\/\/127\.0\.0\.1:\d+ \(embedded, data in /);
        const base = `http://127.0.0.1:${port}`;
        if (round === 1) {
          assert.equal((await send(base, '/v3/kv/put', { key: b64('start/k'), value: b64('kept') })).status, 200);
        } else {
          const range = await send(base, '/v3/kv/range', { key: b64('start/k') });
          assert.equal(range.body.kvs[0].value, b64('kept'), 'data survives a restart');
        }
        const pids = execFileSync('pgrep', ['-f', `data-dir ${dataDir}`]).toString().trim().split('\n').map(Number);
        assert.equal(pids.length, 1, 'one embedded etcd');
        child.kill('SIGTERM');
        assert.equal(await exited(child, 15_000), 0);
        assert.equal(alive(pids[0]), false, 'the embedded etcd stopped with the gateway');
      }
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a second start in the same checkout says why it cannot, at once, in one line', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gw-start-twice-'));
    const dataDir = path.join(dir, 'etcd');
    const port = await freePort();
    const first = await startMain({ ETCD_ENDPOINTS: '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
    try {
      assert.match(first.output(), /Swagger UI:/, first.output());
      // The same command again: the port is the first thing that is in use.
      const again = await startMain({ ETCD_ENDPOINTS: '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
      const begun = Date.now();
      assert.equal(await exited(again.child, 5_000), 1);
      assert.equal(again.output().trim(), `gateway failed to start: port ${port} on 127.0.0.1 is in use (another gateway running?): stop it, or start this one with PORT=<another port>`);
      // On another port: the embedded etcd's data dir is, and the answer says how to share its etcd.
      const other = await startMain({ ETCD_ENDPOINTS: '', PORT: String(await freePort()), DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
      assert.equal(await exited(other.child, 5_000), 1);
      assert.ok(Date.now() - begun < 5_000, 'both said within seconds, not after etcd\'s 20 s start timeout');
      assert.match(
        other.output().trim(),
        new RegExp(`^gateway failed to start: the embedded etcd's data dir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another gateway \\(pid ${first.child.pid}\\): stop that one, use its etcd with ETCD_ENDPOINTS=http://127\\.0\\.0\\.1:\\d+, or give this one its own DATA_DIR$`),
      );
      // The first one is untouched, and once it stops the data dir is free again.
      first.child.kill('SIGTERM');
      assert.equal(await exited(first.child, 15_000), 0);
      const third = await startMain({ ETCD_ENDPOINTS: '', PORT: String(await freePort()), DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
      assert.match(third.output(), /Swagger UI:/, third.output());
      third.child.kill('SIGTERM');
      assert.equal(await exited(third.child, 15_000), 0);
    } finally {
      if (first.child.exitCode === null) first.child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
